import { Command, Option } from 'clipanion'

import { prune, removeIncrements } from '../../explore'
import { ConfigError, ExitCode, type ExitCodeValue } from '../../errors'
import { DstCommand } from '../base'
import * as options from '../options'

export default class PruneCommand extends DstCommand {
  static paths = [['prune']]
  static usage = Command.Usage({
    description: 'Remove whole increments by a retention policy',
    details: `
      Keeps the N newest increments (\`--keep-last\`) and the newest of each of the N most recent days, ISO weeks and
      months that have one (\`--keep-daily\`, \`--keep-weekly\`, \`--keep-monthly\`), or removes exactly the increments
      named by \`--remove\`. Point-in-time restore at every kept increment stays exactly as before. A killed prune is
      finished by the next command that changes the backup.

      Exit codes: 0; 2; 64.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup prune".
    `,
    examples: [
      ['Keep the last 10 increments', '$0 prune --keep-last 10 --config usb.json'],
      ['Keep 7 daily, 4 weekly and 12 monthly increments; show first', '$0 prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run'],
      ['Remove one increment safely (its entries move into the next one)', '$0 prune --remove backup_20240115_103000'],
    ],
  })

  keepLast = options.count('--keep-last', 0, 'Keep the N newest increments')
  keepDaily = options.count('--keep-daily', 0, 'Keep the newest increment of each of the last N days that have one')
  keepWeekly = options.count('--keep-weekly', 0, 'Same per ISO week')
  keepMonthly = options.count('--keep-monthly', 0, 'Same per month')
  remove = Option.Array('--remove', [], { description: 'Remove exactly this increment instead of applying a policy (repeatable)' })
  dryRun = options.dryRun('Show the decisions; remove nothing')

  async run(): Promise<ExitCodeValue> {
    const policy = { keepLast: this.keepLast, keepDaily: this.keepDaily, keepWeekly: this.keepWeekly, keepMonthly: this.keepMonthly }
    if (this.remove.length && Object.values(policy).some((v) => v !== undefined)) {
      throw new ConfigError('--remove names increments itself: give it without --keep-* options')
    }
    const r = await this.withProgress({ apply: 'prune' }, (onProgress) => {
      const opts = { dryRun: this.dryRun, onProgress }
      return this.remove.length ? removeIncrements(this.backupDir(), this.remove, opts) : prune(this.backupDir(), policy, opts)
    })
    if (this.json) {
      this.print(r)
      return ExitCode.Ok
    }
    const c = this.colors
    const out = this.context.stdout
    for (const f of r.finished) out.write(`${f}\n`)
    if (!this.quiet) {
      for (const d of r.decisions) {
        const carried = r.carried[d.name] ? c.dim(` (+${r.carried[d.name]} carried)`) : ''
        out.write(`${d.keep ? c.green('keep  ') : c.red('remove')} ${d.name}${d.keep ? c.dim(` [${d.reasons.join(', ')}]`) : ''}${carried}\n`)
      }
    }
    const carried = Object.values(r.carried).reduce((a, b) => a + b, 0)
    out.write(
      `${r.dryRun ? 'would remove' : 'removed'} ${r.removed.length} increments, kept ${r.kept.length}; ` +
        `${carried} entries ${r.dryRun ? 'would be' : ''} carried into kept increments\n`.replace('  ', ' '),
    )
    return ExitCode.Ok
  }
}
