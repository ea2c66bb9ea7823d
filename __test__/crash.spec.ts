/**
 * Invariant 4: a run killed at any instant loses nothing. The CLI is killed
 * with SIGKILL at every file-system step of a run (AXIOMATIC_FAULT_AFTER_OPS)
 * and at random times; the next run must finish the job with invariants 1–3.
 */
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { loadConfig } from '../js'
import { BIN, bump, cli, increments, listTree, readMeta, tmpdir, workspace } from './helpers'
import { expectHistoryUnchanged, expectIncrementsMatchMetadata, expectMirrorEqualsSource, snapshotHistory, storedVersions } from './invariants'

const RULES = { include_dirs: ['docs'], track_dirs: ['proj'] }

function initialTree() {
  const t: Record<string, string> = {}
  for (let i = 0; i < 6; i++) t[`proj/p${i}.txt`] = `tracked ${i}`
  for (let i = 0; i < 4; i++) t[`docs/d${i}.txt`] = `mirror only ${i}`
  t['proj/sub/deep.txt'] = 'deep'
  return t
}

function mutate(src: string) {
  for (const i of [0, 1, 2]) {
    fs.writeFileSync(path.join(src, `proj/p${i}.txt`), `tracked ${i} v2 with more bytes`)
    bump(path.join(src, `proj/p${i}.txt`))
  }
  fs.rmSync(path.join(src, 'proj/p3.txt'))
  fs.rmSync(path.join(src, 'proj/sub'), { recursive: true })
  fs.writeFileSync(path.join(src, 'proj/n1.txt'), 'new 1')
  fs.mkdirSync(path.join(src, 'proj/newdir'))
  fs.writeFileSync(path.join(src, 'proj/newdir/n2.txt'), 'new 2')
  fs.writeFileSync(path.join(src, 'docs/d0.txt'), 'mirror only 0 v2')
  fs.rmSync(path.join(src, 'docs/d1.txt'))
  fs.writeFileSync(path.join(src, 'docs/d9.txt'), 'mirror only new')
}

function copyTree(from: string, to: string) {
  execFileSync('cp', ['-a', from, to]) // keeps hardlinks inside the tree
}

/** Every (path, sha) of the tracked files in `src`. */
function trackedVersions(src: string): string[] {
  return [...listTree(path.join(src, 'proj'))].map(([p, f]) => `proj/${p}\0${f.sha}`)
}

function checkAll(dir: string, before: ReturnType<typeof snapshotHistory>, mustHave: string[]) {
  const cfg = loadConfig(path.join(dir, 'config.json'))
  expectMirrorEqualsSource(cfg)
  expectIncrementsMatchMetadata(cfg.dst)
  expectHistoryUnchanged(before, cfg.dst)
  const stored = storedVersions(cfg.dst)
  for (const v of mustHave) expect({ v, n: stored.get(v) }).toEqual({ v, n: 1 })
  for (const [v, n] of stored) expect({ v, n }).toEqual({ v, n: 1 })
  expect(fs.existsSync(path.join(cfg.dst, '.axiomatic/journal.jsonl'))).toBe(false)
  expect(fs.readdirSync(path.join(cfg.dst, '.axiomatic/incomplete'))).toEqual([])
  // No temp files left in the mirror.
  expect([...listTree(path.join(cfg.dst, 'mirror')).keys()].filter((p) => p.includes('.axb-'))).toEqual([])
}

describe('crash safety', () => {
  it('SIGKILL at every step of a first run and of an incremental run', async () => {
    for (const phase of ['first', 'incremental'] as const) {
      const base = workspace(initialTree(), RULES)
      let versionsBefore: string[] = []
      if (phase === 'incremental') {
        versionsBefore = trackedVersions(base.src)
        expect(cli(['run', '-c', base.config]).status).toBe(0)
        mutate(base.src)
      }
      const mustHave = [...versionsBefore, ...trackedVersions(base.src)]
      let completedAt = 0
      for (let n = 1; n < 200; n++) {
        // Let the worker answer vitest's RPC between the synchronous child runs
        // (a loaded machine otherwise times it out).
        await new Promise((r) => setImmediate(r))
        const dir = tmpdir('crash-')
        fs.rmSync(dir, { recursive: true })
        copyTree(base.dir, dir)
        // The copy's src has another path than the one the backup records: let it adopt it, as a
        // backup made before source records would (the refusal itself is tested in safety.spec.ts).
        fs.rmSync(path.join(dir, 'dst/.axiomatic/source.json'), { force: true })
        const before = snapshotHistory(path.join(dir, 'dst'))
        const killed = cli(['run', '-c', path.join(dir, 'config.json')], { env: { AXIOMATIC_FAULT_AFTER_OPS: String(n) } })
        const again = cli(['run', '--json', '-c', path.join(dir, 'config.json')])
        expect({ n, status: again.status, stderr: again.stderr }).toEqual({ n, status: 0, stderr: '' })
        checkAll(dir, before, mustHave)
        if (killed.signal === 'SIGKILL') {
          const j = JSON.parse(again.stdout)
          // The killed run's done work is committed as one recovered increment, or redone.
          if (j.recovered) expect(readMeta(path.join(dir, 'dst'), j.recovered).origin).toMatch(/recovered|run/)
        } else {
          expect(killed.status).toBe(0)
          completedAt = n
          fs.rmSync(dir, { recursive: true })
          break
        }
        fs.rmSync(dir, { recursive: true })
      }
      expect(completedAt).toBeGreaterThan(5) // the hook really hit many steps
    }
  }, 300_000)

  it('SIGKILL at random times during runs of a larger tree', async () => {
    const tree: Record<string, string> = {}
    for (let i = 0; i < 3000; i++) tree[`proj/d${i % 40}/f${i}.txt`] = `v1 ${i} ${'y'.repeat(i % 5000)}`
    const w = workspace(tree, RULES)
    let rnd = 7
    const rand = (n: number) => ((rnd = (rnd * 1103515245 + 12345) % 2 ** 31), rnd % n)
    const before = snapshotHistory(w.dst)
    for (let round = 0; round < 6; round++) {
      const child = spawn(process.execPath, [BIN, 'run', '-c', w.config], { stdio: 'ignore' })
      const exited = new Promise((r) => child.once('exit', r))
      const delay = 50 + rand(400)
      await Promise.race([exited, new Promise((r) => setTimeout(r, delay))])
      child.kill('SIGKILL')
      await exited
      // Change things between the kills: the interrupted versions may be gone
      // from src, but everything committed stays intact.
      for (let k = 0; k < 200; k++) {
        const f = path.join(w.src, `proj/d${k % 40}/f${rand(3000)}.txt`)
        if (rand(5) === 0) fs.rmSync(f, { force: true })
        else {
          fs.writeFileSync(f, `round ${round} ${k}`)
          bump(f)
        }
      }
    }
    const last = trackedVersions(w.src)
    const r = cli(['run', '-c', w.config])
    expect(r.status, r.stderr).toBe(0)
    checkAll(w.dir, before, last)
    expect(increments(w.dst).length).toBeGreaterThan(0)
  }, 300_000)
})
