import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { Command, Option, UsageError } from 'clipanion'

import { backup, type Stats } from '../../backup'
import { now } from '../../clock'
import { loadConfig, loadNotify } from '../../config'
import { BackupError, ExitCode, type ExitCodeValue } from '../../errors'
import { runUnattended, sendNotification, type NotifyBody } from '../../unattended'
import { ProfileCommand } from '../base'
import { bytes, duration } from '../format'
import * as options from '../options'

/** The command names, for the unknown-command message. */
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

      \`--unattended\` is what a schedule runs (\`backup schedule install\`): the run, then, only if it succeeded and the
      newest increment verifies, the profile's \`retention\`; then its \`scrub\`; then \`notify\` with the reasons if
      anything went wrong. Exit codes: 0; 1 harmless warnings; 2 failed, files not backed up, or corruption found.
      README, section "Running unattended".

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup run".
    `,
    examples: [
      ['Back up with ./config.json', '$0'],
      ['Back up to the USB profile', '$0 run --config usb.json'],
      ['The same, config as a positional argument (as the original script)', '$0 usb.json'],
      ['Show what a run would do, path by path, without writing anything', '$0 run --dry-run --verbose -c usb.json'],
      ['Machine-readable statistics (e.g. from cron)', '$0 run --json --config /etc/backup/home.json'],
      ['What a schedule runs: run, then retention and scrub of the profile, notify on trouble', '$0 run --unattended --config usb.json'],
      ['What that job would prune, without changing anything', '$0 run --unattended --dry-run --config usb.json'],
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
  unattended = Option.Boolean('--unattended', false, {
    description: 'The scheduled job: run, then retention (only after a good run whose newest increment verifies) and scrub of the profile; notify on trouble',
  })
  noNotify = Option.Boolean('--no-notify', false, { description: 'With --unattended: do not run the profile’s notify' })
  configArg = Option.String({ name: 'CONFIG', required: false, validator: options.isPath })

  async run(): Promise<ExitCodeValue> {
    // `backup frobnicate`: a word that is no file and looks like no path is a mistyped command, not a config.
    const arg = this.configArg
    if (arg !== undefined && !fs.existsSync(arg) && /^[a-z][a-z0-9-]*$/i.test(arg)) {
      // The registered commands (every one: a line that names none registers them all).
      const names = [...new Set(['run', ...this.cli.definitions().map((d) => d.path.split(' ')[1]).filter((n) => n && !n.startsWith('['))])]
      throw new UsageError(
        `unknown command ${JSON.stringify(arg)}; the commands are ${names.join(', ')} (see \`backup --help\`). ` +
          `To use a config file, give its path (e.g. ./${arg}.json).`,
      )
    }
    const file = this.configArg ?? this.config
    if (this.unattended) return this.runUnattended(file)
    const cfg = loadConfig(file)
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

  /** `--unattended`: one line per step on stderr (the journal or the log file keeps them), a summary on stdout. */
  private async runUnattended(file: string): Promise<ExitCodeValue> {
    let cfg
    try {
      cfg = loadConfig(file)
    } catch (e) {
      // A profile that no longer loads (src gone, dst unmounted to a missing path) still tells someone.
      const n = this.noNotify || this.dryRun ? undefined : loadNotify(file)
      const err = e as BackupError
      if (n) {
        const body: NotifyBody = {
          source: 'axiomatic-backup',
          event: 'run',
          host: os.hostname(),
          dst: '',
          config: path.resolve(file),
          time: new Date(now()).toISOString(),
          exitCode: err.exitCode ?? ExitCode.Failed,
          reasons: [{ code: 'run-failed', message: `${err.code ?? 'EIO'}: ${err.message}` }],
        }
        for (const w of await sendNotification(n, body)) this.warn(w)
      }
      throw e
    }
    const controller = new AbortController()
    const onSignal = () => controller.abort()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    const err = this.context.stderr
    let r
    try {
      r = await runUnattended(cfg, {
        dryRun: this.dryRun,
        signal: controller.signal,
        noNotify: this.noNotify,
        log: (line) => err.write(`${new Date().toISOString()} backup: ${line}\n`),
      })
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
    for (const w of r.notifyWarnings) this.warn(w)
    if (this.json) {
      this.print(r)
      return r.exitCode
    }
    for (const w of r.run?.warnings ?? []) this.warning(w)
    const out = this.context.stdout
    for (const reason of r.reasons) out.write(`${this.colors.red(reason.code)}: ${reason.message}\n`)
    if (r.prune) for (const n of r.prune.removed) out.write(`${r.prune.dryRun ? 'would remove' : 'removed'} ${n}\n`)
    if (r.retentionSkipped && cfg.retention) out.write(`retention not applied: ${r.retentionSkipped}\n`)
    if (!this.quiet) out.write(`unattended run: ${r.reasons.length ? `${r.reasons.length} problem(s)` : 'all well'}; exit code ${r.exitCode}\n`)
    return r.exitCode
  }
}
