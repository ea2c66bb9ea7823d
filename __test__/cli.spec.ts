/**
 * The command-line language itself: one meaning per flag name across commands, the old spellings
 * that still work for one release (with one line on stderr, never on stdout), flag values checked
 * while the command line is parsed (exit 64, the flag named, nothing written), and `--help`.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { cli, increments, tmpdir, workspace, writeTree } from './helpers'

const COMMANDS = ['run', 'explain', 'list', 'search', 'history', 'restore', 'recreate', 'delete', 'prune', 'status', 'serve', 'diff', 'checksum', 'verify', 'compare', 'repair', 'keygen', 'schedule']

/** A backup with one increment holding `docs/Report.PDF` and `docs/notes.txt`. */
function backedUp() {
  const w = workspace({ 'docs/Report.PDF': 'pdf', 'docs/notes.txt': 'notes' })
  const r = cli(['run', '-q', '-c', w.config])
  expect(r.status, r.stderr).toBe(0)
  return w
}

/** The deprecation line: exactly one, on stderr. */
function expectOneNote(stderr: string, old: string, instead: string): void {
  const lines = stderr.split('\n').filter((l) => l.includes('deprecated'))
  expect(lines).toHaveLength(1)
  expect(lines[0]).toContain(`${old} is deprecated and will be removed in the next release`)
  expect(lines[0]).toContain(instead)
}

describe('one meaning per flag name', () => {
  it('verify --dst DIR (or -c CONFIG) checks a backup; the old --backup [DIR] still works and says once on stderr to use --dst', () => {
    const w = backedUp()
    const ok = cli(['verify', '--dst', w.dst, '--json'])
    expect(ok.status, ok.stderr).toBe(0)
    expect(ok.stderr).toBe('')
    const expected = JSON.parse(ok.stdout)
    expect(expected).toMatchObject({ increments: 1, problems: [], damaged: [] })
    for (const args of [['-d', w.dst], ['-c', w.config], ['--config', w.config]]) {
      const r = cli(['verify', ...args, '--json'])
      expect({ args, status: r.status, stderr: r.stderr }).toEqual({ args, status: 0, stderr: '' })
      expect(JSON.parse(r.stdout)).toEqual({ ...expected, bytesRead: expect.any(Number) })
    }
    // Without REPORT and without flags: the dst of ./config.json, as every other command.
    const here = cli(['verify', '--json'], { cwd: w.dir })
    expect(here.status, here.stderr).toBe(0)
    expect(JSON.parse(here.stdout).filesChecked).toBe(expected.filesChecked)
    for (const args of [['--backup', w.dst], [`--backup=${w.dst}`], ['--backup', '-c', w.config]]) {
      const r = cli(['verify', ...args, '--json'])
      expect({ args, status: r.status }).toEqual({ args, status: 0 })
      // stdout stays the one JSON object; the note is on stderr.
      expect(JSON.parse(r.stdout).filesChecked).toBe(expected.filesChecked)
      expectOneNote(r.stderr, 'verify --backup', '`verify --dst DIR`')
    }
  })

  it('verify refuses REPORT together with --dst, and says what it needs when given nothing', () => {
    const w = backedUp()
    const both = cli(['verify', path.join(w.dir, 'report.json'), '--dst', w.dst])
    expect(both.status).toBe(64)
    expect(both.stderr).toContain('give either REPORT (check files against a report) or --dst DIR (check a backup), not both')
    const none = cli(['verify'], { cwd: tmpdir() })
    expect(none.status).toBe(64)
    expect(none.stderr).toContain('verify needs a REPORT file, or a backup to check: --dst DIR or --config FILE (config.json does not exist)')
    const json = cli(['verify', '--json'], { cwd: tmpdir() })
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: 'EUSAGE' } })
  })

  it('checksum --checksum-config FILE reads a checksum config; the old --config and -c still work, with a note', () => {
    const base = tmpdir()
    writeTree(base, { 'one/x.txt': 'x' })
    const conf = path.join(base, 'checksum.json')
    fs.writeFileSync(conf, JSON.stringify({ groups: [{ name: 'one', path: 'one' }], output_dir: 'out' }))
    const r = cli(['checksum', '--checksum-config', conf, '--json'])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toBe('')
    expect(JSON.parse(r.stdout).reports.map((x: { group: string }) => x.group)).toEqual(['one'])
    for (const flag of ['--config', '-c']) {
      const old = cli(['checksum', flag, conf, '--json'])
      expect(old.status, old.stderr).toBe(0)
      expect(JSON.parse(old.stdout).reports).toHaveLength(1)
      expectOneNote(old.stderr, 'checksum --config FILE', '`checksum --checksum-config FILE`')
    }
    // DIR arguments and a checksum config are two ways to say what to checksum: not both.
    const both = cli(['checksum', path.join(base, 'one'), '--checksum-config', conf])
    expect(both.status).toBe(64)
    expect(both.stderr).toContain('give DIR arguments or --checksum-config FILE, not both')
    // The old --config beside DIR arguments was ignored: it still is, and the note says so.
    const ignored = cli(['checksum', path.join(base, 'one'), '-c', conf, '--json'])
    expect(ignored.status, ignored.stderr).toBe(0)
    expect(JSON.parse(JSON.parse(ignored.stdout).data).root_data).toBe(path.join(base, 'one')) // the report of DIR, on stdout
    expectOneNote(ignored.stderr, 'checksum --config', 'it has no effect with DIR arguments')
  })

  it('-i is --ignore-case (search, delete); compare takes the key file as --identity, and its old -i still works with a note', () => {
    const w = backedUp()
    const [inc] = increments(w.dst)
    const exact = JSON.parse(cli(['search', '--dst', w.dst, '--mask', 'report', '--json']).stdout)
    expect(exact.hits).toEqual([])
    for (const flag of ['-i', '--ignore-case']) {
      const s = JSON.parse(cli(['search', '--dst', w.dst, '--mask', 'report', flag, '--json']).stdout)
      expect(s.hits.map((h: { path: string }) => h.path)).toEqual(['docs/Report.PDF'])
      const d = cli(['delete', inc, '--dst', w.dst, '--mask', '*.pdf', flag, '--dry-run', '--json'])
      expect(d.status, d.stderr).toBe(0)
      expect(JSON.parse(d.stdout).removed.map((f: { path: string }) => f.path)).toEqual(['docs/Report.PDF'])
    }
    // compare of two local reports: --identity (for ssh:// sources) is accepted; -i too, with a note.
    const out = tmpdir()
    for (const name of ['a.json', 'b.json']) expect(cli(['checksum', w.src, '--group', 'g', '--out', path.join(out, name)]).status).toBe(0)
    const key = path.join(out, 'id_ed25519')
    fs.writeFileSync(key, 'not used for local reports')
    const reports = [path.join(out, 'a.json'), path.join(out, 'b.json')]
    const now = cli(['compare', ...reports, '--identity', key, '--json'])
    expect(now.status, now.stderr).toBe(0)
    expect(now.stderr).toBe('')
    const old = cli(['compare', ...reports, '-i', key, '--json'])
    expect(old.status, old.stderr).toBe(0)
    expect(JSON.parse(old.stdout)).toEqual(JSON.parse(now.stdout))
    expectOneNote(old.stderr, 'compare -i FILE', '`--identity FILE`')
  })

  it('--config is a backup profile: compare and keygen, which read none, still accept it for one release and say it does nothing', () => {
    const keys = tmpdir()
    const k = cli(['keygen', path.join(keys, 'r'), '--config', 'x.json', '--json'])
    expect(k.status, k.stderr).toBe(0)
    expect(JSON.parse(k.stdout).publicKey).toBe(path.join(keys, 'r.pub'))
    expectOneNote(k.stderr, 'keygen --config', 'it has no effect here')
    // The help lists no hidden old spelling.
    const flags = (c: string) => /\nOptions\n([\s\S]*?)\nDetails\n/.exec(cli([c, '--help']).stdout)![1]
    expect(flags('keygen')).not.toContain('--config')
    expect(flags('compare')).not.toMatch(/[\s,]-i\b/)
    expect(flags('compare')).toContain('--identity')
    expect(flags('verify')).not.toContain('--backup')
    expect(flags('verify')).toContain('--dst')
    expect(flags('checksum')).not.toContain('--config,')
  })
})

describe('flag values are checked while the command line is parsed', () => {
  it('a bad number is exit 64 naming the flag and the accepted values, before anything is read or written', () => {
    const w = backedUp()
    const out = path.join(w.dir, 'report.json')
    for (const [args, needle] of [
      [['checksum', w.src, '--out', out, '--threads', '0'], '--threads: expected a whole number from 1 to 1024, got "0"'],
      [['checksum', w.src, '--out', out, '--threads', '1025'], '--threads: expected a whole number from 1 to 1024, got "1025"'],
      [['checksum', w.src, '--out', out, '--threads', 'four'], '--threads: expected a whole number from 1 to 1024, got "four"'],
      [['checksum', w.src, '--out', out, '--threads', '1.5'], '--threads'],
      [['verify', '--dst', w.dst, '--threads=-2'], '--threads: expected a whole number from 1 to 1024, got "-2"'],
      [['prune', '--dst', w.dst, '--keep-last=-1'], '--keep-last: expected a whole number ≥ 0, got "-1"'],
      [['prune', '--dst', w.dst, '--keep-daily', 'seven'], '--keep-daily'],
      [['search', '--dst', w.dst, '--last-backups', '0'], '--last-backups: expected a whole number ≥ 1, got "0"'],
      [['compare', out, out, '--timeout', '0'], '--timeout: expected a number of seconds > 0'],
      [['compare', out, out, '--timeout', 'soon'], '--timeout'],
      [['compare', out, out, '--retries', 'many'], '--retries: expected a whole number from 0 to 100'],
      [['checksum', w.src, '--format', 'xml'], '--format'],
      [['repair', out, out, '--bwlimit', 'fast'], '--bwlimit: expected a rate like 500 (KiB/s, as rsync), 64K, 2M or 1G per second'],
      [['repair', out, out, '--parallel', '0'], '--parallel: expected a whole number from 1 to 64'],
    ] as const) {
      const r = cli([...args])
      expect({ args, status: r.status }).toEqual({ args, status: 64 })
      expect(r.stderr).toContain(needle)
      expect(r.stdout).toBe('')
    }
    expect(fs.existsSync(out)).toBe(false)
    expect(increments(w.dst)).toHaveLength(1)
    // With --json the error is the one object on stdout, as for every other error.
    const j = cli(['checksum', w.src, '--threads', '0', '--json'])
    expect(j.status).toBe(64)
    expect(JSON.parse(j.stdout)).toEqual({ error: { code: 'EUSAGE', message: 'Invalid value for --threads: expected a whole number from 1 to 1024, got "0"' } })
    const f = cli(['search', '--dst', w.dst, '--size', '>10X', '--json'])
    expect(f.status).toBe(64)
    expect(JSON.parse(f.stdout).error).toMatchObject({ code: 'ECONFIG', message: expect.stringContaining('--size ">10X"') })
  })

  it('an empty path (an unset shell variable) is refused, never taken for the current folder', () => {
    const w = backedUp()
    const here = tmpdir()
    const r = cli(['restore', '--dst', w.dst, '--to', ''], { cwd: here })
    expect(r.status).toBe(64)
    expect(r.stderr).toContain('--to: expected a path, got an empty string (an unset shell variable?)')
    expect(fs.readdirSync(here)).toEqual([])
    // `--dst ""` used to fall back silently to the dst of ./config.json.
    const d = cli(['list', '--dst', ''], { cwd: w.dir })
    expect(d.status).toBe(64)
    expect(d.stderr).toContain('--dst: expected a path')
  })
})

describe('the command table', () => {
  it('names every command by one of its own paths, and a start loads only the command it runs', async () => {
    const { COMMANDS: table } = await import('../dist/cli/index.js')
    expect(Object.keys(table).sort()).toEqual([...COMMANDS].sort())
    for (const [name, load] of Object.entries(table)) {
      const paths = (load() as { paths?: string[][] }).paths ?? []
      expect({ name, named: paths.some((p) => p.length === 1 && p[0] === name) }).toEqual({ name, named: true })
    }
    // A child process that runs `keygen --help` must not have loaded another command's module.
    const probe = `require('./dist/cli/index.js').main(['keygen', '--help']).then(() => {
      const loaded = Object.keys(require.cache).filter((k) => k.includes('/cli/commands/')).map((k) => k.replace(/.*\\/commands\\//, ''))
      process.stderr.write(JSON.stringify(loaded))
    })`
    const r = spawnSync(process.execPath, ['-e', probe], { cwd: path.join(__dirname, '..'), encoding: 'utf8' })
    expect(JSON.parse(r.stderr)).toEqual(['keygen.js'])
  })
})

describe('--help', () => {
  it('every command shows its usage and examples and points to its README section; exit 0, no colours when piped', () => {
    const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
    for (const c of COMMANDS) {
      const h = cli([c, '--help'])
      expect({ c, status: h.status }).toEqual({ c, status: 0 })
      expect(h.stdout, c).toContain(`$ backup ${c === 'run' ? '' : c}`.trimEnd())
      expect(h.stdout, c).toMatch(/\nExamples\n\n.*\n {2}\$ backup/)
      expect(h.stdout, c).toMatch(/Exit codes: 0/)
      const ref = /README,\s+section\s+"(backup [a-z]+)"/.exec(h.stdout)
      expect(ref, c).not.toBeNull()
      expect(ref![1]).toBe(`backup ${c}`)
      expect(readme, c).toContain(`### \`${ref![1]}`)
      expect(h.stdout).not.toContain('\x1b[')
    }
  })
})

describe('the exit code', () => {
  /** `backup checksum` in a child whose native checksum is replaced by `impl` (a preload). */
  function checksumWith(impl: string) {
    const dir = tmpdir('exit-')
    writeTree(path.join(dir, 'data'), { 'a.txt': 'a' })
    const preload = path.join(dir, 'preload.js')
    fs.writeFileSync(preload, `require(${JSON.stringify(path.join(__dirname, '..', 'binding.js'))}).checksumFolder = ${impl}\n`)
    const r = spawnSync(process.execPath, ['-r', preload, path.join(__dirname, '..', 'bin', 'backup.js'), 'checksum', path.join(dir, 'data'), '-o', path.join(dir, 'sums.json')], { encoding: 'utf8' })
    return { ...r, dir }
  }

  it('a command whose work never finishes (Node runs out of things to wait for) exits 2 and says so, not 0', () => {
    // A promise that nothing will ever settle: the event loop runs dry while the command awaits it.
    const r = checksumWith('() => new Promise(() => {})')
    expect(r.status, r.stderr).toBe(2)
    expect(r.stderr).toContain('internal error: the command stopped before it finished')
    expect(fs.existsSync(path.join(r.dir, 'sums.json'))).toBe(false)
  })

  it('a command that fails outside its own error handling exits 2 with the error on stderr', () => {
    const dir = tmpdir('exit-')
    const preload = path.join(dir, 'preload.js')
    fs.writeFileSync(preload, `require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'cli', 'index.js'))}).main = () => Promise.reject(new Error('boom'))\n`)
    const r = spawnSync(process.execPath, ['-r', preload, path.join(__dirname, '..', 'bin', 'backup.js'), 'list'], { encoding: 'utf8' })
    expect(r.status, r.stderr).toBe(2)
    expect(r.stderr).toContain('backup: internal error: Error: boom')
    expect(r.stderr).not.toContain('stopped before it finished')
  })

  it('the same command finishing normally exits 0 with no such line', () => {
    const r = checksumWith(`((orig) => (...a) => orig(...a))(require(${JSON.stringify(path.join(__dirname, '..', 'binding.js'))}).checksumFolder)`)
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).not.toContain('internal error')
    expect(fs.existsSync(path.join(r.dir, 'sums.json'))).toBe(true)
  })
})
