import { Command, Option } from 'clipanion'

import { describeDamage, listIncrements } from '../../explore'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { DstCommand } from '../base'
import { bytes, localTime, table } from '../format'

export default class ListCommand extends DstCommand {
  static paths = [['list']]
  static usage = Command.Usage({
    description: 'List every increment, oldest first',
    details: `
      For each increment: name, time (local), files added, changed, deleted and carried in by \`prune\`, and the bytes
      it holds. \`--detailed\` also walks the files to show what deleting each increment would free. Missing or damaged
      metadata is listed as such and named on stderr with the fix.

      Exit codes: 0; 1 some metadata missing or damaged; 2 unreadable folder; 64.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup list".
    `,
    examples: [
      ['List the increments of the USB profile', '$0 list --config usb.json'],
      ['Show what deleting each increment would free', '$0 list --detailed --dst /media/usb/backup'],
    ],
  })

  detailed = Option.Boolean('--detailed', false, { description: 'Also the space each increment really holds (walks every file)' })

  async run(): Promise<ExitCodeValue> {
    const l = await listIncrements(this.backupDir(), { detailed: this.detailed })
    const code = l.damaged.length ? ExitCode.Partial : ExitCode.Ok
    if (this.json) {
      this.print(l)
      return code
    }
    const c = this.colors
    const out = this.context.stdout
    if (l.increments.length === 0) {
      out.write('no increments yet\n')
      return ExitCode.Ok
    }
    const head = ['NAME', 'TIME', 'NEW', 'CHANGED', 'DELETED', 'CARRIED', 'FILES', 'SIZE']
    if (this.detailed) head.push('EXCLUSIVE', 'DISK')
    const rows = [head.map((h) => c.bold(h))]
    for (const i of l.increments) {
      const time = localTime(Date.parse(i.timestamp), true)
      if (!i.hasMetadata || i.metadataError) {
        const why = i.hasMetadata ? 'damaged' : 'missing'
        rows.push([i.name, time, c.yellow(why), '', '', '', '', '', ...(this.detailed ? [bytes(i.exclusiveBytes ?? 0), bytes(i.diskBytes ?? 0)] : [])])
        continue
      }
      const origin = i.origin && i.origin !== 'run' ? c.dim(` (${i.origin})`) : ''
      // backup.py's own increments do not tell new from changed.
      const nc = i.newOrChanged
      const row = [i.name + origin, time, nc != null ? '?' : String(i.new), nc != null ? `${nc} new or changed` : String(i.changed), String(i.deleted), String(i.carried), String(i.files), bytes(i.bytes)]
      if (this.detailed) row.push(bytes(i.exclusiveBytes ?? 0), bytes(i.diskBytes ?? 0))
      rows.push(row)
    }
    out.write(table(rows, [2, 3, 4, 5, 6, 7, 8, 9]) + '\n')
    if (this.detailed) {
      out.write(`\n${l.increments.length} increments · mirror ${bytes(l.mirrorDiskBytes ?? 0)} on disk · backup folder ${bytes(l.totalDiskBytes ?? 0)} on disk (each inode once)\n`)
    }
    for (const d of l.damaged) this.warn(describeDamage(d))
    return code
  }
}
