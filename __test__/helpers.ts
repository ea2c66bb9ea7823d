/** Declarative fixture trees and helpers shared by the specs. */
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export const ROOT = path.join(__dirname, '..')
export const BIN = path.join(ROOT, 'bin', 'backup.js')

/** A file's content, a symlink, or a file with mode/mtime. */
export type Node = string | { symlink: string } | { content: string | Buffer; mode?: number; mtime?: number } | { dir: true }
export type Tree = Record<string, Node>

/** A fresh folder inside this test run's folder (`global-setup.ts` removes it when the run ends). */
export function tmpdir(prefix = 'axb-'): string {
  const base = process.env.AXIOMATIC_TEST_TMP ?? path.join(os.tmpdir(), 'axiomatic-tests')
  fs.mkdirSync(base, { recursive: true })
  return fs.mkdtempSync(path.join(base, prefix))
}

export function writeTree(root: string, tree: Tree): void {
  for (const [rel, node] of Object.entries(tree)) {
    const p = path.join(root, rel)
    fs.mkdirSync(path.dirname(p), { recursive: true })
    if (typeof node === 'string') fs.writeFileSync(p, node)
    else if ('symlink' in node) fs.symlinkSync(node.symlink, p)
    else if ('dir' in node) fs.mkdirSync(p, { recursive: true })
    else {
      fs.writeFileSync(p, node.content)
      if (node.mode !== undefined) fs.chmodSync(p, node.mode)
      if (node.mtime !== undefined) fs.utimesSync(p, node.mtime, node.mtime)
    }
  }
}

export interface FileInfo {
  kind: 'file' | 'symlink'
  size: number
  mtimeMs: number
  mode: number
  sha: string
  ino: number
}

/** Every file and symlink below `root`, with content hash, mtime and mode. */
export function listTree(root: string, opts: { skip?: (rel: string) => boolean } = {}): Map<string, FileInfo> {
  const out = new Map<string, FileInfo>()
  // Names are read as bytes and keyed as the metadata holds them (names that are not UTF-8 escaped).
  const walk = (dir: Buffer, pre: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true, encoding: 'buffer' })) {
      const raw = e.name as unknown as Buffer
      const rel = pre + bytesName(raw)
      if (opts.skip?.(rel)) continue
      const p = Buffer.concat([dir, Buffer.from('/'), raw])
      if (e.isDirectory()) walk(p, rel + '/')
      else {
        const st = fs.lstatSync(p, { bigint: false })
        const data = e.isSymbolicLink() ? (fs.readlinkSync(p, { encoding: 'buffer' }) as Buffer) : fs.readFileSync(p)
        out.set(rel, {
          kind: e.isSymbolicLink() ? 'symlink' : 'file',
          size: st.size,
          mtimeMs: st.mtimeMs,
          mode: st.mode & 0o7777,
          sha: crypto.createHash('sha256').update(data).digest('hex'),
          ino: st.ino,
        })
      }
    }
  }
  if (fs.existsSync(root)) walk(Buffer.from(root), '')
  return out
}

/** Runs the real CLI. */
export function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  })
}

export function writeConfig(dir: string, config: object, name = 'config.json'): string {
  const f = path.join(dir, name)
  fs.writeFileSync(f, JSON.stringify(config, null, 2))
  return f
}

/** A test workspace: `src`, `dst` and a config in one temp folder. */
export function workspace(tree: Tree, rules: object = { track_dirs: ['**'] }) {
  const dir = tmpdir()
  const src = path.join(dir, 'src')
  const dst = path.join(dir, 'dst')
  fs.mkdirSync(src)
  writeTree(src, tree)
  const config = writeConfig(dir, { src: 'src', dst: 'dst', ...rules })
  return { dir, src, dst, config }
}

export function increments(dst: string): string[] {
  if (!fs.existsSync(dst)) return []
  return fs.readdirSync(dst).filter((n) => /^backup_\d{8}_\d{6}(_\d+)?$/.test(n)).sort(naturalIncrementOrder)
}

/** Increment names sort by time, then by collision suffix. */
export function naturalIncrementOrder(a: string, b: string): number {
  const k = (n: string) => {
    const m = /^backup_(\d{8}_\d{6})(?:_(\d+))?$/.exec(n)!
    return [m[1], Number(m[2] ?? 0)] as const
  }
  const [ta, sa] = k(a)
  const [tb, sb] = k(b)
  return ta < tb ? -1 : ta > tb ? 1 : sa - sb
}

import type { CatalogEntry } from '../js'
import { bytesName } from '../js/names'
export type { CatalogEntry }

export interface IncrementMeta {
  version: number
  backup_name: string
  timestamp: string
  origin: string
  file_catalog: Record<string, CatalogEntry>
  summary: { new: number; changed: number; deleted: number; total: number }
}

export function readMeta(dst: string, name: string): IncrementMeta {
  return JSON.parse(fs.readFileSync(path.join(dst, name, `${name}.json`), 'utf8')) as IncrementMeta
}

/** Sets a file's mtime to a distinct second, so size-equal rewrites are seen as changes. */
let clock = 1_700_000_000
export function bump(p: fs.PathLike): void {
  clock += 10
  fs.utimesSync(p, clock, clock)
}

/**
 * A real exFAT image mounted through FUSE (no hard links, no xattrs, no symlinks, 2 s mtimes); its
 * unmount is pushed onto `cleanups`.
 */
export function mountExfat(cleanups: (() => void)[], size = '64M'): string {
  const dir = tmpdir('exfat-')
  const img = path.join(dir, 'disk.img')
  const mnt = path.join(dir, 'mnt')
  fs.mkdirSync(mnt)
  execFileSync('truncate', ['-s', size, img])
  execFileSync('mkfs.exfat', [img], { stdio: 'ignore' })
  const loop = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim()
  execFileSync('mount.exfat-fuse', [loop, mnt], { stdio: 'ignore' })
  cleanups.push(() => {
    spawnSync('umount', [mnt])
    spawnSync('losetup', ['-d', loop])
  })
  return mnt
}

/** Changes one byte of a file and puts its mtime back (what bit rot looks like). */
export function flipByte(file: string, at = 1) {
  const st = fs.statSync(file)
  const fd = fs.openSync(file, 'r+')
  const b = Buffer.alloc(1)
  fs.readSync(fd, b, 0, 1, at)
  b[0] ^= 0x40
  fs.writeSync(fd, b, 0, 1, at)
  fs.closeSync(fd)
  fs.utimesSync(file, st.atime, st.mtime)
}

/** A small deterministic PRNG (mulberry32), so a failure can be replayed from its seed. */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
