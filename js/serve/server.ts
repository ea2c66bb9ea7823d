/**
 * `backup serve`: a local web page and JSON API over one backup folder, on `node:http` (no framework:
 * a dozen routes do not need one, and every header stays in view).
 *
 * Security model: the server binds 127.0.0.1 unless told otherwise; every request, the page included,
 * needs the random token printed with the URL (`Authorization: Bearer`, the `token` query parameter,
 * or the HttpOnly SameSite=Strict cookie set when the page is first opened with the token), compared
 * in constant time; anything else is 401. It only reads, unless started with `allowRestore`; even then
 * a restore goes through the library's `restore` (nothing written inside the backup folder, existing
 * files kept unless overwrite). Stored files are sent as `application/octet-stream` attachments with
 * `nosniff`, so a backed-up HTML file can never run as this page; the page's own files come from a fixed
 * list read at start; the Content-Security-Policy allows only this origin.
 *
 * All reads go through `BackupData` (`./data.ts`), the one seam, which answers from the catalog index.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { pipeline } from 'node:stream'

import { BackupError } from '../errors'
import { BackupData, ServeError, type SearchFilters } from './data'

export interface ServeOptions {
  /** TCP port; 0 (the default) lets the system pick a free one. */
  port?: number
  /** Address to bind; default 127.0.0.1 (only this machine). */
  host?: string
  /** Allow `POST /api/restore`; without it the server only reads (403). */
  allowRestore?: boolean
  /** The access token; default 32 random bytes, hex. */
  token?: string
}

export interface Served {
  server: http.Server
  /** `http://HOST:PORT/?token=…`: open it in a browser. */
  url: string
  /** The origin without the token. */
  origin: string
  token: string
  /** The backup folder served. */
  dst: string
  /** Stops listening and closes every connection. */
  close(): Promise<void>
}

/** The page's files: `ui/` at the package root (beside `dist/` and `js/`). */
export const PAGE_DIR = path.join(__dirname, '..', '..', 'ui')

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
}

/** Headers on every response. */
const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
}

/** The page's files, read once: name → (type, bytes). Nothing else is ever served as a page file. */
function loadPage(dir: string): Map<string, { type: string; body: Buffer }> {
  const files = new Map<string, { type: string; body: Buffer }>()
  if (!fs.existsSync(dir)) return files
  for (const name of fs.readdirSync(dir)) {
    const type = TYPES[path.extname(name)]
    const p = path.join(dir, name)
    if (type && fs.lstatSync(p).isFile()) files.set(name, { type, body: fs.readFileSync(p) })
  }
  return files
}

/** Constant-time token check (both sides hashed to equal length first). */
function sameToken(given: string, token: string): boolean {
  const a = crypto.createHash('sha256').update(given).digest()
  const b = crypto.createHash('sha256').update(token).digest()
  return crypto.timingSafeEqual(a, b)
}

function cookies(req: http.IncomingMessage): Map<string, string> {
  const out = new Map<string, string>()
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=')
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim())
  }
  return out
}

/** `filename` (ASCII, safe characters only) and `filename*` (UTF-8) for Content-Disposition. */
export function contentDisposition(name: string): string {
  const ascii = name.replace(/[^A-Za-z0-9._ +-]/g, '_').replace(/^\.+/, '_') || 'download'
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name).replace(/['()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())}`
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

function sendError(res: http.ServerResponse, e: unknown): void {
  if (res.headersSent) {
    res.destroy(e as Error)
    return
  }
  if (e instanceof ServeError) return sendJson(res, e.status, { error: { code: e.code, message: e.message } })
  if (e instanceof BackupError) {
    const status = e.code === 'ECONFIG' ? 400 : e.code === 'ELOCKED' ? 409 : 500
    return sendJson(res, status, { error: { code: e.code, message: e.message } })
  }
  const err = e as NodeJS.ErrnoException
  sendJson(res, 500, { error: { code: err?.code ?? 'EIO', message: err?.message ?? String(e) } })
}

/** Reads a JSON request body (at most 1 MiB). */
async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'] ?? ''
  if (!type.startsWith('application/json')) throw new ServeError(415, 'EBADINPUT', 'send the body as application/json')
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req) {
    size += (c as Buffer).length
    if (size > 1 << 20) throw new ServeError(413, 'EBADINPUT', 'the request body is larger than 1 MiB')
    chunks.push(c as Buffer)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new ServeError(400, 'EBADINPUT', 'the body is not valid JSON')
  }
}

/**
 * One query parameter: the last value wins; a NUL or a lone surrogate from bad percent-encoding is
 * refused by `checkPath`/`resolve` downstream.
 */
function param(u: URL, name: string): string | undefined {
  const all = u.searchParams.getAll(name)
  return all.length ? all[all.length - 1] : undefined
}

/**
 * Starts serving `dst`; resolves once it listens. The library form of `backup serve`.
 *
 * ```ts
 * const s = await serve('/media/usb/backup', { port: 8080 })
 * console.log(s.url) // http://127.0.0.1:8080/?token=…
 * await s.close()
 * ```
 */
export async function serve(dst: string, options: ServeOptions = {}): Promise<Served> {
  const data = new BackupData(dst)
  const token = options.token ?? crypto.randomBytes(32).toString('hex')
  const host = options.host ?? '127.0.0.1'
  const page = loadPage(PAGE_DIR)
  let cookieName = 'axiomatic_token'

  const authorized = (req: http.IncomingMessage, u: URL): 'header' | 'query' | 'cookie' | null => {
    const auth = req.headers.authorization
    if (auth?.startsWith('Bearer ') && sameToken(auth.slice(7).trim(), token)) return 'header'
    const q = u.searchParams.get('token')
    if (q !== null && sameToken(q, token)) return 'query'
    const c = cookies(req).get(cookieName)
    if (c !== undefined && sameToken(c, token)) return 'cookie'
    return null
  }

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v)
    let u: URL
    try {
      u = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      return sendJson(res, 400, { error: { code: 'EBADINPUT', message: 'the request URL cannot be read' } })
    }
    const how = authorized(req, u)
    if (!how) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="backup serve"')
      return sendJson(res, 401, {
        error: { code: 'EUNAUTHORIZED', message: 'this server needs its access token: open the URL `backup serve` printed (it ends in ?token=…)' },
      })
    }
    if (how === 'query') {
      // The cookie lets the page's own requests and downloads go without the token in every URL.
      res.setHeader('Set-Cookie', `${cookieName}=${token}; HttpOnly; SameSite=Strict; Path=/`)
    }
    const route = u.pathname
    const method = req.method ?? 'GET'
    if (route === '/api/restore') {
      if (method !== 'POST') return sendJson(res, 405, { error: { code: 'EMETHOD', message: 'use POST for /api/restore' } })
      if (!options.allowRestore) {
        return sendJson(res, 403, { error: { code: 'ERESTOREDISABLED', message: 'restore is disabled: this server is read-only; start it with --allow-restore to restore from the page' } })
      }
      // A cross-site form cannot send JSON with a cookie (SameSite=Strict); an Origin, if sent, must be ours.
      const origin = req.headers.origin
      if (origin && origin !== `http://${req.headers.host}`) {
        return sendJson(res, 403, { error: { code: 'EORIGIN', message: `requests from ${origin} may not restore` } })
      }
      return sendJson(res, 200, await data.restore((await readJson(req)) as never))
    }
    if (method !== 'GET' && method !== 'HEAD') return sendJson(res, 405, { error: { code: 'EMETHOD', message: `${method} is not allowed here` } })
    switch (route) {
      case '/api/increments':
        return sendJson(res, 200, await data.increments({ detailed: ['1', 'true'].includes(param(u, 'detailed') ?? '') }))
      case '/api/sizes':
        return sendJson(res, 200, await data.sizes())
      case '/api/tree':
        return sendJson(res, 200, await data.tree(param(u, 'path') ?? '', param(u, 'at')))
      case '/api/history':
        return sendJson(res, 200, await data.history(param(u, 'path') ?? ''))
      case '/api/search': {
        const f: SearchFilters = {
          masks: u.searchParams.getAll('mask'),
          ignoreCase: ['1', 'true'].includes(param(u, 'ignoreCase') ?? ''),
          size: param(u, 'size'),
          time: param(u, 'time'),
          paths: u.searchParams.getAll('path'),
        }
        const last = param(u, 'lastBackups')
        if (last !== undefined && last !== '') {
          if (!/^\d+$/.test(last) || Number(last) < 1) throw new ServeError(400, 'EBADINPUT', `lastBackups: expected a whole number ≥ 1, got ${JSON.stringify(last)}`)
          f.lastBackups = Number(last)
        }
        const limit = param(u, 'limit')
        if (limit !== undefined) {
          if (!/^\d+$/.test(limit)) throw new ServeError(400, 'EBADINPUT', `limit: expected a whole number, got ${JSON.stringify(limit)}`)
          f.limit = Number(limit)
        }
        return sendJson(res, 200, await data.search(f))
      }
      case '/api/diff':
        return sendJson(res, 200, await data.diff(param(u, 'from') || undefined, param(u, 'to') || undefined, param(u, 'path')))
      case '/api/status':
        return sendJson(res, 200, { ...(await data.status()), serve: { allowRestore: !!options.allowRestore } })
      case '/api/file': {
        const f = await data.file(param(u, 'path') ?? '', param(u, 'at'))
        res.writeHead(200, {
          'Content-Type': 'application/octet-stream',
          'Content-Length': f.size,
          'Content-Disposition': contentDisposition(f.name),
          'Cache-Control': 'no-store',
          'Last-Modified': new Date(f.mtimeMs).toUTCString(),
          'X-Backup-From': encodeURIComponent(f.file.from!),
          ...(f.file.sha256 ? { 'X-Backup-Sha256': f.file.sha256 } : {}),
          ...(f.file.warning ? { 'X-Backup-Warning': f.file.warning } : {}),
        })
        if (method === 'HEAD') {
          f.stream.destroy()
          return void res.end()
        }
        return new Promise((ok) => pipeline(f.stream, res, () => ok()))
      }
      case '/api/archive': {
        const a = await data.archive(param(u, 'path') ?? '', param(u, 'at'))
        res.writeHead(200, { 'Content-Type': 'application/x-tar', 'Content-Disposition': contentDisposition(a.name), 'Cache-Control': 'no-store' })
        if (method === 'HEAD') {
          a.stream.destroy()
          return void res.end()
        }
        return new Promise((ok) => pipeline(a.stream, res, () => ok()))
      }
    }
    if (route.startsWith('/api/')) return sendJson(res, 404, { error: { code: 'ENOTFOUND', message: `no such API: ${route}` } })
    // The page: `/` is index.html; other files by exact name, from the list read at start.
    if (how === 'query' && route === '/' && method === 'GET') {
      // Take the token out of the address bar (and the history) once the cookie is set.
      const rest = new URLSearchParams(u.searchParams)
      rest.delete('token')
      const q = rest.toString()
      res.writeHead(303, { Location: '/' + (q ? `?${q}` : '') + (u.hash ?? '') })
      return void res.end()
    }
    const name = route === '/' ? 'index.html' : route.slice(1)
    const file = page.get(name)
    if (!file) return sendJson(res, 404, { error: { code: 'ENOTFOUND', message: `no such page: ${route}` } })
    res.writeHead(200, { 'Content-Type': file.type, 'Content-Length': file.body.length, 'Cache-Control': 'no-cache' })
    res.end(method === 'HEAD' ? undefined : file.body)
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => sendError(res, e))
  })
  await new Promise<void>((ok, fail) => {
    const refused = (e: NodeJS.ErrnoException) => {
      const why = e.code === 'EADDRINUSE' ? 'the port is in use; choose another --port (0: any free one)' : e.code === 'EACCES' ? 'not allowed (ports below 1024 need root)' : e.message
      fail(new BackupError('EIO', `cannot listen on ${host}:${options.port ?? 0}: ${why}`, undefined, { cause: e }))
    }
    server.once('error', refused)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', refused)
      ok()
    })
  })
  const port = (server.address() as AddressInfo).port
  // Cookies are not kept apart by port: one name per port, so two servers do not overwrite each other's.
  cookieName = `axiomatic_token_${port}`
  const shownHost = host.includes(':') ? `[${host}]` : host
  const origin = `http://${shownHost}:${port}`
  return {
    server,
    url: `${origin}/?token=${token}`,
    origin,
    token,
    dst: data.dst,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok())
        server.closeAllConnections()
      }),
  }
}
