import { Command, Option } from 'clipanion'

import { describeDamage, history } from '../../explore'
import { DstCommand } from '../base'
import { bytes, localTime, shown, table } from '../format'
import { parseName } from '../../names'

export default class HistoryCommand extends DstCommand {
  static paths = [['history']]
  static usage = Command.Usage({
    description: 'Every stored version of one file',
    details: `
      PATH is relative to the backed-up folder (a byte of a name that is not UTF-8 is written \`\\xNN\`, as the
      output shows it). Lists each increment that mentions the file, oldest first: the
      increment's time, the version's size, mtime, what happened (new, changed, deleted) and its SHA-256, then the
      copy the mirror holds now (and whether the file is tracked; untracked files have no history). Increments whose
      metadata is missing or damaged cannot be searched for the file: each is named on stderr with what is wrong and
      \`backup recreate --backup NAME\`, and the exit code is 1 (the list may be incomplete).

      \`--json\`: \`{ path, versions: [{ increment, timestamp, present, size, mtime, mtime_ns, mode, kind, category, op,
      sha256, stored_as, carried_from?, link?, xattrs?, inconsistent? }], mirror: { size, mtimeNs, mode, kind, tracked, sha256, present } | null, skipped,
      damaged: [{ increment, file, problem, fix }] }\`.
      Exit codes: 0, 1 if the backup knows nothing of PATH or some metadata is damaged, 2, 64.
    `,
    examples: [['All versions of a file', '$0 history Projects/thesis/chapter1.tex --config usb.json']],
  })

  file = Option.String({ name: 'PATH' })

  async run(): Promise<number> {
    const h = await history(this.backupDir(), parseName(this.file))
    const found = h.versions.length > 0 || h.mirror !== null
    const code = found && !h.damaged.length ? 0 : 1
    if (this.json) {
      this.print(h)
      return code
    }
    const c = this.colors
    const out = this.context.stdout
    for (const d of h.damaged) this.context.stderr.write(`${c.yellow('warning')}: ${describeDamage(d)}; versions of ${shown(h.path)} in it are not shown\n`)
    if (!found) {
      this.context.stderr.write(`backup: ${shown(h.path)}: no increment and not the mirror know this path\n`)
      return 1
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
