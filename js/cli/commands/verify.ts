import { Command, Option, UsageError } from 'clipanion'

import { loadConfig } from '../../config'
import { parseAlgos, verify, verifyBackup, type VerifyStatus } from '../../integrity'
import { describeDamage, describePendingRun, requireBackupDir } from '../../explore'
import { ExitCode } from '../../errors'
import { BaseCommand } from '../base'
import { ProgressLine, bytes, colors, shown } from '../format'

export default class VerifyCommand extends BaseCommand {
  static paths = [['verify']]
  static usage = Command.Usage({
    description: 'Check files against a checksum report, or a backup against its recorded hashes',
    details: `
      \`verify REPORT\` first checks the report: a JSON report whose SHA3-512 does not match its data, or whose
      Ed25519 signature does not verify, is refused (exit 2) before any file is read. Without \`--pubkey\` a signature
      is checked against the public key embedded in the report: that proves the report was not changed after it was
      signed, not who signed it (anyone can re-sign with their own key); only \`--pubkey\` proves who signed, and
      with it an unsigned report is refused too. Then
      every file under the root (default: the report's \`root_data\`; \`--root\` for a copy elsewhere) is re-hashed
      and classified: OK, FAILED (content differs), CORRUPT (content differs while size and mtime did not: bit
      rot), MISSING, NEW (not in the report), ERROR (unreadable). Output as \`sha256sum -c\`: \`path: OK\`; \`--quiet\`
      prints only problems. \`--incremental\` trusts files whose size, mtime, inode and ctime are unchanged (a fast
      periodic check; only a full read finds bit rot). Check-line reports (\`sha256sum\`, \`b3sum\`, \`md5sum\` output)
      are read too (\`--algo blake3\` for b3sum lines, whose length equals SHA-256's).

      \`verify --backup DST\` (or the \`dst\` of \`--config\` with \`--backup\` alone) checks every version stored in every
      increment and every tracked mirror file against the SHA-256 in the metadata and mirror state (each inode
      read once). \`--repair\` replaces a corrupt mirror file from the source (the config's \`src\`, or \`--source\`)
      when the source still has the recorded hash (temp + rename), relinks increment versions of that content to
      the repaired copy, and says which versions cannot be repaired. An increment whose metadata is missing or damaged
      is named (file, what is wrong, \`backup recreate --backup NAME\`) and everything else is still checked (exit 1).
      After an interrupted run, mirror files it already replaced or removed are pending, not CORRUPT or MISSING:
      the output names the unfinished run and says that the next \`backup run\` completes it.

      \`--json\`: \`{ root, algorithms, incremental, digest, signatureEd25519, signatureCheck, files, trusted, bytesRead, counts,
      results: [{ path, status, detail? }] }\` (with \`--quiet\`, results lists only the problems), or for \`--backup\` \`{ increments, filesChecked, inodesRead, bytesRead,
      unverifiable, repaired, problems: [{ location, path, status, detail, repair }], damaged: [{ increment, file,
      problem, fix }], stateError, pendingRun: { increment, started, ops } | null, pending }\`.
      Exit codes: 0 all OK; 1 some FAILED/CORRUPT/MISSING/NEW; 2 report unusable, or only I/O errors; 64.
    `,
    examples: [
      ['Verify a signed report', '$0 verify /var/lib/reports/backups/all_1700000000.json --pubkey reports.pub'],
      ['Verify a copy of the data elsewhere, only problems', '$0 verify report.json --root /mnt/copy --quiet'],
      ['Fast nightly check', '$0 verify report.json --incremental'],
      ['Check a backup, repair the mirror from the source', '$0 verify --backup /media/usb/backup --repair --source ~/Documents'],
    ],
  })

  report = Option.String({ name: 'REPORT|DST', required: false })
  root = Option.String('--root', { description: 'Folder to verify (default: the report’s root_data)' })
  pubkey = Option.String('--pubkey', { description: 'Ed25519 public key: require the report to be signed by it' })
  incremental = Option.Boolean('--incremental', false, { description: 'Trust files whose size, mtime, inode and ctime are unchanged' })
  algo = Option.String('--algo', { description: 'Algorithm of check-line reports (e.g. blake3 for b3sum lines)' })
  threads = Option.String('--threads', { description: 'Hashing threads (default: all cores)' })
  backup = Option.String('--backup', { tolerateBoolean: true, description: 'Verify a backup folder (DST, or the dst of --config)' })
  repair = Option.Boolean('--repair', false, { description: 'With --backup: repair corrupt mirror files from the source' })
  source = Option.String('--source', { description: 'With --repair: the source folder (default: src of --config)' })

  private threadCount(): number | undefined {
    if (this.threads === undefined) return undefined
    if (!/^\d+$/.test(this.threads) || Number(this.threads) < 1) throw new UsageError(`--threads: expected a whole number ≥ 1, got ${this.threads}`)
    return Number(this.threads)
  }

  async run(): Promise<number> {
    const tty = !!(this.context.stderr as NodeJS.WriteStream).isTTY && !this.quiet && !this.json
    const line = new ProgressLine(this.context.stderr as NodeJS.WriteStream, tty, { apply: 'verify' })
    const c = colors(!!(this.context.stdout as NodeJS.WriteStream).isTTY && !process.env.NO_COLOR)
    const out = this.context.stdout
    if (this.backup !== undefined) {
      // `--backup DST`, `--backup=DST`, or `--backup` alone (the dst of --config).
      if (typeof this.backup === 'string' && this.report) throw new UsageError('give either REPORT or --backup, not both')
      const dst = requireBackupDir(typeof this.backup === 'string' ? this.backup : (this.report ?? loadConfig(this.config).dst))
      const source = this.repair ? (this.source ?? loadConfig(this.config).src) : undefined
      let r
      try {
        r = await verifyBackup(dst, { source, threads: this.threadCount(), onProgress: tty ? line.update : undefined })
      } finally {
        line.done()
      }
      const bad = r.problems.filter((p) => !(p.repair ?? '').startsWith('re'))
      const code =
        bad.some((p) => p.status !== 'ERROR') || r.damaged.length || r.stateError ? ExitCode.Partial : bad.length ? ExitCode.Failed : ExitCode.Ok
      if (this.json) {
        this.print(r)
        return code
      }
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
      }
      return code
    }
    if (!this.report) throw new UsageError('verify needs a REPORT file (or --backup DST)')
    if (this.repair) throw new UsageError('--repair goes with --backup')
    let r
    try {
      r = await verify(this.report, {
        root: this.root,
        pubkey: this.pubkey,
        incremental: this.incremental,
        threads: this.threadCount(),
        algo: this.algo ? parseAlgos(this.algo)[0] : undefined,
        all: !this.quiet,
        onProgress: tty ? line.update : undefined,
      })
    } finally {
      line.done()
    }
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
