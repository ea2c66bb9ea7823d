import { Command, Option } from 'clipanion'

import { prune, removeIncrements } from '../../explore'
import { ConfigError } from '../../errors'
import { DstCommand } from '../base'
import { ProgressLine } from '../format'

function count(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v)) throw new ConfigError(`${flag}: expected a whole number ≥ 0, got ${JSON.stringify(v)}`)
  return Number(v)
}

export default class PruneCommand extends DstCommand {
  static paths = [['prune']]
  static usage = Command.Usage({
    description: 'Remove whole increments by a retention policy',
    details: `
      Keeps the N newest increments (\`--keep-last\`) and the newest increment of each of the N most recent days,
      ISO weeks and months that have one (\`--keep-daily\`, \`--keep-weekly\`, \`--keep-monthly\`, local time); an
      increment kept by any rule is kept, and the newest increment is always kept. At least one rule is needed,
      or \`--remove NAME\` (repeatable) to remove exactly those increments the same safe way.

      Point-in-time restore at every kept increment stays exactly as before: an entry of a removed increment that
      the next kept increment does not mention is carried into it (hardlinked, recorded with \`carried_from\`).
      Removed increments are first renamed into \`.axiomatic/trash/\` (they disappear at once and atomically),
      then deleted in parallel. A killed prune is finished by the next command that changes the backup.

      \`--json\`: \`{ dryRun, decisions: [{ name, keep, reasons }], removed, kept, carried: { NAME: n }, filesRemoved,
      finished }\`. Exit codes: 0; 2; 64.
    `,
    examples: [
      ['Keep the last 10 increments', '$0 prune --keep-last 10 --config usb.json'],
      ['Keep 7 daily, 4 weekly and 12 monthly increments; show first', '$0 prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run'],
      ['Remove one increment safely (its entries move into the next one)', '$0 prune --remove backup_20240115_103000'],
    ],
  })

  keepLast = Option.String('--keep-last', { description: 'Keep the N newest increments' })
  keepDaily = Option.String('--keep-daily', { description: 'Keep the newest increment of each of the last N days that have one' })
  keepWeekly = Option.String('--keep-weekly', { description: 'Same per ISO week' })
  keepMonthly = Option.String('--keep-monthly', { description: 'Same per month' })
  remove = Option.Array('--remove', [], { description: 'Remove exactly this increment instead of applying a policy (repeatable)' })
  dryRun = Option.Boolean('--dry-run,-n', false, { description: 'Show the decisions; remove nothing' })

  async run(): Promise<number> {
    const policy = {
      keepLast: count('--keep-last', this.keepLast),
      keepDaily: count('--keep-daily', this.keepDaily),
      keepWeekly: count('--keep-weekly', this.keepWeekly),
      keepMonthly: count('--keep-monthly', this.keepMonthly),
    }
    const line = new ProgressLine(this.context.stderr as NodeJS.WriteStream, this.tty, { apply: 'prune' })
    let r
    try {
      const opts = { dryRun: this.dryRun, onProgress: this.tty ? line.update : undefined }
      if (this.remove.length && Object.values(policy).some((v) => v !== undefined)) {
        throw new ConfigError('--remove names increments itself: give it without --keep-* options')
      }
      r = this.remove.length ? await removeIncrements(this.backupDir(), this.remove, opts) : await prune(this.backupDir(), policy, opts)
    } finally {
      line.done()
    }
    if (this.json) {
      this.print(r)
      return 0
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
    return 0
  }
}
