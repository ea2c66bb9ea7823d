/**
 * Running unattended: what a scheduled job does (`backup run --unattended`), the health check behind
 * `backup status --max-age`, and telling someone (`notify` of the profile). The rules, so that nobody loses
 * data while nobody watches:
 *
 * - retention is applied only after a run that succeeded (no warning that means a file was not backed up, see
 *   `BLOCKING_WARNINGS`) and whose newest increment verifies; a failed or partial run never prunes, and the
 *   newest increment is never pruned (the policy always keeps it);
 * - each step that reads or changes the backup holds the run lock (never two at once);
 * - a failure, a partial run, corruption and staleness are reasons; reasons are notified; a notification that
 *   fails is a warning and never changes the exit code.
 */
import { spawn } from 'node:child_process'
import os from 'node:os'

import { backup, type Stats } from './backup'
import { now } from './clock'
import type { NotifyConfig, ResolvedConfig } from './config'
import { BackupError, ExitCode, type ExitCodeValue } from './errors'
import { listIncrements, prune, type BackupStatus, type PruneResult, type RetentionPolicy } from './explore'
import { verifyBackup, type BackupVerifyResult } from './integrity'
import { lastSuccessOf } from './last-run'
import { acquireLock } from './lock'
import type { Warning, WarningCode } from './warnings'

/**
 * Run warnings that mean a file's current version was not backed up (or may be torn): after a run with one
 * of these, retention is not applied (an older increment may hold the only good copy) and the run is a reason
 * to notify. The others (`vanished`, `xattrs-not-copied`, `target-no-*`, `xattrs-need-root`) concern files that
 * are gone or metadata the target cannot hold; they do not stop retention.
 */
export const BLOCKING_WARNINGS: readonly WarningCode[] = [
  'permission-denied',
  'io-error',
  'changed-during-read',
  'inconsistent-copy',
  'mirror-missing',
  'symlink-unsupported',
]

/** Why a job or a check wants attention. */
export interface Reason {
  /**
   * `run-failed`, `not-backed-up` (a run with blocking warnings), `verify-failed` (the newest increment does not
   * verify), `corrupt` (a verify or scrub found a damaged stored version, remembered until a full verify passes),
   * `prune-failed`, `scrub-failed`, `never-run`, `last-run-failed`, `stale`, `damaged` (metadata or mirror state).
   */
  code: string
  message: string
}

/** The JSON body a notification carries (stdin and `AXIOMATIC_NOTIFY` for a command, the POST body for a URL). */
export interface NotifyBody {
  /** Always `axiomatic-backup`. */
  source: 'axiomatic-backup'
  /** `run` (a scheduled run) or `status` (a `--max-age` check). */
  event: 'run' | 'status'
  host: string
  dst: string
  config: string | null
  /** ISO time of the notification. */
  time: string
  exitCode: number
  reasons: Reason[]
}

/**
 * Tells `notify` about `body`: the command (argv, no shell; body on stdin and in `AXIOMATIC_NOTIFY`) and/or
 * the URL (POST, `application/json`). Resolves to the warnings (empty when every target took it); never rejects.
 */
export async function sendNotification(n: NotifyConfig, body: NotifyBody): Promise<string[]> {
  const text = JSON.stringify(body)
  const timeoutMs = (n.timeout_s ?? 30) * 1000
  const warnings: string[] = []
  if (n.command) {
    const w = await runCommand(n.command, text, timeoutMs)
    if (w) warnings.push(`notify command ${JSON.stringify(n.command[0])}: ${w}`)
  }
  if (n.url) {
    try {
      const r = await fetch(n.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'axiomatic-backup' },
        body: text,
        signal: AbortSignal.timeout(timeoutMs),
      })
      await r.arrayBuffer().catch(() => undefined)
      if (!r.ok) warnings.push(`notify URL ${n.url}: answered HTTP ${r.status}`)
    } catch (e) {
      const err = e as Error & { cause?: Error }
      const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : (err.cause?.message ?? err.message)
      warnings.push(`notify URL ${n.url}: ${why}`)
    }
  }
  return warnings
}

/** Runs the notify command; resolves to why it failed, or null. */
function runCommand(argv: string[], body: string, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    let child
    try {
      child = spawn(argv[0], argv.slice(1), {
        stdio: ['pipe', 'ignore', 'pipe'],
        env: { ...process.env, AXIOMATIC_NOTIFY: body },
        timeout: timeoutMs,
      })
    } catch (e) {
      resolve((e as Error).message)
      return
    }
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 2000) stderr += d.toString()
    })
    child.stdin!.on('error', () => {})
    child.stdin!.end(body)
    child.on('error', (e) => resolve(e.message))
    child.on('close', (code, signal) => {
      const tail = stderr.trim() ? `: ${stderr.trim().split('\n').at(-1)}` : ''
      if (signal) resolve(`killed by ${signal}${signal === 'SIGTERM' ? ` (no exit within ${timeoutMs / 1000} s)` : ''}${tail}`)
      else if (code !== 0) resolve(`exited with ${code}${tail}`)
      else resolve(null)
    })
  })
}

/** A duration such as `26h`, `90m`, `2d`, `3600s`, `1w` in ms, or `undefined` if it is none. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$/.exec(text)
  if (!m) return undefined
  const unit = { s: 1e3, m: 60e3, min: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[m[2] as 's']
  const ms = Number(m[1]) * unit
  return ms > 0 ? ms : undefined
}

/** A duration in words: `3 d 4 h`, `26 h`, `5 min`. */
export function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 120) return `${s} s`
  if (s < 7200) return `${Math.round(s / 60)} min`
  if (s < 172800) return `${Math.floor(s / 3600)} h${s % 3600 >= 60 ? ` ${Math.floor((s % 3600) / 60)} min` : ''}`
  return `${Math.floor(s / 86400)} d${s % 86400 >= 3600 ? ` ${Math.floor((s % 86400) / 3600)} h` : ''}`
}

/**
 * The alarms of a backup for `status --max-age`: no successful run within `maxAgeMs` (or none ever), a last run
 * that failed, damaged metadata or mirror state, corruption a verify or scrub found. Empty = healthy.
 */
export function alarms(s: BackupStatus, maxAgeMs: number, nowMs = now()): Reason[] {
  const out: Reason[] = []
  const lr = s.lastRun
  if (!lr) out.push({ code: 'never-run', message: `no run is recorded in ${s.dst}: it was never backed up by this version` })
  else {
    if (lr.result === 'failed') {
      out.push({ code: 'last-run-failed', message: `the last run failed at ${lr.finished}: ${lr.error ? `${lr.error.code}: ${lr.error.message}` : 'no error recorded'}` })
    }
    const ok = lastSuccessOf(lr)
    if (!ok) out.push({ code: 'stale', message: 'no run has ever succeeded' })
    else {
      const ageMs = nowMs - Date.parse(ok)
      if (ageMs > maxAgeMs) out.push({ code: 'stale', message: `the last successful run finished ${age(ageMs)} ago (${ok}), more than the ${age(maxAgeMs)} allowed` })
    }
  }
  if (s.damaged.length) out.push({ code: 'damaged', message: `metadata of ${s.damaged.length} increment(s) is missing or damaged: ${s.damaged.map((d) => d.increment).join(', ')} (\`backup recreate\` rebuilds it)` })
  if (s.state.stateError) out.push({ code: 'damaged', message: `the mirror state is unreadable: ${s.state.stateError}` })
  if (s.scrub.corrupt.length) {
    const first = s.scrub.corrupt.slice(0, 5).map((c) => `${c.location}/${c.path} (${c.status})`).join(', ')
    out.push({ code: 'corrupt', message: `a verify found ${s.scrub.corrupt.length} damaged stored version(s): ${first}${s.scrub.corrupt.length > 5 ? ', …' : ''}; remembered until a full \`backup verify --dst\` passes` })
  }
  return out
}

/** What `backup run --unattended` did, step by step (`--json` prints it). */
export interface UnattendedResult {
  dryRun: boolean
  /** The run's statistics, or null when it failed. */
  run: Stats | null
  /** The run's error, when it failed. */
  runError: { code: string; message: string } | null
  /** The check of the newest increment (`verify --increment NEWEST`), or null when not done. */
  verifyNewest: BackupVerifyResult | null
  /** Why retention was not applied, or null when it was (or none is configured: then `prune` is null too). */
  retentionSkipped: string | null
  prune: PruneResult | null
  /** The scrub of the profile's share, or null when none is configured or it was skipped. */
  scrub: BackupVerifyResult | null
  reasons: Reason[]
  /** Warnings of the job itself (a notification that failed). */
  notifyWarnings: string[]
  notified: boolean
  exitCode: ExitCodeValue
}

/** What `runUnattended` is asked. */
export interface UnattendedOptions {
  /** Run and prune as dry runs (no verify, no scrub): shows what the job would remove. */
  dryRun?: boolean
  signal?: AbortSignal
  /** Called with one line per step (the job's log). */
  log?: (line: string) => void
  /** Do not notify (the reasons are still returned). */
  noNotify?: boolean
}

/**
 * The scheduled job: `backup run`, then, only if the run succeeded and the newest increment verifies, the profile's
 * `retention`; then its `scrub`; then `notify` with the reasons, if any. Exit code: 0 all well; 1 a partial run
 * (harmless warnings only); 2 a failure, a partial run with files not backed up, or corruption.
 */
export async function runUnattended(cfg: ResolvedConfig, opts: UnattendedOptions = {}): Promise<UnattendedResult> {
  const log = opts.log ?? (() => {})
  const res: UnattendedResult = {
    dryRun: !!opts.dryRun,
    run: null,
    runError: null,
    verifyNewest: null,
    retentionSkipped: null,
    prune: null,
    scrub: null,
    reasons: [],
    notifyWarnings: [],
    notified: false,
    exitCode: ExitCode.Ok,
  }
  let code: ExitCodeValue = ExitCode.Ok
  const worse = (c: ExitCodeValue) => {
    if (c > code) code = c
  }
  let locked = false
  try {
    res.run = await backup(cfg, { dryRun: opts.dryRun, signal: opts.signal })
    const r = res.run
    if (r.refused) {
      res.reasons.push({ code: 'run-failed', message: `the run was refused: ${r.refused}` })
      worse(ExitCode.Failed)
    }
    const blocking = r.warnings.filter((w) => BLOCKING_WARNINGS.includes(w.code))
    if (blocking.length) {
      res.reasons.push({ code: 'not-backed-up', message: `${blocking.length} file(s) were not backed up or may be stored torn: ${sample(blocking)}` })
      worse(ExitCode.Failed)
    } else if (r.warnings.length) worse(ExitCode.Partial)
    log(`run: ${r.increment ? `${r.increment}: ${r.new} new, ${r.changed} changed, ${r.deleted} deleted` : 'no tracked changes'}; ${r.warnings.length} warnings${r.refused ? `; refused: ${r.refused}` : ''}`)
  } catch (e) {
    const err = e instanceof BackupError ? e : new BackupError('EIO', (e as Error).message)
    res.runError = { code: err.code, message: err.message }
    locked = err.code === 'ELOCKED'
    if (!locked) res.reasons.push({ code: 'run-failed', message: `${err.code}: ${err.message}` })
    worse(err.code === 'ECONFIG' ? ExitCode.Usage : ExitCode.Failed)
    log(`run: failed: ${err.code}: ${err.message}`)
  }
  const runOk = res.run !== null && !res.run.refused && !res.reasons.length
  if (locked) {
    // Another command works on the backup (a run that outlasts the interval): this job does nothing more.
    res.retentionSkipped = 'another command holds the backup folder’s lock'
    log('skipped: another command holds the lock; this job did nothing')
  } else {
    await afterRun(cfg, opts, res, runOk, worse, log)
  }
  res.exitCode = code
  if (res.reasons.length && cfg.notify && !opts.noNotify && !opts.dryRun) {
    const body: NotifyBody = {
      source: 'axiomatic-backup',
      event: 'run',
      host: os.hostname(),
      dst: cfg.dst,
      config: cfg.file ?? null,
      time: new Date(now()).toISOString(),
      exitCode: code,
      reasons: res.reasons,
    }
    res.notifyWarnings = await sendNotification(cfg.notify, body)
    res.notified = res.notifyWarnings.length === 0
    log(res.notified ? 'notified' : `notification failed: ${res.notifyWarnings.join('; ')}`)
  }
  return res
}

/** The steps after the run: verify the newest increment, retention, scrub (each under the lock). */
async function afterRun(
  cfg: ResolvedConfig,
  opts: UnattendedOptions,
  res: UnattendedResult,
  runOk: boolean,
  worse: (c: ExitCodeValue) => void,
  log: (line: string) => void,
): Promise<void> {
  const dst = cfg.dst
  if (cfg.retention) {
    try {
      await retention(cfg, cfg.retention, opts, res, runOk, worse)
    } catch (e) {
      if ((e as BackupError).code === 'ELOCKED') res.retentionSkipped = 'another command took the lock after the run: nothing is pruned this time'
      else {
        res.retentionSkipped = `it failed: ${(e as Error).message}`
        res.reasons.push({ code: 'prune-failed', message: (e as Error).message })
        worse(ExitCode.Failed)
      }
    }
    const removed = res.prune ? `${res.prune.dryRun ? 'would remove' : 'removed'} ${res.prune.removed.length} increment(s): ${res.prune.removed.join(', ') || 'none'}` : ''
    log(`retention: ${res.retentionSkipped ?? removed}`)
  }
  // A run that failed with an error (missing disk, full disk, config) is not followed by a scrub.
  if (cfg.scrub !== undefined && !opts.dryRun && res.runError === null) {
    try {
      const release = acquireLock(dst, 'scrub')
      try {
        res.scrub = await verifyBackup(dst, { scrub: cfg.scrub, threads: cfg.maxWorkers, signal: opts.signal })
      } finally {
        release()
      }
      const s = res.scrub
      const bad = s.problems.filter((p) => p.status === 'CORRUPT' || p.status === 'MISSING')
      if (bad.length) {
        res.reasons.push({ code: 'corrupt', message: `the scrub found ${bad.length} damaged stored version(s): ${bad.slice(0, 5).map((p) => `${p.location}/${p.path} ${p.status}`).join(', ')}` })
        worse(ExitCode.Failed)
      }
      log(`scrub: ${s.filesChecked} of ${s.scrub?.total ?? 0} versions checked, ${bad.length} damaged; ${s.scrub?.neverVerifiedAfter ?? 0} never verified`)
    } catch (e) {
      if ((e as BackupError).code === 'ELOCKED') log('scrub: skipped: another command took the lock after the run')
      else {
        res.reasons.push({ code: 'scrub-failed', message: (e as Error).message })
        worse(ExitCode.Failed)
        log(`scrub: failed: ${(e as Error).message}`)
      }
    }
  }
}

/** Retention after the run: only after a good run, and only when the newest increment verifies. */
async function retention(
  cfg: ResolvedConfig,
  policy: RetentionPolicy,
  opts: UnattendedOptions,
  res: UnattendedResult,
  runOk: boolean,
  worse: (c: ExitCodeValue) => void,
): Promise<void> {
  const dst = cfg.dst
  if (!runOk) {
    res.retentionSkipped = 'the run did not succeed (failed, refused, or files not backed up): nothing is pruned'
    return
  }
  const { increments } = await listIncrements(dst)
  const newest = increments.at(-1)?.name
  if (!newest) {
    res.retentionSkipped = 'no increment yet'
    return
  }
  if (opts.dryRun) {
    res.prune = await prune(dst, policy, { dryRun: true })
    return
  }
  const release = acquireLock(dst, 'verify')
  try {
    res.verifyNewest = await verifyBackup(dst, { increment: newest, threads: cfg.maxWorkers, signal: opts.signal })
  } finally {
    release()
  }
  const v = res.verifyNewest
  const bad = v.problems.filter((p) => p.status !== 'OVERWRITTEN')
  if (bad.length || v.damaged.length) {
    res.retentionSkipped = `the newest increment ${newest} does not verify: nothing is pruned`
    const what = [...bad.map((p) => `${p.location}/${p.path} ${p.status}`), ...v.damaged.map((d) => `${d.increment}: ${d.problem}`)]
    res.reasons.push({ code: 'verify-failed', message: `the newest increment ${newest} does not verify: ${what.slice(0, 5).join(', ')}` })
    worse(ExitCode.Failed)
    return
  }
  res.prune = await prune(dst, policy, { dryRun: false })
}

/** The first few warnings as `path (code)`. */
function sample(ws: Warning[]): string {
  return ws.slice(0, 5).map((w) => `${w.path || '(run)'} (${w.code})`).join(', ') + (ws.length > 5 ? ', …' : '')
}
