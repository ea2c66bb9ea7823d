/**
 * Fetching the latest reports of a remote output folder over SSH (`ssh2`):
 * key authentication, host keys checked against `known_hosts` (plain and
 * hashed entries; an unknown host is refused unless `acceptNewHostKey`, a
 * changed key always), an optional jump host, timeouts, and bounded
 * retries with exponential backoff for transient failures.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import type { Client, ConnectConfig, SFTPWrapper } from 'ssh2'

import { BackupError, ConfigError, ExitCode } from '../errors'
import { latestReport } from './reports'

export interface SshOptions {
  /**
   * Private key file(s) (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa, else the SSH agent). Several
   * are tried in order on every host, as ssh does with several IdentityFile lines.
   */
  identity?: string | string[]
  /** Default: ~/.ssh/known_hosts. */
  knownHosts?: string
  /** Trust and record the key of a host not in known_hosts (a changed key is always refused). */
  acceptNewHostKey?: boolean
  /**
   * `[user@]host[:port]` to connect through. Several may be given: `TARGET=JUMP` (TARGET `host` or
   * `host:port`) applies to that target only; a bare `JUMP` to every target without its own.
   */
  jump?: string | string[]
  /** Connection and command timeout, ms (default 15000). */
  timeoutMs?: number
  /** Retries after a transient failure (default 2), with backoff 0.5 s, 1 s, 2 s… */
  retries?: number
}

export interface HostSpec {
  user: string
  host: string
  port: number
}

export interface SshUrl extends HostSpec {
  path: string
  /** `user@host[:port]`, as shown in results. */
  label: string
}

/** The local user name, which ssh uses when the destination names none. */
function currentUser(): string {
  try {
    return os.userInfo().username
  } catch {
    return process.env.USER ?? process.env.LOGNAME ?? 'root'
  }
}

/** `[user@]host[:port]`; without a user, the current user (as ssh does). */
export function parseHost(spec: string, what = '--jump'): HostSpec {
  const m = /^(?:([^@/:]+)@)?(\[[^\]]+\]|[^:/@]+)(?::(\d+))?$/.exec(spec)
  if (!m) throw new ConfigError(`${what} ${JSON.stringify(spec)}: expected [user@]host or [user@]host:port`)
  const port = m[3] ? Number(m[3]) : 22
  if (port < 1 || port > 65535) throw new ConfigError(`${what} ${JSON.stringify(spec)}: port out of range`)
  return { user: m[1] ?? currentUser(), host: m[2].replace(/^\[|\]$/g, ''), port }
}

/** `ssh://[user@]host[:port]/path/to/output_dir` (no user: the current one, as ssh). */
export function parseSshUrl(url: string): SshUrl {
  const m = /^ssh:\/\/([^/]+)(\/.*)$/.exec(url)
  if (!m) throw new ConfigError(`${url}: expected ssh://[user@]host[:port]/path/to/output_dir`)
  const h = parseHost(m[1], url)
  return { ...h, path: decodeURIComponent(m[2]), label: h.port === 22 ? `${h.user}@${h.host}` : `${h.user}@${h.host}:${h.port}` }
}

// ---------------------------------------------------------------- known_hosts

function hostNames(host: string, port: number): string[] {
  return port === 22 ? [host] : [`[${host}]:${port}`]
}

function matchesPattern(pattern: string, name: string): boolean {
  if (pattern.startsWith('|1|')) {
    const [, , salt, hash] = pattern.split('|')
    const h = crypto.createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64')
    return h === hash
  }
  const re = new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$')
  return re.test(name)
}

/** The keys known_hosts lists for a host (base64 blobs). */
export function knownKeys(file: string, host: string, port: number): string[] {
  let text = ''
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch {
    return []
  }
  const names = hostNames(host, port)
  const out: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const parts = line.split(/\s+/)
    const [patterns, , key] = parts[0].startsWith('@') ? parts.slice(1) : parts
    if (!key || parts[0] === '@revoked') continue
    const pats = patterns.split(',')
    const negated = pats.some((p) => p.startsWith('!') && names.some((n) => matchesPattern(p.slice(1), n)))
    if (!negated && pats.some((p) => !p.startsWith('!') && names.some((n) => matchesPattern(p, n)))) out.push(key)
  }
  return out
}

function keyType(blob: Buffer): string {
  const len = blob.readUInt32BE(0)
  return blob.subarray(4, 4 + len).toString()
}

// ---------------------------------------------------------------- connecting

export class HostKeyError extends BackupError {}

/** Errors that do not get better by retrying: wrong keys, refused host keys, bad input. */
export function isPermanent(e: unknown): boolean {
  return e instanceof HostKeyError || e instanceof ConfigError || (e instanceof BackupError && e.code === 'EAUTH')
}

/** The private keys to offer, in order: the `--identity` files, else the first default key found. */
function identityKeys(opts: SshOptions): Buffer[] {
  const given = opts.identity === undefined ? [] : Array.isArray(opts.identity) ? opts.identity : [opts.identity]
  if (given.length) {
    return given.map((f) => {
      try {
        return fs.readFileSync(f)
      } catch (e) {
        throw new ConfigError(`--identity ${f}: ${(e as Error).message}`)
      }
    })
  }
  for (const n of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
    const f = path.join(os.homedir(), '.ssh', n)
    if (fs.existsSync(f)) return [fs.readFileSync(f)]
  }
  return []
}

/** The jump host for `target`: a `TARGET=JUMP` entry naming it (host or host:port), else a bare entry. */
export function jumpFor(target: HostSpec, opts: SshOptions): string | undefined {
  const list = opts.jump === undefined ? [] : Array.isArray(opts.jump) ? opts.jump : [opts.jump]
  let fallback: string | undefined
  for (const j of list) {
    const eq = j.indexOf('=')
    if (eq < 0) {
      fallback ??= j
      continue
    }
    const name = j.slice(0, eq)
    if (name === target.host || name === `${target.host}:${target.port}` || name === `[${target.host}]:${target.port}`) return j.slice(eq + 1)
  }
  return fallback
}

/** `ssh2` is loaded on first use: commands that never connect do not pay for it. */
async function ssh2Client(): Promise<Client> {
  const { Client } = await import('ssh2')
  return new Client()
}

async function connectOne(h: HostSpec, opts: SshOptions, sock?: NodeJS.ReadableStream): Promise<Client> {
  const c = await ssh2Client()
  const knownHosts = opts.knownHosts ?? path.join(os.homedir(), '.ssh', 'known_hosts')
  let refusal: HostKeyError | undefined
  const cfg: ConnectConfig = {
    host: h.host,
    port: h.port,
    username: h.user,
    readyTimeout: opts.timeoutMs ?? 15000,
    // A peer that stops answering (not just closing) is noticed too: streams never wait forever.
    keepaliveInterval: 5000,
    keepaliveCountMax: 3,
    agent: process.env.SSH_AUTH_SOCK,
    hostVerifier: (key: Buffer) => {
      const b64 = key.toString('base64')
      const known = knownKeys(knownHosts, h.host, h.port)
      if (known.includes(b64)) return true
      const name = hostNames(h.host, h.port)[0]
      if (known.length) {
        refusal = new HostKeyError(
          'EHOSTKEY',
          `the host key of ${name} does not match ${knownHosts}: it changed, or someone is in between. ` +
            `If the change is expected, remove the old line (ssh-keygen -R '${name}' -f ${knownHosts}) and try again`,
        )
        return false
      }
      if (!opts.acceptNewHostKey) {
        refusal = new HostKeyError(
          'EHOSTKEY',
          `${name} is not in ${knownHosts}; check its key and add it (ssh-keyscan), or pass --accept-new-host-key to trust it on first use`,
        )
        return false
      }
      fs.mkdirSync(path.dirname(knownHosts), { recursive: true })
      fs.appendFileSync(knownHosts, `${name} ${keyType(key)} ${b64}\n`)
      return true
    },
  }
  const keys = identityKeys(opts)
  if (keys.length === 1) cfg.privateKey = keys[0]
  else if (keys.length > 1) {
    // Each key in turn, then the agent: ssh's order with several IdentityFile lines.
    const methods: unknown[] = keys.map((key) => ({ type: 'publickey', username: h.user, key }))
    if (process.env.SSH_AUTH_SOCK) methods.push({ type: 'agent', username: h.user, agent: process.env.SSH_AUTH_SOCK })
    cfg.authHandler = methods as ConnectConfig['authHandler']
  }
  if (sock) cfg.sock = sock as ConnectConfig['sock']
  return new Promise((resolve, reject) => {
    c.on('ready', () => resolve(c))
    c.on('error', (e: Error & { level?: string }) => {
      if (refusal) return reject(refusal)
      if (e.level === 'client-authentication') {
        return reject(new BackupError('EAUTH', `ssh ${h.user}@${h.host}:${h.port}: key authentication failed (${e.message}); check --identity`, ExitCode.Failed))
      }
      reject(new BackupError('ESSH', `ssh ${h.user}@${h.host}:${h.port}: ${e.message}`, ExitCode.Failed))
    })
    c.connect(cfg)
  })
}

/** Connects to `target`, through its jump host (`jumpFor`) if any. Returns the client and a closer. */
export async function connect(target: HostSpec, opts: SshOptions): Promise<{ client: Client; close: () => void }> {
  const via = jumpFor(target, opts)
  if (!via) {
    const client = await connectOne(target, opts)
    return { client, close: () => client.end() }
  }
  const j = parseHost(via)
  const jump = await connectOne(j, opts)
  try {
    const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) =>
      jump.forwardOut('127.0.0.1', 0, target.host, target.port, (err, s) =>
        err ? reject(new BackupError('ESSH', `jump host ${via}: cannot reach ${target.host}:${target.port}: ${err.message}`)) : resolve(s),
      ),
    )
    const client = await connectOne(target, opts, stream)
    return {
      client,
      close: () => {
        client.end()
        jump.end()
      },
    }
  } catch (e) {
    jump.end()
    throw e
  }
}

export function sftpOf(c: Client): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => c.sftp((err, s) => (err ? reject(new BackupError('ESSH', `sftp: ${err.message}`)) : resolve(s))))
}

export function readdir(s: SFTPWrapper, dir: string): Promise<{ name: string; isDir: boolean }[]> {
  return new Promise((resolve, reject) =>
    s.readdir(dir, (err, list) =>
      err ? reject(new BackupError('ESSH', `sftp: cannot list ${dir}: ${err.message}`)) : resolve(list.map((e) => ({ name: e.filename, isDir: e.attrs.isDirectory() }))),
    ),
  )
}

function download(s: SFTPWrapper, remote: string, local: string): Promise<void> {
  return new Promise((resolve, reject) => s.fastGet(remote, local, (err) => (err ? reject(new BackupError('ESSH', `sftp: cannot read ${remote}: ${err.message}`)) : resolve())))
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new BackupError('ETIMEDOUT', `${what}: no answer within ${ms / 1000} s`)), ms)
    }),
  ])
}

/** The newest `all_<ts>.json` of every group folder under `url.path` (or of that folder itself), as remote paths. */
export async function latestRemoteReports(sftp: SFTPWrapper, url: SshUrl, timeout: number): Promise<string[]> {
  const entries = await withTimeout(readdir(sftp, url.path), timeout, url.label)
  const remote: string[] = []
  const own = latestReport(entries.map((e) => e.name))
  if (own) remote.push(path.posix.join(url.path, own))
  else {
    for (const e of entries.filter((x) => x.isDir)) {
      const l = latestReport((await withTimeout(readdir(sftp, path.posix.join(url.path, e.name)), timeout, url.label)).map((x) => x.name))
      if (l) remote.push(path.posix.join(url.path, e.name, l))
    }
  }
  if (!remote.length) throw new ConfigError(`${url.label}:${url.path}: no all_<timestamp>.json reports there or in its group folders`)
  return remote
}

/** Downloads the newest `all_<ts>.json` of every group folder (or of the folder itself) under `url.path`. */
export async function fetchLatestReports(url: SshUrl, localDir: string, opts: SshOptions = {}): Promise<string[]> {
  const retries = opts.retries ?? 2
  let lastError: unknown
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 500 * 2 ** (attempt - 1)))
    let close = () => {}
    try {
      const conn = await connect(url, opts)
      close = conn.close
      const sftp = await sftpOf(conn.client)
      const timeout = (opts.timeoutMs ?? 15000) * 4
      const remote = await latestRemoteReports(sftp, url, timeout)
      fs.mkdirSync(localDir, { recursive: true })
      const out: string[] = []
      for (const [i, r] of remote.entries()) {
        const local = path.join(localDir, `${i}-${path.posix.basename(r)}`)
        await withTimeout(download(sftp, r, local), timeout * 10, url.label)
        out.push(local)
      }
      return out
    } catch (e) {
      lastError = e
      // Wrong keys, refused host keys and missing reports do not get better by retrying.
      if (isPermanent(e)) throw e
    } finally {
      close()
    }
  }
  throw lastError
}
