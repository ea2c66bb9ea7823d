import { Command, Option } from 'clipanion'

import { compare, writeCompareFiles } from '../../integrity'
import { ExitCode } from '../../errors'
import { BaseCommand } from '../base'
import { colors, duration, shown, table } from '../format'

export default class CompareCommand extends BaseCommand {
  static paths = [['compare']]
  static usage = Command.Usage({
    description: 'Compare the checksum reports of several servers',
    details: `
      Each SOURCE is a report file, a report folder (the latest \`all_<ts>.json\` of each group folder in it, or of
      the folder itself), or \`ssh://user@host[:port]/path/to/output_dir\` (the same, read over SSH). Every report's
      SHA3-512 is checked. For each group present on several sources: lost files (present on some, missing on
      others) and mismatched checksums, plus each server's work time. Paths are relative to each group's root and
      compared after Unicode NFC normalization (macOS and Linux agree).

      SSH: key authentication (\`--identity\`, default ~/.ssh/id_ed25519, id_ecdsa, id_rsa, or the agent); host keys
      are checked against \`--known-hosts\` (default ~/.ssh/known_hosts, hashed entries too): an unknown host is an
      error unless \`--accept-new-host-key\` (then it is recorded), a changed key always is. \`--jump user@host[:port]\`
      connects through a jump host. Timeouts (\`--timeout\` seconds) and up to \`--retries\` retries with backoff.

      \`--out DIR\` writes \`lost_files_<date>.json\` and \`mismatch_sum_<date>.json\` there; otherwise a table.
      \`--json\`: \`{ groups: [{ group, servers: [{ server, report, startTimestamp, workTime, files, errors }],
      lostFiles: [{ path, presentOn, missingOn }], mismatched: [{ path, algorithm, sums: { server: hex } }] }] }\`.
      Exit codes: 0 all agree; 1 lost or mismatched files; 2 a report unusable or a server unreachable; 64.
    `,
    examples: [
      ['Two servers over SSH', '$0 compare ssh://backup@srv1/var/lib/reports ssh://backup@srv2/var/lib/reports'],
      ['Through a jump host, results as files', '$0 compare ssh://backup@10.0.0.5/var/lib/reports /var/lib/reports --jump me@gateway.example.com --out ./results'],
    ],
  })

  sources = Option.Rest({ name: 'SOURCE', required: 1 })
  out = Option.String('--out,-o', { description: 'Write lost_files_<date>.json and mismatch_sum_<date>.json into this folder' })
  identity = Option.String('--identity,-i', { description: 'SSH private key file' })
  knownHosts = Option.String('--known-hosts', { description: 'known_hosts file (default ~/.ssh/known_hosts)' })
  acceptNew = Option.Boolean('--accept-new-host-key', false, { description: 'Trust (and record) the key of a host not yet known' })
  jump = Option.String('--jump', { description: 'Jump host user@host[:port]' })
  timeout = Option.String('--timeout', '15', { description: 'SSH timeout in seconds' })
  retries = Option.String('--retries', '2', { description: 'Retries after transient SSH failures' })

  async run(): Promise<number> {
    const r = await compare(this.sources, {
      identity: this.identity,
      knownHosts: this.knownHosts,
      acceptNewHostKey: this.acceptNew,
      jump: this.jump,
      timeoutMs: Number(this.timeout) * 1000,
      retries: Number(this.retries),
    })
    const differs = r.groups.some((g) => g.lostFiles.length || g.mismatched.length)
    const code = differs ? ExitCode.Partial : ExitCode.Ok
    let files: { lost: string; mismatch: string } | undefined
    if (this.out) files = writeCompareFiles(r, this.out)
    if (this.json) {
      this.print(files ? { ...r, files } : r)
      return code
    }
    const c = colors(!!(this.context.stdout as NodeJS.WriteStream).isTTY && !process.env.NO_COLOR)
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
