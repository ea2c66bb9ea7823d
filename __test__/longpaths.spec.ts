/**
 * Paths longer than one system call takes (PATH_MAX, 4096 bytes): the same
 * relative path is longer under dst/.axiomatic/incomplete/… than under src.
 * They are backed up, recorded, restored and checked like any other.
 */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { cli, increments, readMeta, tmpdir, workspace } from './helpers'

/**
 * Goes down `segs` one folder at a time (each chdir a short relative path, so any depth works),
 * creating them if `write` is given, and writes `write` to `file` or prints its content.
 */
function deepFile(root: string, segs: string[], file: string, write?: string): string {
  const js = `const fs = require('fs'); const [segs, file, write] = JSON.parse(process.argv[1]);
    for (const d of segs) { if (write !== null) fs.mkdirSync(d, { recursive: true }); process.chdir(d) }
    if (write !== null) fs.writeFileSync(file, write); else process.stdout.write(fs.readFileSync(file))`
  const r = spawnSync(process.execPath, ['-e', js, JSON.stringify([segs, file, write ?? null])], { cwd: root, encoding: 'utf8' })
  expect(r.status, r.stderr).toBe(0)
  return r.stdout
}

const seg = (i: number) => `${String(i).padStart(2, '0')}-${'d'.repeat(247)}`
const dirs = (n: number) => Array.from({ length: n }, (_, i) => seg(i))

describe('long paths', () => {
  it('a 4,032-byte path and a 5,000-byte path: stored, recorded, restored, not copied again', () => {
    const w = workspace({ 'proj/a.txt': 'a' }, { track_dirs: ['proj'] })
    // 4,032 bytes relative to src: fits under src, not under dst/.axiomatic/incomplete/backup_…/track/.
    const mid = `proj/${dirs(16).join('/')}/${'m'.repeat(4032 - 5 - 16 * 251)}`
    expect(mid.length).toBe(4032)
    fs.mkdirSync(path.join(w.src, path.dirname(mid)), { recursive: true })
    fs.writeFileSync(path.join(w.src, mid), 'middle')
    // Over 5,000 bytes: made one folder at a time.
    const deep = `proj/${dirs(20).join('/')}/deep.txt`
    expect(deep.length).toBeGreaterThan(5000)
    deepFile(w.src, ['proj', ...dirs(20)], 'deep.txt', 'deep')

    const r1 = cli(['run', '-c', w.config, '--json'])
    expect(r1.status, r1.stdout.slice(-1200) + r1.stderr).toBe(0)
    const s1 = JSON.parse(r1.stdout)
    expect(s1.warnings).toEqual([])
    expect(s1.new).toBe(3)
    const cat = readMeta(w.dst, s1.increment).file_catalog
    expect(Object.keys(cat).sort()).toEqual([deep, mid, 'proj/a.txt'].sort())
    // The state holds them: the next run copies nothing, and status agrees.
    const r2 = cli(['run', '-c', w.config, '--json'])
    expect(r2.status, r2.stderr).toBe(0)
    expect(JSON.parse(r2.stdout)).toMatchObject({ increment: null, new: 0, changed: 0, mirrorUpdated: 0, bytesCopied: 0 })
    const st = cli(['status', '--dst', w.dst, '--json'])
    expect(JSON.parse(st.stdout).state.agrees, st.stdout).toBe(true)
    const v = cli(['verify', '--dst', w.dst, '--json'])
    expect(v.status, v.stdout + v.stderr).toBe(0)
    // Restore: every file, at its full depth.
    const to = tmpdir('restore-')
    const rr = cli(['restore', '--dst', w.dst, '--to', to, '--json'])
    expect(rr.status, rr.stdout + rr.stderr).toBe(0)
    expect(JSON.parse(rr.stdout).restored).toBe(3)
    expect(fs.readFileSync(path.join(to, mid), 'utf8')).toBe('middle')
    expect(deepFile(to, ['proj', ...dirs(20)], 'deep.txt')).toBe('deep')
    // History and search know them.
    const h = cli(['history', mid, '--dst', w.dst, '--json'])
    expect(JSON.parse(h.stdout).versions.length).toBe(1)
    // Prune carries the deep versions into the kept increment; delete removes one; all verified.
    fs.writeFileSync(path.join(w.src, 'proj/a.txt'), 'a, version two')
    expect(cli(['run', '-c', w.config]).status).toBe(0)
    const p = cli(['prune', '--keep-last', '1', '--dst', w.dst])
    expect(p.status, p.stdout + p.stderr).toBe(0)
    const kept = increments(w.dst)
    expect(kept.length).toBe(1)
    expect(Object.keys(readMeta(w.dst, kept[0]).file_catalog).sort()).toEqual([deep, mid, 'proj/a.txt'].sort())
    expect(cli(['verify', '-d', w.dst]).status).toBe(0)
    const d = cli(['delete', kept[0], '--mask', 'deep.txt', '--dst', w.dst])
    expect(d.status, d.stdout + d.stderr).toBe(0)
    expect(Object.keys(readMeta(w.dst, kept[0]).file_catalog).sort()).toEqual([mid, 'proj/a.txt'].sort())
    // (Node cannot open such paths itself: the product's verify checks the stored files against the metadata.)
    const v2 = cli(['verify', '--dst', w.dst, '--json'])
    expect(v2.status, v2.stdout + v2.stderr).toBe(0)
    const gone = spawnSync(process.execPath, ['-e', `try { for (const d of JSON.parse(process.argv[1])) process.chdir(d) } catch { process.exit(0) } process.exit(require('fs').existsSync('deep.txt') ? 1 : 0)`, JSON.stringify([w.dst, kept[0], 'track', 'proj', ...dirs(20)])])
    expect(gone.status, String(gone.stderr)).toBe(0) // the file, and the folders it alone used, are gone
    expect(fs.readdirSync(path.join(w.dst, '.axiomatic')).filter((n) => n === 'trash' || n.startsWith('pending'))).toEqual([])
  })

  it('checksum hashes and verify checks a file deeper than PATH_MAX', () => {
    const root = tmpdir('deep-sums-')
    deepFile(root, ['proj', ...dirs(20)], 'deep.txt', 'deep')
    const deep = `proj/${dirs(20).join('/')}/deep.txt`
    const out = tmpdir('deep-report-')
    const r = cli(['checksum', root, '--algo', 'sha256', '--format', 'sha256sum', '--out', path.join(out, 'all.sha256'), '--json'])
    expect(r.status, r.stdout + r.stderr).toBe(0)
    const lines = fs.readFileSync(path.join(out, 'all.sha256'), 'utf8').trim().split('\n')
    const sha = createHash('sha256').update('deep').digest('hex')
    expect(lines).toContain(`${sha}  ${deep}`)
    const v = cli(['verify', path.join(out, 'all.sha256'), '--root', root, '--json'])
    expect(v.status, v.stdout + v.stderr).toBe(0)
  })
})
