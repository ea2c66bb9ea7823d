/**
 * File metadata beyond content and mtime: setuid/setgid bits with a foreign
 * owner (the chown must come before the chmod, or Linux clears the bits),
 * hard links, extended attributes and POSIX ACLs. Runs as root.
 */
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { backup, loadConfig, restore } from '../js'
import { bump, tmpdir, workspace } from './helpers'
import { expectIncrementsMatchMetadata, expectMirrorEqualsSource } from './invariants'

/** The mirror state's entries, by path. */
function readState(dst: string): Map<string, { mode: number; [k: string]: unknown }> {
  const lines = fs.readFileSync(path.join(dst, '.axiomatic/state.jsonl'), 'utf8').trim().split('\n').slice(1)
  return new Map(lines.map((l) => JSON.parse(l)).map((e) => [e.p, e]))
}

const NOBODY = 65534

describe('file metadata', () => {
  it('setuid/setgid bits survive the owner change: mirror, increment, state and restore keep them', async () => {
    const w = workspace(
      {
        'bin/suid': { content: '#!/bin/sh\necho suid\n', mode: 0o4755 },
        'bin/sgid': { content: '#!/bin/sh\necho sgid\n', mode: 0o2755 },
        'bin/both': { content: 'both', mode: 0o6750 },
      },
      { track_dirs: ['bin'] },
    )
    const files = ['bin/suid', 'bin/sgid', 'bin/both']
    const want: Record<string, number> = { 'bin/suid': 0o4755, 'bin/sgid': 0o2755, 'bin/both': 0o6750 }
    for (const f of files) {
      // chown clears the bits on the source too: owner first, then the mode.
      fs.chownSync(path.join(w.src, f), NOBODY, NOBODY)
      fs.chmodSync(path.join(w.src, f), want[f])
      expect(fs.statSync(path.join(w.src, f)).mode & 0o7777).toBe(want[f])
    }
    const cfg = loadConfig(w.config)
    const s1 = await backup(cfg)
    expect(s1.warnings).toEqual([])
    expectMirrorEqualsSource(cfg)
    const check = (inc: string) => {
      const state = readState(w.dst)
      for (const f of files) {
        const m = fs.statSync(path.join(w.dst, 'mirror', f))
        const t = fs.statSync(path.join(w.dst, inc, 'track', f))
        expect({ f, mode: m.mode & 0o7777, uid: m.uid, gid: m.gid }).toEqual({ f, mode: want[f], uid: NOBODY, gid: NOBODY })
        expect({ f, mode: t.mode & 0o7777 }).toEqual({ f, mode: want[f] })
        expect({ f, state: state.get(f)!.mode }).toEqual({ f, state: m.mode & 0o7777 })
      }
    }
    check(s1.increment!)
    // A later version keeps them too.
    fs.appendFileSync(path.join(w.src, 'bin/suid'), '# v2\n')
    bump(path.join(w.src, 'bin/suid'))
    fs.chmodSync(path.join(w.src, 'bin/suid'), 0o4755) // writing as root keeps the bits, but be explicit
    const s2 = await backup(cfg)
    expect(s2).toMatchObject({ changed: 1, warnings: [] })
    expect(fs.statSync(path.join(w.dst, s2.increment!, 'track/bin/suid')).mode & 0o7777).toBe(0o4755)
    // Nothing looks changed to the next run (the state matches the files).
    expect(await backup(cfg)).toMatchObject({ increment: null, changed: 0, mirrorUpdated: 0 })
    expectIncrementsMatchMetadata(w.dst)

    for (const at of [undefined, s1.increment!]) {
      const to = tmpdir('restore-')
      const r = await restore(w.dst, { to, at })
      expect(r.warnings).toEqual([])
      for (const f of files) {
        const st = fs.statSync(path.join(to, f))
        expect({ at, f, mode: st.mode & 0o7777, uid: st.uid }).toEqual({ at, f, mode: want[f], uid: NOBODY })
      }
    }
  })
})
