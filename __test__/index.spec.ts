/**
 * The catalog index (`dst/.axiomatic/index.sqlite`, issue 13): its answers equal those of the direct reading of
 * every metadata file on random histories made by the engine and on a folder of the original backup.py; it is
 * rebuilt when deleted, stale or damaged; `run`, `prune`, `delete`, `recreate` keep it up to date; `backup diff`.
 */
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'

import { describe, expect, it } from 'vitest'

import { backup, deleteFiles, diff, history, listIncrements, loadConfig, prune, recreate, removeIncrements, restore, search, timeline, tree } from '../js'
import { native } from '../js/native'
import { bump, cli, increments, readMeta, rng, tmpdir, workspace, writeConfig, writeTree } from './helpers'
import { needs } from './tools'

/** Runs `rounds` backups with random changes, deletions, re-creations, mode changes under t/, and an untracked file. */
async function randomHistory(seed: number, rounds = 10) {
  const w = workspace({ 't/keep.txt': 'stable', 'plain/readme.txt': 'untracked v1', 'plain/sub/u.txt': 'u' }, { track_dirs: ['t'], include_dirs: ['plain'] })
  const cfg = loadConfig(w.config)
  const rand = rng(seed)
  const names = ['a.txt', 'b c.txt', 'd/e.bin', 'd/f/g.txt', 'd/f/h.md', "it's.txt", 'h.txt', 'link', 'x/y/z.txt']
  for (let round = 0; round < rounds; round++) {
    const changes = 1 + Math.floor(rand() * 4)
    for (let k = 0; k < changes; k++) {
      const name = names[Math.floor(rand() * names.length)]
      const p = path.join(w.src, 't', name)
      const exists = fs.lstatSync(p, { throwIfNoEntry: false }) !== undefined
      const r = rand()
      if (exists && r < 0.35) {
        fs.rmSync(p)
      } else if (name === 'link') {
        if (exists) fs.rmSync(p)
        fs.symlinkSync(`target-${round}-${k}`, p)
      } else {
        fs.mkdirSync(path.dirname(p), { recursive: true })
        fs.writeFileSync(p, `${name} round ${round} change ${k}\n${'line\n'.repeat(Math.floor(rand() * 50))}`)
        if (rand() < 0.3) fs.chmodSync(p, rand() < 0.5 ? 0o600 : 0o755)
        bump(p)
      }
    }
    fs.writeFileSync(path.join(w.src, 'plain/readme.txt'), `untracked v${round + 2}`)
    bump(path.join(w.src, 'plain/readme.txt'))
    const s = await backup(cfg)
    expect(s.warnings).toEqual([])
  }
  return { w, cfg }
}

/** One question, answered by the index and by the direct reading. */
async function both(dst: string, q: Record<string, unknown>): Promise<[unknown, unknown]> {
  const a = JSON.parse(await native().queryBackup(dst, q as never, true))
  const b = JSON.parse(await native().queryBackup(dst, q as never, false))
  return [a, b]
}

const FILTER = { masks: [], ignoreCase: false, pathPrefixes: [], pathGlobs: [] }

/** Every question the index answers, on every increment, equal to the direct reading. */
async function expectIndexEqualsDirect(dst: string, paths: string[], folders: string[]) {
  const names = increments(dst)
  const check = async (q: Record<string, unknown>) => {
    const [a, b] = await both(dst, q)
    expect(a, JSON.stringify(q)).toEqual(b)
  }
  await check({ what: 'list' })
  for (const filter of [
    FILTER,
    { ...FILTER, masks: ['*.txt'] },
    { ...FILTER, masks: ['*G*'], ignoreCase: true },
    { ...FILTER, pathPrefixes: ['t/d'], sizeMin: 10 },
    { ...FILTER, pathGlobs: ['t/*'], last: 3 },
    { ...FILTER, mtimeMinMs: 1_700_000_100_000, sizeMax: 200 },
  ]) {
    await check({ what: 'search', filter })
  }
  for (const p of paths) await check({ what: 'history', path: p })
  for (const at of [undefined, ...names]) {
    for (const f of folders) await check({ what: 'tree', path: f, at })
    await check({ what: 'restore-at', at: at ?? names.at(-1) })
    await check({ what: 'restore-at', at: at ?? names.at(-1), paths: ['t/d'] })
  }
  for (let i = 0; i < names.length; i++) {
    for (const j of [i + 1, names.length - 1, 0]) {
      if (j >= names.length) continue
      await check({ what: 'diff', from: names[i], to: names[j] })
      await check({ what: 'diff', from: names[i], to: names[j], paths: ['t/d', 't/a.txt'] })
    }
  }
}

const indexFile = (dst: string) => path.join(dst, '.axiomatic', 'index.sqlite')
const PATHS = ['t/keep.txt', 't/a.txt', 't/b c.txt', 't/d/e.bin', 't/d/f/g.txt', "t/it's.txt", 't/link', 't/x/y/z.txt', 'plain/readme.txt', 'nope']
const FOLDERS = ['', 't', 't/d', 't/d/f', 'plain', 'nope']

describe('the catalog index answers as the metadata files', () => {
  it('on random histories made by the engine, also after prune, delete and recreate', async () => {
    for (const seed of [1301, 2602]) {
      const { w } = await randomHistory(seed)
      await expectIndexEqualsDirect(w.dst, PATHS, FOLDERS)
      // The library and the CLI read the index and give the same answers as before it existed.
      const viaIndex = await search(w.dst, { masks: ['*.txt'] })
      process.env.AXIOMATIC_INDEX = 'off'
      try {
        expect(await search(w.dst, { masks: ['*.txt'] })).toEqual(viaIndex)
      } finally {
        delete process.env.AXIOMATIC_INDEX
      }
      const names = increments(w.dst)
      await removeIncrements(w.dst, [names[1], names[4]])
      await expectIndexEqualsDirect(w.dst, PATHS, FOLDERS)
      const d = await deleteFiles(w.dst, increments(w.dst)[2], { masks: ['*.txt'] })
      expect(d.removed.length).toBeGreaterThanOrEqual(0)
      await expectIndexEqualsDirect(w.dst, PATHS, FOLDERS)
    }
  }, 600_000)

  it.skipIf(needs('backup.py format fixtures', ['python3']))('on a folder of the original backup.py, before and after adoption', async () => {
    const dir = tmpdir('index-orig-')
    const src = path.join(dir, 'src')
    const dst = path.join(dir, 'dst')
    const GEN = path.join(__dirname, 'original_backup_format.py')
    const DAY = 86_400
    const t0 = Math.floor(Date.now() / 1000) - 4 * DAY
    const round = (now: number) => {
      const job = path.join(dir, `job-${now}.json`)
      fs.writeFileSync(job, JSON.stringify({ src, dst, track: ['docs'], now, recreated: false }))
      const r = spawnSync('python3', [GEN, job], { env: { ...process.env, TZ: 'UTC' }, encoding: 'utf8' })
      if (r.status !== 0) throw new Error(r.stderr)
    }
    writeTree(src, { 'docs/a.txt': 'a1\n', 'docs/b.txt': 'b\n', 'docs/sub/c.txt': 'c\n', 'notes/x.txt': 'x\n' })
    round(t0)
    writeTree(src, { 'docs/a.txt': 'a2, longer\n' })
    fs.unlinkSync(path.join(src, 'docs/b.txt'))
    round(t0 + DAY)
    writeTree(src, { 'docs/sub/d.txt': 'd\n' })
    round(t0 + 2 * DAY)
    const paths = ['docs/a.txt', 'docs/b.txt', 'docs/sub/c.txt', 'docs/sub/d.txt', 'notes/x.txt']
    const folders = ['', 'docs', 'docs/sub', 'notes']
    expect(increments(dst)).toHaveLength(3)
    await expectIndexEqualsDirect(dst, paths, folders)
    expect(fs.existsSync(indexFile(dst))).toBe(true)
    // The deletion the original records only in deleted/ is indexed too.
    const h = await history(dst, 'docs/b.txt')
    expect(h.versions.map((v) => v.op)).toEqual(['new', 'deleted'])
    const at1 = await tree(dst, { path: 'docs', at: increments(dst)[1] })
    expect(at1.entries.map((e) => e.name)).toEqual(['a.txt', 'sub'])
    // Adopted by a run of ours: still the same answers.
    const config = writeConfig(dir, { src, dst, track_dirs: ['docs'], include_dirs: ['notes'] })
    writeTree(src, { 'docs/e.txt': 'e\n' })
    const s = await backup(loadConfig(config))
    expect(s.increment).toBeTruthy()
    await expectIndexEqualsDirect(dst, [...paths, 'docs/e.txt'], folders)
  }, 600_000)
})

describe('the index is derived: rebuilt when missing, stale or damaged; kept up to date', () => {
  it('rebuilt when deleted, when increments come or go behind its back, when garbage is written into it', async () => {
    const { w, cfg } = await randomHistory(77, 6)
    const before = await listIncrements(w.dst)
    expect(fs.existsSync(indexFile(w.dst))).toBe(true)
    // Deleted: built again on first use.
    fs.rmSync(indexFile(w.dst))
    expect(await listIncrements(w.dst)).toEqual(before)
    expect(fs.existsSync(indexFile(w.dst))).toBe(true)
    // An increment removed behind its back (rm -rf), and one added (a copy under a later name, as another tool would).
    const names = increments(w.dst)
    fs.rmSync(path.join(w.dst, names[2]), { recursive: true })
    const later = 'backup_20991231_000000'
    fs.cpSync(path.join(w.dst, names.at(-1)!), path.join(w.dst, later), { recursive: true })
    fs.renameSync(path.join(w.dst, later, `${names.at(-1)}.json`), path.join(w.dst, later, `${later}.json`))
    const meta = readMeta(w.dst, later)
    meta.backup_name = later
    meta.timestamp = '2099-12-31T00:00:00.000Z'
    fs.writeFileSync(path.join(w.dst, later, `${later}.json`), JSON.stringify(meta, null, 2))
    const l = await listIncrements(w.dst)
    expect(l.increments.map((i) => i.name)).toEqual([...names.filter((n) => n !== names[2]), later])
    await expectIndexEqualsDirect(w.dst, PATHS, FOLDERS)
    // Metadata rewritten in place (same name): re-read.
    const m2 = readMeta(w.dst, later)
    delete (m2.file_catalog as Record<string, unknown>)['t/keep.txt']
    const first = Object.keys(m2.file_catalog)[0]
    fs.writeFileSync(path.join(w.dst, later, `${later}.json`), JSON.stringify(m2, null, 2))
    const h = await history(w.dst, first)
    expect(h.versions.at(-1)!.increment).toBe(later)
    await expectIndexEqualsDirect(w.dst, PATHS, FOLDERS)
    fs.rmSync(path.join(w.dst, later), { recursive: true })
    // Garbage written over the file: detected and rebuilt, never trusted.
    for (const offset of [0, 4096, 20_000]) {
      const size = fs.statSync(indexFile(w.dst)).size
      const fd = fs.openSync(indexFile(w.dst), 'r+')
      fs.writeSync(fd, Buffer.alloc(Math.min(4096, Math.max(1, size - offset)), 0xa5), 0, undefined, Math.min(offset, size - 1))
      fs.closeSync(fd)
      await expectIndexEqualsDirect(w.dst, PATHS, FOLDERS)
      expect((await listIncrements(w.dst)).increments.map((i) => i.name)).toEqual(increments(w.dst))
    }
    // A file that is not a database at all.
    fs.writeFileSync(indexFile(w.dst), 'not sqlite')
    expect((await listIncrements(w.dst)).increments.map((i) => i.name)).toEqual(increments(w.dst))
    expect(fs.readFileSync(indexFile(w.dst)).subarray(0, 15).toString()).toBe('SQLite format 3')
    // A run after all this: the index follows, no warning.
    fs.writeFileSync(path.join(w.src, 't/new-file.txt'), 'new')
    const s = await backup(cfg)
    expect(s.warnings).toEqual([])
    expect((await history(w.dst, 't/new-file.txt')).versions).toHaveLength(1)
  }, 300_000)

  it('run, prune, delete and recreate update it (the next read finds it fresh); a read-only index never fails a run', async () => {
    const { w, cfg } = await randomHistory(99, 5)
    await listIncrements(w.dst) // built
    const stamp = () => fs.statSync(indexFile(w.dst)).mtimeMs
    const fresh = async () => {
      // A fresh index is not written by a read.
      const t = stamp()
      await listIncrements(w.dst)
      expect(stamp()).toBe(t)
    }
    fs.writeFileSync(path.join(w.src, 't/after.txt'), 'after')
    let t = stamp()
    await backup(cfg)
    expect(stamp()).not.toBe(t)
    await fresh()
    expect((await history(w.dst, 't/after.txt')).versions).toHaveLength(1)
    t = stamp()
    await prune(w.dst, { keepLast: 3 })
    expect(stamp()).not.toBe(t)
    await fresh()
    await expectIndexEqualsDirect(w.dst, PATHS, FOLDERS)
    t = stamp()
    await deleteFiles(w.dst, increments(w.dst)[0], { masks: ['*'] })
    expect(stamp()).not.toBe(t)
    await fresh()
    await expectIndexEqualsDirect(w.dst, PATHS, FOLDERS)
    const first = increments(w.dst)[0]
    fs.rmSync(path.join(w.dst, first, `${first}.json`))
    await recreate(w.dst, { backup: first })
    await fresh()
    await expectIndexEqualsDirect(w.dst, PATHS, FOLDERS)
    // The index cannot be written (a folder stands where it should be): the run succeeds with a warning.
    fs.rmSync(indexFile(w.dst))
    await listIncrements(w.dst)
    fs.rmSync(indexFile(w.dst))
    fs.mkdirSync(indexFile(w.dst))
    fs.writeFileSync(path.join(w.src, 't/after2.txt'), 'after 2')
    const s = await backup(cfg)
    expect(s.increment).toBeTruthy()
    expect(s.warnings.map((x) => x.code)).toEqual(['index-not-updated'])
    // Readers fall back to the metadata files and still answer.
    expect((await history(w.dst, 't/after2.txt')).versions).toHaveLength(1)
    fs.rmdirSync(indexFile(w.dst))
  }, 300_000)

  it('timeline: list plus the bytes only each increment holds, from the catalogs', async () => {
    const w = workspace({ 't/a.txt': 'a'.repeat(100), 't/b.txt': 'b'.repeat(10) }, { track_dirs: ['t'] })
    const cfg = loadConfig(w.config)
    await backup(cfg)
    fs.writeFileSync(path.join(w.src, 't/a.txt'), 'A'.repeat(300))
    bump(path.join(w.src, 't/a.txt'))
    await backup(cfg)
    fs.rmSync(path.join(w.src, 't/b.txt'))
    await backup(cfg)
    const tl = await timeline(w.dst)
    // 1st: a (100) replaced by the 2nd → only the 1st holds it; b (10) is deleted by the 3rd, whose deleted/ links it too.
    expect(tl.increments.map((i) => i.exclusiveBytes)).toEqual([100, 0, 0])
    const l = await listIncrements(w.dst)
    expect(tl.increments.map(({ exclusiveBytes: _x, ...rest }) => rest)).toEqual(l.increments.map(({ exclusiveBytes: _x, ...rest }) => rest))

    // Many readers at once in one process (the page asks for several views together) with no index yet:
    // one builds it, the others wait for it; none falls back to the metadata (no exclusive bytes there).
    // Two builds in one process once shared a temp file, and the loser answered without the index.
    for (let round = 0; round < 3; round++) {
      fs.rmSync(path.join(w.dst, '.axiomatic/index.sqlite'), { force: true })
      const all = await Promise.all(Array.from({ length: 6 }, () => timeline(w.dst)))
      for (const t of all) expect(t.increments.map((i) => i.exclusiveBytes)).toEqual([100, 0, 0])
    }
  })
})

describe('backup diff', () => {
  async function history3() {
    const w = workspace({ 't/notes.md': 'one\ntwo\nthree\n', 't/gone.txt': 'bye\n', 't/bin.dat': { content: Buffer.from([0, 1, 2, 3]) } }, { track_dirs: ['t'] })
    const cfg = loadConfig(w.config)
    await backup(cfg)
    fs.writeFileSync(path.join(w.src, 't/notes.md'), 'one\nTWO\nthree\nfour\n')
    bump(path.join(w.src, 't/notes.md'))
    fs.rmSync(path.join(w.src, 't/gone.txt'))
    fs.writeFileSync(path.join(w.src, 't/new.txt'), 'hello\n')
    fs.writeFileSync(path.join(w.src, 't/bin.dat'), Buffer.from([0, 9, 9, 9, 9]))
    bump(path.join(w.src, 't/bin.dat'))
    await backup(cfg)
    return { w, cfg, names: increments(w.dst) }
  }

  it('text, --json (documented schema), --patch, paths, and the library', async () => {
    const { w, names } = await history3()
    const j = cli(['diff', '--dst', w.dst, '--json'])
    expect(j.status, j.stderr).toBe(0)
    const d = JSON.parse(j.stdout)
    expect(Object.keys(d).sort()).toEqual(['added', 'addedBytes', 'changed', 'changedBytes', 'from', 'items', 'removed', 'removedBytes', 'to'])
    expect([d.from, d.to]).toEqual(names)
    expect(d.items.map((i: { path: string; status: string }) => [i.path, i.status])).toEqual([
      ['t/bin.dat', 'changed'],
      ['t/gone.txt', 'removed'],
      ['t/new.txt', 'added'],
      ['t/notes.md', 'changed'],
    ])
    expect([d.added, d.removed, d.changed, d.addedBytes, d.removedBytes, d.changedBytes]).toEqual([1, 1, 2, 6, 4, 1 + 5])
    const notes = d.items.find((i: { path: string }) => i.path === 't/notes.md')
    expect(Object.keys(notes.to).sort()).toEqual(['increment', 'kind', 'mode', 'mtimeNs', 'sha256', 'size'])
    expect(notes.from.sha256).toBe(readMeta(w.dst, names[0]).file_catalog['t/notes.md'].sha256)
    expect(notes.to.sha256).toBe(readMeta(w.dst, names[1]).file_catalog['t/notes.md'].sha256)
    expect(await diff(w.dst)).toEqual(d)
    // Text output.
    const t = cli(['diff', '--dst', w.dst])
    expect(t.status).toBe(0)
    expect(t.stdout).toContain('1 added, 1 removed, 2 changed')
    expect(t.stdout).toMatch(/^\+ t\/new\.txt/m)
    expect(t.stdout).toMatch(/^- t\/gone\.txt/m)
    expect(t.stdout).toMatch(/^~ t\/notes\.md/m)
    // --patch: a unified diff of the two stored versions; binary files say so.
    const p = cli(['diff', '--dst', w.dst, '--patch', 't/notes.md', 't/bin.dat'])
    expect(p.status, p.stderr).toBe(0)
    expect(p.stdout).toContain('--- a/t/notes.md')
    expect(p.stdout).toContain('+++ b/t/notes.md')
    expect(p.stdout).toMatch(/^-two$/m)
    expect(p.stdout).toMatch(/^\+TWO$/m)
    expect(p.stdout).toMatch(/^\+four$/m)
    expect(p.stdout).toContain('Binary files a/t/bin.dat and b/t/bin.dat differ')
    expect(p.stdout).not.toContain('gone.txt')
    const pj = JSON.parse(cli(['diff', '--dst', w.dst, '--patch', '--json', 't/new.txt']).stdout)
    expect(pj.items).toHaveLength(1)
    expect(pj.patches['t/new.txt']).toContain('+hello')
    // The same diff backwards, and by date.
    const back = JSON.parse(cli(['diff', '--dst', w.dst, '--from', names[1], '--to', names[0], '--json']).stdout)
    expect(back.items.map((i: { status: string }) => i.status)).toEqual(['changed', 'added', 'removed', 'changed'])
    const byDate = JSON.parse(cli(['diff', '--dst', w.dst, '--from', names[0], '--to', new Date(Date.now() + 86_400_000).toISOString(), '--json']).stdout)
    expect(byDate.items).toEqual(d.items)
    // --to an increment with nothing changed after --from: nothing.
    const same = JSON.parse(cli(['diff', '--dst', w.dst, '--from', names[1], '--to', names[1], '--json']).stdout)
    expect(same.items).toEqual([])
    // Without the index: the same.
    const off = cli(['diff', '--dst', w.dst, '--json'], { env: { AXIOMATIC_INDEX: 'off' } })
    expect(JSON.parse(off.stdout)).toEqual(d)
  })

  it('bad --from/--to or paths: a clear error, exit 64', async () => {
    const { w } = await history3()
    for (const [args, msg] of [
      [['--from', 'backup_20000101_000000'], /--from backup_20000101_000000: there is no such increment/],
      [['--to', 'yesterday-ish'], /--to "yesterday-ish": use an increment name/],
      [['--from', '1990-01-01'], /--from 1990-01-01: there is no increment at or before that time/],
      [['--to', '2024-02-30'], /--to "2024-02-30": 2024-02-30 is not a calendar date/],
      [['../etc'], /give a path relative to the backed-up folder/],
    ] as const) {
      const r = cli(['diff', '--dst', w.dst, ...args])
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(64)
      expect(r.stderr + r.stdout).toMatch(msg)
      const j = cli(['diff', '--dst', w.dst, '--json', ...args])
      expect(j.status).toBe(64)
      expect(JSON.parse(j.stdout).error.message).toMatch(msg)
    }
    // One increment only: nothing to compare it with by default.
    const one = workspace({ 't/a': 'a' }, { track_dirs: ['t'] })
    await backup(loadConfig(one.config))
    const r = cli(['diff', '--dst', one.dst])
    expect(r.status).toBe(64)
    expect(r.stderr).toMatch(/no increment before/)
  })

  it('tree at every point in time lists exactly what restore --at would restore, and the latest state the mirror', async () => {
    const { w } = await randomHistory(515, 8)
    /** Every file under `dir` at `at`, walking the tree view folder by folder. */
    const walk = async (at: string | undefined, dir = ''): Promise<Map<string, [string, number]>> => {
      const out = new Map<string, [string, number]>()
      const t = await tree(w.dst, { path: dir, at })
      for (const e of t.entries) {
        if (e.dir) for (const [p, v] of await walk(at, e.path)) out.set(p, v)
        else out.set(e.path, [e.from!, e.size!])
      }
      return out
    }
    for (const at of [...increments(w.dst), undefined]) {
      const r = await restore(w.dst, { to: tmpdir('rt-'), at, dryRun: true })
      const expected = new Map(r.items.map((i) => [i.path, [i.from, i.size] as [string, number]]))
      expect(await walk(at), `at ${at}`).toEqual(expected)
    }
  }, 300_000)

  it('restore --at through the index gives the same files as without it', async () => {
    const { w } = await randomHistory(4242, 6)
    for (const at of increments(w.dst)) {
      const a = tmpdir('ri-')
      const b = tmpdir('rd-')
      const ra = await restore(w.dst, { to: a, at, dryRun: true })
      process.env.AXIOMATIC_INDEX = 'off'
      try {
        const rb = await restore(w.dst, { to: b, at, dryRun: true })
        const key = (x: { path: string }) => x.path
        expect([...ra.items].sort((x, y) => key(x).localeCompare(key(y)))).toEqual([...rb.items].sort((x, y) => key(x).localeCompare(key(y))))
        expect({ ...ra, items: [] }).toEqual({ ...rb, items: [] })
      } finally {
        delete process.env.AXIOMATIC_INDEX
      }
    }
  }, 300_000)
})
