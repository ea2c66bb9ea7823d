/**
 * File metadata beyond content and mtime: setuid/setgid bits with a foreign
 * owner (the chown must come before the chmod, or Linux clears the bits),
 * hard links, extended attributes and POSIX ACLs. Runs as root.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { afterAll, describe, expect, it } from 'vitest'

import { backup, loadConfig, restore } from '../js'
import { BIN, bump, cli, listTree, readMeta, tmpdir, workspace, writeConfig, writeTree, mountExfat } from './helpers'
import {
  expectHistoryUnchanged,
  expectIncrementsMatchMetadata,
  expectMirrorEqualsSource,
  linkGroups,
  snapshotHistory,
  xattrsOf,
} from './invariants'
import { needs } from './tools'

const cleanups: (() => void)[] = []
afterAll(() => {
  for (const c of cleanups.reverse()) c()
})


function setfattr(p: string, name: string, value: string) {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, p])
}

function getfattr(p: string, name: string): string | null {
  const r = spawnSync('getfattr', ['-h', '--only-values', '-n', name, p], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout : null
}

function getfacl(p: string): string {
  return execFileSync('getfacl', ['--omit-header', '--numeric', '--absolute-names', p], { encoding: 'utf8' })
}

const hex = (s: string) => Buffer.from(s).toString('hex')

/** The mirror state's entries, by path. */
function readState(dst: string): Map<string, { mode: number; l?: string; x?: string; c?: number }> {
  const lines = fs.readFileSync(path.join(dst, '.axiomatic/state.jsonl'), 'utf8').trim().split('\n').slice(1)
  return new Map(lines.map((l) => JSON.parse(l)).map((e) => [e.p, e]))
}

const NOBODY = 65534

describe('file metadata', () => {
  it('setuid/setgid bits survive the owner change: mirror, increment, state and restore keep them', async () => {
    const w = workspace(
      {
        'bin/suid': { content: '#!/bin/sh\necho suid\n', mode: 0o4755 },
        'bin/sgid': { content: '#!/bin/sh\necho sgid\n', mode: 0o2755 },
        'bin/both': { content: 'both', mode: 0o6750 },
      },
      { track_dirs: ['bin'] },
    )
    const files = ['bin/suid', 'bin/sgid', 'bin/both']
    const want: Record<string, number> = { 'bin/suid': 0o4755, 'bin/sgid': 0o2755, 'bin/both': 0o6750 }
    for (const f of files) {
      // chown clears the bits on the source too: owner first, then the mode.
      fs.chownSync(path.join(w.src, f), NOBODY, NOBODY)
      fs.chmodSync(path.join(w.src, f), want[f])
      expect(fs.statSync(path.join(w.src, f)).mode & 0o7777).toBe(want[f])
    }
    const cfg = loadConfig(w.config)
    const s1 = await backup(cfg)
    expect(s1.warnings).toEqual([])
    expectMirrorEqualsSource(cfg)
    const check = (inc: string) => {
      const state = readState(w.dst)
      for (const f of files) {
        const m = fs.statSync(path.join(w.dst, 'mirror', f))
        const t = fs.statSync(path.join(w.dst, inc, 'track', f))
        expect({ f, mode: m.mode & 0o7777, uid: m.uid, gid: m.gid }).toEqual({ f, mode: want[f], uid: NOBODY, gid: NOBODY })
        expect({ f, mode: t.mode & 0o7777 }).toEqual({ f, mode: want[f] })
        expect({ f, state: state.get(f)!.mode }).toEqual({ f, state: m.mode & 0o7777 })
      }
    }
    check(s1.increment!)
    // A later version keeps them too.
    fs.appendFileSync(path.join(w.src, 'bin/suid'), '# v2\n')
    bump(path.join(w.src, 'bin/suid'))
    fs.chmodSync(path.join(w.src, 'bin/suid'), 0o4755) // writing as root keeps the bits, but be explicit
    const s2 = await backup(cfg)
    expect(s2).toMatchObject({ changed: 1, warnings: [] })
    expect(fs.statSync(path.join(w.dst, s2.increment!, 'track/bin/suid')).mode & 0o7777).toBe(0o4755)
    // Nothing looks changed to the next run (the state matches the files).
    expect(await backup(cfg)).toMatchObject({ increment: null, changed: 0, mirrorUpdated: 0 })
    expectIncrementsMatchMetadata(w.dst)

    for (const at of [undefined, s1.increment!]) {
      const to = tmpdir('restore-')
      const r = await restore(w.dst, { to, at })
      expect(r.warnings).toEqual([])
      for (const f of files) {
        const st = fs.statSync(path.join(to, f))
        expect({ at, f, mode: st.mode & 0o7777, uid: st.uid }).toEqual({ at, f, mode: want[f], uid: NOBODY })
      }
    }
  })

  it('hard-linked source files share one inode in the mirror and the increment, and come back linked on restore', async () => {
    const w = workspace({ 't/a.txt': 'shared content', 't/z.txt': 'alone', 'plain/d.txt': 'untracked shared' }, { track_dirs: ['t'], include_dirs: ['plain'] })
    fs.mkdirSync(path.join(w.src, 't/sub'))
    fs.linkSync(path.join(w.src, 't/a.txt'), path.join(w.src, 't/b.txt'))
    fs.linkSync(path.join(w.src, 't/a.txt'), path.join(w.src, 't/sub/c.txt'))
    fs.linkSync(path.join(w.src, 'plain/d.txt'), path.join(w.src, 'plain/e.txt'))
    const cfg = loadConfig(w.config)
    const s1 = await backup(cfg)
    expect(s1).toMatchObject({ new: 4, mirrorUpdated: 2, warnings: [] })
    // Only the first path of each group is copied.
    expect(s1.bytesCopied).toBe('shared content'.length + 'alone'.length + 'untracked shared'.length)
    expectMirrorEqualsSource(cfg)
    expectIncrementsMatchMetadata(w.dst)
    const ino = (p: string) => fs.statSync(path.join(w.dst, p)).ino
    expect(ino('mirror/t/b.txt')).toBe(ino('mirror/t/a.txt'))
    expect(ino('mirror/t/sub/c.txt')).toBe(ino('mirror/t/a.txt'))
    expect(ino('mirror/plain/e.txt')).toBe(ino('mirror/plain/d.txt'))
    expect(ino(`${s1.increment}/track/t/b.txt`)).toBe(ino('mirror/t/a.txt'))
    const state = readState(w.dst)
    expect(state.get('t/b.txt')!.l).toBe('t/a.txt')
    expect(state.get('t/sub/c.txt')!.l).toBe('t/a.txt')
    expect(state.get('plain/e.txt')!.l).toBe('plain/d.txt')
    expect(state.get('t/a.txt')!.l).toBeUndefined()
    const cat1 = readMeta(w.dst, s1.increment!).file_catalog
    expect(cat1['t/b.txt']).toMatchObject({ link: 't/a.txt', op: 'new' })
    expect(cat1['t/a.txt']).not.toHaveProperty('link')
    expect(await backup(cfg)).toMatchObject({ increment: null, changed: 0, mirrorUpdated: 0 })

    // Written in place: the whole group is a new version, still one inode (a new one).
    const history = snapshotHistory(w.dst)
    fs.writeFileSync(path.join(w.src, 't/b.txt'), 'shared content v2')
    const s2 = await backup(cfg)
    expect(s2).toMatchObject({ changed: 3, warnings: [] })
    expect(ino('mirror/t/b.txt')).toBe(ino('mirror/t/a.txt'))
    expect(ino('mirror/t/sub/c.txt')).toBe(ino('mirror/t/a.txt'))
    expect(ino(`${s1.increment}/track/t/a.txt`)).not.toBe(ino('mirror/t/a.txt'))
    expectHistoryUnchanged(history, w.dst)
    expectMirrorEqualsSource(cfg)

    // The link broken (b replaced by a copy with the same content and mtime): b is recorded on its own.
    const st = fs.statSync(path.join(w.src, 't/b.txt'))
    fs.rmSync(path.join(w.src, 't/b.txt'))
    fs.writeFileSync(path.join(w.src, 't/b.txt'), 'shared content v2')
    fs.utimesSync(path.join(w.src, 't/b.txt'), st.atime, st.mtime)
    const s3 = await backup(cfg)
    expect(s3).toMatchObject({ changed: 1, warnings: [] })
    expect(Object.keys(readMeta(w.dst, s3.increment!).file_catalog)).toEqual(['t/b.txt'])
    expect(ino('mirror/t/b.txt')).not.toBe(ino('mirror/t/a.txt'))
    expectMirrorEqualsSource(cfg)
    expectIncrementsMatchMetadata(w.dst)

    // Restores: the latest (a, c linked; b alone; d, e linked) and the first point in time (a, b, c linked).
    const latest = tmpdir('restore-')
    expect((await restore(w.dst, { to: latest })).warnings).toEqual([])
    expect(linkGroups(listTree(latest))).toEqual({ 't/sub/c.txt': 't/a.txt', 'plain/e.txt': 'plain/d.txt' })
    expect(fs.readFileSync(path.join(latest, 't/sub/c.txt'), 'utf8')).toBe('shared content v2')
    const first = tmpdir('restore-')
    expect((await restore(w.dst, { to: first, at: s1.increment! })).warnings).toEqual([])
    expect(linkGroups(listTree(first))).toEqual({ 't/b.txt': 't/a.txt', 't/sub/c.txt': 't/a.txt', 'plain/e.txt': 'plain/d.txt' })
    expect(fs.readFileSync(path.join(first, 't/b.txt'), 'utf8')).toBe('shared content')

    // The first path deleted: the rest of the group is linked to the new first path.
    fs.linkSync(path.join(w.src, 't/a.txt'), path.join(w.src, 't/b2.txt'))
    fs.rmSync(path.join(w.src, 't/a.txt'))
    const s4 = await backup(cfg)
    expect(s4.warnings).toEqual([])
    expect(ino('mirror/t/sub/c.txt')).toBe(ino('mirror/t/b2.txt'))
    expectMirrorEqualsSource(cfg)
    expectIncrementsMatchMetadata(w.dst)
    expect(await backup(cfg)).toMatchObject({ increment: null, changed: 0, mirrorUpdated: 0 })
  })

  it('xattrs and ACLs are kept in the mirror, recorded in the metadata and restored; changing only an xattr is a change', async () => {
    const w = workspace({ 't/x.txt': 'x', 't/none.txt': 'n', 'plain/y.txt': 'y' }, { track_dirs: ['t'], include_dirs: ['plain'] })
    const x = path.join(w.src, 't/x.txt')
    setfattr(x, 'user.foo', 'bar')
    execFileSync('setfacl', ['-m', 'u:1000:r', x])
    setfattr(x, 'trusted.t', 'root only') // kept as root
    setfattr(path.join(w.src, 'plain/y.txt'), 'user.k', 'v')
    setfattr(path.join(w.src, 't'), 'user.folder', 'not kept') // folders: out of scope
    const cfg = loadConfig(w.config)
    const s1 = await backup(cfg)
    expect(s1).toMatchObject({ new: 2, mirrorUpdated: 1, warnings: [] })
    expectMirrorEqualsSource(cfg)
    const mx = path.join(w.dst, 'mirror/t/x.txt')
    expect(getfattr(mx, 'user.foo')).toBe('bar')
    expect(getfattr(mx, 'trusted.t')).toBe('root only')
    expect(getfacl(mx)).toContain('user:1000:r--')
    expect(getfattr(path.join(w.dst, 'mirror/plain/y.txt'), 'user.k')).toBe('v')
    const cat = readMeta(w.dst, s1.increment!).file_catalog
    expect(cat['t/x.txt'].xattrs).toMatchObject({ 'user.foo': hex('bar') })
    expect(cat['t/x.txt'].xattrs).toHaveProperty(['system.posix_acl_access'])
    expect(cat['t/none.txt']).not.toHaveProperty('xattrs')
    const state = readState(w.dst)
    expect(state.get('t/x.txt')!.x).toMatch(/^[0-9a-f]{64}$/)
    expect(state.get('plain/y.txt')!.x).toMatch(/^[0-9a-f]{64}$/)
    expect(state.get('t/none.txt')!.x).toBeUndefined()
    expect(await backup(cfg)).toMatchObject({ increment: null, changed: 0, mirrorUpdated: 0 })

    // Only an xattr changes (content and mtime do not): a new version; the old one keeps its xattr.
    const history = snapshotHistory(w.dst)
    const before = fs.statSync(x).mtimeMs
    setfattr(x, 'user.foo', 'baz')
    expect(fs.statSync(x).mtimeMs).toBe(before)
    const s2 = await backup(cfg)
    expect(s2).toMatchObject({ changed: 1, warnings: [] })
    expect(readMeta(w.dst, s2.increment!).file_catalog['t/x.txt'].xattrs).toMatchObject({ 'user.foo': hex('baz') })
    expect(getfattr(path.join(w.dst, s1.increment!, 'track/t/x.txt'), 'user.foo')).toBe('bar')
    expect(getfattr(mx, 'user.foo')).toBe('baz')
    expectHistoryUnchanged(history, w.dst)
    expectMirrorEqualsSource(cfg)
    // An untracked file's xattr removed: the mirror follows.
    execFileSync('setfattr', ['-x', 'user.k', path.join(w.src, 'plain/y.txt')])
    expect(await backup(cfg)).toMatchObject({ mirrorUpdated: 1, warnings: [] })
    expect(getfattr(path.join(w.dst, 'mirror/plain/y.txt'), 'user.k')).toBeNull()
    expectMirrorEqualsSource(cfg)

    const latest = tmpdir('restore-')
    expect((await restore(w.dst, { to: latest })).warnings).toEqual([])
    expect(getfattr(path.join(latest, 't/x.txt'), 'user.foo')).toBe('baz')
    expect(getfattr(path.join(latest, 't/x.txt'), 'trusted.t')).toBe('root only')
    expect(getfacl(path.join(latest, 't/x.txt'))).toContain('user:1000:r--')
    expect(xattrsOf(latest).get('t/x.txt')).toEqual(xattrsOf(w.src).get('t/x.txt'))
    const first = tmpdir('restore-')
    expect((await restore(w.dst, { to: first, at: s1.increment! })).warnings).toEqual([])
    expect(getfattr(path.join(first, 't/x.txt'), 'user.foo')).toBe('bar')
    expect(getfacl(path.join(first, 't/x.txt'))).toContain('user:1000:r--')
  })

  it.skipIf(needs('the xattr listing of a no-change run', ['setfattr', 'strace']))(
    'a no-change run does not list the xattrs of files that had none and have not changed since (ctime stamp); xattr changes still are changes',
    async () => {
      const w = workspace({ 't/a.txt': 'a', 't/b.txt': 'b', 'plain/c.txt': 'c' }, { track_dirs: ['t'], include_dirs: ['plain'] })
      const cfg = loadConfig(w.config)
      const a = path.join(w.src, 't/a.txt')
      /** The source files whose xattrs one `backup run` lists (traced), sorted. */
      const listed = (): string[] => {
        const log = path.join(tmpdir('strace-'), 'log')
        const r = spawnSync('strace', ['-f', '-e', 'trace=listxattr,llistxattr,flistxattr', '-o', log, process.execPath, BIN, 'run', '-q', '-c', w.config], {
          encoding: 'utf8',
        })
        expect(r.status, r.stderr).toBe(0)
        const paths = fs
          .readFileSync(log, 'utf8')
          .split('\n')
          .map((l) => /xattr\("([^"]*)"/.exec(l)?.[1])
          .filter((p): p is string => !!p && p.startsWith(w.src + '/'))
        return [...new Set(paths.map((p) => path.relative(w.src, p)))].sort()
      }
      // Older than the kernel clock's racy window (2 s; a file changed within it gets no stamp, see
      // the core's `scan::tests`): the first run records the stamps of the files without xattrs…
      await new Promise((r) => setTimeout(r, 2100))
      expect(await backup(cfg)).toMatchObject({ new: 2, mirrorUpdated: 1 })
      const stamps = readState(w.dst)
      for (const f of ['t/a.txt', 't/b.txt', 'plain/c.txt']) expect(stamps.get(f)!.c).toEqual(expect.any(Number))
      // …and a no-change run lists none of them.
      expect(listed()).toEqual([])

      // An xattr added (only ctime moves): still a change, and the file has no stamp while it has xattrs.
      setfattr(a, 'user.tag', 'one')
      const s1 = await backup(cfg)
      expect(s1).toMatchObject({ changed: 1, warnings: [] })
      expect(readMeta(w.dst, s1.increment!).file_catalog['t/a.txt'].xattrs).toEqual({ 'user.tag': hex('one') })
      expect(readState(w.dst).get('t/a.txt')!.c).toBeUndefined()
      expect(readState(w.dst).get('t/b.txt')!.c).toBe(stamps.get('t/b.txt')!.c)
      expect(listed()).toEqual(['t/a.txt'])
      // Removed again: a change back to none.
      execFileSync('setfattr', ['-x', 'user.tag', a])
      const s2 = await backup(cfg)
      expect(s2).toMatchObject({ changed: 1, warnings: [] })
      expect(readMeta(w.dst, s2.increment!).file_catalog['t/a.txt']).not.toHaveProperty('xattrs')
      expect(getfattr(path.join(w.dst, 'mirror/t/a.txt'), 'user.tag')).toBeNull()
      // The stamped files' xattrs appear with nothing else changed: seen on the next run (their ctime moved).
      setfattr(path.join(w.src, 't/b.txt'), 'user.late', 'x')
      setfattr(path.join(w.src, 'plain/c.txt'), 'user.late', 'y')
      const s3 = await backup(cfg)
      expect(s3).toMatchObject({ changed: 1, mirrorUpdated: 1, warnings: [] })
      expect(getfattr(path.join(w.dst, 'mirror/plain/c.txt'), 'user.late')).toBe('y')
      expectMirrorEqualsSource(cfg)
    },
  )

  it('a target without xattrs or hard links (exFAT): one warning each per run, not per file; nothing is copied again', async () => {
    const mnt = mountExfat(cleanups)
    const dir = tmpdir()
    const src = path.join(dir, 'src')
    writeTree(src, { 'proj/a.txt': 'a', 'proj/b.txt': 'b', 'proj/c.txt': 'c', 'docs/d.txt': 'd' })
    for (const f of ['proj/a.txt', 'proj/b.txt', 'proj/c.txt', 'docs/d.txt']) setfattr(path.join(src, f), 'user.tag', f)
    fs.linkSync(path.join(src, 'proj/a.txt'), path.join(src, 'proj/a-link.txt'))
    const dst = path.join(mnt, 'backup')
    const config = writeConfig(dir, { src, dst, track_dirs: ['proj'], include_dirs: ['docs'] })
    const r1 = cli(['run', '--json', '-c', config])
    expect(r1.status, r1.stderr).toBe(1)
    const j1 = JSON.parse(r1.stdout)
    expect(j1).toMatchObject({ new: 4, mirrorUpdated: 1 })
    expect(j1.warnings.map((x: { path: string; code: string }) => [x.path, x.code])).toEqual([
      ['', 'target-no-xattrs'],
      ['', 'target-no-hardlinks'],
    ])
    expect(j1.warnings[0].message).toMatch(/^5 selected files have extended attributes/)
    const mirror = listTree(path.join(dst, 'mirror'))
    expect([...mirror.keys()].sort()).toEqual(['docs/d.txt', 'proj/a-link.txt', 'proj/a.txt', 'proj/b.txt', 'proj/c.txt'])
    expect(mirror.get('proj/a-link.txt')!.sha).toBe(mirror.get('proj/a.txt')!.sha)
    // The state does not claim what the target cannot hold, so the next run copies nothing again.
    const r2 = cli(['run', '--json', '-c', config])
    const j2 = JSON.parse(r2.stdout)
    expect(j2).toMatchObject({ increment: null, changed: 0, mirrorUpdated: 0, bytesCopied: 0 })
    expect(j2.warnings.map((x: { code: string }) => x.code)).toEqual(['target-no-xattrs', 'target-no-hardlinks'])
  })

  it('SIGKILL at every step of runs with hard links and xattrs: the next run finishes with links and xattrs intact', async () => {
    for (const phase of ['first', 'incremental'] as const) {
      const base = workspace({ 't/a.txt': 'group', 't/x.txt': 'x', 't/y.txt': 'y', 'p/u.txt': 'untracked' }, { track_dirs: ['t'], include_dirs: ['p'] })
      fs.linkSync(path.join(base.src, 't/a.txt'), path.join(base.src, 't/b.txt'))
      fs.linkSync(path.join(base.src, 'p/u.txt'), path.join(base.src, 'p/v.txt'))
      setfattr(path.join(base.src, 't/x.txt'), 'user.one', '1')
      setfattr(path.join(base.src, 'p/u.txt'), 'user.two', '2')
      if (phase === 'incremental') {
        expect(cli(['run', '-c', base.config]).status).toBe(0)
        fs.writeFileSync(path.join(base.src, 't/a.txt'), 'group v2') // in place: the whole group
        setfattr(path.join(base.src, 't/x.txt'), 'user.one', 'changed')
        setfattr(path.join(base.src, 't/y.txt'), 'user.new', 'n')
        fs.linkSync(path.join(base.src, 't/a.txt'), path.join(base.src, 't/c.txt'))
      }
      let completedAt = 0
      for (let n = 1; n < 200; n++) {
        await new Promise((r) => setImmediate(r)) // let the test runner's messages through
        const dir = tmpdir('crash-meta-')
        fs.rmSync(dir, { recursive: true })
        execFileSync('cp', ['-a', base.dir, dir]) // keeps hard links and xattrs
        // The copy's src is another path: let it adopt it (see the source record).
        fs.rmSync(path.join(dir, 'dst/.axiomatic/source.json'), { force: true })
        const before = snapshotHistory(path.join(dir, 'dst'))
        const killed = cli(['run', '-c', path.join(dir, 'config.json')], { env: { AXIOMATIC_FAULT_AFTER_OPS: String(n) } })
        const again = cli(['run', '--json', '-c', path.join(dir, 'config.json')])
        expect({ n, status: again.status, stderr: again.stderr }).toEqual({ n, status: 0, stderr: '' })
        const cfg = loadConfig(path.join(dir, 'config.json'))
        expectMirrorEqualsSource(cfg)
        expectIncrementsMatchMetadata(cfg.dst)
        expectHistoryUnchanged(before, cfg.dst)
        // The state agrees with the files: nothing left to do.
        const third = JSON.parse(cli(['run', '--json', '-c', path.join(dir, 'config.json')]).stdout)
        expect({ n, ...third }).toMatchObject({ n, increment: null, changed: 0, new: 0, mirrorUpdated: 0 })
        fs.rmSync(dir, { recursive: true })
        if (killed.signal !== 'SIGKILL') {
          expect(killed.status).toBe(0)
          completedAt = n
          break
        }
      }
      expect(completedAt).toBeGreaterThan(5)
    }
  }, 300_000)

  it('as a non-root user: security.* xattrs, which only root can set, are reported once per run, user.* ones kept', () => {
    const w = workspace({ 't/a.txt': 'a', 't/b.txt': 'b', 't/c.txt': 'c' }, { track_dirs: ['t'] })
    for (const f of ['t/a.txt', 't/b.txt']) setfattr(path.join(w.src, f), 'security.test', 'label')
    setfattr(path.join(w.src, 't/a.txt'), 'user.keep', 'yes')
    fs.chmodSync(w.dir, 0o755)
    execFileSync('chown', ['-R', 'nobody:nogroup', w.dir])
    const base = path.dirname(w.dir)
    fs.chmodSync(base, 0o755)
    // The checkout may not be readable by `nobody`: run a copy of the package.
    const pkg = path.join(base, `pkg-meta-${process.pid}`)
    if (!fs.existsSync(pkg)) {
      const root = path.join(__dirname, '..')
      for (const p of ['package.json', 'binding.js', 'bin', 'dist', 'node_modules/clipanion', 'node_modules/typanion', 'node_modules/diff', ...fs.readdirSync(root).filter((f) => f.endsWith('.node'))])
        fs.cpSync(path.join(root, p), path.join(pkg, p), { recursive: true })
      execFileSync('chmod', ['-R', 'a+rX', pkg])
    }
    const run = () =>
      spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.join(pkg, 'bin', 'backup.js'), 'run', '--json', '-c', w.config], {
        encoding: 'utf8',
      })
    const r1 = run()
    expect(r1.status, r1.stderr).toBe(1)
    const j1 = JSON.parse(r1.stdout)
    expect(j1.new).toBe(3)
    expect(j1.warnings.map((x: { path: string; code: string }) => [x.path, x.code])).toEqual([['', 'xattrs-need-root']])
    expect(j1.warnings[0].message).toMatch(/^2 selected files have security\.\* or trusted\.\*/)
    expect(getfattr(path.join(w.dst, 'mirror/t/a.txt'), 'user.keep')).toBe('yes')
    expect(getfattr(path.join(w.dst, 'mirror/t/a.txt'), 'security.test')).toBeNull()
    const j2 = JSON.parse(run().stdout)
    expect(j2).toMatchObject({ increment: null, changed: 0, bytesCopied: 0 })
    expect(j2.warnings.map((x: { code: string }) => x.code)).toEqual(['xattrs-need-root'])
  })
})
