/**
 * Backup folders made by the original backup.py, both ways (issue 10, part 2):
 * its folders (mirror.json, version-"1.0" increments named in local time,
 * mirror files overwritten in place) work in every command as they are and
 * are adopted by `backup run`; our increments carry the original's keys so
 * its backup_tool.py lists and searches them with real counts.
 *
 * The fixtures are made by `original_backup_format.py` (ours, written from
 * the format's description), 4 rounds, in a time zone 9 hours ahead of UTC.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { cli, writeTree } from './helpers'
import { DAY, TZ, originalFolder } from './original-backup'
import { needs } from './tools'

const env = { TZ }
const skip = needs('backup.py format fixtures', ['python3'])

function json(args: string[]) {
  const r = cli([...args, '--json'], { env })
  let out: any
  try {
    out = JSON.parse(r.stdout)
  } catch {
    throw new Error(`${args.join(' ')}: exit ${r.status}\n${r.stdout}\n${r.stderr}`)
  }
  return { status: r.status, out, stderr: r.stderr }
}

const iso = (t: number) => new Date(t * 1000).toISOString()
const metaFile = (dst: string, name: string) => path.join(dst, name, `${name}.json`)

describe.skipIf(skip)('backup folders made by backup.py', () => {
  it('the fixture is in the original format (names in local time, mirror.json, version "1.0", in-place overwrite)', () => {
    const f = originalFolder()
    expect(fs.readdirSync(f.dst).filter((n) => n.startsWith('backup_')).sort()).toEqual([...f.names].sort())
    const m = JSON.parse(fs.readFileSync(path.join(f.dst, 'mirror.json'), 'utf8'))
    expect(Object.keys(m).sort()).toEqual(['docs/a.txt', 'docs/c.txt', 'docs/d.txt', 'notes/x.txt', 'notes/z.txt'])
    expect(m['docs/a.txt'].tracked).toBe(true)
    expect(m['notes/x.txt'].tracked).toBe(false)
    expect(fs.existsSync(path.join(f.dst, 'mirror/notes/y.txt'))).toBe(true) // stale, unlisted
    const m1 = JSON.parse(fs.readFileSync(metaFile(f.dst, f.names[0]), 'utf8'))
    expect(m1.version).toBe('1.0')
    expect(m1.file_catalog['docs/a.txt']).toEqual({ size: 12, mtime: expect.any(Number), category: 'tracked' })
    // As the original: deleted files are counted, not listed (deleted/ holds them).
    const m2 = JSON.parse(fs.readFileSync(metaFile(f.dst, f.names[1]), 'utf8'))
    expect(Object.keys(m2.file_catalog)).toEqual(['docs/a.txt'])
    expect(m2.summary).toEqual({ new_or_changed_tracked: 1, deleted_tracked: 1 })
    expect(fs.readFileSync(path.join(f.dst, f.names[1], 'deleted/docs/b.txt'), 'utf8')).toBe('bee\n')
    // Increment 1's a.txt is the mirror inode, rewritten in round 2.
    expect(fs.readFileSync(path.join(f.dst, f.names[0], 'track/docs/a.txt'), 'utf8')).toBe('a version 2, longer\n')
    const m3 = JSON.parse(fs.readFileSync(metaFile(f.dst, f.names[2]), 'utf8'))
    expect(m3.backup_timestamp).toBeTruthy()
    expect(m3.file_catalog['docs/d.txt'].category).toBe('track')
  })

  it('list, search, history read its increments as they are, ordered by recorded time; recreate keeps them', () => {
    const f = originalFolder()
    const before = f.names.map((n) => fs.readFileSync(metaFile(f.dst, n)))
    const l = json(['list', '--dst', f.dst])
    expect(l.status).toBe(0)
    expect(l.out.damaged).toEqual([])
    expect(l.out.increments.map((i: any) => i.name)).toEqual(f.names)
    expect(l.out.increments.map((i: any) => i.timestamp)).toEqual(f.times.map(iso))
    expect(l.out.increments.map((i: any) => [i.origin, i.newOrChanged ?? 0, i.deleted, i.files])).toEqual([
      ['original', 3, 0, 3],
      ['original', 1, 1, 2],
      ['original', 1, 0, 1],
    ])
    expect(l.out.increments[0].bytes).toBe(12 + 4 + 4)

    const s = json(['search', '--dst', f.dst, '--mask', '*.txt'])
    expect(s.status).toBe(0)
    const hits = s.out.hits.map((h: any) => `${h.increment}:${h.path}:${h.category}`).sort()
    expect(hits).toEqual(
      [
        `${f.names[0]}:docs/a.txt:track`,
        `${f.names[0]}:docs/b.txt:track`,
        `${f.names[0]}:docs/c.txt:track`,
        `${f.names[1]}:docs/a.txt:track`,
        `${f.names[1]}:docs/b.txt:deleted`,
        `${f.names[2]}:docs/d.txt:track`,
      ].sort(),
    )

    const h = json(['history', 'docs/a.txt', '--dst', f.dst])
    expect(h.status).toBe(0)
    expect(h.out.versions.map((v: any) => [v.increment, v.size, v.present])).toEqual([
      [f.names[0], 12, true],
      [f.names[1], 20, true],
    ])

    // recreate without --force: readable metadata of the original is kept byte for byte.
    const r = cli(['recreate', '--dst', f.dst, '--json'], { env })
    expect(r.status, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).rebuilt).toEqual([])
    expect(f.names.map((n) => fs.readFileSync(metaFile(f.dst, n)))).toEqual(before)
  })

  it('restore works without a state of ours: latest from the mirror, --at from the increments, overwritten versions named', () => {
    const f = originalFolder()
    const to = path.join(f.dir, 'latest')
    const r = json(['restore', '--dst', f.dst, '--to', to])
    expect(r.status, r.stderr).toBe(0)
    expect(fs.readFileSync(path.join(to, 'docs/a.txt'), 'utf8')).toBe('a version 2, longer\n')
    expect(fs.readFileSync(path.join(to, 'docs/d.txt'), 'utf8')).toBe('dee\n')
    expect(fs.existsSync(path.join(to, 'docs/b.txt'))).toBe(false)

    const at = path.join(f.dir, 'at1')
    const r1 = json(['restore', '--dst', f.dst, '--to', at, '--at', f.names[0]])
    expect(r1.status).toBe(1)
    expect(fs.readFileSync(path.join(at, 'docs/b.txt'), 'utf8')).toBe('bee\n')
    expect(fs.readFileSync(path.join(at, 'docs/c.txt'), 'utf8')).toBe('sea\n')
    // The version increment 1 recorded for a.txt was overwritten in place: restored as stored, and named.
    expect(r1.out.warnings.map((w: any) => [w.path, w.code])).toEqual([['docs/a.txt', 'overwritten-version']])
    expect(fs.readFileSync(path.join(at, 'docs/a.txt'), 'utf8')).toBe('a version 2, longer\n')
    // At increment 2 b.txt was deleted (known from deleted/ only).
    const at2 = path.join(f.dir, 'at2')
    json(['restore', '--dst', f.dst, '--to', at2, '--at', f.names[1]])
    expect(fs.existsSync(path.join(at2, 'docs/b.txt'))).toBe(false)
    expect(fs.readFileSync(path.join(at2, 'docs/a.txt'), 'utf8')).toBe('a version 2, longer\n')
    const st = fs.statSync(path.join(f.dst, f.names[0], 'track/docs/a.txt'))
    expect(fs.statSync(path.join(at, 'docs/a.txt')).mtimeMs).toBe(st.mtimeMs)
  })

  it('status and verify --dst: stale mirror files named, overwritten versions named instead of called good', () => {
    const f = originalFolder()
    const s = json(['status', '--dst', f.dst])
    expect(s.out.state.original).toBe(true)
    expect(s.out.state.extra).toEqual(['notes/y.txt'])
    const v = json(['verify', '--dst', f.dst])
    expect(v.status).toBe(1)
    expect(v.out.damaged).toEqual([])
    expect(v.out.problems.map((p: any) => [p.location, p.path, p.status])).toEqual([[f.names[0], 'docs/a.txt', 'OVERWRITTEN']])
    expect(v.out.problems[0].detail).toMatch(/overwrote this file in place/)
    // a, b, c of #1, a and b of #2, d of #3 but the overwritten one: checked by size and mtime.
    expect(v.out.sizeMtimeOnly).toBe(5)
  })

  it('backup run adopts it: nothing unchanged copied, no bogus increment, stale mirror files removed; then runs on', () => {
    const f = originalFolder()
    const ino = (rel: string) => fs.statSync(path.join(f.dst, 'mirror', rel)).ino
    const before = { a: ino('docs/a.txt'), x: ino('notes/x.txt') }
    const r = json(['run', f.config])
    expect(r.status, r.stderr).toBe(0)
    expect(r.out).toMatchObject({ adopted: true, increment: null, new: 0, changed: 0, deleted: 0, bytesCopied: 0, removedFromMirror: 1 })
    expect({ a: ino('docs/a.txt'), x: ino('notes/x.txt') }).toEqual(before)
    expect(fs.existsSync(path.join(f.dst, 'mirror/notes/y.txt'))).toBe(false)
    expect(fs.existsSync(path.join(f.dst, '.axiomatic/state.jsonl'))).toBe(true)
    // mirror.json is kept current for a return to backup.py.
    expect(Object.keys(JSON.parse(fs.readFileSync(path.join(f.dst, 'mirror.json'), 'utf8'))).sort()).toEqual([
      'docs/a.txt',
      'docs/c.txt',
      'docs/d.txt',
      'notes/x.txt',
      'notes/z.txt',
    ])
    const again = json(['run', f.config])
    expect(again.out).toMatchObject({ adopted: false, increment: null, bytesCopied: 0 })

    // A change after adoption: one increment, named in UTC, listed after the original's by time.
    writeTree(f.src, { 'docs/c.txt': 'sea, changed\n' })
    const r2 = json(['run', f.config])
    expect(r2.out).toMatchObject({ changed: 1, new: 0 })
    const ours = r2.out.increment as string
    expect(ours < f.names[2]).toBe(true) // by name it would come before the original's last one
    const l = json(['list', '--dst', f.dst])
    expect(l.out.increments.map((i: any) => i.name)).toEqual([...f.names, ours])
    const h = json(['history', 'docs/c.txt', '--dst', f.dst])
    expect(h.out.versions.map((v: any) => v.increment)).toEqual([f.names[0], ours])
    // The original's versions are untouched by our run.
    expect(fs.readFileSync(path.join(f.dst, f.names[0], 'track/docs/c.txt'), 'utf8')).toBe('sea\n')
    const v = json(['verify', '--dst', f.dst])
    expect(v.out.problems.map((p: any) => [p.location, p.path, p.status])).toEqual([[f.names[0], 'docs/a.txt', 'OVERWRITTEN']])
  })

  it("prune keeps the original's history: removed increments' versions (its unlisted deletions too) carried into the kept one", () => {
    const f = originalFolder()
    const p = json(['prune', '--dst', f.dst, '--keep-last', '1'])
    expect(p.status, p.stderr).toBe(0)
    expect(fs.readdirSync(f.dst).filter((n) => n.startsWith('backup_'))).toEqual([f.names[2]])
    const m = JSON.parse(fs.readFileSync(metaFile(f.dst, f.names[2]), 'utf8'))
    expect(Object.entries<any>(m.file_catalog).map(([k, e]) => [k, e.category]).sort()).toEqual([
      ['docs/a.txt', 'track'],
      ['docs/b.txt', 'deleted'],
      ['docs/c.txt', 'track'],
      ['docs/d.txt', 'track'],
    ])
    const to = path.join(f.dir, 'at3')
    const r = json(['restore', '--dst', f.dst, '--to', to, '--at', f.names[2]])
    expect(r.status, r.stderr).toBe(0)
    expect(fs.readFileSync(path.join(to, 'docs/a.txt'), 'utf8')).toBe('a version 2, longer\n')
    expect(fs.readFileSync(path.join(to, 'docs/c.txt'), 'utf8')).toBe('sea\n')
    expect(fs.existsSync(path.join(to, 'docs/b.txt'))).toBe(false)
  })

  it('without mirror.json the mirror itself is the previous state (tracked as the increments say)', () => {
    const f = originalFolder()
    fs.rmSync(path.join(f.dst, 'mirror.json'))
    const r = json(['run', f.config])
    expect(r.status, r.stderr).toBe(0)
    expect(r.out).toMatchObject({ adopted: true, increment: null, new: 0, changed: 0, bytesCopied: 0, removedFromMirror: 1 })
    expect(fs.existsSync(path.join(f.dst, 'mirror.json'))).toBe(false) // never created
    const state = fs.readFileSync(path.join(f.dst, '.axiomatic/state.jsonl'), 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l))
    expect(state.map((e: any) => [e.p, e.t, typeof e.h])).toEqual([
      ['docs/a.txt', true, 'string'],
      ['docs/c.txt', true, 'string'],
      ['docs/d.txt', true, 'string'],
      ['notes/x.txt', false, 'undefined'],
      ['notes/z.txt', false, 'undefined'],
    ])
  })

  it("our increments carry the original's keys: backup_tool.py's list and search read real counts", () => {
    const f = originalFolder()
    json(['run', f.config])
    writeTree(f.src, { 'docs/c.txt': 'sea, changed\n', 'docs/e.txt': 'new e\n' })
    fs.unlinkSync(path.join(f.src, 'docs/d.txt'))
    const r = json(['run', f.config])
    const name = r.out.increment as string
    const m = JSON.parse(fs.readFileSync(metaFile(f.dst, name), 'utf8'))

    // What backup_tool.py's `list --detailed` reads, the way it reads it.
    const listed = originalToolList(f.dst)
    expect(listed.find((b) => b.name === name)).toEqual({
      name,
      time: m.timestamp,
      type: 'incremental',
      tracked: 2,
      deleted: 1,
      operations: 3,
      size: 'sea, changed\n'.length + 'new e\n'.length + 'dee\n'.length,
      files: 3,
    })
    // The original's own increments read the same way (its keys, as it wrote them).
    expect(listed.find((b) => b.name === f.names[1])).toMatchObject({ type: 'incremental', tracked: 1, deleted: 1 })

    // What its `search` needs of each entry: size, float mtime, a category it knows.
    for (const [p, e] of Object.entries<any>(m.file_catalog)) {
      expect(typeof e.size).toBe('number')
      expect(typeof e.mtime).toBe('number')
      expect(['track', 'deleted']).toContain(e.category)
      expect(fs.existsSync(path.join(f.dst, name, e.category, p))).toBe(true)
    }
    expect(Date.parse(m.backup_timestamp)).toBe(Date.parse(m.timestamp))
  })
})

/**
 * A reader that does what backup_tool.py's `list --detailed` does: folders
 * named backup_* with a track/ or deleted/ folder, metadata NAME/NAME.json,
 * and the keys it prints (with its defaults when a key is missing).
 */
function originalToolList(dst: string) {
  const out = []
  for (const n of fs.readdirSync(dst)) {
    const dir = path.join(dst, n)
    if (!n.startsWith('backup_') || !fs.statSync(dir).isDirectory()) continue
    if (!fs.existsSync(path.join(dir, 'track')) && !fs.existsSync(path.join(dir, 'deleted'))) continue
    const m = JSON.parse(fs.readFileSync(path.join(dir, `${n}.json`), 'utf8'))
    const s = m.summary ?? {}
    const st = m.statistics ?? {}
    out.push({
      name: n,
      time: m.backup_timestamp ?? 'unknown',
      type: m.backup_type ?? 'unknown',
      tracked: s.new_or_changed_tracked ?? 0,
      deleted: s.deleted_tracked ?? 0,
      operations: s.total_operations ?? 0,
      size: st.total_size ?? 0,
      files: st.total_files ?? 0,
    })
  }
  return out
}
