/**
 * `backup schedule install|remove|show`: a systemd timer + service (user units when not root, system units
 * when root) or, where systemd is not running, one crontab line. Both run `backup run --unattended --config
 * FILE` (run, then retention and scrub of the profile, notify on trouble); systemd logs to the journal, cron
 * appends to `dst/.axiomatic/unattended.log`. Overlaps are harmless: the job takes the run lock.
 *
 * Where things are written can be redirected, so tests (and packagers) never touch the real system:
 * `AXIOMATIC_SYSTEMD_DIR` (the unit folder; then `systemctl` is not called unless `AXIOMATIC_SYSTEMCTL` names
 * a program to call instead), `AXIOMATIC_CRONTAB` (the program used as `crontab -l` / `crontab -`).
 */
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { loadConfig } from './config'
import { BackupError, ConfigError } from './errors'
import { native } from './native'

export type Via = 'systemd' | 'cron'
export type Scope = 'user' | 'system'

/** What `schedule` is asked. */
export interface ScheduleOptions {
  /** The profile (its path is written into the job as an absolute path). */
  config: string
  /** `1h`, `30m`, `6h`, `hourly`, `daily`, `weekly`, or a 5-field cron expression. */
  every?: string
  /** Default: systemd where it runs (`/run/systemd/system`), else cron. */
  via?: Via
  /** systemd only. Default: `system` for root, else `user`. */
  scope?: Scope
}

/** A schedule as both schedulers write it. */
export interface When {
  /** systemd `OnCalendar=`. */
  onCalendar: string
  /** The crontab time fields. */
  cron: string
}

const DOW = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']

/** Parses `--every`; a ConfigError names what is accepted. */
export function parseEvery(every: string): When {
  const e = every.trim()
  const named: Record<string, When> = {
    hourly: { onCalendar: 'hourly', cron: '@hourly' },
    daily: { onCalendar: 'daily', cron: '@daily' },
    weekly: { onCalendar: 'weekly', cron: '@weekly' },
    '1h': { onCalendar: 'hourly', cron: '@hourly' },
    '1d': { onCalendar: 'daily', cron: '@daily' },
    '24h': { onCalendar: 'daily', cron: '@daily' },
    '1w': { onCalendar: 'weekly', cron: '@weekly' },
  }
  if (named[e]) return named[e]
  const help =
    `--every: expected 1h, 2h…12h (a divisor of 24), 5m, 10m…30m (a divisor of 60), hourly, daily, weekly, or a 5-field cron ` +
    `expression such as "30 2 * * *", got ${JSON.stringify(every)}`
  let m = /^(\d+)\s*(m|min)$/.exec(e)
  if (m) {
    const n = Number(m[1])
    if (n < 1 || n > 60 || 60 % n) throw new ConfigError(help)
    return n === 60 ? named.hourly : { onCalendar: `*-*-* *:00/${n}:00`, cron: `*/${n} * * * *` }
  }
  m = /^(\d+)\s*h$/.exec(e)
  if (m) {
    const n = Number(m[1])
    if (n < 1 || n > 24 || 24 % n) throw new ConfigError(help)
    return n === 24 ? named.daily : { onCalendar: `*-*-* 00/${n}:00:00`, cron: `0 */${n} * * *` }
  }
  const f = e.split(/\s+/)
  if (f.length !== 5) throw new ConfigError(help)
  return { onCalendar: cronToCalendar(f, help), cron: f.join(' ') }
}

/** One cron field (`*`, `N`, `a-b`, lists, `*\/N`) in [min, max], as systemd writes it; `names` for weekdays. */
function field(text: string, min: number, max: number, help: string, names?: string[]): string {
  if (text === '*') return '*'
  const parts = text.split(',').map((p) => {
    const m = /^(\*|\d+(?:-\d+)?)(?:\/(\d+))?$/.exec(p)
    if (!m) throw new ConfigError(`${help} (field ${JSON.stringify(text)})`)
    const step = m[2] === undefined ? undefined : Number(m[2])
    if (step !== undefined && step < 1) throw new ConfigError(`${help} (step ${JSON.stringify(p)})`)
    if (m[1] === '*') {
      if (names) throw new ConfigError(`${help} (a weekday step is not supported)`)
      return `${min}/${step}`
    }
    const [a, b] = m[1].split('-').map(Number)
    for (const v of [a, b]) if (v !== undefined && (v < min || v > max)) throw new ConfigError(`${help} (${v} is outside ${min}–${max})`)
    if (b !== undefined && b < a) throw new ConfigError(`${help} (range ${JSON.stringify(m[1])} goes backwards)`)
    if (step !== undefined) {
      if (names) throw new ConfigError(`${help} (a weekday step is not supported)`)
      // a-b/n: the values themselves (systemd has no stepped range).
      const vals: number[] = []
      for (let v = a; v <= (b ?? max); v += step) vals.push(v)
      return vals.join(',')
    }
    const show = (v: number) => (names ? names[v] : String(v).padStart(2, '0'))
    return b === undefined ? show(a) : `${show(a)}..${show(b)}`
  })
  return parts.join(',')
}

/** A 5-field cron expression as a systemd calendar event. */
function cronToCalendar([mi, h, dom, mon, dow]: string[], help: string): string {
  if (dom !== '*' && dow !== '*')
    throw new ConfigError(`${help}: day of month and weekday both set means "either" to cron but "both" to systemd; give one of them`)
  const days = dow === '*' ? '' : `${field(dow, 0, 7, help, DOW)} `
  return `${days}*-${field(mon, 1, 12, help)}-${field(dom, 1, 31, help)} ${field(h, 0, 23, help)}:${field(mi, 0, 59, help)}:00`
}

/** The package folder (holds `bin/backup.js`). */
function packageRoot(): string {
  let dir = __dirname
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'bin', 'backup.js'))) return dir
    const up = path.dirname(dir)
    if (up === dir) throw new BackupError('EIO', `cannot find the package folder (bin/backup.js) above ${__dirname}`)
    dir = up
  }
}

/** The job's command line: this node, this package's CLI, the profile. */
export function jobArgv(configAbs: string): string[] {
  return [process.execPath, path.join(packageRoot(), 'bin', 'backup.js'), 'run', '--unattended', '--config', configAbs]
}

/** `axiomatic-backup-<config name>-<8 hex of its path>`: one schedule per profile, two profiles never collide. */
export function scheduleName(configAbs: string): string {
  const base = path.basename(configAbs).replace(/\.json$/i, '').replace(/[^A-Za-z0-9_.-]+/g, '-').slice(0, 40) || 'profile'
  const h = crypto.createHash('sha256').update(configAbs).digest('hex').slice(0, 8)
  return `axiomatic-backup-${base}-${h}`
}

/** An argument as systemd's ExecStart reads it: double-quoted, `\` and `"` escaped, `%` and `$` doubled. */
function systemdQuote(a: string): string {
  if (/[\n\r]/.test(a)) throw new ConfigError(`${JSON.stringify(a)}: a path with a line break cannot go into a unit file`)
  return `"${a.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\$/g, '$$$$')}"`
}

/** An argument for /bin/sh in a crontab line: single-quoted; `%` (a newline to cron) escaped. */
function cronQuote(a: string): string {
  if (/[\n\r]/.test(a)) throw new ConfigError(`${JSON.stringify(a)}: a path with a line break cannot go into a crontab line`)
  return `'${a.replace(/'/g, `'\\''`)}'`.replace(/%/g, '\\%')
}

/** The two unit files of a schedule. */
export function renderUnits(name: string, configAbs: string, when: When): { service: string; timer: string } {
  const exec = jobArgv(configAbs).map(systemdQuote).join(' ')
  const what = configAbs.replace(/%/g, '%%')
  const service = [
    '# Written by `backup schedule install`; `backup schedule remove` removes it.',
    '[Unit]',
    `Description=axiomatic-backup: scheduled run of ${what} (then retention and scrub)`,
    '',
    '[Service]',
    'Type=oneshot',
    `ExecStart=${exec}`,
    '# Output goes to the journal: journalctl [--user] -u ' + name + '.service',
    'Nice=10',
    'IOSchedulingClass=idle',
    '',
  ].join('\n')
  const timer = [
    '# Written by `backup schedule install`; `backup schedule remove` removes it.',
    '[Unit]',
    `Description=axiomatic-backup: schedule of ${what}`,
    '',
    '[Timer]',
    `OnCalendar=${when.onCalendar}`,
    '# A run missed while the machine was off is made up at the next boot.',
    'Persistent=true',
    `Unit=${name}.service`,
    '',
    '[Install]',
    'WantedBy=timers.target',
    '',
  ].join('\n')
  return { service, timer }
}

/** The marker that ends our crontab line (so `remove` finds exactly it). */
export function cronMarker(name: string): string {
  return `# ${name}`
}

/** The crontab line of a schedule: the job, its output appended to `dst/.axiomatic/unattended.log`. */
export function cronLine(name: string, configAbs: string, dst: string, when: When): string {
  const log = native().layoutPaths(dst).unattendedLog
  const cmd = jobArgv(configAbs).map(cronQuote).join(' ')
  return `${when.cron} ${cmd} >> ${cronQuote(log)} 2>&1 ${cronMarker(name)}`
}

/** Whether systemd is the running init (as `sd_booted()` tells). */
export function systemdRuns(): boolean {
  return fs.existsSync('/run/systemd/system')
}

function defaultScope(): Scope {
  return process.getuid?.() === 0 ? 'system' : 'user'
}

/** The folder unit files go to: `AXIOMATIC_SYSTEMD_DIR`, else the user's or the system's. */
export function unitDir(scope: Scope): string {
  const override = process.env.AXIOMATIC_SYSTEMD_DIR
  if (override) return override
  if (scope === 'system') return '/etc/systemd/system'
  return path.join(process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'systemd', 'user')
}

/** What `install`, `remove` and `show` did or found (`--json` prints it). */
export interface ScheduleResult {
  action: 'install' | 'remove' | 'show'
  via: Via
  /** systemd only. */
  scope: Scope | null
  name: string
  config: string
  /** Unit files written, removed or found (path → content; empty content when removed). */
  units: Record<string, string>
  /** The crontab line written, removed or found. */
  cronLine: string | null
  /** `systemctl` commands run (or, when not run, to run by hand). */
  systemctl: string[][]
  /** Whether those were run. */
  systemctlRun: boolean
  /** Whether a schedule was there (`show`, `remove`). */
  found: boolean
}

/** Runs `systemctl` (or `AXIOMATIC_SYSTEMCTL`); refuses with its message when it fails. */
function systemctl(calls: string[][]): boolean {
  const override = process.env.AXIOMATIC_SYSTEMCTL
  if (process.env.AXIOMATIC_SYSTEMD_DIR && !override) return false
  for (const args of calls) {
    const r = spawnSync(override || 'systemctl', args, { encoding: 'utf8' })
    if (r.error || r.status !== 0) {
      const why = r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`)
      throw new BackupError('EIO', `systemctl ${args.join(' ')} failed: ${why}`)
    }
  }
  return true
}

/** The crontab program: `AXIOMATIC_CRONTAB`, else `crontab`. */
function crontabProgram(): string {
  return process.env.AXIOMATIC_CRONTAB || 'crontab'
}

/** The current crontab (empty when there is none). */
function readCrontab(): string {
  const r = spawnSync(crontabProgram(), ['-l'], { encoding: 'utf8' })
  if (r.error) throw new BackupError('EIO', `cannot run ${crontabProgram()} -l: ${r.error.message} (is cron installed? or use --via systemd)`)
  if (r.status !== 0) {
    if (/no crontab/i.test(r.stderr)) return ''
    throw new BackupError('EIO', `${crontabProgram()} -l failed: ${r.stderr.trim() || `exit ${r.status}`}`)
  }
  return r.stdout
}

function writeCrontab(text: string): void {
  const r = spawnSync(crontabProgram(), ['-'], { input: text, encoding: 'utf8' })
  if (r.error || r.status !== 0) throw new BackupError('EIO', `${crontabProgram()} - failed: ${r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`)}`)
}

/** `backup schedule install|remove|show`. */
export function schedule(action: 'install' | 'remove' | 'show', o: ScheduleOptions): ScheduleResult {
  const configAbs = path.resolve(o.config)
  if (action === 'install' && !o.every) throw new ConfigError('schedule install needs --every (e.g. --every daily, --every 1h, --every "30 2 * * *")')
  const when = o.every ? parseEvery(o.every) : undefined
  // Install checks the profile now, so a broken one never runs from cron.
  const cfg = action === 'install' ? loadConfig(configAbs) : undefined
  const via: Via = o.via ?? (systemdRuns() ? 'systemd' : 'cron')
  if (via === 'cron' && o.scope) throw new ConfigError('--user/--system choose systemd units; a crontab is always the current user’s (use --via systemd)')
  const name = scheduleName(configAbs)
  const res: ScheduleResult = { action, via, scope: null, name, config: configAbs, units: {}, cronLine: null, systemctl: [], systemctlRun: false, found: false }
  if (via === 'systemd') {
    const scope = o.scope ?? defaultScope()
    res.scope = scope
    const dir = unitDir(scope)
    const files = { service: path.join(dir, `${name}.service`), timer: path.join(dir, `${name}.timer`) }
    const flag = scope === 'user' ? ['--user'] : []
    res.found = fs.existsSync(files.timer) || fs.existsSync(files.service)
    if (action === 'install') {
      const u = renderUnits(name, configAbs, when!)
      fs.mkdirSync(dir, { recursive: true })
      for (const [k, text] of Object.entries(u) as [keyof typeof files, string][]) {
        const tmp = `${files[k]}.tmp-${process.pid}`
        fs.writeFileSync(tmp, text)
        fs.renameSync(tmp, files[k])
        res.units[files[k]] = text
      }
      res.systemctl = [[...flag, 'daemon-reload'], [...flag, 'enable', '--now', `${name}.timer`]]
      res.systemctlRun = systemctl(res.systemctl)
    } else if (action === 'remove') {
      res.systemctl = [[...flag, 'disable', '--now', `${name}.timer`], [...flag, 'daemon-reload']]
      if (res.found) {
        // Disabled first (a unit that is gone cannot be disabled), then removed, then systemd told.
        res.systemctlRun = systemctl(res.systemctl.slice(0, 1))
        for (const f of Object.values(files)) {
          if (fs.existsSync(f)) {
            fs.rmSync(f)
            res.units[f] = ''
          }
        }
        if (res.systemctlRun) systemctl(res.systemctl.slice(1))
      }
    } else {
      for (const f of Object.values(files)) if (fs.existsSync(f)) res.units[f] = fs.readFileSync(f, 'utf8')
    }
    return res
  }
  const marker = cronMarker(name)
  const current = readCrontab()
  const lines = current.split('\n')
  if (lines.at(-1) === '') lines.pop()
  const ours = (l: string) => l.trimEnd().endsWith(marker)
  const mine = lines.filter(ours)
  res.found = mine.length > 0
  if (action === 'show') {
    res.cronLine = mine[0] ?? null
    return res
  }
  const kept = lines.filter((l) => !ours(l))
  if (action === 'install') {
    res.cronLine = cronLine(name, configAbs, cfg!.dst, when!)
    kept.push(res.cronLine)
  } else {
    res.cronLine = mine[0] ?? null
    if (!res.found) return res
  }
  writeCrontab(kept.length ? kept.join('\n') + '\n' : '')
  return res
}
