import fs from 'node:fs'

import { Command, Option, UsageError } from 'clipanion'

import { backup, type Stats } from '../../backup'
import { loadConfig } from '../../config'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { ProfileCommand } from '../base'
import { bytes, duration } from '../format'
import * as options from '../options'

/** The command names, for the unknown-command message. */
const COMMANDS = ['run', 'explain', 'list', 'search', 'history', 'restore', 'recreate', 'delete', 'prune', 'status', 'checksum', 'verify', 'compare', 'keygen']

export default class RunCommand extends ProfileCommand {
  static paths = [Command.Default, ['run']]
  static usage = Command.Usage({
    description: 'Back up src into dst/mirror and record tracked changes in a new increment',
    details: `
      Scans \`src\` with the config's rules, brings \`dst/mirror\` up to date and, when tracked files were added,
      changed or deleted, commits an increment \`dst/backup_YYYYMMDD_HHMMSS/\`. An interrupted run is finished by the
      next run. Nothing is removed on doubt: an unreadable file keeps its backup; a foreign source or a mass deletion
      is refused (\`--adopt-source\`, \`--allow-mass-delete\`, \`--max-delete\`) and changes nothing.

      Exit codes: 0 done; 1 done, with warnings (files skipped, kept or stored inconsistent); 2 failed or refused, nothing
      new committed; 64 bad usage or config (nothing written).

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup run".
    `,
    examples: [
      ['Back up with ./config.json', '$0'],
      ['Back up to the USB profile', '$0 run --config usb.json'],
      ['The same, config as a positional argument (as the original script)', '$0 usb.json'],
      ['Show what a run would do, path by path, without writing anything', '$0 run --dry-run --verbose -c usb.json'],
      ['Machine-readable statistics (e.g. from cron)', '$0 run --json --config /etc/backup/home.json'],
    ],
  })

  dryRun = options.dryRun('Plan only; write nothing')
  verbose = Option.Boolean('--verbose,-v', false, { description: 'With --dry-run: list every selected path with its role and change' })
  skipInconsistent = Option.Boolean('--skip-inconsistent', false, {
    description: 'Skip a file that keeps changing while it is read (default: store what was read, marked inconsistent)',
  })
  adoptSource = Option.Boolean('--adopt-source', false, {
    description: 'Take the configured src as the source of this backup even if the backup records another one',
  })
  allowMassDelete = Option.Boolean('--allow-mass-delete', false, {
    description: 'Allow this run to remove any number of mirror files, even all of them',
  })
  maxDelete = Option.String('--max-delete', {
    description: 'The most mirror files this run may remove: N files or N% of the mirror (overrides max_delete)',
  })
  configArg = Option.String({ name: 'CONFIG', required: false, validator: options.isPath })

  async run(): Promise<ExitCodeValue> {
    // `backup frobnicate`: a word that is no file and looks like no path is a mistyped command, not a config.
    const arg = this.configArg
    if (arg !== undefined && !fs.existsSync(arg) && /^[a-z][a-z0-9-]*$/i.test(arg)) {
      throw new UsageError(
        `unknown command ${JSON.stringify(arg)}; the commands are ${COMMANDS.join(', ')} (see \`backup --help\`). ` +
          `To use a config file, give its path (e.g. ./${arg}.json).`,
      )
    }
    const cfg = loadConfig(this.configArg ?? this.config)
    const controller = new AbortController()
    const onSignal = () => controller.abort()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    let stats: Stats
    try {
      stats = await this.withProgress({}, (onProgress) =>
        backup(cfg, {
          dryRun: this.dryRun,
          listChanges: this.dryRun && this.verbose,
          skipInconsistent: this.skipInconsistent || undefined,
          onProgress,
          signal: controller.signal,
          adoptSource: this.adoptSource,
          allowMassDelete: this.allowMassDelete,
          maxDelete: this.maxDelete,
        }),
      )
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
    const code = stats.refused ? ExitCode.Failed : stats.warnings.length > 0 ? ExitCode.Partial : ExitCode.Ok
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
    if (stats.adopted) err.write('adopted a backup folder made by backup.py: its mirror and mirror.json are the previous state\n')
    for (const h of stats.hints) err.write(`hint: ${h}\n`)
    for (const w of stats.warnings) this.warning(w)
    if (stats.refused) err.write(`backup: dry run: the real run would be refused: ${stats.refused}\n`)
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
    if (stats.warnings.length) out.write(`${stats.warnings.length} warnings (see above); exit code 1\n`)
    return code
  }
}
