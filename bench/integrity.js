#!/usr/bin/env node
// Benchmarks of `backup checksum` and `backup verify` (issue 4), each beside
// its peers on the same generated trees as the engine's benchmark, in one
// run, medians of several repetitions, reported as ratios:
//
//   checksum --algo sha256      vs the fastest of rhash --sha256 -r, hashdeep -c sha256 -r,
//                                  find | xargs -P2 sha256sum; and vs the CPU limit
//                                  (bytes / (openssl's single-core SHA-256 speed × cores))
//   checksum --algo blake3      vs find | xargs -P2 b3sum
//   checksum (sha256,md5)       vs find | xargs -P2 sha256sum, then the same with md5sum; and vs
//                                  the CPU limit of the pair (bytes / (1/(1/sha256 + 1/md5) speed × cores))
//   verify --incremental        vs find -printf '%s %T@ %i %C@' (nothing changed; digest cached, and not)
//   verify (full)               vs checksum of the same algorithms
//   peak RSS of checksum and verify
//
// Every ratio is the median of the repetitions' own ratios: ours and the peer (or openssl's speed)
// measured one after the other in the same repetition.
//
//   node bench/integrity.js [--quick] [--reps N] [--only mixed|mixed20k|tiny|tiny200k|large] [--checksum-only] [--verify-only] [--write]
//
// `large` is 4 files × 256 MB (generated on first use): the large-file rows
// (one file cannot be split for SHA-256/MD5; BLAKE3 can). --checksum-only
// leaves out the verify rows; --verify-only keeps only the sha256,md5
// checksum (which makes the report) and the verify rows.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const reps = Number(args[args.indexOf('--reps') + 1]) || 3
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null
const checksumOnly = args.includes('--checksum-only')
const verifyOnly = args.includes('--verify-only')
const root = path.join(__dirname, '..')
const work = process.env.BENCH_DIR || path.join(os.tmpdir(), 'axiomatic-bench')
const cores = os.availableParallelism()

for (const cmd of ['rhash', 'hashdeep', 'b3sum', 'sha256sum', 'md5sum', 'openssl']) {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
    console.error(`bench: ${cmd} is missing (apt-get install rhash hashdeep b3sum coreutils openssl)`)
    process.exit(2)
  }
}

const { median, time, rand, genTree, mixedSize, stamp, paired, putBlock } = require('./common')
const sh = (script) => time('sh', ['-c', script])
const q = (s) => `'${s.replaceAll("'", `'\\''`)}'`

/** Our command through the library in a fresh node process that reports its peak RSS. */
function ours(expr) {
  const script = `const lib=require(${JSON.stringify(root)});(async()=>{const r=await ${expr};process.stdout.write(JSON.stringify({r,rss:process.resourceUsage().maxRSS}))})()`
  const r = time(process.execPath, ['-e', script])
  const j = JSON.parse(r.out)
  return { ms: r.ms, rss: j.rss * 1024, r: j.r }
}

/**
 * openssl's single-core speed of `algo` (sha256, md5) on 1 MiB blocks, bytes per second: one second
 * of it. The CPU-limit rows take it right before and right after each of our runs and divide that
 * run by the limit of the mean of the two: a ratio per repetition, whose median is the row's. This
 * VM's speed shifts between modes (the same command took 0.55 s six times in a row, then 0.73 s six
 * times; a single openssl sample swung 1.05–1.45 GB/s between two runs), so a run is only compared
 * with the speed of its own moment.
 */
function opensslSpeed(algo) {
  const r = spawnSync('openssl', ['speed', '-evp', algo, '-seconds', '1', '-bytes', '1048576'], { encoding: 'utf8' })
  const line = r.stdout.split('\n').find((l) => new RegExp(`^${algo}`, 'i').test(l.trim()))
  const k = Number(line.trim().split(/\s+/).pop().replace(/k$/, ''))
  return k * 1000 // bytes per second, one core
}

const results = []
function record(tree, what, oursMs, peer, peerMs, rss, note = '', ratio = oursMs / peerMs) {
  const row = { tree, what, ours: oursMs, peer, peerMs, ratio, rss, note }
  results.push(row)
  console.log(`${tree.padEnd(14)} ${what.padEnd(34)} ours ${(oursMs / 1000).toFixed(2).padStart(7)} s  ${peer} ${(peerMs / 1000).toFixed(2)} s  ratio ${row.ratio.toFixed(2)}  RSS ${rss ? (rss / 1048576).toFixed(0) + ' MiB' : '-'} ${note}`)
}

function treeBytes(src) {
  const r = sh(`find ${q(src)} -type f -printf '%s\\n' | awk '{s+=$1} END {print s}'`)
  return Number(r.out.trim())
}

/** The large-file tree: `n` files of `mb` MB of random bytes. */
function largeTree(src, n, mb) {
  if (fs.existsSync(path.join(src, `f${n - 1}.bin`))) return
  console.error(`${src}: generating ${n} × ${mb} MB…`)
  fs.mkdirSync(src, { recursive: true })
  for (let i = 0; i < n; i++) sh(`head -c ${mb * 1048576} /dev/urandom > ${q(path.join(src, `f${i}.bin`))}`)
}

function bench(name, src) {
  // Trees are generated on first use and kept (the engine benchmark's trees are the same ones).
  const [kind, n] = name.split('-')
  if (kind === 'large') largeTree(src, 4, 256)
  else if (!fs.existsSync(src)) {
    console.error(`${src}: generating ${n} files…`)
    genTree(src, Number(n), kind === 'tiny' ? () => 1 + rand(200) : mixedSize)
  }
  const bytes = treeBytes(src)
  const out = path.join(work, 'integrity-out')
  fs.mkdirSync(out, { recursive: true })
  const report = path.join(out, `${name}.json`)
  const xargs = (tool) => `find ${q(src)} -type f -print0 | xargs -0 -P${cores} -n 500 ${tool} > /dev/null`
  console.error(`${name}: warming the page cache (${(bytes / 1e9).toFixed(2)} GB)…`)
  sh(`find ${q(src)} -type f -print0 | xargs -0 -n 500 cat > /dev/null`)

  if (!verifyOnly) hashRows(name, src, bytes, report, xargs)
  verifyRows(name, src, bytes, report, xargs)
}

function hashRows(name, src, bytes, report, xargs) {
  // sha256
  const o = []
  const peers = { 'rhash --sha256 -r': [], 'hashdeep -c sha256 -r': [], [`xargs -P${cores} sha256sum`]: [] }
  let rss = 0
  const limits = []
  for (let k = 0; k < reps; k++) {
    const before = opensslSpeed('sha256')
    const x = ours(`lib.checksumFolder(${JSON.stringify(src)}, 'b', ${JSON.stringify(report)}, { algos: ['sha256'] })`)
    const speed = (before + opensslSpeed('sha256')) / 2
    o.push(x.ms)
    limits.push((bytes / (speed * cores)) * 1000)
    rss = Math.max(rss, x.rss)
    peers['rhash --sha256 -r'].push(sh(`rhash --sha256 -r ${q(src)} > /dev/null`).ms)
    peers['hashdeep -c sha256 -r'].push(sh(`hashdeep -c sha256 -r ${q(src)} > /dev/null`).ms)
    peers[`xargs -P${cores} sha256sum`].push(sh(xargs('sha256sum')).ms)
  }
  const best = Object.entries(peers).map(([k, v]) => [k, median(v)]).sort((a, b) => a[1] - b[1])
  for (const [k, v] of best) console.log(`  peer ${k}: ${(v / 1000).toFixed(2)} s`)
  const ps = paired(o, peers[best[0][0]])
  record(name, 'checksum --algo sha256', median(o), best[0][0], best[0][1], rss, `(peers: ${best.map(([k, v]) => `${k} ${(v / 1000).toFixed(2)} s`).join('; ')}; ${ps.note})`, ps.ratio)
  const pl = paired(o, limits)
  record(name, 'checksum --algo sha256 vs CPU limit', median(o), `bytes/(openssl×${cores})`, median(limits), 0, `(${pl.note})`, pl.ratio)

  // blake3
  const ob = []
  const pb = []
  rss = 0
  for (let k = 0; k < reps; k++) {
    const x = ours(`lib.checksumFolder(${JSON.stringify(src)}, 'b', ${JSON.stringify(report)}, { algos: ['blake3'] })`)
    ob.push(x.ms)
    rss = Math.max(rss, x.rss)
    pb.push(sh(xargs('b3sum')).ms)
  }
  const pb3 = paired(ob, pb)
  record(name, 'checksum --algo blake3', median(ob), `xargs -P${cores} b3sum`, median(pb), rss, `(${pb3.note})`, pb3.ratio)
}

function verifyRows(name, src, bytes, report, xargs) {
  let rss = 0

  // the original service's pair
  const od = []
  const pd = []
  const pairLimits = []
  rss = 0
  // The pair's time per byte on one core, from openssl's speeds of the moment.
  const pairSpeed = () => 1 / opensslSpeed('sha256') + 1 / opensslSpeed('md5')
  for (let k = 0; k < reps; k++) {
    const before = pairSpeed()
    const x = ours(`lib.checksumFolder(${JSON.stringify(src)}, 'b', ${JSON.stringify(report)}, { algos: ['sha256', 'md5'] })`)
    const secPerByte = (before + pairSpeed()) / 2
    od.push(x.ms)
    rss = Math.max(rss, x.rss)
    pairLimits.push(((bytes * secPerByte) / cores) * 1000)
    pd.push(sh(xargs('sha256sum')).ms + sh(xargs('md5sum')).ms)
  }
  const ppair = paired(od, pd)
  record(name, 'checksum (sha256,md5)', median(od), `xargs -P${cores} sha256sum + md5sum`, median(pd), rss, `(${ppair.note})`, ppair.ratio)
  const ppl = paired(od, pairLimits)
  record(name, 'checksum (sha256,md5) vs CPU limit', median(od), `bytes/(openssl pair×${cores})`, median(pairLimits), 0, `(${ppl.note})`, ppl.ratio)
  if (checksumOnly) return

  // verify --incremental, nothing changed (the report from the last run). The report's verified
  // digest is cached per user: a fresh cache dir per repetition gives the first run after a checksum
  // (digest computed), a warmed one every later run (digest cached).
  const incr = (cacheDir) => {
    const x = ours(`(process.env.XDG_CACHE_HOME=${JSON.stringify(cacheDir)},lib.verify(${JSON.stringify(report)}, { incremental: true })).then(v => ({ counts: v.counts, trusted: v.trusted, files: v.files, cached: v.signatureCached }))`)
    if (x.r.trusted !== x.r.files || x.r.counts.OK !== x.r.files) throw new Error(`verify --incremental re-read files: ${JSON.stringify(x.r)}`)
    return x
  }
  const findPeer = () => sh(`find ${q(src)} -printf '%s %T@ %i %C@\\n' > /dev/null`).ms
  const ov = []
  const oc = []
  const pv = []
  rss = 0
  let rssc = 0
  const warm = fs.mkdtempSync(path.join(work, 'cache-'))
  incr(warm)
  for (let k = 0; k < reps; k++) {
    const fresh = fs.mkdtempSync(path.join(work, 'cache-'))
    const c = incr(fresh)
    fs.rmSync(fresh, { recursive: true, force: true })
    oc.push(c.ms)
    rssc = Math.max(rssc, c.rss)
    const x = incr(warm)
    if (x.r.cached === false) throw new Error('verify --incremental did not use the cached digest')
    ov.push(x.ms)
    rss = Math.max(rss, x.rss)
    pv.push(findPeer())
  }
  fs.rmSync(warm, { recursive: true, force: true })
  const pov = paired(ov, pv)
  const poc = paired(oc, pv)
  record(name, 'verify --incremental (no change)', median(ov), "find -printf '%s %T@ %i %C@'", median(pv), rss, `(${pov.note})`, pov.ratio)
  record(name, 'verify --incremental (digest not cached)', median(oc), "find -printf '%s %T@ %i %C@'", median(pv), rssc, `(${poc.note})`, poc.ratio)
  // full verify vs checksum of the same algorithms (the report is the sha256,md5 one). Each
  // repetition runs the checksum (into a scratch report: the verified one keeps its cached digest)
  // right before the verify, and the row is the median of those paired ratios: this VM's speed
  // shifts between modes, and two medians taken minutes apart compare two modes.
  const of = []
  const oc2 = []
  const scratch = path.join(path.dirname(report), `${name}.scratch.json`)
  rss = 0
  for (let k = 0; k < reps; k++) {
    const c = ours(`lib.checksumFolder(${JSON.stringify(src)}, 'b', ${JSON.stringify(scratch)}, { algos: ['sha256', 'md5'] })`)
    const full = ours(`lib.verify(${JSON.stringify(report)}).then(v => v.counts)`)
    if (full.r.OK !== c.r.files) throw new Error(`verify did not find every file OK: ${JSON.stringify(full.r)}`)
    oc2.push(c.ms)
    of.push(full.ms)
    rss = Math.max(rss, full.rss)
  }
  fs.rmSync(scratch, { force: true })
  const pf = paired(of, oc2)
  record(name, 'verify (full read)', median(of), 'checksum sha256,md5', median(oc2), rss, `(${pf.note})`, pf.ratio)
}

if (!only || only === 'mixed') bench(quick ? 'mixed-10000' : 'mixed-100000', path.join(work, quick ? 'mixed-10000' : 'mixed-100000', 'src'))
// The issue's "20k mixed" tree (~480 MB): between mixed-10000 and mixed-100000, so that the
// rows against rhash are not dominated by Node's start-up.
if (only === 'mixed20k') bench('mixed-20000', path.join(work, 'mixed-20000', 'src'))
if (!only || only === 'large') bench('large-4x256', path.join(work, 'large-4x256', 'src'))
// The issue's verify row: 200k tiny files.
if (only === 'tiny200k') bench('tiny-200000', path.join(work, 'tiny-200000', 'src'))
if (!only || only === 'tiny') bench(quick ? 'tiny-100000' : 'tiny-1000000', path.join(work, quick ? 'tiny-100000' : 'tiny-1000000', 'src'))

const header = '| tree | operation | ours (s) | peer | peer (s) | ratio | peak RSS (MiB) |\n|---|---|---:|---|---:|---:|---:|\n'
const rows = (rs) =>
  rs.map((r) => `| ${r.tree} | ${r.what} | ${(r.ours / 1000).toFixed(2)} | ${r.peer} | ${(r.peerMs / 1000).toFixed(2)} | **${r.ratio.toFixed(2)}** | ${r.rss ? (r.rss / 1048576).toFixed(0) : '–'} |`).join('\n')
console.log('\n' + header + rows(results))
if (args.includes('--write') && results.length) {
  const f = path.join(root, 'BENCHMARKS.md')
  let text = fs.readFileSync(f, 'utf8')
  for (const tree of [...new Set(results.map((r) => r.tree))]) {
    // --checksum-only and --verify-only runs have their own blocks (neither overwrites the other).
    const part = checksumOnly ? ':checksum' : verifyOnly ? ':verify' : ''
    const marker = `<!-- bench:integrity:${tree}${part} -->`
    const peersNote = results.filter((r) => r.tree === tree && r.note).map((r) => `${r.what} ${r.note}`).join('; ')
    const block = `${marker}\n#### integrity: ${tree}\n\nCommand: \`node bench/integrity.js ${args.join(' ')}\` on ${stamp()}, ${cores} cores (${os.cpus()[0].model}), page cache warm, medians of ${reps}. ${peersNote}\n\n${header}${rows(results.filter((r) => r.tree === tree))}\n${marker}`
    text = putBlock(text, marker, block)
  }
  fs.writeFileSync(f, text)
}
