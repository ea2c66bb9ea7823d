import { Command, Option } from 'clipanion'

import { compare, writeCompareFiles } from '../../integrity'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { BaseCommand } from '../base'
import { duration, shown, table } from '../format'
import * as options from '../options'

export default class CompareCommand extends BaseCommand {
  static paths = [['compare']]
  static usage = Command.Usage({
    description: 'Compare the checksum reports of several servers',
    details: `
      Each SOURCE is a report file, a report folder, or \`ssh://[user@]host[:port]/path/to/output_dir\`. For each group
      present on several sources: lost files and mismatched checksums, plus each server's work time. SSH: key
      authentication (\`--identity\`), host keys checked against \`--known-hosts\`. \`--out DIR\` writes
      \`lost_files_<date>.json\` and \`mismatch_sum_<date>.json\`.

      Exit codes: 0 all agree; 1 lost or mismatched files; 2 a report unusable or a server unreachable; 64.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup compare".
    `,
    examples: [
      ['Two servers over SSH', '$0 compare ssh://backup@srv1/var/lib/reports ssh://backup@srv2/var/lib/reports'],
      ['Through a jump host, results as files', '$0 compare ssh://backup@10.0.0.5/var/lib/reports /var/lib/reports --jump me@gateway.example.com --out ./results'],
    ],
  })

  sources = Option.Rest({ name: 'SOURCE', required: 1 })
  out = options.out('Write lost_files_<date>.json and mismatch_sum_<date>.json into this folder')
  identity = options.pathOption('--identity', 'SSH private key file')
  knownHosts = options.pathOption('--known-hosts', 'known_hosts file (default ~/.ssh/known_hosts)')
  acceptNew = Option.Boolean('--accept-new-host-key', false, { description: 'Trust (and record) the key of a host not yet known' })
  jump = Option.String('--jump', { description: 'Jump host user@host[:port]' })
  timeout = Option.String('--timeout', '15', { validator: options.isSeconds, description: 'SSH timeout in seconds' })
  retries = Option.String('--retries', '2', { validator: options.isWholeNumber(0, 100), description: 'Retries after transient SSH failures' })
  /** Until 0.2: `-i` was --identity here and --ignore-case in search and delete. */
  oldIdentity = options.deprecated.path('-i')
  /** Until 0.2: every command took --config; compare never read it. */
  oldConfig = options.deprecated.string('--config,-c')

  async run(): Promise<ExitCodeValue> {
    if (this.oldIdentity) this.deprecated('compare -i FILE', 'write `--identity FILE` (-i means --ignore-case in search and delete)')
    if (this.oldConfig) this.deprecated('compare --config', 'it has no effect here (compare reads reports, not a backup profile): leave it out')
    const r = await compare(this.sources, {
      identity: this.identity ?? this.oldIdentity,
      knownHosts: this.knownHosts,
      acceptNewHostKey: this.acceptNew,
      jump: this.jump,
      timeoutMs: this.timeout * 1000,
      retries: this.retries,
    })
    const differs = r.groups.some((g) => g.lostFiles.length || g.mismatched.length)
    const code = differs ? ExitCode.Partial : ExitCode.Ok
    let files: { lost: string; mismatch: string } | undefined
    if (this.out) files = writeCompareFiles(r, this.out)
    if (this.json) {
      this.print(files ? { ...r, files } : r)
      return code
    }
    const c = this.colors
    const out = this.context.stdout
    for (const g of r.groups) {
      out.write(`${c.bold(g.group)}\n`)
      out.write(table([['SERVER', 'FILES', 'ERRORS', 'WORK TIME'].map(c.bold), ...g.servers.map((s) => [s.server, String(s.files), String(s.errors), duration(s.workTime * 1000)])], [1, 2]) + '\n')
      if (g.servers.length < 2) out.write(c.dim('  only one server has this group: nothing to compare\n'))
      // With --out the lists go to the files; the table shows at most 1000 of each.
      if (!files) {
        for (const l of g.lostFiles.slice(0, 1000)) out.write(`  ${c.red('lost')}      ${shown(l.path)}  missing on ${l.missingOn.join(', ')}\n`)
        for (const m of g.mismatched.slice(0, 1000)) {
          out.write(`  ${c.red('mismatch')}  ${shown(m.path)}  ${m.algorithm}: ${Object.entries(m.sums).map(([s, h]) => `${s}=${h.slice(0, 12)}…`).join(' ')}\n`)
        }
      }
      out.write(`  ${g.lostFiles.length} lost, ${g.mismatched.length} mismatched\n`)
    }
    if (files) out.write(`written: ${files.lost}\n         ${files.mismatch}\n`)
    return code
  }
}
