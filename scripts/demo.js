#!/usr/bin/env node
// The quick-start demo: builds a small sample tree, backs it up twice with a
// change in between (through the real CLI), and shows the increments.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.join(__dirname, '..')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'axiomatic-demo-'))
const src = path.join(dir, 'Documents')
const w = (rel, text) => {
  fs.mkdirSync(path.dirname(path.join(src, rel)), { recursive: true })
  fs.writeFileSync(path.join(src, rel), text)
}
w('Projects/site/index.html', '<h1>hello</h1>\n')
w('Projects/site/data.json', '{"v": 1}\n')
w('Projects/site/node_modules/dep/index.js', 'module.exports = 1\n')
w('Notes/todo.txt', 'buy milk\n')
w('Notes/ideas.md', '# ideas\n')
w('Notes/scratch.tmp', 'junk\n')
w('readme.md', 'my documents\n')
fs.symlinkSync('Notes/todo.txt', path.join(src, 'todo-link'))

const config = {
  src: 'Documents',
  dst: 'Backups',
  include_dirs: ['Notes'],
  track_dirs: ['Projects'],
  include_files: ['*.md'],
  track_files: ['todo-link'],
  exclude_dirs: ['node_modules:rec'],
  exclude_files: ['*.tmp'],
}
fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2))

const backup = (...args) => {
  console.log(`\n$ backup ${args.join(' ')}`)
  const r = spawnSync(process.execPath, [path.join(root, 'bin', 'backup.js'), ...args], { cwd: dir, stdio: 'inherit' })
  if (r.status !== 0 && r.status !== 1) process.exit(r.status ?? 2)
}

console.log(`sample tree and config in ${dir}`)
console.log(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))
backup('run', '--config', 'config.json')

// A change between the runs: edit, add, delete.
fs.writeFileSync(path.join(src, 'Projects/site/data.json'), '{"v": 2}\n')
w('Projects/site/style.css', 'h1 { color: teal }\n')
fs.rmSync(path.join(src, 'Projects/site/index.html'))
// Make sure the mtime differs even on coarse clocks.
const later = new Date(Date.now() + 2000)
fs.utimesSync(path.join(src, 'Projects/site/data.json'), later, later)
spawnSync(process.execPath, ['-e', 'setTimeout(()=>{},1100)'])

backup('run', '--dry-run', '--verbose', '--config', 'config.json')
backup('run', '--config', 'config.json')
backup('explain', 'Projects/site/node_modules/dep/index.js', '--config', 'config.json')

console.log('\nincrements:')
const dst = path.join(dir, 'Backups')
for (const name of fs.readdirSync(dst).filter((n) => n.startsWith('backup_')).sort()) {
  const meta = JSON.parse(fs.readFileSync(path.join(dst, name, `${name}.json`), 'utf8'))
  console.log(`  ${name}  new ${meta.summary.new}, changed ${meta.summary.changed}, deleted ${meta.summary.deleted}`)
  for (const [p, e] of Object.entries(meta.file_catalog)) console.log(`    ${e.op.padEnd(8)} ${p}  sha256 ${String(e.sha256).slice(0, 12)}…`)
}
const walk = (d, pre = '') =>
  fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name), `${pre}${e.name}/`) : [`${pre}${e.name}`]))
console.log('\nmirror:')
for (const f of walk(path.join(dst, 'mirror')).sort()) console.log(`  ${f}`)
console.log(`\n(the demo folder ${dir} is left for you to look at; try:`)
console.log(`  npx backup list -d ${dst}`)
console.log(`  npx backup search -d ${dst} --mask site`)
console.log(`  npx backup restore -d ${dst} --to ${path.join(dir, 'restored')} --at ${'$'}(ls ${dst} | grep backup_ | head -1)`)
console.log(`  npx backup checksum ${src} --out ${path.join(dir, 'report.json')} && npx backup verify ${path.join(dir, 'report.json')})`)
