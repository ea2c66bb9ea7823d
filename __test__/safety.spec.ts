/**
 * Nothing is removed on doubt (issue 9, items 1, 2 and 9): an unreadable folder or file keeps its
 * backup, an empty or foreign source and a mass deletion are refused before anything changes, and a
 * `dst` that is inside `src` through a bind mount is refused like one inside it by path.
 */
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { afterAll, describe, expect, it } from 'vitest'

import { backup, loadConfig } from '../js'
import { cli, increments, listTree, tmpdir, workspace, writeConfig, writeTree } from './helpers'
import { expectMirrorEqualsSource } from './invariants'

const cleanups: (() => void)[] = []
afterAll(() => {
  for (const c of cleanups.reverse()) {
    try {
      c()
    } catch {
      // best effort
    }
  }
})

/** Mounts with `mount(8)`; a failure says clearly that the sandbox forbids it (the test fails, never passes silently). */
const mounted = new Set<string>()
function mount(args: string[], target: string): void {
  const r = spawnSync('mount', [...args, target], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`this test needs \`mount ${args.join(' ')}\` (root, no sandbox forbidding mounts): ${r.stderr || r.error}`)
  mounted.add(target)
}
cleanups.push(() => {
  for (const t of mounted) spawnSync('umount', ['-l', t])
})

function umount(target: string): void {
  execFileSync('umount', [target])
  mounted.delete(target)
}

let pkg: string | undefined
/** Runs the CLI as `nobody` (from a copy of the package that `nobody` can read). */
function cliAsNobody(args: string[]): SpawnSyncReturns<string> {
  const base = path.dirname(tmpdir())
  fs.chmodSync(base, 0o755)
  if (!pkg) {
    pkg = path.join(base, `pkg-safety-${process.pid}`)
    const root = path.join(__dirname, '..')
    fs.rmSync(pkg, { recursive: true, force: true })
    for (const p of ['package.json', 'binding.js', 'bin', 'dist', 'node_modules/clipanion', 'node_modules/typanion', 'node_modules/diff', ...fs.readdirSync(root).filter((f) => f.endsWith('.node'))])
      fs.cpSync(path.join(root, p), path.join(pkg, p), { recursive: true })
    execFileSync('chmod', ['-R', 'a+rX', pkg])
    const p = pkg
    cleanups.push(() => fs.rmSync(p, { recursive: true, force: true }))
  }
  return spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.join(pkg, 'bin', 'backup.js'), ...args], {
    encoding: 'utf8',
  })
}

const state = (dst: string) =>
  fs
    .readFileSync(path.join(dst, '.axiomatic/state.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => JSON.parse(l) as { p: string; t: boolean; s: number })

describe('unreadable folders and files (as a non-root user)', () => {
  it('keep their mirror copy and state entry, record no deletion, are named in the warnings, exit 1', () => {
    const w = workspace(
      {
        'proj/ok.txt': 'ok',
        'proj/locked/s.txt': 'tracked secret',
        'proj/locked/deep/d.txt': 'deep',
        'proj/noexec/f.txt': 'no search permission on the folder',
        'docs/locked/u.txt': 'untracked: the mirror is the only copy',
        'docs/plain.txt': 'plain',
      },
      { track_dirs: ['proj'], include_dirs: ['docs'] },
    )
    fs.chmodSync(w.dir, 0o755)
    execFileSync('chown', ['-R', 'nobody:nogroup', w.dir])
    const r1 = cliAsNobody(['run', '--json', '-c', w.config])
    expect(r1.status, r1.stderr + r1.stdout).toBe(0)
    const before = listTree(path.join(w.dst, 'mirror'))
    const stateBefore = state(w.dst)
    expect(increments(w.dst)).toHaveLength(1)

    fs.chmodSync(path.join(w.src, 'proj/locked'), 0o000)
    fs.chmodSync(path.join(w.src, 'docs/locked'), 0o000)
    fs.chmodSync(path.join(w.src, 'proj/noexec'), 0o644) // readable names, but no lstat below it
    const r2 = cliAsNobody(['run', '--json', '-c', w.config])
    expect(r2.status, r2.stderr + r2.stdout).toBe(1)
    const j = JSON.parse(r2.stdout)
    expect(j.warnings.map((x: { path: string; code: string }) => [x.path, x.code])).toEqual([
      ['docs/locked', 'permission-denied'],
      ['proj/locked', 'permission-denied'],
      ['proj/noexec/f.txt', 'permission-denied'],
    ])
    // The mirror and the state are exactly as before; no increment records a deletion.
    expect(j).toMatchObject({ deleted: 0, removedFromMirror: 0, increment: null, mirrorFiles: 6 })
    expect(listTree(path.join(w.dst, 'mirror'))).toEqual(before)
    expect(state(w.dst)).toEqual(stateBefore)
    expect(increments(w.dst)).toHaveLength(1)
    expect(j.warnings[0].message).toMatch(/kept/)

    // Readable again: nothing is "new" (no false increment), the mirror still equals the source.
    fs.chmodSync(path.join(w.src, 'proj/locked'), 0o755)
    fs.chmodSync(path.join(w.src, 'docs/locked'), 0o755)
    fs.chmodSync(path.join(w.src, 'proj/noexec'), 0o755)
    const r3 = cliAsNobody(['run', '--json', '-c', w.config])
    expect(r3.status, r3.stderr + r3.stdout).toBe(0)
    expect(JSON.parse(r3.stdout)).toMatchObject({ new: 0, changed: 0, deleted: 0, increment: null, warnings: [] })
    expect(increments(w.dst)).toHaveLength(1)
    expectMirrorEqualsSource(loadConfig(w.config))

    // A real deletion inside the formerly locked folder is still recorded.
    fs.rmSync(path.join(w.src, 'proj/locked/s.txt'))
    const r4 = cliAsNobody(['run', '--json', '-c', w.config])
    expect(r4.status, r4.stderr + r4.stdout).toBe(0)
    expect(JSON.parse(r4.stdout)).toMatchObject({ deleted: 1 })
  })
})

describe('unreadable folders beside real changes (as a non-root user)', () => {
  it('the kept entries stay in the new state, in order, while the changes are recorded', () => {
    const w = workspace({ 'a/x.txt': 'x', 'm/locked/1.txt': 'one', 'm/locked/2.txt': 'two', 'z/y.txt': 'y', 'z/gone.txt': 'gone' })
    fs.chmodSync(w.dir, 0o755)
    execFileSync('chown', ['-R', 'nobody:nogroup', w.dir])
    expect(cliAsNobody(['run', '-c', w.config]).status).toBe(0)
    const lockedBefore = [...listTree(path.join(w.dst, 'mirror'))].filter(([p]) => p.startsWith('m/'))
    fs.chmodSync(path.join(w.src, 'm/locked'), 0o000)
    fs.writeFileSync(path.join(w.src, 'a/x.txt'), 'x, longer now')
    fs.rmSync(path.join(w.src, 'z/gone.txt'))
    fs.writeFileSync(path.join(w.src, 'z/new.txt'), 'new')
    const r = cliAsNobody(['run', '--json', '-c', w.config])
    expect(r.status, r.stderr + r.stdout).toBe(1)
    const j = JSON.parse(r.stdout)
    expect(j).toMatchObject({ new: 1, changed: 1, deleted: 1, mirrorFiles: 5 })
    expect(j.warnings.map((x: { path: string }) => x.path)).toEqual(['m/locked'])
    expect(Object.keys(JSON.parse(fs.readFileSync(path.join(w.dst, j.increment, `${j.increment}.json`), 'utf8')).file_catalog).sort()).toEqual([
      'a/x.txt',
      'z/gone.txt',
      'z/new.txt',
    ])
    expect(state(w.dst).map((e) => e.p)).toEqual(['a/x.txt', 'm/locked/1.txt', 'm/locked/2.txt', 'z/new.txt', 'z/y.txt'])
    expect([...listTree(path.join(w.dst, 'mirror'))].filter(([p]) => p.startsWith('m/'))).toEqual(lockedBefore)
    // Readable again: the state read back is whole (its entry count checks), nothing is new.
    fs.chmodSync(path.join(w.src, 'm/locked'), 0o755)
    const r2 = cliAsNobody(['run', '--json', '-c', w.config])
    expect(r2.status, r2.stderr + r2.stdout).toBe(0)
    expect(JSON.parse(r2.stdout)).toMatchObject({ new: 0, changed: 0, deleted: 0, increment: null, mirrorFiles: 5 })
  })
})

describe('empty source and mass deletion', () => {
  it('a source that became empty (an unmounted disk) is refused with exit 2 and nothing removed; --allow-mass-delete proceeds', async () => {
    const w = workspace({ 'd/a.txt': 'a', 'd/b/c.txt': 'c', 'd/d.txt': 'd' })
    await backup(w.config)
    const mirror = listTree(path.join(w.dst, 'mirror'))
    for (const f of fs.readdirSync(w.src)) fs.rmSync(path.join(w.src, f), { recursive: true })
    const r = cli(['run', '-c', w.config])
    expect(r.status, r.stdout + r.stderr).toBe(2)
    expect(r.stderr).toMatch(/every file of the mirror \(3 files/)
    expect(r.stderr).toMatch(/--allow-mass-delete/)
    expect(listTree(path.join(w.dst, 'mirror'))).toEqual(mirror)
    expect(increments(w.dst)).toHaveLength(1)
    expect(fs.existsSync(path.join(w.dst, '.axiomatic/journal.jsonl'))).toBe(false)
    // The library refuses the same way.
    await expect(backup(w.config)).rejects.toMatchObject({ code: 'EREFUSED', exitCode: 2 })
    // A dry run says the real run would be refused, and writes nothing.
    const d = cli(['run', '--dry-run', '--json', '-c', w.config])
    expect(d.status).toBe(2)
    expect(JSON.parse(d.stdout).refused).toMatch(/--allow-mass-delete/)
    expect(listTree(path.join(w.dst, 'mirror'))).toEqual(mirror)
    const ok = cli(['run', '--json', '--allow-mass-delete', '-c', w.config])
    expect(ok.status, ok.stderr).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({ deleted: 3, mirrorFiles: 0 })
  })

  it('more than half of a mirror of 100 files or more is refused; max_delete (count or percentage) and --max-delete set the limit', async () => {
    const tree: Record<string, string> = {}
    for (let i = 0; i < 120; i++) tree[`f/${String(i).padStart(3, '0')}.txt`] = `file ${i}`
    const w = workspace(tree, { include_dirs: ['f'] })
    await backup(w.config)
    const rm = (from: number, to: number) => {
      for (let i = from; i < to; i++) fs.rmSync(path.join(w.src, `f/${String(i).padStart(3, '0')}.txt`), { force: true })
    }
    rm(0, 61) // 61 of 120: more than half
    const r = cli(['run', '-c', w.config])
    expect(r.status, r.stderr).toBe(2)
    expect(r.stderr).toMatch(/61 of the 120 files/)
    expect(r.stderr).toMatch(/--allow-mass-delete/)
    expect(fs.readdirSync(path.join(w.dst, 'mirror/f'))).toHaveLength(120)
    // --max-delete raises the limit for one run.
    const ok = cli(['run', '--json', '--max-delete', '61', '-c', w.config])
    expect(ok.status, ok.stderr).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({ removedFromMirror: 61, mirrorFiles: 59 })

    // A config limit applies to any mirror size: a count…
    writeConfig(w.dir, { src: 'src', dst: 'dst', include_dirs: ['f'], max_delete: 5 })
    rm(61, 67) // 6 > 5
    const c = cli(['run', '-c', w.config])
    expect(c.status, c.stderr).toBe(2)
    expect(c.stderr).toMatch(/max_delete/)
    // …or a percentage.
    writeConfig(w.dir, { src: 'src', dst: 'dst', include_dirs: ['f'], max_delete: '20%' })
    expect(cli(['run', '-c', w.config]).status).toBe(0) // 6 of 59 ≈ 10%
    rm(67, 80) // 13 of 53 ≈ 25%
    expect(cli(['run', '-c', w.config]).status).toBe(2)
    expect((await backup(w.config, { maxDelete: '30%' })).removedFromMirror).toBe(13)
  })

  it('a small mirror that loses a few files is not refused; bad max_delete values are config errors (exit 64)', async () => {
    const w = workspace({ 'd/a.txt': 'a', 'd/b.txt': 'b', 'd/c.txt': 'c' })
    await backup(w.config)
    fs.rmSync(path.join(w.src, 'd/a.txt'))
    fs.rmSync(path.join(w.src, 'd/b.txt'))
    const s = await backup(w.config)
    expect(s.deleted).toBe(2)
    for (const bad of [-1, 1.5, '150%', 'half', true]) {
      writeConfig(w.dir, { src: 'src', dst: 'dst', track_dirs: ['**'], max_delete: bad })
      const r = cli(['run', '-c', w.config])
      expect(r.status, String(bad)).toBe(64)
      expect(r.stderr).toMatch(/max_delete/)
    }
    writeConfig(w.dir, { src: 'src', dst: 'dst', track_dirs: ['**'] })
    const r = cli(['run', '--max-delete', 'lots', '-c', w.config])
    expect(r.status).toBe(64)
    expect(r.stderr).toMatch(/--max-delete/)
  })
})

describe('the source a backup belongs to', () => {
  it('a second profile with another src on the same dst is refused (exit 2) unless --adopt-source', async () => {
    const dir = tmpdir()
    writeTree(path.join(dir, 'one'), { 'p/x.txt': 'one', 'p/y.txt': 'one y' })
    writeTree(path.join(dir, 'two'), { 'p/z.txt': 'two' })
    const a = writeConfig(dir, { src: 'one', dst: 'dst', track_dirs: ['**'] }, 'a.json')
    const b = writeConfig(dir, { src: 'two', dst: 'dst', track_dirs: ['**'] }, 'b.json')
    await backup(a)
    const rec = JSON.parse(fs.readFileSync(path.join(dir, 'dst/.axiomatic/source.json'), 'utf8'))
    expect(rec.path).toBe(path.join(fs.realpathSync(dir), 'one'))
    const mirror = listTree(path.join(dir, 'dst/mirror'))
    const r = cli(['run', '-c', b])
    expect(r.status, r.stderr).toBe(2)
    expect(r.stderr).toContain(path.join(fs.realpathSync(dir), 'one'))
    expect(r.stderr).toContain(path.join(fs.realpathSync(dir), 'two'))
    expect(r.stderr).toMatch(/--adopt-source/)
    expect(listTree(path.join(dir, 'dst/mirror'))).toEqual(mirror)
    expect(increments(path.join(dir, 'dst'))).toHaveLength(1)
    // A dry run says so too.
    const d = cli(['run', '--dry-run', '--json', '-c', b])
    expect(d.status).toBe(2)
    expect(JSON.parse(d.stdout).refused).toMatch(/--adopt-source/)
    // Adopting still meets the mass-delete guard (all of the mirror would go); both flags proceed.
    const r2 = cli(['run', '--adopt-source', '-c', b])
    expect(r2.status).toBe(2)
    expect(r2.stderr).toMatch(/--allow-mass-delete/)
    expect(listTree(path.join(dir, 'dst/mirror'))).toEqual(mirror)
    const r3 = cli(['run', '--json', '--adopt-source', '--allow-mass-delete', '-c', b])
    expect(r3.status, r3.stderr).toBe(0)
    expect(JSON.parse(r3.stdout)).toMatchObject({ new: 1, deleted: 2 })
    // Now the backup belongs to `two`: the first profile is refused.
    expect(cli(['run', '-c', a]).status).toBe(2)
    expect((await backup(b)).warnings).toEqual([])
  })

  it('an existing backup without a source record (made by an earlier version) adopts its source silently', async () => {
    const w = workspace({ 'd/a.txt': 'a' })
    await backup(w.config)
    const rec = path.join(w.dst, '.axiomatic/source.json')
    const saved = fs.readFileSync(rec, 'utf8')
    fs.rmSync(rec)
    fs.writeFileSync(path.join(w.src, 'd/b.txt'), 'b')
    const s = await backup(w.config)
    expect(s).toMatchObject({ new: 1, warnings: [] })
    expect(JSON.parse(fs.readFileSync(rec, 'utf8'))).toEqual(JSON.parse(saved))
  })

  it('the same path on another file system (the disk is not mounted) is refused', async () => {
    const dir = tmpdir()
    const src = path.join(dir, 'src')
    fs.mkdirSync(src)
    // What lies under the mount point when the disk is not mounted.
    writeTree(src, { 'c/under.txt': 'on the parent file system' })
    mount(['-t', 'tmpfs', 'tmpfs'], src)
    writeTree(src, { 'c/a.txt': 'a', 'c/b.txt': 'b', 'c/d/e.txt': 'e', 'c/under.txt': 'on the disk' })
    const config = writeConfig(dir, { src: 'src', dst: 'dst', track_dirs: ['**'] })
    await backup(config)
    const mirror = listTree(path.join(dir, 'dst/mirror'))
    umount(src)
    const r = cli(['run', '-c', config])
    expect(r.status, r.stderr).toBe(2)
    expect(r.stderr).toMatch(/another file system/)
    expect(r.stderr).toMatch(/--adopt-source/)
    expect(listTree(path.join(dir, 'dst/mirror'))).toEqual(mirror)
    expect(increments(path.join(dir, 'dst'))).toHaveLength(1)
  })
})

describe('dst inside src through a bind mount', () => {
  it('is refused like dst inside src by path (exit 64, nothing written)', () => {
    const dir = tmpdir()
    writeTree(path.join(dir, 'src'), { 'a.txt': 'a' })
    fs.mkdirSync(path.join(dir, 'view'))
    mount(['--bind', path.join(dir, 'src')], path.join(dir, 'view'))
    const config = writeConfig(dir, { src: 'src', dst: 'view/backup', track_dirs: ['**'] })
    expect(() => loadConfig(config)).toThrow(/"dst" .* is inside "src"/)
    const r = cli(['run', '-c', config])
    expect(r.status, r.stdout).toBe(64)
    expect(fs.existsSync(path.join(dir, 'src/backup'))).toBe(false)
  })

  it('src inside dst through a bind mount is refused too', () => {
    const dir = tmpdir()
    writeTree(path.join(dir, 'dst'), { 'data/a.txt': 'a' })
    fs.mkdirSync(path.join(dir, 'view'))
    mount(['--bind', path.join(dir, 'dst')], path.join(dir, 'view'))
    const config = writeConfig(dir, { src: 'view/data', dst: 'dst', track_dirs: ['**'] })
    expect(() => loadConfig(config)).toThrow(/"src" .* is inside "dst"/)
  })
})
