import { Command, Option } from 'clipanion'

import { describeDamage, listIncrements } from '../../explore'
import { DstCommand } from '../base'
import { bytes, localTime, table } from '../format'

export default class ListCommand extends DstCommand {
  static paths = [['list']]
  static usage = Command.Usage({
    description: 'List every increment, oldest first',
    details: `
      For each increment: its name, time (local), how many files it added, changed and recorded as deleted,
      entries carried in by \`prune\`, and the bytes of the versions it holds. An increment whose metadata is
      missing or damaged (a quick check of each file's head and end) is listed as such, and a line on stderr names
      the file, what is wrong and the command that rebuilds it (\`backup recreate --backup NAME\`); exit 1 then.

      \`--detailed\` also walks the folders and counts each inode once across the mirror and all increments:
      EXCLUSIVE is what deleting that increment would free, DISK what its files take on disk in total.

      Increments made by the original backup.py are listed as they are (origin \`original\`, ordered by their recorded
      time like all others); its metadata does not tell new from changed, so NEW is \`?\` and CHANGED counts both
      (\`newOrChanged\` in JSON, \`new\`/\`changed\` 0).

      \`--json\`: \`{ increments: [{ name, timestamp, origin, hasMetadata, metadataError, new, changed, newOrChanged?, deleted,
      carried, files, bytes, exclusiveBytes, diskBytes, damaged }], totalDiskBytes, mirrorDiskBytes, damaged: [{ increment,
      file, problem, fix }] }\`. Exit codes: 0, 1 (some metadata missing or damaged), 2 (unreadable folder), 64.
    `,
    examples: [
      ['List the increments of the USB profile', '$0 list --config usb.json'],
      ['Show what deleting each increment would free', '$0 list --detailed --dst /media/usb/backup'],
    ],
  })

  detailed = Option.Boolean('--detailed', false, { description: 'Also the space each increment really holds (walks every file)' })

  async run(): Promise<number> {
    const l = await listIncrements(this.backupDir(), { detailed: this.detailed })
    const code = l.damaged.length ? 1 : 0
    if (this.json) {
      this.print(l)
      return code
    }
    const c = this.colors
    const out = this.context.stdout
    if (l.increments.length === 0) {
      out.write('no increments yet\n')
      return 0
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
    for (const d of l.damaged) this.context.stderr.write(`${c.yellow('warning')}: ${describeDamage(d)}\n`)
    return code
  }
}
