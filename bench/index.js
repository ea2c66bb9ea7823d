#!/usr/bin/env node
// Benchmark of the catalog index (issue 13): 1,000 increments holding
// 1,000,000 catalog entries in total, generated directly in the on-disk
// format (no backups are run), with a small mirror state. Measured:
//
//   index build (1M entries), adding one increment of 10k entries,
//   timeline, a 10k-entry folder at a point in time, one file's history,
//   a search by mask, a diff between two points,
//
// each as a request (a library call in a running process: open the index,
// check it against the disk, query, JSON), as a whole HTTP request to
// `backup serve` (`serve()` started in this process: the route, the
// seam's work, the JSON response read by a client) and, where a CLI command
// exists, as a whole CLI invocation (Node start-up included). Targets from
// the issue are printed beside the medians.
//
//   node bench/index.js [--quick] [--reps N] [--write]      (also `npm run bench -- --only index`)
//   --quick: 100 increments, 100k entries (a check that it works; targets are for the full size)
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const reps = Number(args[args.indexOf('--reps') + 1]) || 5
const root = path.join(__dirname, '..')
const work = path.join(process.env.BENCH_DIR || path.join(os.tmpdir(), 'axiomatic-bench'), quick ? 'index-quick' : 'index')
const BIN = path.join(root, 'bin', 'backup.js')
const INCS = quick ? 100 : 1000
const TOTAL = quick ? 100_000 : 1_000_000
const BIG = 10_000 // files of the one big folder (all in the first increment)
const FIRST = Math.max(BIG + 10_000, Math.round(TOTAL * 0.1)) // the first increment: the initial backup
const PER = Math.round((TOTAL - FIRST) / (INCS - 1)) // each later increment

const { median, time, stamp, putBlock } = require('./common')
const lib = require(root)

const name = (i) => {
  const t = new Date(Date.UTC(2024, 0, 1) + i * 3600_000)
  const p = (n, w = 2) => String(n).padStart(w, '0')
  return `backup_${t.getUTCFullYear()}${p(t.getUTCMonth() + 1)}${p(t.getUTCDate())}_${p(t.getUTCHours())}${p(t.getUTCMinutes())}${p(t.getUTCSeconds())}`
}
const iso = (i) => new Date(Date.UTC(2024, 0, 1) + i * 3600_000).toISOString()
const sha = (k) => (k.toString(16).padStart(8, '0') + 'cd').repeat(7).slice(0, 64)

/** Metadata exactly as the engine writes it (head, then the catalog, one entry per line). */
function writeMeta(dst, inc, i, entries) {
  const dir = path.join(dst, inc)
  fs.mkdirSync(dir, { recursive: true })
  const fd = fs.openSync(path.join(dir, `${inc}.json`), 'w')
  const count = (op) => entries.filter((e) => e.op === op).length
  const head = {
    version: 1,
    backup_name: inc,
    timestamp: iso(i),
    origin: 'run',
    summary: { new: count('new'), changed: count('changed'), deleted: count('deleted'), total: entries.length, bytes: entries.reduce((s, e) => s + e.size, 0) },
    statistics: {},
  }
  let buf = JSON.stringify(head, null, 2).slice(0, -2) + ',\n  "file_catalog": {'
  entries.forEach((e, j) => {
    const mt = 1_704_067_200 + (e.k % 5_000_000)
    const del = e.op === 'deleted'
    buf +=
      (j ? ',\n    ' : '\n    ') +
      JSON.stringify(e.p) +
      ': ' +
      JSON.stringify({ size: e.size, mtime: mt + 0.5, mtime_ns: `${mt}500000000`, mode: 420, kind: 'file', category: del ? 'deleted' : 'track', op: e.op, sha256: sha(e.k), stored_as: 'hardlink' })
    if (buf.length > 1 << 20) {
      fs.writeSync(fd, buf)
      buf = ''
    }
  })
  fs.writeSync(fd, buf + '\n  }\n}\n')
  fs.closeSync(fd)
}

const words = ['report', 'notes', 'photo', 'invoice', 'draft', 'data', 'backup', 'thesis', 'scan', 'mail']
const other = (k) => `home/dir${k % 97}/sub${(k >> 7) % 50}/${words[k % 10]}-${k}.${['pdf', 'txt', 'jpg', 'md'][k % 4]}`
const bigFile = (k) => `big/file-${String(k).padStart(5, '0')}.txt`

function generate(dst) {
  if (fs.existsSync(path.join(dst, '.done'))) return
  fs.rmSync(dst, { recursive: true, force: true })
  fs.mkdirSync(path.join(dst, 'mirror'), { recursive: true })
  let seed = 7
  const rand = (n) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n)
  // Paths alive after each increment (for changes and deletions), and a counter for new ones.
  const alive = []
  let k = 0
  const first = []
  for (let j = 0; j < BIG; j++) first.push({ k: k++, p: bigFile(j), size: 100 + (j % 5000), op: 'new' })
  while (first.length < FIRST) {
    const e = { k: k++, p: '', size: 0, op: 'new' }
    e.p = other(e.k)
    e.size = (e.k * 7919) % 300_000
    first.push(e)
  }
  for (const e of first) alive.push(e.p)
  writeMeta(dst, name(0), 0, first)
  for (let i = 1; i < INCS; i++) {
    const seen = new Set()
    const entries = []
    while (entries.length < PER) {
      const r = rand(100)
      const kk = k++
      if (r < 70) {
        // a changed file (a tenth of them in the big folder)
        const p = r < 7 ? bigFile(rand(BIG)) : alive[rand(alive.length)]
        if (seen.has(p)) continue
        seen.add(p)
        entries.push({ k: kk, p, size: (kk * 7919) % 300_000, op: 'changed' })
      } else if (r < 85) {
        const p = other(kk)
        seen.add(p)
        alive.push(p)
        entries.push({ k: kk, p, size: (kk * 7919) % 300_000, op: 'new' })
      } else {
        const at = FIRST + rand(Math.max(1, alive.length - FIRST))
        const p = alive[at] ?? alive[alive.length - 1]
        if (seen.has(p) || p.startsWith('big/')) continue
        seen.add(p)
        alive.splice(at, 1)
        entries.push({ k: kk, p, size: (kk * 7919) % 300_000, op: 'deleted' })
      }
    }
    writeMeta(dst, name(i), i, entries)
  }
  // A small mirror state (a few untracked files; the catalogs are what is measured).
  const meta = path.join(dst, '.axiomatic')
  fs.mkdirSync(meta, { recursive: true })
  const lines = [JSON.stringify({ format: 'axiomatic-mirror-state', version: 1, entries: 100 })]
  for (let j = 0; j < 100; j++) {
    const p = `untracked/u${j}.log`
    fs.mkdirSync(path.join(dst, 'mirror', 'untracked'), { recursive: true })
    fs.writeFileSync(path.join(dst, 'mirror', p), `log ${j}\n`)
    lines.push(JSON.stringify({ p, k: 'file', s: `log ${j}\n`.length, m: 1704067200000000000, mode: 420, t: false }))
  }
  fs.writeFileSync(path.join(meta, 'state.jsonl'), lines.join('\n') + '\n')
  fs.writeFileSync(path.join(dst, '.done'), '')
}

const results = []
function record(what, ms, target, note = '') {
  results.push({ what, ms, target, note })
  const ok = target === null ? '' : ms <= target ? 'met' : 'MISSED'
  console.log(`${what.padEnd(60)} ${ms.toFixed(0).padStart(7)} ms  target ${target === null ? '-' : `≤ ${target}`} ${ok} ${note}`)
}

async function ms(fn) {
  const t = process.hrtime.bigint()
  const out = await fn()
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, out }
}

async function main() {
  const dst = path.join(work, 'dst')
  console.error(`generating ${INCS} increments, ${TOTAL} catalog entries in ${dst}…`)
  generate(dst)
  const index = path.join(dst, '.axiomatic', 'index.sqlite')
  const extra = path.join(dst, name(INCS))
  fs.rmSync(extra, { recursive: true, force: true })

  // Build (first use): the index file removed each time.
  const builds = []
  for (let r = 0; r < Math.min(reps, 3); r++) {
    fs.rmSync(index, { force: true })
    builds.push((await ms(() => lib.rebuildIndex(dst))).ms)
  }
  record(`index build (${INCS} increments, ${TOTAL} entries)`, median(builds), 10_000, `(${(fs.statSync(index).size / 1048576).toFixed(0)} MiB)`)

  // Adding one increment of 10k entries (what a run's update costs).
  const adds = []
  const entries = Array.from({ length: 10_000 }, (_, j) => ({ k: 9_000_000 + j, p: j % 2 ? other(j * 13) : `added/f${j}.txt`, size: j, op: j % 2 ? 'changed' : 'new' }))
  for (let r = 0; r < Math.min(reps, 3); r++) {
    fs.rmSync(extra, { recursive: true, force: true })
    await lib.listIncrements(dst) // the index is up to date again
    writeMeta(dst, name(INCS), INCS, entries)
    adds.push((await ms(() => lib.listIncrements(dst))).ms)
  }
  record('add one increment of 10k entries (update + list)', median(adds), 1000)
  fs.rmSync(extra, { recursive: true, force: true })
  await lib.listIncrements(dst)

  const incs = (await lib.listIncrements(dst)).increments.map((i) => i.name)
  const mid = incs[Math.floor(incs.length / 2)]
  const cases = [
    ['timeline', 300, () => lib.timeline(dst), (o) => `${o.increments.length} increments`],
    [`folder big/ (${BIG} entries) at ${mid}`, 200, () => lib.tree(dst, { path: 'big', at: mid }), (o) => `${o.entries.length} entries`],
    ['folder big/ at the latest state (the mirror)', 200, () => lib.tree(dst, { path: 'home/dir5/sub3' }), (o) => `${o.entries.length} entries`],
    ['history of big/file-00042.txt', 50, () => lib.history(dst, 'big/file-00042.txt'), (o) => `${o.versions.length} versions`],
    ['search --mask thesis-12347 (a rare name)', 300, () => lib.search(dst, { masks: ['thesis-12347'] }), (o) => `${o.hits.length} hits`],
    ['search --mask "*.pdf" --size ">250K" --last-backups 10', 300, () => lib.search(dst, { masks: ['*.pdf'], size: '>250K', lastBackups: 10 }), (o) => `${o.hits.length} hits`],
    ['diff of the two newest increments', 500, () => lib.diff(dst), (o) => `${o.items.length} paths`],
    [`diff ${incs[Math.floor(incs.length / 2) - 10]} → ${mid} (10 increments)`, 500, () => lib.diff(dst, { from: incs[Math.floor(incs.length / 2) - 10], to: mid }), (o) => `${o.items.length} paths`],
    [`diff first → last (${incs.length} increments)`, null, () => lib.diff(dst, { from: incs[0], to: incs.at(-1) }), (o) => `${o.items.length} paths`],
  ]
  for (const [what, target, fn, note] of cases) {
    const t = []
    let out
    for (let r = 0; r < reps; r++) {
      const x = await ms(fn)
      t.push(x.ms)
      out = x.out
    }
    record(`request: ${what}`, median(t), target, `(${note(out)})`)
  }

  // Whole HTTP requests to `backup serve` (fetch → route → BackupData → the index → JSON read back).
  const s = await lib.serve(dst)
  try {
    const get = async (route) => {
      const r = await fetch(s.origin + route, { headers: { authorization: `Bearer ${s.token}` } })
      const body = Buffer.from(await r.arrayBuffer())
      return { status: r.status, bytes: body.length, json: () => JSON.parse(body.toString('utf8')) }
    }
    const q = (o) => '?' + new URLSearchParams(o).toString()
    const requests = [
      ['GET /api/increments (the timeline)', 300, '/api/increments', (o) => `${o.json().increments.length} increments`],
      [`GET /api/tree big/ (${BIG} entries) at ${mid}`, 200, '/api/tree' + q({ path: 'big', at: mid }), (o) => `${o.json().entries.length} entries`],
      ['GET /api/tree untracked/ (the latest state: the mirror)', 200, '/api/tree' + q({ path: 'untracked' }), (o) => `${o.json().entries.length} entries`],
      ['GET /api/history big/file-00042.txt', 50, '/api/history' + q({ path: 'big/file-00042.txt' }), (o) => `${o.json().versions.length} versions`],
      ['GET /api/search mask=thesis-12347', 300, '/api/search' + q({ mask: 'thesis-12347' }), (o) => `${o.json().hits.length} hits`],
      ['GET /api/diff (the two newest)', 500, '/api/diff', (o) => `${o.json().items.length} paths`],
      [
        `GET /api/file big/file-00042.txt at ${mid} (its folder's tree; no stored bytes here)`,
        null,
        '/api/file' + q({ path: 'big/file-00042.txt', at: mid }),
        (o) => `status ${o.status}`,
      ],
    ]
    for (const [what, target, route, note] of requests) {
      const t = []
      let out
      for (let r = 0; r < reps; r++) {
        const x = await ms(() => get(route))
        t.push(x.ms)
        out = x.out
      }
      const said = out.status === 200 || route.startsWith('/api/file') ? note(out) : `status ${out.status}: ${out.json().error?.message}`
      record(`serve: ${what}`, median(t), target, `(${said}, ${(out.bytes / 1024).toFixed(0)} KiB)`)
    }
  } finally {
    await s.close()
  }

  // Whole CLI commands (Node start-up and the CLI's loading included).
  const cli = [
    ['list --json', ['list', '--dst', dst, '--json']],
    ['history big/file-00042.txt --json', ['history', 'big/file-00042.txt', '--dst', dst, '--json']],
    ['search --mask thesis-12347 --json', ['search', '--mask', 'thesis-12347', '--dst', dst, '--json']],
    ['diff --json (the two newest)', ['diff', '--dst', dst, '--json']],
  ]
  for (const [what, argv] of cli) {
    const t = []
    for (let r = 0; r < reps; r++) t.push(time(process.execPath, [BIN, ...argv]).ms)
    record(`command: backup ${what}`, median(t), null)
  }
  const startup = []
  for (let r = 0; r < reps; r++) startup.push(time(process.execPath, [BIN, '--version']).ms)
  record('command: backup --version (Node start-up alone)', median(startup), null)

  const header = '| measured | median (ms) | target (ms) | |\n|---|---:|---:|---|\n'
  const rows = results
    .map((x) => `| ${x.what} ${x.note} | ${x.ms.toFixed(0)} | ${x.target === null ? '' : `≤ ${x.target}`} | ${x.target === null ? '' : x.ms <= x.target ? 'met' : '**missed**'} |`)
    .join('\n')
  console.log('\n' + header + rows)
  if (args.includes('--write')) {
    const f = path.join(root, 'BENCHMARKS.md')
    let text = fs.readFileSync(f, 'utf8')
    const marker = `<!-- bench:index${quick ? ':quick' : ''} -->`
    const block =
      `${marker}\n### catalog index: ${INCS} increments, ${TOTAL} entries\n\nCommand: \`node bench/index.js ${args.join(' ')}\` (also \`npm run bench -- --only index\`) on ` +
      `${stamp()}, ${os.cpus().length} cores (${os.cpus()[0].model}), load ${os.loadavg()[0].toFixed(1)}, page cache warm, medians of ${reps}. ` +
      '"request" = a library call in a running process (open the index, check it against the disk, query, JSON); ' +
      '"serve" = a whole HTTP request to `backup serve` started in the bench process (route, BackupData, JSON read back by the client); ' +
      '"command" = a whole CLI invocation.\n\n' +
      `${header}${rows}\n${marker}`
    text = putBlock(text, marker, block)
    fs.writeFileSync(f, text)
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(2)
})
