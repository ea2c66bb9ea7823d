import fs from 'node:fs'
import path from 'node:path'

import { Command, Option } from 'clipanion'

import { describeDamage, search, type SearchHit } from '../../explore'
import { restoreScript } from '../../explore/script'
import { ConfigError } from '../../errors'
import { DstCommand } from '../base'
import { bytes, localTime, shown } from '../format'
import { parseName } from '../../names'

export default class SearchCommand extends DstCommand {
  static paths = [['search']]
  static usage = Command.Usage({
    description: 'Find file versions across increments',
    details: `
      Every filter given must match. \`--mask\` (repeatable; one must match) is a glob on the file name or on the
      relative path; a mask without wildcards means \`*MASK*\`; \`*\` also crosses \`/\` as in Python's fnmatch. A
      byte of a name that is not UTF-8 is written \`\\xNN\` in masks, as the output shows it.
      \`--size\`: \`500K\` (exactly), \`>100M\`, \`>=100M\`, \`<1G\`, \`<=1G\`, \`10K-100K\` (K/M/G/T are 1024-based).
      \`--time\` (file mtime, local time): \`2024-01-15\` (that day), \`>2024-01-01\` (from its start on),
      \`<2024-01-31\` (before its start), \`<=2024-01-31\` (up to its end), \`2024-01-01..2024-01-15\` (both days included).
      \`--path\` (repeatable): a folder or file prefix of the relative path (\`docs\` matches \`docs/a.txt\`, not
      \`docs2/\`), or a glob when it has wildcards (\`*\` stays inside one folder, \`**\` crosses folders).

      Results are grouped by increment, then folder: ✅ a stored version, ❌ the version that was deleted.
      \`--generate-script FILE\` writes a POSIX sh script that copies the newest found version of each path
      into the folder given as its argument (\`sh FILE /restore/here\`); it never overwrites existing files.

      Increments whose metadata is missing or damaged are not searched: each is named on stderr with what is wrong
      and \`backup recreate --backup NAME\`, and the exit code is 1 (the answer may be incomplete).

      \`--json\`: \`{ incrementsSearched, skipped, damaged: [{ increment, file, problem, fix }], hits: [{ increment, path, size, mtime, mtime_ns, mode, kind,
      category, op, sha256, stored_as, carried_from? }], totals: { increments, files, bytes, tracked, deleted } }\`.
      Exit codes: 0 (also when nothing is found), 1 some metadata missing or damaged, 2 unreadable backup, 64 invalid filter.
    `,
    examples: [
      ['Find Python, PDF and Markdown files (as the original tool)', '$0 search --dst /media/usb/backup --mask "*.py" --mask "*.pdf" --mask "*.md"'],
      ['Everything named like "report", over 10 MiB, changed in January', '$0 search --mask report --size ">10M" --time 2024-01-01..2024-01-31'],
      ['Only under Projects/, in the last 3 increments, with full paths', '$0 search --path Projects --last-backups 3 --full-paths'],
      ['Write a restore script for what was found', '$0 search --mask "*.docx" --generate-script restore.sh && sh restore.sh ~/recovered'],
    ],
  })

  masks = Option.Array('--mask,-m', [], { description: 'Glob or text on the name or relative path (repeatable)' })
  ignoreCase = Option.Boolean('--ignore-case,-i', false, { description: 'Masks ignore case' })
  size = Option.String('--size', { description: 'Size filter: 500K, >100M, <1G, 10K-100K' })
  time = Option.String('--time', { description: 'mtime filter: 2024-01-15, >2024-01-01, <2024-01-31, 2024-01-01..2024-01-15' })
  pathFilters = Option.Array('--path', [], { description: 'Folder prefix or glob of the relative path (repeatable)' })
  lastBackups = Option.String('--last-backups', { description: 'Only the N newest increments' })
  fullPaths = Option.Boolean('--full-paths', false, { description: 'Print the full path of each stored file' })
  script = Option.String('--generate-script', { description: 'Write a POSIX sh restore script for the results to FILE' })

  async run(): Promise<number> {
    let last: number | undefined
    if (this.lastBackups !== undefined) {
      last = Number(this.lastBackups)
      if (!/^\d+$/.test(this.lastBackups) || last < 1) throw new ConfigError(`--last-backups: expected a whole number ≥ 1, got ${JSON.stringify(this.lastBackups)}`)
    }
    const dst = this.backupDir()
    const r = await search(dst, { masks: this.masks.map(parseName), ignoreCase: this.ignoreCase, size: this.size, time: this.time, paths: this.pathFilters, lastBackups: last })
    if (this.script) {
      const text = restoreScript(dst, r.hits, ['backup', ...process.argv.slice(2)].join(' '))
      fs.writeFileSync(this.script, text, { mode: 0o755 })
    }
    const code = r.damaged.length ? 1 : 0
    if (this.json) {
      this.print(r)
      return code
    }
    const c = this.colors
    const out = this.context.stdout
    const abs = path.resolve(dst)
    let inc = ''
    let dir: string | null = null
    for (const h of r.hits) {
      if (h.increment !== inc) {
        inc = h.increment
        dir = null
        const n = r.hits.filter((x) => x.increment === inc).length
        out.write(`\n${c.bold(inc)} ${c.dim(`(${n} file${n === 1 ? '' : 's'})`)}\n`)
      }
      const mark = h.category === 'track' ? '✅' : '❌'
      const info = `${bytes(h.size).padStart(10)}  ${localTime(Number(BigInt(h.mtime_ns) / 1_000_000n))}  ${op(h)}`
      if (this.fullPaths) {
        out.write(`  ${mark} ${shown(path.join(abs, h.increment, h.category, h.path))}  ${c.dim(info)}\n`)
        continue
      }
      const d = h.path.includes('/') ? h.path.slice(0, h.path.lastIndexOf('/') + 1) : './'
      if (d !== dir) {
        dir = d
        out.write(`  ${c.dim(shown(d))}\n`)
      }
      out.write(`    ${mark} ${shown(h.path.slice(d === './' ? 0 : d.length))}  ${c.dim(info)}\n`)
    }
    const t = r.totals
    out.write(
      `\n${t.files} file version${t.files === 1 ? '' : 's'} (${bytes(t.bytes)}) in ${t.increments} of ${r.incrementsSearched} increments: ` +
        `${t.tracked} stored, ${t.deleted} deleted\n`,
    )
    for (const d of r.damaged) this.context.stderr.write(`${c.yellow('warning')}: not searched: ${describeDamage(d)}\n`)
    if (this.script) out.write(`restore script written to ${this.script}: sh ${this.script} TARGET_DIR\n`)
    return code
  }
}

function op(h: SearchHit): string {
  return h.carried_from ? `${h.op} (carried from ${h.carried_from})` : h.op
}
