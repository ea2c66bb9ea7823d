import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { Command, Option, UsageError } from 'clipanion'

import { now } from '../../clock'
import { loadConfig, loadNotify } from '../../config'
import { describeDamage, status, type BackupStatus } from '../../explore'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { age, alarms, parseDuration, sendNotification, type Reason } from '../../unattended'
import { DstCommand } from '../base'
import { localTime, shown } from '../format'

export default class StatusCommand extends DstCommand {
  static paths = [['status']]
  static usage = Command.Usage({
    description: 'The last run, work in progress or interrupted, and a fast consistency check',
    details: `
      The last run, a run or maintenance holding the lock, leftovers of an interrupted run, prune or delete, a fast
      check that the mirror state agrees with \`mirror/\` (nothing is read), and increments whose metadata is missing
      or damaged.

      Also the scrub record: versions never verified, the oldest "last verified" time, corruption a verify or scrub
      found (remembered until a full verify passes).

      \`--max-age 26h\` makes it a check for monitors (cron mail, systemd OnFailure, Nagios-style): exit 2 with the
      reasons when the last successful run is older than that (or there is none), the last run failed, metadata or
      the mirror state is damaged, or corruption was found; the profile's \`notify\` is told (with \`--config\`).

      Exit codes: 0; 1 something needs attention (an interrupted run, damaged metadata, remembered corruption, a folder
      that cannot be written); 2 an alarm of --max-age, or status could not run; 64.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup status".
    `,
    examples: [
      ['Check a backup', '$0 status --config usb.json'],
      ['Alarm (exit 2, notify) when no good backup in 26 hours, a failure or corruption', '$0 status --config usb.json --max-age 26h'],
      ['The same for a monitor, as JSON', '$0 status --dst /media/usb/backup --max-age 2d --json'],
    ],
  })

  maxAge = Option.String('--max-age', {
    description: 'Alarm (exit 2) when the last successful run is older (e.g. 26h, 2d), the last run failed, or damage/corruption is known',
  })
  noNotify = Option.Boolean('--no-notify', false, { description: 'With --max-age: do not run the profile’s notify on an alarm' })

  async run(): Promise<ExitCodeValue> {
    const maxAgeMs = this.maxAge === undefined ? undefined : parseDuration(this.maxAge)
    if (this.maxAge !== undefined && maxAgeMs === undefined)
      throw new UsageError(`--max-age: expected a duration such as 26h, 90m, 2d or 1w, got ${JSON.stringify(this.maxAge)}`)
    const at = now()
    let s: BackupStatus
    try {
      s = await status(this.backupDir())
    } catch (e) {
      if (maxAgeMs === undefined || e instanceof UsageError) throw e
      // For a monitor, a backup that cannot be found or read (the disk not mounted, the profile broken) is an alarm.
      const reasons: Reason[] = [{ code: 'unreachable', message: (e as Error).message }]
      await this.tell(reasons, this.dst ?? '', at)
      if (this.json) this.print({ dst: this.dst ?? null, alarms: reasons, maxAgeMs })
      else this.context.stdout.write(this.colors.red(`ALARM unreachable: ${(e as Error).message}`) + '\n')
      return ExitCode.Failed
    }
    const lo = s.leftovers
    const attention =
      !!s.notWritable ||
      s.lastRun?.result === 'failed' ||
      !!lo.interruptedRun ||
      lo.incompleteIncrements.length > 0 ||
      lo.prunePending ||
      lo.deletePending ||
      !s.state.agrees ||
      s.damaged.length > 0 ||
      s.scrub.corrupt.length > 0
    const reasons: Reason[] | undefined = maxAgeMs === undefined ? undefined : alarms(s, maxAgeMs, at)
    const code = reasons?.length ? ExitCode.Failed : attention ? ExitCode.Partial : ExitCode.Ok
    if (reasons?.length) await this.tell(reasons, s.dst, at)
    if (this.json) {
      this.print(reasons ? { ...s, alarms: reasons, maxAgeMs } : s)
      return code
    }
    const c = this.colors
    // The folder is named once, on the first line; paths inside it are shown relative to it.
    const stdout = this.context.stdout
    const inside = s.dst.endsWith('/') ? s.dst : s.dst + '/'
    const out = { write: (t: string) => stdout.write(t.split(inside).join('')) }
    stdout.write(`backup folder ${s.dst}: ${s.increments} increments${s.newest ? `, newest ${s.newest}` : ''}\n`)
    for (const r of reasons ?? []) out.write(c.red(`ALARM ${r.code}: ${r.message}`) + '\n')
    if (reasons && !reasons.length) out.write(c.green(`no alarm: a successful run within ${this.maxAge}, no failure, no damage or corruption known`) + '\n')
    if (s.notWritable) {
      const why: Record<string, string> = {
        EROFS: 'it is on a read-only file system (mounted read-only, or remounted so after disk errors): no run can write to it; remount it read-write or check the disk',
        EACCES: 'this user may not write to it (permission denied)',
      }
      out.write(c.red(`not writable (${s.notWritable}): ${why[s.notWritable] ?? 'writing is refused'}\n`))
    }
    if (s.target) {
      const t = s.target
      out.write(`target: ${t.caps.fs_type}${t.limits.length ? `: ${t.limits.join('; ')}` : ', no limits found'} (probed ${localTime(Date.parse(t.probed), true)})\n`)
    }
    const lr = s.lastRun
    const killed = lo.interruptedRun && (!lr || Date.parse(lr.finished) < Date.parse(lo.interruptedRun.started))
    if (killed) out.write(c.red(`last run: interrupted (started ${lo.interruptedRun!.started}, never finished); the next run completes it\n`))
    if (killed && lr) out.write(c.dim(`  the run before it: ${lr.result} at ${localTime(Date.parse(lr.finished), true)}\n`))
    else if (!lr) out.write('last run: none recorded\n')
    else {
      const res = lr.result === 'ok' ? c.green('ok') : lr.result === 'partial' ? c.yellow('partial') : c.red('failed')
      out.write(`last run: ${res} at ${localTime(Date.parse(lr.finished), true)}${lr.increment ? ` → ${lr.increment}` : ''}`)
      out.write(lr.warnings ? `, ${lr.warnings} warnings\n` : '\n')
      for (const w of lr.warningSample) out.write(`  ${shown(w.path)}: ${w.code}: ${w.message}\n`)
      if (lr.error) out.write(`  ${c.red(lr.error.code)}: ${lr.error.message}\n`)
    }
    if (s.lock) {
      const alive = s.lock.alive ? 'running' : c.yellow('not running (its process ended; the next command takes the lock)')
      out.write(`lock: ${s.lock.command} by pid ${s.lock.pid}@${s.lock.host} since ${s.lock.started}, ${alive}\n`)
    }
    if (lo.interruptedRun) {
      out.write(c.yellow(`interrupted run: ${lo.interruptedRun.increment ?? 'no increment'} started ${lo.interruptedRun.started}; the next run finishes it\n`))
    }
    if (lo.incompleteIncrements.length) out.write(c.yellow(`unfinished increments (not shown as complete): ${lo.incompleteIncrements.join(', ')}\n`))
    if (lo.prunePending) out.write(c.yellow('an interrupted prune is pending; the next prune/delete/recreate/run finishes it\n'))
    if (lo.deletePending) out.write(c.yellow('an interrupted delete is pending; the next prune/delete/recreate/run finishes it\n'))
    for (const d of s.damaged) out.write(c.red(describeDamage(d)) + '\n')
    const st = s.state
    if (st.original) {
      out.write(c.yellow('a backup folder made by backup.py: the next `backup run` adopts it (its mirror and mirror.json are the previous state; nothing unchanged is copied again)\n'))
      if (st.extra.length) {
        out.write(c.yellow(`  ${st.extra.length} mirror files are not in mirror.json (backup.py left them behind): the next run removes those the source no longer selects\n`))
        st.extra.slice(0, 10).forEach((p) => out.write(`  extra     ${shown(p)}\n`))
      }
      if (st.missing.length || st.differing.length) {
        out.write(c.yellow(`  mirror.json disagrees with mirror/: ${st.missing.length} missing, ${st.differing.length} differing; the next run takes the mirror's files as they are\n`))
      }
    } else if (!st.statePresent) out.write(c.yellow('mirror state: missing (rebuild it with `backup recreate`)\n'))
    else if (st.stateError) out.write(c.red(`mirror state: unreadable: ${st.stateError}\n`))
    else if (st.agrees) {
      const p = st.pending.length ? `, except ${st.pending.length} files the interrupted run already changed (the next run finishes it)` : ''
      out.write(`mirror state: agrees with mirror/ (${st.mirrorFiles} files)${p}\n`)
    }
    else {
      out.write(c.yellow(`mirror state: disagrees with mirror/: ${st.missing.length} missing, ${st.extra.length} extra, ${st.differing.length} differing\n`))
      const show = (what: string, l: string[]) => l.slice(0, 10).forEach((p) => out.write(`  ${what} ${shown(p)}\n`))
      show('missing  ', st.missing)
      show('extra    ', st.extra)
      show('differing', st.differing)
      out.write('  the next run brings the mirror back in line; `backup recreate --force` rebuilds the state\n')
    }
    const sc = s.scrub
    if (sc.error) out.write(c.yellow(`scrub record: ${sc.error}\n`))
    if (!sc.present) out.write('verified: never (`backup verify --dst` or a scheduled scrub records it)\n')
    else {
      const oldest = sc.oldestVerifiedMs === null ? 'none verified yet' : `oldest verification ${age(at - sc.oldestVerifiedMs)} ago (${localTime(sc.oldestVerifiedMs, true)})`
      const never = sc.neverVerified ? c.yellow(`, ${sc.neverVerified} never verified`) : ''
      const full = sc.lastFullMs === null ? 'no full verify passed yet' : `last full verify passed ${age(at - sc.lastFullMs)} ago`
      out.write(`verified: ${sc.versions} stored versions, ${oldest}${never}; ${full}\n`)
    }
    for (const k of sc.corrupt.slice(0, 20)) {
      out.write(c.red(`CORRUPT ${k.location}/${shown(k.path)}: ${k.status}${k.detail ? ` (${k.detail})` : ''}, found ${localTime(k.foundMs, true)}\n`))
    }
    if (sc.corrupt.length) out.write(c.red(`${sc.corrupt.length} damaged stored version(s) known; a full \`backup verify --dst\` that passes clears this\n`))
    return code
  }

  /** An alarm: the profile's `notify` (with `--config`; its `notify` alone is enough when the profile does not load). */
  private async tell(reasons: Reason[], dst: string, at: number): Promise<void> {
    if (this.noNotify || this.dst || !fs.existsSync(this.config)) return
    const n = loadNotify(this.config)
    if (!n) return
    let where = dst
    try {
      where ||= loadConfig(this.config).dst
    } catch {
      // The profile does not load: the body says so in its reason.
    }
    const warnings = await sendNotification(n, {
      source: 'axiomatic-backup',
      event: 'status',
      host: os.hostname(),
      dst: where,
      config: path.resolve(this.config),
      time: new Date(at).toISOString(),
      exitCode: ExitCode.Failed,
      reasons,
    })
    for (const w of warnings) this.warn(w)
  }
}
