#!/usr/bin/env node
// Benchmarks: our `backup run` against `rsync -a` on the same generated
// trees, in one run, medians of several repetitions, reported as ratios.
//
//   npm run bench                 full size (100k mixed files ~2 GB; 1M tiny files)
//   npm run bench -- --quick      a tenth of that, for a quick look
//   npm run bench -- --reps 5     more repetitions
//   npm run bench -- --only mixed|mixed20k|tiny|explore|integrity|index   one part (mixed20k: the
//                                 issue's 20k mixed tree; explore: search, list, prune in
//                                 bench/explore.js; integrity: checksum, verify in bench/integrity.js;
//                                 index: the catalog index in bench/index.js)
//   npm run bench -- --modes mirror|tracked   one config only (default both)
//   npm run bench -- --scenarios first,nochange,change   some scenarios only (default all; without
//                                 `first`, one untimed first run of each tool prepares the others),
//                                 so the 1M-file tree can be measured in parts of under 10 minutes
//
// Writes the table to stdout and, with --write, into BENCHMARKS.md.
'use strict'
const { spawnSync, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const reps = Number(args[args.indexOf('--reps') + 1]) || 3
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null
const modes = args.includes('--modes') ? args[args.indexOf('--modes') + 1].split(',') : ['mirror', 'tracked']
const scenarios = args.includes('--scenarios') ? args[args.indexOf('--scenarios') + 1].split(',') : ['first', 'nochange', 'change']
const root = path.join(__dirname, '..')
const work = process.env.BENCH_DIR || path.join(os.tmpdir(), 'axiomatic-bench')
/** Where the trees were, as the command's prefix: the file system under a first run decides much of its time. */
const benchDir = process.env.BENCH_DIR ? `BENCH_DIR=${process.env.BENCH_DIR} ` : ''
const BIN = path.join(root, 'bin', 'backup.js')

function need(cmd) {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
    console.error(`bench: ${cmd} is missing (apt-get install ${cmd})`)
    process.exit(2)
  }
}
need('rsync')

const { median, time, rand, genTree, mixedSize, stamp, paired, putBlock } = require('./common')

/** Our run, in a node process that requires the package as a user does and reports its peak RSS. */
function ours(config) {
  settle()
  const script = `require(${JSON.stringify(root)}).backup(${JSON.stringify(config)}).then(s=>{process.stdout.write(JSON.stringify({s,rss:process.resourceUsage().maxRSS}))})`
  const r = time(process.execPath, ['-e', script])
  const j = JSON.parse(r.out)
  return { ms: r.ms, rss: j.rss * 1024, stats: j.s }
}

/**
 * Flushes every dirty page before a timed command (untimed): we `syncfs` what a run commits and
 * rsync syncs nothing, so without it our run would also wait for the writeback of the rsync copy
 * made just before it (and of the `rm -rf` before that) — a cost of the previous command, not ours.
 */
function settle() {
  spawnSync('sync')
}

function rsync(src, dst) {
  settle()
  return time('rsync', ['-a', '--delete', `${src}/`, `${dst}/`])
}

function mutate(src, files, k) {
  // 1% changed, 0.5% deleted, 0.5% added; a different set per repetition.
  const all = []
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name !== '.done') all.push(p)
    }
  }
  walk(src)
  const n = all.length
  for (let i = 0; i < Math.round(n * 0.01); i++) {
    const f = all[rand(n)]
    if (fs.existsSync(f)) {
      fs.appendFileSync(f, `change ${k} ${i}\n`)
    }
  }
  for (let i = 0; i < Math.round(n * 0.005); i++) fs.rmSync(all[rand(n)], { force: true })
  for (let i = 0; i < Math.round(n * 0.005); i++) fs.writeFileSync(path.join(path.dirname(all[rand(n)]), `new-${k}-${i}.dat`), `added ${k} ${i}\n`.repeat(1 + rand(2000)))
}

const results = []
/** A row from the repetitions' times, ours and rsync's taken in the same repetition (`paired`). */
function record(tree, scenario, oursTimes, peer, rss) {
  const p = paired(oursTimes, peer)
  const note = oursTimes.length > 1 ? p.note : ''
  const oursMs = median(oursTimes)
  const peerMs = median(peer)
  const row = { tree, scenario, ours: oursMs, rsync: peerMs, ratio: p.ratio, rss, note }
  results.push(row)
  console.log(
    `${tree.padEnd(14)} ${scenario.padEnd(34)} ours ${(oursMs / 1000).toFixed(2).padStart(7)} s  rsync ${(peerMs / 1000).toFixed(2).padStart(7)} s  ratio ${row.ratio.toFixed(2)}  peak RSS ${(rss / 1048576).toFixed(0)} MiB ${note}`,
  )
}

function benchTree(name, files, sizeOf) {
  const base = path.join(work, name)
  const srcPristine = path.join(base, 'src')
  console.error(`generating ${name} (${files} files) in ${srcPristine}…`)
  genTree(srcPristine, files, sizeOf)
  for (const [mode, rules] of [
    ['mirror only', { include_dirs: ['**'] }, 'mirror'],
    ['all tracked', { track_dirs: ['**'] }, 'tracked'],
  ].filter((m) => modes.includes(m[2]))) {
    const src = path.join(base, 'src-run')
    fs.rmSync(src, { recursive: true, force: true })
    execFileSync('cp', ['-a', srcPristine, src])
    fs.rmSync(path.join(src, '.done'))
    const dst = path.join(base, 'dst')
    const rdst = path.join(base, 'rsync-dst')
    const config = { src, dst, ...rules }
    // First full backup.
    const o1 = []
    const r1 = []
    let rss = 0
    for (let k = 0; k < (scenarios.includes('first') ? reps : 1); k++) {
      fs.rmSync(dst, { recursive: true, force: true })
      fs.rmSync(rdst, { recursive: true, force: true })
      r1.push(rsync(src, rdst).ms)
      const o = ours(config)
      o1.push(o.ms)
      rss = Math.max(rss, o.rss)
    }
    if (scenarios.includes('first')) record(name, `first full backup (${mode})`, o1, r1, rss)
    // No change.
    const o2 = []
    const r2 = []
    rss = 0
    for (let k = 0; k < (scenarios.includes('nochange') ? reps : 0); k++) {
      r2.push(rsync(src, rdst).ms)
      const o = ours(config)
      if (o.stats.increment || o.stats.mirrorUpdated) throw new Error('no-change run changed something')
      o2.push(o.ms)
      rss = Math.max(rss, o.rss)
    }
    if (o2.length) record(name, `no change (${mode})`, o2, r2, rss)
    // 1% changed, 0.5% deleted, 0.5% added.
    const o3 = []
    const r3 = []
    rss = 0
    for (let k = 0; k < (scenarios.includes('change') ? reps : 0); k++) {
      mutate(src, files, `${mode}-${k}`)
      r3.push(rsync(src, rdst).ms)
      const o = ours(config)
      o3.push(o.ms)
      rss = Math.max(rss, o.rss)
    }
    if (o3.length) record(name, `1% changed, 0.5% del/add (${mode})`, o3, r3, rss)
    fs.rmSync(src, { recursive: true, force: true })
    fs.rmSync(dst, { recursive: true, force: true })
    fs.rmSync(rdst, { recursive: true, force: true })
  }
}

const scale = quick ? 0.1 : 1
const mixedFiles = Math.round(100_000 * scale)
// ~2 GB: most files 2–30 KB, every 1000th a multi-MB file (mixedSize).
if (!only || only === 'mixed') benchTree(`mixed-${mixedFiles}`, mixedFiles, mixedSize)
if (only === 'mixed20k') benchTree('mixed-20000', 20_000, mixedSize)
if (!only || only === 'tiny') benchTree(`tiny-${Math.round(1_000_000 * scale)}`, Math.round(1_000_000 * scale), () => 1 + rand(200))

const header = `| tree | scenario | ours (s) | rsync -a (s) | ratio | peak RSS (MiB) |\n|---|---|---:|---:|---:|---:|\n`
const rows = (rs) =>
  rs.map((r) => `| ${r.tree} | ${r.scenario} | ${(r.ours / 1000).toFixed(2)} | ${(r.rsync / 1000).toFixed(2)} | **${r.ratio.toFixed(2)}** | ${(r.rss / 1048576).toFixed(0)} |`).join('\n')
console.log('\n' + header + rows(results))
const notes = (tree) =>
  results
    .filter((r) => r.tree === tree && r.note)
    .map((r) => ` ${r.scenario}: ${r.note}.`)
    .join('')
if (args.includes('--write')) {
  // One block per tree, so trees can be measured in separate invocations.
  const f = path.join(root, 'BENCHMARKS.md')
  let text = fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '# Benchmarks\n'
  for (const tree of [...new Set(results.map((r) => r.tree))]) {
    // A part (some modes or scenarios only) has its own block, so parts do not overwrite each other.
    const part = args.includes('--modes') || args.includes('--scenarios') ? `:${modes.join('+')}:${scenarios.join('+')}` : ''
    const marker = `<!-- bench:engine:${tree}${part} -->`
    const block = `${marker}\n### ${tree}\n\nCommand: \`${benchDir}npm run bench -- ${args.join(' ')}\` on ${stamp()}, ${os.cpus().length} cores (${os.cpus()[0].model}), page cache warm, medians of ${reps}; a ratio is the median of each repetition's own ratio.${notes(tree)}\n\n${header}${rows(results.filter((r) => r.tree === tree))}\n${marker}`
    text = putBlock(text, marker, block)
  }
  fs.writeFileSync(f, text)
}

// The explore/maintenance (search, list, prune) and integrity (checksum, verify)
// benchmarks live in their own files; the integrity one uses the trees above.
const fwd = args.filter((a, i) => a !== '--only' && args[i - 1] !== '--only')
if (!only || only === 'explore') execFileSync(process.execPath, [path.join(__dirname, 'explore.js'), ...fwd], { stdio: 'inherit' })
if (!only || only === 'integrity') execFileSync(process.execPath, [path.join(__dirname, 'integrity.js'), ...fwd], { stdio: 'inherit' })
if (!only || only === 'index') execFileSync(process.execPath, [path.join(__dirname, 'index.js'), ...fwd], { stdio: 'inherit' })
