import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { backup, deleteFiles, history, listIncrements, loadConfig, parseSize, parseTime, recreate, search, status } from '../js'
import { bump, cli, increments, listTree, readMeta, tmpdir, workspace } from './helpers'
import { expectIncrementsMatchMetadata, expectMetadataFilesPresent, sha } from './invariants'

const DAY = 86_400

/** Two increments: 8 files first, then one changed, one deleted, one new. */
async function sample() {
  const t0 = new Date(2024, 0, 10, 12, 0, 0).getTime() / 1000 // 2024-01-10 12:00 local
  const w = workspace(
    {
      'docs/report.pdf': { content: Buffer.alloc(200 * 1024, 1), mtime: t0 },
      'docs/notes.md': { content: 'notes', mtime: t0 + DAY },
      'docs/old/Report-2019.PDF': { content: 'old', mtime: t0 - 30 * DAY },
      'src/main.py': { content: 'print(1)', mtime: t0 + 5 * DAY },
      'src/util.py': { content: 'x = 1', mtime: t0 + 5 * DAY },
      'big.iso': { content: Buffer.alloc(3 * 1024 * 1024, 2), mtime: t0 + 20 * DAY },
      'docs2/other.md': { content: 'other', mtime: t0 },
      'plain/untracked.txt': 'u',
    },
    { track_dirs: ['docs', 'src', 'docs2'], track_files: ['big.iso'], include_dirs: ['plain'] },
  )
  const cfg = loadConfig(w.config)
  const s1 = await backup(cfg)
  fs.writeFileSync(path.join(w.src, 'src/main.py'), 'print(2)')
  fs.utimesSync(path.join(w.src, 'src/main.py'), t0 + 6 * DAY, t0 + 6 * DAY)
  fs.rmSync(path.join(w.src, 'docs/notes.md'))
  fs.writeFileSync(path.join(w.src, 'src/new.py'), 'new')
  fs.utimesSync(path.join(w.src, 'src/new.py'), t0 + 7 * DAY, t0 + 7 * DAY)
  const s2 = await backup(cfg)
  return { w, cfg, inc1: s1.increment!, inc2: s2.increment! }
}

describe('search', () => {
  it('masks, sizes, times and paths select exactly the matching versions', async () => {
    const { w, inc1, inc2 } = await sample()
    const found = async (opts: Parameters<typeof search>[1]) => (await search(w.dst, opts)).hits.map((h) => `${h.increment === inc1 ? 1 : 2}:${h.path}`)
    // A mask without wildcards means *M*, matched on the name or the path.
    expect(await found({ masks: ['report'] })).toEqual(['1:docs/report.pdf'])
    expect(await found({ masks: ['report'], ignoreCase: true })).toEqual(['1:docs/old/Report-2019.PDF', '1:docs/report.pdf'])
    expect(await found({ masks: ['*.py'] })).toEqual(['1:src/main.py', '1:src/util.py', '2:src/main.py', '2:src/new.py'])
    expect(await found({ masks: ['*.py', '*.md'] })).toEqual([
      '1:docs/notes.md',
      '1:docs2/other.md',
      '1:src/main.py',
      '1:src/util.py',
      '2:docs/notes.md',
      '2:src/main.py',
      '2:src/new.py',
    ])
    expect(await found({ masks: ['docs/*.md'] })).toEqual(['1:docs/notes.md', '2:docs/notes.md'])
    // Sizes (1024-based).
    expect(await found({ size: '>100K' })).toEqual(['1:big.iso', '1:docs/report.pdf'])
    expect(await found({ size: '>1M' })).toEqual(['1:big.iso'])
    expect(await found({ size: '200K' })).toEqual(['1:docs/report.pdf'])
    expect(await found({ size: '150K-250K' })).toEqual(['1:docs/report.pdf'])
    expect(await found({ size: '<4', masks: ['*.py'] })).toEqual(['2:src/new.py'])
    // Times (local dates of the mtime).
    expect(await found({ time: '2024-01-11' })).toEqual(['1:docs/notes.md', '2:docs/notes.md'])
    expect(await found({ time: '2024-01-15..2024-01-16' })).toEqual(['1:src/main.py', '1:src/util.py', '2:src/main.py'])
    expect(await found({ time: '>2024-01-17' })).toEqual(['1:big.iso', '2:src/new.py'])
    expect(await found({ time: '<2024-01-10' })).toEqual(['1:docs/old/Report-2019.PDF'])
    expect(await found({ time: '<=2024-01-10', masks: ['*.md'] })).toEqual(['1:docs2/other.md'])
    // Paths: folder prefix (not a string prefix), or a glob.
    expect(await found({ paths: ['docs'] })).toEqual(['1:docs/notes.md', '1:docs/old/Report-2019.PDF', '1:docs/report.pdf', '2:docs/notes.md'])
    expect(await found({ paths: ['docs/*.md'] })).toEqual(['1:docs/notes.md', '2:docs/notes.md'])
    expect(await found({ paths: ['**/*.PDF'] })).toEqual(['1:docs/old/Report-2019.PDF'])
    // Only the newest increments.
    expect(await found({ masks: ['*.py'], lastBackups: 1 })).toEqual(['2:src/main.py', '2:src/new.py'])
    // Deleted versions are marked.
    const r = await search(w.dst, { masks: ['notes'] })
    expect(r.hits.map((h) => [h.increment, h.category, h.op])).toEqual([
      [inc1, 'track', 'new'],
      [inc2, 'deleted', 'deleted'],
    ])
    expect(r.totals).toEqual({ increments: 2, files: 2, bytes: 10, tracked: 1, deleted: 1 })
  })

  it('prints results grouped by increment and folder, with totals', async () => {
    const { w, inc1, inc2 } = await sample()
    const r = cli(['search', '--dst', w.dst, '--mask', '*.py', '--mask', 'notes'])
    expect(r.status).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines).toContain(`${inc1} (3 files)`)
    expect(lines).toContain(`${inc2} (3 files)`)
    expect(lines).toContain('  src/')
    expect(r.stdout).toMatch(/✅ main\.py .* changed/)
    expect(r.stdout).toMatch(/❌ notes\.md .* deleted/)
    expect(r.stdout).toContain('6 file versions')
    expect(r.stdout).toContain('5 stored, 1 deleted')
    expect(r.stdout).not.toContain('\x1b[') // no colours when piped
    const full = cli(['search', '--dst', w.dst, '--mask', 'new.py', '--full-paths'])
    expect(full.stdout).toContain(path.join(w.dst, inc2, 'track/src/new.py'))
  })

  it('rejects invalid filters with exit 64 and a message naming the option', () => {
    const w = workspace({ 'a.txt': 'a' })
    fs.mkdirSync(w.dst)
    fs.mkdirSync(path.join(w.dst, 'mirror'))
    for (const [args, needle] of [
      [['--size', '>10X'], '--size ">10X"'],
      [['--size', '100K-10K'], 'range is empty'],
      [['--time', '2024-13-01'], '--time "2024-13-01"'],
      [['--time', '2024-02-30'], 'not a calendar date'],
      [['--time', 'yesterday'], '--time "yesterday"'],
      [['--last-backups', '0'], '--last-backups'],
      [['--mask', ''], '--mask'],
      [['--mask', '[a'], 'invalid pattern'],
      [['--path', '../x'], '--path'],
    ] as const) {
      const r = cli(['search', '--dst', w.dst, ...args])
      expect({ args, status: r.status }).toEqual({ args, status: 64 })
      expect(r.stderr).toContain(needle)
      expect(r.stdout).toBe('')
    }
    expect(() => parseSize('1.5G')).not.toThrow()
    expect(parseSize('1.5G')).toEqual({ min: 1.5 * 1024 ** 3, max: 1.5 * 1024 ** 3 })
    expect(parseTime('2024-01-15')).toEqual({ minMs: new Date(2024, 0, 15).getTime(), maxMs: new Date(2024, 0, 16).getTime() })
    // Not a backup folder: a clear error, and nothing created there.
    const empty = tmpdir()
    const r = cli(['search', '--dst', empty, '--mask', 'x'])
    expect(r.status).toBe(64)
    expect(r.stderr).toContain('not a backup folder')
    expect(fs.readdirSync(empty)).toEqual([])
    // Only a real increment name marks a backup folder (one parser, the core's): a date that does not
    // exist (February 30) or a name with trailing garbage is not one; a valid name with `_N` is.
    const fake = tmpdir()
    fs.mkdirSync(path.join(fake, 'backup_20240230_120000'))
    fs.mkdirSync(path.join(fake, 'backup_20240115_120000.old'))
    expect(cli(['list', '--dst', fake]).status).toBe(64)
    expect(fs.readdirSync(fake).sort()).toEqual(['backup_20240115_120000.old', 'backup_20240230_120000'])
    fs.mkdirSync(path.join(fake, 'backup_20240229_120000_2'))
    expect(cli(['list', '--dst', fake]).stderr).not.toContain('not a backup folder')
  })

  it('--generate-script restores files with hostile names exactly', async () => {
    const names = ['sp ace.txt', "quo'te.txt", 'dq"uote.txt', 'dollar $HOME.txt', 'back`tick`.txt', 'new\nline.txt', '-rf', '--help', 'back\\slash.txt', 'ünï cødé.txt', 'trail ']
    const tree: Record<string, string | { symlink: string }> = {}
    names.forEach((n, i) => (tree[`t/dir $x/${n}`] = `content ${i} of ${JSON.stringify(n)}`))
    tree['t/link'] = { symlink: '../somewhere else' }
    const w = workspace(tree, { track_dirs: ['t'] })
    await backup(loadConfig(w.config))
    const script = path.join(w.dir, 'restore.sh')
    const r = cli(['search', '--dst', w.dst, '--mask', '*', '--generate-script', script])
    expect(r.status).toBe(0)
    const target = tmpdir('script-')
    const run = spawnSync('sh', [script, target], { encoding: 'utf8', env: { ...process.env, HOME: '/nonexistent', x: 'EXPANDED' } })
    expect(run.stderr).toBe('')
    expect(run.status).toBe(0)
    const got = listTree(target)
    const want = listTree(w.src)
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
    for (const [p, info] of want) {
      expect({ p, sha: got.get(p)!.sha, kind: got.get(p)!.kind, mode: got.get(p)!.mode }).toEqual({ p, sha: info.sha, kind: info.kind, mode: info.mode })
      if (info.kind === 'file') expect({ p, mtime: got.get(p)!.mtimeMs }).toEqual({ p, mtime: info.mtimeMs })
    }
    // A second run leaves existing files alone and says so.
    const again = spawnSync('sh', [script, target], { encoding: 'utf8' })
    expect(again.status).toBe(0)
    expect(again.stderr).toContain('exists, left alone')
  })
})

describe('list, history, status', () => {
  it('lists increments with counts, sizes and the space each really holds', async () => {
    const { w, inc1, inc2 } = await sample()
    const l = await listIncrements(w.dst, { detailed: true })
    expect(l.increments.map((i) => [i.name, i.new, i.changed, i.deleted, i.files])).toEqual([
      [inc1, 7, 0, 0, 7],
      [inc2, 1, 1, 1, 3],
    ])
    const [a, b] = l.increments
    expect(a.bytes).toBe(200 * 1024 + 5 + 3 + 8 + 5 + 3 * 1024 * 1024 + 5)
    // inc1 alone holds the old main.py (the rest is shared with the mirror or inc2): freeing it frees one block + its metadata.
    expect(a.exclusiveBytes).toBeLessThan(64 * 1024)
    expect(a.diskBytes).toBeGreaterThan(3 * 1024 * 1024)
    expect(b.exclusiveBytes).toBeLessThan(64 * 1024)
    expect(l.totalDiskBytes).toBeGreaterThan(3 * 1024 * 1024)
    expect(l.totalDiskBytes).toBeLessThan(2 * 3 * 1024 * 1024) // big.iso counted once
    // An increment without metadata is listed, not hidden.
    fs.renameSync(path.join(w.dst, inc1, `${inc1}.json`), path.join(w.dir, 'saved.json'))
    const r = cli(['list', '--dst', w.dst])
    expect(r.status).toBe(1)
    expect(r.stdout).toMatch(new RegExp(`${inc1} .* missing`))
    expect(r.stderr).toContain(`the metadata file is missing; rebuild it with \`backup recreate --backup ${inc1}\``)
    const j = JSON.parse(cli(['list', '--dst', w.dst, '--json']).stdout)
    expect(j.increments[0]).toMatchObject({ name: inc1, hasMetadata: false })
  })

  it('history shows every version and the mirror copy', async () => {
    const { w, inc1, inc2 } = await sample()
    const h = await history(w.dst, 'src/main.py')
    expect(h.versions.map((v) => [v.increment, v.op, v.sha256, v.present])).toEqual([
      [inc1, 'new', sha('print(1)'), true],
      [inc2, 'changed', sha('print(2)'), true],
    ])
    expect(h.mirror).toMatchObject({ tracked: true, sha256: sha('print(2)'), present: true, size: 8 })
    const r = cli(['history', '--dst', w.dst, 'docs/notes.md'])
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/new/)
    expect(r.stdout).toMatch(/deleted/)
    expect(cli(['history', '--dst', w.dst, 'nope.txt']).status).toBe(1)
    const u = await history(w.dst, 'plain/untracked.txt')
    expect(u.versions).toEqual([])
    expect(u.mirror).toMatchObject({ tracked: false })
  })

  it('status reports the last run, an interrupted run, and a mirror that disagrees with the state', async () => {
    const { w, cfg } = await sample()
    let s = await status(w.dst)
    expect(s.lastRun).toMatchObject({ result: 'ok' })
    expect(s.state.agrees).toBe(true)
    expect(cli(['status', '--dst', w.dst]).status).toBe(0)
    // Kill a run half-way.
    fs.writeFileSync(path.join(w.src, 'src/k.py'), 'k')
    fs.writeFileSync(path.join(w.src, 'src/l.py'), 'l')
    const killed = cli(['run', '-c', w.config, '-q'], { env: { AXIOMATIC_FAULT_AFTER_OPS: '3' } })
    expect(killed.signal).toBe('SIGKILL')
    s = await status(w.dst)
    expect(s.leftovers.interruptedRun).not.toBeNull()
    expect(s.lock?.alive).toBe(false)
    const r = cli(['status', '--dst', w.dst])
    expect(r.status).toBe(1)
    expect(r.stdout).toContain('interrupted run')
    await backup(cfg)
    s = await status(w.dst)
    expect(s.leftovers.interruptedRun).toBeNull()
    expect(s.lock).toBeNull()
    // Someone edits the mirror by hand.
    fs.appendFileSync(path.join(w.dst, 'mirror/plain/untracked.txt'), 'x')
    s = await status(w.dst)
    expect(s.state.agrees).toBe(false)
    expect(s.state.differing).toEqual(['plain/untracked.txt'])
    expect(cli(['status', '--dst', w.dst]).stdout).toContain('disagrees')
  })
})

describe('recreate and delete', () => {
  it('recreate rebuilds missing metadata and the mirror state; the next run sees no change', async () => {
    const { w, cfg, inc1, inc2 } = await sample()
    const m1 = readMeta(w.dst, inc1)
    const m2 = readMeta(w.dst, inc2)
    fs.rmSync(path.join(w.dst, inc1, `${inc1}.json`))
    fs.writeFileSync(path.join(w.dst, inc2, `${inc2}.json`), '{ broken')
    fs.rmSync(path.join(w.dst, '.axiomatic/state.jsonl'))
    const r = await recreate(w.dst)
    expect(r.rebuilt).toEqual([inc1, inc2])
    expect(r.stateRebuilt).toBe(true)
    for (const [name, before] of [
      [inc1, m1],
      [inc2, m2],
    ] as const) {
      const after = readMeta(w.dst, name)
      expect(after.origin).toBe('recreated')
      const strip = (m: typeof before) =>
        Object.fromEntries(Object.entries(m.file_catalog).map(([p, e]) => [p, { size: e.size, mtime_ns: e.mtime_ns, mode: e.mode, category: e.category, op: e.op, sha256: e.sha256 }]))
      expect(strip(after)).toEqual(strip(before))
      expect(after.summary).toMatchObject({ new: before.summary.new, changed: before.summary.changed, deleted: before.summary.deleted })
    }
    expectIncrementsMatchMetadata(w.dst)
    const s = await backup(cfg)
    expect(s.increment).toBeNull()
    expect(s.mirrorUpdated + s.new + s.changed + s.deleted).toBe(0)
    // --force rebuilds metadata that was fine; --backup limits it.
    const f = cli(['recreate', '--dst', w.dst, '--backup', inc2, '--force', '--json'])
    expect(JSON.parse(f.stdout)).toMatchObject({ rebuilt: [inc2], kept: [inc1] })
    expect(cli(['recreate', '--dst', w.dst, '--backup', 'backup_20000101_000000']).status).toBe(64)
  })

  it('delete removes matching files from one increment and its metadata, and lists them', async () => {
    const { w, inc1, inc2 } = await sample()
    const dry = await deleteFiles(w.dst, inc1, { masks: ['*.iso', '*.PDF'], dryRun: true })
    expect(dry.removed.map((r) => r.path)).toEqual(['big.iso', 'docs/old/Report-2019.PDF'])
    expect(fs.existsSync(path.join(w.dst, inc1, 'track/big.iso'))).toBe(true)
    const r = cli(['delete', inc1, '--dst', w.dst, '--mask', '*.iso', '--mask', '*.PDF'])
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('removed track/big.iso')
    expect(r.stdout).toContain('2 files')
    expect(fs.existsSync(path.join(w.dst, inc1, 'track/big.iso'))).toBe(false)
    expect(fs.existsSync(path.join(w.dst, inc1, 'track/docs/old'))).toBe(false) // emptied folder removed
    expect(Object.keys(readMeta(w.dst, inc1).file_catalog)).not.toContain('big.iso')
    expect(readMeta(w.dst, inc1).summary.total).toBe(5)
    expect(fs.existsSync(path.join(w.dst, 'mirror/big.iso'))).toBe(true) // the mirror is never touched
    expectIncrementsMatchMetadata(w.dst)
    expect(cli(['delete', inc2, '--dst', w.dst]).status).toBe(64) // no mask
    expect(cli(['delete', 'backup_19990101_000000', '--dst', w.dst, '--mask', 'x']).status).toBe(64)
  })

  it('a killed delete is finished by the next command; metadata never lists a removed file', async () => {
    for (let n = 1; n <= 3; n++) {
      const { w, inc1 } = await sample()
      const r = cli(['delete', inc1, '--dst', w.dst, '--mask', '*.py'], { env: { AXIOMATIC_FAULT_AFTER_OPS: String(n) } })
      expect(r.signal).toBe('SIGKILL')
      const cat = readMeta(w.dst, inc1).file_catalog
      for (const [p, e] of Object.entries(cat)) expect(fs.existsSync(path.join(w.dst, inc1, e.category, p)), p).toBe(true)
      const again = cli(['recreate', '--dst', w.dst])
      expect(again.status).toBe(0)
      expectIncrementsMatchMetadata(w.dst)
    }
  })
})

describe('prune crash safety', () => {
  it('a prune killed at any step is finished by the next prune; kept points in time stay intact', async () => {
    let completed = false
    for (let n = 1; n <= 40 && !completed; n++) {
      const w = workspace({ 't/a.txt': 'a0', 't/b.txt': 'b0', 't/c.txt': 'c0' }, { track_dirs: ['t'] })
      const cfg = loadConfig(w.config)
      await backup(cfg)
      for (let i = 1; i <= 4; i++) {
        fs.writeFileSync(path.join(w.src, 't/a.txt'), `a${i}`)
        bump(path.join(w.src, 't/a.txt'))
        if (i === 2) fs.rmSync(path.join(w.src, 't/b.txt'))
        await backup(cfg)
      }
      const names = increments(w.dst)
      const r = cli(['prune', '--dst', w.dst, '--keep-last', '2'], { env: { AXIOMATIC_FAULT_AFTER_OPS: String(n) } })
      if (r.status === 0) {
        completed = true // fewer steps than n: every step has been a kill point
        break
      }
      expect(r.signal).toBe('SIGKILL')
      // Every increment still listed is complete: each file its metadata lists is there, intact
      // (a carried link may already be there before the metadata that lists it).
      expectMetadataFilesPresent(w.dst)
      const done = cli(['prune', '--dst', w.dst, '--keep-last', '2', '--json'])
      expect(done.status).toBe(0)
      expect(increments(w.dst)).toEqual(names.slice(-2))
      expect(fs.existsSync(path.join(w.dst, '.axiomatic/trash'))).toBe(false)
      expect(fs.existsSync(path.join(w.dst, '.axiomatic/prune.json'))).toBe(false)
      expectIncrementsMatchMetadata(w.dst)
      const to = tmpdir()
      const rr = cli(['restore', '--dst', w.dst, '--to', to, '--at', names[names.length - 2], '--json'])
      expect(rr.status).toBe(0)
      expect(fs.readFileSync(path.join(to, 't/a.txt'), 'utf8')).toBe('a3')
      expect(fs.readFileSync(path.join(to, 't/c.txt'), 'utf8')).toBe('c0')
      expect(fs.existsSync(path.join(to, 't/b.txt'))).toBe(false)
    }
    expect(completed).toBe(true)
  })
})

describe('prune and the catalog index', () => {
  it('decides from the metadata heads without building the index; an existing index drops what was removed', async () => {
    const { w, cfg, inc1, inc2 } = await sample()
    fs.writeFileSync(path.join(w.src, 'src/util.py'), 'x = 2')
    bump(path.join(w.src, 'src/util.py'))
    const inc3 = (await backup(cfg)).increment!
    const ix = path.join(w.dst, '.axiomatic/index.sqlite')
    expect(fs.existsSync(ix)).toBe(false)
    const r = cli(['prune', '--dst', w.dst, '--remove', inc1, '--json'])
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout).removed).toEqual([inc1])
    // Names and times were all the decision needed: no index was built for it.
    expect(fs.existsSync(ix)).toBe(false)
    expect(increments(w.dst)).toEqual([inc2, inc3])
    expectIncrementsMatchMetadata(w.dst)
    // With an index (built by the first reader), prune brings it up to date.
    expect((await listIncrements(w.dst)).increments.map((i) => i.name)).toEqual([inc2, inc3])
    expect(fs.existsSync(ix)).toBe(true)
    const r2 = cli(['prune', '--dst', w.dst, '--keep-last', '1', '--json'])
    expect(r2.status).toBe(0)
    expect(JSON.parse(r2.stdout).removed).toEqual([inc2])
    expect(fs.existsSync(path.join(w.dst, '.axiomatic/trash'))).toBe(false)
    expect((await listIncrements(w.dst)).increments.map((i) => i.name)).toEqual([inc3])
    expectIncrementsMatchMetadata(w.dst)
  })
})
