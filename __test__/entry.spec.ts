/**
 * The package's entry (`js/main.ts`, package.json "main"): every export of the library API (`js/index.ts`),
 * each module loaded on first use, so `require('axiomatic-backup')` for one backup does not load the server,
 * the ssh client and the integrity code.
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

import { describe, expect, it } from 'vitest'

import { ROOT } from './helpers'

function node(args: string[]): string {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' })
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  return r.stdout
}

describe('package entry', () => {
  it('exports the same names and values as the library API', () => {
    const out = node([
      '-e',
      `const entry = require(process.argv[1]); const api = require(process.argv[1] + '/dist/index.js');
       const a = Object.keys(entry).sort(), b = Object.keys(api).filter((k) => k !== '__esModule').sort();
       const differ = b.filter((k) => entry[k] !== api[k]);
       process.stdout.write(JSON.stringify({ a, b, differ }))`,
      ROOT,
    ])
    const { a, b, differ } = JSON.parse(out) as { a: string[]; b: string[]; differ: string[] }
    expect(b.length).toBeGreaterThan(50)
    expect(a).toEqual(b)
    expect(differ).toEqual([])
  })

  it('loads a module of the library only when one of its exports is used', () => {
    const out = node([
      '-e',
      `const entry = require(process.argv[1]);
       const loaded = () => Object.keys(require.cache).filter((f) => f.includes('/dist/')).map((f) => f.slice(f.indexOf('/dist/') + 6)).sort();
       const before = loaded(); void entry.backup; const backup = loaded(); void entry.serve;
       process.stdout.write(JSON.stringify({ before, backup, serve: loaded() }))`,
      ROOT,
    ])
    const { before, backup, serve } = JSON.parse(out) as Record<string, string[]>
    expect(before).toEqual(['main.js'])
    expect(backup).toContain('backup.js')
    expect(backup.some((f) => f.startsWith('serve/') || f.startsWith('integrity/') || f.startsWith('explore/'))).toBe(false)
    expect(serve).toContain('serve/index.js')
  })

  it("gives Node's ESM loader the named exports", () => {
    const url = pathToFileURL(path.join(ROOT, 'dist', 'main.js')).href
    const out = node([
      '--input-type=module',
      '-e',
      `import { backup, serve, BackupError, ALGORITHMS } from ${JSON.stringify(url)}; process.stdout.write([typeof backup, typeof serve, typeof BackupError, Array.isArray(ALGORITHMS)].join(' '))`,
    ])
    expect(out).toBe('function function function true')
  })
})
