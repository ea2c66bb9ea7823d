import fs from 'node:fs'

import { Command, Option } from 'clipanion'

import { diff, storedFile, type DiffItem, type DiffResult } from '../../explore'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { DstCommand } from '../base'
import { bytes, shown } from '../format'
import { parseName } from '../../names'

/** Files larger than this are not diffed as text (the patch would be unreadable anyway). */
const PATCH_MAX_BYTES = 8 * 1024 * 1024

/** The text of a stored version, or why it cannot be shown as text. */
function readText(dst: string, increment: string, rel: string): { text: string } | { why: string } {
  let buf: Buffer
  try {
    const file = storedFile(dst, increment, rel)
    const st = fs.lstatSync(file)
    if (st.isSymbolicLink()) return { text: `-> ${fs.readlinkSync(file, 'utf8')}\n` }
    if (st.size > PATCH_MAX_BYTES) return { why: `larger than ${bytes(PATCH_MAX_BYTES)}` }
    buf = fs.readFileSync(file)
  } catch (e) {
    return { why: `cannot read the stored file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` }
  }
  // Binary as git and diff(1) judge it: a NUL byte, or bytes that are not UTF-8.
  if (buf.subarray(0, 8000).includes(0)) return { why: 'binary' }
  const text = buf.toString('utf8')
  if (text.includes('\uFFFD') && !Buffer.from(text, 'utf8').equals(buf)) return { why: 'binary' }
  return { text }
}

/** A unified diff of one item, or the line saying why there is none. */
export function patchOf(dst: string, d: DiffResult, it: DiffItem): string {
  const a = it.from ? readText(dst, it.from.increment, it.path) : { text: '' }
  const b = it.to ? readText(dst, it.to.increment, it.path) : { text: '' }
  const aName = it.from ? `a/${it.path}` : '/dev/null'
  const bName = it.to ? `b/${it.path}` : '/dev/null'
  if ('why' in a || 'why' in b) {
    const why = 'why' in a ? a.why : (b as { why: string }).why
    return `Binary files ${aName} and ${bName} differ (${why})\n`
  }
  // Loaded only for --patch: every other command starts without it.
  const { createTwoFilesPatch } = require('diff') as typeof import('diff')
  return createTwoFilesPatch(aName, bName, a.text, b.text, it.from?.increment ?? d.from, it.to?.increment ?? d.to)
}

export default class DiffCommand extends DstCommand {
  static paths = [['diff']]
  static usage = Command.Usage({
    description: 'What changed between two points in time',
    details: `
      The tracked files added, removed and changed between \`--from WHEN\` and \`--to WHEN\` (each an increment name or
      a date/date-time as \`restore --at\` takes it; default: the two newest increments), under each PATH (none =
      everything), with sizes and SHA-256s. \`--patch\` prints a unified diff of the two stored versions of each text
      file (binary files say so). Untracked files keep no history and are not compared.

      Exit codes: 0; 2 unreadable backup or damaged metadata before \`--to\`; 64 bad \`--from\`/\`--to\` or path.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup diff".
    `,
    examples: [
      ['What the last run changed', '$0 diff --config usb.json'],
      ['Between two days, only under Projects/', '$0 diff --from 2024-01-01 --to 2024-01-15 Projects --dst /media/usb/backup'],
      ['The text changes of one file since an increment', '$0 diff --from backup_20240115_103000 --patch docs/notes.md'],
      ['For scripts', '$0 diff --json --config usb.json'],
    ],
  })

  from = Option.String('--from', { description: 'Increment name or ISO date/date-time; default: the increment before --to' })
  to = Option.String('--to', { description: 'Increment name or ISO date/date-time; default: the newest increment' })
  patch = Option.Boolean('--patch,-p', false, { description: 'Also print a unified diff of each changed text file' })
  targets = Option.Rest({ name: 'PATH' })

  async run(): Promise<ExitCodeValue> {
    const dst = this.backupDir()
    const d = await diff(dst, { from: this.from, to: this.to, paths: this.targets.map(parseName) })
    if (this.json) {
      this.print(this.patch ? { ...d, patches: Object.fromEntries(d.items.map((it) => [it.path, patchOf(dst, d, it)])) } : d)
      return ExitCode.Ok
    }
    const c = this.colors
    const out = this.context.stdout
    out.write(`${c.bold(d.from)} → ${c.bold(d.to)}: ${d.added} added, ${d.removed} removed, ${d.changed} changed\n`)
    const sha = (s: string | null | undefined) => (s ? s.slice(0, 12) : '-')
    for (const it of d.items) {
      if (it.status === 'added') out.write(`${c.green('+')} ${shown(it.path)}  ${c.dim(`${bytes(it.to!.size)}  ${sha(it.to!.sha256)}`)}\n`)
      else if (it.status === 'removed') out.write(`${c.red('-')} ${shown(it.path)}  ${c.dim(`${bytes(it.from!.size)}  ${sha(it.from!.sha256)}`)}\n`)
      else {
        const f = it.from!
        const t = it.to!
        out.write(`${c.yellow('~')} ${shown(it.path)}  ${c.dim(`${bytes(f.size)} → ${bytes(t.size)}  ${sha(f.sha256)} → ${sha(t.sha256)}`)}\n`)
      }
      if (this.patch) out.write(patchOf(dst, d, it))
    }
    return ExitCode.Ok
  }
}
