/**
 * Loading and validating a config file (one file = one profile).
 * Every error names the file and the key and says what is expected; nothing
 * is written before the config is valid.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { ConfigError } from '../errors'
import { native, fromNative } from '../native'
import type { BindingRules } from '../native'
import type { RetentionPolicy } from '../explore/retention'
import { RULE_KEYS, compileRules, type DirectoryPriority } from '../patterns'

/** The config file as written by the user. */
export interface Config {
  /** Folder to back up (`~` and paths relative to the config file are resolved). */
  src: string
  /** Backup folder; holds `mirror/` and the increments. */
  dst?: string
  /** Alias of `dst` used by the original scripts. */
  dist?: string
  include_dirs?: string[]
  track_dirs?: string[]
  exclude_dirs?: string[]
  include_files?: string[]
  track_files?: string[]
  exclude_files?: string[]
  /** Role of a file under both an include dir and a track dir (default `track`). */
  directory_priority?: DirectoryPriority
  /** Mirror folders kept even when empty. */
  preserved_dirs?: string[]
  /** Worker threads (default: available parallelism). */
  max_workers?: number
  /** mtime differences up to this many seconds are not changes (default: 0, or 2 on FAT/exFAT). */
  mtime_tolerance_s?: number
  /** Skip a file that keeps changing while it is read, instead of storing what was read marked `inconsistent` (default false). */
  skip_inconsistent?: boolean
  /**
   * The most mirror files one run may remove: a whole number of files, or a share of the mirror as a
   * string such as `"20%"`. Default: more than half of a mirror of 100 files or more is refused. A run
   * that would remove every file of a non-empty mirror is refused whatever the limit.
   */
  max_delete?: number | string
  /**
   * What a scheduled run (`backup run --unattended`) prunes after a run that succeeded and whose newest increment
   * verifies: the policy of `backup prune`. Never applied after a failed or partial run.
   */
  retention?: { keep_last?: number; keep_daily?: number; keep_weekly?: number; keep_monthly?: number }
  /** The share of stored versions a scheduled run verifies, least recently verified first (e.g. `"10%"`). */
  scrub?: string
  /** Who is told when a scheduled run fails, finds corruption, or `status --max-age` alarms. */
  notify?: NotifyConfig
}

/** `notify` of the profile: a command (argv, no shell) and/or a URL POSTed a JSON body. */
export interface NotifyConfig {
  /** Program and arguments, run without a shell; the JSON body on stdin and in `AXIOMATIC_NOTIFY`. */
  command?: string[]
  /** `http://` or `https://` URL: the JSON body is POSTed to it. */
  url?: string
  /** Seconds the command or the POST may take (default 30). */
  timeout_s?: number
}

/** A validated config with absolute paths and compiled rules. */
export interface ResolvedConfig {
  /** The file it came from, if any. */
  file?: string
  src: string
  dst: string
  rules: BindingRules
  preservedDirs: string[]
  maxWorkers: number
  /** `undefined` = automatic. */
  mtimeToleranceS?: number
  skipInconsistent: boolean
  /** `max_delete` as `"N"` or `"N%"`; `undefined` = the default rule. */
  maxDelete?: string
  /** `retention` as the prune policy; `undefined` = no retention. */
  retention?: RetentionPolicy
  /** `scrub` as a share (0 < f ≤ 1); `undefined` = no scrub. */
  scrub?: number
  /** `notify`, checked; `undefined` = nobody is told. */
  notify?: NotifyConfig
  raw: Config
}

const LIST_KEYS = [...RULE_KEYS, 'preserved_dirs'] as const
const KNOWN_KEYS = ['src', 'dst', 'dist', ...LIST_KEYS, 'directory_priority', 'max_workers', 'mtime_tolerance_s', 'skip_inconsistent', 'max_delete', 'retention', 'scrub', 'notify'] as const
const RETENTION_KEYS = { keep_last: 'keepLast', keep_daily: 'keepDaily', keep_weekly: 'keepWeekly', keep_monthly: 'keepMonthly' } as const

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
  return d[a.length][b.length]
}

function nearest(key: string): string {
  return [...KNOWN_KEYS].sort((x, y) => distance(key, x) - distance(key, y))[0]
}

function expandHome(p: string): string {
  if (p === '~') return os.homedir()
  if (p.startsWith('~/')) return path.join(os.homedir(), p.slice(2))
  return p
}

/** The real path of `p`, resolving symlinks of the part that exists. */
function realish(p: string): string {
  const rest: string[] = []
  let cur = path.resolve(p)
  for (;;) {
    try {
      return path.join(fs.realpathSync(cur), ...rest.reverse())
    } catch {
      const parent = path.dirname(cur)
      if (parent === cur) return path.resolve(p)
      rest.push(path.basename(cur))
      cur = parent
    }
  }
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child)
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))
}

/**
 * Whether `child` (or its nearest existing ancestor) lies inside the folder `parent` by identity:
 * some ancestor of `child` is the same (device, inode) as `parent`. This sees through bind mounts,
 * which give one folder two paths that `inside()` cannot relate.
 */
function insideByIdentity(child: string, parent: string): boolean {
  let p: fs.BigIntStats
  try {
    p = fs.statSync(parent, { bigint: true })
  } catch {
    return false
  }
  let cur = path.resolve(child)
  for (;;) {
    try {
      const st = fs.statSync(cur, { bigint: true })
      if (st.dev === p.dev && st.ino === p.ino) return true
    } catch {
      // Not there (yet): its ancestors decide.
    }
    const up = path.dirname(cur)
    if (up === cur) return false
    cur = up
  }
}

/** A `max_delete` value (config key or `--max-delete`) as the engine takes it, or `undefined` if invalid. */
export function parseMaxDelete(v: unknown): string | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? String(v) : undefined
  if (typeof v !== 'string') return undefined
  const t = v.trim()
  if (/^\d+$/.test(t)) return t
  const m = /^(\d+(?:\.\d+)?)\s*%$/.exec(t)
  return m && Number(m[1]) <= 100 ? `${m[1]}%` : undefined
}

/** A share such as `"10%"` (0 < N ≤ 100) as a fraction, or `undefined` if invalid. */
export function parseShare(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined
  const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(v)
  if (!m) return undefined
  const n = Number(m[1])
  return n > 0 && n <= 100 ? n / 100 : undefined
}

/** `retention` checked: a prune policy keeping at least one increment by some rule. */
function checkRetention(v: unknown, fail: (msg: string) => never): RetentionPolicy {
  const example = 'e.g. "retention": {"keep_last": 10, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12}'
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`"retention" must be an object, ${example}`)
  const policy: RetentionPolicy = {}
  for (const [k, n] of Object.entries(v as Record<string, unknown>)) {
    if (!(k in RETENTION_KEYS)) fail(`"retention": unknown key "${k}"; the keys are ${Object.keys(RETENTION_KEYS).join(', ')}`)
    if (!Number.isSafeInteger(n) || (n as number) < 0) fail(`"retention.${k}" must be a whole number ≥ 0, got ${JSON.stringify(n)}`)
    policy[RETENTION_KEYS[k as keyof typeof RETENTION_KEYS]] = n as number
  }
  if (!Object.values(policy).some((n) => n > 0))
    fail(`"retention" keeps nothing but the newest increment: give at least one of ${Object.keys(RETENTION_KEYS).join(', ')} ≥ 1, ${example}`)
  return policy
}

/** `notify` checked: a command as an argv list and/or an http(s) URL. */
function checkNotify(v: unknown, fail: (msg: string) => never): NotifyConfig {
  const example = 'e.g. "notify": {"command": ["/usr/local/bin/alert", "backup"]} or {"url": "https://ntfy.sh/my-backups"}'
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`"notify" must be an object, ${example}`)
  const n = v as Record<string, unknown>
  for (const k of Object.keys(n)) {
    if (!['command', 'url', 'timeout_s'].includes(k)) fail(`"notify": unknown key "${k}"; the keys are command, url, timeout_s`)
  }
  if (n.command === undefined && n.url === undefined) fail(`"notify" needs "command" or "url", ${example}`)
  if (n.command !== undefined && (!Array.isArray(n.command) || n.command.length === 0 || n.command.some((x) => typeof x !== 'string' || x === '')))
    fail(`"notify.command" must be a non-empty list of strings (program, then arguments; no shell), got ${JSON.stringify(n.command)}`)
  if (n.url !== undefined) {
    let ok = false
    try {
      ok = typeof n.url === 'string' && ['http:', 'https:'].includes(new URL(n.url).protocol)
    } catch {
      ok = false
    }
    if (!ok) fail(`"notify.url" must be an http:// or https:// URL, got ${JSON.stringify(n.url)}`)
  }
  if (n.timeout_s !== undefined && !(typeof n.timeout_s === 'number' && n.timeout_s > 0 && n.timeout_s <= 3600))
    fail(`"notify.timeout_s" must be a number of seconds from 0 (excluded) to 3600, got ${JSON.stringify(n.timeout_s)}`)
  return n as NotifyConfig
}

/** Validates a config object. `base` resolves relative paths (the config file's folder). */
export function resolveConfig(raw: unknown, opts: { file?: string; base?: string } = {}): ResolvedConfig {
  const where = opts.file ? `${opts.file}: ` : ''
  const fail = (msg: string): never => {
    throw new ConfigError(`${where}${msg}`)
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('the config must be a JSON object')
  const c = raw as Record<string, unknown>
  for (const key of Object.keys(c)) {
    if (!(KNOWN_KEYS as readonly string[]).includes(key)) fail(`unknown key "${key}"; did you mean "${nearest(key)}"?`)
  }
  for (const key of LIST_KEYS) {
    const v = c[key]
    if (v === undefined) continue
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
      fail(`"${key}" must be a list of strings, e.g. ["Documents", "*.txt:rec"]`)
  }
  for (const key of ['src', 'dst', 'dist'] as const) {
    if (c[key] !== undefined && (typeof c[key] !== 'string' || c[key] === '')) fail(`"${key}" must be a non-empty path string`)
  }
  if (c.directory_priority !== undefined && c.directory_priority !== 'track' && c.directory_priority !== 'include')
    fail(`"directory_priority" must be "track" or "include", got ${JSON.stringify(c.directory_priority)}`)
  if (c.max_workers !== undefined && !(Number.isInteger(c.max_workers) && (c.max_workers as number) >= 1 && (c.max_workers as number) <= 1024))
    fail(`"max_workers" must be a whole number from 1 to 1024, got ${JSON.stringify(c.max_workers)}`)
  if (c.mtime_tolerance_s !== undefined && !(typeof c.mtime_tolerance_s === 'number' && c.mtime_tolerance_s >= 0 && c.mtime_tolerance_s <= 86400))
    fail(`"mtime_tolerance_s" must be a number of seconds from 0 to 86400, got ${JSON.stringify(c.mtime_tolerance_s)}`)
  if (c.skip_inconsistent !== undefined && typeof c.skip_inconsistent !== 'boolean')
    fail(`"skip_inconsistent" must be true or false, got ${JSON.stringify(c.skip_inconsistent)}`)
  if (c.max_delete !== undefined && parseMaxDelete(c.max_delete) === undefined)
    fail(`"max_delete" must be a whole number of files (e.g. 500) or a percentage of the mirror (e.g. "20%"), got ${JSON.stringify(c.max_delete)}`)
  const retention = c.retention === undefined ? undefined : checkRetention(c.retention, fail)
  if (c.scrub !== undefined && parseShare(c.scrub) === undefined)
    fail(`"scrub" must be a share of the stored versions from "0%" (excluded) to "100%", e.g. "10%", got ${JSON.stringify(c.scrub)}`)
  const notify = c.notify === undefined ? undefined : checkNotify(c.notify, fail)
  if (c.src === undefined) fail('"src" is missing: the folder to back up, e.g. "src": "~/Documents"')
  if (c.dst !== undefined && c.dist !== undefined && c.dst !== c.dist)
    fail(`"dst" and its alias "dist" are both set and differ (${JSON.stringify(c.dst)} vs ${JSON.stringify(c.dist)}); keep one`)
  const dstRaw = (c.dst ?? c.dist) as string | undefined
  if (dstRaw === undefined) fail('"dst" is missing: the backup folder, e.g. "dst": "/media/usb/backup"')
  const config = c as unknown as Config
  const base = opts.base ?? process.cwd()
  const src = path.resolve(base, expandHome(config.src))
  const dst = path.resolve(base, expandHome(dstRaw as string))
  let st: fs.Stats | undefined
  try {
    st = fs.statSync(src)
  } catch {
    fail(`"src" ${src} does not exist; check the path (relative paths are resolved against the config file's folder)`)
  }
  if (!st!.isDirectory()) fail(`"src" ${src} is not a directory`)
  const realSrc = realish(src)
  const realDst = realish(dst)
  if (inside(realDst, realSrc)) fail(`"dst" ${dst} is inside "src" ${src}: the backup would back itself up; choose a folder outside src`)
  if (inside(realSrc, realDst)) fail(`"src" ${src} is inside "dst" ${dst}: choose a backup folder that does not contain the source`)
  // The same through a bind mount (another path to the same folder): compare identities, not paths.
  if (insideByIdentity(realDst, realSrc))
    fail(`"dst" ${dst} is inside "src" ${src} (the same folder is reachable at both paths, e.g. through a bind mount): the backup would back itself up; choose a folder outside src`)
  if (insideByIdentity(realSrc, realDst))
    fail(`"src" ${src} is inside "dst" ${dst} (the same folder is reachable at both paths, e.g. through a bind mount): choose a backup folder that does not contain the source`)
  try {
    const dstSt = fs.statSync(dst)
    if (!dstSt.isDirectory()) fail(`"dst" ${dst} exists and is not a directory`)
  } catch (e) {
    if (e instanceof ConfigError) throw e
  }
  for (const p of config.preserved_dirs ?? []) {
    if (p.split('/').includes('..') || path.isAbsolute(p)) fail(`"preserved_dirs": ${JSON.stringify(p)} must be a folder relative to the mirror, without ".."`)
  }
  let rules: BindingRules
  try {
    rules = compileRules(config, config.directory_priority ?? 'track')
    native().checkRules(rules)
  } catch (e) {
    const err = fromNative(e)
    if (err instanceof ConfigError) throw new ConfigError(`${where}${err.message}`)
    throw err
  }
  return {
    file: opts.file,
    src,
    dst,
    rules,
    preservedDirs: (config.preserved_dirs ?? []).map((p) => p.replace(/^\/+|\/+$/g, '')),
    maxWorkers: config.max_workers ?? os.availableParallelism(),
    mtimeToleranceS: config.mtime_tolerance_s,
    skipInconsistent: config.skip_inconsistent ?? false,
    maxDelete: config.max_delete === undefined ? undefined : parseMaxDelete(config.max_delete),
    retention,
    scrub: config.scrub === undefined ? undefined : parseShare(config.scrub),
    notify,
    raw: config,
  }
}

/** Reads and validates a config file (default: `config.json` in the working directory). */
export function loadConfig(file = 'config.json'): ResolvedConfig {
  const abs = path.resolve(file)
  let text: string
  try {
    text = fs.readFileSync(abs, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT')
      throw new ConfigError(`config file ${abs} not found; create it (see the README) or pass --config FILE`)
    throw new ConfigError(`cannot read config file ${abs}: ${(e as Error).message}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (e) {
    throw new ConfigError(`${abs}: not valid JSON: ${(e as Error).message}`)
  }
  return resolveConfig(raw, { file: abs, base: path.dirname(abs) })
}

/**
 * Only the `notify` of a config file, when the whole profile does not load (its `src` is missing, say): a
 * scheduled job can still tell someone why it could not run. `undefined` when the file has no usable `notify`.
 */
export function loadNotify(file: string): NotifyConfig | undefined {
  try {
    const raw = JSON.parse(fs.readFileSync(path.resolve(file), 'utf8')) as Record<string, unknown>
    if (raw?.notify === undefined) return undefined
    return checkNotify(raw.notify, (msg) => {
      throw new ConfigError(msg)
    })
  } catch {
    return undefined
  }
}
