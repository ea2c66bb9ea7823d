import { Command, Option } from 'clipanion'
import * as t from 'typanion'

import { repair, repairExit, type RepairCopy } from '../../integrity/repair'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { BaseCommand } from '../base'
import { bytes, shown } from '../format'
import * as options from '../options'

/**
 * `--bwlimit RATE`, as rsync reads it: a bare number is KiB per second; a suffix B, K, M or G
 * (powers of 1024, an optional `/s`) says the unit. Coerced to bytes per second.
 */
export function parseRate(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmg])?(?:i?b)?(?:\/s)?$/i.exec(text.trim())
  if (!m) return undefined
  const unit = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? 'k').toLowerCase() as 'b' | 'k' | 'm' | 'g']
  const v = Number(m[1]) * unit
  return v >= 1 ? Math.floor(v) : undefined
}

const isRate = t.makeValidator<unknown, number>({
  test: (value, state): value is number => {
    const v = typeof value === 'string' ? parseRate(value) : undefined
    if (v === undefined) {
      state?.errors?.push(`${state.p ?? '.'}: expected a rate like 500 (KiB/s, as rsync), 64K, 2M or 1G per second, got ${JSON.stringify(value)}`)
      return false
    }
    if (state?.coercions && state.coercion) state.coercions.push([state.p ?? '.', state.coercion.bind(null, v)])
    return true
  },
})

export default class RepairCommand extends BaseCommand {
  static paths = [['repair']]
  static usage = Command.Usage({
    description: 'Heal servers from their checksum reports: the majority copy goes where a copy is damaged or lost',
    details: `
      Each SOURCE is a report folder, a report file, or \`ssh://[user@]host[:port]/path/to/output_dir\` (our reports or
      the original service's); each server's data is where its report's \`root_data\` says. For each file, the good
      version is the sha256 (and md5) a STRICT majority of the servers with a report for that group agree on; a server
      without the file, or with another version, gets it from one that has it. No majority (1–1, all different, on
      only 1 of 3): the file is undecided and nothing is done for it.

      Without \`--apply\` only the plan is shown and nothing changes anywhere. With \`--apply\`: the source copy is
      re-hashed on its server first, the copy is written to a temp file beside the target, hashed there, given the
      source's mode and mtime and renamed into place; a replaced copy is kept in \`--quarantine DIR\` on that server
      (default \`<output dir>/repair/quarantine-<stamp>/\`) with a \`.why.json\` note; each step goes to
      \`<output dir>/repair/journal-<stamp>.jsonl\`; afterwards each touched server gets a new report, so the next
      \`compare\` is clean. An interrupted repair is finished by running it again.

      Two servers cannot outvote each other; a majority can be wrong if most copies rotted the same way: keep the
      reports' history.

      Exit codes: 0 nothing to do, or every planned copy possible (plan) / made (--apply); 1 undecided or failed files
      remain; 2 a report unusable or a server unreachable; 64 bad usage.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup repair".
    `,
    examples: [
      ['What would be repaired (changes nothing)', '$0 repair ssh://backup@srv1/var/lib/reports ssh://backup@srv2/var/lib/reports /var/lib/reports'],
      ['Repair one group, at most 2 MiB/s', '$0 repair ssh://backup@srv1/var/lib/reports ssh://backup@srv2/var/lib/reports /var/lib/reports --group photos --apply --bwlimit 2M'],
      ['One server behind a gateway, two keys', '$0 repair ssh://b@10.0.0.5/r ssh://b@srv2/r /r --jump 10.0.0.5=me@gw.example.com --identity ~/.ssh/a --identity ~/.ssh/b --apply'],
    ],
  })

  sources = Option.Rest({ name: 'SOURCE', required: 2 })
  group = Option.String('--group', { description: 'Only this group' })
  apply = Option.Boolean('--apply', false, { description: 'Carry the plan out (default: only show it, change nothing)' })
  quarantine = options.pathOption('--quarantine', 'Where replaced copies are kept on their server (default <output dir>/repair/quarantine-<stamp>)')
  bwlimit = Option.String('--bwlimit', { validator: isRate, description: 'Total transfer rate: 500 (KiB/s, as rsync), 64K, 2M, 1G' })
  parallel = Option.String('--parallel', '2', { validator: options.isWholeNumber(1, 64), description: 'Transfers at once per server' })
  identity = Option.Array('--identity', [], { description: 'SSH private key file (repeatable: each is tried on every host)' })
  knownHosts = options.pathOption('--known-hosts', 'known_hosts file (default ~/.ssh/known_hosts)')
  acceptNew = Option.Boolean('--accept-new-host-key', false, { description: 'Trust (and record) the key of a host not yet known' })
  jump = Option.Array('--jump', [], { description: 'Jump host [user@]host[:port], or TARGET=JUMP for one target (repeatable)' })
  timeout = Option.String('--timeout', '15', { validator: options.isSeconds, description: 'SSH timeout in seconds' })
  retries = Option.String('--retries', '2', { validator: options.isWholeNumber(0, 100), description: 'Retries after transient failures' })

  async run(): Promise<ExitCodeValue> {
    const c = this.colors
    const out = this.context.stdout
    const live = !this.json && !this.quiet
    const r = await repair(this.sources, {
      group: this.group,
      apply: this.apply,
      quarantine: this.quarantine,
      bwlimit: this.bwlimit,
      parallel: this.parallel,
      identity: this.identity.length ? this.identity : undefined,
      knownHosts: this.knownHosts,
      acceptNewHostKey: this.acceptNew,
      jump: this.jump.length ? this.jump : undefined,
      timeoutMs: this.timeout * 1000,
      retries: this.retries,
      onStep: live ? (x: RepairCopy) => out.write(`${x.status === 'repaired' ? c.green('repaired') : c.red('failed  ')}  ${line(x)}${x.error ? `: ${x.error}` : ''}\n`) : undefined,
    })
    const code = repairExit(r) === 0 ? ExitCode.Ok : ExitCode.Partial
    for (const w of r.warnings) this.warning({ path: w.path, message: w.server ? `${w.server}: ${w.message}` : w.message })
    if (this.json) {
      this.print(r)
      return code
    }
    if (!r.applied && !this.quiet) for (const x of r.copies) out.write(`${c.bold('copy')}      ${line(x)}  (${bytes(x.bytes)})\n`)
    for (const u of r.undecided) out.write(`${c.yellow('undecided')} ${u.group}: ${shown(u.path)}: ${u.reason}\n`)
    if (!this.quiet) {
      const failed = r.copies.filter((x) => x.status === 'failed').length
      if (r.applied) {
        out.write(`${r.copies.length - failed} repaired (${bytes(r.bytes)}), ${failed} failed, ${r.undecided.length} undecided\n`)
        for (const j of r.reports) out.write(`new report: ${j.server}: ${j.report}\n`)
      } else {
        out.write(`plan: ${r.copies.length} copies (${bytes(r.bytes)}), ${r.undecided.length} undecided; nothing was changed${r.copies.length ? ' (--apply carries it out)' : ''}\n`)
      }
    }
    return code
  }
}

function line(x: RepairCopy): string {
  return `${x.group}: ${shown(x.path)}  ${x.from} → ${x.to}  (${x.reason})`
}
