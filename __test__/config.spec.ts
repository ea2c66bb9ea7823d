import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { BackupError, ConfigError, loadConfig, resolveConfig } from '../js'
import { fromNative, native } from '../js/native'
import { cli, tmpdir, writeConfig } from './helpers'

function ws() {
  const dir = tmpdir('cfg-')
  fs.mkdirSync(path.join(dir, 'src'))
  return dir
}

describe('config', () => {
  const bad: [string, object, RegExp][] = [
    ['unknown key, with the nearest known one', { src: 'src', dst: 'dst', exclude_dir: [] }, /unknown key "exclude_dir"; did you mean "exclude_dirs"\?/],
    ['wrong type of a list', { src: 'src', dst: 'dst', include_dirs: 'Documents' }, /"include_dirs" must be a list of strings/],
    ['wrong type of an element', { src: 'src', dst: 'dst', track_files: [1] }, /"track_files" must be a list of strings/],
    ['missing src', { dst: 'dst' }, /"src" is missing/],
    ['missing dst', { src: 'src' }, /"dst" is missing/],
    ['src does not exist', { src: 'nope', dst: 'dst' }, /"src" .*nope does not exist/],
    ['src is a file', { src: 'file', dst: 'dst' }, /"src" .*file is not a directory/],
    ['dst inside src', { src: 'src', dst: 'src/backup' }, /"dst" .* is inside "src"/],
    ['src inside dst', { src: 'src', dst: '.' }, /"src" .* is inside "dst"/],
    ['dst and dist differ', { src: 'src', dst: 'a', dist: 'b' }, /"dst" and its alias "dist" are both set and differ/],
    ['directory_priority', { src: 'src', dst: 'dst', directory_priority: 'both' }, /"directory_priority" must be "track" or "include"/],
    ['max_workers', { src: 'src', dst: 'dst', max_workers: 0 }, /"max_workers" must be a whole number/],
    ['mtime_tolerance_s', { src: 'src', dst: 'dst', mtime_tolerance_s: -1 }, /"mtime_tolerance_s" must be a number/],
    ['a pattern that cannot compile', { src: 'src', dst: 'dst', exclude_files: ['[abc'] }, /exclude_files: pattern "\[abc" cannot compile/],
    ['a pattern leaving src', { src: 'src', dst: 'dst', include_dirs: ['../x'] }, /include_dirs: pattern "\.\.\/x"/],
  ]
  for (const [what, config, msg] of bad) {
    it(`refuses ${what} with exit 64, naming the file and key, writing nothing`, () => {
      const dir = ws()
      fs.writeFileSync(path.join(dir, 'file'), '')
      const file = writeConfig(dir, config)
      expect(() => loadConfig(file)).toThrow(msg)
      expect(() => loadConfig(file)).toThrow(ConfigError)
      const before = fs.readdirSync(dir).sort()
      const r = cli(['run', '--config', file])
      expect(r.status).toBe(64)
      expect(r.stderr).toMatch(msg)
      expect(r.stderr).toContain(file)
      expect(fs.readdirSync(dir).sort()).toEqual(before)
    })
  }

  it('a missing or invalid config file', () => {
    const dir = ws()
    const r = cli(['run', '--config', path.join(dir, 'none.json')])
    expect(r.status).toBe(64)
    expect(r.stderr).toMatch(/config file .*none\.json not found; create it .* or pass --config FILE/)
    fs.writeFileSync(path.join(dir, 'bad.json'), '{"src": ')
    const r2 = cli(['run', '--json', '--config', path.join(dir, 'bad.json')])
    expect(r2.status).toBe(64)
    expect(JSON.parse(r2.stdout).error).toMatchObject({ code: 'ECONFIG' })
    expect(JSON.parse(r2.stdout).error.message).toMatch(/bad\.json: not valid JSON/)
  })

  it('resolves ~ and relative paths against the config file, accepts dist as alias of dst', () => {
    const dir = ws()
    const c = loadConfig(writeConfig(dir, { src: 'src', dist: 'out', include_dirs: ['a'] }))
    expect(c.src).toBe(path.join(dir, 'src'))
    expect(c.dst).toBe(path.join(dir, 'out'))
    expect(c.maxWorkers).toBe(os.availableParallelism())
    const home = resolveConfig({ src: '~', dst: path.join(dir, 'x') }, { base: '/' })
    expect(home.src).toBe(os.homedir())
    // The same value under both names is fine.
    expect(loadConfig(writeConfig(dir, { src: 'src', dst: 'out', dist: 'out' })).dst).toBe(path.join(dir, 'out'))
  })

  it('defaults to config.json in the working directory; `backup` alone runs `backup run`', () => {
    const dir = ws()
    fs.writeFileSync(path.join(dir, 'src', 'a.txt'), 'a')
    writeConfig(dir, { src: 'src', dst: 'dst', track_files: ['a.txt'] })
    const r = cli(['--json'], { cwd: dir })
    expect(r.status, r.stderr).toBe(0)
    const j = JSON.parse(r.stdout)
    expect(Object.keys(j).sort()).toEqual(
      ['increment', 'recovered', 'dryRun', 'mirrorFiles', 'trackedFiles', 'new', 'changed', 'deleted', 'removedFromMirror', 'mirrorUpdated', 'bytesCopied', 'linkFallbacks', 'specialSkipped', 'mtimeToleranceS', 'durationMs', 'warnings', 'hints', 'refused', 'targetFs', 'targetLimits', 'adopted'].sort(),
    )
    expect(j).toMatchObject({ new: 1, mirrorFiles: 1, trackedFiles: 1, bytesCopied: 1 })
    expect(j.increment).toMatch(/^backup_/)
  })

  it('unknown options are usage errors (exit 64); --help documents exit codes', () => {
    expect(cli(['run', '--nope']).status).toBe(64)
    const h = cli(['run', '--help'])
    expect(h.status).toBe(0)
    expect(h.stdout).toMatch(/Exit codes: 0 done; 1 done, with warnings/)
    expect(h.stdout).not.toContain('\x1b[') // piped: no colours
  })

  it('explain names the rule that selected, tracked or excluded a path', () => {
    const dir = ws()
    const file = writeConfig(dir, { src: 'src', dst: 'dst', include_dirs: ['Documents'], exclude_dirs: ['cache:rec'], track_files: ['*.pdf:rec'] })
    const r = cli(['explain', 'Documents/cache/x.bin', '-c', file])
    expect(r.status).toBe(1)
    expect(r.stdout).toContain('Documents: include_dirs "Documents": includes directory')
    expect(r.stdout).toContain('Documents/cache: exclude_dirs "cache:rec": excludes directory')
    expect(r.stdout).toContain('not selected: inside an excluded directory')
    const j = JSON.parse(cli(['explain', 'Documents/cache/r.pdf', '--json', '-c', file]).stdout)
    expect(j).toMatchObject({ selected: true, role: 'tracked' })
    expect(j.steps.at(-2)).toMatchObject({ key: 'track_files', pattern: '*.pdf:rec' })
    expect(cli(['explain', '../etc/passwd', '-c', file]).status).toBe(64)
    // A bare exclude_dirs name is anchored at src (as the original backup.py): explain says so.
    const bare = writeConfig(dir, { src: 'src', dst: 'dst', include_dirs: ['Documents'], exclude_dirs: ['cache'] }, 'bare.json')
    const b = cli(['explain', 'Documents/cache/x.bin', '-c', bare])
    expect(b.status).toBe(0)
    expect(b.stdout).toContain(
      'Documents/cache: exclude_dirs "cache": does not exclude this directory: exclude_dirs patterns are relative to src (only "cache"); "cache:rec" excludes it at any depth',
    )
    expect(b.stdout).toContain('selected: mirrored only')
  })

  it('hints when an anchored pattern matches only deeper', () => {
    const dir = ws()
    fs.mkdirSync(path.join(dir, 'src/notes'))
    fs.writeFileSync(path.join(dir, 'src/notes/a.txt'), 'a')
    const file = writeConfig(dir, { src: 'src', dst: 'dst', include_files: ['*.txt'] })
    const r = cli(['run', '--dry-run', '-c', file])
    expect(r.status).toBe(0)
    expect(r.stderr).toContain('hint: include_files: "*.txt" matches nothing directly in src but matches deeper (e.g. "notes/a.txt"); did you mean "*.txt:rec"?')
  })

  it('hints when a bare exclude_dirs name matches no folder directly in src but exists deeper; such folders are kept', () => {
    const dir = ws()
    fs.mkdirSync(path.join(dir, 'src/Projects/cache'), { recursive: true })
    fs.writeFileSync(path.join(dir, 'src/Projects/cache/keep.bin'), 'k')
    const file = writeConfig(dir, { src: 'src', dst: 'dst', track_dirs: ['Projects'], exclude_dirs: ['cache', 'node_modules'] })
    const r = cli(['run', '-c', file])
    expect(r.status).toBe(0)
    expect(r.stderr).toContain('hint: exclude_dirs: "cache" matches no folder directly in src but matches deeper (e.g. "Projects/cache"); did you mean "cache:rec"?')
    expect(r.stderr).not.toContain('"node_modules"')
    expect(fs.readFileSync(path.join(dir, 'dst/mirror/Projects/cache/keep.bin'), 'utf8')).toBe('k')
    // With src/cache present the pattern does what it says: no hint.
    fs.mkdirSync(path.join(dir, 'src/cache'))
    expect(cli(['run', '--dry-run', '-c', file]).stderr).not.toContain('hint:')
  })

  it('a missing native addon: the error names the platform binary and how to build it', () => {
    const dir = ws()
    const file = writeConfig(dir, { src: 'src', dst: 'dst' })
    const r = cli(['run', '-c', file], { env: { NAPI_RS_NATIVE_LIBRARY_PATH: path.join(dir, 'missing.node') } })
    expect(r.status).toBe(2)
    const triple = `${process.platform}-${process.arch}`
    expect(r.stderr).toContain(`the native addon for ${triple}`)
    expect(r.stderr).toMatch(new RegExp(`axiomatic-backup-${triple}(-gnu|-musl)? could be loaded`))
    expect(r.stderr).toContain('npm run build:native')
    expect(fs.existsSync(path.join(dir, 'dst'))).toBe(false)
  })

  it('native errors carry a real code property; the message has no code prefix; the JS class follows the code', async () => {
    const pat = (source: string) => ({ key: 'include_files', source, glob: source })
    const rules = { includeDirs: [], trackDirs: [], excludeDirs: [], includeFiles: [pat('a[')], trackFiles: [], excludeFiles: [], directoryPriority: 'track' }
    let thrown: unknown
    try {
      native().checkRules(rules)
    } catch (e) {
      thrown = e
    }
    expect(thrown).toBeInstanceOf(Error)
    expect((thrown as NodeJS.ErrnoException).code).toBe('ECONFIG')
    expect((thrown as Error).message).not.toMatch(/^E[A-Z]+: /)
    expect((thrown as Error).message).toContain('a[')
    const mapped = fromNative(thrown)
    expect(mapped).toBeInstanceOf(ConfigError)
    expect(mapped).toMatchObject({ code: 'ECONFIG', exitCode: 64, message: (thrown as Error).message })
    // An async call rejects the same way: a missing temp report cannot be finished (EIO), from a worker thread.
    const dir = ws()
    const err = await native()
      .checksumFolder(path.join(dir, 'none'), ['sha256'], 1, 'g', 0, 'json', path.join(dir, 'no', 'tmp'), null, null)
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    expect((err as NodeJS.ErrnoException).code).toMatch(/^E[A-Z]+$/)
    const b = fromNative(err)
    expect(b).toBeInstanceOf(BackupError)
    expect(b).toMatchObject({ code: (err as NodeJS.ErrnoException).code, exitCode: 2 })
  })
})

