/**
 * Names that are not valid UTF-8 (Latin-1, CP1251 from old archives) are
 * backed up and restored byte for byte; the metadata holds them losslessly
 * (escaped as U+10FF00 + byte); search, history and restore address them as
 * `\xNN`.
 */
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { bump, cli, increments, readMeta, tmpdir, workspace } from './helpers'
import { expectIncrementsMatchMetadata } from './invariants'

const B = (s: string | number[]) => (typeof s === 'string' ? Buffer.from(s) : Buffer.from(s))
const join = (...parts: Buffer[]) => Buffer.concat(parts)

/** Every file and symlink below `root`, names as raw bytes (hex-joined), with content hash. */
function rawTree(root: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (dir: Buffer, rel: Buffer[]) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true, encoding: 'buffer' })) {
      const name = e.name as unknown as Buffer
      const p = join(dir, B('/'), name)
      const r = [...rel, name]
      if (e.isDirectory()) walk(p, r)
      else {
        const data = e.isSymbolicLink() ? (fs.readlinkSync(p, { encoding: 'buffer' }) as Buffer) : fs.readFileSync(p)
        out.set(r.map((x) => x.toString('hex')).join('/'), `${e.isSymbolicLink() ? 'l' : 'f'}:${crypto.createHash('sha256').update(data).digest('hex')}`)
      }
    }
  }
  walk(B(root), [])
  return out
}

const LATIN1 = join(B('caf'), B([0xe9]), B('.txt')) // café.txt in Latin-1
const CP1251 = B([0xcf, 0xf0, 0xe8, 0xe2, 0xe5, 0xf2, 0x2e, 0x74, 0x78, 0x74]) // Привет.txt in CP1251
const BADDIR = join(B('dir'), B([0xff]))
const REAL_PUA = B('real \u{10FF80}.txt') // valid UTF-8 holding the escape range itself

describe('names that are not valid UTF-8', () => {
  it('are backed up, found, listed and restored byte for byte', async () => {
    const w = workspace({ 'proj/plain.txt': 'plain' }, { track_dirs: ['proj'] })
    const proj = join(B(w.src), B('/proj/'))
    fs.writeFileSync(join(proj, LATIN1), 'latin-1 v1')
    fs.writeFileSync(join(proj, CP1251), 'cp1251')
    fs.mkdirSync(join(proj, BADDIR))
    fs.writeFileSync(join(proj, BADDIR, B('/inner.txt')), 'inner')
    fs.writeFileSync(join(proj, REAL_PUA), 'pua')
    fs.symlinkSync(join(B('target-'), B([0xe9])), join(proj, B('link-'), B([0xe9])))

    const r1 = cli(['run', '-c', w.config, '--json'])
    expect(r1.status, r1.stderr).toBe(0)
    const s1 = JSON.parse(r1.stdout)
    expect(s1.warnings).toEqual([])
    expect(s1.new).toBe(6)
    expect(rawTree(path.join(w.dst, 'mirror'))).toEqual(rawTree(w.src))
    expectIncrementsMatchMetadata(w.dst)
    // The metadata is valid JSON with the documented escape: byte 0xNN = U+10FF00 + NN.
    const meta = readMeta(w.dst, s1.increment)
    expect(Object.keys(meta.file_catalog).sort()).toEqual(
      [
        'proj/caf\u{10FFE9}.txt',
        'proj/\u{10FFCF}\u{10FFF0}\u{10FFE8}\u{10FFE2}\u{10FFE5}\u{10FFF2}.txt',
        'proj/dir\u{10FFFF}/inner.txt',
        'proj/real \u{10FFF4}\u{10FF8F}\u{10FFBE}\u{10FF80}.txt',
        'proj/link-\u{10FFE9}',
        'proj/plain.txt',
      ].sort(),
    )

    // A second version of the Latin-1 file.
    fs.writeFileSync(join(proj, LATIN1), 'latin-1 version 2')
    bump(join(proj, LATIN1))
    const r2 = cli(['run', '-c', w.config, '--json'])
    expect(r2.status, r2.stderr).toBe(0)
    expect(JSON.parse(r2.stdout).changed).toBe(1)
    expect(rawTree(path.join(w.dst, 'mirror'))).toEqual(rawTree(w.src))

    // history and search address the name as \xNN; human output shows it so.
    const h = cli(['history', 'proj/caf\\xe9.txt', '--dst', w.dst, '--json'])
    expect(h.status, h.stderr).toBe(0)
    expect(JSON.parse(h.stdout).versions.length).toBe(2)
    const hs = cli(['history', 'proj/caf\\xe9.txt', '--dst', w.dst])
    expect(hs.stdout).toContain('proj/caf\\xe9.txt')
    const se = cli(['search', '--dst', w.dst, '--mask', 'caf*.txt'])
    expect(se.status, se.stderr).toBe(0)
    expect(se.stdout).toContain('caf\\xe9.txt')
    const sx = cli(['search', '--dst', w.dst, '--mask', '*\\xe9*', '--json'])
    expect(JSON.parse(sx.stdout).hits.map((x: { path: string }) => x.path).sort()).toEqual(['proj/caf\u{10FFE9}.txt', 'proj/caf\u{10FFE9}.txt', 'proj/link-\u{10FFE9}'])

    // restore: latest, and the first point in time.
    const to = tmpdir('restore-')
    const rr = cli(['restore', '--dst', w.dst, '--to', to])
    expect(rr.status, rr.stderr).toBe(0)
    expect(rawTree(to)).toEqual(rawTree(w.src))
    const to1 = tmpdir('restore-')
    const ra = cli(['restore', 'proj/caf\\xe9.txt', '--dst', w.dst, '--to', to1, '--at', increments(w.dst)[0]])
    expect(ra.status, ra.stderr).toBe(0)
    expect(fs.readFileSync(join(B(to1), B('/proj/'), LATIN1), 'utf8')).toBe('latin-1 v1')

    // The generated restore script writes the same bytes.
    const script = path.join(tmpdir(), 'restore.sh')
    expect(cli(['search', '--dst', w.dst, '--mask', '*', '--generate-script', script]).status).toBe(0)
    const to2 = tmpdir('script-')
    const sh = spawnSync('sh', [script, to2], { encoding: 'utf8' })
    expect(sh.status, sh.stderr).toBe(0)
    expect(rawTree(to2)).toEqual(rawTree(w.src))

    // status: the mirror state agrees with the mirror (names compared in the same encoding).
    const st = cli(['status', '--dst', w.dst, '--json'])
    expect(JSON.parse(st.stdout).state.agrees).toBe(true)
  })
})
