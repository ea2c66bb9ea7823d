/**
 * `backup repair`: heals a fleet of servers from their checksum reports.
 * For each file of a group the good version is the (sha256, md5) a strict
 * majority of the servers with a report for that group agree on; servers
 * that lack it or hold another version get it copied from one that has it.
 * The source is re-hashed where it is before it is sent, the copy is hashed
 * where it lands, then renamed into place; the replaced copy is kept (hard
 * link or copy into a quarantine folder, with a note). Without `apply`
 * nothing on any server changes. See README "backup repair" and
 * docs/design.md "Repairing a fleet" for the rules and their limits.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import { BackupError, ConfigError } from '../errors'
import { localReports } from './index'
import { LocalSide, SshSide, type Digests, type Side } from './sides'
import { parseSshUrl, isPermanent, type SshOptions } from './ssh'

export interface RepairOptions extends SshOptions {
  /** Only this group. */
  group?: string
  /** Carry the plan out (default: only plan, change nothing). */
  apply?: boolean
  /** Where a replaced copy is kept on its server (default `<output dir>/repair/quarantine-<stamp>`); relative: to the output dir. */
  quarantine?: string
  /** Total transfer rate, bytes per second (default unlimited). */
  bwlimit?: number
  /** Transfers at once per server (default 2). */
  parallel?: number
  /** Called after each step of a copy (for a progress display). */
  onStep?: (c: RepairCopy) => void
  /** The time used for names (quarantine, journal) and new reports (tests). */
  now?: Date
}

/** One copy of the plan: the good version of `path` from `from` to `to`. */
export interface RepairCopy {
  group: string
  /** Relative to the group's root on `to`. */
  path: string
  from: string
  to: string
  /** `missing`: `to` has no copy; `damaged`: `to` has a minority version (moved to quarantine). */
  reason: 'missing' | 'damaged'
  bytes: number
  sha256: string
  md5: string | null
  /** `planned` (no --apply), `repaired`, `failed` (see `error`; nothing changed for it). */
  status: 'planned' | 'repaired' | 'failed'
  /** Where the replaced copy was kept on `to`. */
  quarantined?: string
  error?: string
}

/** A file no copy is made for: no strict majority, or a check before copying failed. */
export interface RepairUndecided {
  group: string
  path: string
  reason: string
  /** server → sha256 of its copy, or null where it has none. */
  versions: Record<string, string | null>
}

export interface RepairResult {
  applied: boolean
  groups: { group: string; servers: { server: string; report: string; root: string }[]; files: number }[]
  copies: RepairCopy[]
  undecided: RepairUndecided[]
  /** Bytes the plan copies (planned) or copied (applied). */
  bytes: number
  /** New reports written after the repair (one per touched server and group). */
  reports: { server: string; group: string; report: string }[]
  /** The journal of each touched server (`--apply`). */
  journals: { server: string; journal: string }[]
  warnings: { server?: string; path?: string; message: string }[]
}

// ---------------------------------------------------------------- reports

/** One file of a report: its key in the report, its digests. */
interface Entry {
  key: string
  rel: string
  sha256: string
  md5: string | null
  sums: Record<string, string>
  size?: number
}

interface ParsedReport {
  /** As shown: the local path, or `server:path`. */
  file: string
  /** The report's path on its server. */
  path: string
  env: Record<string, unknown>
  data: Record<string, unknown>
  group: string
  root: string
  /** NFC relative path → entry. */
  files: Map<string, Entry>
  /** NFC relative paths the report could not read. */
  errors: Set<string>
  /** NFC relative paths the report records as symlinks (ours): never replaced by a file. */
  links: Set<string>
  /** The report has relative keys (`./a`) instead of absolute ones. */
  relativeKeys: boolean
  /** Ours (`algorithms` listed) or the original service's. */
  ours: boolean
}

/** The path relative to `root` of a report key (the same rule as the core's `relative_to_root`). */
export function relativeToRoot(p: string, root: string): string {
  const base = root.replace(/\/+$/, '')
  if (root.startsWith('/')) {
    if (p === root || p === base) return '.'
    if (p.startsWith(base + '/')) {
      const rest = p.slice(base.length + 1).replace(/^\/+/, '')
      if (rest) return rest
    }
  }
  while (p.startsWith('./')) p = p.slice(2).replace(/^\/+/, '')
  return p
}

/** Why a relative path from a report may not be used, or null: absolute, `..`, `.`, empty parts, NUL. */
export function unsafeRel(rel: string): string | null {
  if (rel.includes('\0')) return 'holds a NUL byte'
  if (rel.startsWith('/')) return 'is absolute (outside the group root)'
  const parts = rel.split('/')
  if (parts.some((x) => x === '..')) return 'climbs out with ".."'
  if (parts.some((x) => x === '' || x === '.')) return 'has an empty or "." part'
  return null
}

const strip = (h: unknown) => (typeof h === 'string' ? h.replace(/^\\/, '').toLowerCase() : undefined)

/** Parses a report envelope, checks its SHA3-512 (and an embedded Ed25519 signature), indexes its files. */
export function parseReport(text: string, where: string, at = where): ParsedReport {
  let env: Record<string, unknown>
  let data: Record<string, unknown>
  try {
    env = JSON.parse(text)
    if (typeof env?.data !== 'string') throw new Error('no "data" string (a check-line report has no root_data: use JSON reports)')
    data = JSON.parse(env.data)
  } catch (e) {
    throw new BackupError('ECORRUPT', `report ${where}: cannot be read (${(e as Error).message})`)
  }
  const digest = crypto.createHash('sha3-512').update(env.data as string).digest('hex')
  if (env.signature !== digest) throw new BackupError('ECORRUPT', `report ${where}: its signature does not match its data (altered or damaged); it is not used`)
  if (typeof env.signature_ed25519 === 'string') {
    let ok = false
    try {
      ok = crypto.verify(null, Buffer.from(digest, 'hex'), crypto.createPublicKey(String(env.public_key)), Buffer.from(env.signature_ed25519, 'hex'))
    } catch {
      ok = false
    }
    if (!ok) throw new BackupError('ECORRUPT', `report ${where}: its Ed25519 signature does not match the public key embedded in it; it is not used`)
  }
  const root = data.root_data
  const group = data.group
  if (typeof root !== 'string' || !root.startsWith('/')) throw new BackupError('ECORRUPT', `report ${where}: "root_data" must be an absolute folder`)
  if (typeof group !== 'string' || !group) throw new BackupError('ECORRUPT', `report ${where}: no "group"`)
  const sums = (data.checksums ?? {}) as Record<string, Record<string, unknown>>
  const sizes = (data.sizes ?? {}) as Record<string, unknown>
  const files = new Map<string, Entry>()
  let relativeKeys = false
  for (const [key, v] of Object.entries(sums)) {
    if (!key.startsWith('/')) relativeKeys = true
    const rel = relativeToRoot(key, root)
    const sha256 = strip(v?.sha256)
    if (!sha256) throw new BackupError('ECORRUPT', `report ${where}: ${JSON.stringify(key)} has no sha256; repair needs sha256 in every report (checksum --algo sha256,md5)`)
    const all: Record<string, string> = {}
    for (const [a, h] of Object.entries(v ?? {})) if (typeof h === 'string') all[a] = strip(h)!
    files.set(rel.normalize('NFC'), { key, rel, sha256, md5: strip(v?.md5) ?? null, sums: all, size: typeof sizes[key] === 'number' ? (sizes[key] as number) : undefined })
  }
  const errors = new Set(Object.keys((data.errors ?? {}) as object).map((k) => relativeToRoot(k, root).normalize('NFC')))
  const links = new Set(Object.keys((data.symlinks ?? {}) as object).map((k) => relativeToRoot(k, root).normalize('NFC')))
  return { file: where, path: at, links, env, data, group, root, files, errors, relativeKeys, ours: Array.isArray(data.algorithms) }
}

// ---------------------------------------------------------------- servers

interface Server {
  label: string
  side: Side
  /** The output folder: journal, default quarantine. */
  outDir: string
  reports: ParsedReport[]
  /** Remote path or local path of each report file. */
}

const join = (side: Side, ...p: string[]) => (side.remote ? path.posix.join(...p) : path.join(...p))
const dirname = (side: Side, p: string) => (side.remote ? path.posix.dirname(p) : path.dirname(p))

async function openServer(source: string, opts: RepairOptions): Promise<Server> {
  if (source.startsWith('ssh://')) {
    const url = parseSshUrl(source)
    const side = new SshSide(url, opts)
    const retries = opts.retries ?? 2
    let files: string[] = []
    for (let attempt = 0; ; attempt++) {
      try {
        files = await side.latestReports((opts.timeoutMs ?? 15000) * 4)
        break
      } catch (e) {
        side.close()
        if (isPermanent(e) || attempt >= retries) throw e
        await sleep(500 * 2 ** attempt)
      }
    }
    const reports = []
    for (const f of files) reports.push(parseReport(await side.readText(f), `${url.label}:${f}`, f))
    return { label: url.label, side, outDir: url.path, reports }
  }
  const side = new LocalSide(source)
  const files = localReports(source)
  const st = fs.statSync(source)
  const outDir = st.isFile()
    ? path.dirname(path.dirname(path.resolve(source)))
    : files.length === 1 && path.dirname(files[0]) === path.resolve(source)
      ? path.dirname(path.resolve(source))
      : path.resolve(source)
  return { label: source, side, outDir, reports: files.map((f) => parseReport(fs.readFileSync(f, 'utf8'), f)) }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// ---------------------------------------------------------------- the plan

interface Holder {
  server: Server
  report: ParsedReport
  entry?: Entry
  unreadable: boolean
  link?: boolean
}

interface PlanItem {
  copy: RepairCopy
  group: string
  nfc: string
  target: Holder
  /** Holders of the good version, in order of preference. */
  sources: Holder[]
  good: Entry
}

function stampOf(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0')
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}_${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`
}

/** The majority decision for every file of every group: copies to make and undecided files. */
function decide(servers: Server[], groupFilter: string | undefined, result: RepairResult): PlanItem[] {
  const byGroup = new Map<string, Holder[]>()
  for (const s of servers) {
    for (const r of s.reports) {
      const list = byGroup.get(r.group) ?? []
      if (list.some((h) => h.server === s)) {
        result.warnings.push({ server: s.label, message: `two reports of group ${r.group}; the one in ${list.find((h) => h.server === s)!.report.file} is used` })
        continue
      }
      list.push({ server: s, report: r, unreadable: false })
      byGroup.set(r.group, list)
    }
  }
  if (groupFilter !== undefined && !byGroup.has(groupFilter)) {
    throw new ConfigError(`--group ${groupFilter}: no report of that group among the sources (groups: ${[...byGroup.keys()].join(', ') || 'none'})`)
  }
  const items: PlanItem[] = []
  for (const [group, holders] of [...byGroup].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (groupFilter !== undefined && group !== groupFilter) continue
    const paths = new Set<string>()
    for (const h of holders) for (const k of h.report.files.keys()) paths.add(k)
    result.groups.push({ group, servers: holders.map((h) => ({ server: h.server.label, report: h.report.file, root: h.report.root })), files: paths.size })
    if (holders.length < 2) {
      result.warnings.push({ server: holders[0].server.label, message: `group ${group}: only one server has a report for it; nothing to compare or repair` })
      continue
    }
    const n = holders.length
    for (const p of [...paths].sort()) {
      const at = holders.map((h) => ({ ...h, entry: h.report.files.get(p), unreadable: h.report.errors.has(p), link: h.report.links.has(p) }))
      const versions = Object.fromEntries(at.map((h) => [h.server.label, h.entry?.sha256 ?? null]))
      const present = at.filter((h) => h.entry)
      if (present.length === n && present.every((h) => h.entry!.sha256 === present[0].entry!.sha256 && h.entry!.md5 === present[0].entry!.md5)) continue
      const undecided = (reason: string) => result.undecided.push({ group, path: present[0]?.entry?.rel ?? p, reason, versions })
      const counts = new Map<string, Holder[]>()
      for (const h of present) counts.set(h.entry!.sha256, [...(counts.get(h.entry!.sha256) ?? []), h])
      const [sha, agree] = [...counts].sort((a, b) => b[1].length - a[1].length)[0]
      if (agree.length * 2 <= n) {
        const parts = [...counts.values()].map((l) => `${l.length} with ${l[0].entry!.sha256.slice(0, 12)}…`)
        if (n - present.length) parts.push(`${n - present.length} without it`)
        undecided(`no strict majority among ${n} servers (${parts.join(', ')})`)
        continue
      }
      const md5s = new Set(agree.map((h) => h.entry!.md5).filter((m) => m !== null))
      if (md5s.size > 1) {
        undecided('the servers that agree on its sha256 disagree on its md5: a report is wrong; check them by hand')
        continue
      }
      const bad = unsafeRel(agree[0].entry!.rel)
      if (bad) {
        undecided(`its path ${bad}; a report's path is never followed there`)
        result.warnings.push({ path: agree[0].entry!.rel, message: `path from the reports ${bad}: not repaired` })
        continue
      }
      const good: Entry = { ...agree[0].entry!, md5: [...md5s][0] ?? null }
      // Sources: local ones first (no network for the read), then in the order given.
      const sources = [...agree].sort((a, b) => Number(a.server.side.remote) - Number(b.server.side.remote))
      for (const t of at) {
        if (t.entry?.sha256 === sha) continue
        if (t.unreadable) {
          undecided(`unreadable on ${t.server.label} when its report was written; left alone there`)
          continue
        }
        if (t.link) {
          undecided(`a symlink on ${t.server.label}; a symlink is never replaced by a file`)
          continue
        }
        const rel = t.entry?.rel ?? good.rel
        const tbad = unsafeRel(rel)
        if (tbad) {
          undecided(`its path on ${t.server.label} ${tbad}; not repaired there`)
          continue
        }
        const copy: RepairCopy = {
          group,
          path: rel,
          from: sources[0].server.label,
          to: t.server.label,
          reason: t.entry ? 'damaged' : 'missing',
          bytes: good.size ?? sources.map((s) => s.entry!.size).find((x) => x !== undefined) ?? 0,
          sha256: good.sha256,
          md5: good.md5,
          status: 'planned',
        }
        items.push({ copy, group, nfc: p, target: t, sources, good })
      }
    }
  }
  return items
}

// ---------------------------------------------------------------- carrying it out

/** A shared token bucket: the total rate of every transfer stays under `rate` bytes/s. */
class Throttle {
  private t0 = Date.now()
  private sent = 0
  constructor(private readonly rate: number) {}
  async take(n: number): Promise<void> {
    const now = Date.now()
    // After an idle spell, do not let a burst catch up on the unused time.
    if (this.t0 + (this.sent / this.rate) * 1000 < now - 1000) {
      this.t0 = now
      this.sent = 0
    }
    this.sent += n
    const due = this.t0 + (this.sent / this.rate) * 1000
    if (due > now) await sleep(due - now)
  }
  stream(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        this.take(chunk.length).then(() => cb(null, chunk), cb)
      },
    })
  }
}

/** At most `n` tasks at once. */
class Limit {
  private active = 0
  private waiting: (() => void)[] = []
  constructor(private readonly n: number) {}
  async run<T>(f: () => Promise<T>): Promise<T> {
    while (this.active >= this.n) await new Promise<void>((r) => this.waiting.push(r))
    this.active++
    try {
      return await f()
    } finally {
      this.active--
      this.waiting.shift()?.()
    }
  }
}

/** A problem with one copy that retrying does not fix (the state on a server is not what the plan assumed). */
class StepRefused extends Error {}

/** The temp name a copy is written to, beside its target; the same on every run, so a rerun removes a leftover. */
export function tempName(target: string, side: Side): string {
  const dir = dirname(side, target)
  return join(side, dir, `.${target.slice(dir.length + 1)}.axiomatic-repair.tmp`)
}

/**
 * Checks that `target` (a file to be written) is inside `root` on its server once symlinks are
 * resolved: the deepest folder of it that exists must resolve to the root or below it.
 */
async function insideRoot(side: Side, root: string, target: string): Promise<boolean> {
  const realRoot = await side.realpath(root)
  let dir = dirname(side, target)
  while (!(await side.stat(dir))) {
    const up = dirname(side, dir)
    if (up === dir) return false
    dir = up
  }
  const real = await side.realpath(dir)
  return real === realRoot || real.startsWith(realRoot.replace(/\/$/, '') + '/')
}

interface Ctx {
  opts: RepairOptions
  stamp: string
  now: Date
  throttle?: Throttle
  /** Copies at once per server, as a target and as a source. */
  limits: Map<Server, Limit>
  sourceLimits: Map<Server, Limit>
  journals: Map<Server, string>
  result: RepairResult
}

async function journal(ctx: Ctx, server: Server, entry: Record<string, unknown>): Promise<void> {
  let file = ctx.journals.get(server)
  if (!file) {
    const dir = join(server.side, server.outDir, 'repair')
    await server.side.mkdirp(dir)
    file = join(server.side, dir, `journal-${ctx.stamp}.jsonl`)
    ctx.journals.set(server, file)
    ctx.result.journals.push({ server: server.label, journal: file })
  }
  await server.side.appendText(file, JSON.stringify({ time: new Date().toISOString(), ...entry }) + '\n')
}

const same = (d: Digests, e: { sha256: string; md5: string | null }) => d.sha256 === e.sha256 && (e.md5 === null || d.md5 === e.md5)

/** One copy, with its checks; throws StepRefused (not retried) or another error (retried). */
async function carryOut(ctx: Ctx, item: PlanItem): Promise<void> {
  const { copy, target: t, good } = item
  const tside = t.server.side
  const root = t.report.root
  const dest = join(tside, root, copy.path)
  if (!(await insideRoot(tside, root, dest))) throw new StepRefused(`${dest} resolves outside the group root ${root} on ${copy.to} (a symlinked folder?); not written`)
  const tmp = tempName(dest, tside)
  // A leftover of an interrupted run is never a file anyone uses: it goes first.
  await tside.unlink(tmp)
  const now = await tside.stat(dest)
  if (now && now.kind !== 'file') throw new StepRefused(`${dest} on ${copy.to} is now a ${now.kind}, not a file; left alone`)
  if (now) {
    const d = await tside.hash(dest)
    if (same(d, good)) {
      // Done already (a rerun after the rename, or someone else fixed it).
      await journal(ctx, t.server, { step: 'already-good', group: copy.group, path: copy.path })
      return
    }
    if (copy.reason === 'missing') throw new StepRefused(`${dest} appeared on ${copy.to} since its report was written (sha256 ${d.sha256}); left alone`)
    if (d.sha256 !== t.entry!.sha256) throw new StepRefused(`${dest} on ${copy.to} changed since its report was written (sha256 ${d.sha256}, report ${t.entry!.sha256}); left alone`)
  } else if (copy.reason === 'damaged') {
    // The damaged copy vanished since the report: it is now simply missing.
  }
  // The source: the first holder of the good version whose copy still matches its report.
  let src: Holder | undefined
  let srcPath = ''
  let srcStat = null
  const refused: string[] = []
  for (const s of item.sources) {
    const sp = join(s.server.side, s.report.root, s.entry!.rel)
    try {
      if (unsafeRel(s.entry!.rel) || !(await insideRoot(s.server.side, s.report.root, sp))) {
        refused.push(`${s.server.label}: outside the group root`)
        continue
      }
      const st = await s.server.side.stat(sp)
      if (st?.kind !== 'file') {
        refused.push(`${s.server.label}: ${st ? `a ${st.kind}` : 'gone'}`)
        continue
      }
      const d = await s.server.side.hash(sp)
      if (!same(d, good)) {
        refused.push(`${s.server.label}: its copy no longer matches its report (sha256 ${d.sha256})`)
        continue
      }
      src = s
      srcPath = sp
      srcStat = st
      break
    } catch (e) {
      refused.push(`${s.server.label}: ${(e as Error).message}`)
    }
  }
  if (!src || !srcStat) throw new StepRefused(`no source copy still matches the reports (${refused.join('; ')})`)
  copy.from = src.server.label
  await journal(ctx, t.server, { step: 'copy', group: copy.group, path: copy.path, from: copy.from, sha256: good.sha256, md5: good.md5, temp: tmp })
  await tside.mkdirp(dirname(tside, dest))
  try {
    await ctx.sourceLimits.get(src.server)!.run(async () => {
      const input = src.server.side.read(srcPath)
      if (ctx.throttle) await pipeline(input, ctx.throttle.stream(), tside.create(tmp))
      else await pipeline(input, tside.create(tmp))
    })
    const arrived = await tside.hash(tmp)
    if (!same(arrived, good)) throw new Error(`the copy arrived as sha256 ${arrived.sha256}, not ${good.sha256}`)
    await tside.chmod(tmp, srcStat.mode)
    await tside.utimes(tmp, srcStat.atime, srcStat.mtime)
    if (now) {
      // The replaced copy is kept: a second name in the quarantine (a copy across file systems), with a note.
      const qbase = ctx.opts.quarantine
        ? join(tside, tside.remote ? path.posix.resolve(t.server.outDir, ctx.opts.quarantine) : path.resolve(t.server.outDir, ctx.opts.quarantine), ctx.stamp)
        : join(tside, t.server.outDir, 'repair', `quarantine-${ctx.stamp}`)
      let q = join(tside, qbase, copy.group, copy.path)
      await tside.mkdirp(dirname(tside, q))
      // Neither the kept copy nor its note may take the name of something already there.
      for (let i = 1; (await tside.stat(q)) || (await tside.stat(`${q}.why.json`)); i++) q = join(tside, qbase, copy.group, `${copy.path}.${i}`)
      const note = {
        path: copy.path,
        group: copy.group,
        server: copy.to,
        was: dest,
        why: 'its content differs from the version a strict majority of the servers agree on',
        expected: { sha256: good.sha256, md5: good.md5 },
        actual: { sha256: t.entry!.sha256, md5: t.entry!.md5 },
        replaced_from: copy.from,
        time: new Date().toISOString(),
      }
      await tside.writeText(`${q}.why.json`, JSON.stringify(note, null, 2) + '\n')
      await tside.keep(dest, q)
      copy.quarantined = q
      await journal(ctx, t.server, { step: 'quarantined', group: copy.group, path: copy.path, quarantine: q })
    }
    await tside.rename(tmp, dest)
  } catch (e) {
    await tside.unlink(tmp).catch(() => {})
    throw e
  }
  await journal(ctx, t.server, { step: 'done', group: copy.group, path: copy.path, from: copy.from })
}

/** Runs one copy with retries (backoff 0.5 s, 1 s, 2 s…) for transient failures. */
async function runCopy(ctx: Ctx, item: PlanItem): Promise<void> {
  const retries = ctx.opts.retries ?? 2
  for (let attempt = 0; ; attempt++) {
    try {
      await carryOut(ctx, item)
      item.copy.status = 'repaired'
      break
    } catch (e) {
      const final = e instanceof StepRefused || isPermanent(e) || attempt >= retries
      if (!final) {
        await sleep(500 * 2 ** attempt)
        continue
      }
      item.copy.status = 'failed'
      item.copy.error = (e as Error).message
      await journal(ctx, item.target.server, { step: 'failed', group: item.copy.group, path: item.copy.path, error: item.copy.error }).catch(() => {})
      break
    }
  }
  ctx.opts.onStep?.(item.copy)
}

/** Marks an integer too large for a double while a report is rewritten (a path never holds NUL). */
const BIG = '\u0000int:'

/**
 * `JSON.parse` that keeps integers beyond 2^53 exactly (our reports' `stat` holds nanosecond times):
 * such a number becomes a marked string, which `stringifyExact` writes back as the same digits.
 */
export function parseExact(text: string): unknown {
  if (text.includes('\\u0000int:')) return JSON.parse(text)
  let out = ''
  let from = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 34) {
      // A string: skip to its closing quote.
      for (i++; i < text.length && text.charCodeAt(i) !== 34; i++) if (text.charCodeAt(i) === 92) i++
    } else if (c === 45 || (c >= 48 && c <= 57)) {
      let j = i + 1
      while (j < text.length && /[0-9.eE+-]/.test(text[j])) j++
      const tok = text.slice(i, j)
      if (/^-?\d{16,}$/.test(tok) && !Number.isSafeInteger(Number(tok))) {
        out += text.slice(from, i) + JSON.stringify(BIG + tok)
        from = j
      }
      i = j - 1
    }
  }
  return JSON.parse(out + text.slice(from))
}

/** `JSON.stringify` writing the marked integers of `parseExact` back as numbers. */
export function stringifyExact(v: unknown): string {
  return JSON.stringify(v).replace(/"\\u0000int:(-?\d+)"/g, '$1')
}

/** The report a repair leaves behind: the old one with the repaired files' entries, a newer `all_<ts>.json`. */
async function writeNewReport(ctx: Ctx, server: Server, report: ParsedReport, done: PlanItem[]): Promise<void> {
  // Parsed again, exactly: the rewritten report keeps every other entry as it was.
  const data = parseExact(report.env.data as string) as Record<string, unknown>
  const checksums = data.checksums as Record<string, Record<string, string>>
  const algos = Array.isArray(data.algorithms)
    ? (data.algorithms as string[])
    : [...new Set(Object.values(checksums).flatMap((v) => Object.keys(v)))].filter(Boolean)
  const files = Array.isArray(data.files) ? (data.files as string[]) : undefined
  for (const it of done) {
    const key = it.target.entry?.key ?? (report.relativeKeys ? `./${it.copy.path}` : `${report.root.replace(/\/+$/, '')}/${it.copy.path}`)
    const src = it.sources.find((s) => s.server.label === it.copy.from) ?? it.sources[0]
    const entry: Record<string, string> = {}
    for (const a of algos) {
      const v = a === 'sha256' ? it.good.sha256 : a === 'md5' ? it.good.md5 : src.entry!.sums[a]
      if (!v) {
        ctx.result.warnings.push({
          server: server.label,
          message: `group ${report.group}: no ${a} digest of ${it.copy.path} in the source's report; no new report written, run \`backup checksum\` there`,
        })
        return
      }
      // The original service keeps coreutils' escape mark of a name with a backslash or a newline.
      entry[a] = !report.ours && /[\\\n]/.test(key) ? `\\${v}` : v
    }
    checksums[key] = entry
    if (files && !files.includes(key)) files.push(key)
    const errs = data.errors as Record<string, unknown> | undefined
    if (errs) delete errs[key]
    const size = it.copy.bytes
    if (data.sizes && typeof data.sizes === 'object') (data.sizes as Record<string, number>)[key] = size
    if (data.stat && typeof data.stat === 'object') delete (data.stat as Record<string, unknown>)[key]
    if (data.mtimes && typeof data.mtimes === 'object') delete (data.mtimes as Record<string, unknown>)[key]
  }
  const base = path.posix.basename(report.path)
  const m = /^all_(\d+)\.json$/.exec(base)
  const ts = Math.max(Math.floor(ctx.now.getTime() / 1000), m ? Number(m[1]) + 1 : 0)
  data.start_timestamp = typeof data.start_timestamp === 'number' ? ts : String(ts)
  const text = stringifyExact(data)
  const env: Record<string, unknown> = { data: text, signature: crypto.createHash('sha3-512').update(text).digest('hex') }
  if (report.env.signature_ed25519) {
    ctx.result.warnings.push({ server: server.label, message: `group ${report.group}: the new report is not signed (the old one was): sign it again with \`backup checksum --sign-key\`` })
  }
  const dir = dirname(server.side, report.path)
  const name = m ? `all_${ts}.json` : `${base.replace(/\.json$/, '')}.repaired-${ts}.json`
  const out = join(server.side, dir, name)
  // Written beside the output folder and renamed in: a group folder holds nothing but finished reports.
  const tmpDir = join(server.side, server.outDir, 'repair')
  await server.side.mkdirp(tmpDir)
  const tmp = join(server.side, tmpDir, `.report-${ts}.tmp`)
  await server.side.writeText(tmp, JSON.stringify(env) + '\n')
  await server.side.rename(tmp, out)
  ctx.result.reports.push({ server: server.label, group: report.group, report: out })
  await journal(ctx, server, { step: 'report', group: report.group, report: out })
}

/**
 * `backup repair SOURCE…`: plans (and with `apply` carries out) the copies that bring every server to
 * the majority version of each file. See the module comment and README "backup repair".
 */
export async function repair(sources: string[], opts: RepairOptions = {}): Promise<RepairResult> {
  if (sources.length < 2) throw new ConfigError('repair needs the reports of at least two servers (report folders, files, or ssh://user@host/output_dir)')
  if (opts.bwlimit !== undefined && !(opts.bwlimit > 0)) throw new ConfigError('--bwlimit must be a rate above 0')
  const result: RepairResult = { applied: !!opts.apply, groups: [], copies: [], undecided: [], bytes: 0, reports: [], journals: [], warnings: [] }
  const servers: Server[] = []
  try {
    for (const s of sources) {
      const srv = await openServer(s, opts)
      const key = (x: Server) => `${x.side.remote ? x.label : ''}\0${x.outDir}`
      if (servers.some((x) => x.label === srv.label || key(x) === key(srv))) {
        srv.side.close()
        throw new ConfigError(`${s}: the same report folder is given twice; each server once`)
      }
      servers.push(srv)
    }
    const items = decide(servers, opts.group, result)
    result.copies = items.map((i) => i.copy)
    // The original service's reports have no sizes: the plan asks the first source.
    for (const it of items.filter((i) => i.good.size === undefined && i.sources.every((s) => s.entry!.size === undefined))) {
      const s = it.sources[0]
      const st = await s.server.side.stat(join(s.server.side, s.report.root, s.entry!.rel)).catch(() => null)
      if (st?.kind === 'file') it.copy.bytes = st.size
    }
    if (!opts.apply) {
      result.bytes = items.reduce((n, i) => n + i.copy.bytes, 0)
      return result
    }
    const now = opts.now ?? new Date()
    const ctx: Ctx = {
      opts,
      now,
      stamp: stampOf(now),
      throttle: opts.bwlimit ? new Throttle(opts.bwlimit) : undefined,
      limits: new Map(servers.map((s) => [s, new Limit(opts.parallel ?? 2)])),
      sourceLimits: new Map(servers.map((s) => [s, new Limit(opts.parallel ?? 2)])),
      journals: new Map(),
      result,
    }
    // A copy holds a slot on its target for its whole run, and one on its source while it streams
    // (taken in that order, and a source slot is never held while waiting: no deadlock).
    await Promise.all(items.map((it) => ctx.limits.get(it.target.server)!.run(() => runCopy(ctx, it))))
    for (const it of items.filter((i) => i.copy.status === 'failed' && /no source copy still matches/.test(i.copy.error ?? ''))) {
      result.undecided.push({ group: it.group, path: it.copy.path, reason: it.copy.error!, versions: {} })
    }
    result.bytes = items.filter((i) => i.copy.status === 'repaired').reduce((n, i) => n + i.copy.bytes, 0)
    // The touched servers' reports: a newer report with the repaired files, so the next compare is clean.
    const touched = new Map<ParsedReport, { server: Server; items: PlanItem[] }>()
    for (const it of items.filter((i) => i.copy.status === 'repaired')) {
      const e = touched.get(it.target.report) ?? { server: it.target.server, items: [] }
      e.items.push(it)
      touched.set(it.target.report, e)
    }
    for (const [report, { server, items: done }] of touched) {
      try {
        await writeNewReport(ctx, server, report, done)
      } catch (e) {
        result.warnings.push({ server: server.label, message: `group ${report.group}: the new report could not be written (${(e as Error).message}); run \`backup checksum\` there` })
      }
    }
    return result
  } finally {
    for (const s of servers) s.side.close()
  }
}

/** The exit code of a repair: 0 nothing left to do (or all planned copies possible), 1 undecided or failed files. */
export function repairExit(r: RepairResult): 0 | 1 {
  return r.undecided.length || r.copies.some((c) => c.status === 'failed') ? 1 : 0
}
