/**
 * Running unattended (issue 15): schedule units and crontab lines (written into temp folders through the
 * injectable unit folder and crontab program, never the real system), retention only after a good run,
 * resumable scrubs, `status --max-age` alarms with a faked clock (`AXIOMATIC_NOW`), and notify.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { acquireLock } from '../js'
import { BIN, cli, increments, workspace, writeConfig } from './helpers'
import { needs } from './tools'

/** A backup with `n` tracked files and one increment. */
function backedUp(n: number, extra: object = {}) {
  const tree: Record<string, string> = {}
  for (let i = 0; i < n; i++) tree[`t/f${String(i).padStart(3, '0')}.txt`] = `content ${i}\n`.repeat(3)
  const w = workspace(tree)
  const config = writeConfig(w.dir, { src: 'src', dst: 'dst', track_dirs: ['**'], ...extra })
  const r = cli(['run', '-c', config])
  expect(r.status, r.stderr).toBe(0)
  return { ...w, config }
}

/** One more increment: a file changed. */
function change(src: string, i: number) {
  fs.writeFileSync(path.join(src, 't/f000.txt'), `changed ${i}\n`)
}

function json(r: { stdout: string; stderr: string }) {
  try {
    return JSON.parse(r.stdout)
  } catch {
    throw new Error(`not JSON: ${r.stdout}\n${r.stderr}`)
  }
}

const DAY = 86_400_000

/**
 * Lets the worker's event loop answer vitest between the many synchronous CLI calls of one test (a loop
 * blocked for a minute makes vitest report a timeout of its own RPC).
 */
const tick = () => new Promise((resolve) => setTimeout(resolve, 0))

/** The CLI without blocking this process (an http server in the test must answer meanwhile). */
function cliAsync(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    c.stdout.on('data', (d) => (stdout += d))
    c.stderr.on('data', (d) => (stderr += d))
    c.on('close', (status) => resolve({ status, stdout, stderr }))
  })
}

/** A notify command: writes its stdin and its AXIOMATIC_NOTIFY to `out` as JSON, then exits with `code`. */
function notifyScript(dir: string, code = 0): { argv: string[]; out: string } {
  const script = path.join(dir, 'notify.js')
  const out = path.join(dir, 'notified.json')
  fs.writeFileSync(
    script,
    `let b='';process.stdin.on('data',d=>b+=d).on('end',()=>{require('fs').writeFileSync(process.argv[2],JSON.stringify({stdin:b,env:process.env.AXIOMATIC_NOTIFY}));process.exit(${code})})`,
  )
  return { argv: [process.execPath, script, out], out }
}

describe('schedule', () => {
  it('writes a systemd timer and service into the unit folder, calls systemctl (injected), shows and removes them', () => {
    const w = backedUp(1)
    const units = path.join(w.dir, 'units')
    const calls = path.join(w.dir, 'systemctl.log')
    const fake = path.join(w.dir, 'systemctl')
    fs.writeFileSync(fake, `#!/bin/sh\necho "$@" >> '${calls}'\n`, { mode: 0o755 })
    const env = { AXIOMATIC_SYSTEMD_DIR: units, AXIOMATIC_SYSTEMCTL: fake }
    const r = cli(['schedule', 'install', '-c', w.config, '--every', 'daily', '--via', 'systemd', '--user', '--json'], { env })
    expect(r.status, r.stderr).toBe(0)
    const j = json(r)
    const name = j.name as string
    expect(name).toMatch(/^axiomatic-backup-config-[0-9a-f]{8}$/)
    const service = fs.readFileSync(path.join(units, `${name}.service`), 'utf8')
    const timer = fs.readFileSync(path.join(units, `${name}.timer`), 'utf8')
    expect(service).toContain('Type=oneshot')
    expect(service).toContain(`ExecStart="${process.execPath}" "${BIN}" "run" "--unattended" "--config" "${w.config}"`)
    expect(timer).toContain('OnCalendar=daily')
    expect(timer).toContain('Persistent=true')
    expect(timer).toContain(`Unit=${name}.service`)
    expect(timer).toContain('WantedBy=timers.target')
    expect(fs.readFileSync(calls, 'utf8')).toBe(`--user daemon-reload\n--user enable --now ${name}.timer\n`)
    const shown = json(cli(['schedule', 'show', '-c', w.config, '--via', 'systemd', '--user', '--json'], { env }))
    expect(shown.found).toBe(true)
    expect(Object.keys(shown.units).sort()).toEqual([path.join(units, `${name}.service`), path.join(units, `${name}.timer`)])
    const rm = cli(['schedule', 'remove', '-c', w.config, '--via', 'systemd', '--user'], { env })
    expect(rm.status, rm.stderr).toBe(0)
    expect(fs.readdirSync(units)).toEqual([])
    expect(fs.readFileSync(calls, 'utf8').split('\n').slice(2)).toEqual([`--user disable --now ${name}.timer`, '--user daemon-reload', ''])
    // System units (as root by default), and no systemctl at all when only the folder is injected.
    const sys = cli(['schedule', 'install', '-c', w.config, '--every', '6h', '--via', 'systemd'], { env: { AXIOMATIC_SYSTEMD_DIR: units } })
    expect(sys.status, sys.stderr).toBe(0)
    expect(sys.stdout).toContain('systemctl was not called')
    expect(fs.readFileSync(path.join(units, `${name}.timer`), 'utf8')).toContain('OnCalendar=*-*-* 00/6:00:00')
  })

  it.skipIf(needs('systemd-analyze verify of the written units', ['systemd-analyze']))('systemd-analyze accepts the written units and every --every form', async () => {
    const w = backedUp(1)
    for (const every of ['daily', 'weekly', '1h', '6h', '15m', '30 2 * * *', '0 3 * * 1-5', '*/20 8-18 * * *', '0 4 1,15 * *']) {
      await tick()
      const units = path.join(w.dir, `units-${every.replace(/\W/g, '_')}`)
      const r = cli(['schedule', 'install', '-c', w.config, '--every', every, '--via', 'systemd', '--system', '--json'], { env: { AXIOMATIC_SYSTEMD_DIR: units } })
      expect(r.status, r.stderr).toBe(0)
      const files = Object.keys(json(r).units)
      const v = spawnSync('systemd-analyze', ['verify', ...files], { encoding: 'utf8' })
      expect({ every, status: v.status, stderr: v.stderr }).toEqual({ every, status: 0, stderr: '' })
      const cal = /OnCalendar=(.*)/.exec(fs.readFileSync(files.find((f) => f.endsWith('.timer'))!, 'utf8'))![1]
      const c = spawnSync('systemd-analyze', ['calendar', cal], { encoding: 'utf8' })
      expect({ every, cal, status: c.status }).toEqual({ every, cal, status: 0 })
    }
  })

  it('refuses a bad --every, naming what is accepted, and writes nothing', () => {
    const w = backedUp(1)
    const units = path.join(w.dir, 'units')
    for (const every of ['7h', '45m', 'sometimes', '61 * * * *', '0 0 1 * 1']) {
      const r = cli(['schedule', 'install', '-c', w.config, '--every', every, '--via', 'systemd'], { env: { AXIOMATIC_SYSTEMD_DIR: units } })
      expect({ every, status: r.status }).toEqual({ every, status: 64 })
      expect(r.stderr).toContain('--every')
    }
    expect(fs.existsSync(units)).toBe(false)
  })

  it('writes one marked crontab line (through the injected crontab program), replaces it, runs it, and removes exactly it', () => {
    const w = backedUp(2)
    const tab = path.join(w.dir, 'crontab.txt')
    const fake = path.join(w.dir, 'crontab')
    fs.writeFileSync(
      fake,
      `#!/bin/sh\nif [ "$1" = -l ]; then if [ -f '${tab}' ]; then cat '${tab}'; else echo "no crontab for root" >&2; exit 1; fi; else cat > '${tab}'; fi\n`,
      { mode: 0o755 },
    )
    const env = { AXIOMATIC_CRONTAB: fake }
    expect(json(cli(['schedule', 'show', '-c', w.config, '--via', 'cron', '--json'], { env })).found).toBe(false)
    fs.writeFileSync(tab, 'MAILTO=me\n0 5 * * * echo keep # axiomatic-backup-other\n')
    for (const every of ['1h', '30 2 * * *']) {
      const r = cli(['schedule', 'install', '-c', w.config, '--every', every, '--via', 'cron'], { env })
      expect(r.status, r.stderr).toBe(0)
    }
    const lines = fs.readFileSync(tab, 'utf8').trimEnd().split('\n')
    expect(lines).toHaveLength(3)
    expect(lines.slice(0, 2)).toEqual(['MAILTO=me', '0 5 * * * echo keep # axiomatic-backup-other'])
    const ours = lines[2]
    const log = path.join(w.dst, '.axiomatic/unattended.log')
    expect(ours).toMatch(/^30 2 \* \* \* /)
    expect(ours).toContain(`'${process.execPath}' '${BIN}' 'run' '--unattended' '--config' '${w.config}' >> '${log}' 2>&1 # axiomatic-backup-config-`)
    // The line's command, as cron's /bin/sh runs it: a run, logged under dst.
    fs.writeFileSync(path.join(w.src, 't/new.txt'), 'new')
    const cmd = ours.split(' ').slice(5).join(' ')
    const ran = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' })
    expect(ran.status, ran.stderr).toBe(0)
    expect(fs.readFileSync(path.join(w.dst, 'mirror/t/new.txt'), 'utf8')).toBe('new')
    expect(fs.readFileSync(log, 'utf8')).toMatch(/backup: run: backup_\d{8}_\d{6}(_\d+)?: 1 new/)
    const rm = cli(['schedule', 'remove', '-c', w.config, '--via', 'cron'], { env })
    expect(rm.status, rm.stderr).toBe(0)
    expect(fs.readFileSync(tab, 'utf8')).toBe('MAILTO=me\n0 5 * * * echo keep # axiomatic-backup-other\n')
    expect(cli(['schedule', 'remove', '-c', w.config, '--via', 'cron'], { env }).stdout).toContain('nothing to remove')
  })
})

describe('retention after a run', () => {
  /** A backup with 4 increments and `retention: {keep_last: 2}`. */
  async function fourIncrements(extra: object = {}) {
    const w = backedUp(3, { retention: { keep_last: 2 }, ...extra })
    for (let i = 1; i <= 3; i++) {
      change(w.src, i)
      expect(cli(['run', '-c', w.config]).status).toBe(0)
      await tick()
    }
    expect(increments(w.dst)).toHaveLength(4)
    return w
  }

  it('is refused after a failed run (the source emptied, as an unmounted disk): nothing is pruned', async () => {
    const w = await fourIncrements()
    const before = increments(w.dst)
    fs.rmSync(path.join(w.src, 't'), { recursive: true })
    const r = cli(['run', '--unattended', '--json', '-c', w.config])
    expect(r.status, r.stderr).toBe(2)
    const j = json(r)
    expect(j.reasons.map((x: { code: string }) => x.code)).toEqual(['run-failed'])
    expect(j.retentionSkipped).toMatch(/did not succeed/)
    expect(j.prune).toBeNull()
    expect(increments(w.dst)).toEqual(before)
  })

  it.skipIf(needs('an unreadable file as a non-root user', ['setpriv'], { root: true }))(
    'is refused after a partial run with a file not backed up (unreadable, as a non-root user): nothing is pruned',
    async () => {
      const w = await fourIncrements()
      const before = increments(w.dst)
      const base = path.dirname(w.dir)
      fs.chmodSync(base, 0o755)
      fs.chmodSync(w.dir, 0o755)
      execFileSync('chown', ['-R', 'nobody:nogroup', w.dir])
      fs.writeFileSync(path.join(w.src, 't/f001.txt'), 'changed, unreadable')
      fs.chmodSync(path.join(w.src, 't/f001.txt'), 0o000)
      change(w.src, 9)
      const pkg = path.join(base, `pkg-unattended-${process.pid}`)
      if (!fs.existsSync(pkg)) {
        const root = path.join(__dirname, '..')
        for (const p of ['package.json', 'binding.js', 'bin', 'dist', 'node_modules/clipanion', 'node_modules/typanion', ...fs.readdirSync(root).filter((f) => f.endsWith('.node'))])
          fs.cpSync(path.join(root, p), path.join(pkg, p), { recursive: true })
        execFileSync('chmod', ['-R', 'a+rX', pkg])
      }
      const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.join(pkg, 'bin', 'backup.js'), 'run', '--unattended', '--json', '-c', w.config], {
        encoding: 'utf8',
      })
      fs.rmSync(pkg, { recursive: true, force: true })
      expect(r.status, r.stderr).toBe(2)
      const j = json(r)
      expect(j.reasons.map((x: { code: string }) => x.code)).toEqual(['not-backed-up'])
      expect(j.reasons[0].message).toContain('t/f001.txt (permission-denied)')
      expect(j.prune).toBeNull()
      // The run itself committed its increment; nothing older was pruned.
      expect(increments(w.dst).slice(0, 4)).toEqual(before)
      expect(increments(w.dst)).toHaveLength(5)
    },
  )

  it('is applied after a good run whose newest increment verifies, keeping the newest; --dry-run only shows', async () => {
    const w = await fourIncrements()
    change(w.src, 4)
    const dry = cli(['run', '--unattended', '--dry-run', '--json', '-c', w.config])
    expect(dry.status, dry.stderr).toBe(0)
    const before = increments(w.dst)
    expect(json(dry).prune.dryRun).toBe(true)
    // The dry run plans on the increments there now (the run itself writes nothing).
    expect(json(dry).prune.removed).toEqual(before.slice(0, 2))
    expect(increments(w.dst)).toEqual(before)
    const r = cli(['run', '--unattended', '--json', '-c', w.config])
    expect(r.status, r.stderr).toBe(0)
    const j = json(r)
    const newest = j.run.increment as string
    expect(newest).toBeTruthy()
    expect(j.verifyNewest.only).toBe(newest)
    expect(j.verifyNewest.problems).toEqual([])
    expect(j.reasons).toEqual([])
    expect(increments(w.dst)).toEqual([before.at(-1), newest])
    expect(j.prune.removed).toEqual(before.slice(0, 3))
  })

  it('never runs beside another command: a job that finds the lock taken does nothing, notifies nobody, exits 2', async () => {
    const w = await fourIncrements()
    const n = notifyScript(w.dir)
    const config = writeConfig(w.dir, { src: 'src', dst: 'dst', track_dirs: ['**'], retention: { keep_last: 1 }, scrub: '100%', notify: { command: n.argv } })
    change(w.src, 5)
    const before = increments(w.dst)
    const release = acquireLock(w.dst, 'test')
    try {
      const r = cli(['run', '--unattended', '--json', '-c', config])
      expect(r.status, r.stderr).toBe(2)
      const j = json(r)
      expect(j.runError.code).toBe('ELOCKED')
      expect([j.reasons, j.prune, j.scrub, j.notified]).toEqual([[], null, null, false])
    } finally {
      release()
    }
    expect(increments(w.dst)).toEqual(before)
    expect(fs.existsSync(n.out)).toBe(false)
    expect(fs.existsSync(path.join(w.dst, '.axiomatic/scrub.json'))).toBe(false)
  })

  it('is refused when the newest increment does not verify', async () => {
    const w = await fourIncrements()
    const newest = increments(w.dst).at(-1)!
    // Bit rot in the newest increment's stored version (same size).
    const f = path.join(w.dst, newest, 'track/t/f000.txt')
    const text = fs.readFileSync(f, 'utf8')
    fs.writeFileSync(f, text.replace(/c/, 'C'))
    const r = cli(['run', '--unattended', '--json', '-c', w.config])
    expect(r.status, r.stderr).toBe(2)
    const j = json(r)
    expect(j.run.increment).toBeNull()
    expect(j.reasons.map((x: { code: string }) => x.code)).toEqual(['verify-failed'])
    expect(j.retentionSkipped).toContain(newest)
    expect(increments(w.dst)).toHaveLength(4)
  })

  it('refuses a bad retention, scrub or notify in the profile, naming the key', () => {
    const w = workspace({ 'a.txt': 'a' })
    const cases: [object, string][] = [
      [{ retention: { keep_last: -1 } }, '"retention.keep_last" must be a whole number'],
      [{ retention: { keep_yearly: 1 } }, '"retention": unknown key "keep_yearly"'],
      [{ retention: { keep_last: 0 } }, '"retention" keeps nothing but the newest'],
      [{ retention: 5 }, '"retention" must be an object'],
      [{ scrub: '0%' }, '"scrub" must be a share'],
      [{ scrub: 10 }, '"scrub" must be a share'],
      [{ notify: {} }, '"notify" needs "command" or "url"'],
      [{ notify: { command: 'mail me' } }, '"notify.command" must be a non-empty list of strings'],
      [{ notify: { url: 'ftp://x' } }, '"notify.url" must be an http:// or https:// URL'],
    ]
    for (const [extra, msg] of cases) {
      const config = writeConfig(w.dir, { src: 'src', dst: 'dst', ...extra }, 'bad.json')
      const r = cli(['run', '-c', config])
      expect({ extra, status: r.status }).toEqual({ extra, status: 64 })
      expect(r.stderr).toContain(msg)
    }
    expect(fs.existsSync(w.dst)).toBe(false)
  })
})

describe('scrubs that resume', () => {
  const scrub = (dst: string, share: string, at: number, env: NodeJS.ProcessEnv = {}) =>
    cli(['verify', '--dst', dst, '--scrub', share, '--json'], { env: { AXIOMATIC_NOW: String(at), ...env } })

  it('cover every stored version over ten 10% scrubs, least recently verified first; status shows the oldest', async () => {
    const w = backedUp(15)
    const t0 = Date.parse('2030-01-01T00:00:00Z')
    let total = 0
    for (let i = 1; i <= 10; i++) {
      const r = scrub(w.dst, '10%', t0 + i * DAY)
      expect(r.status, r.stderr).toBe(0)
      const s = json(r).scrub
      total = s.total
      expect(total).toBe(30) // 15 mirror files + their 15 versions in the increment
      expect([s.selected, s.neverVerifiedBefore, s.neverVerifiedAfter]).toEqual([3, 3, 30 - 3 * i])
      await tick()
    }
    const st = json(cli(['status', '--dst', w.dst, '--json'], { env: { AXIOMATIC_NOW: String(t0 + 11 * DAY) } }))
    expect(st.scrub).toMatchObject({ present: true, versions: 30, neverVerified: 0, oldestVerifiedMs: t0 + DAY, corrupt: [] })
    // The 11th takes the three verified longest ago.
    expect(json(scrub(w.dst, '10%', t0 + 11 * DAY)).scrub.neverVerifiedBefore).toBe(0)
    const st2 = json(cli(['status', '--dst', w.dst, '--json']))
    expect(st2.scrub.oldestVerifiedMs).toBe(t0 + 2 * DAY)
    const text = cli(['status', '--dst', w.dst], { env: { AXIOMATIC_NOW: String(t0 + 12 * DAY) } }).stdout
    expect(text).toContain('verified: 30 stored versions, oldest verification 10 d ago')
  })

  it('resumes after a scrub killed midway: what it checked is recorded, the next scrubs take the rest first', async () => {
    const w = backedUp(100)
    // The record is saved after every chunk of 64 versions; the process is killed at the second save.
    const killed = scrub(w.dst, '100%', Date.parse('2030-01-01T00:00:00Z'), { AXIOMATIC_FAULT_AFTER_OPS: '2' })
    expect(killed.signal).toBe('SIGKILL')
    await tick()
    const st = json(cli(['status', '--dst', w.dst, '--json']))
    expect([st.scrub.versions, st.scrub.neverVerified]).toEqual([200, 200 - 64])
    await tick()
    const a = json(scrub(w.dst, '50%', Date.parse('2030-01-02T00:00:00Z'))).scrub
    expect([a.selected, a.neverVerifiedBefore, a.neverVerifiedAfter]).toEqual([100, 100, 36])
    const b = json(scrub(w.dst, '50%', Date.parse('2030-01-03T00:00:00Z'))).scrub
    expect([b.selected, b.neverVerifiedBefore, b.neverVerifiedAfter]).toEqual([100, 36, 0])
    // The killed scrub's temp file is gone after the clean scrubs.
    expect(fs.readdirSync(path.join(w.dst, '.axiomatic')).filter((n) => n.includes('.tmp-'))).toEqual([])
  })

  it('finds a corrupted stored version; status alarms until a full verify passes', () => {
    const w = backedUp(5)
    const inc = increments(w.dst)[0]
    const f = path.join(w.dst, inc, 'track/t/f002.txt')
    const good = fs.readFileSync(f)
    // The mtime (to the nanosecond) is kept on a reference file and put back after each write.
    const ref = path.join(w.dir, 'mtime-ref')
    execFileSync('touch', ['-r', f, ref])
    const bad = Buffer.from(good)
    bad[0] ^= 1
    // Bit rot: the content changes, size and mtime do not.
    fs.writeFileSync(f, bad)
    execFileSync('touch', ['-r', ref, f])
    const r = cli(['verify', '--dst', w.dst, '--scrub', '100%', '--json'])
    expect(r.status).toBe(1)
    expect(json(r).problems.map((p: { location: string; path: string; status: string }) => [p.location, p.path, p.status])).toEqual([
      [inc, 't/f002.txt', 'CORRUPT'],
      ['mirror', 't/f002.txt', 'CORRUPT'],
    ])
    // Remembered: plain status needs attention (1), --max-age alarms (2) with the reason.
    expect(cli(['status', '--dst', w.dst]).status).toBe(1)
    const s = cli(['status', '--dst', w.dst, '--max-age', '26h', '--json'])
    expect(s.status).toBe(2)
    expect(json(s).alarms.map((a: { code: string }) => a.code)).toEqual(['corrupt'])
    // A scrub of another share does not clear it; a full verify that passes does.
    fs.writeFileSync(f, good)
    execFileSync('touch', ['-r', ref, f])
    expect(cli(['verify', '--dst', w.dst, '--scrub', '10%']).status).toBe(0)
    expect(cli(['status', '--dst', w.dst, '--max-age', '26h']).status).toBe(2)
    expect(cli(['verify', '--dst', w.dst]).status).toBe(0)
    const after = cli(['status', '--dst', w.dst, '--max-age', '26h', '--json'])
    expect(after.status, after.stdout).toBe(0)
    expect(json(after).scrub.corrupt).toEqual([])
    expect(json(after).scrub.lastFullMs).toBeGreaterThan(0)
  })
})

describe('the scheduled scrub', () => {
  it('runs after a good run; the corruption it finds is a reason, notified, exit 2', () => {
    const w = backedUp(3)
    const n = notifyScript(w.dir)
    const config = writeConfig(w.dir, { src: 'src', dst: 'dst', track_dirs: ['**'], scrub: '100%', notify: { command: n.argv } })
    const inc = increments(w.dst)[0]
    const f = path.join(w.dst, inc, 'track/t/f001.txt')
    const ref = path.join(w.dir, 'mtime-ref')
    execFileSync('touch', ['-r', f, ref])
    fs.writeFileSync(f, fs.readFileSync(f, 'utf8').toUpperCase())
    execFileSync('touch', ['-r', ref, f])
    const r = cli(['run', '--unattended', '--json', '-c', config])
    expect(r.status, r.stderr).toBe(2)
    const j = json(r)
    expect(j.scrub.scrub).toMatchObject({ total: 6, selected: 6 })
    expect(j.reasons.map((x: { code: string }) => x.code)).toEqual(['corrupt'])
    const body = JSON.parse(JSON.parse(fs.readFileSync(n.out, 'utf8')).stdin)
    expect(body.reasons[0].message).toContain(`${inc}/t/f001.txt CORRUPT`)
    expect(cli(['status', '-c', config, '--max-age', '26h', '--no-notify']).status).toBe(2)
  })
})

describe('status --max-age', () => {
  const status = (dst: string, at: number, extra: string[] = []) =>
    cli(['status', '--dst', dst, '--max-age', '26h', '--json', ...extra], { env: { AXIOMATIC_NOW: String(at) } })
  const codes = (r: { stdout: string; stderr: string }) => json(r).alarms.map((a: { code: string }) => a.code)

  it('exits 0 when fresh, 2 with the reason when stale, failed or damaged (clock faked)', async () => {
    const w = backedUp(3)
    const finished = Date.parse(json(cli(['status', '--dst', w.dst, '--json'])).lastRun.finished)
    const fresh = status(w.dst, finished + 3600_000)
    expect(fresh.status, fresh.stdout).toBe(0)
    expect(codes(fresh)).toEqual([])
    const stale = status(w.dst, finished + 27 * 3600_000)
    expect(stale.status).toBe(2)
    expect(codes(stale)).toEqual(['stale'])
    expect(json(stale).alarms[0].message).toContain('27 h ago')
    const text = cli(['status', '--dst', w.dst, '--max-age', '26h'], { env: { AXIOMATIC_NOW: String(finished + 27 * 3600_000) } })
    expect(text.status).toBe(2)
    expect(text.stdout).toContain('ALARM stale: the last successful run finished 27 h ago')
    await tick()
    // A failed run (the source emptied: the run is refused): alarms at once, and the last success is kept.
    fs.rmSync(path.join(w.src, 't'), { recursive: true })
    expect(cli(['run', '-c', w.config]).status).toBe(2)
    const lr = json(cli(['status', '--dst', w.dst, '--json'])).lastRun
    expect(lr.result).toBe('failed')
    expect(Date.parse(lr.lastSuccess)).toBe(finished)
    const failed = status(w.dst, Date.parse(lr.finished) + 1000)
    expect(failed.status).toBe(2)
    expect(codes(failed)).toEqual(['last-run-failed'])
    expect(codes(status(w.dst, finished + 27 * 3600_000))).toEqual(['last-run-failed', 'stale'])
    await tick()
    // Damaged metadata.
    const inc = increments(w.dst)[0]
    fs.writeFileSync(path.join(w.dst, inc, `${inc}.json`), '{"version": 1, "file_cat')
    const damaged = status(w.dst, Date.parse(lr.finished) + 1000)
    expect(damaged.status).toBe(2)
    expect(codes(damaged)).toEqual(['last-run-failed', 'damaged'])
    expect(cli(['status', '--dst', w.dst, '--max-age', 'soon']).status).toBe(64)
  })
})

describe('status --max-age when the backup is out of reach', () => {
  it('a backup folder that is gone (the disk not mounted) is an alarm (exit 2) and notify is told', () => {
    const w = backedUp(1)
    const n = notifyScript(w.dir)
    const config = writeConfig(w.dir, { src: 'src', dst: 'dst', track_dirs: ['**'], notify: { command: n.argv } })
    fs.renameSync(w.dst, path.join(w.dir, 'elsewhere'))
    const r = cli(['status', '-c', config, '--max-age', '26h', '--json'])
    expect(r.status, r.stderr).toBe(2)
    expect(json(r).alarms.map((a: { code: string }) => a.code)).toEqual(['unreachable'])
    const body = JSON.parse(JSON.parse(fs.readFileSync(n.out, 'utf8')).stdin)
    expect(body).toMatchObject({ event: 'status', dst: w.dst, exitCode: 2 })
    expect(body.reasons[0].message).toContain('does not exist')
    // Without --max-age it stays what it was: a usage error (no backup there).
    expect(cli(['status', '-c', config]).status).toBe(64)
  })
})

describe('notify', () => {
  it('runs the command with the JSON body on stdin and in AXIOMATIC_NOTIFY when a scheduled run fails', () => {
    const w = backedUp(2)
    const n = notifyScript(w.dir)
    const config = writeConfig(w.dir, { src: 'src', dst: 'dst', track_dirs: ['**'], notify: { command: n.argv } })
    fs.rmSync(path.join(w.src, 't'), { recursive: true })
    const r = cli(['run', '--unattended', '--json', '-c', config])
    expect(r.status, r.stderr).toBe(2)
    expect(json(r).notified).toBe(true)
    const got = JSON.parse(fs.readFileSync(n.out, 'utf8'))
    expect(got.env).toBe(got.stdin)
    const body = JSON.parse(got.stdin)
    expect(body).toMatchObject({ source: 'axiomatic-backup', event: 'run', dst: w.dst, config, exitCode: 2 })
    expect(body.reasons[0].code).toBe('run-failed')
    expect(body.reasons[0].message).toContain('EREFUSED')
  })

  it('is told when the profile no longer loads (src gone); a failing command is a warning that keeps the exit code', () => {
    const w = backedUp(1)
    const n = notifyScript(w.dir, 3)
    const config = writeConfig(w.dir, { src: 'src', dst: 'dst', track_dirs: ['**'], notify: { command: n.argv } })
    fs.rmSync(w.src, { recursive: true })
    const r = cli(['run', '--unattended', '-c', config])
    expect(r.status).toBe(64)
    expect(r.stderr).toMatch(/warning: notify command .*exited with 3/)
    expect(JSON.parse(JSON.parse(fs.readFileSync(n.out, 'utf8')).stdin).reasons[0].message).toContain('"src"')
  })

  it('POSTs the JSON body to the URL when status --max-age alarms; a URL that fails is a warning, the exit code stays 2', async () => {
    const w = backedUp(1)
    const got: { method?: string; type?: string; body: string }[] = []
    const server = http.createServer((req, res) => {
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => {
        got.push({ method: req.method, type: req.headers['content-type'], body })
        res.statusCode = req.url === '/broken' ? 500 : 204
        res.end()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    try {
      const config = writeConfig(w.dir, { src: 'src', dst: 'dst', track_dirs: ['**'], notify: { url: `http://127.0.0.1:${port}/hook`, timeout_s: 10 } })
      const later = String(Date.now() + 3 * DAY)
      const r = await cliAsync(['status', '-c', config, '--max-age', '26h'], { AXIOMATIC_NOW: later })
      expect(r.status, r.stderr).toBe(2)
      expect(r.stderr).toBe('')
      expect(got).toHaveLength(1)
      expect(got[0].method).toBe('POST')
      expect(got[0].type).toBe('application/json')
      const body = JSON.parse(got[0].body)
      expect(body).toMatchObject({ event: 'status', dst: w.dst, exitCode: 2 })
      expect(body.reasons.map((x: { code: string }) => x.code)).toEqual(['stale'])
      // Fresh: no alarm, nobody is told.
      expect((await cliAsync(['status', '-c', config, '--max-age', '26h'])).status).toBe(0)
      expect(got).toHaveLength(1)
      const broken = writeConfig(w.dir, { src: 'src', dst: 'dst', track_dirs: ['**'], notify: { url: `http://127.0.0.1:${port}/broken` } }, 'broken.json')
      const b = await cliAsync(['status', '-c', broken, '--max-age', '26h'], { AXIOMATIC_NOW: later })
      expect(b.status).toBe(2)
      expect(b.stderr).toContain('warning: notify URL')
      expect(b.stderr).toContain('HTTP 500')
    } finally {
      server.close()
    }
  })
})

describe('the scrub record', () => {
  it('lives in .axiomatic/ and never touches a stored file', () => {
    const w = backedUp(4)
    const inc = increments(w.dst)[0]
    const stored = path.join(w.dst, inc, 'track/t/f000.txt')
    const before = fs.statSync(stored)
    expect(cli(['verify', '--dst', w.dst, '--scrub', '50%']).status).toBe(0)
    const after = fs.statSync(stored)
    expect([after.ino, after.mtimeMs, after.ctimeMs, after.mode, after.nlink]).toEqual([before.ino, before.mtimeMs, before.ctimeMs, before.mode, before.nlink])
    expect(fs.existsSync(path.join(w.dst, '.axiomatic/scrub.json'))).toBe(true)
    expect(fs.readdirSync(path.join(w.dst, inc)).sort()).toEqual([`${inc}.json`, 'track'])
  })
})
