import fs from 'node:fs'

import { Command, Option, UsageError } from 'clipanion'

import { backup, type Stats } from '../../backup'
import { loadConfig } from '../../config'
import { ExitCode } from '../../errors'
import { BaseCommand } from '../base'
import { ProgressLine, bytes, duration } from '../format'

/** The command names, for the unknown-command message. */
const COMMANDS = ['run', 'explain', 'list', 'search', 'history', 'restore', 'recreate', 'delete', 'prune', 'status', 'checksum', 'verify', 'compare', 'keygen']

export default class RunCommand extends BaseCommand {
  static paths = [Command.Default, ['run']]
  static usage = Command.Usage({
    description: 'Back up src into dst/mirror and record tracked changes in a new increment',
    details: `
      Scans \`src\` with the config's rules, brings \`dst/mirror\` up to date and, when tracked files were added,
      changed or deleted, commits an increment \`dst/backup_YYYYMMDD_HHMMSS/\` (hardlinks to the mirror in
      \`track/\` and \`deleted/\`, metadata in \`backup_YYYYMMDD_HHMMSS.json\`). A run that was interrupted
      (killed, power loss, disk full) is finished by the next run.

      Exit codes: 0 done; 1 done, but some files were skipped (listed as warnings); 2 failed, nothing new
      committed; 64 bad usage or config (nothing written).

      \`--json\` prints one object: \`increment\`, \`recovered\`, \`dryRun\`, \`mirrorFiles\`, \`trackedFiles\`, \`new\`,
      \`changed\`, \`deleted\`, \`removedFromMirror\`, \`mirrorUpdated\`, \`bytesCopied\`, \`linkFallbacks\`,
      \`specialSkipped\`, \`mtimeToleranceS\`, \`durationMs\`, \`warnings\` ([{path, code, message}]), \`hints\`,
      \`targetFs\`, \`targetLimits\` (what the target cannot do, from its probe: hardlinks, symlinks, mtime granularity,
      link limit; printed as one \`target (fs): …\` line first, only when something is limited),
      and with \`--dry-run --verbose\` \`changes\` ([{path, role, change}]).
    `,
    examples: [
      ['Back up with ./config.json', '$0'],
      ['Back up to the USB profile', '$0 run --config usb.json'],
      ['The same, config as a positional argument (as the original script)', '$0 usb.json'],
      ['Show what a run would do, path by path, without writing anything', '$0 run --dry-run --verbose -c usb.json'],
      ['Machine-readable statistics (e.g. from cron)', '$0 run --json --config /etc/backup/home.json'],
    ],
  })

  dryRun = Option.Boolean('--dry-run,-n', false, { description: 'Plan only; write nothing' })
  verbose = Option.Boolean('--verbose,-v', false, { description: 'With --dry-run: list every selected path with its role and change' })
  configArg = Option.String({ name: 'CONFIG', required: false })

  async run(): Promise<number> {
    // `backup frobnicate`: a word that is no file and looks like no path is a mistyped command, not a config.
    const arg = this.configArg
    if (arg !== undefined && !fs.existsSync(arg) && /^[a-z][a-z0-9-]*$/i.test(arg)) {
      throw new UsageError(
        `unknown command ${JSON.stringify(arg)}; the commands are ${COMMANDS.join(', ')} (see \`backup --help\`). ` +
          `To use a config file, give its path (e.g. ./${arg}.json).`,
      )
    }
    const cfg = loadConfig(this.configArg ?? this.config)
    const tty = !!(this.context.stderr as NodeJS.WriteStream).isTTY && !this.quiet && !this.json
    const line = new ProgressLine(this.context.stderr as NodeJS.WriteStream, tty)
    const controller = new AbortController()
    const onSignal = () => controller.abort()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    let stats: Stats
    try {
      stats = await backup(cfg, {
        dryRun: this.dryRun,
        listChanges: this.dryRun && this.verbose,
        onProgress: tty ? line.update : undefined,
        signal: controller.signal,
      })
    } finally {
      line.done()
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
    const code = stats.warnings.length > 0 ? ExitCode.Partial : ExitCode.Ok
    if (this.json) {
      this.print(stats)
      return code
    }
    const out = this.context.stdout
    const err = this.context.stderr
    if (stats.targetLimits.length) out.write(`target (${stats.targetFs}): ${stats.targetLimits.join('; ')}\n`)
    if (stats.changes) {
      for (const c of stats.changes) out.write(`${c.change.padEnd(14)} ${c.role.padEnd(8)} ${c.path}\n`)
    }
    for (const h of stats.hints) err.write(`hint: ${h}\n`)
    for (const w of stats.warnings) err.write(`warning: ${w.path}: ${w.code}: ${w.message}\n`)
    if (this.quiet) return code
    if (stats.recovered) out.write(`finished the interrupted run as ${stats.recovered}\n`)
    const verb = stats.dryRun ? 'would be' : ''
    const tracked = `${stats.new} new, ${stats.changed} changed, ${stats.deleted} deleted`
    if (stats.increment) out.write(`${stats.increment}: ${tracked}\n`)
    else if (stats.dryRun) out.write(`dry run: tracked files ${verb}: ${tracked}\n`)
    else out.write(`no tracked changes: no increment\n`)
    out.write(
      `mirror: ${stats.mirrorFiles} files (${stats.trackedFiles} tracked), ${stats.mirrorUpdated} untracked updated, ` +
        `${stats.removedFromMirror} removed · ${bytes(stats.bytesCopied)} ${stats.dryRun ? 'to copy' : 'copied'} in ${duration(stats.durationMs)}\n`,
    )
    if (stats.linkFallbacks) out.write(`${stats.linkFallbacks} increment files stored as copies (no hardlinks on this file system)\n`)
    if (stats.specialSkipped) out.write(`${stats.specialSkipped} sockets/FIFOs/devices skipped\n`)
    if (stats.warnings.length) out.write(`${stats.warnings.length} files skipped (see warnings above); exit code 1\n`)
    return code
  }
}
