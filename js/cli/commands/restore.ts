import { Command, Option } from 'clipanion'

import { describePendingRun, restore } from '../../explore'
import { ExitCode } from '../../errors'
import { DstCommand } from '../base'
import { ProgressLine, bytes, shown } from '../format'
import { parseName } from '../../names'

export default class RestoreCommand extends DstCommand {
  static paths = [['restore']]
  static usage = Command.Usage({
    description: 'Restore files as they were at a point in time',
    details: `
      Copies into \`--to DIR\` the state of each PATH (a file or folder relative to the backed-up folder; none =
      everything) as of \`--at WHEN\`: an increment name, or a date/date-time (\`2024-01-15\` = the end of that day,
      \`2024-01-15T10:30\` local time, \`2024-01-15T09:30:00Z\`), meaning the newest increment at or before it.
      Without \`--at\`: the latest state (the mirror as the last run left it).

      A tracked file gets the version stored in the newest increment at or before WHEN that mentions it, and is
      not restored if that mention is a deletion. An untracked file has no history: its current mirror copy is
      restored (counted as "untracked" in the output). Files keep their mode (setuid/setgid included), mtime,
      xattrs and ACLs (security.* and trusted.* only as root), and owner as root; files that were hard links of
      each other at that point come back as hard links when restored together.

      Safety: restored files are copies (editing them never touches the backup); nothing is written outside
      \`--to\`; a symlink on the way inside \`--to\` is refused, never followed; paths in the metadata that are
      absolute or contain \`..\` are refused; an existing file is left alone unless \`--overwrite\`. Each copy is
      checked against the recorded SHA-256 (a mismatch is reported as \`checksum-mismatch\`).

      After an interrupted run (its journal is still there), mirror files it already replaced are restored as the
      mirror holds them (their newer copy; no hash is recorded for it yet) and files it removed are not; a note names
      the unfinished run and says the next \`backup run\` completes it. None of this is reported as damage.

      \`--json\`: \`{ at, dryRun, files, bytes, restored, untracked, existing, deletedAtPoint, pendingRun, pending, items (dry run:
      [{ path, from, untracked, size }]), warnings: [{ path, code, message }] }\`.
      Exit codes: 0 all restored; 1 some files not restored or damaged (see warnings); 2 failed; 64 bad usage.
    `,
    examples: [
      ['Restore everything as it was on 15 January into ~/restored', '$0 restore --to ~/restored --at 2024-01-15 --config usb.json'],
      ['One folder as of a given increment', '$0 restore Projects/thesis --to /tmp/thesis --at backup_20240115_103000'],
      ['See what would be restored, and from where', '$0 restore docs/report.pdf --to . --dry-run --json'],
      ['Put the latest backup back over the original folder', '$0 restore --to ~/Documents --overwrite'],
    ],
  })

  to = Option.String('--to', { required: true, description: 'Folder to restore into (created if needed)' })
  at = Option.String('--at', { description: 'Increment name or ISO date/date-time; default: the latest state' })
  overwrite = Option.Boolean('--overwrite', false, { description: 'Replace files that exist in the target' })
  dryRun = Option.Boolean('--dry-run,-n', false, { description: 'Show what would be restored; write nothing' })
  targets = Option.Rest({ name: 'PATH' })

  async run(): Promise<number> {
    const line = new ProgressLine(this.context.stderr as NodeJS.WriteStream, this.tty, { apply: 'restore', plan: 'plan' })
    const controller = new AbortController()
    const onSignal = () => controller.abort()
    process.once('SIGINT', onSignal)
    let r
    try {
      r = await restore(this.backupDir(), {
        paths: this.targets.map(parseName),
        to: this.to,
        at: this.at,
        overwrite: this.overwrite,
        dryRun: this.dryRun,
        onProgress: this.tty ? line.update : undefined,
        signal: controller.signal,
      })
    } finally {
      line.done()
      process.off('SIGINT', onSignal)
    }
    const code = r.warnings.length ? ExitCode.Partial : ExitCode.Ok
    if (this.json) {
      this.print(r)
      return code
    }
    const c = this.colors
    const out = this.context.stdout
    for (const w of r.warnings) this.context.stderr.write(`${c.yellow('warning')}: ${w.path ? shown(w.path) + ': ' : ''}${w.code}: ${w.message}\n`)
    const point = r.at ? `as of ${r.at}` : 'latest state'
    if (r.dryRun) {
      if (!this.quiet) for (const i of r.items) out.write(`${i.from.padEnd(24)} ${shown(i.path)}${i.untracked ? c.dim('  (untracked: current copy)') : ''}\n`)
      out.write(`dry run (${point}): ${r.files} files, ${bytes(r.bytes)} would be restored into ${this.to}; ${r.existing} exist there\n`)
    } else if (!this.quiet) {
      out.write(`restored ${r.restored} of ${r.files} files (${bytes(r.bytes)}, ${point}) into ${this.to}\n`)
    }
    if (!this.quiet && r.untracked) out.write(`${r.untracked} untracked files came from the mirror's current copy (their history is not kept)\n`)
    if (r.pendingRun) {
      const n = r.pending ? `: ${r.pending} files were taken as it left them in the mirror (replaced: their newer copy, not checked against a hash; removed: not restored)` : ''
      this.context.stderr.write(`${c.yellow('note')}: ${describePendingRun(r.pendingRun)}${n}\n`)
    }
    if (!this.quiet && r.deletedAtPoint) out.write(c.dim(`${r.deletedAtPoint} files were deleted at that point in time and are not restored\n`))
    return code
  }
}
