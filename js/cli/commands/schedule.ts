import { Command, Option, UsageError } from 'clipanion'
import * as t from 'typanion'

import { ExitCode, type ExitCodeValue } from '../../errors'
import { schedule, type Scope, type Via } from '../../schedule'
import { ProfileCommand } from '../base'

export default class ScheduleCommand extends ProfileCommand {
  static paths = [['schedule']]
  static usage = Command.Usage({
    description: 'Run a profile on a schedule: a systemd timer, or a crontab line where systemd is absent',
    details: `
      \`install\` writes a systemd timer + service (user units when not root, system units when root; \`--user\`,
      \`--system\`) or, where systemd is not running (or with \`--via cron\`), one crontab line marked with a comment
      so \`remove\` removes exactly it. The job is \`backup run --unattended --config FILE\`: the run, then, only if it
      succeeded and its newest increment verifies, the profile's \`retention\`; then its \`scrub\`; \`notify\` on
      trouble. systemd logs to the journal; cron appends to \`dst/.axiomatic/unattended.log\`. Two jobs never run at
      once (the run lock). \`show\` prints what is installed; \`remove\` removes it.

      \`--every\`: 1h, 2h, 3h, 4h, 6h, 8h, 12h; 5m, 10m, 15m, 20m, 30m; hourly, daily, weekly; or a 5-field cron
      expression ("30 2 * * *"). Missed runs are made up at boot (systemd \`Persistent=true\`).

      Exit codes: 0; 2 systemctl or crontab failed; 64 bad usage or config (nothing written).

      Reference: README, section "backup schedule" (in "Running unattended").
    `,
    examples: [
      ['Back up usb.json every night (systemd timer, or cron)', '$0 schedule install --config usb.json --every daily'],
      ['Every hour', '$0 schedule install -c usb.json --every 1h'],
      ['At 02:30 every night, as a cron expression', '$0 schedule install -c usb.json --every "30 2 * * *"'],
      ['Use cron even where systemd runs', '$0 schedule install -c usb.json --every daily --via cron'],
      ['What is installed for this profile', '$0 schedule show -c usb.json'],
      ['Remove it', '$0 schedule remove -c usb.json'],
    ],
  })

  action = Option.String({ name: 'install|remove|show', validator: t.isEnum(['install', 'remove', 'show']) })
  every = Option.String('--every', { description: 'How often: 1h, 6h, 30m, hourly, daily, weekly, or a cron expression "M H DOM MON DOW"' })
  via = Option.String('--via', { validator: t.isEnum(['systemd', 'cron']), description: 'systemd or cron (default: systemd where it runs)' })
  user = Option.Boolean('--user', false, { description: 'systemd user units (default when not root)' })
  system = Option.Boolean('--system', false, { description: 'systemd system units (default for root)' })

  async run(): Promise<ExitCodeValue> {
    if (this.user && this.system) throw new UsageError('give --user or --system, not both')
    if (this.every !== undefined && this.action !== 'install') throw new UsageError(`--every goes with install, not with ${this.action}`)
    const scope: Scope | undefined = this.user ? 'user' : this.system ? 'system' : undefined
    const r = schedule(this.action as 'install' | 'remove' | 'show', { config: this.config, every: this.every, via: this.via as Via | undefined, scope })
    if (this.json) {
      this.print(r)
      return ExitCode.Ok
    }
    const out = this.context.stdout
    const by = r.via === 'systemd' ? `systemd ${r.scope} units ${r.name}.timer/.service` : 'a crontab line'
    if (r.action === 'install') {
      out.write(`installed ${by} for ${r.config}\n`)
      for (const [f, text] of Object.entries(r.units)) out.write(`--- ${f}\n${text}`)
      if (r.cronLine) out.write(`${r.cronLine}\n`)
    } else if (r.action === 'remove') {
      out.write(r.found ? `removed ${by} for ${r.config}\n` : `nothing to remove: no schedule of ${r.config} (${r.via})\n`)
    } else {
      if (!r.found) out.write(`no schedule of ${r.config} (${r.via}${r.scope ? `, ${r.scope} units` : ''})\n`)
      for (const [f, text] of Object.entries(r.units)) out.write(`--- ${f}\n${text}`)
      if (r.cronLine) out.write(`${r.cronLine}\n`)
    }
    const changed = r.action === 'install' || (r.action === 'remove' && r.found)
    if (r.via === 'systemd' && changed && !r.systemctlRun) {
      out.write('systemctl was not called (AXIOMATIC_SYSTEMD_DIR is set); to apply the change, run:\n')
      for (const c of r.systemctl) out.write(`  systemctl ${c.join(' ')}\n`)
    }
    if (r.via === 'systemd' && r.action === 'install') out.write(`log: journalctl ${r.scope === 'user' ? '--user ' : ''}-u ${r.name}.service\n`)
    return ExitCode.Ok
  }
}
