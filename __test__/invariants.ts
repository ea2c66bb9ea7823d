/** Checks of the DEVELOPERS.md invariants on a real backup folder. */
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

import { expect } from 'vitest'

import { native } from '../js/native'
import type { ResolvedConfig } from '../js/config'
import { increments, listTree, readMeta, type FileInfo } from './helpers'

/** Invariant 2: the mirror equals the selected source set (content, mtime, mode, kind, hard-link groups, xattrs/ACLs). */
export function expectMirrorEqualsSource(cfg: ResolvedConfig): void {
  const selected = new Set(native().selectFiles(cfg.src, cfg.rules).map((c) => c.path))
  const src = listTree(cfg.src, { skip: () => false })
  const mirror = listTree(path.join(cfg.dst, 'mirror'))
  const want = new Map([...src].filter(([p]) => selected.has(p)))
  expect([...mirror.keys()].sort()).toEqual([...want.keys()].sort())
  for (const [p, s] of want) {
    const m = mirror.get(p)!
    expect({ p, kind: m.kind, size: m.size, sha: m.sha, mtime: m.mtimeMs }).toEqual({ p, kind: s.kind, size: s.size, sha: s.sha, mtime: s.mtimeMs })
    if (s.kind === 'file') expect({ p, mode: m.mode }).toEqual({ p, mode: s.mode })
  }
  expect(linkGroups(mirror)).toEqual(linkGroups(want))
  const sx = xattrsOf(cfg.src)
  const mx = xattrsOf(path.join(cfg.dst, 'mirror'))
  for (const p of want.keys()) expect({ p, xattrs: mx.get(p) ?? {} }).toEqual({ p, xattrs: sx.get(p) ?? {} })
}

/** Hard-link groups of a tree listing: for each file sharing its inode with others, the first path of its group. */
export function linkGroups(tree: Map<string, FileInfo>): Record<string, string> {
  const first = new Map<number, string>()
  const out: Record<string, string> = {}
  for (const p of [...tree.keys()].sort()) {
    const f = tree.get(p)!
    if (f.kind !== 'file') continue
    const lead = first.get(f.ino)
    if (lead === undefined) first.set(f.ino, p)
    else out[p] = lead
  }
  return out
}

/** The xattrs a backup keeps (user.*, the access ACL, and as root security.*, trusted.*) of every file below `root`, hex values. */
export function xattrsOf(root: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>()
  if (!fs.existsSync(root)) return out
  const r = spawnSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], { encoding: 'latin1', maxBuffer: 256 * 1024 * 1024 })
  // getfattr escapes unusual bytes in names as \ooo (octal) and a backslash as \\.
  const unescape = (s: string) => Buffer.from(s.replace(/\\(\d{3})|\\\\/g, (m, o) => (o ? String.fromCharCode(parseInt(o, 8)) : '\\')), 'latin1').toString('utf8')
  const kept = (n: string) => n.startsWith('user.') || n === 'system.posix_acl_access' || n.startsWith('security.') || n.startsWith('trusted.')
  for (const block of r.stdout.split('\n\n')) {
    const lines = block.split('\n').filter((l) => l)
    if (!lines[0]?.startsWith('# file: ')) continue
    const file = path.relative(root, unescape(lines[0].slice('# file: '.length)))
    const attrs: Record<string, string> = {}
    for (const l of lines.slice(1)) {
      const i = l.indexOf('=')
      const name = i < 0 ? l : l.slice(0, i)
      if (kept(name)) attrs[name] = i < 0 ? '' : l.slice(i + 1).replace(/^0x/, '')
    }
    if (Object.keys(attrs).length) out.set(file, attrs)
  }
  return out
}

/** Every increment: the files match the catalog exactly (size, sha256), and nothing else is there. */
export function expectIncrementsMatchMetadata(dst: string): void {
  for (const name of increments(dst)) {
    const meta = readMeta(dst, name)
    expect(meta.backup_name).toBe(name)
    const files = listTree(path.join(dst, name), { skip: (rel) => rel === `${name}.json` })
    const expected = new Set(Object.entries(meta.file_catalog).map(([p, e]) => `${e.category}/${p}`))
    expect([...files.keys()].sort()).toEqual([...expected].sort())
    for (const [p, e] of Object.entries(meta.file_catalog)) {
      const f = files.get(`${e.category}/${p}`)!
      expect({ name, p, size: f.size }).toEqual({ name, p, size: e.size })
      if (e.sha256) expect({ name, p, sha: f.sha }).toEqual({ name, p, sha: e.sha256 })
    }
  }
}

/** Weaker than the above, for the instant after a kill: every file a catalog lists is there, intact. */
export function expectMetadataFilesPresent(dst: string): void {
  for (const name of increments(dst)) {
    const meta = readMeta(dst, name)
    const files = listTree(path.join(dst, name))
    for (const [p, e] of Object.entries(meta.file_catalog)) {
      const f = files.get(`${e.category}/${p}`)
      expect({ name, p, present: !!f }).toEqual({ name, p, present: true })
      if (e.sha256) expect({ name, p, sha: f!.sha }).toEqual({ name, p, sha: e.sha256 })
    }
  }
}

/** A snapshot of every increment file (content and inode), to prove history never changes. */
export function snapshotHistory(dst: string): Map<string, FileInfo> {
  const out = new Map<string, FileInfo>()
  for (const name of increments(dst)) {
    for (const [rel, info] of listTree(path.join(dst, name))) out.set(`${name}/${rel}`, info)
  }
  return out
}

/** Invariant 1: everything in `before` is still there, byte for byte, same inode, same mtime and mode. */
export function expectHistoryUnchanged(before: Map<string, FileInfo>, dst: string): void {
  const now = snapshotHistory(dst)
  for (const [p, info] of before) {
    expect({ p, info: now.get(p) }).toEqual({ p, info })
  }
}

/** All (path, sha256) versions stored in `track/` across increments, with their counts. */
export function storedVersions(dst: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const name of increments(dst)) {
    for (const [p, e] of Object.entries(readMeta(dst, name).file_catalog)) {
      if (e.category !== 'track') continue
      const k = `${p}\0${e.sha256}`
      out.set(k, (out.get(k) ?? 0) + 1)
    }
  }
  return out
}

export function sha(data: string | Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex')
}

export function fileExists(p: string): boolean {
  try {
    fs.lstatSync(p)
    return true
  } catch {
    return false
  }
}
