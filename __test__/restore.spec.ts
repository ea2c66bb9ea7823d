import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { backup, loadConfig, removeIncrements, restore, prune, listIncrements } from '../js'
import { bump, cli, increments, listTree, readMeta, rng, tmpdir, workspace, type FileInfo } from './helpers'
import { expectHistoryUnchanged, expectIncrementsMatchMetadata, snapshotHistory } from './invariants'

/** `backup_X/backup_X.json`: rewritten (atomically) when prune carries entries in. */
const isMetadata = (p: string) => /^(backup_[^/]+)\/\1\.json$/.test(p)

type Snapshot = Map<string, Omit<FileInfo, 'ino'>>

/** The tracked part of the source (everything under t/), without inode numbers. */
function trackedSnapshot(src: string): Snapshot {
  const out: Snapshot = new Map()
  for (const [rel, info] of listTree(path.join(src, 't'))) {
    const { ino: _ino, ...rest } = info
    out.set(`t/${rel}`, rest)
  }
  return out
}

function restoredTracked(dir: string): Snapshot {
  return trackedSnapshot(dir)
}

/** Runs ≥ 10 backups with random changes; returns each increment with the tracked source it saw. */
async function randomHistory(seed: number, rounds = 12) {
  const w = workspace({ 't/keep.txt': 'stable', 'plain/readme.txt': 'untracked v1' }, { track_dirs: ['t'], include_dirs: ['plain'] })
  const cfg = loadConfig(w.config)
  const rand = rng(seed)
  const names = ['a.txt', 'b c.txt', 'd/e.bin', 'd/f/g.txt', "it's.txt", 'h.txt', 'link']
  const snapshots = new Map<string, Snapshot>()
  for (let round = 0; round < rounds; round++) {
    const changes = 1 + Math.floor(rand() * 4)
    for (let k = 0; k < changes; k++) {
      const name = names[Math.floor(rand() * names.length)]
      const p = path.join(w.src, 't', name)
      const exists = fs.existsSync(p) || fs.lstatSync(p, { throwIfNoEntry: false }) !== undefined
      const r = rand()
      if (exists && r < 0.35) {
        fs.rmSync(p) // deletion (re-created by a later round)
      } else if (name === 'link') {
        if (exists) fs.rmSync(p)
        fs.mkdirSync(path.dirname(p), { recursive: true })
        fs.symlinkSync(`target-${round}-${k}`, p)
      } else {
        fs.mkdirSync(path.dirname(p), { recursive: true })
        fs.writeFileSync(p, `${name} round ${round} change ${k} ${'x'.repeat(Math.floor(rand() * 5000))}`)
        if (rand() < 0.3) fs.chmodSync(p, rand() < 0.5 ? 0o600 : 0o755)
        bump(p)
      }
    }
    fs.writeFileSync(path.join(w.src, 'plain/readme.txt'), `untracked v${round + 2}`)
    bump(path.join(w.src, 'plain/readme.txt'))
    const s = await backup(cfg)
    expect(s.warnings).toEqual([])
    if (s.increment) snapshots.set(s.increment, trackedSnapshot(w.src))
  }
  return { w, cfg, snapshots }
}

async function expectPointInTime(dst: string, snapshots: Map<string, Snapshot>, names: string[]) {
  for (const name of names) {
    const to = tmpdir('restore-')
    const r = await restore(dst, { to, at: name })
    expect(r.warnings).toEqual([])
    expect(r.at).toBe(name)
    expect(restoredTracked(to), `restore at ${name}`).toEqual(snapshots.get(name))
  }
}

describe('point-in-time restore', () => {
  it('restores every increment of a random history byte for byte, also after prune', async () => {
    const { w, snapshots } = await randomHistory(20261122)
    const names = increments(w.dst)
    expect(names.length).toBeGreaterThanOrEqual(10)
    expect([...snapshots.keys()]).toEqual(names)
    // The history has deletions, re-creations after a deletion, and changes.
    const ops = names.flatMap((n) => Object.entries(readMeta(w.dst, n).file_catalog).map(([p, e]) => ({ n, p, op: e.op })))
    expect(ops.filter((o) => o.op === 'deleted').length).toBeGreaterThan(2)
    expect(ops.filter((o) => o.op === 'changed').length).toBeGreaterThan(2)
    const recreated = ops.filter((o, i) => o.op === 'new' && ops.slice(0, i).some((x) => x.p === o.p && x.op === 'deleted'))
    expect(recreated.length).toBeGreaterThan(0)
    await expectPointInTime(w.dst, snapshots, names)

    // Untracked files come from the mirror, and the result says so.
    const to = tmpdir('restore-')
    const r = await restore(w.dst, { to, at: names[0] })
    expect(r.untracked).toBe(1)
    expect(fs.readFileSync(path.join(to, 'plain/readme.txt'), 'utf8')).toBe(fs.readFileSync(path.join(w.src, 'plain/readme.txt'), 'utf8'))

    // Remove non-adjacent increments (not the newest): every kept one restores as before.
    const history = snapshotHistory(w.dst)
    const remove = names.filter((_, i) => i % 3 !== 2 && i !== names.length - 1).slice(0, 6)
    const p = await removeIncrements(w.dst, remove)
    expect(p.removed).toEqual(remove)
    const kept = names.filter((n) => !remove.includes(n))
    expect(increments(w.dst)).toEqual(kept)
    expect(fs.existsSync(path.join(w.dst, '.axiomatic/trash'))).toBe(false)
    expectIncrementsMatchMetadata(w.dst)
    await expectPointInTime(w.dst, snapshots, kept)
    // Files of kept increments were not changed by the carrying (only new links were added).
    const after = snapshotHistory(w.dst)
    for (const [p, info] of history) {
      if (remove.some((n) => p.startsWith(n + '/')) || isMetadata(p)) continue
      expect(after.get(p), p).toEqual(info)
    }
    const carried = Object.values(readMeta(w.dst, kept[0]).file_catalog).filter((e) => 'carried_from' in e)
    expect(carried.length).toBeGreaterThan(0)

    // A retention policy: keep the last 2; the rest goes, the kept ones still restore exactly.
    const p2 = await prune(w.dst, { keepLast: 2 })
    expect(p2.kept).toEqual(kept.slice(-2))
    await expectPointInTime(w.dst, snapshots, kept.slice(-2))
  })

  it('restores the latest state from the mirror by default, and single paths', async () => {
    const { w } = await randomHistory(7, 10)
    const to = tmpdir('restore-')
    const r = await restore(w.dst, { to })
    expect(r.at).toBeNull()
    expect(restoredTracked(to)).toEqual(trackedSnapshot(w.src))
    const one = tmpdir('restore-')
    const r1 = await restore(w.dst, { to: one, paths: ['t/keep.txt'] })
    expect(r1.files).toBe(1)
    expect(fs.readFileSync(path.join(one, 't/keep.txt'), 'utf8')).toBe('stable')
    // A path the backup does not know is reported, not silently ignored.
    const r2 = await restore(w.dst, { to: tmpdir('restore-'), paths: ['t/nope'] })
    expect(r2.warnings.map((x) => x.code)).toEqual(['not-found'])
  })
})

describe('restore safety', () => {
  it('never overwrites without --overwrite, restores copies (not links), keeps mode and mtime', async () => {
    const w = workspace({ 't/a.txt': { content: 'v1', mode: 0o640, mtime: 1_600_000_000 } }, { track_dirs: ['t'] })
    const cfg = loadConfig(w.config)
    await backup(cfg)
    const to = tmpdir('restore-')
    fs.mkdirSync(path.join(to, 't'))
    fs.writeFileSync(path.join(to, 't/a.txt'), 'mine')
    const r = await restore(w.dst, { to })
    expect(r.existing).toBe(1)
    expect(r.warnings.map((x) => x.code)).toEqual(['exists'])
    expect(fs.readFileSync(path.join(to, 't/a.txt'), 'utf8')).toBe('mine')
    const res = cli(['restore', '--dst', w.dst, '--to', to])
    expect(res.status).toBe(1)
    expect(res.stderr).toContain('--overwrite')

    const r2 = await restore(w.dst, { to, overwrite: true })
    expect(r2.restored).toBe(1)
    const st = fs.statSync(path.join(to, 't/a.txt'))
    expect(fs.readFileSync(path.join(to, 't/a.txt'), 'utf8')).toBe('v1')
    expect(st.mode & 0o7777).toBe(0o640)
    expect(st.mtimeMs).toBe(1_600_000_000_000)
    const stored = fs.statSync(path.join(w.dst, increments(w.dst)[0], 'track/t/a.txt'))
    expect(st.ino).not.toBe(stored.ino)
    fs.writeFileSync(path.join(to, 't/a.txt'), 'edited')
    expect(fs.readFileSync(path.join(w.dst, 'mirror/t/a.txt'), 'utf8')).toBe('v1')
  })

  it('hostile metadata and symlinks in the target never write outside --to', async () => {
    const w = workspace({ 't/a.txt': 'a', 't/sub/b.txt': 'b', 't/c.txt': 'c' }, { track_dirs: ['t'] })
    await backup(loadConfig(w.config))
    const name = increments(w.dst)[0]
    const metaFile = path.join(w.dst, name, `${name}.json`)
    const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'))
    const entry = meta.file_catalog['t/a.txt']
    const outside = tmpdir('outside-')
    meta.file_catalog['../../../../../../' + outside.slice(1) + '/evil.txt'] = entry
    meta.file_catalog[outside + '/abs.txt'] = entry
    meta.file_catalog['t/../../escape.txt'] = entry
    fs.writeFileSync(metaFile, JSON.stringify(meta))
    // The backup itself has a symlinked folder pointing outside (a hostile or damaged backup).
    fs.renameSync(path.join(w.dst, name, 'track/t/sub'), path.join(w.dst, name, 'track/t/sub.real'))
    fs.symlinkSync(outside, path.join(w.dst, name, 'track/t/sub'))
    fs.writeFileSync(path.join(outside, 'b.txt'), 'secret from outside')

    const to = tmpdir('restore-')
    // A symlink inside the target that points outside it.
    const elsewhere = tmpdir('elsewhere-')
    fs.mkdirSync(path.join(to, 't'))
    fs.symlinkSync(elsewhere, path.join(to, 't/sub'))
    const before = fs.readdirSync(outside)
    const r = await restore(w.dst, { to, at: name })
    const codes = r.warnings.map((x) => `${x.code}:${x.path}`).sort()
    expect(codes.filter((c) => c.startsWith('unsafe-path')).length).toBe(4) // three bad paths + the symlinked source folder
    expect(fs.readdirSync(outside)).toEqual(before)
    expect(fs.readdirSync(elsewhere)).toEqual([])
    expect(fs.readFileSync(path.join(to, 't/a.txt'), 'utf8')).toBe('a')
    expect(fs.readFileSync(path.join(to, 't/c.txt'), 'utf8')).toBe('c')

    // Same with the symlinked source fixed: the target's symlink is refused.
    fs.rmSync(path.join(w.dst, name, 'track/t/sub'))
    fs.renameSync(path.join(w.dst, name, 'track/t/sub.real'), path.join(w.dst, name, 'track/t/sub'))
    const r2 = await restore(w.dst, { to, at: name })
    expect(r2.warnings.map((x) => x.code)).toContain('symlink-in-target')
    expect(fs.readdirSync(elsewhere)).toEqual([])
  })

  it('refuses to restore into the backup folder, and bad --at values', async () => {
    const w = workspace({ 't/a.txt': 'a' }, { track_dirs: ['t'] })
    await backup(loadConfig(w.config))
    let r = cli(['restore', '--dst', w.dst, '--to', path.join(w.dst, 'x')])
    expect(r.status).toBe(64)
    expect(r.stderr).toContain('inside the backup folder')
    r = cli(['restore', '--dst', w.dst, '--to', tmpdir(), '--at', 'yesterday'])
    expect(r.status).toBe(64)
    expect(r.stderr).toContain('--at "yesterday"')
    r = cli(['restore', '--dst', w.dst, '--to', tmpdir(), '--at', '2001-01-01'])
    expect(r.status).toBe(64)
    expect(r.stderr).toContain('no increment at or before')
    // A date after the increment resolves to it.
    const to = tmpdir()
    r = cli(['restore', '--dst', w.dst, '--to', to, '--at', '2999-01-01', '--json'])
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout).at).toBe(increments(w.dst)[0])
    expect((await listIncrements(w.dst)).increments).toHaveLength(1)
  })
})

describe('history stays immutable through maintenance', () => {
  it('prune keeps every file of kept increments unchanged', async () => {
    const { w } = await randomHistory(99, 10)
    const before = snapshotHistory(w.dst)
    const names = increments(w.dst)
    await prune(w.dst, { keepLast: 3 })
    expectHistoryUnchanged(
      new Map([...before].filter(([p]) => !isMetadata(p) && names.slice(-3).some((n) => p.startsWith(n + '/')))),
      w.dst,
    )
  })
})
