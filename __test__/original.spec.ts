/**
 * A drop-in for the original tools (issue 10): report folders of the
 * original backup_syncer service are read by `verify` and `compare` with the
 * answers its checker gives, and what `backup checksum --checksum-config` writes is
 * read by that checker. `fixtures/original_format.py` writes and reads those
 * formats from their description (our code, not theirs), run with python3.
 */
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { compare, verify } from '../js'
import { cli, tmpdir, writeTree, type Tree } from './helpers'
import { needs } from './tools'

const PY = path.join(__dirname, 'fixtures', 'original_format.py')

function py(args: string[]): string {
  const r = spawnSync('python3', [PY, ...args], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`original_format.py ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** A server's data: 100 files, an empty file, Unicode and odd names, a symlink. */
function serverData(changes: (dir: string) => void = () => {}): string {
  const dir = tmpdir('server-')
  const tree: Tree = { empty: '', 'ünï/cødé ✓.txt': 'unicode', 'odd/quote " and \\ back.txt': 'odd', 'odd/link': { symlink: '../empty' } }
  for (let i = 0; i < 100; i++) tree[`a/f${i}.bin`] = { content: crypto.createHash('sha256').update(String(i)).digest().toString('hex').repeat(i + 1) }
  writeTree(dir, tree)
  changes(dir)
  return dir
}

/** Server B of the fleet: one file gone, one changed. */
const damaged = (dir: string) => {
  fs.rmSync(path.join(dir, 'a/f21.bin'))
  fs.appendFileSync(path.join(dir, 'a/f42.bin'), 'x')
}

/** The original service's output folder for `data` (group `g`). */
function originalService(data: string, flags: string[] = [], ts = '1796130439'): string {
  const out = tmpdir('orig-out-')
  py(['service', out, `g=${data}`, '--ts', ts, ...flags])
  return out
}

/** Our output folder for `data` (group `g`), written by `backup checksum --checksum-config`. */
function ourService(data: string): string {
  const base = tmpdir('ours-')
  const cfg = path.join(base, 'checksum.json')
  fs.writeFileSync(cfg, JSON.stringify({ groups: [{ name: 'g', path: data }], output_dir: 'out' }))
  const r = cli(['checksum', '--checksum-config', cfg])
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  return path.join(base, 'out')
}

const checker = (...outs: string[]) => JSON.parse(py(['checker', ...outs])) as Record<string, { lost: string[]; mismatch: string[] }>

describe.skipIf(needs('original backup_syncer formats', ['python3']))('coming from backup_syncer', () => {
  it('verify reads every report the original service writes (string or number timestamps, absolute or ./ paths, indented or compact)', async () => {
    const data = serverData()
    for (const flags of [[], ['--number-ts'], ['--compact'], ['--relative', '--compact', '--number-ts']]) {
      const report = path.join(originalService(data, flags), 'g', 'all_1796130439.json')
      const v = await verify(report)
      // Symlinks are not listed by the original (find -type f), and not called NEW.
      expect({ flags, counts: v.counts }).toEqual({ flags, counts: { OK: 103 } })
      const r = cli(['verify', report, '--json'])
      expect(r.status).toBe(0)
    }
    const report = path.join(originalService(data), 'g', 'all_1796130439.json')
    damaged(data)
    fs.writeFileSync(path.join(data, 'a/new.bin'), 'new')
    // The service's digest of a name with a backslash is `\<hex>` (sha256sum's escape mark): still checked.
    const odd = 'odd/quote " and \\ back.txt'
    expect(JSON.parse(JSON.parse(fs.readFileSync(report, 'utf8')).data).checksums[`${data}/${odd}`].sha256).toMatch(/^\\[0-9a-f]{64}$/)
    fs.appendFileSync(path.join(data, odd), 'z')
    const v = await verify(report)
    expect(v.results.map((x) => `${x.path}: ${x.status}`).sort()).toEqual(['a/f21.bin: MISSING', 'a/f42.bin: FAILED', 'a/new.bin: NEW', `${odd}: FAILED`])
    // The copy elsewhere (--root) is verified with the same relative paths.
    const copy = serverData()
    expect((await verify(report, { root: copy })).counts).toEqual({ OK: 103 })
  })

  it('compare of two original services gives the checker’s answer: 1 lost, 1 mismatched', async () => {
    const outA = originalService(serverData())
    const outB = originalService(serverData(damaged))
    expect(checker(outA, outB)).toEqual({ g: { lost: ['./a/f21.bin'], mismatch: ['./a/f42.bin'] } })
    const r = await compare([outA, outB])
    expect(r.groups).toHaveLength(1)
    expect(r.groups[0].servers.map((s) => s.startTimestamp)).toEqual([1796130439, 1796130439])
    expect(r.groups[0].lostFiles).toEqual([{ path: 'a/f21.bin', presentOn: [outA], missingOn: [outB] }])
    expect(r.groups[0].mismatched.map((m) => [m.path, m.algorithm])).toEqual([['a/f42.bin', 'md5']])
    // The newest report of a group folder is used (by the number in its name).
    const older = originalService(serverData(damaged), [], '1700000000')
    fs.copyFileSync(path.join(older, 'g', 'all_1700000000.json'), path.join(outA, 'g', 'all_1700000000.json'))
    expect((await compare([outA, outB])).groups[0].lostFiles).toHaveLength(1)
  })

  it('the original checker reads what `backup checksum --checksum-config` writes: the same format, the right answers', async () => {
    const same = ourService(serverData())
    // The folder layout: groups.json a list, nothing but all_<int>.json in a group folder.
    expect(fs.readdirSync(same).sort()).toEqual(['g', 'groups.json'])
    const groups = JSON.parse(fs.readFileSync(path.join(same, 'groups.json'), 'utf8'))
    expect(Array.isArray(groups)).toBe(true)
    expect(groups.map((g: { name: string }) => g.name)).toEqual(['g'])
    const names = fs.readdirSync(path.join(same, 'g'))
    expect(names).toHaveLength(1)
    expect(names[0]).toMatch(/^all_\d+\.json$/)
    // The data: every key of the original's (the order of keys does not matter to its checker, which
    // parses the JSON), what the walk tells first and what the hashing tells last, so the report is
    // written while files are hashed; absolute paths; start_timestamp as the original writes it.
    const env = JSON.parse(fs.readFileSync(path.join(same, 'g', names[0]), 'utf8'))
    const data = JSON.parse(env.data)
    expect(Object.keys(data)).toEqual(['root_data', 'group', 'start_timestamp', 'algorithms', 'files', 'sizes', 'stat', 'symlinks', 'checksums', 'errors', 'work_time'])
    expect(data.start_timestamp).toBe(names[0].slice(4, -5))
    expect(typeof data.work_time).toBe('number')
    expect(data.files).toHaveLength(103)
    for (const f of data.files) expect(f.startsWith(`${data.root_data}/`)).toBe(true)
    expect(data.files[0]).toBe(`${data.root_data}/a/f99.bin`) // largest first
    expect(data.checksums[`${data.root_data}/empty`]).toEqual({ sha256: crypto.createHash('sha256').digest('hex'), md5: crypto.createHash('md5').digest('hex') })
    expect(data.symlinks).toEqual({ [`${data.root_data}/odd/link`]: '../empty' })

    // Alone: identical data, then one lost and one mismatched.
    expect(checker(same, ourService(serverData()))).toEqual({ g: { lost: [], mismatch: [] } })
    const ours = ourService(serverData(damaged))
    expect(checker(same, ours)).toEqual({ g: { lost: ['./a/f21.bin'], mismatch: ['./a/f42.bin'] } })
    // In a fleet mixed with original services, both ways round, and our compare agrees. The one
    // extra mismatch the checker reports is the original service's: its digest of a name with a
    // backslash is `\<hex>` (sha256sum's escape mark). Ours is plain hex; compare reads both right.
    const odd = './odd/quote " and \\ back.txt'
    const orig = originalService(serverData())
    expect(checker(orig, same)).toEqual({ g: { lost: [], mismatch: [odd] } })
    expect(checker(orig, ours)).toEqual({ g: { lost: ['./a/f21.bin'], mismatch: ['./a/f42.bin', odd] } })
    const origDamaged = originalService(serverData(damaged))
    expect(checker(same, origDamaged)).toEqual({ g: { lost: ['./a/f21.bin'], mismatch: ['./a/f42.bin', odd] } })
    for (const [a, b] of [[orig, same], [orig, ours], [same, origDamaged]]) {
      const g = (await compare([a, b])).groups[0]
      const expected = a === orig && b === same ? [[], []] : [['a/f21.bin'], ['a/f42.bin']]
      expect([g.lostFiles.map((l) => l.path), g.mismatched.map((m) => m.path)]).toEqual(expected)
    }
    // Our own verify reads it back.
    expect((await verify(path.join(same, 'g', names[0]))).counts).toEqual({ OK: 104 })
  })

  it('symlinks: verified by target, compared by target between our reports, left out against original reports', async () => {
    const a = serverData()
    const b = serverData()
    fs.rmSync(path.join(b, 'odd/link'))
    fs.symlinkSync('../a', path.join(b, 'odd/link'))
    const outA = ourService(a)
    const report = path.join(outA, 'g', fs.readdirSync(path.join(outA, 'g'))[0])
    fs.rmSync(path.join(a, 'odd/link'))
    fs.symlinkSync('elsewhere', path.join(a, 'odd/link'))
    const v = await verify(report)
    expect(v.results).toEqual([{ path: 'odd/link', status: 'FAILED', detail: 'symlink target is now "elsewhere"' }])
    const g = (await compare([outA, ourService(b)])).groups[0]
    expect(g.lostFiles).toEqual([])
    expect(g.mismatched).toEqual([{ path: 'odd/link', algorithm: 'symlink', sums: { [outA]: '../empty', [g.servers[1].server]: '../a' } }])
    // The original service lists no symlinks: not lost there, not compared.
    const g2 = (await compare([outA, originalService(b)])).groups[0]
    expect([g2.lostFiles, g2.mismatched]).toEqual([[], []])
  })

  it('our reports of earlier versions (relative paths, number timestamps, {"groups": …}) are still read', async () => {
    const data = serverData()
    const out = originalService(data, ['--relative', '--number-ts', '--compact'])
    fs.writeFileSync(path.join(out, 'groups.json'), JSON.stringify({ groups: [{ name: 'g', path: data }] }))
    const r = cli(['compare', out, originalService(data), '--json'])
    expect(r.status).toBe(0)
    const g = JSON.parse(r.stdout).groups[0]
    expect([g.lostFiles, g.mismatched]).toEqual([[], []])
  })
})
