/**
 * Where `repair` reads and writes a server's files: one interface over the
 * local file system and over SSH (SFTP for files, `exec` of coreutils'
 * `sha256sum`/`md5sum` for hashing where the data is, so a copy is
 * checked on its own server, never by trusting the transfer). Every
 * operation is small and streamed: no file is ever held whole in memory.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { PassThrough, Writable, type Readable } from 'node:stream'

import type { Client, SFTPWrapper, Stats } from 'ssh2'

import { BackupError } from '../errors'
import { shQuote } from '../explore/script'
import { connect, latestRemoteReports, sftpOf, type SshOptions, type SshUrl } from './ssh'

/** What `lstat` says about a path, reduced to what repair needs. */
export interface SideStat {
  kind: 'file' | 'dir' | 'symlink' | 'other'
  size: number
  /** Permission bits incl. setuid/setgid/sticky. */
  mode: number
  /** Seconds (fractional locally, whole over SFTP). */
  mtime: number
  atime: number
}

/** Both digests repair compares: the ones every report of ours and of the original service has. */
export interface Digests {
  sha256: string
  md5: string
}

/** One server's file system, as repair uses it (paths are absolute on that server). */
export interface Side {
  /** `user@host:port` or the local source as given. */
  readonly label: string
  readonly remote: boolean
  stat(p: string): Promise<SideStat | null>
  /** The real path of `p` (symlinks resolved); `p` must exist. */
  realpath(p: string): Promise<string>
  /** SHA-256 and MD5 of a file, computed where it is. */
  hash(p: string): Promise<Digests>
  read(p: string): Readable
  /** A new file (fails if it exists), mode 600 until `chmod`. */
  create(p: string): Writable
  /** Atomic rename that replaces `to` (POSIX rename; `posix-rename@openssh.com` over SFTP). */
  rename(from: string, to: string): Promise<void>
  unlink(p: string): Promise<void>
  mkdirp(p: string): Promise<void>
  chmod(p: string, mode: number): Promise<void>
  utimes(p: string, atime: number, mtime: number): Promise<void>
  /** A second name for `from` at `to` (a hard link; a copy with its mtime and mode where links cannot be made). */
  keep(from: string, to: string): Promise<void>
  readText(p: string): Promise<string>
  /** Writes a small file through a temp name and a rename (never a half-written file under `p`). */
  writeText(p: string, text: string): Promise<void>
  appendText(p: string, text: string): Promise<void>
  list(dir: string): Promise<{ name: string; isDir: boolean }[]>
  close(): void
}

function streamHash(stream: Readable): Promise<Digests> {
  const s = crypto.createHash('sha256')
  const m = crypto.createHash('md5')
  return new Promise((resolve, reject) => {
    stream.on('data', (b: Buffer) => {
      s.update(b)
      m.update(b)
    })
    stream.on('error', reject)
    stream.on('end', () => resolve({ sha256: s.digest('hex'), md5: m.digest('hex') }))
  })
}

function kindOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): SideStat['kind'] {
  return st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other'
}

/** The local file system. */
export class LocalSide implements Side {
  readonly remote = false
  constructor(readonly label: string) {}

  async stat(p: string): Promise<SideStat | null> {
    try {
      const st = await fs.promises.lstat(p)
      return { kind: kindOf(st), size: st.size, mode: st.mode & 0o7777, mtime: st.mtimeMs / 1000, atime: st.atimeMs / 1000 }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return null
      throw e
    }
  }
  realpath(p: string): Promise<string> {
    return fs.promises.realpath(p)
  }
  hash(p: string): Promise<Digests> {
    return streamHash(fs.createReadStream(p))
  }
  read(p: string): Readable {
    return fs.createReadStream(p)
  }
  create(p: string): Writable {
    return fs.createWriteStream(p, { flags: 'wx', mode: 0o600 })
  }
  async rename(from: string, to: string): Promise<void> {
    await fs.promises.rename(from, to)
  }
  async unlink(p: string): Promise<void> {
    await fs.promises.rm(p, { force: true })
  }
  async mkdirp(p: string): Promise<void> {
    await fs.promises.mkdir(p, { recursive: true })
  }
  chmod(p: string, mode: number): Promise<void> {
    return fs.promises.chmod(p, mode)
  }
  utimes(p: string, atime: number, mtime: number): Promise<void> {
    return fs.promises.utimes(p, atime, mtime)
  }
  async keep(from: string, to: string): Promise<void> {
    try {
      await fs.promises.link(from, to)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV' && (e as NodeJS.ErrnoException).code !== 'EPERM') throw e
      // Another file system: a copy (COPYFILE_EXCL, so nothing is overwritten) with its times and mode.
      const st = await fs.promises.stat(from)
      await fs.promises.copyFile(from, to, fs.constants.COPYFILE_EXCL)
      await fs.promises.chmod(to, st.mode & 0o7777)
      await fs.promises.utimes(to, st.atime, st.mtime)
    }
  }
  readText(p: string): Promise<string> {
    return fs.promises.readFile(p, 'utf8')
  }
  async writeText(p: string, text: string): Promise<void> {
    const tmp = path.join(path.dirname(p), `.${path.basename(p)}.tmp-${process.pid}`)
    const fh = await fs.promises.open(tmp, 'w')
    try {
      await fh.writeFile(text)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await fs.promises.rename(tmp, p)
  }
  async appendText(p: string, text: string): Promise<void> {
    const fh = await fs.promises.open(p, 'a')
    try {
      await fh.appendFile(text)
      await fh.sync()
    } finally {
      await fh.close()
    }
  }
  async list(dir: string): Promise<{ name: string; isDir: boolean }[]> {
    return (await fs.promises.readdir(dir, { withFileTypes: true })).map((e) => ({ name: e.name, isDir: e.isDirectory() }))
  }
  close(): void {}
}

/** `cb`-style SFTP call as a promise; its error names the operation and path. */
function sftpCall<T>(what: string, p: string, f: (cb: (err: Error | undefined | null, v?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) =>
    f((err, v) => (err ? reject(Object.assign(new BackupError('ESSH', `sftp: cannot ${what} ${p}: ${err.message}`), { sftpCode: (err as { code?: number }).code })) : resolve(v as T))),
  )
}

const NO_SUCH_FILE = 2

interface Session {
  client: Client
  sftp: SFTPWrapper
  close: () => void
  /** Rejects when the connection drops. */
  lost: Promise<never>
  /** Registers a stream to be destroyed when the connection drops. */
  track: <S extends { destroy(e?: Error): void }>(s: S) => S
}

/**
 * A server over SSH. The connection is opened on first use and again
 * after it dropped (a retry after a dead connection reconnects).
 */
export class SshSide implements Side {
  readonly remote = true
  readonly label: string
  private conn?: Promise<Session>
  private dead = true

  constructor(
    readonly url: SshUrl,
    private readonly opts: SshOptions,
  ) {
    this.label = url.label
  }

  private session(): Promise<Session> {
    if (this.conn && !this.dead) return this.conn
    this.dead = false
    const c = (async (): Promise<Session> => {
      const { client, close } = await connect(this.url, this.opts)
      // Everything in flight on this connection fails when it drops (ssh2 leaves some of it pending).
      const streams = new Set<{ destroy(e?: Error): void }>()
      let fail: (e: Error) => void = () => {}
      const lost = new Promise<never>((_, reject) => (fail = reject))
      lost.catch(() => {})
      const drop = () => {
        if (this.conn === c) this.dead = true
        const e = new BackupError('ESSH', `${this.label}: the connection was lost`)
        fail(e)
        for (const st of streams) st.destroy(e)
        streams.clear()
      }
      client.on('close', drop)
      client.on('end', drop)
      client.on('error', drop)
      try {
        return { client, sftp: await sftpOf(client), close, lost, track: (st) => (streams.add(st), st) }
      } catch (e) {
        close()
        throw e
      }
    })()
    c.catch(() => {
      if (this.conn === c) this.dead = true
    })
    this.conn = c
    return c
  }

  private async sftp(): Promise<SFTPWrapper> {
    return (await this.session()).sftp
  }

  /** An SFTP call that fails when the connection drops. */
  private async op<T>(what: string, p: string, f: (s: SFTPWrapper, cb: (err: Error | undefined | null, v?: T) => void) => void): Promise<T> {
    const sess = await this.session()
    return Promise.race([sftpCall<T>(what, p, (cb) => f(sess.sftp, cb)), sess.lost])
  }

  /** Runs a command; resolves to its stdout, rejects with its stderr on a non-zero exit. */
  async exec(cmd: string): Promise<string> {
    const { client, lost } = await this.session()
    const run = new Promise<string>((resolve, reject) =>
      client.exec(cmd, (err, stream) => {
        if (err) return reject(new BackupError('ESSH', `${this.label}: cannot run a command: ${err.message}`))
        const out: Buffer[] = []
        const errs: Buffer[] = []
        stream.on('data', (b: Buffer) => out.push(b))
        stream.stderr.on('data', (b: Buffer) => errs.push(b))
        stream.on('close', (code: number | null) => {
          if (code === 0) resolve(Buffer.concat(out).toString('utf8'))
          else reject(new BackupError('ESSH', `${this.label}: ${Buffer.concat(errs).toString('utf8').trim() || `exit ${code}`}`))
        })
      }),
    )
    return Promise.race([run, lost])
  }

  async stat(p: string): Promise<SideStat | null> {
    try {
      const st = await this.op<Stats>('stat', p, (s, cb) => s.lstat(p, cb))
      return { kind: kindOf(st), size: st.size, mode: st.mode & 0o7777, mtime: st.mtime, atime: st.atime }
    } catch (e) {
      if ((e as { sftpCode?: number }).sftpCode === NO_SUCH_FILE) return null
      throw e
    }
  }
  async realpath(p: string): Promise<string> {
    return this.op<string>('resolve', p, (s, cb) => s.realpath(p, cb))
  }
  /** `sha256sum` and `md5sum` (coreutils) on the server: the file is read there, not sent here. */
  async hash(p: string): Promise<Digests> {
    const q = shQuote(p)
    const out = await this.exec(`LC_ALL=C sha256sum -b -- ${q} && LC_ALL=C md5sum -b -- ${q}`)
    // coreutils marks an escaped name with a leading backslash on the line.
    const [s, m] = out.split('\n').map((l) => l.replace(/^\\/, '').split(' ')[0])
    if (!/^[0-9a-f]{64}$/.test(s ?? '') || !/^[0-9a-f]{32}$/.test(m ?? '')) throw new BackupError('ESSH', `${this.label}: unexpected sha256sum/md5sum output for ${p}`)
    return { sha256: s, md5: m }
  }
  read(p: string): Readable {
    // The stream is made before the session is known: a pass-through fed once it is.
    return lazyStream(async () => {
      const sess = await this.session()
      return sess.track(sess.sftp.createReadStream(p))
    })
  }
  create(p: string): Writable {
    return lazyWritable(async () => {
      const sess = await this.session()
      return sess.track(sess.sftp.createWriteStream(p, { flags: 'wx', mode: 0o600 }))
    })
  }
  async rename(from: string, to: string): Promise<void> {
    await this.op('rename', from, (s, cb) => s.ext_openssh_rename(from, to, cb))
  }
  async unlink(p: string): Promise<void> {
    try {
      await this.op('remove', p, (s, cb) => s.unlink(p, cb))
    } catch (e) {
      if ((e as { sftpCode?: number }).sftpCode !== NO_SUCH_FILE) throw e
    }
  }
  async mkdirp(p: string): Promise<void> {
    const st = await this.stat(p)
    if (st?.kind === 'dir') return
    if (st) throw new BackupError('EIO', `${this.label}: ${p} exists and is not a folder`)
    const up = path.posix.dirname(p)
    if (up !== p) await this.mkdirp(up)
    try {
      await this.op('create the folder', p, (s, cb) => s.mkdir(p, cb))
    } catch (e) {
      if ((await this.stat(p))?.kind !== 'dir') throw e
    }
  }
  async chmod(p: string, mode: number): Promise<void> {
    await this.op('chmod', p, (s, cb) => s.chmod(p, mode, cb))
  }
  async utimes(p: string, atime: number, mtime: number): Promise<void> {
    await this.op('set the times of', p, (s, cb) => s.utimes(p, atime, mtime, cb))
  }
  async keep(from: string, to: string): Promise<void> {
    try {
      await this.op('link', from, (s, cb) => s.ext_openssh_hardlink(from, to, cb))
    } catch {
      // Another file system, or no hardlink extension: `cp -p` where the file is.
      await this.exec(`cp -p -n -- ${shQuote(from)} ${shQuote(to)} && test -f ${shQuote(to)}`)
    }
  }
  async readText(p: string): Promise<string> {
    const chunks: Buffer[] = []
    for await (const c of this.read(p)) chunks.push(c as Buffer)
    return Buffer.concat(chunks).toString('utf8')
  }
  async writeText(p: string, text: string): Promise<void> {
    const tmp = path.posix.join(path.posix.dirname(p), `.${path.posix.basename(p)}.tmp-${process.pid}`)
    await this.unlink(tmp)
    await writeAll(this.create(tmp), text)
    await this.rename(tmp, p)
  }
  async appendText(p: string, text: string): Promise<void> {
    const sess = await this.session()
    await Promise.race([writeAll(sess.track(sess.sftp.createWriteStream(p, { flags: 'a', mode: 0o600 })), text), sess.lost])
  }
  async list(dir: string): Promise<{ name: string; isDir: boolean }[]> {
    const l = await this.op<{ filename: string; attrs: Stats }[]>('list', dir, (s, cb) => s.readdir(dir, cb))
    return l.map((e) => ({ name: e.filename, isDir: e.attrs.isDirectory() }))
  }
  /** The newest report of each group folder under the output folder. */
  async latestReports(timeoutMs: number): Promise<string[]> {
    return latestRemoteReports(await this.sftp(), this.url, timeoutMs)
  }
  close(): void {
    if (this.conn && !this.dead) this.conn.then((c) => c.close()).catch(() => {})
    this.dead = true
  }
}

function writeAll(w: Writable, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    w.on('error', reject)
    w.on('close', () => resolve())
    w.end(text)
  })
}

/** A readable whose source is opened asynchronously (errors of the opening surface on the stream). */
function lazyStream(open: () => Promise<Readable>): Readable {
  const out = new PassThrough()
  open().then(
    (src) => {
      src.on('error', (e) => out.destroy(e))
      src.pipe(out)
    },
    (e) => out.destroy(e),
  )
  return out
}

/** A writable whose target is opened asynchronously; it ends ('close') once the target has closed. */
function lazyWritable(open: () => Promise<Writable>): Writable {
  const target = open()
  target.catch(() => {})
  const w: Writable = new Writable({
    write(chunk, _enc, cb) {
      target.then((t) => (t.write(chunk) ? cb() : t.once('drain', () => cb())), cb)
    },
    final(cb) {
      target.then((t) => {
        let called = false
        const once = (e?: Error | null) => {
          if (!called) (called = true), cb(e)
        }
        t.once('error', once)
        t.once('close', () => once())
        t.end()
      }, cb)
    },
    destroy(err, cb) {
      target.then(
        (t) => {
          t.destroy()
          cb(err)
        },
        () => cb(err),
      )
    },
  })
  target.then((t) => t.on('error', (e) => w.destroy(e)), () => {})
  return w
}
