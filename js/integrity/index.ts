/**
 * Integrity: checksum reports of folders (the original service's format),
 * verification against them, verification of a backup folder, and the
 * comparison of several servers' reports. Hashing, walking, report
 * streaming and comparing are native; keys, signatures, configs, file
 * naming and SSH are here.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { ConfigError } from '../errors'
import { now } from '../clock'
import {
  call,
  fromNative,
  native,
  type BindingBackupVerifyResult,
  type BindingChecksumRun,
  type BindingCompareResult,
  type BindingProgress,
  type BindingVerifyResult,
  type BindingVerifyStatus,
} from '../native'
import { latestReport } from './reports'
import { fetchLatestReports, parseSshUrl } from './ssh'
import type { SshOptions } from './ssh'

export type { SshOptions } from './ssh'

export const ALGORITHMS = ['sha256', 'md5', 'blake3', 'sha512', 'sha3-512', 'xxh3'] as const
export type Algorithm = (typeof ALGORITHMS)[number]
export type ReportFormat = 'json' | 'sha256sum' | 'b3sum'

export function parseAlgos(list: string | string[] | undefined, fallback: Algorithm[] = ['sha256', 'md5']): Algorithm[] {
  if (list === undefined) return fallback
  const names = (Array.isArray(list) ? list : list.split(',')).map((a) => a.trim().toLowerCase()).filter(Boolean)
  if (!names.length) throw new ConfigError(`--algo: give one or more of ${ALGORITHMS.join(', ')}, comma-separated`)
  for (const n of names) {
    if (!(ALGORITHMS as readonly string[]).includes(n)) {
      throw new ConfigError(`--algo: unknown algorithm ${JSON.stringify(n)}; use ${ALGORITHMS.join(', ')}`)
    }
  }
  return [...new Set(names)] as Algorithm[]
}

// ---------------------------------------------------------------- keys

/** `backup keygen`: an Ed25519 key pair, `<prefix>.key` (PKCS#8 PEM, mode 600) and `<prefix>.pub` (SPKI PEM). */
export function keygen(prefix: string, opts: { force?: boolean } = {}): { privateKey: string; publicKey: string } {
  const priv = `${prefix}.key`
  const pub = `${prefix}.pub`
  for (const f of [priv, pub]) {
    if (fs.existsSync(f) && !opts.force) throw new ConfigError(`${f} exists; choose another name or pass --force to replace it`)
  }
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519')
  fs.writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
  fs.chmodSync(priv, 0o600)
  fs.writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }))
  return { privateKey: path.resolve(priv), publicKey: path.resolve(pub) }
}

function loadPrivateKey(file: string): crypto.KeyObject {
  let key: crypto.KeyObject
  try {
    key = crypto.createPrivateKey(fs.readFileSync(file))
  } catch (e) {
    throw new ConfigError(`--sign-key ${file}: cannot read an Ed25519 private key (${(e as Error).message}); make one with \`backup keygen\``)
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new ConfigError(`--sign-key ${file}: an ${key.asymmetricKeyType} key; an Ed25519 key is needed (\`backup keygen\`)`)
  return key
}

/** The raw 32 bytes of an Ed25519 public key file (PEM/SPKI, or a private key file). */
export function rawPublicKey(file: string): Buffer {
  let key: crypto.KeyObject
  try {
    const text = fs.readFileSync(file)
    key = text.includes('PRIVATE KEY') ? crypto.createPublicKey(crypto.createPrivateKey(text)) : crypto.createPublicKey(text)
  } catch (e) {
    throw new ConfigError(`--pubkey ${file}: cannot read an Ed25519 public key (${(e as Error).message})`)
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new ConfigError(`--pubkey ${file}: not an Ed25519 key`)
  const jwk = key.export({ format: 'jwk' }) as { x: string }
  return Buffer.from(jwk.x, 'base64url')
}

// ---------------------------------------------------------------- checksum

export interface ChecksumGroup {
  name: string
  path: string
}

export interface ChecksumConfig {
  groups: ChecksumGroup[]
  output_dir: string
}

/** Reads a checksum config: `{ "groups": [{ "name", "path" }], "output_dir" }` (paths relative to the file). */
export function loadChecksumConfig(file: string): ChecksumConfig {
  let raw: unknown
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    throw new ConfigError(`${file}: cannot read the checksum config (${(e as Error).message}); give folders as arguments or a config with groups and output_dir`)
  }
  const base = path.dirname(path.resolve(file))
  const o = raw as Record<string, unknown>
  if (!o || typeof o !== 'object' || !Array.isArray(o.groups) || o.groups.length === 0) {
    throw new ConfigError(`${file}: "groups" must be a non-empty list of {"name": …, "path": …}`)
  }
  if (typeof o.output_dir !== 'string' || !o.output_dir) throw new ConfigError(`${file}: "output_dir" must name the folder the reports go to`)
  const seen = new Set<string>()
  const groups = o.groups.map((g, i) => {
    const gg = g as Record<string, unknown>
    if (typeof gg?.name !== 'string' || !/^[\w.-]+$/.test(gg.name)) {
      throw new ConfigError(`${file}: groups[${i}].name must be a name of letters, digits, ".", "_" or "-"`)
    }
    if (typeof gg.path !== 'string' || !gg.path) throw new ConfigError(`${file}: groups[${i}].path must be a folder`)
    if (seen.has(gg.name)) throw new ConfigError(`${file}: groups[${i}].name ${JSON.stringify(gg.name)} is used twice`)
    seen.add(gg.name)
    return { name: gg.name, path: path.resolve(base, gg.path.replace(/^~(?=$|\/)/, os.homedir())) }
  })
  return { groups, output_dir: path.resolve(base, o.output_dir.replace(/^~(?=$|\/)/, os.homedir())) }
}

export interface ChecksumOptions {
  algos?: Algorithm[]
  threads?: number
  format?: ReportFormat
  /** Ed25519 private key file: adds `signature_ed25519` (of the SHA3-512 digest of `data`). */
  signKey?: string
  onProgress?: (p: BindingProgress) => void
  signal?: AbortSignal
  /** Unix time recorded as `start_timestamp` (default: now); the report name uses the same second. */
  startTimestamp?: number
  /** Folder for the unfinished report (default: beside it); same file system as `out`. */
  tmpDir?: string
}

export interface ChecksumResult {
  group: string
  root: string
  /** The report file written. */
  report: string
  format: ReportFormat
  algorithms: Algorithm[]
  files: number
  bytes: number
  errors: { path: string; error: string }[]
  workTime: number
  /** SHA3-512 hex of the report data (json format). */
  digest: string | null
  signed: boolean
}

/** Checksums one folder into the report file `out`. */
export async function checksumFolder(root: string, group: string, out: string, opts: ChecksumOptions = {}): Promise<ChecksumResult> {
  const algos = opts.algos ?? ['sha256', 'md5']
  const format = opts.format ?? 'json'
  if (format === 'sha256sum' && !algos.includes('sha256')) throw new ConfigError('--format sha256sum needs sha256 in --algo')
  if (format === 'b3sum' && !algos.includes('blake3')) throw new ConfigError('--format b3sum needs blake3 in --algo')
  const key = opts.signKey ? loadPrivateKey(opts.signKey) : undefined
  if (key && format !== 'json') throw new ConfigError('--sign-key works with --format json (check-line formats have no place for a signature)')
  const abs = path.resolve(root)
  if (!fs.statSync(abs, { throwIfNoEntry: false })?.isDirectory()) throw new ConfigError(`${abs} is not a folder to checksum`)
  const target = path.resolve(out)
  fs.mkdirSync(path.dirname(target), { recursive: true })
  const tmp = opts.tmpDir ? path.join(opts.tmpDir, `${path.basename(target)}.${process.pid}`) : `${target}.tmp-${process.pid}`
  const start = opts.startTimestamp ?? Date.now() / 1000
  let r: BindingChecksumRun
  try {
    r = await native().checksumFolder(abs, algos, opts.threads ?? os.availableParallelism(), group, start, format, tmp, opts.onProgress, opts.signal)
    let extra = ''
    if (key && r.digest) {
      const sig = crypto.sign(null, Buffer.from(r.digest, 'hex'), key).toString('hex')
      const pub = crypto.createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString()
      extra = `,"signature_ed25519":${JSON.stringify(sig)},"public_key":${JSON.stringify(pub)}`
    }
    native().finishReport(tmp, target, extra, format === 'json')
  } catch (e) {
    fs.rmSync(tmp, { force: true })
    throw fromNative(e)
  }
  return { group, root: abs, report: target, format, algorithms: algos, files: r.files, bytes: r.bytes, errors: r.errors, workTime: r.workTime, digest: r.digest, signed: !!key }
}

/**
 * Checksums every group of a config as the original service does:
 * `<output_dir>/<group>/all_<unix-ts>.json` per group and `<output_dir>/groups.json`,
 * a list `[{name, path, …}]` as the original checker reads it. A group folder
 * holds nothing but `all_<ts>.json` reports (that checker takes the newest
 * by the number in every file name there): unfinished reports are written
 * in `<output_dir>/.tmp-<random>/` and renamed into place. `groups.json` lists
 * the config's groups, as the original writes it; with `keepOtherGroups`
 * (folders given on the command line) groups listed by an earlier run stay.
 */
export async function checksumGroups(cfg: ChecksumConfig, opts: ChecksumOptions = {}, keepOtherGroups = false): Promise<ChecksumResult[]> {
  const results: ChecksumResult[] = []
  fs.mkdirSync(cfg.output_dir, { recursive: true })
  const tmpDir = fs.mkdtempSync(path.join(cfg.output_dir, '.tmp-'))
  try {
    for (const g of cfg.groups) {
      const ts = Math.floor(Date.now() / 1000)
      const out = path.join(cfg.output_dir, g.name, `all_${ts}.json`)
      results.push(await checksumFolder(g.path, g.name, out, { ...opts, startTimestamp: ts, tmpDir }))
    }
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true })
  }
  const index = path.join(cfg.output_dir, 'groups.json')
  const tmp = `${index}.tmp-${process.pid}`
  const listed = keepOtherGroups ? readGroupsIndex(index).filter((g) => !results.some((r) => r.group === g.name)) : []
  const groups = [
    ...listed,
    ...results.map((r) => ({ name: r.group, path: r.root, latest: path.relative(cfg.output_dir, r.report), files: r.files, errors: r.errors.length, work_time: r.workTime })),
  ]
  fs.writeFileSync(tmp, JSON.stringify(groups, null, 4) + '\n')
  fs.renameSync(tmp, index)
  return results
}

/**
 * The groups of an output folder's `groups.json`: the original's list
 * `[{name, path}]`, or the `{"groups": […]}` our earlier versions wrote.
 * Missing or unreadable: none.
 */
export function readGroupsIndex(file: string): { name: string; path: string }[] {
  let raw: unknown
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch {
    return []
  }
  const list = Array.isArray(raw) ? raw : (raw as { groups?: unknown })?.groups
  if (!Array.isArray(list)) return []
  return list.filter((g): g is { name: string; path: string } => typeof g?.name === 'string' && typeof g?.path === 'string')
}

// ---------------------------------------------------------------- verify

/** The verdict on one path: `OK`, `FAILED`, `CORRUPT`, `MISSING`, `NEW`, `ERROR`, `OVERWRITTEN` (`verify --backup`). */
export type VerifyStatus = BindingVerifyStatus

/** What `verify REPORT` found; fields documented in `binding.d.ts`. */
export type VerifyResult = BindingVerifyResult

export interface VerifyOptions {
  root?: string
  /** Public key file: the report must carry a valid Ed25519 signature by it. */
  pubkey?: string
  incremental?: boolean
  threads?: number
  /** For check-line reports whose digest length is ambiguous (64 hex: sha256 or blake3). */
  algo?: Algorithm
  /** List every path in `results` (default: only the problems; `counts` always covers all). */
  all?: boolean
  onProgress?: (p: BindingProgress) => void
  signal?: AbortSignal
}

/**
 * `backup verify REPORT`: the report is checked (digest, signature) before any file is read. A present
 * Ed25519 signature is always checked: against `pubkey` if given, else against the key embedded in the report.
 */
export async function verify(report: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  if (!fs.existsSync(report)) throw new ConfigError(`report ${report} does not exist`)
  const publicKey = opts.pubkey ? rawPublicKey(opts.pubkey) : undefined
  return call(
    native().verifyReport(
      {
        report: path.resolve(report),
        root: opts.root ? path.resolve(opts.root) : undefined,
        incremental: !!opts.incremental,
        threads: opts.threads ?? os.availableParallelism(),
        algo: opts.algo,
        publicKey,
        all: !!opts.all,
      },
      opts.onProgress,
      opts.signal,
    ),
  )
}

/** What `verify --backup` found; fields documented in `binding.d.ts`. */
export type BackupVerifyResult = BindingBackupVerifyResult

/** What `verifyBackup` is asked besides the folder. */
export interface VerifyBackupOptions {
  /** Repair corrupt mirror files from this source folder. */
  source?: string
  threads?: number
  /** Check only this share (0 < scrub ≤ 1) of the stored versions, the least recently verified first (`--scrub 10%`). */
  scrub?: number
  /** Check only this increment's versions, not the mirror (`--increment NAME`). */
  increment?: string
  /** "Now" in ms since the epoch, for the recorded "last verified" times (default: `now()`, which honours `AXIOMATIC_NOW`). */
  nowMs?: number
  onProgress?: (p: BindingProgress) => void
  /** Stops a scrub between chunks; what was checked stays recorded. */
  signal?: AbortSignal
}

/**
 * `backup verify --dst DST [--repair --source SRC] [--scrub 10%] [--increment NAME]`. Records in
 * `.axiomatic/scrub.json` when each version was last verified and what corruption was found.
 */
export async function verifyBackup(dst: string, opts: VerifyBackupOptions = {}): Promise<BackupVerifyResult> {
  if (opts.scrub !== undefined && !(opts.scrub > 0 && opts.scrub <= 1))
    throw new ConfigError(`scrub must be a share from 0 (excluded) to 1, e.g. 0.1 for --scrub 10%, got ${opts.scrub}`)
  return call(
    native().verifyBackup(
      path.resolve(dst),
      {
        source: opts.source ? path.resolve(opts.source) : undefined,
        threads: opts.threads ?? os.availableParallelism(),
        scrub: opts.scrub,
        increment: opts.increment,
        nowMs: opts.nowMs ?? now(),
      },
      opts.onProgress,
      opts.signal,
    ),
  )
}

// ---------------------------------------------------------------- compare

/** What `compare` found, per group; fields documented in `binding.d.ts`. */
export type CompareResult = BindingCompareResult

/** The newest `all_<ts>.json` of a folder, if any. */
function latestIn(dir: string): string | undefined {
  const name = latestReport(fs.readdirSync(dir))
  return name ? path.join(dir, name) : undefined
}

/** A report file, a group folder (latest report), or an output folder (latest report of each group). */
export function localReports(source: string): string[] {
  const st = fs.statSync(source, { throwIfNoEntry: false })
  if (!st) throw new ConfigError(`${source}: no such report or folder`)
  if (st.isFile()) return [path.resolve(source)]
  const own = latestIn(source)
  if (own) return [path.resolve(own)]
  const found = fs
    .readdirSync(source, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => {
      const l = latestIn(path.join(source, e.name))
      return l ? [path.resolve(l)] : []
    })
  if (!found.length) throw new ConfigError(`${source}: no all_<timestamp>.json reports in it or in its group folders`)
  return found
}

/** `backup compare SOURCE…`. SSH sources are fetched into a temp folder first. */
export async function compare(sources: string[], opts: SshOptions = {}): Promise<CompareResult> {
  if (sources.length < 1) throw new ConfigError('compare needs reports: files, output folders, or ssh://user@host/path')
  const inputs: { server: string; path: string }[] = []
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'axiomatic-compare-'))
  try {
    for (const s of sources) {
      if (s.startsWith('ssh://')) {
        const url = parseSshUrl(s)
        const files = await fetchLatestReports(url, path.join(tmp, String(inputs.length)), opts)
        for (const f of files) inputs.push({ server: url.label, path: f })
      } else {
        for (const f of localReports(s)) inputs.push({ server: s, path: f })
      }
    }
    return await call(native().compareReports(inputs))
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

/** Writes `lost_files_<date>.json` and `mismatch_sum_<date>.json` into `dir`; returns their paths. */
export function writeCompareFiles(r: CompareResult, dir: string, now = new Date()): { lost: string; mismatch: string } {
  fs.mkdirSync(dir, { recursive: true })
  const p = (n: number) => String(n).padStart(2, '0')
  const date = `${now.getFullYear()}-${p(now.getMonth() + 1)}-${p(now.getDate())}_${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`
  const lost = path.join(dir, `lost_files_${date}.json`)
  const mismatch = path.join(dir, `mismatch_sum_${date}.json`)
  const servers = (g: CompareResult['groups'][number]) => Object.fromEntries(g.servers.map((s) => [s.server, { work_time: s.workTime, files: s.files, report: s.report }]))
  fs.writeFileSync(lost, JSON.stringify(Object.fromEntries(r.groups.map((g) => [g.group, { servers: servers(g), lost_files: g.lostFiles }])), null, 2) + '\n')
  fs.writeFileSync(mismatch, JSON.stringify(Object.fromEntries(r.groups.map((g) => [g.group, { servers: servers(g), mismatched: g.mismatched }])), null, 2) + '\n')
  return { lost, mismatch }
}
