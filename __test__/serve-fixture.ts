/** The engine-made backup the `serve` specs browse (API and browser). */
import fs from 'node:fs'
import path from 'node:path'

import { expect } from 'vitest'

import { backup, loadConfig } from '../js'
import { tmpdir, workspace, writeTree } from './helpers'

/** Three increments: changes, a deletion, a re-creation, untracked files, a symlink out of the backup. */
export async function engineBackup() {
  const outside = tmpdir('outside-')
  const secret = path.join(outside, 'secret.txt')
  fs.writeFileSync(secret, 'TOP-SECRET outside the backup\n')
  const t0 = 1_700_000_000
  const w = workspace(
    {
      'docs/a.txt': { content: 'a version 1\n', mtime: t0 },
      'docs/b.txt': { content: 'bee\n', mtime: t0 },
      'docs/sub/c.txt': { content: 'sea 1\n', mtime: t0 },
      'docs/weird name #1 & ü.txt': { content: 'unicode\n', mtime: t0 },
      'docs/link': { symlink: secret },
      'src/main.py': { content: 'print(1)\n', mtime: t0 },
      'src/g[l]ob*?{x}/y.txt': { content: 'glob\n', mtime: t0 },
      'plain/u.txt': { content: 'untracked 1\n', mtime: t0 },
    },
    { track_dirs: ['docs', 'src'], include_dirs: ['plain'] },
  )
  const cfg = loadConfig(w.config)
  const i1 = (await backup(cfg)).increment!
  writeTree(w.src, {
    'docs/a.txt': { content: 'a version 2, longer\nsecond line\n', mtime: t0 + 100 },
    'docs/sub/d.txt': { content: 'dee\n', mtime: t0 + 100 },
    'plain/u.txt': { content: 'untracked 2\n', mtime: t0 + 100 },
  })
  fs.rmSync(path.join(w.src, 'docs/b.txt'))
  const i2 = (await backup(cfg)).increment!
  writeTree(w.src, {
    'docs/b.txt': { content: 'bee again\n', mtime: t0 + 200 },
    'docs/sub/c.txt': { content: 'sea 3, changed\n', mtime: t0 + 200 },
    'docs/a.txt': { content: 'a version 3\nsecond line\n', mtime: t0 + 200 },
  })
  fs.rmSync(path.join(w.src, 'src/main.py'))
  const i3 = (await backup(cfg)).increment!
  expect(new Set([i1, i2, i3]).size).toBe(3)
  return { ...w, outside, secret, names: [i1, i2, i3] }
}
