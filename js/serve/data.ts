/**
 * Every read (and the one write, restore) that `backup serve` makes of a backup folder, behind ONE
 * seam: the HTTP layer (`./server.ts`) calls only `BackupData`'s methods, so when the catalog index
 * lands, `increments`, `tree`, `history`, `search`, `diff` and `sizes` switch to the indexed queries
 * here and nowhere else.
 *
 * Until then each method is built from the library's own functions, so the page can never disagree
 * with the CLI: a point in time is exactly what `restore --at` would restore, because it IS the plan of
 * `restore({ dryRun: true })` (newest catalog mention at or before the increment wins, a deletion means
 * absent, untracked files from the mirror, an interrupted run's files as it left them); the catalog
 * entries of `search` add each version's hash, mtime and mode.
 *
 * Stored files are opened without ever following a symlink: every folder from the backup folder down
 * is checked with lstat, the file is opened with O_NOFOLLOW, and the opened descriptor's real path must
 * lie inside the backup folder. A symlink is served as a symlink in a tar, never dereferenced.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'

import type { Pack } from 'tar-stream'

import { ConfigError } from '../errors'
import {
  history as libHistory,
  listIncrements,
  requireBackupDir,
  resolveAt,
  restore as libRestore,
  search as libSearch,
  status as libStatus,
  type BackupStatus,
  type CatalogEntry,
  type FileHistory,
  type Listing,
  type PendingRun,
  type RestoreResult,
  type SearchResult,
} from '../explore'
import { parseWhen } from '../explore/filters'
import { native } from '../native'
import { bytesName, displayName, nameBytes } from '../names'

/** An API failure with its HTTP status and a stable code (`{error: {code, message}}`). */
export class ServeError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
    this.name = 'ServeError'
  }
}

const badInput = (message: string) => new ServeError(400, 'EBADINPUT', message)
const notFound = (message: string) => new ServeError(404, 'ENOTFOUND', message)

/**
 * A path as the API takes it: relative to the backed-up folder, as the metadata spells it (names that
 * are not UTF-8 hold their escaped bytes). Refused as `restore` refuses it (a leading `/`, a `..`), and
 * also a NUL, `.` or empty components; `''` is the whole backup. Returns it without `./` and trailing `/`.
 */
export function checkPath(p: string | undefined | null, what = 'path'): string {
  if (p === undefined || p === null) return ''
  if (p.includes('\0')) throw badInput(`${what}: a NUL byte cannot be in a path`)
  if (p.startsWith('/')) throw badInput(`${what} ${JSON.stringify(p)}: give a path relative to the backed-up folder (no leading "/")`)
  const clean = p.replace(/^(\.\/)+/, '').replace(/\/+$/, '')
  if (clean === '' || clean === '.') return ''
  if (clean.startsWith('/')) throw badInput(`${what} ${JSON.stringify(p)}: give a path relative to the backed-up folder (no leading "/")`)
  const parts = clean.split('/')
  if (parts.includes('..')) throw badInput(`${what} ${JSON.stringify(p)}: ".." is not allowed in a path`)
  if (parts.some((c) => c === '' || c === '.')) throw badInput(`${what} ${JSON.stringify(p)}: empty or "." path components are not allowed`)
  return clean
}

/** One file of a point in time: where its bytes are and what the catalog records of it. */
export interface PointFile {
  path: string
  /** `mirror` or the increment the version comes from (as `restore --dry-run` says). */
  from: string
  /** Untracked: the mirror's current copy (no history kept). */
  untracked: boolean
  size: number
  kind: 'file' | 'symlink'
  /** Exact mtime, ns since the epoch, as a decimal string; null if unknown. */
  mtimeNs: string | null
  mode: number | null
  /** The recorded SHA-256 (catalog versions; null for mirror copies, whose hash `history` gives). */
  sha256: string | null
  op: 'new' | 'changed' | 'deleted' | null
  /**
   * `overwritten-version`: a version of the original backup.py (no recorded hash) whose stored file
   * differs in size or mtime from what its increment records (backup.py overwrote mirror files in
   * place): the bytes served are a later version, as `restore` warns. Otherwise null.
   */
  warning: 'overwritten-version' | null
}

/** A point in time under a path: exactly what `restore [PATH] --at AT --dry-run` lists. */
export interface Point {
  /** The increment of the point in time; null = the latest state. */
  at: string | null
  path: string
  files: PointFile[]
  deletedAtPoint: number
  pendingRun: PendingRun | null
  pending: number
}

/** One row of a folder listing. */
export interface TreeEntry {
  name: string
  path: string
  type: 'dir' | 'file' | 'symlink'
  /** A file's size; a folder's: the bytes of every file below it. */
  size: number
  /** Folders only: the number of files below it. */
  files?: number
  mtimeNs: string | null
  mode: number | null
  sha256: string | null
  /** Files: `mirror` or the increment the version comes from; folders: null. */
  from: string | null
  untracked: boolean
  op: 'new' | 'changed' | 'deleted' | null
  /** See `PointFile.warning`. */
  warning: 'overwritten-version' | null
}

/** `GET /api/tree`: one folder at a point in time. */
export interface TreeResult {
  at: string | null
  path: string
  entries: TreeEntry[]
  /** Files and bytes below the folder (all levels). */
  files: number
  bytes: number
  /** Paths below the folder the point in time knows as deleted. */
  deletedAtPoint: number
  pendingRun: PendingRun | null
}

/** One side of a differing path: the version at that point (the schema of `backup diff --json`). */
export interface DiffSide {
  /** The increment holding this version, or `mirror` (an untracked file, or the latest state). */
  increment: string
  size: number
  sha256: string | null
  mtimeNs: string | null
  mode: number | null
  kind: 'file' | 'symlink'
}

/** One path that differs. */
export interface DiffItem {
  path: string
  status: 'added' | 'removed' | 'changed'
  /** The version at `from` (null when added). */
  from: DiffSide | null
  /** The version at `to` (null when removed). */
  to: DiffSide | null
}

/**
 * `GET /api/diff`: what changed between two points in time, in the schema of `backup diff --json`,
 * plus `path` (the folder compared) and `unchanged`.
 */
export interface DiffResult {
  /** The increments of the two points (null: the latest state). */
  from: string | null
  to: string | null
  path: string
  added: number
  removed: number
  changed: number
  unchanged: number
  addedBytes: number
  removedBytes: number
  /** Sum over changed files of (size at `to` − size at `from`). */
  changedBytes: number
  /** Sorted by path. */
  items: DiffItem[]
}

/** `GET /api/sizes`: the tracked state's size at each increment, and the mirror's now. */
export interface SizesResult {
  points: { increment: string; timestamp: string; files: number; bytes: number; addedBytes: number }[]
  /** The mirror state now (every selected file, tracked or not). */
  mirror: { files: number; bytes: number } | null
  /** Increments whose metadata could not be read (not counted). */
  skipped: string[]
}

/** The filters of `GET /api/search`, as the CLI's `search` takes them. */
export interface SearchFilters {
  masks?: string[]
  ignoreCase?: boolean
  size?: string
  time?: string
  paths?: string[]
  lastBackups?: number
  /** At most this many hits are returned (`truncated` says when more matched). */
  limit?: number
}

/** A downloadable stored version. */
export interface StoredFile {
  stream: Readable
  size: number
  /** The file's name, for Content-Disposition. */
  name: string
  mtimeMs: number
  file: PointFile
}

/** What `POST /api/restore` takes. */
export interface RestoreRequest {
  to: string
  paths?: string[]
  at?: string
  overwrite?: boolean
  dryRun?: boolean
}

/** Whether `p` is `prefix` or below it (a folder prefix, as the core's `prefix_match`). */
function under(p: string, prefix: string): boolean {
  return prefix === '' || p === prefix || p.startsWith(prefix + '/')
}

const GLOB = /[*?[\]{}\\]/g

/** The search `--path` filters that select exactly `prefix` and what is below it. */
function pathFilter(prefix: string): string[] {
  if (prefix === '') return []
  if (!/[*?[\]{}]/.test(prefix)) return [prefix]
  const esc = prefix.replace(GLOB, (c) => '\\' + c)
  return [esc, esc + '/**']
}

/**
 * The data behind `backup serve`, for one backup folder. Every method is what its endpoint returns
 * (schemas in README "backup serve"); the ones shared with the CLI return the CLI's `--json` object.
 */
export class BackupData {
  readonly dst: string
  private readonly mirror: string
  /** A path that does not exist, outside dst, for the dry-run restores that compute points in time. */
  private readonly planTarget: string

  constructor(dst: string) {
    this.dst = requireBackupDir(dst)
    this.mirror = native().layoutPaths(this.dst).mirror
    this.planTarget = path.join(path.dirname(this.dst), `.axiomatic-serve-plan-${crypto.randomBytes(8).toString('hex')}`)
  }

  /** `GET /api/increments`: `backup list --json` (with `detailed`: the bytes only each increment holds). */
  async increments(opts: { detailed?: boolean } = {}): Promise<Listing> {
    return listIncrements(this.dst, opts)
  }

  /**
   * `at` as `restore --at` takes it → the increment name, or undefined for the latest state. An
   * unreadable value is 400; a name that is not there, or a time before the first increment, 404.
   */
  async resolve(at: string | undefined | null): Promise<string | undefined> {
    if (at === undefined || at === null || at === '' || at === 'latest') return undefined
    if (at.includes('\0')) throw badInput('at: a NUL byte is not a point in time')
    try {
      parseWhen(at)
    } catch (e) {
      throw badInput((e as Error).message)
    }
    try {
      return await resolveAt(this.dst, at)
    } catch (e) {
      if (e instanceof ConfigError) throw notFound(e.message.replace(/^--at /, 'at '))
      throw e
    }
  }

  /** The files of a point in time under `prefix`: the plan `restore --at` makes, with catalog details. */
  async point(prefix: string, at: string | undefined): Promise<Point> {
    const resolved = await this.resolve(at)
    const r = await libRestore(this.dst, { to: this.planTarget, paths: prefix ? [prefix] : [], at: resolved, dryRun: true })
    const needed = new Set(r.items.filter((i) => i.from !== 'mirror').map((i) => i.from))
    const entries = new Map<string, CatalogEntry>()
    if (needed.size) {
      const found = await libSearch(this.dst, { paths: pathFilter(prefix) })
      for (const h of found.hits) if (needed.has(h.increment)) entries.set(`${h.increment}\0${h.path}`, h)
    }
    const files: PointFile[] = r.items.map((i) => {
      const e = i.from === 'mirror' ? undefined : entries.get(`${i.from}\0${i.path}`)
      if (e) {
        let warning: PointFile['warning'] = null
        if (!e.sha256) {
          // The rule of restore.rs: a size change, or an mtime more than a second off.
          const st = this.lstatStored(i.from, i.path)
          const recorded = BigInt(e.mtime_ns ?? String(Math.round(e.mtime * 1e9)))
          const off = st ? st.mtimeNs - recorded : 0n
          if (st && (Number(st.size) !== i.size || off > 1_000_000_000n || off < -1_000_000_000n)) warning = 'overwritten-version'
        }
        return {
          warning,
          path: i.path,
          from: i.from,
          untracked: i.untracked,
          size: i.size,
          kind: e.kind,
          mtimeNs: e.mtime_ns ?? String(Math.round(e.mtime * 1e9)),
          mode: e.mode || null,
          sha256: e.sha256,
          op: e.op,
        }
      }
      const st = this.lstatStored(i.from, i.path)
      return {
        path: i.path,
        from: i.from,
        untracked: i.untracked,
        size: i.size,
        kind: st?.isSymbolicLink() ? 'symlink' : 'file',
        mtimeNs: st ? String(st.mtimeNs) : null,
        mode: st ? Number(st.mode) & 0o7777 : null,
        sha256: null,
        op: null,
        warning: null,
      }
    })
    return { at: r.at, path: prefix, files, deletedAtPoint: r.deletedAtPoint, pendingRun: r.pendingRun, pending: r.pending }
  }

  /** `GET /api/tree`: the folder `dir` as it was at `at` (its files and sub-folders). */
  async tree(dir: string, at?: string): Promise<TreeResult> {
    const prefix = checkPath(dir)
    const p = await this.point(prefix, at)
    if (prefix && p.files.some((f) => f.path === prefix)) {
      throw badInput(`${JSON.stringify(prefix)} is a file at that point in time, not a folder; see /api/history or /api/file`)
    }
    if (prefix && p.files.length === 0) {
      throw notFound(`there is no folder ${JSON.stringify(prefix)} ${p.at ? `at ${p.at}` : 'in the latest state'}`)
    }
    const base = prefix ? prefix + '/' : ''
    const dirs = new Map<string, TreeEntry>()
    const entries: TreeEntry[] = []
    for (const f of p.files) {
      const rest = f.path.slice(base.length)
      const slash = rest.indexOf('/')
      if (slash < 0) {
        entries.push({
          name: rest,
          path: f.path,
          type: f.kind,
          size: f.size,
          mtimeNs: f.mtimeNs,
          mode: f.mode,
          sha256: f.sha256,
          from: f.from,
          untracked: f.untracked,
          op: f.op,
          warning: f.warning,
        })
        continue
      }
      const name = rest.slice(0, slash)
      let d = dirs.get(name)
      if (!d) {
        d = { name, path: base + name, type: 'dir', size: 0, files: 0, mtimeNs: null, mode: null, sha256: null, from: null, untracked: false, op: null, warning: null }
        dirs.set(name, d)
      }
      d.size += f.size
      d.files! += 1
    }
    const sorted = [...dirs.values()].sort((a, b) => cmp(a.name, b.name)).concat(entries.sort((a, b) => cmp(a.name, b.name)))
    return {
      at: p.at,
      path: prefix,
      entries: sorted,
      files: p.files.length,
      bytes: p.files.reduce((s, f) => s + f.size, 0),
      deletedAtPoint: p.deletedAtPoint,
      pendingRun: p.pendingRun,
    }
  }

  /** `GET /api/history`: `backup history PATH --json`; 404 when the backup never held the path. */
  async history(file: string): Promise<FileHistory> {
    const rel = checkPath(file)
    if (!rel) throw badInput('history: give a file path')
    const h = await libHistory(this.dst, rel)
    if (h.versions.length === 0 && !h.mirror) throw notFound(`the backup holds no version of ${JSON.stringify(rel)}`)
    return h
  }

  /** `GET /api/search`: `backup search --json`, at most `limit` hits (`truncated` when more matched). */
  async search(f: SearchFilters): Promise<SearchResult & { truncated: boolean }> {
    const paths = (f.paths ?? []).map((p) => checkPath(p, 'path')).filter((p) => p !== '')
    let r: SearchResult
    try {
      r = await libSearch(this.dst, {
        masks: f.masks?.filter((m) => m !== ''),
        ignoreCase: f.ignoreCase,
        size: f.size || undefined,
        time: f.time || undefined,
        paths,
        lastBackups: f.lastBackups,
      })
    } catch (e) {
      if (e instanceof ConfigError) throw badInput(e.message)
      throw e
    }
    const limit = f.limit ?? 5000
    const truncated = r.hits.length > limit
    return { ...r, hits: truncated ? r.hits.slice(0, limit) : r.hits, truncated }
  }

  /**
   * `GET /api/diff`: tracked and untracked files added, removed and changed under `dir` between two
   * points in time (default: the two newest increments). A version is changed when its recorded hash
   * differs (when both are known), else its size, kind or mtime; the same stored version is unchanged.
   */
  async diff(from: string | undefined, to: string | undefined, dir?: string): Promise<DiffResult> {
    const prefix = checkPath(dir)
    if (!from || !to) {
      const { increments } = await this.increments()
      const names = increments.map((i) => i.name)
      if (!to) to = names.at(-1)
      if (!from) {
        const toName = to ? await this.resolve(to) : undefined
        const idx = toName ? names.indexOf(toName) : names.length
        from = idx > 0 ? names[idx - 1] : undefined
      }
      if (!from || !to) throw notFound('a difference needs two points in time; this backup has fewer than two increments')
    }
    const [a, b] = await Promise.all([this.point(prefix, from), this.point(prefix, to)])
    const side = (f: PointFile): DiffSide => ({ increment: f.from, size: f.size, sha256: f.sha256, mtimeNs: f.mtimeNs, mode: f.mode, kind: f.kind })
    const before = new Map(a.files.map((f) => [f.path, f]))
    const after = new Map(b.files.map((f) => [f.path, f]))
    const items: DiffItem[] = []
    let unchanged = 0
    for (const [p, x] of before) {
      const y = after.get(p)
      if (!y) items.push({ path: p, status: 'removed', from: side(x), to: null })
      else if (differs(x, y)) items.push({ path: p, status: 'changed', from: side(x), to: side(y) })
      else unchanged++
    }
    for (const [p, y] of after) if (!before.has(p)) items.push({ path: p, status: 'added', from: null, to: side(y) })
    items.sort((x, y) => cmp(x.path, y.path))
    const sum = (status: DiffItem['status'], size: (i: DiffItem) => number) => items.filter((i) => i.status === status).reduce((t, i) => t + size(i), 0)
    return {
      from: a.at,
      to: b.at,
      path: prefix,
      added: items.filter((i) => i.status === 'added').length,
      removed: items.filter((i) => i.status === 'removed').length,
      changed: items.filter((i) => i.status === 'changed').length,
      unchanged,
      addedBytes: sum('added', (i) => i.to!.size),
      removedBytes: sum('removed', (i) => i.from!.size),
      changedBytes: sum('changed', (i) => i.to!.size - i.from!.size),
      items,
    }
  }

  /**
   * `GET /api/sizes`: the size of the tracked files at each increment (newest mention per path up to
   * it, deletions removed: the same rule as a point in time) and of the mirror now.
   */
  async sizes(): Promise<SizesResult> {
    const [{ increments }, found, st] = await Promise.all([this.increments(), libSearch(this.dst, {}), this.mirrorState()])
    const hitsOf = new Map<string, { path: string; e: CatalogEntry }[]>()
    for (const h of found.hits) {
      let l = hitsOf.get(h.increment)
      if (!l) hitsOf.set(h.increment, (l = []))
      l.push({ path: h.path, e: h })
    }
    const state = new Map<string, number>()
    let bytes = 0
    const points: SizesResult['points'] = []
    for (const inc of increments) {
      let added = 0
      for (const { path: p, e } of hitsOf.get(inc.name) ?? []) {
        const old = state.get(p)
        if (old !== undefined) {
          bytes -= old
          state.delete(p)
        }
        if (e.category !== 'deleted') {
          state.set(p, e.size)
          bytes += e.size
          added += e.size
        }
      }
      points.push({ increment: inc.name, timestamp: inc.timestamp, files: state.size, bytes, addedBytes: added })
    }
    return { points, mirror: st, skipped: found.skipped }
  }

  /** Files and bytes of the latest state (the mirror state), or null when it cannot be read. */
  private async mirrorState(): Promise<{ files: number; bytes: number } | null> {
    try {
      const r = await libRestore(this.dst, { to: this.planTarget, dryRun: true })
      return { files: r.files, bytes: r.bytes }
    } catch {
      return null
    }
  }

  /** `GET /api/status`: `backup status --json`. */
  async status(): Promise<BackupStatus> {
    return libStatus(this.dst)
  }

  /** The one file `file` at `at` (404 if absent then, 400 for a folder). */
  private async pointFile(file: string, at: string | undefined): Promise<PointFile> {
    const rel = checkPath(file)
    if (!rel) throw badInput('give a file path')
    const p = await this.point(rel, at)
    const f = p.files.find((x) => x.path === rel)
    if (!f) {
      if (p.files.length) throw badInput(`${JSON.stringify(rel)} is a folder; download it with /api/archive`)
      throw notFound(`there is no file ${JSON.stringify(rel)} ${p.at ? `at ${p.at}` : 'in the latest state'}`)
    }
    return f
  }

  /** `GET /api/file`: the stored bytes of `file` as of `at`, streamed (a symlink is refused: 400). */
  async file(file: string, at?: string): Promise<StoredFile> {
    const f = await this.pointFile(file, at)
    const opened = this.openStored(f.from, f.path)
    if ('symlink' in opened) {
      throw new ServeError(400, 'ESYMLINK', `${JSON.stringify(f.path)} is a symlink (to ${JSON.stringify(opened.symlink)}); it is not followed. Download its folder as a tar to get the link itself`)
    }
    const stream = fs.createReadStream('', { fd: opened.fd, autoClose: true })
    return { stream, size: opened.stat.size, name: displayName(f.path.split('/').pop()!), mtimeMs: opened.stat.mtimeMs, file: f }
  }

  /**
   * `GET /api/archive`: a tar stream of `dir` (a folder, or one file) as of `at`, one file open at a
   * time (never the whole folder in memory). Names are relative to the folder's parent (the whole
   * backup: under `backup-<point>/`); symlinks are stored as symlinks. A stored file that is missing or
   * lies behind a symlinked folder is left out and named, with the reason, in `BACKUP-SERVE-WARNINGS.txt`
   * at the top of the tar; a read error mid-file breaks the stream, so a truncated download never looks whole.
   */
  async archive(dir: string, at?: string): Promise<{ stream: Readable; name: string; files: number; bytes: number }> {
    const prefix = checkPath(dir)
    const p = await this.point(prefix, at)
    if (prefix && p.files.length === 0) throw notFound(`there is nothing at ${JSON.stringify(prefix)} ${p.at ? `at ${p.at}` : 'in the latest state'}`)
    const top = prefix ? displayName(prefix.split('/').pop()!) : `backup-${p.at ?? 'latest'}`
    const parent = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/') + 1) : ''
    const pack = await tarPack()
    const files = [...p.files].sort((a, b) => cmp(a.path, b.path))
    const problems: string[] = []
    // A client that stops the download closes the pack: the file being read is closed with it.
    let current: fs.ReadStream | null = null
    let closed = false
    pack.on('close', () => {
      closed = true
      current?.destroy()
    })
    // Its errors reach the client through `stream` below (which breaks the response); once the client
    // has gone, an error of the pack (a stopped download) has no one left to tell.
    pack.on('error', () => {})
    const write = async () => {
      for (const f of files) {
        if (closed) return
        const name = prefix ? displayName(f.path.slice(parent.length)) : `${top}/${displayName(f.path)}`
        let opened: ReturnType<BackupData['openStored']>
        try {
          opened = this.openStored(f.from, f.path)
        } catch (e) {
          if (!(e instanceof ServeError)) throw e
          problems.push(`${displayName(f.path)}: not in this archive: ${e.message}`)
          continue
        }
        const mtime = new Date(f.mtimeNs ? Number(BigInt(f.mtimeNs) / 1_000_000n) : 0)
        if ('symlink' in opened) {
          await new Promise<void>((ok, fail) => pack.entry({ name, type: 'symlink', linkname: opened.symlink, mtime, mode: 0o777 }, (e) => (e ? fail(e) : ok())))
          continue
        }
        const mode = (f.mode ?? opened.stat.mode) & 0o7777
        const entryMtime = f.mtimeNs ? mtime : opened.stat.mtime
        await new Promise<void>((ok, fail) => {
          const entry = pack.entry({ name, type: 'file', size: opened.stat.size, mode, mtime: entryMtime }, (e) => (e ? fail(e) : ok()))
          // A destroyed pack destroys its entry too; the entry's callback above reports that.
          entry.on('error', () => {})
          const src = (current = fs.createReadStream('', { fd: opened.fd, autoClose: true }))
          src.on('close', () => {
            if (closed) fail(new Error('the download was stopped'))
          })
          src.on('error', (e) => {
            entry.destroy(e)
            fail(e)
          })
          src.on('data', (chunk) => {
            if (!entry.write(chunk as Buffer)) {
              src.pause()
              entry.once('drain', () => src.resume())
            }
          })
          src.on('end', () => entry.end())
        })
        current = null
      }
      if (problems.length) {
        // A tar cannot carry warnings: a text file at the top says what is missing and why.
        const text = Buffer.from(problems.join('\n') + '\n')
        await new Promise<void>((ok, fail) => pack.entry({ name: 'BACKUP-SERVE-WARNINGS.txt', type: 'file', mode: 0o644, mtime: new Date() }, text, (e) => (e ? fail(e) : ok())))
      }
      pack.finalize()
    }
    write().catch((e) => {
      if (!closed) pack.destroy(e as Error)
    })
    // streamx's Readable → a Node Readable for `pipeline` into the response.
    const stream = Readable.from(pack as unknown as AsyncIterable<Buffer>)
    stream.on('close', () => pack.destroy())
    // Destroyed by a stopped download, it ends asynchronously, after `pipeline` has let go of it.
    stream.on('error', () => {})
    return { stream, name: `${top}.tar`, files: files.length, bytes: files.reduce((s, f) => s + f.size, 0) }
  }

  /** `POST /api/restore`: the library's `restore` (the same checks and safety as `backup restore`). */
  async restore(req: RestoreRequest): Promise<RestoreResult> {
    if (typeof req !== 'object' || req === null) throw badInput('restore: the body must be a JSON object {to, paths?, at?, overwrite?, dryRun?}')
    if (typeof req.to !== 'string' || !req.to) throw badInput('restore: "to" (the folder to restore into) is required')
    if (req.to.includes('\0')) throw badInput('restore: "to": a NUL byte cannot be in a path')
    if (!path.isAbsolute(req.to)) throw badInput(`restore: "to" must be an absolute path (the server's working folder means nothing to the page), got ${JSON.stringify(req.to)}`)
    if (req.paths !== undefined && (!Array.isArray(req.paths) || req.paths.some((p) => typeof p !== 'string'))) {
      throw badInput('restore: "paths" must be a list of paths')
    }
    if (req.at !== undefined && req.at !== null && typeof req.at !== 'string') throw badInput('restore: "at" must be text')
    const paths = (req.paths ?? []).map((p) => checkPath(p)).filter((p) => p !== '')
    const at = await this.resolve(req.at)
    try {
      return await libRestore(this.dst, { to: req.to, paths, at, overwrite: !!req.overwrite, dryRun: !!req.dryRun })
    } catch (e) {
      if (e instanceof ConfigError) throw badInput(e.message)
      throw e
    }
  }

  /** The folder a stored version lies under: the mirror, or the increment's `track/`. */
  private storeRoot(from: string): string[] {
    if (from === 'mirror') return [path.basename(this.mirror)]
    if (!native().isIncrementName(from)) throw new ServeError(500, 'ECORRUPT', `not an increment name: ${JSON.stringify(from)}`)
    return [from, 'track']
  }

  /** The stored version's lstat, or null (missing, or a symlinked folder on the way). */
  private lstatStored(from: string, rel: string): fs.BigIntStats | null {
    try {
      const { dirPath, last } = this.walkDirs(from, rel)
      return fs.lstatSync(Buffer.concat([dirPath, Buffer.from('/'), last]), { bigint: true })
    } catch {
      return null
    }
  }

  /** Checks every folder from dst down to `rel`'s parent is a real folder (never a symlink). */
  private walkDirs(from: string, rel: string): { dirPath: Buffer; last: Buffer } {
    const comps = [...this.storeRoot(from).map((c) => Buffer.from(c)), ...rel.split('/').map(nameBytes)]
    const last = comps.pop()!
    let cur = Buffer.from(this.dst)
    for (const c of comps) {
      cur = Buffer.concat([cur, Buffer.from('/'), c])
      let st: fs.Stats
      try {
        st = fs.lstatSync(cur)
      } catch {
        throw notFound(`${JSON.stringify(rel)}: its stored copy is missing from the backup`)
      }
      if (st.isSymbolicLink() || !st.isDirectory()) {
        throw new ServeError(404, 'EUNSAFE', `${JSON.stringify(rel)}: a folder on the way to its stored copy is a symlink or not a folder; refusing to follow it`)
      }
    }
    return { dirPath: cur, last }
  }

  /**
   * Opens a stored version for reading without following any symlink: a symlink itself gives its
   * target text instead. The descriptor's real path must be inside the backup folder.
   */
  private openStored(from: string, rel: string): { fd: number; stat: fs.Stats } | { symlink: string } {
    const { dirPath, last } = this.walkDirs(from, rel)
    const full = Buffer.concat([dirPath, Buffer.from('/'), last])
    let fd: number
    try {
      fd = fs.openSync(full, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ELOOP') {
        const st = fs.lstatSync(full)
        if (st.isSymbolicLink()) return { symlink: displayName(bytesName(fs.readlinkSync(full, { encoding: 'buffer' }))) }
      }
      if (code === 'ENOENT') throw notFound(`${JSON.stringify(rel)}: its stored copy is missing from the backup`)
      throw new ServeError(500, code ?? 'EIO', `${JSON.stringify(rel)}: cannot read its stored copy: ${(e as Error).message}`)
    }
    try {
      const stat = fs.fstatSync(fd)
      if (!stat.isFile()) throw notFound(`${JSON.stringify(rel)}: its stored copy is not a file`)
      const real = realOfFd(fd)
      const root = fs.realpathSync(this.dst)
      if (real !== null && !real.startsWith(root + '/')) {
        throw new ServeError(404, 'EUNSAFE', `${JSON.stringify(rel)}: its stored copy lies outside the backup folder; refused`)
      }
      return { fd, stat }
    } catch (e) {
      fs.closeSync(fd)
      throw e
    }
  }
}

/** `tar-stream` is loaded on first use: every other command of the CLI runs without it. */
async function tarPack(): Promise<Pack> {
  const { pack } = await import('tar-stream')
  return pack()
}

/** The real path of an open descriptor (Linux `/proc/self/fd`), or null where there is none. */
function realOfFd(fd: number): string | null {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`)
  } catch {
    return null
  }
}

/** Byte order of the UTF-16 strings, the same order the core sorts paths in for ASCII names. */
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Whether two versions of one path differ (see `diff`). */
function differs(x: PointFile, y: PointFile): boolean {
  if (x.from === y.from && x.from !== 'mirror') return false
  if (x.from === 'mirror' && y.from === 'mirror') return false
  if (x.kind !== y.kind || x.size !== y.size) return true
  if (x.sha256 && y.sha256) return x.sha256 !== y.sha256
  return x.mtimeNs !== y.mtimeNs
}

