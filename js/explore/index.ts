/**
 * Exploring and changing a backup folder: list, search, history, restore,
 * recreate, delete, prune, status. Filters and policies are parsed here;
 * the per-file work (reading catalogs, copying, hashing, removing) is done
 * by the native core. Writing commands take the backup folder's lock and
 * first finish whatever a killed `delete`/`prune` left.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { ConfigError } from '../errors'
import { acquireLock, readLock, type LockInfo } from '../lock'
import {
  call,
  callJson,
  fromNative,
  native,
  type BindingDamagedMetadata,
  type BindingDeleteResult,
  type BindingLeftovers,
  type BindingPendingRun,
  type BindingProgress,
  type BindingPruneResult,
  type BindingRecreateResult,
  type BindingRestoreResult,
  type BindingScrubSummary,
  type BindingStateCheck,
} from '../native'
import { typedWarnings, type Warning } from '../warnings'
import { nameBytes } from '../names'
import { readLastRun, readTarget, type LastRun, type TargetInfo } from '../last-run'
import { normalizeMask, parsePathFilter, parseSize, parseTime, parseWhen } from './filters'
import { applyPolicy, type Decision, type RetentionPolicy } from './retention'

export type { RetentionPolicy, Decision } from './retention'
export type { LastRun, TargetInfo } from '../last-run'

/** Checks that `dst` is a backup folder (so a typo never creates one). */
export function requireBackupDir(dst: string): string {
  const abs = path.resolve(dst)
  let st: fs.Stats
  try {
    st = fs.statSync(abs)
  } catch {
    throw new ConfigError(`backup folder ${abs} does not exist; pass the folder that holds mirror/ with --dst, or a config with --config`)
  }
  if (!st.isDirectory()) throw new ConfigError(`${abs} is not a folder; --dst must be the backup folder that holds mirror/`)
  const names = fs.readdirSync(abs)
  const paths = native().layoutPaths(abs)
  const own = [path.basename(paths.mirror), path.basename(paths.meta)]
  if (!names.some((n) => own.includes(n) || native().isIncrementName(n))) {
    throw new ConfigError(`${abs} is not a backup folder (no mirror/, no .axiomatic/, no backup_* increments); check --dst`)
  }
  return abs
}

function workers(): number {
  return os.availableParallelism()
}

/** Runs `fn` holding the lock, after finishing interrupted maintenance. */
async function locked<T>(dst: string, command: string, fn: (finished: string[]) => Promise<T>): Promise<T> {
  const release = acquireLock(dst, command)
  try {
    let finished: string[]
    try {
      finished = native().finishPending(dst, workers())
    } catch (e) {
      throw fromNative(e)
    }
    return await fn(finished)
  } finally {
    release()
  }
}

// ---------------------------------------------------------------- list

/**
 * An increment whose metadata is missing or damaged: every command that reads metadata reports it this way
 * (`file` is the metadata file, `problem` what is wrong, `fix` the command that rebuilds it).
 */
export type DamagedMetadata = BindingDamagedMetadata

/** One line per damaged metadata file: the file, what is wrong, the command that rebuilds it. */
export function describeDamage(d: DamagedMetadata): string {
  return `${d.file}: damaged increment metadata: ${d.problem}; rebuild it with \`${d.fix}\``
}

export interface IncrementInfo {
  name: string
  /** ISO 8601 UTC. */
  timestamp: string
  /** `run`, `recovered`, `recreated`, `original` (made by the original backup.py); null without metadata. */
  origin: string | null
  hasMetadata: boolean
  metadataError: string | null
  /** Missing or damaged metadata, with the file and the fix. */
  damaged: DamagedMetadata | null
  new: number
  changed: number
  deleted: number
  /** Entries carried in by `prune`. */
  carried: number
  /** Only for increments of the original backup.py (which does not tell new from changed; `new`/`changed` are 0). */
  newOrChanged?: number
  files: number
  bytes: number
  /** `detailed` only: bytes only this increment holds (freed by deleting it). */
  exclusiveBytes: number | null
  /** `detailed` only: bytes on disk of everything it links to. */
  diskBytes: number | null
}

export interface Listing {
  increments: IncrementInfo[]
  totalDiskBytes: number | null
  mirrorDiskBytes: number | null
  /** Increments whose metadata is missing or damaged (a quick check of each file's head and end). */
  damaged: DamagedMetadata[]
}

/** `backup list`: every increment, oldest first. */
export async function listIncrements(dst: string, opts: { detailed?: boolean } = {}): Promise<Listing> {
  return callJson<Listing>(native().listIncrements(requireBackupDir(dst), !!opts.detailed))
}

// ---------------------------------------------------------------- search

export interface CatalogEntry {
  size: number
  mtime: number
  /** Exact mtime, ns since the epoch, as a decimal string. */
  mtime_ns: string
  mode: number
  kind: 'file' | 'symlink'
  /** `track` (a stored version) or `deleted` (the version that was deleted). */
  category: 'track' | 'deleted'
  op: 'new' | 'changed' | 'deleted'
  sha256: string | null
  stored_as: 'hardlink' | 'copy'
  carried_from?: string
  /** Present when the file kept changing while it was read: the copy may mix old and new content. */
  inconsistent?: true
  /** A hard-link group's later member: the group's first path (restored as a hardlink of it). */
  link?: string
  /** Extended attributes and POSIX ACLs (`system.posix_acl_access`): name → hex value. */
  xattrs?: Record<string, string>
}

export interface SearchHit extends CatalogEntry {
  increment: string
  path: string
}

export interface SearchOptions {
  /** Globs or plain text (plain text means `*text*`); matched against the name or the relative path. */
  masks?: string[]
  ignoreCase?: boolean
  /** `500K`, `>100M`, `<1G`, `10K-100K`. */
  size?: string
  /** `2024-01-15`, `>2024-01-01`, `<2024-01-31`, `2024-01-01..2024-01-15` (local dates). */
  time?: string
  /** Folder prefixes or globs of the relative path. */
  paths?: string[]
  /** Only the N newest increments. */
  lastBackups?: number
}

export interface SearchResult {
  incrementsSearched: number
  /** Increments without readable metadata (not searched: run `backup recreate`). */
  skipped: string[]
  /** The same, with the file, what is wrong and the fix. */
  damaged: DamagedMetadata[]
  hits: SearchHit[]
  totals: { increments: number; files: number; bytes: number; tracked: number; deleted: number }
}

/** `backup search`. Bad filters throw a ConfigError before anything is read. */
export async function search(dst: string, opts: SearchOptions = {}): Promise<SearchResult> {
  const size = opts.size !== undefined ? parseSize(opts.size) : {}
  const time = opts.time !== undefined ? parseTime(opts.time) : {}
  const paths = (opts.paths ?? []).map(parsePathFilter)
  if (opts.lastBackups !== undefined && (!Number.isInteger(opts.lastBackups) || opts.lastBackups < 1)) {
    throw new ConfigError(`--last-backups: expected a whole number ≥ 1, got ${opts.lastBackups}`)
  }
  const filter = {
    masks: (opts.masks ?? []).map(normalizeMask),
    ignoreCase: !!opts.ignoreCase,
    sizeMin: size.min,
    sizeMax: size.max,
    mtimeMinMs: time.minMs,
    mtimeMaxMs: time.maxMs,
    pathPrefixes: paths.flatMap((p) => (p.prefix !== undefined ? [p.prefix] : [])),
    pathGlobs: paths.flatMap((p) => (p.glob !== undefined ? [p.glob] : [])),
    last: opts.lastBackups,
  }
  const dir = requireBackupDir(dst)
  return callJson<SearchResult>(native().searchBackup(dir, filter))
}

// ---------------------------------------------------------------- history

export interface FileHistory {
  path: string
  versions: (CatalogEntry & { increment: string; timestamp: string; present: boolean })[]
  /** The mirror's copy (from the mirror state), or null. */
  mirror: { size: number; mtimeNs: string; mode: number; kind: string; tracked: boolean; sha256: string | null; present: boolean } | null
  /** Increments whose metadata could not be read: a version of the path may be in them, unseen. */
  skipped: string[]
  /** The same, with the file, what is wrong and the fix. */
  damaged: DamagedMetadata[]
}

/** `backup history PATH`: every stored version of one file. */
export async function history(dst: string, file: string): Promise<FileHistory> {
  if (!file || file.startsWith('/') || file.split('/').includes('..')) {
    throw new ConfigError(`history: ${JSON.stringify(file)}: give the file's path relative to the backed-up folder, e.g. docs/report.pdf`)
  }
  return callJson<FileHistory>(native().fileHistory(requireBackupDir(dst), file))
}

// ---------------------------------------------------------------- index: timeline, tree, diff

/**
 * `timeline(dst)`: every increment as `listIncrements` gives it, plus `exclusiveBytes`: the bytes only that
 * increment holds as the catalogs tell it (a version replaced by a later one; a deletion whose version no earlier
 * increment stored). Answered from the catalog index (`dst/.axiomatic/index.sqlite`), built on first use.
 */
export async function timeline(dst: string): Promise<Listing> {
  return callJson<Listing>(native().backupTimeline(requireBackupDir(dst)))
}

/** One name in a folder at a point in time: a file (`dir: false`, with its version) or a folder (`dir: true`). */
export interface TreeEntry {
  name: string
  /** Relative to the backed-up folder. */
  path: string
  dir: boolean
  /** Files only: */
  size?: number
  mtimeNs?: string
  mode?: number
  kind?: 'file' | 'symlink'
  sha256?: string | null
  /** The increment the version comes from, or `mirror` (the latest state, or an untracked file). */
  from?: string
  /** An untracked file: the mirror's current copy (no history is kept). */
  untracked?: boolean
  /** `new`/`changed` for a version from an increment; null from the mirror. */
  op?: string | null
  /** A hard-link group's later member: the group's first path. */
  link?: string | null
}

/** A folder at a point in time: what `restore --at` would restore there, one level deep. */
export interface Tree {
  path: string
  /** The increment of the point in time, or null for the latest state. */
  at: string | null
  /** Sorted by name; a folder after a file of the same name. */
  entries: TreeEntry[]
}

/** A folder path as given: relative to the backed-up folder, no `..` (empty = the top). */
function relFolder(p: string | undefined, what: string): string {
  const rel = (p ?? '').replace(/^\.\//, '').replace(/\/+$/, '')
  if (rel.startsWith('/') || rel.split('/').includes('..')) {
    throw new ConfigError(`${what}: ${JSON.stringify(p)}: give a path relative to the backed-up folder (no leading "/", no "..")`)
  }
  return rel
}

/**
 * `tree(dst, {path, at})`: the folder `path` (default: the top) at `at` (what `restore --at` takes: an increment name
 * or a date; absent = the latest state), from the catalog index.
 */
export async function tree(dst: string, opts: { path?: string; at?: string } = {}): Promise<Tree> {
  const dir = requireBackupDir(dst)
  const rel = relFolder(opts.path, 'tree')
  const at = opts.at !== undefined ? await resolveAt(dir, opts.at) : undefined
  return callJson<Tree>(native().backupTree(dir, rel, at))
}

/** One side of a differing path: the version at that point. */
export interface DiffSide {
  /** The increment holding this version. */
  increment: string
  size: number
  sha256: string | null
  mtimeNs: string
  mode: number
  kind: 'file' | 'symlink'
}

export interface DiffItem {
  path: string
  status: 'added' | 'removed' | 'changed'
  /** The version at `from` (null when added). */
  from: DiffSide | null
  /** The version at `to` (null when removed). */
  to: DiffSide | null
}

/** `backup diff --json`. */
export interface DiffResult {
  from: string
  to: string
  added: number
  removed: number
  changed: number
  addedBytes: number
  removedBytes: number
  /** Sum over changed files of (size at `to` − size at `from`). */
  changedBytes: number
  /** Sorted by path. */
  items: DiffItem[]
}

export interface DiffOptions {
  /** What `restore --at` takes; default: the increment before `to`. */
  from?: string
  /** What `restore --at` takes; default: the newest increment. */
  to?: string
  /** Files or folders relative to the backed-up folder; none = everything. */
  paths?: string[]
}

/**
 * `diff(dst, {from, to, paths})`: the tracked files added, removed and changed between two points in time (default:
 * the two newest increments), with sizes and SHA-256s, from the catalog index.
 */
export async function diff(dst: string, opts: DiffOptions = {}): Promise<DiffResult> {
  const dir = requireBackupDir(dst)
  const paths = (opts.paths ?? []).map((p) => relFolder(p, 'diff'))
  const { increments } = await listIncrements(dir)
  const names = increments.map((i) => i.name)
  const to = opts.to !== undefined ? await resolveAt(dir, opts.to, '--to') : names.at(-1)
  if (to === undefined) throw new ConfigError(`diff: ${dir} has no increments yet; there is nothing to compare`)
  let from: string
  if (opts.from !== undefined) from = await resolveAt(dir, opts.from, '--from')
  else {
    const k = names.indexOf(to)
    if (k < 1) throw new ConfigError(`diff: there is no increment before ${to} to compare it with; name one with --from`)
    from = names[k - 1]
  }
  return callJson<DiffResult>(native().backupDiff(dir, from, to, paths))
}

/**
 * The stored file of a version: `dst/<increment>/track/<path>`, or `dst/mirror/<path>` when `increment` is `mirror`
 * (as `tree`'s `from` says) — a Buffer path, so names that are not UTF-8 work. Refuses a path that is not plain and
 * relative (paths from metadata are never trusted). The caller still opens it without following a symlink it does
 * not expect (`fs.lstatSync` first): a stored symlink is the version itself.
 */
export function storedFile(dst: string, increment: string, rel: string, category: 'track' | 'deleted' = 'track'): Buffer {
  const mirror = increment === 'mirror'
  if (!mirror && !native().isIncrementName(increment)) throw new ConfigError(`${JSON.stringify(increment)} is not an increment name`)
  if (!rel || rel.startsWith('/') || rel.split('/').some((c) => c === '' || c === '.' || c === '..') || rel.includes('\0')) {
    throw new ConfigError(`${JSON.stringify(rel)} is not a plain relative path`)
  }
  const dir = mirror ? native().layoutPaths(path.resolve(dst)).mirror : path.join(path.resolve(dst), increment, category)
  return Buffer.concat([Buffer.from(dir + '/'), nameBytes(rel)])
}

/** Builds the catalog index of `dst` anew (it is derived from the increments' metadata: this only costs time). */
export async function rebuildIndex(dst: string): Promise<void> {
  await callJson<null>(native().rebuildIndex(requireBackupDir(dst)))
}

// ---------------------------------------------------------------- restore

/** An interrupted run (its journal is still there): the next `backup run` finishes it. */
export type PendingRun = BindingPendingRun

/** One line naming an unfinished run and what completes it. */
export function describePendingRun(r: PendingRun): string {
  return `the run started ${r.started}${r.increment ? ` (increment ${r.increment})` : ''} was interrupted and is unfinished; the next \`backup run\` completes it`
}

export interface RestoreOptions {
  /** Files or folders relative to the backed-up folder; none = everything. */
  paths?: string[]
  /** Target folder. */
  to: string
  /** Increment name or ISO date/date-time; absent = the latest state. */
  at?: string
  overwrite?: boolean
  dryRun?: boolean
  onProgress?: (p: BindingProgress) => void
  signal?: AbortSignal
}

/** What `restore` did (or would do); fields documented in `binding.d.ts`. */
export type RestoreResult = Omit<BindingRestoreResult, 'warnings'> & { warnings: Warning[] }

/**
 * Resolves `--at` (or another option taking the same values, named by `option` in errors: `--from`, `--to`)
 * to the newest increment at or before it.
 */
export async function resolveAt(dst: string, when: string, option = '--at'): Promise<string> {
  let w: ReturnType<typeof parseWhen>
  try {
    w = parseWhen(when)
  } catch (e) {
    if (e instanceof ConfigError && option !== '--at') throw new ConfigError(e.message.replace(/^--at /, `${option} `))
    throw e
  }
  const { increments } = await listIncrements(dst)
  if ('name' in w) {
    if (!increments.some((i) => i.name === w.name)) {
      throw new ConfigError(`${option} ${w.name}: there is no such increment in ${dst}; see \`backup list\``)
    }
    return w.name
  }
  const before = increments.filter((i) => Date.parse(i.timestamp) <= w.ms)
  if (before.length === 0) {
    const first = increments[0]
    throw new ConfigError(
      `${option} ${when}: there is no increment at or before that time` + (first ? ` (the oldest is ${first.name}, ${first.timestamp})` : ''),
    )
  }
  return before[before.length - 1].name
}

/** `backup restore`: copies the state as of `at` into `to`. */
export async function restore(dst: string, opts: RestoreOptions): Promise<RestoreResult> {
  const dir = requireBackupDir(dst)
  if (!opts.to) throw new ConfigError('restore needs --to DIR: the folder to restore into')
  const to = path.resolve(opts.to)
  const rel = path.relative(dir, to)
  if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) {
    throw new ConfigError(`--to ${to} is inside the backup folder ${dir}; restore somewhere else`)
  }
  for (const p of opts.paths ?? []) {
    if (p.startsWith('/') || p.split('/').includes('..')) {
      throw new ConfigError(`restore: ${JSON.stringify(p)}: give paths relative to the backed-up folder (no leading "/", no "..")`)
    }
  }
  const at = opts.at !== undefined ? await resolveAt(dir, opts.at) : undefined
  const r = await call(
    native().restoreBackup(
      { dst: dir, to, paths: opts.paths ?? [], at, overwrite: !!opts.overwrite, dryRun: !!opts.dryRun, workers: workers() },
      opts.onProgress,
      opts.signal,
    ),
  )
  return { ...r, warnings: typedWarnings(r.warnings) }
}

// ---------------------------------------------------------------- recreate, delete, prune

export type RecreateResult = Omit<BindingRecreateResult, 'warnings'> & {
  warnings: Warning[]
  /** Interrupted maintenance that was finished first. */
  finished: string[]
}

/** `backup recreate`: rebuilds missing (or, with force, all) metadata and a missing mirror state. */
export async function recreate(
  dst: string,
  opts: { backup?: string; force?: boolean; onProgress?: (p: BindingProgress) => void } = {},
): Promise<RecreateResult> {
  const dir = requireBackupDir(dst)
  return locked(dir, 'recreate', async (finished) => {
    const r = await call(native().recreateMetadata(dir, opts.backup, !!opts.force, workers(), opts.onProgress))
    return { ...r, warnings: typedWarnings(r.warnings), finished }
  })
}

export type DeleteResult = BindingDeleteResult

/** `backup delete NAME --mask M`: removes matching files from one increment and its metadata. */
export async function deleteFiles(
  dst: string,
  name: string,
  opts: { masks: string[]; ignoreCase?: boolean; dryRun?: boolean },
): Promise<DeleteResult> {
  const dir = requireBackupDir(dst)
  if (!opts.masks?.length) throw new ConfigError('delete needs at least one --mask (e.g. --mask "*.iso"); it never empties an increment by default')
  const masks = opts.masks.map(normalizeMask)
  const run = () => call(native().deleteFromIncrement(dir, name, masks, !!opts.ignoreCase, !!opts.dryRun))
  return opts.dryRun ? run() : locked(dir, 'delete', run)
}

/** What `prune` removed, kept and carried (`decisions`: the policy's reasons; `finished`: interrupted maintenance finished first). */
export type PruneResult = BindingPruneResult & { decisions: Decision[]; finished: string[] }

/** `backup prune`: removes increments by retention policy, carrying what kept points in time need. */
export async function prune(dst: string, policy: RetentionPolicy, opts: PruneOptions = {}): Promise<PruneResult> {
  return pruneBy(dst, (incs) => applyPolicy(incs, policy), opts)
}

export interface PruneOptions {
  dryRun?: boolean
  onProgress?: (p: BindingProgress) => void
}

/** Removes exactly the named increments, as `prune` does (the newest one cannot be removed). */
export async function removeIncrements(dst: string, names: string[], opts: PruneOptions = {}): Promise<PruneResult> {
  return pruneBy(
    dst,
    (incs) => {
      for (const n of names) {
        if (!incs.some((i) => i.name === n)) throw new ConfigError(`there is no increment ${JSON.stringify(n)} in ${dst}; see \`backup list\``)
      }
      return incs.map((i) => ({ name: i.name, keep: !names.includes(i.name), reasons: names.includes(i.name) ? [] : ['not named'] }))
    },
    opts,
  )
}

async function pruneBy(dst: string, decide: (incs: { name: string; timeMs: number }[]) => Decision[], opts: PruneOptions): Promise<PruneResult> {
  const dir = requireBackupDir(dst)
  const run = async (finished: string[]) => {
    // Names and times only: read from the heads of the metadata files, not through the catalog index,
    // whose first use builds it from every catalog (seconds at 100k entries) for nothing here.
    const { increments } = await callJson<Listing>(native().queryBackup(dir, { what: 'list' }, false))
    const decisions = decide(increments.map((i) => ({ name: i.name, timeMs: Date.parse(i.timestamp) })))
    const remove = decisions.filter((d) => !d.keep).map((d) => d.name)
    const r = await call(native().pruneIncrements(dir, remove, !!opts.dryRun, workers(), opts.onProgress))
    return { ...r, decisions, finished }
  }
  return opts.dryRun ? run([]) : locked(dir, 'prune', run)
}

// ---------------------------------------------------------------- status

export interface BackupStatus {
  dst: string
  lastRun: LastRun | null
  /**
   * The lock file, if any: who wrote it and whether that process holds the lock now (`alive`; the OS
   * lock answers, so this is exact even for another host on a network file system). A lock file that
   * is not held is the leftover of a process that died; the next command takes the lock.
   */
  lock: (LockInfo & { alive: boolean }) | null
  /** What interrupted commands left in `.axiomatic/`. */
  leftovers: BindingLeftovers
  /** Fast check (size, mtime) of the mirror state against dst/mirror. */
  state: BindingStateCheck
  increments: number
  newest: string | null
  /** Increments whose metadata is missing or damaged (needs attention: exit 1). */
  damaged: DamagedMetadata[]
  /** The target as the last run's probe found it, or null. */
  target: TargetInfo | null
  /** Why the backup folder cannot be written (`EROFS`: mounted read-only; `EACCES`), or null. Needs attention. */
  notWritable: string | null
  /**
   * The scrub record (`.axiomatic/scrub.json`): versions never verified, the oldest "last verified" time, the last
   * full verify, and corruption found and not yet cleared by a passing full verify (needs attention).
   */
  scrub: BindingScrubSummary
}

/** Whether `dst` can be written: null if so, else the errno code (`EROFS`, `EACCES`…). */
function writeProblem(dst: string): string | null {
  try {
    fs.accessSync(dst, fs.constants.W_OK)
    return null
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'EIO'
  }
}

/** `backup status`. */
export async function status(dst: string): Promise<BackupStatus> {
  const dir = requireBackupDir(dst)
  const lastRun = readLastRun(dir)
  const lock = readLock(dir)
  const s = await call(native().backupStatus(dir))
  const { increments, damaged } = await listIncrements(dir)
  return {
    dst: dir,
    lastRun,
    lock: lock ? { pid: lock.pid, host: lock.host, started: lock.started, command: lock.command, alive: lock.held } : null,
    leftovers: s.leftovers,
    state: s.state,
    increments: increments.length,
    newest: increments.at(-1)?.name ?? null,
    damaged,
    target: readTarget(dir),
    notWritable: writeProblem(dir),
    scrub: native().scrubSummary(dir),
  }
}

