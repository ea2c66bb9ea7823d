/**
 * `backup repair` (issue 14): three servers, each with a copy of the same data and its own report; the
 * majority version goes where a copy rotted or is lost, a tie is left alone, a plan changes nothing, a
 * replaced copy is kept, an interrupted repair leaves no partial file and finishes on a rerun. Run over
 * three real sshd instances (one through a jump host), over local report folders, and over a mix of
 * our reports and the original service's.
 */
import { spawn, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { checksumFolder, compare, repair, verify, type RepairOptions, type RepairResult } from '../js'
import { parseExact, stringifyExact, tempName, unsafeRel } from '../js/integrity/repair'
import { LocalSide } from '../js/integrity/sides'
import { BIN, cli, flipByte, listTree, tmpdir, writeTree } from './helpers'
import { sshKey, startSshd, type Sshd } from './sshd'
import { needs } from './tools'

const sha = (data: Buffer | string) => crypto.createHash('sha256').update(data).digest('hex')
const MTIME = 1_700_000_000
const PY = path.join(__dirname, 'fixtures', 'original_format.py')

const ROT = crypto.randomBytes(300_000)
const BIG = crypto.randomBytes(3 * 1024 * 1024)

/** One server's data: the same tree everywhere, whole-second mtimes, one file mode 640. */
function serverData(name: string): string {
  const dir = tmpdir(`data-${name}-`)
  writeTree(dir, {
    'keep.txt': 'the same everywhere',
    'rot.bin': { content: ROT, mode: 0o640 },
    'gone.txt': 'lost on B',
    'sub/deep/odd name ü.txt': 'deep',
    'big.bin': { content: BIG },
  })
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else fs.utimesSync(p, MTIME, MTIME)
    }
  }
  walk(dir)
  return dir
}

type Kind = 'ours' | 'original'

interface Server {
  name: string
  data: string
  out: string
}

/** Writes the server's report (ours, or the original service's) into `out/data/all_<ts>.json`. */
async function report(s: Server, kind: Kind, ts: number) {
  if (kind === 'ours') {
    await checksumFolder(s.data, 'data', path.join(s.out, 'data', `all_${ts}.json`))
    fs.writeFileSync(path.join(s.out, 'groups.json'), JSON.stringify([{ name: 'data', path: s.data }]))
  } else {
    const r = spawnSync('python3', [PY, 'service', s.out, `data=${s.data}`, '--ts', String(ts)], { encoding: 'utf8' })
    expect(r.stderr).toBe('')
  }
}

/**
 * The fleet: A's rot.bin rotted (byte flipped, mtime restored), B lost gone.txt, tie.txt differs on A
 * and B and is absent on C. `damageBig`: A's big.bin rotted too (the interrupted-transfer case).
 */
async function fleet(kinds: [Kind, Kind, Kind], damageBig = false): Promise<Server[]> {
  const servers = ['A', 'B', 'C'].map((name) => ({ name, data: serverData(name), out: tmpdir(`out-${name}-`) }))
  const [a, b] = servers
  flipByte(path.join(a.data, 'rot.bin'), 1000)
  if (damageBig) flipByte(path.join(a.data, 'big.bin'), 2_000_000)
  fs.rmSync(path.join(b.data, 'gone.txt'))
  writeTree(a.data, { 'tie.txt': { content: 'tie version A', mtime: MTIME } })
  writeTree(b.data, { 'tie.txt': { content: 'tie version B', mtime: MTIME } })
  for (const [i, s] of servers.entries()) await report(s, kinds[i], 1_800_000_000 + i)
  return servers
}

/** Every file of every server (data and output folders): content, mtime and mode. */
function snapshot(servers: Server[]) {
  return servers.map((s) => [Object.fromEntries(listTree(s.data)), Object.fromEntries(listTree(s.out))])
}

/** What the first `repair --apply` must have done, whatever the transport. */
async function expectHealed(servers: Server[], r: RepairResult, labels: string[]) {
  const [a, b, c] = servers
  expect(r.copies.map((x) => [x.path, x.to, x.reason, x.status]).sort()).toEqual(
    [
      ['gone.txt', labels[1], 'missing', 'repaired'],
      ['rot.bin', labels[0], 'damaged', 'repaired'],
    ].sort(),
  )
  expect(r.undecided.map((u) => u.path)).toEqual(['tie.txt'])
  expect(r.undecided[0].reason).toContain('no strict majority')
  // Healed, with the source's mtime and mode.
  const rot = fs.statSync(path.join(a.data, 'rot.bin'))
  expect(sha(fs.readFileSync(path.join(a.data, 'rot.bin')))).toBe(sha(ROT))
  expect([rot.mtimeMs, rot.mode & 0o7777]).toEqual([MTIME * 1000, 0o640])
  expect(fs.readFileSync(path.join(b.data, 'gone.txt'), 'utf8')).toBe('lost on B')
  expect(fs.statSync(path.join(b.data, 'gone.txt')).mtimeMs).toBe(MTIME * 1000)
  // The damaged copy is kept in the quarantine on A, with a note saying why.
  const q = r.copies.find((x) => x.path === 'rot.bin')!.quarantined!
  expect(q.startsWith(path.join(a.out, 'repair', 'quarantine-'))).toBe(true)
  const kept = fs.readFileSync(q)
  expect(kept.equals(ROT)).toBe(false)
  expect(kept.length).toBe(ROT.length)
  const note = JSON.parse(fs.readFileSync(`${q}.why.json`, 'utf8'))
  expect(note).toMatchObject({ path: 'rot.bin', expected: { sha256: sha(ROT) }, actual: { sha256: sha(kept) }, replaced_from: expect.any(String) })
  // The tie is left alone everywhere.
  expect(fs.readFileSync(path.join(a.data, 'tie.txt'), 'utf8')).toBe('tie version A')
  expect(fs.readFileSync(path.join(b.data, 'tie.txt'), 'utf8')).toBe('tie version B')
  expect(fs.existsSync(path.join(c.data, 'tie.txt'))).toBe(false)
  // A journal on each touched server, and a new report there.
  expect(r.journals.map((j) => j.server).sort()).toEqual([labels[0], labels[1]].sort())
  const steps = fs.readFileSync(r.journals.find((j) => j.server === labels[0])!.journal, 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)
  expect(steps).toEqual(['copy', 'quarantined', 'done', 'report'])
  expect(r.reports.map((x) => x.server).sort()).toEqual([labels[0], labels[1]].sort())
  // A's new report (ours) verifies, and keeps the exact stat of the files it did not repair:
  // --incremental trusts them and re-reads only the repaired one.
  const v = await verify(r.reports.find((x) => x.server === labels[0])!.report, { incremental: true })
  expect(v.counts).toEqual({ OK: 6 })
  expect(v.trusted).toBe(5)
  expect((await verify(r.reports.find((x) => x.server === labels[1])!.report)).counts).toEqual({ OK: 6 })
  // No temp file left anywhere.
  for (const s of servers) expect([...listTree(s.data).keys()].filter((k) => k.includes('axiomatic-repair'))).toEqual([])
}

/** After the repair, compare finds only the tie. */
async function expectCleanCompare(sources: string[], opts: RepairOptions = {}) {
  const g = (await compare(sources, opts)).groups[0]
  expect(g.lostFiles.map((l) => l.path)).toEqual(['tie.txt'])
  expect(g.mismatched.map((m) => m.path)).toEqual(['tie.txt'])
}

/** Waits until `file` holds at least `bytes`. */
async function grown(file: string, bytes: number, ms = 30_000) {
  for (const t0 = Date.now(); Date.now() - t0 < ms; await new Promise((r) => setTimeout(r, 50))) {
    if ((fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0) >= bytes) return
  }
  throw new Error(`${file} did not reach ${bytes} bytes`)
}

/** Runs the CLI in the background (for killing it mid-transfer). */
function cliAsync(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b) => (stdout += b))
  child.stderr.on('data', (b) => (stderr += b))
  const done = new Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr })),
  )
  return { child, done }
}

describe('repair: building blocks', () => {
  it('rewrites report JSON exactly: integers beyond 2^53 (nanosecond stat) keep every digit', () => {
    const text = JSON.stringify({ a: 'x"1234567890123456789"\\', n: [1.5, -3, 2 ** 53 + 10] }).replace(String(2 ** 53 + 10), '1700000000123456789')
    const big = `{"stat":{"/d/f 1234567890123456789":[1700000000123456789,-1700000000123456781,42]},"w":0.1234567891,"s":"9007199254740993"}`
    for (const t of [text, big]) expect(stringifyExact(parseExact(t))).toBe(t)
    expect(JSON.stringify(JSON.parse(big))).not.toBe(big) // what a plain round trip would lose
  })

  it('refuses unsafe relative paths from reports', () => {
    expect(unsafeRel('a/b.txt')).toBeNull()
    for (const p of ['/etc/passwd', '../x', 'a/../../x', 'a//b', './a', 'a/\0b']) expect(unsafeRel(p)).not.toBeNull()
  })
})

describe('repair: local report folders', () => {
  it('plans without changing anything, heals by majority with --apply, keeps the damaged copy, leaves the tie (exit 1)', async () => {
    const servers = await fleet(['ours', 'ours', 'ours'])
    const outs = servers.map((s) => s.out)
    const before = snapshot(servers)
    const plan = cli(['repair', ...outs, '--json'])
    expect(plan.stderr).toBe('')
    expect(plan.status).toBe(1) // the tie is undecided
    const p = JSON.parse(plan.stdout) as RepairResult
    expect(p.applied).toBe(false)
    expect(p.copies.map((x) => [x.path, x.to, x.reason, x.status, x.bytes]).sort()).toEqual(
      [
        ['gone.txt', outs[1], 'missing', 'planned', 9],
        ['rot.bin', outs[0], 'damaged', 'planned', ROT.length],
      ].sort(),
    )
    expect(p.bytes).toBe(ROT.length + 9)
    expect(p.undecided.map((u) => [u.path, u.versions])).toEqual([['tie.txt', { [outs[0]]: sha('tie version A'), [outs[1]]: sha('tie version B'), [outs[2]]: null }]])
    const human = cli(['repair', ...outs])
    expect(human.stdout).toContain('plan: 2 copies')
    expect(human.stdout).toContain('undecided data: tie.txt')
    // Not one byte or mtime changed on any server (data and output folders).
    expect(snapshot(servers)).toEqual(before)

    const r = await repair(outs, { apply: true })
    await expectHealed(servers, r, outs)
    await expectCleanCompare(outs)
    // A rerun has nothing left to copy; only the tie remains.
    const again = cli(['repair', ...outs, '--apply', '--json'])
    expect(again.status).toBe(1)
    expect(JSON.parse(again.stdout)).toMatchObject({ copies: [], undecided: [{ path: 'tie.txt' }] })
    expect(cli(['repair', ...outs, '--group', 'nope']).status).toBe(64)
    expect(cli(['repair', outs[0]]).status).toBe(64)
    // With the tie settled by hand and C given its copy, nothing is left: exit 0.
    fs.writeFileSync(path.join(servers[1].data, 'tie.txt'), 'tie version A')
    fs.utimesSync(path.join(servers[1].data, 'tie.txt'), MTIME, MTIME)
    await report(servers[1], 'ours', 1_900_000_000)
    expect(cli(['repair', ...outs, '--apply']).status).toBe(0)
    expect(fs.readFileSync(path.join(servers[2].data, 'tie.txt'), 'utf8')).toBe('tie version A')
    expect(cli(['repair', ...outs, '--json']).status).toBe(0)
  })

  it('an interrupted apply (the process killed mid-transfer) leaves no partial file in place and finishes on a rerun', async () => {
    const servers = await fleet(['ours', 'ours', 'ours'], true)
    const outs = servers.map((s) => s.out)
    const target = path.join(servers[0].data, 'big.bin')
    const damaged = fs.readFileSync(target)
    const tmp = tempName(target, new LocalSide('A'))
    const run = cliAsync(['repair', ...outs, '--apply', '--bwlimit', '256K', '--parallel', '1', '--json'])
    await grown(tmp, 200_000)
    run.child.kill('SIGKILL')
    expect((await run.done).signal).toBe('SIGKILL')
    // The damaged copy is still in place, whole: the partial copy is only the temp file beside it.
    expect(fs.readFileSync(target).equals(damaged)).toBe(true)
    expect(fs.statSync(tmp).size).toBeLessThan(BIG.length)
    const r = cli(['repair', ...outs, '--apply', '--json'])
    expect(r.stderr).toBe('')
    const j = JSON.parse(r.stdout) as RepairResult
    expect(j.copies.filter((x) => x.status === 'repaired').map((x) => x.path).sort()).toEqual(['big.bin', 'gone.txt', 'rot.bin'])
    expect(fs.readFileSync(target).equals(BIG)).toBe(true)
    expect(fs.existsSync(tmp)).toBe(false)
    await expectCleanCompare(outs)
  })

  it('--quarantine DIR (relative to each server\'s output folder, or absolute) is where the replaced copy goes', async () => {
    const servers = await fleet(['ours', 'ours', 'ours'])
    const outs = servers.map((s) => s.out)
    const r = cli(['repair', ...outs, '--apply', '--quarantine', 'kept', '--json'])
    expect(r.status).toBe(1)
    const q = (JSON.parse(r.stdout) as RepairResult).copies.find((x) => x.path === 'rot.bin')!.quarantined!
    expect(path.relative(servers[0].out, q)).toMatch(/^kept\/\d{8}_\d{6}\/data\/rot\.bin$/)
    expect(fs.readFileSync(q).length).toBe(ROT.length)
    // A second damage of the same file, repaired into an absolute quarantine.
    flipByte(path.join(servers[0].data, 'rot.bin'), 5)
    await report(servers[0], 'ours', 1_900_000_000)
    const abs = tmpdir('quarantine-')
    const r2 = await repair(outs, { apply: true, quarantine: abs })
    expect(r2.copies.map((x) => [x.path, x.status])).toEqual([['rot.bin', 'repaired']])
    expect(r2.copies[0].quarantined!.startsWith(abs + '/')).toBe(true)
    expect(sha(fs.readFileSync(path.join(servers[0].data, 'rot.bin')))).toBe(sha(ROT))
  })

  it('two servers cannot outvote each other: every difference is undecided, nothing is copied', async () => {
    const servers = (await fleet(['ours', 'ours', 'ours'])).slice(0, 2)
    const before = snapshot(servers)
    const r = await repair(servers.map((s) => s.out), { apply: true })
    expect(r.copies).toEqual([])
    expect(r.undecided.map((u) => u.path)).toEqual(['gone.txt', 'rot.bin', 'tie.txt'])
    for (const u of r.undecided) expect(u.reason).toContain('no strict majority among 2 servers')
    expect(snapshot(servers)).toEqual(before)
  })

  it('an altered report is unusable input: exit 2, nothing changed anywhere', async () => {
    const servers = await fleet(['ours', 'ours', 'ours'])
    const outs = servers.map((s) => s.out)
    const file = path.join(outs[1], 'data', fs.readdirSync(path.join(outs[1], 'data'))[0])
    const env = JSON.parse(fs.readFileSync(file, 'utf8'))
    env.data = env.data.replace(sha('the same everywhere'), sha('something else'))
    fs.writeFileSync(file, JSON.stringify(env))
    const before = snapshot(servers)
    const r = cli(['repair', ...outs, '--apply', '--json'])
    expect(r.status).toBe(2)
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: 'ECORRUPT', message: expect.stringContaining('signature does not match its data') })
    expect(snapshot(servers)).toEqual(before)
  })

  it('refuses paths from a report that leave the group root, and a source that changed since its report', async () => {
    const servers = await fleet(['ours', 'ours', 'ours'])
    const outs = servers.map((s) => s.out)
    // A's good copy of gone.txt changes after the reports; C still has it: C is the source.
    fs.writeFileSync(path.join(servers[0].data, 'gone.txt'), 'edited on A')
    // On C, a report entry that climbs out of the root (its digest recomputed, so the report itself passes).
    const file = path.join(servers[2].out, 'data', fs.readdirSync(path.join(servers[2].out, 'data'))[0])
    const env = JSON.parse(fs.readFileSync(file, 'utf8'))
    const data = JSON.parse(env.data)
    for (const s of servers.slice(0, 2)) {
      const f = path.join(s.out, 'data', fs.readdirSync(path.join(s.out, 'data'))[0])
      const e = JSON.parse(fs.readFileSync(f, 'utf8'))
      const d = JSON.parse(e.data)
      d.checksums[`${d.root_data}/../escape.txt`] = { sha256: sha('x'), md5: crypto.createHash('md5').update('x').digest('hex') }
      e.data = JSON.stringify(d)
      e.signature = crypto.createHash('sha3-512').update(e.data).digest('hex')
      fs.writeFileSync(f, JSON.stringify(e))
    }
    expect(data.root_data).toBe(servers[2].data)
    const r = await repair(outs, { apply: true })
    const esc = r.undecided.find((u) => u.path.includes('escape'))!
    expect(esc.reason).toContain('climbs out')
    expect(fs.existsSync(path.join(path.dirname(servers[2].data), 'escape.txt'))).toBe(false)
    const gone = r.copies.find((x) => x.path === 'gone.txt')!
    expect(gone.status).toBe('repaired')
    expect(fs.readFileSync(path.join(servers[1].data, 'gone.txt'), 'utf8')).toBe('lost on B')
    // A symlinked folder on the target does not lead the write outside the root.
    const s2 = await fleet(['ours', 'ours', 'ours'])
    const outside = tmpdir('outside-')
    fs.rmSync(path.join(s2[1].data, 'sub'), { recursive: true })
    fs.symlinkSync(outside, path.join(s2[1].data, 'sub'))
    // And a file that is a symlink on B: never replaced by the others' file.
    fs.rmSync(path.join(s2[1].data, 'keep.txt'))
    fs.symlinkSync('gone.txt', path.join(s2[1].data, 'keep.txt'))
    await report(s2[1], 'ours', 1_800_000_100)
    const r2 = await repair(s2.map((s) => s.out), { apply: true })
    const deep = r2.copies.find((x) => x.path.startsWith('sub/'))!
    expect(deep.status).toBe('failed')
    expect(deep.error).toContain('outside the group root')
    expect(fs.readdirSync(outside)).toEqual([])
    expect(r2.undecided.find((u) => u.path === 'keep.txt')!.reason).toContain('a symlink on')
    expect(fs.readlinkSync(path.join(s2[1].data, 'keep.txt'))).toBe('gone.txt')
    // The same folder twice is refused (it would vote twice).
    expect(cli(['repair', s2[0].out, `${s2[0].out}/`, s2[1].out]).status).toBe(64)
  })
})

describe.skipIf(needs('original backup_syncer formats', ['python3']))('repair: a mix of our reports and the original service’s', () => {
  it('heals the same way and writes each touched server a new report in the format it already used', async () => {
    const servers = await fleet(['ours', 'original', 'original'])
    const outs = servers.map((s) => s.out)
    const before = snapshot(servers)
    const plan = await repair(outs)
    expect(plan.copies.map((x) => x.path).sort()).toEqual(['gone.txt', 'rot.bin'])
    expect(plan.copies.find((x) => x.path === 'gone.txt')!.bytes).toBe(9) // the original's reports have no sizes: asked
    expect(snapshot(servers)).toEqual(before)
    const r = await repair(outs, { apply: true })
    await expectHealed(servers, r, outs)
    // B's new report is the original service's format (no `algorithms`, a string timestamp), newer than the old.
    const b = r.reports.find((x) => x.server === outs[1])!
    expect(path.basename(b.report)).toMatch(/^all_\d+\.json$/)
    expect(Number(path.basename(b.report).slice(4, -5))).toBeGreaterThan(1_800_000_001)
    const data = JSON.parse(JSON.parse(fs.readFileSync(b.report, 'utf8')).data)
    expect(data.algorithms).toBeUndefined()
    expect(typeof data.start_timestamp).toBe('string')
    expect(data.checksums[`${servers[1].data}/gone.txt`]).toEqual({ sha256: sha('lost on B'), md5: crypto.createHash('md5').update('lost on B').digest('hex') })
    expect(data.files).toContain(`${servers[1].data}/gone.txt`)
    await expectCleanCompare(outs)
    // The original checker agrees: only the tie.
    const checker = JSON.parse(spawnSync('python3', [PY, 'checker', ...outs], { encoding: 'utf8' }).stdout)
    expect(checker).toEqual({ data: { lost: ['./tie.txt'], mismatch: ['./tie.txt'] } })
  })
})

// ---------------------------------------------------------------- three real sshd instances

describe.skipIf(needs('repair over SSH (three sshd on 127.0.0.1)', ['sshd', 'ssh-keygen', 'sha256sum', 'pgrep'], { root: true }))('repair over SSH', () => {
  const home = tmpdir('repair-ssh-')
  const sshd: Sshd[] = []
  const keys = ['A', 'B', 'C'].map((n) => path.join(home, `id_${n}`))
  const knownHosts = path.join(home, 'known_hosts')

  beforeAll(async () => {
    // Each server lets in only its own user key.
    for (const [i, k] of keys.entries()) {
      sshKey(k)
      sshd.push(await startSshd(path.join(home, `server-${i}`), [`${k}.pub`]))
    }
    fs.writeFileSync(knownHosts, sshd.map((s) => s.knownHostsLine).join('\n') + '\n')
  }, 60_000)

  afterAll(() => {
    for (const s of sshd) s.stop()
  })

  const urls = (servers: Server[]) => servers.map((s, i) => `ssh://root@127.0.0.1:${sshd[i].port}${s.out}`)
  const labels = () => sshd.map((s) => `root@127.0.0.1:${s.port}`)
  /** C is reached through A (A's sshd forwards). */
  const sshArgs = () => [...keys.flatMap((k) => ['--identity', k]), '--known-hosts', knownHosts, '--jump', `127.0.0.1:${sshd[2].port}=root@127.0.0.1:${sshd[0].port}`]
  const sshOpts = (): RepairOptions => ({ identity: keys, knownHosts, jump: [`127.0.0.1:${sshd[2].port}=root@127.0.0.1:${sshd[0].port}`] })

  it('plans without changing anything, heals with --apply (C through a jump host), keeps the damaged copy, leaves the tie', async () => {
    const servers = await fleet(['ours', 'ours', 'ours'])
    const before = snapshot(servers)
    const plan = cli(['repair', ...urls(servers), ...sshArgs(), '--json'])
    expect(plan.stderr).toBe('')
    expect(plan.status).toBe(1)
    const p = JSON.parse(plan.stdout) as RepairResult
    expect(p.copies.map((x) => [x.path, x.to]).sort()).toEqual([['gone.txt', labels()[1]], ['rot.bin', labels()[0]]].sort())
    expect(snapshot(servers)).toEqual(before)
    // The jump host is really used for C: a jump to a closed port fails.
    const noJump = cli(['repair', ...urls(servers), ...sshArgs().slice(0, -2), '--jump', `127.0.0.1:${sshd[2].port}=root@127.0.0.1:1`, '--retries', '0'])
    expect(noJump.status).toBe(2)
    expect(noJump.stderr).toContain('127.0.0.1')

    const res = cli(['repair', ...urls(servers), ...sshArgs(), '--apply', '--json'])
    expect(res.stderr).toBe('')
    expect(res.status).toBe(1)
    await expectHealed(servers, JSON.parse(res.stdout), labels())
    await expectCleanCompare(urls(servers), sshOpts())
  })

  it('a connection dropped mid-transfer is retried with backoff: the same run reconnects and finishes', async () => {
    const servers = await fleet(['ours', 'ours', 'ours'], true)
    const target = path.join(servers[0].data, 'big.bin')
    const tmp = tempName(target, new LocalSide('A'))
    const run = cliAsync(['repair', ...urls(servers), ...sshArgs(), '--apply', '--bwlimit', '512K', '--parallel', '1', '--json'])
    await grown(tmp, 200_000)
    for (const s of sshd) s.dropConnections()
    const done = await run.done
    expect(done.stderr).toBe('')
    expect(done.status).toBe(1) // the tie
    const j = JSON.parse(done.stdout) as RepairResult
    expect(j.copies.map((x) => [x.path, x.status]).sort()).toEqual([['big.bin', 'repaired'], ['gone.txt', 'repaired'], ['rot.bin', 'repaired']])
    expect(fs.readFileSync(target).equals(BIG)).toBe(true)
    expect(fs.existsSync(tmp)).toBe(false)
    // The journal shows the interrupted copy and the completed one.
    const steps = fs.readFileSync(j.journals.find((x) => x.server === labels()[0])!.journal, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    expect(steps.filter((x) => x.path === 'big.bin' && x.step === 'copy').length).toBeGreaterThanOrEqual(2)
    expect(steps.filter((x) => x.path === 'big.bin').at(-1).step).toBe('done')
  })

  it('an interrupted apply (the connection killed mid-transfer) leaves no partial file in place and completes on a rerun', async () => {
    const servers = await fleet(['ours', 'ours', 'ours'], true)
    const target = path.join(servers[0].data, 'big.bin')
    const damaged = fs.readFileSync(target)
    const tmp = tempName(target, new LocalSide('A'))
    const run = cliAsync(['repair', ...urls(servers), ...sshArgs(), '--apply', '--bwlimit', '256K', '--parallel', '1', '--retries', '0', '--json'])
    await grown(tmp, 200_000)
    for (const s of sshd) s.dropConnections()
    const first = await run.done
    expect(first.status).toBe(1)
    const j1 = JSON.parse(first.stdout) as RepairResult
    expect(j1.copies.find((x) => x.path === 'big.bin')!.status).toBe('failed')
    // Nothing partial in place: the damaged copy is still there, whole.
    expect(fs.readFileSync(target).equals(damaged)).toBe(true)
    const rerun = cli(['repair', ...urls(servers), ...sshArgs(), '--apply', '--json'])
    expect(rerun.stderr).toBe('')
    const j2 = JSON.parse(rerun.stdout) as RepairResult
    expect(j2.copies.filter((x) => x.status !== 'repaired')).toEqual([])
    expect(fs.readFileSync(target).equals(BIG)).toBe(true)
    expect(fs.existsSync(tmp)).toBe(false)
    await expectCleanCompare(urls(servers), sshOpts())
  })
})
