import { Command, Option } from 'clipanion'

import { describeDamage, history } from '../../explore'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { DstCommand } from '../base'
import { bytes, localTime, shown, table } from '../format'
import { parseName } from '../../names'

export default class HistoryCommand extends DstCommand {
  static paths = [['history']]
  static usage = Command.Usage({
    description: 'Every stored version of one file',
    details: `
      Every stored version of PATH (relative to the backed-up folder; a byte of a name that is not UTF-8 is written
      \`\\xNN\`), oldest first, then the copy the mirror holds now.

      Exit codes: 0; 1 the backup knows nothing of PATH, or some metadata is damaged; 2; 64.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup history".
    `,
    examples: [['All versions of a file', '$0 history Projects/thesis/chapter1.tex --config usb.json']],
  })

  file = Option.String({ name: 'PATH' })

  async run(): Promise<ExitCodeValue> {
    const h = await history(this.backupDir(), parseName(this.file))
    const found = h.versions.length > 0 || h.mirror !== null
    const code = found && !h.damaged.length ? ExitCode.Ok : ExitCode.Partial
    if (this.json) {
      this.print(h)
      return code
    }
    const c = this.colors
    const out = this.context.stdout
    for (const d of h.damaged) this.warn(`${describeDamage(d)}; versions of ${shown(h.path)} in it are not shown`)
    if (!found) {
      this.context.stderr.write(`backup: ${shown(h.path)}: no increment and not the mirror know this path\n`)
      return ExitCode.Partial
    }
    const rows = [['INCREMENT', 'TIME', 'OP', 'SIZE', 'MTIME', 'SHA-256'].map(c.bold)]
    for (const v of h.versions) {
      const op = v.op + (v.carried_from ? ` (from ${v.carried_from})` : '') + (v.present ? '' : ' [file missing]')
      const colored = v.category === 'deleted' ? c.red(op) : c.green(op)
      rows.push([v.increment, localTime(Date.parse(v.timestamp), true), colored, bytes(v.size), localTime(Number(BigInt(v.mtime_ns) / 1_000_000n), true), v.sha256 ?? '-'])
    }
    if (h.mirror) {
      const m = h.mirror
      const what = (m.tracked ? 'current' : 'current, untracked') + (m.present ? '' : ' [file missing]')
      rows.push(['mirror', '', what, bytes(m.size), localTime(Number(BigInt(m.mtimeNs) / 1_000_000n), true), m.sha256 ?? '-'])
    }
    out.write(`${shown(h.path)}\n${table(rows, [3])}\n`)
    if (h.mirror && !h.mirror.tracked) out.write(c.dim('untracked files keep only their current copy in the mirror (no history)\n'))
    return code
  }
}
