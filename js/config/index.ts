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
  raw: Config
}

const LIST_KEYS = [...RULE_KEYS, 'preserved_dirs'] as const
const KNOWN_KEYS = ['src', 'dst', 'dist', ...LIST_KEYS, 'directory_priority', 'max_workers', 'mtime_tolerance_s', 'skip_inconsistent'] as const

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
