import fs from 'node:fs'
import path from 'node:path'

import { Command, Option } from 'clipanion'

import { describeDamage, search, type SearchHit } from '../../explore'
import { restoreScript } from '../../explore/script'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { DstCommand } from '../base'
import { bytes, localTime, shown } from '../format'
import * as options from '../options'
import { parseName } from '../../names'

export default class SearchCommand extends DstCommand {
  static paths = [['search']]
  static usage = Command.Usage({
    description: 'Find file versions across increments',
    details: `
      Every filter given must match: \`--mask\` (repeatable, one must match; \`-i\` ignores case), \`--size\` (\`500K\`,
      \`>100M\`, \`<=1G\`, \`10K-100K\`), \`--time\` (mtime, local: \`2024-01-15\`, \`>2024-01-01\`,
      \`2024-01-01..2024-01-15\`), \`--path\` (folder prefix or glob), \`--last-backups N\`. Results are grouped by
      increment, then folder: ✅ a stored version, ❌ a deletion. \`--generate-script FILE\` writes a POSIX sh script that
      copies the newest found version of each path into the folder given as its argument.

      Exit codes: 0 (also when nothing is found); 1 some metadata missing or damaged; 2 unreadable backup; 64 invalid filter.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup search".
    `,
    examples: [
      ['Find Python, PDF and Markdown files (as the original tool)', '$0 search --dst /media/usb/backup --mask "*.py" --mask "*.pdf" --mask "*.md"'],
      ['Everything named like "report", over 10 MiB, changed in January', '$0 search --mask report --size ">10M" --time 2024-01-01..2024-01-31'],
      ['Only under Projects/, in the last 3 increments, with full paths', '$0 search --path Projects --last-backups 3 --full-paths'],
      ['Write a restore script for what was found', '$0 search --mask "*.docx" --generate-script restore.sh && sh restore.sh ~/recovered'],
    ],
  })

  masks = options.masks()
  ignoreCase = options.ignoreCase()
  size = options.size()
  time = options.time()
  pathFilters = Option.Array('--path', [], { description: 'Folder prefix or glob of the relative path (repeatable)' })
  lastBackups = options.count('--last-backups', 1, 'Only the N newest increments')
  fullPaths = Option.Boolean('--full-paths', false, { description: 'Print the full path of each stored file' })
  script = options.pathOption('--generate-script', 'Write a POSIX sh restore script for the results to FILE')

  async run(): Promise<ExitCodeValue> {
    const dst = this.backupDir()
    const r = await search(dst, {
      masks: this.masks.map(parseName),
      ignoreCase: this.ignoreCase,
      size: this.size,
      time: this.time,
      paths: this.pathFilters,
      lastBackups: this.lastBackups,
    })
    if (this.script) {
      const text = restoreScript(dst, r.hits, ['backup', ...process.argv.slice(2)].join(' '))
      fs.writeFileSync(this.script, text, { mode: 0o755 })
    }
    const code = r.damaged.length ? ExitCode.Partial : ExitCode.Ok
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
    for (const d of r.damaged) this.warn(`not searched: ${describeDamage(d)}`)
    if (this.script) out.write(`restore script written to ${this.script}: sh ${this.script} TARGET_DIR\n`)
    return code
  }
}

function op(h: SearchHit): string {
  return h.carried_from ? `${h.op} (carried from ${h.carried_from})` : h.op
}
