/**
 * `backup serve` (issue 13): the JSON API on real backups, one made by the engine (several increments,
 * untracked files, a symlink pointing out of the backup) and one made by the original backup.py. The
 * point-in-time answers are checked against what `restore --at` really restores; the token, path
 * traversal and the read-only default are checked from outside, over HTTP.
 */
import { spawn, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

import fc from 'fast-check'
import tar from 'tar-stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { backup, diff, history, listIncrements, loadConfig, restore, search, serve, timeline, type Served } from '../js'
import { BIN, listTree, tmpdir, writeTree } from './helpers'
import { TZ, originalFolder } from './original-backup'
import { engineBackup } from './serve-fixture'
import { needs } from './tools'
import { lineDiff, sideBySide } from '../ui/diff.js'

const sha = (b: Buffer | string) => crypto.createHash('sha256').update(b).digest('hex')

/** The paths of a diff with one status. */
const paths = (d: any, status: 'added' | 'removed' | 'changed') => d.items.filter((i: any) => i.status === status).map((i: any) => i.path)

/** A small client of one server. */
function client(origin: string, token: string) {
  const get = (route: string, init: RequestInit = {}) =>
    fetch(origin + route, { ...init, redirect: 'manual', headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) } })
  const json = async (route: string) => {
    const r = await get(route)
    const body = await r.json()
    if (r.status !== 200) throw new Error(`${route}: ${r.status} ${JSON.stringify(body)}`)
    return body as any
  }
  const q = (o: Record<string, string | undefined>) =>
    '?' + new URLSearchParams(Object.entries(o).filter((e): e is [string, string] => e[1] !== undefined)).toString()
  return { get, json, q }
}

type Client = ReturnType<typeof client>

/** Every file of a point in time, walking the tree API folder by folder. */
async function walkTree(c: Client, at?: string): Promise<Map<string, any>> {
  const out = new Map<string, any>()
  const visit = async (dir: string) => {
    const t = await c.json('/api/tree' + c.q({ path: dir, at }))
    for (const e of t.entries) {
      if (e.type === 'dir') await visit(e.path)
      else out.set(e.path, e)
    }
  }
  await visit('')
  return out
}

/** A tar stream's entries: name → type, bytes, link target, mode. */
async function untar(body: Buffer) {
  const out = new Map<string, { type: string; data: Buffer; linkname?: string; mode?: number }>()
  const ex = tar.extract()
  const done = new Promise<void>((ok, fail) => {
    ex.on('entry', (h, stream, next) => {
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        out.set(h.name, { type: h.type!, data: Buffer.concat(chunks), linkname: h.linkname ?? undefined, mode: h.mode })
        next()
      })
    })
    ex.on('finish', ok)
    ex.on('error', fail)
  })
  ex.end(body)
  await done
  return out
}

/** What `restore --at AT` writes, as path → (kind, sha of the bytes or link target). */
async function restored(dst: string, at?: string): Promise<Map<string, { kind: string; sha: string; size: number }>> {
  const to = path.join(tmpdir('restored-'), 'out')
  await restore(dst, { to, at })
  return new Map([...listTree(to)].map(([p, i]) => [p, { kind: i.kind, sha: i.sha, size: i.size }]))
}

/** Checks the tree and file API against a real restore at `at`. */
async function expectSameAsRestore(c: Client, dst: string, at: string | undefined, restoredAt?: Map<string, { kind: string; sha: string; size: number }>) {
  const want = restoredAt ?? (await restored(dst, at))
  const got = await walkTree(c, at)
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
  for (const [p, e] of got) {
    const w = want.get(p)!
    expect(e.type, p).toBe(w.kind)
    const r = await c.get('/api/file' + c.q({ path: p, at }))
    if (w.kind === 'symlink') {
      expect(r.status, p).toBe(400)
      expect((await r.json()).error.code).toBe('ESYMLINK')
      continue
    }
    expect(r.status, p).toBe(200)
    if (e.sha256) expect(e.sha256, p).toBe(w.sha)
    const bytes = Buffer.from(await r.arrayBuffer())
    expect(sha(bytes), `${p} at ${at}`).toBe(w.sha)
    // An overwritten version of backup.py: the recorded size, the stored (later) bytes, as restore warns.
    if (e.warning === 'overwritten-version') expect(r.headers.get('x-backup-warning'), p).toBe('overwritten-version')
    else expect(e.size, p).toBe(w.size)
  }
}

describe('backup serve on a backup made by the engine', () => {
  let f: Awaited<ReturnType<typeof engineBackup>>
  let s: Served
  let c: Client
  beforeAll(async () => {
    f = await engineBackup()
    s = await serve(f.dst)
    c = client(s.origin, s.token)
  })
  afterAll(async () => {
    await s?.close()
  })

  it('binds 127.0.0.1 on a free port and prints the URL with a 64-hex-digit token', () => {
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{64}$/)
    expect(s.url.endsWith(s.token)).toBe(true)
  })

  it('every request needs the token: none or a wrong one is 401; bearer, query and cookie are 200', async () => {
    const routes = ['/', '/api/increments', '/app.js', '/api/file?path=docs/a.txt', '/api/nothing-here']
    for (const r of routes) {
      const none = await fetch(s.origin + r, { redirect: 'manual' })
      expect(none.status, r).toBe(401)
      expect(await none.text()).not.toContain('version')
      const wrong = await fetch(s.origin + r, { redirect: 'manual', headers: { authorization: `Bearer ${'0'.repeat(64)}` } })
      expect(wrong.status, r).toBe(401)
      const wrongQ = await fetch(s.origin + r + (r.includes('?') ? '&' : '?') + 'token=' + s.token.slice(0, -1) + 'x', { redirect: 'manual' })
      expect(wrongQ.status, r).toBe(401)
      const badCookie = await fetch(s.origin + r, { redirect: 'manual', headers: { cookie: `axiomatic_token_${new URL(s.origin).port}=nope` } })
      expect(badCookie.status, r).toBe(401)
    }
    expect((await c.get('/api/increments')).status).toBe(200)
    const byQuery = await fetch(`${s.origin}/api/increments?token=${s.token}`)
    expect(byQuery.status).toBe(200)
    // The first visit with ?token= sets the cookie (HttpOnly, SameSite=Strict) and takes the token out of the address.
    const first = await fetch(s.url, { redirect: 'manual' })
    expect(first.status).toBe(303)
    expect(first.headers.get('location')).toBe('/')
    const cookie = first.headers.get('set-cookie')!
    expect(cookie).toMatch(/HttpOnly/)
    expect(cookie).toMatch(/SameSite=Strict/)
    const pair = cookie.split(';')[0]
    const page = await fetch(s.origin + '/', { headers: { cookie: pair } })
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('<script type="module" src="/app.js"></script>')
    expect((await fetch(s.origin + '/api/status', { headers: { cookie: pair } })).status).toBe(200)
  })

  it('sets a CSP allowing only itself, nosniff, no referrer; the page loads nothing from elsewhere', async () => {
    const r = await c.get('/')
    const csp = r.headers.get('content-security-policy')!
    expect(csp).toContain("default-src 'none'")
    expect(csp).toContain("script-src 'self'")
    expect(csp).not.toMatch(/https?:|unsafe-inline|unsafe-eval/)
    expect(r.headers.get('x-content-type-options')).toBe('nosniff')
    expect(r.headers.get('referrer-policy')).toBe('no-referrer')
    for (const file of fs.readdirSync(path.join(__dirname, '..', 'ui'))) {
      const text = fs.readFileSync(path.join(__dirname, '..', 'ui', file), 'utf8')
      expect(text, file).not.toMatch(/(src|href)=["']https?:|import .* from ['"]https?:|url\(https?:/)
    }
  })

  it("GET /api/increments is the index's timeline: `backup list --json` with the bytes only each increment holds", async () => {
    const t = await c.json('/api/increments')
    expect(t).toEqual(JSON.parse(JSON.stringify(await timeline(f.dst))))
    const list = JSON.parse(JSON.stringify(await listIncrements(f.dst)))
    expect(t.increments.map(({ exclusiveBytes, ...i }: any) => i)).toEqual(list.increments.map(({ exclusiveBytes, ...i }: any) => i))
    // Only increment 1 holds a.txt v1 (12 B) and c.txt v1 (6 B), replaced later (b.txt and main.py were deleted:
    // the deleting increment's deleted/ links them too); only increment 2 holds a.txt v2 (32 B); 3's are the mirror's.
    expect(t.increments.map((i: any) => i.exclusiveBytes)).toEqual([12 + 6, 32, 0])
    const d = await c.json('/api/increments?detailed=1')
    expect(d.increments.map((i: any) => i.name)).toEqual(f.names)
    expect(d.increments.every((i: any) => typeof i.exclusiveBytes === 'number')).toBe(true)
    expect(typeof d.mirrorDiskBytes).toBe('number')
  })

  it('the tree and the files at every increment and at the latest state are exactly what restore --at restores', async () => {
    for (const at of [...f.names, undefined]) await expectSameAsRestore(c, f.dst, at)
    // Every version from an increment carries its recorded hash (looked up even under glob-like folder names).
    for (const at of f.names) {
      for (const [p, e] of await walkTree(c, at)) if (e.from !== 'mirror' && e.type === 'file') expect(e.sha256, `${p} at ${at}`).toMatch(/^[0-9a-f]{64}$/)
    }
    const odd = await c.json('/api/tree' + c.q({ path: 'src/g[l]ob*?{x}', at: f.names[0] }))
    expect(odd.entries.map((e: any) => [e.name, e.sha256])).toEqual([['y.txt', sha('glob\n')]])
    // Spot checks of the history: b deleted at 2 and back at 3, d new at 2, main.py gone at 3.
    const t2 = await walkTree(c, f.names[1])
    expect(t2.has('docs/b.txt')).toBe(false)
    expect(t2.get('docs/sub/d.txt').from).toBe(f.names[1])
    expect(t2.get('docs/a.txt').sha256).toBe(sha('a version 2, longer\nsecond line\n'))
    expect(t2.get('plain/u.txt')).toMatchObject({ from: 'mirror', untracked: true })
    const t3 = await walkTree(c, f.names[2])
    expect(t3.has('src/main.py')).toBe(false)
    expect(t3.get('docs/b.txt').from).toBe(f.names[2])
  })

  it('`at` takes what restore --at takes: a date-time resolves to the newest increment at or before it', async () => {
    const list = await listIncrements(f.dst)
    const when = list.increments[1].timestamp // exactly the second increment's time (ISO, Z)
    const tree = await c.json('/api/tree' + c.q({ at: when }))
    const r = await restore(f.dst, { to: path.join(tmpdir(), 'x'), at: when, dryRun: true })
    expect(tree.at).toBe(r.at)
    await expectSameAsRestore(c, f.dst, when)
    // A date far in the future: the newest increment; a date before the first: 404; nonsense: 400.
    expect((await c.json('/api/tree?at=2999-01-01')).at).toBe(f.names[2])
    const before = await c.get('/api/tree?at=2001-01-01')
    expect(before.status).toBe(404)
    expect((await before.json()).error.code).toBe('ENOTFOUND')
    expect((await c.get('/api/tree?at=backup_20010101_000000')).status).toBe(404)
    expect((await c.get('/api/tree?at=yesterday-ish')).status).toBe(400)
  })

  it('a folder listing has its sub-folders first, then its files, each by name; a file is 400, nothing there 404', async () => {
    const t = await c.json('/api/tree' + c.q({ path: 'docs', at: f.names[1] }))
    expect(t.entries.map((e: any) => [e.name, e.type])).toEqual([
      ['sub', 'dir'],
      ['a.txt', 'file'],
      ['link', 'symlink'],
      ['weird name #1 & ü.txt', 'file'],
    ])
    expect(t.entries[0]).toEqual({ name: 'sub', path: 'docs/sub', type: 'dir', size: null, mtimeNs: null, mode: null, sha256: null, from: null, untracked: false, op: null, link: null, warning: null })
    expect(t.entries[1]).toEqual({
      name: 'a.txt',
      path: 'docs/a.txt',
      type: 'file',
      size: 'a version 2, longer\nsecond line\n'.length,
      mtimeNs: `${1_700_000_100}000000000`,
      mode: t.entries[1].mode,
      sha256: sha('a version 2, longer\nsecond line\n'),
      from: f.names[1],
      untracked: false,
      op: 'changed',
      link: null,
      warning: null,
    })
    expect(t.entries[1].mode & 0o777).toBeGreaterThan(0)
    expect((await c.get('/api/tree?path=docs/a.txt')).status).toBe(400) // a file, not a folder
    expect((await c.get('/api/tree?path=nope')).status).toBe(404)
  })

  it('GET /api/file streams the stored bytes as an attachment with a safe name; folders and absent files are refused', async () => {
    const r = await c.get('/api/file' + c.q({ path: 'docs/a.txt', at: f.names[0] }))
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toBe('application/octet-stream')
    expect(r.headers.get('content-disposition')).toBe(`attachment; filename="a.txt"; filename*=UTF-8''a.txt`)
    expect(r.headers.get('x-backup-sha256')).toBe(sha('a version 1\n'))
    expect(await r.text()).toBe('a version 1\n')
    const weird = await c.get('/api/file' + c.q({ path: 'docs/weird name #1 & ü.txt' }))
    expect(weird.headers.get('content-disposition')).toBe(`attachment; filename="weird name _1 _ _.txt"; filename*=UTF-8''weird%20name%20%231%20%26%20%C3%BC.txt`)
    expect(await weird.text()).toBe('unicode\n')
    expect((await c.get('/api/file?path=docs')).status).toBe(400)
    expect((await c.get('/api/file' + c.q({ path: 'docs/b.txt', at: f.names[1] }))).status).toBe(404) // deleted then
    expect((await c.get('/api/file' + c.q({ path: 'src/main.py', at: f.names[0] }))).status).toBe(200)
    expect((await c.get('/api/file' + c.q({ path: 'src/main.py' }))).status).toBe(404) // gone now
  })

  it('path traversal is refused (.., encoded .., absolute, NUL, empty parts) and nothing outside is served', async () => {
    const attempts = [
      '/api/file?path=../../../../etc/passwd',
      '/api/file?path=docs/../../secret.txt',
      '/api/file?path=%2e%2e/%2e%2e/etc/passwd',
      '/api/file?path=docs%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd',
      '/api/file?path=/etc/passwd',
      '/api/file?path=%2Fetc%2Fpasswd',
      '/api/file?path=docs/a.txt%00.png',
      '/api/file?path=docs//a.txt',
      '/api/tree?path=..',
      '/api/tree?path=/',
      '/api/archive?path=../',
      '/api/history?path=../docs/a.txt',
      '/api/search?path=../x',
      '/api/diff?path=/etc',
    ]
    for (const a of attempts) {
      const r = await c.get(a)
      expect([400, 404], a).toContain(r.status)
      const body = await r.text()
      expect(body, a).not.toContain('root:')
      expect(body, a).not.toContain('TOP-SECRET')
    }
    // The raw request line (no URL normalization by the client): a path outside /api is no page file.
    for (const raw of ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/..%2f..%2fetc%2fpasswd', '/ui/../package.json']) {
      const body = await rawGet(s.origin, raw, s.token)
      expect(body.status, raw).toBe(404)
      expect(body.text).not.toContain('root:')
    }
  })

  it('a symlink is never followed: /api/file refuses it, the tar holds it as a symlink', async () => {
    const r = await c.get('/api/file?path=docs/link')
    expect(r.status).toBe(400)
    const text = await r.text()
    expect(JSON.parse(text).error.code).toBe('ESYMLINK')
    expect(text).not.toContain('TOP-SECRET')
    const t = await untar(Buffer.from(await (await c.get('/api/archive?path=docs')).arrayBuffer()))
    expect(t.get('docs/link')).toMatchObject({ type: 'symlink', linkname: f.secret })
    expect([...t.values()].some((e) => e.data.includes('TOP-SECRET'))).toBe(false)
  })

  it('a folder in the backup replaced by a symlink out of it (a damaged or hostile backup) is not followed', async () => {
    const g = await engineBackup()
    const evil = tmpdir('evil-')
    writeTree(evil, { 'c.txt': 'TOP-SECRET via a symlinked folder\n' })
    const sub = path.join(g.dst, g.names[0], 'track', 'docs', 'sub')
    fs.rmSync(sub, { recursive: true })
    fs.symlinkSync(evil, sub)
    fs.rmSync(path.join(g.dst, 'mirror', 'docs', 'sub'), { recursive: true })
    fs.symlinkSync(evil, path.join(g.dst, 'mirror', 'docs', 'sub'))
    const s2 = await serve(g.dst)
    try {
      const c2 = client(s2.origin, s2.token)
      for (const route of [
        '/api/file' + c2.q({ path: 'docs/sub/c.txt', at: g.names[0] }),
        '/api/file' + c2.q({ path: 'docs/sub/d.txt' }),
        '/api/archive' + c2.q({ path: 'docs/sub', at: g.names[0] }),
        '/api/archive' + c2.q({ path: 'docs' }),
      ]) {
        const r = await c2.get(route)
        const body = Buffer.from(await r.arrayBuffer())
        expect(body.toString('latin1'), route).not.toContain('TOP-SECRET')
        if (route.startsWith('/api/file')) expect(r.status, route).toBe(404)
        else {
          // The archive leaves those files out and says so in a text file at its top.
          expect(r.status, route).toBe(200)
          const t = await untar(body)
          expect(t.get('BACKUP-SERVE-WARNINGS.txt')!.data.toString(), route).toMatch(/docs\/sub\/c\.txt: not in this archive: .*symlink/)
        }
      }
    } finally {
      await s2.close()
    }
  })

  it('GET /api/archive is a tar of the folder as of `at`, equal to what restore --at restores', async () => {
    for (const at of [f.names[0], undefined]) {
      const r = await c.get('/api/archive' + c.q({ path: 'docs', at }))
      expect(r.status).toBe(200)
      expect(r.headers.get('content-type')).toBe('application/x-tar')
      expect(r.headers.get('content-disposition')).toMatch(/^attachment; filename="docs\.tar"/)
      const t = await untar(Buffer.from(await r.arrayBuffer()))
      const want = [...(await restored(f.dst, at))].filter(([p]) => p.startsWith('docs/'))
      expect([...t.keys()].sort()).toEqual(want.map(([p]) => p).sort())
      for (const [p, w] of want) {
        const e = t.get(p)!
        expect(e.type === 'symlink' ? 'symlink' : 'file', p).toBe(w.kind)
        if (w.kind === 'file') expect(sha(e.data), p).toBe(w.sha)
      }
    }
    const whole = await untar(Buffer.from(await (await c.get('/api/archive' + c.q({ at: f.names[1] }))).arrayBuffer()))
    expect([...whole.keys()].every((k) => k.startsWith(`backup-${f.names[1]}/`))).toBe(true)
    const sub = await untar(Buffer.from(await (await c.get('/api/archive?path=docs/sub')).arrayBuffer()))
    expect([...sub.keys()].sort()).toEqual(['sub/c.txt', 'sub/d.txt'])
    // One file: a tar of that file alone, as of `at`; nothing there then is 404.
    const one = await untar(Buffer.from(await (await c.get('/api/archive' + c.q({ path: 'docs/a.txt', at: f.names[0] }))).arrayBuffer()))
    expect([...one].map(([k, v]) => [k, v.data.toString()])).toEqual([['a.txt', 'a version 1\n']])
    expect((await c.get('/api/archive' + c.q({ path: 'docs/b.txt', at: f.names[1] }))).status).toBe(404)
  })

  it('a download stopped by the client closes the stored file it was reading (no descriptor left open)', async () => {
    const g = await engineBackup()
    writeTree(g.src, { 'docs/big.bin': { content: crypto.randomBytes(24 * 1024 * 1024) } })
    await backup(loadConfig(g.config))
    const s2 = await serve(g.dst)
    const openFds = () => fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(g.dst)
      } catch {
        return false
      }
    }).length
    try {
      const c2 = client(s2.origin, s2.token)
      for (const route of ['/api/archive?path=docs', '/api/file?path=docs/big.bin']) {
        const ctl = new AbortController()
        const r = await c2.get(route, { signal: ctl.signal })
        const reader = r.body!.getReader()
        await reader.read()
        expect(openFds(), route).toBeGreaterThan(0) // reading docs/big.bin now
        ctl.abort()
        for (let i = 0; i < 50 && openFds() > 0; i++) await new Promise((ok) => setTimeout(ok, 50))
        expect(openFds(), route).toBe(0)
      }
    } finally {
      await s2.close()
    }
  })

  it('damaged metadata: named by status, increments, history and search; a point after it cannot be shown (ECORRUPT), one before it can', async () => {
    const g = await engineBackup()
    const meta = path.join(g.dst, g.names[1], `${g.names[1]}.json`)
    fs.writeFileSync(meta, fs.readFileSync(meta).subarray(0, 40)) // cut short
    const s2 = await serve(g.dst)
    try {
      const c2 = client(s2.origin, s2.token)
      expect((await c2.json('/api/status')).damaged.map((d: any) => d.increment)).toEqual([g.names[1]])
      expect((await c2.json('/api/increments')).damaged.map((d: any) => d.increment)).toEqual([g.names[1]])
      expect((await c2.json('/api/history?path=docs/a.txt')).skipped).toEqual([g.names[1]])
      expect((await c2.json('/api/search?mask=a.txt')).skipped).toEqual([g.names[1]])
      const later = await c2.get('/api/tree' + c2.q({ at: g.names[2] }))
      expect(later.status).toBe(500)
      const err = (await later.json()).error
      expect(err.code).toBe('ECORRUPT')
      expect(err.message).toContain(g.names[1])
      expect((await c2.get('/api/tree' + c2.q({ at: g.names[0] }))).status).toBe(200)
      expect((await c2.get('/api/tree')).status).toBe(200) // the latest state is the mirror
    } finally {
      await s2.close()
    }
  })

  it('answers from the catalog index: built by the first request; deleted or garbage while serving, rebuilt, the answers unchanged', async () => {
    const g = await engineBackup()
    const index = path.join(g.dst, '.axiomatic', 'index.sqlite')
    expect(fs.existsSync(index)).toBe(false) // a run updates an index, never builds one
    const s2 = await serve(g.dst)
    const isSqlite = () => fs.readFileSync(index).subarray(0, 16).toString('latin1') === 'SQLite format 3\0'
    try {
      const c2 = client(s2.origin, s2.token)
      // Every view the index answers: the timeline, each point's tree and files, a diff, a download, a tar.
      const answers = async () => {
        const trees = []
        for (const at of [...g.names, undefined]) trees.push([...(await walkTree(c2, at))])
        const file = await (await c2.get('/api/file' + c2.q({ path: 'docs/a.txt', at: g.names[0] }))).text()
        const tar = await untar(Buffer.from(await (await c2.get('/api/archive' + c2.q({ path: 'docs', at: g.names[1] }))).arrayBuffer()))
        return {
          timeline: await c2.json('/api/increments'),
          trees,
          diff: await c2.json('/api/diff' + c2.q({ from: g.names[0] })),
          file,
          tar: [...tar].map(([k, v]) => [k, v.type, sha(v.data)]).sort(),
        }
      }
      expect((await c2.get('/api/tree')).status).toBe(200)
      expect(fs.existsSync(index)).toBe(true) // built by that request
      expect(isSqlite()).toBe(true)
      const want = await answers()
      await expectSameAsRestore(c2, g.dst, g.names[1])
      expect(want.file).toBe('a version 1\n')
      expect(want.diff.to).toBe(g.names[2])

      // Garbage in its place while the server runs: the next request notices, rebuilds it, answers the same.
      fs.writeFileSync(index, crypto.randomBytes(64 * 1024))
      expect(await answers()).toEqual(want)
      expect(isSqlite()).toBe(true)
      // Deleted: built again by the next request.
      fs.rmSync(index)
      expect(await answers()).toEqual(want)
      expect(fs.existsSync(index)).toBe(true)
      // Switched off (AXIOMATIC_INDEX=off): the metadata read directly, the same answers; no index written.
      fs.rmSync(index)
      process.env.AXIOMATIC_INDEX = 'off'
      try {
        const off = await answers()
        // Without the index, the timeline has no exclusive bytes (`list` counts them only with --detailed).
        expect(off.timeline.increments.map((i: any) => i.exclusiveBytes)).toEqual(g.names.map(() => null))
        expect({ ...off, timeline: null }).toEqual({ ...want, timeline: null })
        expect(fs.existsSync(index)).toBe(false)
      } finally {
        delete process.env.AXIOMATIC_INDEX
      }
    } finally {
      await s2.close()
    }
  })

  it('a name that is not UTF-8 is listed as the metadata spells it, downloaded by that name, shown as \\xNN in a tar', async () => {
    const g = await engineBackup()
    const raw = Buffer.concat([Buffer.from(path.join(g.src, 'docs') + '/'), Buffer.from([0x66, 0xff, 0x2e, 0x74, 0x78, 0x74])]) // f\xff.txt
    fs.writeFileSync(raw, 'latin-1 name\n')
    await backup(loadConfig(g.config))
    const s2 = await serve(g.dst)
    try {
      const c2 = client(s2.origin, s2.token)
      const e = (await c2.json('/api/tree?path=docs')).entries.find((x: any) => x.name.startsWith('f') && x.name.endsWith('.txt'))
      expect(e.name).toBe('f\u{10FFFF}.txt')
      const r = await c2.get('/api/file' + c2.q({ path: e.path }))
      expect(r.status).toBe(200)
      expect(await r.text()).toBe('latin-1 name\n')
      expect(r.headers.get('content-disposition')).toBe(`attachment; filename="f_xff.txt"; filename*=UTF-8''f%5Cxff.txt`) // as the CLI shows it: f\xff.txt
      const t = await untar(Buffer.from(await (await c2.get('/api/archive?path=docs')).arrayBuffer()))
      expect(t.get('docs/f\\xff.txt')?.data.toString()).toBe('latin-1 name\n')
    } finally {
      await s2.close()
    }
  })

  it('GET /api/history is `backup history --json`', async () => {
    const h = await c.json('/api/history?path=docs/a.txt')
    expect(h).toEqual(JSON.parse(JSON.stringify(await history(f.dst, 'docs/a.txt'))))
    expect(h.versions.map((v: any) => v.sha256)).toEqual(['a version 1\n', 'a version 2, longer\nsecond line\n', 'a version 3\nsecond line\n'].map(sha))
    expect((await c.get('/api/history?path=never/was.txt')).status).toBe(404)
    expect((await c.get('/api/history')).status).toBe(400)
  })

  it('GET /api/search is `backup search --json` with the same filters', async () => {
    const cases: [string, Parameters<typeof search>[1]][] = [
      ['mask=*.txt', { masks: ['*.txt'] }],
      ['mask=A.TXT&ignoreCase=1', { masks: ['A.TXT'], ignoreCase: true }],
      ['mask=a&mask=sea', { masks: ['a', 'sea'] }],
      ['size=>10', { size: '>10' }],
      ['path=docs/sub', { paths: ['docs/sub'] }],
      ['lastBackups=1', { lastBackups: 1 }],
    ]
    for (const [q, opts] of cases) {
      const got = await c.json('/api/search?' + q)
      expect(got, q).toEqual({ ...JSON.parse(JSON.stringify(await search(f.dst, opts))), truncated: false })
    }
    const limited = await c.json('/api/search?mask=*&limit=2')
    expect(limited.hits).toHaveLength(2)
    expect(limited.truncated).toBe(true)
    expect((await c.get('/api/search?size=huge')).status).toBe(400)
    expect((await c.get('/api/search?time=yesterday')).status).toBe(400)
    expect((await c.get('/api/search?lastBackups=0')).status).toBe(400)
  })

  it('GET /api/diff is `backup diff --json`: tracked files added, removed and changed between two points (default: the two newest)', async () => {
    const d = await c.json('/api/diff' + c.q({ from: f.names[0], to: f.names[1] }))
    expect(d).toEqual(JSON.parse(JSON.stringify(await diff(f.dst, { from: f.names[0], to: f.names[1] }))))
    // Untracked files keep no history: plain/u.txt changed in the source, but is not compared.
    expect(d.items.some((i: any) => i.path.startsWith('plain/'))).toBe(false)
    expect(d.from).toBe(f.names[0])
    expect(d.to).toBe(f.names[1])
    expect(paths(d, 'added')).toEqual(['docs/sub/d.txt'])
    expect(paths(d, 'removed')).toEqual(['docs/b.txt'])
    expect(paths(d, 'changed')).toEqual(['docs/a.txt'])
    const a = d.items.find((i: any) => i.path === 'docs/a.txt')
    expect(a).toMatchObject({ status: 'changed', from: { increment: f.names[0], sha256: sha('a version 1\n') }, to: { increment: f.names[1], sha256: sha('a version 2, longer\nsecond line\n') } })
    expect(d).toMatchObject({ added: 1, removed: 1, changed: 1, addedBytes: 4, removedBytes: 4, changedBytes: 32 - 12 })
    const def = await c.json('/api/diff')
    expect([def.from, def.to]).toEqual([f.names[1], f.names[2]])
    expect(await c.json('/api/diff?to=latest')).toEqual(def) // the tracked files of the latest state are the newest increment's
    expect(paths(def, 'added')).toEqual(['docs/b.txt'])
    expect(paths(def, 'removed')).toEqual(['src/main.py'])
    expect(paths(def, 'changed')).toEqual(['docs/a.txt', 'docs/sub/c.txt'])
    const sub = await c.json('/api/diff' + c.q({ from: f.names[0], to: f.names[2], path: 'docs/sub' }))
    expect(paths(sub, 'added')).toEqual(['docs/sub/d.txt'])
    expect(paths(sub, 'changed')).toEqual(['docs/sub/c.txt'])
    expect((await c.get('/api/diff?from=backup_20010101_000000')).status).toBe(404)
    expect((await c.get('/api/diff?to=nonsense')).status).toBe(400)
    // The two restores below include untracked files: the same mirror copy at both points.
    // The diff agrees with two restores.
    const [ra, rb] = [await restored(f.dst, f.names[0]), await restored(f.dst, f.names[2])]
    const all = await c.json('/api/diff' + c.q({ from: f.names[0], to: f.names[2] }))
    expect(paths(all, 'added')).toEqual([...rb.keys()].filter((p) => !ra.has(p)).sort())
    expect(paths(all, 'removed')).toEqual([...ra.keys()].filter((p) => !rb.has(p)).sort())
    expect(paths(all, 'changed')).toEqual([...ra.keys()].filter((p) => rb.has(p) && ra.get(p)!.sha !== rb.get(p)!.sha).sort())
  })

  it('GET /api/sizes gives the tracked bytes at each increment and the mirror now', async () => {
    const z = await c.json('/api/sizes')
    expect(z.points.map((p: any) => p.increment)).toEqual(f.names)
    for (const [i, name] of f.names.entries()) {
      const r = await restore(f.dst, { to: path.join(tmpdir(), 'x'), at: name, dryRun: true })
      const tracked = r.items.filter((it) => !it.untracked)
      expect(z.points[i], name).toMatchObject({ files: tracked.length, bytes: tracked.reduce((s, it) => s + it.size, 0) })
    }
    const latest = await restore(f.dst, { to: path.join(tmpdir(), 'x'), dryRun: true })
    expect(z.mirror).toEqual({ files: latest.files, bytes: latest.bytes })
  })

  it('GET /api/status is `backup status --json` plus whether restore is allowed', async () => {
    const st = await c.json('/api/status')
    expect(st.dst).toBe(f.dst)
    expect(st.increments).toBe(3)
    expect(st.newest).toBe(f.names[2])
    expect(st.lastRun.result).toBe('ok')
    expect(st.serve).toEqual({ allowRestore: false })
  })

  it('POST /api/restore is refused (403) without allowRestore, and other methods are refused', async () => {
    const to = path.join(tmpdir(), 'target')
    const r = await c.get('/api/restore', { method: 'POST', body: JSON.stringify({ to }), headers: { 'content-type': 'application/json' } })
    expect(r.status).toBe(403)
    expect((await r.json()).error.code).toBe('ERESTOREDISABLED')
    expect(fs.existsSync(to)).toBe(false)
    expect((await c.get('/api/tree', { method: 'DELETE' })).status).toBe(405)
  })

  it('with allowRestore, POST /api/restore restores as `backup restore` does, with its checks', async () => {
    const s2 = await serve(f.dst, { allowRestore: true })
    try {
      const c2 = client(s2.origin, s2.token)
      const post = (body: unknown, headers: Record<string, string> = {}) =>
        c2.get('/api/restore', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } })
      const to = path.join(tmpdir(), 'target')
      const r = await post({ to, at: f.names[0], paths: ['docs'] })
      expect(r.status).toBe(200)
      const res = await r.json()
      expect(res.at).toBe(f.names[0])
      const want = [...(await restored(f.dst, f.names[0]))].filter(([p]) => p.startsWith('docs/'))
      const got = listTree(to)
      expect([...got.keys()].sort()).toEqual(want.map(([p]) => p).sort())
      for (const [p, w] of want) expect(got.get(p)!.sha, p).toBe(w.sha)
      // Existing files are kept unless overwrite.
      const again = await (await post({ to, at: f.names[2], paths: ['docs/a.txt'] })).json()
      expect(again.existing).toBe(1)
      expect(fs.readFileSync(path.join(to, 'docs/a.txt'), 'utf8')).toBe('a version 1\n')
      // Its checks: inside the backup folder, relative, "..", bad JSON, another origin.
      expect((await post({ to: path.join(f.dst, 'x') })).status).toBe(400)
      expect((await post({ to: 'relative/dir' })).status).toBe(400)
      expect((await post({ to, paths: ['../etc'] })).status).toBe(400)
      expect((await post({ to, at: 'backup_20010101_000000' })).status).toBe(404)
      expect((await c2.get('/api/restore', { method: 'POST', body: '{', headers: { 'content-type': 'application/json' } })).status).toBe(400)
      expect((await c2.get('/api/restore', { method: 'POST', body: '{}', headers: { 'content-type': 'text/plain' } })).status).toBe(415)
      expect((await post({ to: path.join(tmpdir(), 't2') }, { origin: 'http://evil.example' })).status).toBe(403)
      expect((await c2.json('/api/status')).serve).toEqual({ allowRestore: true })
    } finally {
      await s2.close()
    }
  })
})

/** A GET with the request target sent as is (fetch would normalize `..`). */
function rawGet(origin: string, target: string, token: string): Promise<{ status: number; text: string }> {
  const u = new URL(origin)
  return new Promise((ok, fail) => {
    const sock = require('node:net').connect(Number(u.port), u.hostname, () => {
      sock.write(`GET ${target} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`)
    })
    const chunks: Buffer[] = []
    sock.on('data', (d: Buffer) => chunks.push(d))
    sock.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      ok({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0), text })
    })
    sock.on('error', fail)
  })
}

/** Starts `backup serve` as the CLI does; resolves to its URL once it prints it. */
function startCli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const url = new Promise<string>((ok, fail) => {
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      if (out.startsWith('http') && out.includes('\n')) ok(out.split('\n')[0])
      else if (out.startsWith('{') && out.trimEnd().endsWith('}')) ok(out)
    })
    child.on('exit', (code) => fail(new Error(`serve exited ${code}: ${stderr}`)))
  })
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)))
  return { child, url, exited, stderr: () => stderr }
}

describe('backup serve, the command', () => {
  it('prints the URL on stdout, serves until SIGTERM, then exits 0; another --host warns', async () => {
    const f = await engineBackup()
    const p = startCli(['--dst', f.dst])
    const url = await p.url
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{64}$/)
    const u = new URL(url)
    const c = client(u.origin, u.searchParams.get('token')!)
    expect((await c.json('/api/increments')).increments).toHaveLength(3)
    expect((await fetch(u.origin + '/api/increments')).status).toBe(401)
    p.child.kill('SIGTERM')
    expect(await p.exited).toBe(0)

    const q = startCli(['--dst', f.dst, '--host', '0.0.0.0', '--json'])
    const first = JSON.parse(await q.url)
    expect(first.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+\/\?token=/)
    expect(q.stderr()).toMatch(/warning: serving on 0\.0\.0\.0: other machines can reach this server/)
    const port = new URL(first.url).port
    expect((await fetch(`http://127.0.0.1:${port}/api/status`)).status).toBe(401)
    expect((await fetch(`http://127.0.0.1:${port}/api/status`, { headers: { authorization: `Bearer ${first.token}` } })).status).toBe(200)
    q.child.kill('SIGINT')
    expect(await q.exited).toBe(0)
  })

  it('--help shows the options and examples; a bad port is a usage error (64)', () => {
    const h = spawnSync(process.execPath, [BIN, 'serve', '--help'], { encoding: 'utf8' })
    expect(h.stdout).toContain('--allow-restore')
    expect(h.stdout).toContain('backup serve --dst /media/usb/backup')
    const bad = spawnSync(process.execPath, [BIN, 'serve', '--dst', '/tmp', '--port', '70000'], { encoding: 'utf8' })
    expect(bad.status).toBe(64)
  })

  it('a port in use is exit 2 with the reason', async () => {
    const f = await engineBackup()
    const s = await serve(f.dst)
    try {
      const port = new URL(s.origin).port
      const r = spawnSync(process.execPath, [BIN, 'serve', '--dst', f.dst, '--port', port], { encoding: 'utf8', timeout: 20_000 })
      expect(r.status).toBe(2)
      expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${port}: the port is in use`)
      expect(r.stdout).toBe('')
    } finally {
      await s.close()
    }
  })
})

describe.skipIf(needs('backup.py format fixtures', ['python3']))('backup serve on a backup folder made by backup.py', () => {
  it('every view answers as the CLI does: points in time as restore --at, history, search, diff, downloads', async () => {
    const f = originalFolder()
    const env = { TZ }
    const p = startCli(['--dst', f.dst], env)
    const u = new URL(await p.url)
    const c = client(u.origin, u.searchParams.get('token')!)
    const cliJson = (args: string[]) => JSON.parse(spawnSync(process.execPath, [BIN, ...args, '--json'], { encoding: 'utf8', env: { ...process.env, TZ } }).stdout)
    try {
      const list = await c.json('/api/increments')
      const cliList = cliJson(['list', '--dst', f.dst])
      const noExcl = (l: any) => ({ ...l, increments: l.increments.map(({ exclusiveBytes, ...i }: any) => i) })
      expect(noExcl(list)).toEqual(noExcl(cliList))
      expect(list.increments.every((i: any) => typeof i.exclusiveBytes === 'number')).toBe(true)
      const names: string[] = list.increments.map((i: any) => i.name)
      expect([...names].sort()).toEqual([...f.names].sort())
      const restoreAt = (at?: string) => {
        const to = path.join(tmpdir('orig-restored-'), 'out')
        const r = spawnSync(process.execPath, [BIN, 'restore', '--dst', f.dst, '--to', to, ...(at ? ['--at', at] : [])], { encoding: 'utf8', env: { ...process.env, TZ } })
        expect(r.status, r.stderr).not.toBe(2)
        return new Map([...listTree(to)].map(([k, i]) => [k, { kind: i.kind, sha: i.sha, size: i.size }]))
      }
      const points = new Map<string | undefined, Map<string, { kind: string; sha: string; size: number }>>()
      for (const at of [...names, undefined]) {
        points.set(at, restoreAt(at))
        await expectSameAsRestore(c, f.dst, at, points.get(at))
      }
      expect(await c.json('/api/history?path=docs/a.txt')).toEqual(cliJson(['history', 'docs/a.txt', '--dst', f.dst]))
      expect(await c.json('/api/search?mask=*.txt')).toEqual({ ...cliJson(['search', '--dst', f.dst, '--mask', '*.txt']), truncated: false })
      const aAt0 = (await c.json('/api/tree' + c.q({ path: 'docs', at: names[0] }))).entries.find((e: any) => e.name === 'a.txt')
      expect(aAt0).toMatchObject({ size: 12, sha256: null, warning: 'overwritten-version' }) // backup.py rewrote it in place
      const [a, b] = [points.get(names[0])!, points.get(names[2])!]
      const d = await c.json('/api/diff' + c.q({ from: names[0], to: names[2] }))
      expect(paths(d, 'added')).toEqual([...b.keys()].filter((k) => !a.has(k)).sort())
      expect(paths(d, 'removed')).toEqual([...a.keys()].filter((k) => !b.has(k)).sort())
      const t = await untar(Buffer.from(await (await c.get('/api/archive?path=docs')).arrayBuffer()))
      for (const [k, w] of points.get(undefined)!) if (k.startsWith('docs/')) expect(sha(t.get(k)!.data), k).toBe(w.sha)
      const st = await c.json('/api/status')
      expect(st.state.original).toBe(true)
      const z = await c.json('/api/sizes')
      expect(z.points.map((x: any) => x.increment)).toEqual(names)

      // Adopted by `backup run` (and one more change): the original's increments and ours, every point as restore --at.
      const run = () => spawnSync(process.execPath, [BIN, 'run', '-c', f.config, '-q'], { encoding: 'utf8', env: { ...process.env, TZ } })
      const adopted = run()
      expect(adopted.status, adopted.stderr).toBe(0)
      writeTree(f.src, { 'docs/e.txt': 'a new file after adoption\n', 'docs/c.txt': 'sea, changed after adoption\n' })
      const more = run()
      expect(more.status, more.stderr).toBe(0)
      const after: string[] = (await c.json('/api/increments')).increments.map((i: any) => i.name)
      expect(after.length).toBeGreaterThan(names.length)
      expect(after.slice(0, names.length)).toEqual(names)
      for (const at of [...after, undefined]) await expectSameAsRestore(c, f.dst, at, restoreAt(at))
      const d2 = await c.json('/api/diff')
      expect(paths(d2, 'added')).toContain('docs/e.txt')
      expect(paths(d2, 'changed')).toContain('docs/c.txt')
      expect((await c.json('/api/history?path=docs/c.txt')).versions.at(-1).sha256).toBe(sha('sea, changed after adoption\n'))
    } finally {
      p.child.kill('SIGTERM')
      await p.exited
    }
  })
})

describe("the page's line diff (ui/diff.js)", () => {
  /** The longest common subsequence's length, by the textbook table. */
  const lcs = (a: string[], b: string[]) => {
    const t = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0))
    for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) t[i][j] = a[i - 1] === b[j - 1] ? t[i - 1][j - 1] + 1 : Math.max(t[i - 1][j], t[i][j - 1])
    return t[a.length][b.length]
  }
  it('rebuilds both versions, keeps a longest common subsequence, and pairs every line once side by side', () => {
    const lines = fc.array(fc.constantFrom('a', 'b', 'c', 'd', ''), { maxLength: 30 })
    fc.assert(
      fc.property(lines, lines, (a, b) => {
        const ops = lineDiff(a, b)!
        expect(ops.flatMap((o) => (o.op === 'add' ? [] : [o.a]))).toEqual(a)
        expect(ops.flatMap((o) => (o.op === 'del' ? [] : [o.b]))).toEqual(b)
        expect(ops.filter((o) => o.op === 'same').length).toBe(lcs(a, b))
        const rows = sideBySide(ops)
        expect(rows.flatMap((r) => (r.left === undefined ? [] : [r.left]))).toEqual(a)
        expect(rows.flatMap((r) => (r.right === undefined ? [] : [r.right]))).toEqual(b)
      }),
      { numRuns: 300 },
    )
  })
  it('gives up (null) above its size limit instead of freezing the page', () => {
    const a = Array.from({ length: 3000 }, (_, i) => `a${i}`)
    const b = Array.from({ length: 3000 }, (_, i) => `b${i}`)
    expect(lineDiff(a, b)).toBeNull()
    expect(lineDiff([...a, 'x'], [...a, 'y'])).toHaveLength(3002) // the common head is cheap
  })
})
