/**
 * The core's layering (docs/design.md, "Map of the code"): fs/, layout, error and progress underneath,
 * then backup/, then explore/, then integrity/. A module may use only its own layer and those below.
 * Read from the sources, so a new upward reference fails here with its file and line.
 */
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

const SRC = path.join(__dirname, '..', 'crates', 'core', 'src')
const RANK: Record<string, number> = { fs: 0, layout: 0, error: 0, progress: 0, backup: 1, explore: 2, integrity: 3 }

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? files(p) : e.name.endsWith('.rs') ? [p] : []
  })
}

describe('core layering', () => {
  it('no module of the core uses a module of a layer above its own', () => {
    const upward: string[] = []
    let checked = 0
    for (const f of files(SRC)) {
      const rel = path.relative(SRC, f)
      const top = rel.split(path.sep)[0].replace(/\.rs$/, '')
      const own = RANK[top]
      if (own === undefined) continue // lib.rs
      checked++
      fs.readFileSync(f, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          for (const m of line.matchAll(/crate::(backup|explore|integrity)\b/g)) {
            if (RANK[m[1]] > own) upward.push(`${rel}:${i + 1}: ${line.trim()}`)
          }
        })
    }
    expect(checked).toBeGreaterThan(30)
    expect(upward).toEqual([])
  })
})
