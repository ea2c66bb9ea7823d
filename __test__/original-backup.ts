/**
 * A backup folder made by the original backup.py (4 rounds, in a time zone 9 hours ahead of UTC),
 * written by `original_backup_format.py` (ours, from the format's description). Shared by
 * `adopt.spec.ts` and `serve.spec.ts`.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { tmpdir, writeConfig, writeTree } from './helpers'

const GEN = path.join(__dirname, 'original_backup_format.py')
export const TZ = 'Asia/Tokyo' // UTC+9, no daylight saving: names are 9 h ahead of our UTC names
export const DAY = 86_400

/** Runs one round of the original's format. */
function round(src: string, dst: string, now: number, recreated = false) {
  const job = path.join(path.dirname(src), `job-${now}.json`)
  fs.writeFileSync(job, JSON.stringify({ src, dst, track: ['docs'], now, recreated }))
  const r = spawnSync('python3', [GEN, job], { env: { ...process.env, TZ }, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`fixture generator failed: ${r.stderr}`)
}

/** The name the original gives an increment made at `t` (local time, here UTC+9). */
function localName(t: number): string {
  const d = new Date((t + 9 * 3600) * 1000)
  const p = (n: number) => String(n).padStart(2, '0')
  return `backup_${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}_${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`
}

/**
 * 4 rounds of the original:
 * 1. docs/a, b, c (tracked), notes/x, y (mirrored) → increment 1: a, b, c new;
 * 2. docs/a rewritten (the mirror inode is overwritten in place, so increment 1's
 *    a shows round 2's content), docs/b deleted → increment 2: a changed, b deleted;
 * 3. notes/y deleted, notes/z added, no tracked change → no increment; y stays in
 *    the mirror (stale), mirror.json forgets it;
 * 4. docs/d added → increment 3, metadata as backup_tool.py's `recreate` writes it.
 * The last round is 2 hours before now, so its local name sorts after a name we
 * give now in UTC, though it was made before.
 */
export function originalFolder() {
  const dir = tmpdir('adopt-')
  const src = path.join(dir, 'src')
  const dst = path.join(dir, 'dst')
  const now = Math.floor(Date.now() / 1000)
  const t0 = now - 3 * DAY - 2 * 3600
  const old = t0 - DAY
  writeTree(src, {
    'docs/a.txt': { content: 'a version 1\n', mtime: old },
    'docs/b.txt': { content: 'bee\n', mtime: old },
    'docs/c.txt': { content: 'sea\n', mtime: old },
    'notes/x.txt': { content: 'x\n', mtime: old },
    'notes/y.txt': { content: 'why\n', mtime: old },
  })
  round(src, dst, t0)
  writeTree(src, { 'docs/a.txt': { content: 'a version 2, longer\n', mtime: t0 + 3600 } })
  fs.unlinkSync(path.join(src, 'docs/b.txt'))
  round(src, dst, t0 + DAY)
  fs.unlinkSync(path.join(src, 'notes/y.txt'))
  writeTree(src, { 'notes/z.txt': { content: 'zed\n', mtime: t0 + DAY } })
  round(src, dst, t0 + 2 * DAY)
  writeTree(src, { 'docs/d.txt': { content: 'dee\n', mtime: t0 + 2 * DAY } })
  round(src, dst, t0 + 3 * DAY, true)
  const names = [t0, t0 + DAY, t0 + 3 * DAY].map(localName)
  const config = writeConfig(dir, { src, dst, track_dirs: ['docs'], include_dirs: ['notes'] })
  return { dir, src, dst, config, names, times: [t0, t0 + DAY, t0 + 3 * DAY] }
}
