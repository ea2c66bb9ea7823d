/**
 * Hidden or false reports (issue 9, items 10–13): every command tells the truth about damaged
 * metadata, unfinished runs, signatures and the target's limits.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { afterAll, describe, expect, it } from 'vitest'

import { checksumFolder, keygen } from '../js'
import { parseSshUrl } from '../js/integrity/ssh'
import { BIN, cli, increments, listTree, readMeta, tmpdir, workspace, writeConfig, writeTree, mountExfat } from './helpers'

const hash = (algo: string, data: Buffer | string) => crypto.createHash(algo).update(data).digest('hex')

describe('verify: an embedded Ed25519 signature is always checked', () => {
  it('refuses a signed report whose signature no longer matches, even without --pubkey (exit 2)', async () => {
    const dir = tmpdir('data-')
    writeTree(dir, { 'a.txt': 'alpha', 'b.txt': 'beta' })
    const keys = tmpdir('keys-')
    const { privateKey } = keygen(path.join(keys, 'reports'))
    const report = path.join(tmpdir(), 'r.json')
    await checksumFolder(dir, 'g', report, { signKey: privateKey })

    // Intact: accepted, and the output says what the embedded key does and does not prove.
    let r = cli(['verify', report])
    expect(r.status).toBe(0)
    expect(r.stderr).toContain('only --pubkey proves who signed')
    r = cli(['verify', report, '--json'])
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout).signatureCheck).toBe('embedded-key')

    // Altered after signing, with the SHA3-512 recomputed so the digest still passes.
    const env = JSON.parse(fs.readFileSync(report, 'utf8'))
    const data = JSON.parse(env.data)
    // Report paths are absolute (as the original service writes them).
    const key = Object.keys(data.checksums).find((k) => k.endsWith('/a.txt'))!
    data.checksums[key].sha256 = hash('sha256', 'evil')
    env.data = JSON.stringify(data)
    env.signature = hash('sha3-512', env.data)
    fs.writeFileSync(report, JSON.stringify(env))
    r = cli(['verify', report])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('Ed25519 signature does not match the public key embedded in it')
    expect(r.stderr).toContain('only `--pubkey` proves who signed')

    // A damaged (non-hex) signature is refused too.
    env.signature_ed25519 = 'zz' + env.signature_ed25519.slice(2)
    fs.writeFileSync(report, JSON.stringify(env))
    r = cli(['verify', report])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('Ed25519 signature is not hex')

    // An unsigned report is still fine without --pubkey.
    const plain = path.join(tmpdir(), 'plain.json')
    await checksumFolder(dir, 'g', plain)
    r = cli(['verify', plain, '--json'])
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout).signatureCheck).toBe('unsigned')
  })
})

/** Two increments of `t/a.txt` (v1, v2) and one of `t/b.txt`; returns the workspace and names. */
function twoIncrements() {
  const w = workspace({ 't/a.txt': 'version one', 't/b.txt': 'bee' }, { track_dirs: ['t'] })
  expect(cli(['run', '-c', w.config]).status).toBe(0)
  fs.writeFileSync(path.join(w.src, 't/a.txt'), 'version two, longer')
  expect(cli(['run', '-c', w.config]).status).toBe(0)
  const [first, second] = increments(w.dst)
  return { ...w, first, second }
}

describe('damaged increment metadata is never invisible', () => {
  it('history, status, list, search and verify --dst name the file, what is wrong and the fix', () => {
    const w = twoIncrements()
    const file = path.join(w.dst, w.first, `${w.first}.json`)
    const text = fs.readFileSync(file)
    fs.writeFileSync(file, text.subarray(0, Math.floor(text.length / 2)))
    const fix = `backup recreate --backup ${w.first}`
    const names = (out: string, shownFile = file) => {
      expect(out).toContain(shownFile)
      expect(out).toContain('the file ends early')
      expect(out).toContain(fix)
    }

    // history: the version in the damaged increment is not shown, and it says why (exit 1).
    let r = cli(['history', 't/a.txt', '-c', w.config])
    expect(r.status).toBe(1)
    names(r.stderr)
    expect(r.stdout).toContain(w.second)
    r = cli(['history', 't/a.txt', '-c', w.config, '--json'])
    expect(r.status).toBe(1)
    expect(JSON.parse(r.stdout).damaged).toEqual([expect.objectContaining({ increment: w.first, file, fix })])

    // status: exit 1 and the damage named (paths inside the backup folder relative to it, named once on top).
    r = cli(['status', '-c', w.config])
    expect(r.status).toBe(1)
    names(r.stdout, `${w.first}/${w.first}.json`)
    expect(JSON.parse(cli(['status', '-c', w.config, '--json']).stdout).damaged).toHaveLength(1)

    // list: the increment is listed as damaged, the detail on stderr (exit 1).
    r = cli(['list', '-c', w.config])
    expect(r.status).toBe(1)
    expect(r.stdout).toMatch(new RegExp(`${w.first}.* damaged`))
    names(r.stderr)

    // search: not searched, and said so.
    r = cli(['search', '--mask', 'a.txt', '-c', w.config])
    expect(r.status).toBe(1)
    names(r.stderr)

    // verify (the backup of -c): reports it and still checks everything else; a flipped byte elsewhere is found.
    const stored = path.join(w.dst, w.second, 'track', 't/a.txt')
    const st = fs.statSync(stored)
    const fd = fs.openSync(stored, 'r+')
    fs.writeSync(fd, 'X', 0)
    fs.closeSync(fd)
    fs.utimesSync(stored, st.atime, st.mtime)
    r = cli(['verify', '-c', w.config])
    expect(r.status).toBe(1)
    names(r.stdout)
    expect(r.stdout).toMatch(new RegExp(`${w.second}/t/a.txt: .*CORRUPT`))
    const j = JSON.parse(cli(['verify', '-c', w.config, '--json']).stdout)
    expect(j.damaged).toEqual([expect.objectContaining({ increment: w.first, file, fix })])
    expect(j.problems.map((p: { location: string; path: string }) => `${p.location}/${p.path}`)).toContain(`${w.second}/t/a.txt`)

    // restore at that point names it too (it cannot be reconstructed without it).
    r = cli(['restore', '--to', path.join(w.dir, 'out'), '--at', w.first, '-c', w.config])
    expect(r.status).toBe(2)
    names(r.stderr)

    // The fix works: afterwards every command is clean again.
    r = cli(['recreate', '--backup', w.first, '-c', w.config])
    expect(r.status).toBe(0)
    expect(cli(['list', '-c', w.config]).status).toBe(0)
    expect(cli(['history', 't/a.txt', '-c', w.config]).status).toBe(0)
  })

  it('a missing metadata file is named the same way', () => {
    const w = twoIncrements()
    const file = path.join(w.dst, w.first, `${w.first}.json`)
    fs.rmSync(file)
    const r = cli(['status', '-c', w.config])
    expect(r.status).toBe(1)
    expect(r.stdout).toContain(`${path.relative(w.dst, file)}: damaged increment metadata: the metadata file is missing; rebuild it with \`backup recreate --backup ${w.first}\``)
  })
})

describe('an interrupted run is pending, never corruption', () => {
  it('verify --dst and restore after a run killed at every step: nothing CORRUPT, the unfinished run named', async () => {
    const base = workspace({ 'proj/p0.txt': 'tracked 0', 'proj/p1.txt': 'tracked 1', 'proj/p2.txt': 'tracked 2', 'proj/gone.txt': 'to delete', 'docs/u.txt': 'untracked' }, { track_dirs: ['proj'], include_dirs: ['docs'] })
    expect(cli(['run', '-c', base.config]).status).toBe(0)
    const old = listTree(base.src)
    for (const i of [0, 1, 2]) fs.writeFileSync(path.join(base.src, `proj/p${i}.txt`), `tracked ${i}, version two`)
    fs.writeFileSync(path.join(base.src, 'docs/u.txt'), 'untracked, version two')
    fs.rmSync(path.join(base.src, 'proj/gone.txt'))
    const now = listTree(base.src)
    let sawPending = 0
    let sawRecovered = 0
    // Every other step (each kind of step still occurs: a copy, a rename and a link take one step each).
    for (let n = 1; n < 60; n += 2) {
      const dir = tmpdir('pending-')
      fs.rmSync(dir, { recursive: true })
      execFileSync('cp', ['-a', base.dir, dir])
      // The copy's src is another path: let it adopt it (see the source record).
      fs.rmSync(path.join(dir, 'dst/.axiomatic/source.json'), { force: true })
      const config = path.join(dir, 'config.json')
      const killed = cli(['run', '-c', config], { env: { AXIOMATIC_FAULT_AFTER_OPS: String(n) } })
      const journal = fs.existsSync(path.join(dir, 'dst/.axiomatic/journal.jsonl'))
      let r = cli(['verify', '-c', config])
      expect({ n, out: r.stdout }).not.toEqual({ n, out: expect.stringMatching(/CORRUPT|MISSING/) })
      expect({ n, status: r.status }).toEqual({ n, status: 0 })
      if (journal) {
        sawPending++
        expect(r.stdout).toContain('was interrupted and is unfinished; the next `backup run` completes it')
        // status: the last run is the interrupted one, and its changes are pending, not a disagreement.
        const st = cli(['status', '-c', config])
        expect(st.stdout).toContain('last run: interrupted')
        expect(st.stdout).not.toContain('disagrees')
      }
      // Restore of the latest state: no "damaged" warning; every file is the old or the new version.
      const out = path.join(dir, 'out')
      r = cli(['restore', '--to', out, '-c', config])
      expect({ n, status: r.status, err: r.stderr }).toEqual({ n, status: 0, err: journal ? expect.stringContaining('the next `backup run` completes it') : '' })
      for (const [p, f] of listTree(out)) expect({ n, p, ok: [old.get(p)?.sha, now.get(p)?.sha].includes(f.sha) }).toEqual({ n, p, ok: true })
      // The next run finishes it; afterwards all is clean.
      expect(cli(['run', '-c', config]).status).toBe(0)
      r = cli(['verify', '-c', config])
      expect({ n, status: r.status, out: r.stdout }).toEqual({ n, status: 0, out: expect.not.stringContaining('PENDING') })
      if (increments(path.join(dir, 'dst')).some((i) => readMeta(path.join(dir, 'dst'), i).origin === 'recovered')) sawRecovered++
      fs.rmSync(dir, { recursive: true })
      if (killed.status === 0) break
      // Let the test runner's worker breathe between the synchronous CLI calls.
      await new Promise((r) => setImmediate(r))
    }
    expect(sawPending).toBeGreaterThan(3)
    expect(sawRecovered).toBeGreaterThan(0)
  })
})

const mounts: (() => void)[] = []
afterAll(() => {
  for (const m of mounts.reverse()) m()
})

/** A tmpfs of `size` mounted on a fresh folder (a real small or read-only disk). */
function mountTmpfs(size: string): string {
  const mnt = tmpdir('tmpfs-')
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt])
  mounts.push(() => spawnSync('umount', ['-l', mnt]))
  return mnt
}


describe('errors and small items say what is wrong', () => {
  it('a mistyped command is an unknown command, not a missing config', () => {
    const r = cli(['frobnicate'], { cwd: tmpdir() })
    expect(r.status).toBe(64)
    expect(r.stderr).toContain('unknown command "frobnicate"')
    // The list is the registered commands (it once was a copy that missed new ones).
    const listed = /the commands are ([^(]*) \(/.exec(r.stderr)![1].split(', ')
    expect(listed).toEqual(expect.arrayContaining(['run', 'list', 'serve', 'diff', 'repair', 'schedule', 'keygen']))
    expect(r.stderr).not.toContain('not found')
    // A config given as a path is still a config.
    expect(cli(['nope.json'], { cwd: tmpdir() }).stderr).toContain('config file')
    expect(cli(['nope.json'], { cwd: tmpdir() }).stderr).toContain('not found')
  })

  it('ssh://host/path without a user uses the current user, as ssh does', () => {
    const u = parseSshUrl('ssh://example.com:2222/srv/reports')
    expect(u).toMatchObject({ user: os.userInfo().username, host: 'example.com', port: 2222, path: '/srv/reports' })
    expect(parseSshUrl('ssh://me@example.com/x').user).toBe('me')
  })

  it('checksum progress is labelled hash, not apply', () => {
    const dir = tmpdir('data-')
    // Enough to read that the progress line shows at least once (on a terminal, through script(1)).
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(dir, `f${i}`), crypto.randomBytes(4 * 1024 * 1024))
    const out = path.join(tmpdir(), 'r.json')
    const r = spawnSync('script', ['-qec', `${process.execPath} ${BIN} checksum ${dir} --out ${out} --threads 1`, '/dev/null'], { encoding: 'utf8' })
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/hash: \d+\/40 files/)
    expect(r.stdout).not.toContain('apply:')
  })

  it('an include/track pattern that selects nothing is a hint', () => {
    const w = workspace({ 'docs/a.txt': 'a', 'proj/b.txt': 'b' }, { include_dirs: ['docs', 'Docs'], track_dirs: ['proj'], track_files: ['*.pdf:rec'] })
    const r = cli(['run', '-c', w.config])
    expect(r.status).toBe(0)
    expect(r.stderr).toContain('hint: include_dirs: "Docs" selected nothing in src')
    expect(r.stderr).toContain('hint: track_files: "*.pdf:rec" selected nothing in src')
    expect(r.stderr).not.toContain('"docs" selected nothing')
    expect(r.stderr).not.toContain('"proj" selected nothing')
  })

  it('list keeps its columns with damaged metadata; status names the backup folder once', () => {
    const w = twoIncrements()
    fs.writeFileSync(path.join(w.dst, w.first, `${w.first}.json`), '{"version": 1, "backup_name": "x", "file_catalog": {"a": ')
    const lines = cli(['list', '-c', w.config]).stdout.trimEnd().split('\n')
    const col = (l: string) => l.indexOf('2') // the TIME column starts with the year
    expect(new Set(lines.slice(1).map(col)).size).toBe(1)
    expect(lines.every((l) => l.length < 100)).toBe(true)
    // An unreadable state: its path is shown relative to the folder, which is named once.
    fs.writeFileSync(path.join(w.dst, '.axiomatic/state.jsonl'), '{"format":"axiomatic-mirror-state","version":1,"entries":5}\n')
    const r = cli(['status', '-c', w.config])
    expect(r.stdout.split(w.dst).length - 1).toBe(1)
    expect(r.stdout).toContain('mirror state: unreadable: .axiomatic/state.jsonl')
  })

  it('a read-only target: a clear error, and status says so (not "last run: ok")', () => {
    const mnt = mountTmpfs('4m')
    const w = workspace({ 't/a.txt': 'a' }, { track_dirs: ['t'] })
    const config = writeConfig(w.dir, { src: w.src, dst: path.join(mnt, 'dst'), track_dirs: ['t'] })
    expect(cli(['run', '-c', config]).status).toBe(0)
    execFileSync('mount', ['-o', 'remount,ro', mnt])
    fs.writeFileSync(path.join(w.src, 't/b.txt'), 'b')
    let r = cli(['run', '-c', config])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('is on a read-only file system')
    expect(r.stderr).not.toContain('EROFS: read-only file system, open')
    expect(JSON.parse(cli(['run', '-c', config, '--json']).stdout).error.code).toBe('EROFS')
    r = cli(['status', '-c', config])
    expect(r.status).toBe(1)
    expect(r.stdout).toContain('not writable (EROFS): it is on a read-only file system')
  })

  it('a full disk is ENOSPC in status, not EIO', () => {
    const mnt = mountTmpfs('1m')
    const w = workspace({ 't/a.txt': 'a' }, { track_dirs: ['t'] })
    const config = writeConfig(w.dir, { src: w.src, dst: path.join(mnt, 'dst'), track_dirs: ['t'] })
    expect(cli(['run', '-c', config]).status).toBe(0)
    fs.writeFileSync(path.join(w.src, 't/big.bin'), crypto.randomBytes(2 * 1024 * 1024))
    expect(cli(['run', '-c', config]).status).toBe(2)
    const r = cli(['status', '-c', config])
    expect(r.status).toBe(1)
    expect(r.stdout).toContain('ENOSPC: cannot copy t/big.bin: disk full')
    expect(r.stdout).not.toContain('EIO')
  })

  it('exFAT: the probe finds no hardlinks and no symlinks; a symlink is reported as such, up front and in status', () => {
    const mnt = mountExfat(mounts)
    const w = workspace({ 'docs/a.txt': 'a', 'docs/link': { symlink: 'a.txt' } }, { include_dirs: ['docs'] })
    const dst = path.join(mnt, 'dst')
    const config = writeConfig(w.dir, { src: w.src, dst, include_dirs: ['docs'] })
    let r = cli(['run', '-c', config])
    expect(r.status).toBe(1)
    expect(r.stdout.split('\n')[0]).toMatch(/^target \(\w+\): no hardlinks .*; no symlinks .*; mtimes to \d s/)
    expect(r.stderr).toContain('docs/link: symlink-unsupported: this file system cannot store symlinks')
    expect(r.stderr).not.toContain('Function not implemented (os error 38)')
    const target = JSON.parse(fs.readFileSync(path.join(dst, '.axiomatic/target.json'), 'utf8'))
    expect(target.caps).toMatchObject({ hardlinks: false, symlinks: false })
    r = cli(['status', '-c', config])
    expect(r.stdout).toMatch(/target: \w+: no hardlinks .*no symlinks/)
  })

  it('an ordinary target: probed once per run, recorded, nothing printed', () => {
    const w = workspace({ 't/a.txt': 'a' }, { track_dirs: ['t'] })
    const r = cli(['run', '-c', w.config])
    expect(r.stdout).not.toContain('target (')
    const target = JSON.parse(fs.readFileSync(path.join(w.dst, '.axiomatic/target.json'), 'utf8'))
    expect(target.caps).toMatchObject({ hardlinks: true, symlinks: true })
    expect(target.limits).toEqual([])
    expect(fs.readdirSync(path.join(w.dst, '.axiomatic')).filter((n) => n.startsWith('.probe'))).toEqual([])
    expect(cli(['status', '-c', w.config]).stdout).toMatch(/target: \w+, no limits found/)
  })
})
