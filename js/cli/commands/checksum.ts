import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { Command, Option, UsageError } from 'clipanion'

import { checksumFolder, checksumGroups, loadChecksumConfig, parseAlgos, type ChecksumResult, type ReportFormat } from '../../integrity'
import { ExitCode } from '../../errors'
import { BaseCommand } from '../base'
import { ProgressLine, bytes, duration, shown } from '../format'

export default class ChecksumCommand extends BaseCommand {
  static paths = [['checksum']]
  static usage = Command.Usage({
    description: 'Write a signed checksum report of folders',
    details: `
      Walks each DIR in parallel (symlinks are recorded with their target, never followed), hashes every file
      with all the \`--algo\` algorithms in one read (sha256, md5, blake3, sha512, sha3-512, xxh3; default
      \`sha256,md5\` as the original service), largest files first, on \`--threads\` threads (default: all cores;
      \`--threads 1\` reads in inode order, which follows the disk layout: kinder to spinning disks).

      Without DIR, the groups of \`--config\` (\`{"groups": [{"name", "path"}], "output_dir"}\`) are checksummed into
      \`<output_dir>/<group>/all_<unix-ts>.json\` and \`<output_dir>/groups.json\` is updated, as the original
      service does from cron. With DIR: \`--out FILE\` (one DIR) or \`--out FOLDER\` (the same layout); without
      \`--out\` the report goes to stdout.

      The JSON report is the original envelope \`{"data": "<report JSON>", "signature": "<SHA3-512 hex of data>"}\`;
      data holds \`group\`, \`root_data\`, \`start_timestamp\`, \`work_time\`, \`algorithms\`, \`files\` (largest first),
      \`checksums\` \`{path: {algo: hex}}\`, \`sizes\`, \`mtimes\`, \`stat\` \`{path: [mtime_ns, ctime_ns, inode]}\`, \`symlinks\`
      \`{path: target}\`, \`errors\` \`{path: {error}}\`. The SHA3-512 digest proves the report is intact, not who made
      it: \`--sign-key\` adds \`signature_ed25519\` (Ed25519 over the 64 digest bytes) and \`public_key\`.
      \`--format sha256sum|b3sum\` writes check lines that \`sha256sum -c\` / \`b3sum --check\` accept.

      \`--json\`: \`{ reports: [{ group, root, report, format, algorithms, files, bytes, errors, workTime, digest,
      signed }] }\`. Exit codes: 0; 1 some files could not be read (listed in the report's errors); 2; 64.
    `,
    examples: [
      ['Checksum a folder into a report', '$0 checksum /data/backups --group backups --out /var/lib/reports/backups.json'],
      ['The groups of a config, signed (cron)', '$0 checksum --config /etc/backup/checksum.json --sign-key /etc/backup/reports.key'],
      ['BLAKE3 check lines for b3sum', '$0 checksum /data --algo blake3 --format b3sum --out /data.b3'],
    ],
  })

  dirs = Option.Rest({ name: 'DIR' })
  group = Option.String('--group', { description: 'Group name in the report (default: the folder name)' })
  algo = Option.String('--algo', { description: 'Algorithms, comma-separated (default sha256,md5)' })
  out = Option.String('--out,-o', { description: 'Report file (one DIR) or output folder' })
  threads = Option.String('--threads', { description: 'Hashing threads (default: all cores; 1 = on-disk order)' })
  format = Option.String('--format', 'json', { description: 'json, sha256sum or b3sum' })
  signKey = Option.String('--sign-key', { description: 'Ed25519 private key (backup keygen) to sign the report' })

  async run(): Promise<number> {
    if (!['json', 'sha256sum', 'b3sum'].includes(this.format)) throw new UsageError(`--format ${this.format}: use json, sha256sum or b3sum`)
    const algos = parseAlgos(this.algo, this.format === 'b3sum' ? ['blake3'] : this.format === 'sha256sum' ? ['sha256'] : undefined)
    let threads: number | undefined
    if (this.threads !== undefined) {
      threads = Number(this.threads)
      if (!/^\d+$/.test(this.threads) || threads < 1) throw new UsageError(`--threads: expected a whole number ≥ 1, got ${this.threads}`)
    }
    const line = new ProgressLine(this.context.stderr as NodeJS.WriteStream, !!(this.context.stderr as NodeJS.WriteStream).isTTY && !this.quiet && !this.json, {
      apply: 'hash',
    })
    const opts = { algos, threads, format: this.format as ReportFormat, signKey: this.signKey, onProgress: line.update }
    const results: ChecksumResult[] = []
    let toStdout: string | undefined
    try {
      if (this.dirs.length === 0) {
        if (this.out) throw new UsageError('--out goes with DIR arguments; a config names its output_dir')
        results.push(...(await checksumGroups(loadChecksumConfig(this.config), opts)))
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
    } finally {
      line.done()
    }
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
    for (const r of results) for (const e of r.errors) this.context.stderr.write(`warning: ${shown(e.path)}: ${e.error}\n`)
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
}
