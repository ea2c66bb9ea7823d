import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { Command, Option, UsageError } from 'clipanion'
import * as t from 'typanion'

import { checksumFolder, checksumGroups, loadChecksumConfig, parseAlgos, type ChecksumResult, type ReportFormat } from '../../integrity'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { BaseCommand } from '../base'
import { bytes, duration } from '../format'
import * as options from '../options'

const FORMATS = ['json', 'sha256sum', 'b3sum'] as const

export default class ChecksumCommand extends BaseCommand {
  static paths = [['checksum']]
  static usage = Command.Usage({
    description: 'Write a signed checksum report of folders',
    details: `
      Hashes every file under each DIR with all the \`--algo\` algorithms in one read (default \`sha256,md5\`) into a
      report: \`--out FILE\` (one DIR), \`--out FOLDER\`, or stdout. Without DIR, the groups of
      \`--checksum-config FILE\` (\`{"groups": [{"name", "path"}], "output_dir"}\`) are done as the original service
      does from cron. \`--sign-key\` signs the report (Ed25519); \`--format sha256sum|b3sum\` writes check lines.

      Exit codes: 0; 1 some files could not be read (listed in the report's errors); 2; 64.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup checksum".
    `,
    examples: [
      ['Checksum a folder into a report', '$0 checksum /data/backups --group backups --out /var/lib/reports/backups.json'],
      ['The groups of a config, signed (cron)', '$0 checksum --config /etc/backup/checksum.json --sign-key /etc/backup/reports.key'],
      ['BLAKE3 check lines for b3sum', '$0 checksum /data --algo blake3 --format b3sum --out /data.b3'],
    ],
  })

  dirs = Option.Rest({ name: 'DIR' })
  checksumConfig = options.pathOption('--checksum-config', 'Checksum config: {"groups": [{"name", "path"}], "output_dir"} (instead of DIR)')
  /** Until 0.2: `--config`/`-c` named the checksum config here, a backup profile everywhere else. */
  oldConfig = options.deprecated.path('--config,-c')
  group = Option.String('--group', { description: 'Group name in the report (default: the folder name)' })
  algo = options.algo('Algorithms, comma-separated (default sha256,md5)')
  out = options.out('Report file (one DIR) or output folder')
  threads = options.threads('Hashing threads (default: all cores; 1 = on-disk order)')
  format = Option.String('--format', 'json', { validator: t.isEnum(FORMATS), description: 'json, sha256sum or b3sum' })
  signKey = options.pathOption('--sign-key', 'Ed25519 private key (backup keygen) to sign the report')

  async run(): Promise<ExitCodeValue> {
    if (this.dirs.length && this.checksumConfig) throw new UsageError('give DIR arguments or --checksum-config FILE, not both')
    // Before 0.2 every command took --config, and checksum ignored it beside DIR arguments: still ignored, now said.
    if (this.dirs.length && this.oldConfig) this.deprecated('checksum --config', 'it has no effect with DIR arguments: leave it out')
    const algos = parseAlgos(this.algo, this.format === 'b3sum' ? ['blake3'] : this.format === 'sha256sum' ? ['sha256'] : undefined)
    const results: ChecksumResult[] = []
    let toStdout: string | undefined
    await this.withProgress({ apply: 'hash' }, async (onProgress) => {
      const opts = { algos, threads: this.threads, format: this.format as ReportFormat, signKey: this.signKey, onProgress }
      if (this.dirs.length === 0) {
        if (this.out) throw new UsageError('--out goes with DIR arguments; a checksum config names its output_dir')
        results.push(...(await checksumGroups(loadChecksumConfig(this.groupsFile()), opts)))
      } else {
        if (this.group && this.dirs.length > 1) throw new UsageError('--group names one folder; with several DIRs each is named after its folder')
        const outIsDir = !!this.out && (this.dirs.length > 1 || fs.statSync(this.out, { throwIfNoEntry: false })?.isDirectory())
        if (outIsDir) {
          results.push(...(await checksumGroups({ groups: this.dirs.map((d) => ({ name: this.group ?? path.basename(path.resolve(d)), path: d })), output_dir: this.out! }, opts, true)))
        } else {
          const dir = this.dirs[0]
          const group = this.group ?? path.basename(path.resolve(dir))
          toStdout = this.out ? undefined : path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'axb-')), 'report')
          results.push(await checksumFolder(dir, group, this.out ?? toStdout!, opts))
        }
      }
    })
    if (toStdout) {
      await new Promise<void>((resolve, reject) => {
        const s = fs.createReadStream(toStdout!)
        s.on('error', reject)
        s.on('end', resolve)
        s.pipe(this.context.stdout, { end: false })
      })
      fs.rmSync(path.dirname(toStdout), { recursive: true, force: true })
    }
    const code = results.some((r) => r.errors.length) ? ExitCode.Partial : ExitCode.Ok
    if (this.json && !toStdout) {
      this.print({ reports: results })
      return code
    }
    for (const r of results) for (const e of r.errors) this.warning({ path: e.path, message: e.error })
    if (!this.quiet && !toStdout) {
      for (const r of results) {
        const rate = r.workTime > 0 ? ` (${bytes(r.bytes / r.workTime)}/s)` : ''
        this.context.stdout.write(
          `${r.group}: ${r.files} files, ${bytes(r.bytes)} in ${duration(r.workTime * 1000)}${rate} → ${r.report}${r.signed ? ' (signed)' : ''}${r.errors.length ? `, ${r.errors.length} errors` : ''}\n`,
        )
      }
    }
    return code
  }

  /** The checksum config: `--checksum-config`, else the deprecated `--config` (with a note), else ./config.json as before. */
  private groupsFile(): string {
    if (this.checksumConfig) return this.checksumConfig
    if (this.oldConfig) this.deprecated('checksum --config FILE', 'write `checksum --checksum-config FILE` (--config is a backup profile in every other command)')
    return this.oldConfig ?? 'config.json'
  }
}
