import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { backup, loadConfig } from '../js'
import { bump, cli, increments, listTree, readMeta, workspace } from './helpers'
import {
  expectHistoryUnchanged,
  expectIncrementsMatchMetadata,
  expectMirrorEqualsSource,
  fileExists,
  sha,
  snapshotHistory,
  storedVersions,
} from './invariants'

const RULES = {
  include_dirs: ['Documents'],
  track_dirs: ['Projects'],
  track_files: ['todo.txt'],
  exclude_dirs: ['cache:rec'],
  exclude_files: ['*.tmp'],
}

describe('backup run', () => {
  it('mirrors the selection, tracks changes in increments, and keeps history immutable', async () => {
    const w = workspace(
      {
        'Documents/a.txt': 'a',
        'Documents/cache/c.bin': 'cache',
        'Documents/x.tmp': 'tmp',
        'Projects/p/main.rs': 'fn main() {}',
        'Projects/p/data.json': { content: '{"v":1}', mode: 0o640 },
        'Projects/p/run.sh': { content: '#!/bin/sh\n', mode: 0o755 },
        'Projects/link': { symlink: 'p/main.rs' },
        'todo.txt': 'buy milk',
        'other/ignored.txt': 'not selected',
      },
      RULES,
    )
    const cfg = loadConfig(w.config)
    const s1 = await backup(cfg)
    expect(s1.increment).toMatch(/^backup_\d{8}_\d{6}$/)
    expect(s1).toMatchObject({ new: 5, changed: 0, deleted: 0, mirrorFiles: 6, trackedFiles: 5, mirrorUpdated: 1, warnings: [] })
    expectMirrorEqualsSource(cfg)
    expectIncrementsMatchMetadata(w.dst)
    expect(fs.lstatSync(path.join(w.dst, 'mirror/Projects/link')).isSymbolicLink()).toBe(true)
    expect(fs.readlinkSync(path.join(w.dst, 'mirror/Projects/link'))).toBe('p/main.rs')
    const inc1 = s1.increment!
    // Increment files are hardlinks of the mirror.
    const m = fs.statSync(path.join(w.dst, 'mirror/todo.txt'))
    const t = fs.statSync(path.join(w.dst, inc1, 'track/todo.txt'))
    expect(t.ino).toBe(m.ino)
    expect(readMeta(w.dst, inc1).file_catalog['todo.txt']).toMatchObject({ op: 'new', category: 'track', sha256: sha('buy milk'), size: 8 })

    const history = snapshotHistory(w.dst)
    fs.writeFileSync(path.join(w.src, 'todo.txt'), 'buy bread') // same size: mtime tells
    bump(path.join(w.src, 'todo.txt'))
    fs.rmSync(path.join(w.src, 'Projects/p/main.rs'))
    fs.writeFileSync(path.join(w.src, 'Projects/p/new.txt'), 'new')
    fs.chmodSync(path.join(w.src, 'Projects/p/run.sh'), 0o700) // mode only
    fs.writeFileSync(path.join(w.src, 'Documents/a.txt'), 'a2')
    const s2 = await backup(cfg)
    expect(s2).toMatchObject({ new: 1, changed: 2, deleted: 1, mirrorUpdated: 1 })
    const meta2 = readMeta(w.dst, s2.increment!)
    expect(meta2.file_catalog['todo.txt']).toMatchObject({ op: 'changed', sha256: sha('buy bread') })
    expect(meta2.file_catalog['Projects/p/main.rs']).toMatchObject({ op: 'deleted', category: 'deleted', sha256: sha('fn main() {}') })
    expect(meta2.file_catalog['Projects/p/run.sh']).toMatchObject({ op: 'changed', mode: 0o700 })
    expect(fs.readFileSync(path.join(w.dst, s2.increment!, 'deleted/Projects/p/main.rs'), 'utf8')).toBe('fn main() {}')
    expectHistoryUnchanged(history, w.dst)
    expect(fs.readFileSync(path.join(w.dst, inc1, 'track/todo.txt'), 'utf8')).toBe('buy milk')
    expect(fs.statSync(path.join(w.dst, 'mirror/todo.txt')).ino).not.toBe(m.ino)
    expectMirrorEqualsSource(cfg)
    expectIncrementsMatchMetadata(w.dst)

    // No change: no increment, nothing written.
    const stateBefore = fs.statSync(path.join(w.dst, '.axiomatic/state.jsonl')).mtimeMs
    const s3 = await backup(cfg)
    expect(s3).toMatchObject({ increment: null, new: 0, changed: 0, deleted: 0, mirrorUpdated: 0, removedFromMirror: 0 })
    expect(increments(w.dst)).toHaveLength(2)
    expect(fs.statSync(path.join(w.dst, '.axiomatic/state.jsonl')).mtimeMs).toBe(stateBefore)
  })

  it('only untracked changes: mirror updated, no increment; untracked removal prunes empty folders but keeps preserved ones', async () => {
    const w = workspace({ 'Documents/a/b/c.txt': 'c', 'Documents/keep/k.txt': 'k', 'Documents/z.txt': 'z' }, { include_dirs: ['Documents'], preserved_dirs: ['Documents/keep'] })
    const cfg = loadConfig(w.config)
    expect((await backup(cfg)).increment).toBeNull()
    fs.rmSync(path.join(w.src, 'Documents/a'), { recursive: true })
    fs.rmSync(path.join(w.src, 'Documents/keep/k.txt'))
    const s = await backup(cfg)
    expect(s).toMatchObject({ increment: null, removedFromMirror: 2 })
    expect(fileExists(path.join(w.dst, 'mirror/Documents/a'))).toBe(false)
    expect(fs.statSync(path.join(w.dst, 'mirror/Documents/keep')).isDirectory()).toBe(true)
    expectMirrorEqualsSource(cfg)
    expect(increments(w.dst)).toEqual([])
  })

  it('every tracked version lands in exactly one increment across many runs', async () => {
    const w = workspace({ 'f0.txt': 'v0' }, { track_files: ['*.txt'] })
    const cfg = loadConfig(w.config)
    const seen = new Set<string>()
    let rnd = 42
    const rand = (n: number) => ((rnd = (rnd * 1103515245 + 12345) % 2 ** 31), rnd % n)
    for (let run = 0; run < 12; run++) {
      for (let k = 0; k < 4; k++) {
        const f = path.join(w.src, `f${rand(6)}.txt`)
        if (rand(4) === 0) fs.rmSync(f, { force: true })
        else {
          fs.writeFileSync(f, `run ${run} op ${k} ${rand(1000)}`)
          bump(f)
        }
      }
      const before = snapshotHistory(w.dst)
      // Random deletions may empty this small mirror: allowed here (the guard is tested in safety.spec.ts).
      await backup(cfg, { allowMassDelete: true })
      expectHistoryUnchanged(before, w.dst)
      for (const [p, info] of listTree(w.src)) seen.add(`${p}\0${info.sha}`)
      expectMirrorEqualsSource(cfg)
    }
    const stored = storedVersions(w.dst)
    for (const v of seen) expect({ v, n: stored.get(v) }).toEqual({ v, n: 1 })
    expectIncrementsMatchMetadata(w.dst)
  })

  it('a file that becomes tracked is linked into the next increment without a copy', async () => {
    const w = workspace({ 'Documents/a.txt': 'a' }, { include_dirs: ['Documents'] })
    await backup(w.config)
    const ino = fs.statSync(path.join(w.dst, 'mirror/Documents/a.txt')).ino
    fs.writeFileSync(w.config, JSON.stringify({ src: 'src', dst: 'dst', track_dirs: ['Documents'] }))
    const s = await backup(w.config)
    expect(s).toMatchObject({ new: 1, bytesCopied: 0 })
    expect(fs.statSync(path.join(w.dst, s.increment!, 'track/Documents/a.txt')).ino).toBe(ino)
    expect(readMeta(w.dst, s.increment!).file_catalog['Documents/a.txt'].sha256).toBe(sha('a'))
  })

  it('a file that stops being tracked: its state changes, its later deletion is not an increment', async () => {
    const w = workspace({ 'Documents/a.txt': 'a' }, { track_dirs: ['Documents'] })
    expect((await backup(w.config)).new).toBe(1)
    fs.writeFileSync(w.config, JSON.stringify({ src: 'src', dst: 'dst', include_dirs: ['Documents'] }))
    expect(await backup(w.config)).toMatchObject({ increment: null, trackedFiles: 0, mirrorFiles: 1 })
    fs.rmSync(path.join(w.src, 'Documents/a.txt'))
    // The only file of the mirror goes: a mass deletion, allowed explicitly.
    expect(await backup(w.config, { allowMassDelete: true })).toMatchObject({ increment: null, deleted: 0, removedFromMirror: 1 })
  })

  it('a folder that becomes a file and back', async () => {
    const w = workspace({ 'x/inner.txt': 'inner' }, { track_dirs: ['**'], track_files: ['x'] })
    const cfg = loadConfig(w.config)
    await backup(cfg)
    fs.rmSync(path.join(w.src, 'x'), { recursive: true })
    fs.writeFileSync(path.join(w.src, 'x'), 'now a file')
    // Each step replaces the only file of the mirror: a mass deletion, allowed explicitly.
    const s = await backup(cfg, { allowMassDelete: true })
    expect(s).toMatchObject({ new: 1, deleted: 1, warnings: [] })
    expectMirrorEqualsSource(cfg)
    fs.rmSync(path.join(w.src, 'x'))
    fs.mkdirSync(path.join(w.src, 'x'))
    fs.writeFileSync(path.join(w.src, 'x/again.txt'), 'again')
    const s2 = await backup(cfg, { allowMassDelete: true })
    expect(s2).toMatchObject({ new: 1, deleted: 1, warnings: [] })
    expectMirrorEqualsSource(cfg)
    expectIncrementsMatchMetadata(w.dst)
  })

  it('dry run writes nothing and --verbose lists every path with its role and change', async () => {
    const w = workspace({ 'Projects/a.txt': 'a', 'Documents/b.txt': 'b' }, RULES)
    const r = cli(['run', '--dry-run', '--verbose', '--config', w.config])
    expect(r.status).toBe(0)
    expect(fs.existsSync(w.dst)).toBe(false)
    expect(r.stdout).toMatch(/new\s+mirrored\s+Documents\/b\.txt/)
    expect(r.stdout).toMatch(/new\s+tracked\s+Projects\/a\.txt/)
    const j = JSON.parse(cli(['run', '--dry-run', '--verbose', '--json', '--config', w.config]).stdout)
    expect(j.changes).toEqual([
      { path: 'Documents/b.txt', role: 'mirrored', change: 'new' },
      { path: 'Projects/a.txt', role: 'tracked', change: 'new' },
    ])
    expect(fs.existsSync(w.dst)).toBe(false)
  })

  it('odd names: unicode (NFC and NFD), emoji, spaces, quotes, newlines, deep paths, empty files', async () => {
    const deep = Array.from({ length: 40 }, (_, i) => `level-${i}-${'d'.repeat(40)}`).join('/')
    const tree = {
      'Projects/Документы/отчёт.txt': 'кириллица',
      'Projects/emoji 🎉/file 😀.txt': 'emoji',
      ['Projects/nfc-\u00e9.txt']: 'nfc',
      ['Projects/nfd-e\u0301.txt']: 'nfd',
      'Projects/sp ace/"quo\'tes".txt': 'q',
      'Projects/new\nline.txt': 'newline',
      'Projects/back\\slash.txt': 'bs',
      'Projects/-leading-dash': 'dash',
      [`Projects/${deep}/leaf.txt`]: 'deep',
      'Projects/empty': '',
    }
    const w = workspace(tree, RULES)
    const cfg = loadConfig(w.config)
    const s = await backup(cfg)
    expect(s.warnings).toEqual([])
    expect(s.new).toBe(Object.keys(tree).length)
    expectMirrorEqualsSource(cfg)
    expectIncrementsMatchMetadata(w.dst)
    expect(Object.keys(readMeta(w.dst, s.increment!).file_catalog)).toContain('Projects/new\nline.txt')
  })

  it('large sparse files are copied whole and stay sparse', async () => {
    const w = workspace({ 'Projects/small': 's', 'Documents/x': 'x' }, RULES)
    const big = path.join(w.src, 'Documents/sparse.img')
    const fd = fs.openSync(big, 'w')
    fs.writeSync(fd, 'head', 0)
    fs.writeSync(fd, 'tail', 5 * 1024 ** 3 - 4) // 5 GiB, mostly holes (untracked: no hashing)
    fs.closeSync(fd)
    const cfg = loadConfig(w.config)
    const s = await backup(cfg)
    expect(s.warnings).toEqual([])
    const st = fs.statSync(path.join(w.dst, 'mirror/Documents/sparse.img'))
    expect(st.size).toBe(5 * 1024 ** 3)
    expect(st.blocks * 512).toBeLessThan(64 * 1024 * 1024)
    const fdm = fs.openSync(path.join(w.dst, 'mirror/Documents/sparse.img'), 'r')
    const buf = Buffer.alloc(4)
    fs.readSync(fdm, buf, 0, 4, 5 * 1024 ** 3 - 4)
    fs.closeSync(fdm)
    expect(buf.toString()).toBe('tail')
  }, 120_000)

  it('sockets, FIFOs and devices are skipped and counted', async () => {
    const w = workspace({ 'Projects/a.txt': 'a' }, RULES)
    const { spawnSync } = await import('node:child_process')
    expect(spawnSync('mkfifo', [path.join(w.src, 'Projects/fifo')]).status).toBe(0)
    const s = await backup(w.config)
    expect(s).toMatchObject({ specialSkipped: 1, new: 1, warnings: [] })
    expect(fileExists(path.join(w.dst, 'mirror/Projects/fifo'))).toBe(false)
  })

  it('mtime_tolerance_s: a difference within the tolerance is not a change', async () => {
    const w = workspace({ 'Projects/a.txt': { content: 'a', mtime: 1_700_000_000 } }, { ...RULES, mtime_tolerance_s: 2 })
    await backup(w.config)
    fs.utimesSync(path.join(w.src, 'Projects/a.txt'), 1_700_000_001, 1_700_000_001)
    expect(await backup(w.config)).toMatchObject({ increment: null, changed: 0, mtimeToleranceS: 2 })
    fs.utimesSync(path.join(w.src, 'Projects/a.txt'), 1_700_000_003, 1_700_000_003)
    expect(await backup(w.config)).toMatchObject({ changed: 1 })
  })

  it('progress callbacks and AbortSignal', async () => {
    const tree: Record<string, string> = {}
    const blob = 'x'.repeat(16 * 1024)
    for (let i = 0; i < 8000; i++) tree[`Projects/d${i % 100}/f${i}.txt`] = `${blob} ${i}`
    const w = workspace(tree, RULES)
    // Aborted before it starts: nothing written.
    const pre = new AbortController()
    pre.abort()
    await expect(backup(w.config, { signal: pre.signal })).rejects.toThrow(/abort/i)
    expect(fs.existsSync(w.dst)).toBe(false)
    // Aborted mid-run (at the first progress report): rejects, leaves no
    // journal and only complete increments.
    const ac = new AbortController()
    const phases: string[] = []
    await expect(
      backup(w.config, {
        signal: ac.signal,
        onProgress: (p) => {
          phases.push(p.phase)
          ac.abort()
        },
      }),
    ).rejects.toThrow(/abort/i)
    expect(phases.length).toBeGreaterThan(0)
    expect(fs.existsSync(path.join(w.dst, '.axiomatic/journal.jsonl'))).toBe(false)
    expectIncrementsMatchMetadata(w.dst)
    const s = await backup(w.config, { onProgress: (p) => phases.push(p.phase) })
    expect(s.warnings).toEqual([])
    expect(phases).toContain('apply')
    expectMirrorEqualsSource(loadConfig(w.config))
    expectIncrementsMatchMetadata(w.dst)
  })

  it('a symlink to a folder outside src that becomes a real folder: nothing is written outside dst', async () => {
    const w = workspace({ 'proj/keep.txt': 'k' }, { track_dirs: ['proj'] })
    const outside = path.join(w.dir, 'outside')
    fs.mkdirSync(outside)
    fs.symlinkSync(outside, path.join(w.src, 'proj/a'))
    const cfg = loadConfig(w.config)
    await backup(cfg)
    expect(fs.readlinkSync(path.join(w.dst, 'mirror/proj/a'))).toBe(outside)
    fs.rmSync(path.join(w.src, 'proj/a'))
    fs.mkdirSync(path.join(w.src, 'proj/a'))
    fs.writeFileSync(path.join(w.src, 'proj/a/inner.txt'), 'inner')
    const s = await backup(cfg)
    expect(s).toMatchObject({ new: 1, deleted: 1, warnings: [] })
    expect(fs.readdirSync(outside)).toEqual([])
    expect(fs.lstatSync(path.join(w.dst, 'mirror/proj/a')).isDirectory()).toBe(true)
    expectMirrorEqualsSource(cfg)
    expectIncrementsMatchMetadata(w.dst)
  })

  it('the config file as a positional argument, as the original script took it', () => {
    const w = workspace({ 'proj/a.txt': 'a' }, { track_dirs: ['proj'] })
    const r = cli([w.config, '--json'])
    expect(r.status, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).new).toBe(1)
  })

  it('a damaged mirror state is refused with a message naming the file and what to do, and nothing changes', async () => {
    const w = workspace({ 'proj/a.txt': 'a' }, { track_dirs: ['proj'] })
    await backup(w.config)
    const state = path.join(w.dst, '.axiomatic/state.jsonl')
    const text = fs.readFileSync(state, 'utf8')
    fs.writeFileSync(state, text.split('\n')[0] + '\n') // header only: truncated
    fs.writeFileSync(path.join(w.src, 'proj/b.txt'), 'b')
    const before = snapshotHistory(w.dst)
    const r = cli(['run', '-c', w.config])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(state)
    expect(r.stderr).toMatch(/truncated: 0 of 1 entries; restore it from a copy, or move it aside/)
    expect(fs.existsSync(path.join(w.dst, 'mirror/proj/b.txt'))).toBe(false)
    expectHistoryUnchanged(before, w.dst)
  })
})
