/**
 * The boundary's vocabularies stay declared once and true: every warning code
 * the core emits is in `WarningCode` (and nothing else is), and every error
 * code the core or the binding gives a JS error has an entry in `EXIT_FOR`.
 * Read from the sources, so a new code without its declaration fails here.
 */
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { EXIT_FOR } from '../js/errors'

const root = path.join(__dirname, '..')

function rustSources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? rustSources(p) : e.name.endsWith('.rs') ? [fs.readFileSync(p, 'utf8')] : []
  })
}

/** The second argument of each `Warning::new(…)` when it is a literal, plus `code: "…"` and the `from_io` codes. */
function emittedWarningCodes(): Set<string> {
  const codes = new Set<string>()
  for (const src of rustSources(path.join(root, 'crates/core/src'))) {
    for (const m of src.matchAll(/Warning::new\(/g)) {
      let i = m.index + m[0].length
      let depth = 0
      for (; i < src.length; i++) {
        const c = src[i]
        if ('([{'.includes(c)) depth++
        else if (')]}'.includes(c)) depth--
        else if (c === ',' && depth === 0) break
      }
      const lit = /^\s*"([a-z-]+)"/.exec(src.slice(i + 1))
      if (lit) codes.add(lit[1])
    }
    for (const m of src.matchAll(/code: "([a-z-]+)"/g)) codes.add(m[1])
    // Codes chosen by a match, e.g. ("target-no-acls", "POSIX ACLs").
    for (const m of src.matchAll(/\("(target-[a-z-]+)",/g)) codes.add(m[1])
  }
  const fromIo = /fn from_io[\s\S]*?\n {2}\}/.exec(fs.readFileSync(path.join(root, 'crates/core/src/error.rs'), 'utf8'))
  for (const m of fromIo![0].matchAll(/=> "([a-z-]+)"/g)) codes.add(m[1])
  return codes
}

function declaredWarningCodes(): Set<string> {
  const src = fs.readFileSync(path.join(root, 'js/warnings.ts'), 'utf8')
  const union = /export type WarningCode =([\s\S]*?)\n\n/.exec(src)![1]
  return new Set([...union.matchAll(/\| '([a-z-]+)'/g)].map((m) => m[1]))
}

describe('boundary vocabularies', () => {
  it('WarningCode declares exactly the warning codes the core emits', () => {
    const emitted = emittedWarningCodes()
    expect(emitted.size).toBeGreaterThan(15)
    expect([...declaredWarningCodes()].sort()).toEqual([...emitted].sort())
  })

  it('every error code of the core and the binding is an ErrorCode with an exit code', () => {
    const core = fs.readFileSync(path.join(root, 'crates/core/src/error.rs'), 'utf8')
    const binding = fs.readFileSync(path.join(root, 'crates/node/src/lib.rs'), 'utf8')
    const codes = new Set([
      ...[...core.matchAll(/ErrorKind::\w+ => "(E[A-Z]+)"/g)].map((m) => m[1]),
      ...[...binding.matchAll(/"(E[A-Z]+)"/g)].map((m) => m[1]),
    ])
    expect(codes).toContain('ECONFIG')
    expect(codes).toContain('EACCES')
    for (const c of codes) expect(Object.keys(EXIT_FOR)).toContain(c)
  })
})
