/**
 * Every read (and the one write, restore) that `backup serve` makes of a backup folder, behind ONE
 * seam: the HTTP layer (`./server.ts`) calls only `BackupData`'s methods.
 *
 * They answer from the catalog index (`dst/.axiomatic/index.sqlite`, built on first use, brought up
 * to date before every answer, rebuilt when damaged; see docs/design.md "The catalog index") through
 * the library's own functions, so the page can never disagree with the CLI: the timeline is
 * `timeline`, a folder at a point in time is `tree` (exactly what `restore --at` would restore there:
 * newest catalog mention at or before the increment wins, a deletion means absent, untracked files
 * from the mirror), the comparison is `backup diff`, one file at a point in time is its entry in its
 * folder's `tree`. Without a usable index (a read-only disk, `AXIOMATIC_INDEX=off`) the same
 * functions read the metadata directly, with the same answers.
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
  diff as indexDiff,
  history as libHistory,
  listIncrements,
  requireBackupDir,
  resolveAt,
  restore as libRestore,
  search as libSearch,
  status as libStatus,
  storedFile,
  timeline,
  tree as indexTree,
  type BackupStatus,
  type CatalogEntry,
  type DiffResult,
  type FileHistory,
  type Listing,
  type RestoreResult,
  type SearchOptions,
  type SearchResult,
  type TreeEntry as IndexTreeEntry,
} from '../explore'
import { parseWhen } from '../explore/filters'
import { bytesName, displayName } from '../names'

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

/**
 * One row of a folder listing (`GET /api/tree`): a file or symlink with the version a point in time
 * holds (the index's tree entry, `kind` as `type`), or a folder (`type: 'dir'`, every other field null).
 */
export interface TreeEntry {
  name: string
  path: string
  type: 'dir' | 'file' | 'symlink'
  size: number | null
  /** Exact mtime, ns since the epoch, as a decimal string. */
  mtimeNs: string | null
  mode: number | null
  /** The recorded SHA-256 (null where none was recorded: backup.py's versions, some mirror copies). */
  sha256: string | null
  /** Files: `mirror` or the increment the version comes from (as `restore --dry-run` says); folders: null. */
  from: string | null
  /** Untracked: the mirror's current copy (no history kept). */
  untracked: boolean
  op: 'new' | 'changed' | null
  /** A hard-link group's later member: the group's first path (restored as a hard link of it). */
  link: string | null
  /**
   * `overwritten-version`: a version of the original backup.py (no recorded hash) whose stored file
   * differs in size or mtime from what its increment records (backup.py overwrote mirror files in
   * place): the bytes served are a later version, as `restore` warns. Otherwise null.
   */
  warning: 'overwritten-version' | null
}

/** `GET /api/tree`: one folder at a point in time (its files and sub-folders, one level). */
export interface TreeResult {
  /** The increment of the point in time; null = the latest state. */
  at: string | null
  path: string
  /** Sub-folders first, then files and symlinks, each sorted by name. */
  entries: TreeEntry[]
}

/** `GET /api/sizes`: the tracked state's size at each increment, and the mirror's now. */
export interface SizesResult {
  points: { increment: string; timestamp: string; files: number; bytes: number; addedBytes: number }[]
  /** The mirror state now (every selected file, tracked or not). */
  mirror: { files: number; bytes: number } | null
  /** Increments whose metadata could not be read (not counted). */
  skipped: string[]
}

/** The filters of `GET /api/search`: the CLI's `search` options, and a cap on the hits. */
export interface SearchFilters extends SearchOptions {
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
  file: TreeEntry
}

/** What `POST /api/restore` takes. */
export interface RestoreRequest {
  to: string
  paths?: string[]
  at?: string
  overwrite?: boolean
  dryRun?: boolean
}

/**
 * The data behind `backup serve`, for one backup folder. Every method is what its endpoint returns
 * (schemas in README "backup serve"); the ones shared with the CLI return the CLI's `--json` object.
 */
export class BackupData {
  readonly dst: string
  /** A path that does not exist, outside dst, for the dry-run restore that sizes the latest state. */
  private readonly planTarget: string

  constructor(dst: string) {
    this.dst = requireBackupDir(dst)
    this.planTarget = path.join(path.dirname(this.dst), `.axiomatic-serve-plan-${crypto.randomBytes(8).toString('hex')}`)
  }

  /**
   * `GET /api/increments`: the index's `timeline` (`backup list --json` with `exclusiveBytes`, the bytes
   * only each increment holds as the catalogs tell it); with `detailed`, `backup list --detailed --json`
   * (a walk of the whole backup folder counting inodes, and the bytes on disk).
   */
  async increments(opts: { detailed?: boolean } = {}): Promise<Listing> {
    return opts.detailed ? listIncrements(this.dst, { detailed: true }) : timeline(this.dst)
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

  /** The index's folder `dir` at the increment `at` (undefined: the latest state), as the API lists it. */
  private async folder(dir: string, at: string | undefined): Promise<TreeResult> {
    const t = await indexTree(this.dst, { path: dir, at })
    const entries = t.entries.map((e) => this.entry(e))
    // Folders first (a stable partition keeps the index's order by name within each group).
    return { at: t.at, path: dir, entries: [...entries.filter((e) => e.type === 'dir'), ...entries.filter((e) => e.type !== 'dir')] }
  }

  /** One entry of the index's tree as the API gives it: `dir`/`kind` as `type`, the backup.py warning. */
  private entry(e: IndexTreeEntry): TreeEntry {
    if (e.dir) {
      return { name: e.name, path: e.path, type: 'dir', size: null, mtimeNs: null, mode: null, sha256: null, from: null, untracked: false, op: null, link: null, warning: null }
    }
    const from = e.from!
    let warning: TreeEntry['warning'] = null
    if (from !== 'mirror' && !e.sha256) {
      // A version without a recorded hash (backup.py's): the rule of restore.rs, a size change or an
      // mtime more than a second off the record.
      const st = this.lstatStored(from, e.path)
      const off = st ? st.mtimeNs - BigInt(e.mtimeNs!) : 0n
      if (st && (Number(st.size) !== e.size || off > 1_000_000_000n || off < -1_000_000_000n)) warning = 'overwritten-version'
    }
    return {
      name: e.name,
      path: e.path,
      type: e.kind === 'symlink' ? 'symlink' : 'file',
      size: e.size!,
      mtimeNs: e.mtimeNs!,
      mode: e.mode!,
      sha256: e.sha256 ?? null,
      from,
      untracked: !!e.untracked,
      op: (e.op as TreeEntry['op']) ?? null,
      link: e.link ?? null,
      warning,
    }
  }

  /**
   * What the path `rel` (not the top) is at the increment `at`: its entry in its parent folder's tree,
   * the file (or symlink) and whether a folder of that name holds files then.
   */
  private async lookup(rel: string, at: string | undefined): Promise<{ file: TreeEntry | null; dir: boolean }> {
    const cut = rel.lastIndexOf('/')
    const parent = await indexTree(this.dst, { path: cut < 0 ? '' : rel.slice(0, cut), at })
    const same = parent.entries.filter((e) => e.path === rel)
    const file = same.find((e) => !e.dir)
    return { file: file ? this.entry(file) : null, dir: same.some((e) => e.dir) }
  }

  /**
   * `GET /api/tree`: the folder `dir` as it was at `at` (its files and sub-folders), from the index:
   * what `restore --at` would restore there. A file is 400; a path with nothing below it then, 404.
   */
  async tree(dir: string, at?: string): Promise<TreeResult> {
    const prefix = checkPath(dir)
    const resolved = await this.resolve(at)
    const t = await this.folder(prefix, resolved)
    if (prefix && t.entries.length === 0) {
      if ((await this.lookup(prefix, resolved)).file) {
        throw badInput(`${JSON.stringify(prefix)} is a file at that point in time, not a folder; see /api/history or /api/file`)
      }
      throw notFound(`there is no folder ${JSON.stringify(prefix)} ${resolved ? `at ${resolved}` : 'in the latest state'}`)
    }
    return t
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
   * `GET /api/diff`: `backup diff [PATH] --json`, from the index: the tracked files added, removed and
   * changed under `dir` between two increments (`from` default: the one before `to`; `to` default, or
   * `latest`: the newest, whose tracked files are the latest state's). Untracked files keep no history
   * and are not compared, as in `backup diff`.
   */
  async diff(from: string | undefined, to: string | undefined, dir?: string): Promise<DiffResult> {
    const prefix = checkPath(dir)
    const [a, b] = [await this.resolve(from), await this.resolve(to)]
    try {
      return await indexDiff(this.dst, { from: a, to: b, paths: prefix ? [prefix] : [] })
    } catch (e) {
      // Both points are resolved: what is left is a backup with too few increments to compare.
      if (e instanceof ConfigError) throw notFound(e.message.replace(/^diff: /, ''))
      throw e
    }
  }

  /**
   * `GET /api/sizes`: the size of the tracked files at each increment (newest mention per path up to
   * it, deletions removed: the same rule as a point in time) and of the mirror now. Not from the
   * timeline: an increment's figures are the bytes it stores, not those of the versions its changes
   * and deletions replaced, so the state's size needs every catalog entry (one `search`, which the
   * index answers).
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

  /** The one file `file` at `at`, from its folder's tree (404 if absent then, 400 for a folder). */
  private async pointFile(file: string, at: string | undefined): Promise<TreeEntry> {
    const rel = checkPath(file)
    if (!rel) throw badInput('give a file path')
    const resolved = await this.resolve(at)
    const { file: f, dir } = await this.lookup(rel, resolved)
    if (!f) {
      if (dir) throw badInput(`${JSON.stringify(rel)} is a folder; download it with /api/archive`)
      throw notFound(`there is no file ${JSON.stringify(rel)} ${resolved ? `at ${resolved}` : 'in the latest state'}`)
    }
    return f
  }

  /** `GET /api/file`: the stored bytes of `file` as of `at`, streamed (a symlink is refused: 400). */
  async file(file: string, at?: string): Promise<StoredFile> {
    const f = await this.pointFile(file, at)
    const opened = this.openStored(f.from!, f.path)
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
   *
   * The files come from the index's `tree`, folder by folder while the tar is written (depth first,
   * each folder's sub-folders first, as `/api/tree` lists them): the first folder is read before the
   * response starts (a path with nothing at it is 404, a point that cannot be reconstructed 500),
   * a later failure breaks the stream.
   */
  async archive(dir: string, at?: string): Promise<{ stream: Readable; name: string }> {
    const prefix = checkPath(dir)
    const resolved = await this.resolve(at)
    let first = await this.folder(prefix, resolved)
    if (prefix && first.entries.length === 0) {
      const { file } = await this.lookup(prefix, resolved)
      if (!file) throw notFound(`there is nothing at ${JSON.stringify(prefix)} ${resolved ? `at ${resolved}` : 'in the latest state'}`)
      first = { ...first, entries: [file] }
    }
    const files = this.filesBelow(first, resolved)
    const top = prefix ? displayName(prefix.split('/').pop()!) : `backup-${resolved ?? 'latest'}`
    const parent = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/') + 1) : ''
    const pack = await tarPack()
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
      for await (const f of files) {
        if (closed) return
        const name = prefix ? displayName(f.path.slice(parent.length)) : `${top}/${displayName(f.path)}`
        let opened: ReturnType<BackupData['openStored']>
        try {
          opened = this.openStored(f.from!, f.path)
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
    return { stream, name: `${top}.tar` }
  }

  /** Every file and symlink of the folder `t` and its sub-folders at `at`, one `tree` per folder as it goes. */
  private async *filesBelow(t: TreeResult, at: string | undefined): AsyncGenerator<TreeEntry> {
    for (const e of t.entries) {
      if (e.type === 'dir') yield* this.filesBelow(await this.folder(e.path, at), at)
      else yield e
    }
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

  /** The stored version's lstat, or null (missing, or a symlinked folder on the way). */
  private lstatStored(from: string, rel: string): fs.BigIntStats | null {
    try {
      const { dirPath, last } = this.walkDirs(from, rel)
      return fs.lstatSync(Buffer.concat([dirPath, Buffer.from('/'), last]), { bigint: true })
    } catch {
      return null
    }
  }

  /**
   * The stored version's path (`storedFile`: `<increment>/track/<rel>` or `mirror/<rel>`), after
   * checking that every folder from dst down to its parent is a real folder (never a symlink).
   */
  private walkDirs(from: string, rel: string): { dirPath: Buffer; last: Buffer } {
    let full: Buffer
    try {
      full = storedFile(this.dst, from, rel)
    } catch (e) {
      if (e instanceof ConfigError) throw new ServeError(500, 'ECORRUPT', `${JSON.stringify(rel)}: ${e.message}`)
      throw e
    }
    const slash = full.lastIndexOf('/')
    for (let i = full.indexOf('/', Buffer.byteLength(this.dst) + 1); i !== -1 && i <= slash; i = full.indexOf('/', i + 1)) {
      let st: fs.Stats
      try {
        st = fs.lstatSync(full.subarray(0, i))
      } catch {
        throw notFound(`${JSON.stringify(rel)}: its stored copy is missing from the backup`)
      }
      if (st.isSymbolicLink() || !st.isDirectory()) {
        throw new ServeError(404, 'EUNSAFE', `${JSON.stringify(rel)}: a folder on the way to its stored copy is a symlink or not a folder; refusing to follow it`)
      }
    }
    return { dirPath: full.subarray(0, slash), last: full.subarray(slash + 1) }
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
