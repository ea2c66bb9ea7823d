// Helpers shared by the benchmark scripts: timing a command, medians.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

// Some machines (this project's build VMs among them) set NODE_EXTRA_CA_CERTS to the whole system CA
// bundle for a registry proxy; every Node process then parses ~150 certificates before running any
// code (+60–70 ms per start here, `node -e 0` 0.03 s → 0.10 s), which no backup needs and a usual
// machine does not pay. Every measured command runs without it (the peers do not read it).
if (process.env.NODE_EXTRA_CA_CERTS) {
  console.error('bench: NODE_EXTRA_CA_CERTS is cleared for the measured commands (see BENCHMARKS.md)')
  delete process.env.NODE_EXTRA_CA_CERTS
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Runs a command to completion; its wall time in ms and its stdout. Exit 0 or 1 is success. */
function time(cmd, argv, opts = {}) {
  const t = process.hrtime.bigint()
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 1 << 30, ...opts })
  const ms = Number(process.hrtime.bigint() - t) / 1e6
  if (r.status !== 0 && r.status !== 1) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr}`)
  return { ms, out: r.stdout }
}

// Deterministic pseudo-random numbers (the same trees on every machine).
let seed = 12345
const rand = (n) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n)

/** Writes `files` files of `sizeOf(i)` bytes, 100 per folder (dN/sN/fN.dat), once: a `.done` marks a finished tree. */
function genTree(dir, files, sizeOf) {
  if (fs.existsSync(path.join(dir, '.done'))) return
  fs.rmSync(dir, { recursive: true, force: true })
  const buf = Buffer.alloc(8 * 1024 * 1024)
  for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((i * 2654435761) >>> 0, i)
  const perDir = 100
  for (let i = 0; i < files; i++) {
    const d = path.join(dir, `d${Math.floor(i / perDir / 100)}`, `s${Math.floor(i / perDir) % 100}`)
    if (i % perDir === 0) fs.mkdirSync(d, { recursive: true })
    const size = sizeOf(i)
    const off = rand(1024 * 1024)
    fs.writeFileSync(path.join(d, `f${i}.dat`), size <= buf.length - off ? buf.subarray(off, off + size) : Buffer.alloc(size, i & 255))
  }
  fs.writeFileSync(path.join(dir, '.done'), '')
}

/** The "mixed" trees' sizes (~24 MB per 1000 files): most files 2–30 KB, every 1000th 4–12 MB. */
const mixedSize = (i) => (i % 1000 === 0 ? 4 * 1024 * 1024 + rand(8 * 1024 * 1024) : 2048 + rand(28 * 1024))

/**
 * A row's ratio from times taken in pairs (ours and the peer's, or the CPU limit of that moment, one
 * after the other in the same repetition): the median of each pair's own ratio, and a note listing
 * them. This VM's speed shifts between modes within minutes; two medians taken apart compare two
 * moments, a pair one.
 */
function paired(oursTimes, peerTimes) {
  const ratios = oursTimes.map((o, k) => o / peerTimes[k])
  return { ratio: median(ratios), note: `median of ${ratios.length} paired ratios: ${ratios.map((r) => r.toFixed(2)).join(' ')}` }
}

/**
 * Where and what was measured, for a BENCHMARKS.md block: the date and the commit of the code
 * (`+changes` when files other than BENCHMARKS.md differ from it).
 */
function stamp() {
  const root = path.join(__dirname, '..')
  const git = (...a) => spawnSync('git', a, { cwd: root, encoding: 'utf8' })
  const head = git('rev-parse', '--short', 'HEAD').stdout.trim() || 'unknown'
  const dirty = git('status', '--porcelain', '--untracked-files=no').stdout.split('\n').some((l) => l.trim() && !l.endsWith('BENCHMARKS.md'))
  return `${new Date().toISOString().slice(0, 10)}, commit \`${head}\`${dirty ? ' +changes' : ''}`
}

/**
 * `text` with its block between two `marker` lines replaced by `block`, or with `block` appended when
 * it has none. Plain string search: a marker holds `+` and other characters a RegExp would read (a
 * RegExp built from `…:mirror+tracked:first` never matched, so each --write appended a new block).
 */
function putBlock(text, marker, block) {
  const start = text.indexOf(marker)
  const end = start < 0 ? -1 : text.indexOf(marker, start + marker.length)
  if (end < 0) return `${text}\n${block}\n`
  return text.slice(0, start) + block + text.slice(end + marker.length)
}

module.exports = { median, time, rand, genTree, mixedSize, stamp, paired, putBlock }
