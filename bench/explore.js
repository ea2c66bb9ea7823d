#!/usr/bin/env node
// Benchmarks of the explore/maintenance commands (issue 3), each beside a
// peer on the same files, medians of several runs, reported as ratios:
//
//   search over 10 increments holding 1,000,000 catalog entries in total,
//     and list of those increments, vs the original tool's way (Python:
//     `json.load` of every metadata file, `fnmatch` on every entry);
//   prune of an increment of 100,000 files vs `rm -rf` of an identical
//     hardlinked copy of the same folder.
//
//   node bench/explore.js [--quick] [--reps N] [--write]
'use strict'
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const reps = Number(args[args.indexOf('--reps') + 1]) || 5
const root = path.join(__dirname, '..')
const work = path.join(process.env.BENCH_DIR || path.join(os.tmpdir(), 'axiomatic-bench'), quick ? 'explore-quick' : 'explore')
const BIN = path.join(root, 'bin', 'backup.js')
const scale = quick ? 0.1 : 1
const INCS = 10
const PER_INC = Math.round(100_000 * scale)
const PRUNE_FILES = Math.round(100_000 * scale)

const { median, time, stamp, putBlock } = require('./common')

const name = (i) => `backup_20240101_${String(1_000_000 + i).slice(1)}`
const pad = (n) => String(n).padStart(2, '0')

/** Metadata exactly as the engine writes it (head, then the catalog streamed, one entry per line). */
function writeMeta(dir, inc, entries, ts) {
  fs.mkdirSync(dir, { recursive: true })
  const fd = fs.openSync(path.join(dir, `${inc}.json`), 'w')
  const bytes = entries.reduce((s, e) => s + e.size, 0)
  const head = {
    version: 1,
    backup_name: inc,
    timestamp: ts,
    origin: 'run',
    summary: { new: entries.length, changed: 0, deleted: 0, total: entries.length, bytes },
    statistics: {},
  }
  const h = JSON.stringify(head, null, 2)
  let buf = h.slice(0, -2) + ',\n  "file_catalog": {'
  entries.forEach((e, i) => {
    const mt = 1_704_067_200 + (e.k % 5_000_000)
    buf +=
      (i ? ',\n    ' : '\n    ') +
      JSON.stringify(e.p) +
      ': ' +
      JSON.stringify({
        size: e.size,
        mtime: mt + 0.5,
        mtime_ns: `${mt}500000000`,
        mode: 420,
        kind: 'file',
        category: 'track',
        op: 'new',
        sha256: (e.k.toString(16).padStart(8, '0') + 'ab').repeat(7).slice(0, 64),
        stored_as: 'hardlink',
      })
    if (buf.length > 1 << 20) {
      fs.writeSync(fd, buf)
      buf = ''
    }
  })
  fs.writeSync(fd, buf + '\n  }\n}\n')
  fs.closeSync(fd)
}

function genCatalogs(dst) {
  if (fs.existsSync(path.join(dst, '.done'))) return
  fs.rmSync(dst, { recursive: true, force: true })
  fs.mkdirSync(path.join(dst, 'mirror'), { recursive: true })
  const words = ['report', 'notes', 'photo', 'invoice', 'draft', 'data', 'backup', 'thesis', 'scan', 'mail']
  for (let i = 0; i < INCS; i++) {
    const entries = []
    for (let j = 0; j < PER_INC; j++) {
      const k = i * PER_INC + j
      entries.push({ k, p: `home/dir${k % 97}/sub${(k >> 7) % 50}/${words[k % 10]}-${k}.${['pdf', 'txt', 'jpg', 'md'][k % 4]}`, size: (k * 7919) % 300_000 })
    }
    writeMeta(path.join(dst, name(i)), name(i), entries, `2024-01-01T00:${pad(i)}:00.000Z`)
  }
  fs.writeFileSync(path.join(dst, '.done'), '')
}

const results = []
function record(what, oursMs, peer, peerMs, note = '') {
  const r = { what, ours: oursMs, peer, peerMs, ratio: oursMs / peerMs, note }
  results.push(r)
  console.log(`${what.padEnd(52)} ours ${(oursMs / 1000).toFixed(2)} s  ${peer} ${(peerMs / 1000).toFixed(2)} s  ratio ${r.ratio.toFixed(2)} ${note}`)
}

// ---- search and list over 1M catalog entries
const cat = path.join(work, 'catalogs')
console.error(`generating ${INCS} increments × ${PER_INC} catalog entries in ${cat}…`)
genCatalogs(cat)
const metas = Array.from({ length: INCS }, (_, i) => path.join(cat, name(i), `${name(i)}.json`))
// The original tool's way, in Python: load each metadata file, fnmatch each entry.
const PY_SEARCH = `
import sys, json, fnmatch, os
mask, min_size = sys.argv[1], int(sys.argv[2])
hits = 0
for f in sys.argv[3:]:
    with open(f) as fh:
        cat = json.load(fh)["file_catalog"]
    for p, e in cat.items():
        if (fnmatch.fnmatch(os.path.basename(p), mask) or fnmatch.fnmatch(p, mask)) and e["size"] >= min_size:
            hits += 1
print(hits)
`
const PY_LIST = `
import sys, json
for f in sys.argv[1:]:
    with open(f) as fh:
        m = json.load(fh)
    print(m["backup_name"], m["summary"]["total"])
`
for (const [label, ourArgs, pyArgs] of [
  ['search --mask thesis-12347 (a rare name)', ['--mask', 'thesis-12347'], ['*thesis-12347*', '0']],
  ['search --mask "*.pdf" --size ">250K"', ['--mask', '*.pdf', '--size', '>250K'], ['*.pdf', String(250 * 1024 + 1)]],
]) {
  const o = []
  const g = []
  let hits = 0
  let pyHits = 0
  for (let k = 0; k < reps; k++) {
    const r = time(process.execPath, [BIN, 'search', '--dst', cat, ...ourArgs, '--json'])
    hits = JSON.parse(r.out).hits.length
    o.push(r.ms)
    const p = time('python3', ['-c', PY_SEARCH, ...pyArgs, ...metas])
    pyHits = Number(p.out.trim())
    g.push(p.ms)
  }
  if (hits !== pyHits) throw new Error(`search found ${hits}, the Python reference ${pyHits}`)
  record(label, median(o), 'python json+fnmatch', median(g), `(${hits} hits in ${INCS * PER_INC} entries)`)
}
{
  const o = []
  const l = []
  for (let k = 0; k < reps; k++) {
    o.push(time(process.execPath, [BIN, 'list', '--dst', cat, '--json']).ms)
    l.push(time('python3', ['-c', PY_LIST, ...metas]).ms)
  }
  record(`list (${INCS} increments, ${INCS * PER_INC} entries)`, median(o), 'python json.load', median(l))
}

// ---- prune of an increment of 100k files
const pr = path.join(work, 'prune')
function genPrune() {
  const pristine = path.join(pr, 'pristine')
  if (!fs.existsSync(path.join(pristine, '.done'))) {
    fs.rmSync(pristine, { recursive: true, force: true })
    const mirror = path.join(pristine, 'mirror')
    const entries = []
    for (let i = 0; i < PRUNE_FILES; i++) {
      const rel = `d${Math.floor(i / 10000)}/s${Math.floor(i / 100) % 100}/f${i}.dat`
      if (i % 100 === 0) fs.mkdirSync(path.join(mirror, path.dirname(rel)), { recursive: true })
      fs.writeFileSync(path.join(mirror, rel), `file ${i}\n`)
      entries.push({ k: i, p: rel, size: fs.statSync(path.join(mirror, rel)).size })
    }
    fs.writeFileSync(path.join(pristine, 'entries.json'), JSON.stringify(entries))
    fs.writeFileSync(path.join(pristine, '.done'), '')
  }
  return { pristine, entries: JSON.parse(fs.readFileSync(path.join(pristine, 'entries.json'), 'utf8')) }
}
const { pristine, entries } = genPrune()
for (const [scenario, nextMentionsAll] of [
  ['the next increment supersedes every entry (pure removal)', true],
  ['every entry carried into the next increment', false],
]) {
  const o = []
  const r = []
  for (let k = 0; k < reps; k++) {
    const dst = path.join(pr, 'dst')
    const copy = path.join(pr, 'rm-copy')
    fs.rmSync(dst, { recursive: true, force: true })
    fs.rmSync(copy, { recursive: true, force: true })
    execFileSync('cp', ['-al', pristine, dst])
    // The old increment: every mirror file hardlinked into track/, with its metadata.
    const old = name(0)
    fs.mkdirSync(path.join(dst, old))
    execFileSync('cp', ['-al', path.join(dst, 'mirror'), path.join(dst, old, 'track')])
    writeMeta(path.join(dst, old), old, entries, '2024-01-01T00:00:00.000Z')
    // The next (newest) increment: mentions every path, or none.
    const next = name(1)
    fs.mkdirSync(path.join(dst, next), { recursive: true })
    if (nextMentionsAll) {
      execFileSync('cp', ['-al', path.join(dst, 'mirror'), path.join(dst, next, 'track')])
      writeMeta(path.join(dst, next), next, entries, '2024-01-01T00:01:00.000Z')
    } else {
      fs.mkdirSync(path.join(dst, next, 'track'))
      fs.writeFileSync(path.join(dst, next, 'track', 'other.txt'), 'x')
      writeMeta(path.join(dst, next), next, [{ k: 0, p: 'other.txt', size: 1 }], '2024-01-01T00:01:00.000Z')
    }
    // rm -rf gets the same increment folder: an identical hardlinked copy.
    execFileSync('cp', ['-al', path.join(dst, old), copy])
    execFileSync('sync')
    r.push(time('rm', ['-rf', copy]).ms)
    const p = time(process.execPath, [BIN, 'prune', '--dst', dst, '--remove', old, '--json'])
    const j = JSON.parse(p.out)
    if (j.removed[0] !== old || fs.existsSync(path.join(dst, old))) throw new Error('prune did not remove the increment')
    o.push(p.ms)
  }
  record(`prune ${PRUNE_FILES} files: ${scenario}`, median(o), 'rm -rf', median(r))
}

const header = '| operation | ours (s) | peer | peer (s) | ratio |\n|---|---:|---|---:|---:|\n'
const rows = results.map((x) => `| ${x.what} ${x.note} | ${(x.ours / 1000).toFixed(2)} | ${x.peer} | ${(x.peerMs / 1000).toFixed(2)} | **${x.ratio.toFixed(2)}** |`).join('\n')
console.log('\n' + header + rows)
if (args.includes('--write')) {
  const f = path.join(root, 'BENCHMARKS.md')
  let text = fs.readFileSync(f, 'utf8')
  const marker = '<!-- bench:explore -->'
  const block = `${marker}\n### explore: search, list, prune\n\nCommand: \`node bench/explore.js ${args.join(' ')}\` (also \`npm run bench -- --only explore\`) on ${stamp()}, ${os.cpus().length} cores (${os.cpus()[0].model}), page cache warm, medians of ${reps}. Our times are whole CLI invocations (\`node bin/backup.js …\`, Node start-up included).\n\n${header}${rows}\n${marker}`
  text = putBlock(text, marker, block)
  fs.writeFileSync(f, text)
}
