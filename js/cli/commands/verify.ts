import fs from 'node:fs'

import { Command, Option, UsageError } from 'clipanion'

import { loadConfig, parseShare } from '../../config'
import { parseAlgos, verify, verifyBackup, type VerifyStatus } from '../../integrity'
import { describeDamage, describePendingRun, requireBackupDir } from '../../explore'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { DstCommand } from '../base'
import { bytes, shown } from '../format'
import * as options from '../options'

export default class VerifyCommand extends DstCommand {
  static paths = [['verify']]
  static usage = Command.Usage({
    description: 'Check files against a checksum report, or a backup against its recorded hashes',
    details: `
      \`verify REPORT\` checks the report's digest and signature (\`--pubkey\`: it must be signed by that key), then
      re-hashes every file under its root (\`--root\` for a copy elsewhere): OK, FAILED, CORRUPT (bit rot), MISSING,
      NEW, ERROR. \`--incremental\` trusts files whose size, mtime, inode and ctime are unchanged.

      Without REPORT it checks a backup (\`--dst DIR\`, or the \`dst\` of \`--config\`): every stored version and tracked
      mirror file against its recorded SHA-256; \`--repair\` replaces a corrupt mirror file from the source.
      \`--scrub 10%\` checks only the least recently verified tenth of the versions (never-verified ones first) and
      records when each was checked (\`.axiomatic/scrub.json\`, saved as it goes: a killed scrub resumes), so ten
      scheduled scrubs cover everything; \`--increment NAME\` checks one increment. Corruption found is remembered
      (\`status\` shows it) until a full verify passes.

      Exit codes: 0 all OK; 1 some FAILED/CORRUPT/MISSING/NEW, or damaged metadata; 2 report unusable, only I/O
      errors, or a scrub interrupted (what it checked is kept); 64.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup verify".
    `,
    examples: [
      ['Verify a signed report', '$0 verify /var/lib/reports/backups/all_1700000000.json --pubkey reports.pub'],
      ['Verify a copy of the data elsewhere, only problems', '$0 verify report.json --root /mnt/copy --quiet'],
      ['Fast nightly check', '$0 verify report.json --incremental'],
      ['Check a backup, repair the mirror from the source', '$0 verify --dst /media/usb/backup --repair --source ~/Documents'],
      ['Scrub: check the least recently verified tenth of a backup', '$0 verify --dst /media/usb/backup --scrub 10%'],
      ['Check only the newest increment', '$0 verify --dst /media/usb/backup --increment backup_20240115_103000'],
    ],
  })

  report = Option.String({ name: 'REPORT', required: false })
  root = options.pathOption('--root', 'Folder to verify (default: the report’s root_data)')
  pubkey = options.pathOption('--pubkey', 'Ed25519 public key: require the report to be signed by it')
  incremental = Option.Boolean('--incremental', false, { description: 'Trust files whose size, mtime, inode and ctime are unchanged' })
  algo = options.algo('Algorithm of check-line reports (e.g. blake3 for b3sum lines)')
  threads = options.threads('Hashing threads (default: all cores)')
  repair = Option.Boolean('--repair', false, { description: 'Backup check: repair corrupt mirror files from the source' })
  source = options.pathOption('--source', 'With --repair: the source folder (default: src of --config)')
  scrub = Option.String('--scrub', { description: 'Backup check: only this share of the stored versions (e.g. 10%), least recently verified first' })
  increment = Option.String('--increment', { description: 'Backup check: only this increment (not the mirror)' })
  /** Until 0.2: `--backup [DST]` chose the backup check; --backup names an increment elsewhere (recreate). */
  oldBackup = options.deprecated.switchOrString('--backup')

  async run(): Promise<ExitCodeValue> {
    if (this.oldBackup !== undefined) {
      this.deprecated('verify --backup', 'write `verify --dst DIR` or `verify -c CONFIG` (--backup names an increment elsewhere, as in `recreate --backup NAME`)')
      // `--backup DST`, `--backup=DST`, or `--backup` alone (the dst of --config).
      if (typeof this.oldBackup === 'string' && this.report) throw new UsageError('give either REPORT or --backup, not both')
      return this.checkBackup(typeof this.oldBackup === 'string' ? this.oldBackup : (this.report ?? loadConfig(this.config).dst))
    }
    if (this.report === undefined) {
      if (!this.dst && !fs.existsSync(this.config)) {
        throw new UsageError(`verify needs a REPORT file, or a backup to check: --dst DIR or --config FILE (${this.config} does not exist)`)
      }
      return this.checkBackup(this.backupDir())
    }
    if (this.dst) throw new UsageError('give either REPORT (check files against a report) or --dst DIR (check a backup), not both')
    if (this.scrub !== undefined || this.increment !== undefined) throw new UsageError('--scrub and --increment go with a backup check (--dst DIR or --config FILE), not with a REPORT')
    return this.checkReport(this.report)
  }

  /** `verify --dst DIR` / `-c CONFIG`: every stored version and tracked mirror file against its recorded hash. */
  private async checkBackup(dir: string): Promise<ExitCodeValue> {
    const c = this.colors
    const out = this.context.stdout
    const dst = requireBackupDir(dir)
    const source = this.repair ? (this.source ?? loadConfig(this.config).src) : undefined
    const scrub = this.scrub === undefined ? undefined : parseShare(this.scrub)
    if (this.scrub !== undefined && scrub === undefined) throw new UsageError(`--scrub: expected a share from 0% (excluded) to 100%, e.g. 10%, got ${JSON.stringify(this.scrub)}`)
    if (scrub !== undefined && this.increment !== undefined) throw new UsageError('give either --scrub or --increment, not both')
    const controller = new AbortController()
    const onSignal = () => controller.abort()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    let r
    try {
      r = await this.withProgress({ apply: 'verify' }, (onProgress) =>
        verifyBackup(dst, { source, threads: this.threads, onProgress, scrub, increment: this.increment, signal: controller.signal }),
      )
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
    const bad = r.problems.filter((p) => !(p.repair ?? '').startsWith('re'))
    const code =
      bad.some((p) => p.status !== 'ERROR') || r.damaged.length || r.stateError
        ? ExitCode.Partial
        : bad.length || r.scrub?.stopped
          ? ExitCode.Failed
          : ExitCode.Ok
    if (this.json) {
      this.print(r)
      return code
    }
    if (r.scrubStateError) this.warn(`scrub record: ${r.scrubStateError}`)
    for (const d of r.damaged) out.write(`${c.red('DAMAGED')} ${describeDamage(d)}\n`)
    if (r.stateError) out.write(`${c.red('DAMAGED')} mirror state: ${r.stateError}\n`)
    if (r.pendingRun) {
      const n = r.pending ? `; ${r.pending} mirror files it already replaced or removed are pending (not checked, no hash is recorded for them yet)` : ''
      out.write(`${c.yellow('PENDING')} ${describePendingRun(r.pendingRun)}${n}\n`)
    }
    for (const p of r.problems) {
      out.write(`${p.location}/${shown(p.path)}: ${p.status === 'CORRUPT' ? c.red(p.status) : c.yellow(p.status)}${p.detail ? ` (${p.detail})` : ''}${p.repair ? ` → ${p.repair}` : ''}\n`)
    }
    if (!this.quiet) {
      out.write(
        `${r.filesChecked} stored files in ${r.increments} increments and the mirror checked (${r.inodesRead} inodes, ${bytes(r.bytesRead)} read); ` +
          `${r.problems.length} problems${r.repaired ? `, ${r.repaired} repaired` : ''}; ${r.unverifiable} untracked mirror files have no recorded hash\n`,
      )
      const s = r.scrub
      if (s) {
        out.write(
          `scrub ${Math.round(s.fraction * 1000) / 10}%: ${r.filesChecked} of ${s.total} versions checked (${s.neverVerifiedBefore} never verified before)` +
            `${s.stopped ? ', stopped early: the next scrub resumes' : ''}; ${s.neverVerifiedAfter} never verified now\n`,
        )
      }
    }
    return code
  }

  /** `verify REPORT`: the report's own digest and signature, then every file under its root. */
  private async checkReport(report: string): Promise<ExitCodeValue> {
    if (this.repair) throw new UsageError('--repair goes with a backup check (--dst DIR or --config FILE), not with a REPORT')
    const c = this.colors
    const out = this.context.stdout
    const r = await this.withProgress({ apply: 'verify' }, (onProgress) =>
      verify(report, {
        root: this.root,
        pubkey: this.pubkey,
        incremental: this.incremental,
        threads: this.threads,
        algo: this.algo ? parseAlgos(this.algo)[0] : undefined,
        all: !this.quiet,
        onProgress,
      }),
    )
    const n = (s: VerifyStatus) => r.counts[s] ?? 0
    const problems = n('FAILED') + n('CORRUPT') + n('MISSING') + n('NEW')
    const code = problems ? ExitCode.Partial : n('ERROR') ? ExitCode.Failed : ExitCode.Ok
    if (this.json) {
      this.print(r)
      return code
    }
    const paint = (s: VerifyStatus) => (s === 'OK' ? c.green(s) : s === 'NEW' ? c.yellow(s) : c.red(s))
    for (const v of r.results) {
      if (this.quiet && v.status === 'OK') continue
      out.write(`${shown(v.path)}: ${paint(v.status)}${v.detail && v.status !== 'OK' ? ` (${v.detail})` : ''}\n`)
    }
    const parts = (['OK', 'FAILED', 'CORRUPT', 'MISSING', 'NEW', 'ERROR'] as VerifyStatus[]).filter((s) => n(s)).map((s) => `${n(s)} ${s}`)
    this.context.stderr.write(
      `backup: verified ${r.files} files under ${r.root}: ${parts.join(', ') || 'nothing to check'}` +
        (r.incremental ? ` (${r.trusted} unchanged files trusted without reading)` : '') +
        (r.signatureCheck === 'pubkey'
          ? '; Ed25519 signature valid for the given key'
          : r.signatureCheck === 'embedded-key'
            ? '; Ed25519 signature matches the key embedded in the report (the report is unchanged since signing; only --pubkey proves who signed)'
            : r.signatureCheck === 'no-key'
              ? '; the report is signed but embeds no public key: give --pubkey to check who signed it'
              : '') +
        '\n',
    )
    return code
  }
}
