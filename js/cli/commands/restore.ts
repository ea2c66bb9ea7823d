import { Command, Option } from 'clipanion'

import { describePendingRun, restore } from '../../explore'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { DstCommand } from '../base'
import { bytes, shown } from '../format'
import * as options from '../options'
import { parseName } from '../../names'

export default class RestoreCommand extends DstCommand {
  static paths = [['restore']]
  static usage = Command.Usage({
    description: 'Restore files as they were at a point in time',
    details: `
      Copies into \`--to DIR\` the state of each PATH (none = everything) as of \`--at WHEN\`: an increment name or a
      date/date-time (\`2024-01-15\` = the end of that day, \`2024-01-15T10:30\` local, \`2024-01-15T09:30:00Z\`);
      without \`--at\`, the latest state. Nothing is written outside \`--to\`; existing files are left alone unless
      \`--overwrite\`; every copy is checked against its recorded SHA-256.

      Exit codes: 0 all restored; 1 some files not restored or damaged (see warnings); 2 failed; 64 bad usage.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup restore".
    `,
    examples: [
      ['Restore everything as it was on 15 January into ~/restored', '$0 restore --to ~/restored --at 2024-01-15 --config usb.json'],
      ['One folder as of a given increment', '$0 restore Projects/thesis --to /tmp/thesis --at backup_20240115_103000'],
      ['See what would be restored, and from where', '$0 restore docs/report.pdf --to . --dry-run --json'],
      ['Put the latest backup back over the original folder', '$0 restore --to ~/Documents --overwrite'],
    ],
  })

  to = Option.String('--to', { required: true, validator: options.isPath, description: 'Folder to restore into (created if needed)' })
  at = Option.String('--at', { description: 'Increment name or ISO date/date-time; default: the latest state' })
  overwrite = Option.Boolean('--overwrite', false, { description: 'Replace files that exist in the target' })
  dryRun = options.dryRun('Show what would be restored; write nothing')
  targets = Option.Rest({ name: 'PATH' })

  async run(): Promise<ExitCodeValue> {
    const controller = new AbortController()
    const onSignal = () => controller.abort()
    process.once('SIGINT', onSignal)
    let r
    try {
      r = await this.withProgress({ apply: 'restore', plan: 'plan' }, (onProgress) =>
        restore(this.backupDir(), {
          paths: this.targets.map(parseName),
          to: this.to,
          at: this.at,
          overwrite: this.overwrite,
          dryRun: this.dryRun,
          onProgress,
          signal: controller.signal,
        }),
      )
    } finally {
      process.off('SIGINT', onSignal)
    }
    const code = r.warnings.length ? ExitCode.Partial : ExitCode.Ok
    if (this.json) {
      this.print(r)
      return code
    }
    const c = this.colors
    const out = this.context.stdout
    for (const w of r.warnings) this.warning(w)
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
      this.context.stderr.write(`${this.stderrColors.yellow('note')}: ${describePendingRun(r.pendingRun)}${n}\n`)
    }
    if (!this.quiet && r.deletedAtPoint) out.write(c.dim(`${r.deletedAtPoint} files were deleted at that point in time and are not restored\n`))
    return code
  }
}
