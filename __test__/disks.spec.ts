/**
 * Real-disk behaviour: exFAT (no hardlinks, coarse mtimes) through a real
 * exFAT image mounted with FUSE, the link limit (EMLINK) on ext4, permission
 * problems as a non-root user, files changing while they are copied.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { afterAll, describe, expect, it } from 'vitest'

import { acquireLock, backup, loadConfig } from '../js'
import { bump, cli, listTree, readMeta, tmpdir, workspace, writeConfig, writeTree, mountExfat } from './helpers'
import { needs } from './tools'
import { expectHistoryUnchanged, expectIncrementsMatchMetadata, expectMirrorEqualsSource, sha, snapshotHistory } from './invariants'

const cleanups: (() => void)[] = []
afterAll(() => {
  for (const c of cleanups.reverse()) c()
})


/** A writer that keeps moving `p`'s mtime (a file that is always changing); started and running. */
async function keepTouching(p: string) {
  const toucher = spawn(process.execPath, ['-e', `const fs=require('fs');let t=1e9;for(;;){t+=1;try{fs.utimesSync(${JSON.stringify(p)},t,t)}catch{}}`], { stdio: 'ignore' })
  cleanups.push(() => toucher.kill('SIGKILL'))
  await new Promise((r) => setTimeout(r, 300))
  return toucher
}

describe('real disks', () => {
  it.skipIf(needs('exFAT target', ['mkfs.exfat', 'mount.exfat-fuse', 'losetup'], { root: true }))('exFAT target: no hardlinks (increments hold copies), coarse mtimes tolerated, history intact', async () => {
    const mnt = mountExfat(cleanups, '256M')
    const dir = tmpdir()
    const src = path.join(dir, 'src')
    writeTree(src, { 'proj/a.txt': 'alpha', 'proj/b.txt': 'beta', 'docs/c.txt': 'gamma' })
    for (const f of ['proj/a.txt', 'proj/b.txt', 'docs/c.txt']) fs.utimesSync(path.join(src, f), 1_700_000_001.5, 1_700_000_001.5)
    const config = writeConfig(dir, { src, dst: path.join(mnt, 'backup'), track_dirs: ['proj'], include_dirs: ['docs'] })
    const s1 = await backup(config)
    expect(s1.warnings).toEqual([])
    expect(s1.linkFallbacks).toBe(2)
    expect(s1.mtimeToleranceS).toBeGreaterThanOrEqual(1)
    const dst = path.join(mnt, 'backup')
    expect(readMeta(dst, s1.increment!).file_catalog['proj/a.txt']).toMatchObject({ stored_as: 'copy', sha256: sha('alpha') })
    expectIncrementsMatchMetadata(dst)
    const mirror = listTree(path.join(dst, 'mirror'))
    expect(mirror.get('proj/a.txt')!.sha).toBe(sha('alpha'))
    expect(Math.abs(mirror.get('proj/a.txt')!.mtimeMs - 1_700_000_001_500)).toBeLessThanOrEqual(2000)
    const history = snapshotHistory(dst)
    // A second run with nothing changed sees nothing (the coarse mirror mtimes do not matter).
    expect(await backup(config)).toMatchObject({ increment: null, changed: 0, mirrorUpdated: 0 })
    fs.writeFileSync(path.join(src, 'proj/a.txt'), 'alpha 2')
    const s3 = await backup(config)
    expect(s3).toMatchObject({ changed: 1, linkFallbacks: 1 })
    expectHistoryUnchanged(history, dst)
    expect(fs.readFileSync(path.join(dst, s1.increment!, 'track/proj/a.txt'), 'utf8')).toBe('alpha')
    expectIncrementsMatchMetadata(dst)
  })

  it('link count at its limit (EMLINK): falls back to a copy for that file', async () => {
    const w = workspace({ 'docs/hot.txt': 'hot' }, { include_dirs: ['docs'] })
    await backup(w.config)
    // Fill the mirror file's link count up to ext4's limit.
    const m = path.join(w.dst, 'mirror/docs/hot.txt')
    const extra = path.join(w.dst, 'extra-links')
    fs.mkdirSync(extra)
    let n = 0
    try {
      for (;;) fs.linkSync(m, path.join(extra, `l${n++}`))
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toBe('EMLINK')
    }
    fs.writeFileSync(w.config, JSON.stringify({ src: 'src', dst: 'dst', track_dirs: ['docs'] }))
    const s = await backup(w.config)
    expect(s).toMatchObject({ new: 1, linkFallbacks: 1, warnings: [] })
    expect(readMeta(w.dst, s.increment!).file_catalog['docs/hot.txt'].stored_as).toBe('copy')
    expect(fs.statSync(path.join(w.dst, s.increment!, 'track/docs/hot.txt')).nlink).toBe(1)
    fs.rmSync(extra, { recursive: true })
  }, 120_000)

  it.skipIf(needs('a mirror on a mount of its own', ['mount', 'umount'], { root: true }))(
    'a mirror on a file system of its own (a mount inside dst): new tracked files are stored as copies, the mirror is whole',
    async () => {
      const w = workspace({ 'proj/a.txt': 'a', 'proj/sub/b.txt': 'b'.repeat(70_000), 'docs/c.txt': 'c' }, { include_dirs: ['docs'], track_dirs: ['proj'] })
      fs.mkdirSync(path.join(w.dst, 'mirror'), { recursive: true })
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', path.join(w.dst, 'mirror')])
      cleanups.push(() => spawnSync('umount', ['-l', path.join(w.dst, 'mirror')]))
      const s = await backup(w.config)
      // Links from the increment to the mirror cross file systems (EXDEV): each tracked file is copied.
      expect(s).toMatchObject({ new: 2, linkFallbacks: 2, warnings: [] })
      const cat = readMeta(w.dst, s.increment!).file_catalog
      expect([cat['proj/a.txt'].stored_as, cat['proj/sub/b.txt'].stored_as]).toEqual(['copy', 'copy'])
      expect(fs.readFileSync(path.join(w.dst, s.increment!, 'track/proj/sub/b.txt'), 'utf8')).toBe('b'.repeat(70_000))
      expectMirrorEqualsSource(loadConfig(w.config))
      expectIncrementsMatchMetadata(w.dst)
    },
    60_000,
  )

  it.skipIf(needs('permission tests as a non-root user', ['setpriv'], { root: true }))('unreadable files and folders (as a non-root user): the run goes on, lists the paths, exits 1', () => {
    const w = workspace({ 'proj/ok.txt': 'ok', 'proj/secret.txt': 'secret', 'proj/closed/inner.txt': 'inner' }, { track_dirs: ['proj'] })
    fs.chmodSync(w.dir, 0o755)
    execFileSync('chown', ['-R', 'nobody:nogroup', w.dir])
    fs.chmodSync(path.join(w.src, 'proj/secret.txt'), 0o000)
    fs.chmodSync(path.join(w.src, 'proj/closed'), 0o000)
    const base = path.dirname(w.dir)
    fs.chmodSync(base, 0o755)
    // The checkout may not be readable by `nobody` (e.g. under a 0700 temp folder): run a copy of the package.
    const pkg = path.join(base, `pkg-${process.pid}`)
    if (!fs.existsSync(pkg)) {
      const root = path.join(__dirname, '..')
      for (const p of ['package.json', 'binding.js', 'bin', 'dist', 'node_modules/clipanion', 'node_modules/typanion', 'node_modules/diff', ...fs.readdirSync(root).filter((f) => f.endsWith('.node'))])
        fs.cpSync(path.join(root, p), path.join(pkg, p), { recursive: true })
      execFileSync('chmod', ['-R', 'a+rX', pkg])
    }
    const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.join(pkg, 'bin', 'backup.js'), 'run', '--json', '-c', w.config], {
      encoding: 'utf8',
    })
    expect(r.status, r.stderr).toBe(1)
    const j = JSON.parse(r.stdout)
    expect(j.warnings.map((x: { path: string; code: string }) => [x.path, x.code])).toEqual([
      ['proj/closed', 'permission-denied'],
      ['proj/secret.txt', 'permission-denied'],
    ])
    expect(j.new).toBe(1)
    expect(fs.readFileSync(path.join(w.dst, 'mirror/proj/ok.txt'), 'utf8')).toBe('ok')
    expect(fs.existsSync(path.join(w.dst, 'mirror/proj/secret.txt'))).toBe(false)
    // Once readable, the next run takes it.
    fs.chmodSync(path.join(w.src, 'proj/secret.txt'), 0o644)
    fs.chmodSync(path.join(w.src, 'proj/closed'), 0o755)
    const r2 = cli(['run', '--json', '-c', w.config])
    expect(r2.status).toBe(0)
    expect(JSON.parse(r2.stdout).new).toBe(2)
  })

  it('a file that keeps changing while it is copied: after the retries, what was read is stored and marked inconsistent', async () => {
    const w = workspace({ 'proj/stable.txt': 'stable' }, { track_dirs: ['proj'] })
    const hot = path.join(w.src, 'proj/hot.bin')
    fs.writeFileSync(hot, Buffer.alloc(64 * 1024 * 1024, 1))
    // A writer that keeps moving the mtime while the run copies the file.
    const toucher = await keepTouching(hot)
    const s = await backup(w.config)
    toucher.kill('SIGKILL')
    expect(s.warnings.map((x) => [x.path, x.code])).toEqual([['proj/hot.bin', 'inconsistent-copy']])
    expect(s.new).toBe(2)
    const meta = readMeta(w.dst, s.increment!)
    expect(Object.keys(meta.file_catalog).sort()).toEqual(['proj/hot.bin', 'proj/stable.txt'])
    expect(meta.file_catalog['proj/hot.bin']).toMatchObject({ inconsistent: true, size: 64 * 1024 * 1024 })
    expect(fs.readFileSync(path.join(w.dst, 'mirror/proj/hot.bin')).equals(fs.readFileSync(hot))).toBe(true)
    expectIncrementsMatchMetadata(w.dst)
    // Quiet again: the next run stores a consistent version, although size and mtime may look unchanged.
    const s2 = await backup(w.config)
    expect(s2).toMatchObject({ changed: 1, warnings: [] })
    expect(readMeta(w.dst, s2.increment!).file_catalog['proj/hot.bin'].inconsistent).toBeUndefined()
    const s3 = await backup(w.config)
    expect(s3).toMatchObject({ increment: null, changed: 0, new: 0 })
  }, 60_000)

  it('--skip-inconsistent: a file that keeps changing is reported and not recorded', async () => {
    const w = workspace({ 'proj/stable.txt': 'stable' }, { track_dirs: ['proj'] })
    const hot = path.join(w.src, 'proj/hot.bin')
    fs.writeFileSync(hot, Buffer.alloc(64 * 1024 * 1024, 1))
    const toucher = await keepTouching(hot)
    const r = cli(['run', '-c', w.config, '--json', '--skip-inconsistent'])
    toucher.kill('SIGKILL')
    expect(r.status, r.stderr).toBe(1)
    const s = JSON.parse(r.stdout)
    expect(s.warnings.map((x: { path: string; code: string }) => [x.path, x.code])).toEqual([['proj/hot.bin', 'changed-during-read']])
    expect(s.new).toBe(1)
    expect(Object.keys(readMeta(w.dst, s.increment!).file_catalog)).toEqual(['proj/stable.txt'])
    expect(fs.existsSync(path.join(w.dst, 'mirror/proj/hot.bin'))).toBe(false)
    // Quiet again: the next run records it.
    bump(hot)
    const s2 = await backup(w.config)
    expect(s2).toMatchObject({ new: 1, warnings: [] })
    expect(readMeta(w.dst, s2.increment!).file_catalog['proj/hot.bin'].size).toBe(64 * 1024 * 1024)
    expect(loadConfig(w.config).dst).toBe(w.dst)
  }, 60_000)

  it('a log appended every few milliseconds is backed up on every run (never "no copy at all")', async () => {
    const w = workspace({ 'logs/keep.txt': 'k' }, { track_dirs: ['logs'] })
    const log = path.join(w.src, 'logs/app.log')
    fs.writeFileSync(log, 'x'.repeat(8 * 1024 * 1024))
    const writer = spawn(process.execPath, ['-e', `const fs=require('fs');setInterval(()=>fs.appendFileSync(${JSON.stringify(log)}, 'line '.repeat(20)+'\\n'),2)`], { stdio: 'ignore' })
    cleanups.push(() => writer.kill('SIGKILL'))
    await new Promise((r) => setTimeout(r, 200))
    const stored: number[] = []
    for (let i = 0; i < 5; i++) {
      const s = await backup(w.config)
      expect(s.warnings.every((x) => x.code === 'inconsistent-copy' && x.path === 'logs/app.log'), JSON.stringify(s.warnings)).toBe(true)
      expect(s.increment).not.toBeNull()
      const e = readMeta(w.dst, s.increment!).file_catalog['logs/app.log']
      expect(e).toBeDefined()
      stored.push(e.size)
      // What the increment holds is exactly what the metadata says (size and SHA-256).
      expectIncrementsMatchMetadata(w.dst)
    }
    writer.kill('SIGKILL')
    expect(stored.every((n) => n >= 8 * 1024 * 1024)).toBe(true)
  }, 120_000)

  it('the lock: a second run refuses while the first holds it; a leftover lock file is not a lock', () => {
    const w = workspace({ 'proj/a.txt': 'a' }, { track_dirs: ['proj'] })
    // A live holder: this test process holds the OS lock.
    const release = acquireLock(w.dst, 'test')
    const r = cli(['run', '-c', w.config])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(`locked by pid ${process.pid}`)
    expect(fs.existsSync(path.join(w.dst, 'mirror'))).toBe(false)
    release()
    // The file a dead holder left (even one naming a live pid): not a lock.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
    fs.writeFileSync(path.join(w.dst, '.axiomatic/lock'), JSON.stringify({ pid: Number(dead.stdout), host: require('node:os').hostname(), started: 'then', command: 'run' }))
    const r2 = cli(['run', '-c', w.config])
    expect(r2.status, r2.stderr).toBe(0)
    expect(fs.existsSync(path.join(w.dst, '.axiomatic/lock'))).toBe(false)
    fs.writeFileSync(path.join(w.dst, '.axiomatic/lock'), JSON.stringify({ pid: process.pid, host: require('node:os').hostname(), started: 'then', command: 'run' }))
    fs.writeFileSync(path.join(w.src, 'proj/a.txt'), 'a2')
    bump(path.join(w.src, 'proj/a.txt'))
    const r3 = cli(['run', '-c', w.config])
    expect(r3.status, r3.stderr).toBe(0)
  })

  it('files that vanish between the scan and the copy are reported (exit 1) and the run goes on', async () => {
    const tree: Record<string, string> = {}
    const blob = 'v'.repeat(4 * 1024 * 1024)
    for (let i = 0; i < 120; i++) tree[`proj/f${String(i).padStart(3, '0')}.bin`] = blob + i
    const w = workspace(tree, { track_dirs: ['proj'] })
    let deleted = false
    const s = await backup(w.config, {
      onProgress: (p) => {
        if (p.phase === 'apply' && !deleted) {
          deleted = true
          for (const f of Object.keys(tree)) fs.rmSync(path.join(w.src, f), { force: true })
        }
      },
    })
    expect(deleted).toBe(true)
    const vanished = s.warnings.filter((x) => x.code === 'vanished')
    expect(vanished.length).toBeGreaterThan(0)
    expect(s.new + vanished.length).toBe(120)
    expect(vanished[0].path).toMatch(/^proj\/f\d{3}\.bin$/)
    expectIncrementsMatchMetadata(w.dst)
    // Nothing half-copied is left in the mirror, and the next run records the deletions.
    const mirror = listTree(path.join(w.dst, 'mirror'))
    expect(mirror.size).toBe(s.new)
    for (const [p, f] of mirror) expect({ p, sha: f.sha }).toEqual({ p, sha: sha(tree[`proj/${p.slice('proj/'.length)}`]) })
    // Every file is gone from the source: a mass deletion, allowed explicitly.
    const s2 = await backup(w.config, { allowMassDelete: true })
    expect(s2).toMatchObject({ deleted: s.new, warnings: [] })
    expect(listTree(path.join(w.dst, 'mirror')).size).toBe(0)
  }, 120_000)

  it.skipIf(needs('progress on a TTY', ['script']))('shows a progress line on a TTY and nothing when piped', () => {
    const tree: Record<string, string> = {}
    const blob = 'p'.repeat(2 * 1024 * 1024)
    for (let i = 0; i < 300; i++) tree[`proj/f${i}.bin`] = blob + i
    const w = workspace(tree, { track_dirs: ['proj'] })
    // `script` gives the CLI a pseudo-terminal.
    const r = spawnSync('script', ['-qec', `${process.execPath} ${path.join(__dirname, '..', 'bin', 'backup.js')} run -c ${w.config}`, '/dev/null'], { encoding: 'utf8' })
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/(scan|apply): [\d,]+/)
    expect(r.stdout).toMatch(/apply: [\d,]+\/[\d,]+ files · .* [KMG]iB\/s/)
    fs.writeFileSync(path.join(w.src, 'proj/f1.bin'), 'changed')
    const piped = cli(['run', '-c', w.config])
    expect(piped.stderr).toBe('')
  }, 120_000)
})
