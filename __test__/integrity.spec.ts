import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { backup, checksumFolder, compare, keygen, loadConfig, verify, verifyBackup } from '../js'
import { cli, flipByte, increments, readMeta, tmpdir, workspace, writeTree } from './helpers'
import { sshKey, startSshd, type Sshd } from './sshd'
import { needs } from './tools'

const hash = (algo: string, data: Buffer | string) => crypto.createHash(algo).update(data).digest('hex')

function dataTree() {
  const dir = tmpdir('data-')
  writeTree(dir, {
    'a.txt': 'alpha',
    'big.bin': { content: crypto.randomBytes(3 * 1024 * 1024 + 17) },
    'empty': '',
    'sub/b.txt': 'beta',
    'sub/deeper/c.txt': 'gamma',
    'odd/space name.txt': 'spaces',
    'odd/new\nline.txt': 'newline',
    'odd/back\\slash.txt': 'backslash',
    'odd/ünï cødé.txt': 'unicode',
    'link': { symlink: 'a.txt' },
  })
  // Whole-second mtimes, so a test can put an mtime back exactly after changing a byte.
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile()) fs.utimesSync(p, 1_700_000_000, 1_700_000_000)
    }
  }
  walk(dir)
  return dir
}

function readReport(file: string) {
  const env = JSON.parse(fs.readFileSync(file, 'utf8'))
  return { env, data: JSON.parse(env.data) }
}


describe('checksum', () => {
  it.skipIf(needs('checksum vs b3sum', ['b3sum']))('hashes every file with several algorithms in one report, in the original envelope', async () => {
    const dir = dataTree()
    const out = path.join(tmpdir(), 'r.json')
    const r = await checksumFolder(dir, 'g1', out, { algos: ['sha256', 'md5', 'sha512', 'sha3-512', 'blake3', 'xxh3'] })
    expect(r.errors).toEqual([])
    const { env, data } = readReport(out)
    expect(Object.keys(env).sort()).toEqual(['data', 'signature'])
    expect(env.signature).toBe(hash('sha3-512', env.data))
    expect(data).toMatchObject({ group: 'g1', root_data: dir, algorithms: ['sha256', 'md5', 'sha512', 'sha3-512', 'blake3', 'xxh3'] })
    // Absolute paths, as the original service writes them; symlinks only in `symlinks` (find -type f lists none).
    expect(data.files[0]).toBe(`${dir}/big.bin`) // largest first
    expect(data.files).toHaveLength(9)
    for (const abs of data.files) {
      const rel = path.relative(dir, abs)
      const content = fs.readFileSync(abs)
      const sums = data.checksums[abs]
      expect({ rel, sha256: sums.sha256, md5: sums.md5, sha512: sums.sha512, sha3: sums['sha3-512'] }).toEqual({
        rel,
        sha256: hash('sha256', content),
        md5: hash('md5', content),
        sha512: hash('sha512', content),
        sha3: hash('sha3-512', content),
      })
      expect(sums.blake3).toMatch(/^[0-9a-f]{64}$/)
      expect(sums.xxh3).toMatch(/^[0-9a-f]{16}$/)
      expect(data.sizes[abs]).toBe(content.length)
    }
    // Symlinks are recorded, not followed.
    expect(data.symlinks).toEqual({ [`${dir}/link`]: 'a.txt' })
    expect(data.checksums[`${dir}/link`]).toBeUndefined()
    // blake3 agrees with b3sum.
    const b3 = spawnSync('b3sum', ['--no-names', path.join(dir, 'big.bin')], { encoding: 'utf8' })
    expect(b3.status).toBe(0)
    expect(data.checksums[`${dir}/big.bin`].blake3).toBe(b3.stdout.trim())
  })

  it.skipIf(needs('check-line formats', ['sha256sum', 'b3sum']))('--format sha256sum and b3sum write lines that sha256sum -c and b3sum --check accept, odd names included', async () => {
    const dir = dataTree()
    const out = tmpdir()
    let r = cli(['checksum', dir, '--algo', 'sha256', '--format', 'sha256sum', '--out', path.join(out, 'all.sha256')])
    expect(r.status).toBe(0)
    const c1 = spawnSync('sha256sum', ['-c', path.join(out, 'all.sha256')], { cwd: dir, encoding: 'utf8' })
    expect(c1.stderr).toBe('')
    expect(c1.status).toBe(0)
    expect(c1.stdout.split('\n').filter(Boolean)).toHaveLength(9)
    r = cli(['checksum', dir, '--format', 'b3sum', '--out', path.join(out, 'all.b3')])
    expect(r.status).toBe(0)
    const c2 = spawnSync('b3sum', ['--check', path.join(out, 'all.b3')], { cwd: dir, encoding: 'utf8' })
    expect(c2.status).toBe(0)
    // verify reads them back, too.
    const v = await verify(path.join(out, 'all.b3'), { root: dir, algo: 'blake3' })
    expect(v.counts).toEqual({ OK: 9 })
    flipByte(path.join(dir, 'odd/new\nline.txt'))
    const v2 = cli(['verify', path.join(out, 'all.sha256'), '--root', dir, '--quiet'])
    expect(v2.status).toBe(1)
    expect(v2.stdout).toBe('"odd/new\\nline.txt": FAILED\n')
  })

  it('writes the groups of a config as the original service: <output_dir>/<group>/all_<ts>.json and groups.json', async () => {
    const base = tmpdir()
    writeTree(base, { 'one/x.txt': 'x', 'two/y.txt': 'y' })
    fs.writeFileSync(path.join(base, 'checksum.json'), JSON.stringify({ groups: [{ name: 'one', path: 'one' }, { name: 'two', path: 'two' }], output_dir: 'out' }))
    const r = cli(['checksum', '--checksum-config', path.join(base, 'checksum.json'), '--json'])
    expect(r.status).toBe(0)
    const j = JSON.parse(r.stdout)
    expect(j.reports.map((x: { group: string }) => x.group)).toEqual(['one', 'two'])
    for (const g of ['one', 'two']) {
      const files = fs.readdirSync(path.join(base, 'out', g))
      expect(files).toHaveLength(1)
      expect(files[0]).toMatch(/^all_\d+\.json$/)
    }
    const idx = JSON.parse(fs.readFileSync(path.join(base, 'out/groups.json'), 'utf8'))
    // A list, as the original checker reads it.
    expect(idx.map((g: { name: string; path: string }) => [g.name, g.path])).toEqual([['one', path.join(base, 'one')], ['two', path.join(base, 'two')]])
    // Config mistakes name the key.
    fs.writeFileSync(path.join(base, 'bad.json'), JSON.stringify({ groups: [{ name: 'a b', path: 'one' }], output_dir: 'out' }))
    // The spelling before 0.2 (`--config`, now a backup profile everywhere) still works, with a note.
    const bad = cli(['checksum', '--config', path.join(base, 'bad.json')])
    expect(bad.status).toBe(64)
    expect(bad.stderr).toContain('checksum --config FILE is deprecated')
    expect(bad.stderr).toContain('groups[0].name')
    expect(cli(['checksum', base, '--algo', 'sha1']).status).toBe(64)
  })
})

describe('verify', () => {
  it('classifies OK, FAILED, CORRUPT (bit rot), MISSING, NEW; exit codes 0 and 1', async () => {
    const dir = dataTree()
    const report = path.join(tmpdir(), 'r.json')
    await checksumFolder(dir, 'g', report)
    let r = cli(['verify', report])
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('a.txt: OK\n')
    flipByte(path.join(dir, 'big.bin'), 1_000_000) // bit rot: same size, same mtime
    flipByte(path.join(dir, 'odd/space name.txt'), 2) // in a small file too (read in a batch: MD5 on SIMD lanes)
    fs.writeFileSync(path.join(dir, 'sub/b.txt'), 'BETA!') // an edit
    fs.rmSync(path.join(dir, 'sub/deeper/c.txt'))
    fs.writeFileSync(path.join(dir, 'added.txt'), 'new')
    const v = await verify(report, { all: true })
    const by = Object.fromEntries(v.results.map((x) => [x.path, x.status]))
    expect(by).toMatchObject({ 'big.bin': 'CORRUPT', 'odd/space name.txt': 'CORRUPT', 'sub/b.txt': 'FAILED', 'sub/deeper/c.txt': 'MISSING', 'added.txt': 'NEW', 'a.txt': 'OK', link: 'OK' })
    expect(v.counts).toEqual({ OK: 6, CORRUPT: 2, FAILED: 1, MISSING: 1, NEW: 1 })
    r = cli(['verify', report, '--quiet'])
    expect(r.status).toBe(1)
    expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual(['added.txt: NEW', 'big.bin: CORRUPT (content changed while size and mtime did not: bit rot or tampering)', 'odd/space name.txt: CORRUPT (content changed while size and mtime did not: bit rot or tampering)', 'sub/b.txt: FAILED', 'sub/deeper/c.txt: MISSING'].sort())
  })

  it('--incremental trusts unchanged files without reading them, and re-hashes changed ones', async () => {
    const dir = dataTree()
    const report = path.join(tmpdir(), 'r.json')
    await checksumFolder(dir, 'g', report)
    const v = await verify(report, { incremental: true })
    expect(v.counts).toEqual({ OK: 10 })
    expect(v.trusted).toBe(9) // the symlink is checked by its target text
    expect(v.bytesRead).toBe(0)
    fs.writeFileSync(path.join(dir, 'a.txt'), 'ALPHA') // same size; ctime changes
    const v2 = await verify(report, { incremental: true })
    expect(v2.trusted).toBe(8)
    expect(v2.results.find((x) => x.path === 'a.txt')!.status).not.toBe('OK')
    expect(v.results).toEqual([]) // only problems without `all`
  })

  it('--incremental takes the report digest from the user cache while the report is unchanged, and hashes it again after an in-place edit', async () => {
    const dir = dataTree()
    const report = path.join(tmpdir(), 'r.json')
    await checksumFolder(dir, 'g', report)
    fs.utimesSync(report, 1_700_000_000, 1_700_000_000) // a whole second: restorable exactly from JS
    const env = { XDG_CACHE_HOME: tmpdir('cache-') }
    const run = () => cli(['verify', report, '--incremental', '--json'], { env })
    let r = run()
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ signatureCached: false, reportCached: false })
    // The verified digest, and the parsed report beside it.
    expect(fs.readdirSync(path.join(env.XDG_CACHE_HOME, 'axiomatic-backup', 'verified')).map((n) => path.extname(n)).sort()).toEqual(['.json', '.report'])
    r = run()
    expect(JSON.parse(r.stdout)).toMatchObject({ signatureCached: true, reportCached: true, counts: { OK: 10 } })
    // A full verify hashes the report anyway.
    expect(JSON.parse(cli(['verify', report, '--json'], { env }).stdout).signatureCached).toBe(false)
    // One byte of the data changed in place, size and mtime restored: the ctime changed, the digest is checked again.
    const st = fs.statSync(report, { bigint: true })
    const text = fs.readFileSync(report)
    const at = text.indexOf('a.txt')
    text[at] = 'b'.charCodeAt(0)
    const fd = fs.openSync(report, 'r+')
    fs.writeSync(fd, text, 0, text.length, 0)
    fs.closeSync(fd)
    fs.utimesSync(report, 1_700_000_000, 1_700_000_000)
    const now = fs.statSync(report, { bigint: true })
    expect([now.size, now.mtimeNs, now.ino]).toEqual([st.size, st.mtimeNs, st.ino])
    expect(now.ctimeNs).not.toBe(st.ctimeNs)
    r = run()
    expect(r.status).toBe(2)
    expect(r.stdout + r.stderr).toContain('signature does not match its data')
  })

  it('--incremental from the cached parsed report says exactly what a parse of the report says (new, missing, changed, corrupt files)', async () => {
    const dir = dataTree()
    const report = path.join(tmpdir(), 'r.json')
    await checksumFolder(dir, 'g', report)
    const cached = { XDG_CACHE_HOME: tmpdir('cache-') }
    const verifyJson = (env: Record<string, string>, ...more: string[]) => {
      const r = cli(['verify', report, '--incremental', '--json', ...more], { env })
      return { status: r.status, json: JSON.parse(r.stdout) }
    }
    expect(verifyJson(cached).json.reportCached).toBe(false) // parses, and caches the parsed form
    flipByte(path.join(dir, 'big.bin'), 1_000_000) // bit rot: same size, same mtime (the ctime changes)
    fs.writeFileSync(path.join(dir, 'sub/b.txt'), 'BETA!') // an edit
    fs.rmSync(path.join(dir, 'sub/deeper/c.txt'))
    fs.writeFileSync(path.join(dir, 'added.txt'), 'new')
    fs.rmSync(path.join(dir, 'link'))
    fs.symlinkSync('sub/b.txt', path.join(dir, 'link')) // another target
    for (const more of [[], ['--quiet']]) {
      const a = verifyJson(cached, ...more)
      const b = verifyJson({ XDG_CACHE_HOME: tmpdir('cache-') }, ...more) // nothing cached: the report parsed
      expect([a.json.reportCached, a.json.signatureCached, b.json.reportCached, b.json.signatureCached]).toEqual([true, true, false, false])
      expect(a.status).toBe(1)
      expect(b.status).toBe(1)
      const strip = (j: Record<string, unknown>) => ({ ...j, reportCached: undefined, signatureCached: undefined })
      expect(strip(a.json)).toEqual(strip(b.json))
      const by = Object.fromEntries(a.json.results.map((x: { path: string; status: string }) => [x.path, x.status]))
      expect(by).toMatchObject({ 'big.bin': 'CORRUPT', 'sub/b.txt': 'FAILED', 'sub/deeper/c.txt': 'MISSING', 'added.txt': 'NEW', link: 'FAILED' })
    }
    // The cache entry damaged (one byte of its body): ignored, the report parsed again, same answer, entry rewritten.
    const entry = fs.readdirSync(path.join(cached.XDG_CACHE_HOME, 'axiomatic-backup', 'verified')).find((n) => n.endsWith('.report'))!
    const entryPath = path.join(cached.XDG_CACHE_HOME, 'axiomatic-backup', 'verified', entry)
    flipByte(entryPath, Math.floor(fs.statSync(entryPath).size / 2))
    const damaged = verifyJson(cached)
    expect([damaged.json.reportCached, damaged.json.signatureCached]).toEqual([false, true])
    expect(damaged.json.counts).toEqual({ OK: 6, CORRUPT: 1, FAILED: 2, MISSING: 1, NEW: 1 })
    expect(verifyJson(cached).json.reportCached).toBe(true)
    // Writable by others: ignored too.
    fs.chmodSync(entryPath, 0o666)
    expect(verifyJson(cached).json.reportCached).toBe(false)
  })

  it('refuses a tampered report before reading any file (exit 2), and checks Ed25519 signatures', async () => {
    const dir = dataTree()
    const keys = tmpdir('keys-')
    const { privateKey, publicKey } = keygen(path.join(keys, 'reports'))
    expect(fs.statSync(privateKey).mode & 0o777).toBe(0o600)
    const report = path.join(tmpdir(), 'r.json')
    const signed = await checksumFolder(dir, 'g', report, { signKey: privateKey })
    expect(signed.signed).toBe(true)
    expect((await verify(report, { pubkey: publicKey })).counts).toEqual({ OK: 10 })
    // Another key's signature is refused.
    const other = keygen(path.join(keys, 'other'))
    let r = cli(['verify', report, '--pubkey', other.publicKey])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('Ed25519 signature does not match')
    // An unsigned report is refused when a key is required.
    const plain = path.join(tmpdir(), 'plain.json')
    await checksumFolder(dir, 'g', plain)
    r = cli(['verify', plain, '--pubkey', publicKey])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('no Ed25519 signature')
    // Tampering with the data: the digest no longer matches. The root is gone, so reading
    // any file would give another error: the refusal comes first.
    const env = JSON.parse(fs.readFileSync(report, 'utf8'))
    const data = JSON.parse(env.data)
    data.checksums[`${dir}/a.txt`].sha256 = hash('sha256', 'evil')
    env.data = JSON.stringify(data)
    fs.writeFileSync(report, JSON.stringify(env))
    fs.rmSync(dir, { recursive: true })
    r = cli(['verify', report])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('signature does not match its data')
    // Tampering that also recomputes the SHA3-512 passes the digest, not the Ed25519 signature.
    env.signature = hash('sha3-512', env.data)
    fs.writeFileSync(report, JSON.stringify(env))
    r = cli(['verify', report, '--pubkey', publicKey])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('Ed25519 signature does not match')
  })

  it('verify --dst (and the old --backup) finds bit rot in the mirror and increments, and --repair fixes it from the source', async () => {
    const w = workspace({ 't/a.txt': 'version one of a', 't/b.txt': 'bee', 'plain/u.txt': 'untracked' }, { track_dirs: ['t'], include_dirs: ['plain'] })
    const cfg = loadConfig(w.config)
    await backup(cfg)
    fs.writeFileSync(path.join(w.src, 't/b.txt'), 'bee two')
    await backup(cfg)
    const [inc1] = increments(w.dst)
    let r = await verifyBackup(w.dst)
    expect(r.problems).toEqual([])
    expect(r.unverifiable).toBe(1)
    expect(r.inodesRead).toBeLessThan(r.filesChecked) // hardlinks read once
    // Bit rot in the mirror copy of a.txt: the same inode is inc1's version.
    flipByte(path.join(w.dst, 'mirror/t/a.txt'))
    r = await verifyBackup(w.dst)
    expect(r.problems.map((p) => [p.location, p.path, p.status])).toEqual([
      [inc1, 't/a.txt', 'CORRUPT'],
      ['mirror', 't/a.txt', 'CORRUPT'],
    ])
    const res = cli(['verify', '--dst', w.dst])
    expect(res.status).toBe(1)
    // The spelling before 0.2 still works: stdout is the one JSON object, the note is on stderr.
    const fixed = cli(['verify', '--backup', '--repair', '-c', w.config, '--json'])
    expect(fixed.stderr).toContain('verify --backup is deprecated')
    const j = JSON.parse(fixed.stdout)
    expect(j.repaired).toBe(2)
    expect(fixed.status).toBe(0)
    expect(fs.readFileSync(path.join(w.dst, 'mirror/t/a.txt'), 'utf8')).toBe('version one of a')
    expect(fs.readFileSync(path.join(w.dst, inc1, 'track/t/a.txt'), 'utf8')).toBe('version one of a')
    expect((await verifyBackup(w.dst)).problems).toEqual([])
    // An old version whose content exists nowhere else cannot be repaired, and says so.
    flipByte(path.join(w.dst, inc1, 'track/t/b.txt'))
    const nope = await verifyBackup(w.dst, { source: w.src })
    expect(nope.problems).toHaveLength(1)
    expect(nope.problems[0]).toMatchObject({ location: inc1, path: 't/b.txt', status: 'CORRUPT' })
    expect(nope.problems[0].repair).toContain('cannot be repaired')
    expect(readMeta(w.dst, inc1).file_catalog['t/b.txt'].sha256).toBe(hash('sha256', 'bee'))
  })
})

describe('compare', () => {
  it('finds lost files and mismatched checksums across servers, NFC-normalized, and writes result files', async () => {
    const a = tmpdir('srvA-')
    const b = tmpdir('srvB-')
    writeTree(a, { 'same.txt': 's', 'only-a.txt': 'a', 'differs.txt': 'one', 'caf\u00e9.txt': 'nfc' })
    writeTree(b, { 'same.txt': 's', 'only-b.txt': 'b', 'differs.txt': 'two', 'cafe\u0301.txt': 'nfc' })
    const outA = tmpdir('outA-')
    const outB = tmpdir('outB-')
    await checksumFolder(a, 'docs', path.join(outA, 'docs', 'all_1700000000.json'))
    await checksumFolder(b, 'docs', path.join(outB, 'docs', 'all_1700000100.json'))
    // An older report in A's folder is ignored: the latest per group counts.
    fs.copyFileSync(path.join(outB, 'docs', 'all_1700000100.json'), path.join(outA, 'docs', 'all_1600000000.json'))
    const r = await compare([outA, outB])
    expect(r.groups).toHaveLength(1)
    const g = r.groups[0]
    expect(g.servers.map((s) => s.server)).toEqual([outA, outB])
    expect(g.lostFiles).toEqual([
      { path: 'only-a.txt', presentOn: [outA], missingOn: [outB] },
      { path: 'only-b.txt', presentOn: [outB], missingOn: [outA] },
    ])
    expect(g.mismatched.map((m) => m.path)).toEqual(['differs.txt'])
    const dir = tmpdir()
    const res = cli(['compare', outA, outB, '--out', dir])
    expect(res.status).toBe(1)
    const files = fs.readdirSync(dir).sort()
    expect(files[0]).toMatch(/^lost_files_.*\.json$/)
    expect(files[1]).toMatch(/^mismatch_sum_.*\.json$/)
    const lost = JSON.parse(fs.readFileSync(path.join(dir, files[0]), 'utf8'))
    expect(lost.docs.lost_files).toHaveLength(2)
    const table = cli(['compare', outA, outB])
    expect(table.stdout).toContain('mismatch  differs.txt')
    expect(table.stdout).toContain('2 lost, 1 mismatched')
  })
})

// ---------------------------------------------------------------- a real OpenSSH server on 127.0.0.1

describe.skipIf(needs('compare over SSH (a real sshd on 127.0.0.1)', ['sshd', 'ssh-keygen'], { root: true }))('compare over SSH', () => {
  const home = tmpdir('ssh-')
  let sshd: Sshd | undefined
  let port = 0
  const userKey = path.join(home, 'id_ed25519')
  const knownHosts = path.join(home, 'known_hosts')
  const remoteOut = path.join(home, 'remote-out')
  const localOut = path.join(home, 'local-out')

  beforeAll(async () => {
    sshKey(userKey)
    sshd = await startSshd(path.join(home, 'server'), [`${userKey}.pub`])
    port = sshd.port
    fs.writeFileSync(knownHosts, `${sshd.knownHostsLine}\n`)
    const src = tmpdir('remote-data-')
    writeTree(src, { 'x.txt': 'x', 'y.txt': 'y', 'z.txt': 'z' })
    await checksumFolder(src, 'data', path.join(remoteOut, 'data', `all_${Math.floor(Date.now() / 1000)}.json`))
    fs.rmSync(path.join(src, 'z.txt'))
    fs.writeFileSync(path.join(src, 'y.txt'), 'Y')
    await checksumFolder(src, 'data', path.join(localOut, 'data', 'all_1700000000.json'))
  }, 60_000)

  afterAll(() => {
    sshd?.stop()
  })

  const url = () => `ssh://root@127.0.0.1:${port}${remoteOut}`

  it('reads the latest reports over SSH with a checked host key', async () => {
    const r = await compare([url(), localOut], { identity: userKey, knownHosts })
    const g = r.groups[0]
    expect(g.servers.map((s) => s.server)).toEqual([`root@127.0.0.1:${port}`, localOut])
    expect(g.lostFiles).toEqual([{ path: 'z.txt', presentOn: [`root@127.0.0.1:${port}`], missingOn: [localOut] }])
    expect(g.mismatched.map((m) => m.path)).toEqual(['y.txt'])
    const res = cli(['compare', url(), localOut, '--identity', userKey, '--known-hosts', knownHosts, '--json'])
    expect(res.status).toBe(1)
    expect(JSON.parse(res.stdout).groups[0].lostFiles).toHaveLength(1)
  })

  it('goes through a jump host', async () => {
    const r = await compare([url(), localOut], { identity: userKey, knownHosts, jump: `root@127.0.0.1:${port}` })
    expect(r.groups[0].lostFiles.map((l) => l.path)).toEqual(['z.txt'])
  })

  it('refuses a wrong host key and an unknown host; accepts a new one only when asked', async () => {
    const wrong = path.join(home, 'wrong_known_hosts')
    const other = path.join(home, 'other_host_key')
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other])
    const pub = fs.readFileSync(`${other}.pub`, 'utf8').trim().split(' ')
    fs.writeFileSync(wrong, `[127.0.0.1]:${port} ${pub[0]} ${pub[1]}\n`)
    let res = cli(['compare', url(), localOut, '--identity', userKey, '--known-hosts', wrong])
    expect(res.status).toBe(2)
    expect(res.stderr).toContain('does not match')
    const empty = path.join(home, 'empty_known_hosts')
    res = cli(['compare', url(), localOut, '--identity', userKey, '--known-hosts', empty])
    expect(res.status).toBe(2)
    expect(res.stderr).toContain('is not in')
    expect(fs.existsSync(empty)).toBe(false)
    res = cli(['compare', url(), localOut, '--identity', userKey, '--known-hosts', empty, '--accept-new-host-key'])
    expect(res.status).toBe(1)
    expect(fs.readFileSync(empty, 'utf8')).toContain(`[127.0.0.1]:${port} ssh-ed25519 `)
    // Now known: accepted without the flag.
    res = cli(['compare', url(), localOut, '--identity', userKey, '--known-hosts', empty])
    expect(res.status).toBe(1)
    // A wrong user key is an authentication error, not retried forever.
    const stranger = path.join(home, 'stranger')
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stranger])
    res = cli(['compare', url(), localOut, '--identity', stranger, '--known-hosts', knownHosts, '--retries', '5'])
    expect(res.status).toBe(2)
    expect(res.stderr).toContain('authentication failed')
  })
})
