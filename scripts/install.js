#!/usr/bin/env node
// postinstall: make sure the native addon loads (build it from source with
// @napi-rs/cli when no prebuilt binary matches) and that the TypeScript is
// compiled (in a git checkout). Fails loudly, with what to do.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const NAPI_CLI = '@napi-rs/cli@3.10.12'

function run(cmd, args) {
  console.error(`axiomatic-backup: ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' })
  if (r.status !== 0) {
    console.error(`axiomatic-backup: \`${cmd} ${args.join(' ')}\` failed (exit ${r.status}).`)
    process.exit(1)
  }
}

function loads() {
  try {
    require(path.join(root, 'binding.js'))
    return true
  } catch {
    return false
  }
}

if (process.platform === 'win32') {
  console.error('axiomatic-backup: Windows is not supported yet (the core uses Unix file-system calls); use Linux or macOS, e.g. inside WSL.')
  process.exit(1)
}

if (process.env.AXIOMATIC_SKIP_NATIVE_BUILD !== '1' && !loads()) {
  const cargo = spawnSync('cargo', ['--version'], { stdio: 'ignore', shell: process.platform === 'win32' })
  if (cargo.status !== 0) {
    console.error(
      `axiomatic-backup: no prebuilt binary for ${process.platform}-${process.arch} and no Rust toolchain to build one.\n` +
        'Install Rust (https://rustup.rs), then run `npm rebuild axiomatic-backup` (or `npm run build:native` in a checkout).',
    )
    process.exit(1)
  }
  const local = path.join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'napi.cmd' : 'napi')
  // The same command as `npm run build:native` (one definition: package.json), so a build from
  // source generates the very binding.d.ts the TypeScript was checked against.
  const script = require(path.join(root, 'package.json')).scripts['build:native']
  const args = script.trim().split(/\s+/).slice(1)
  if (fs.existsSync(local)) run(local, args)
  else run('npx', ['--yes', NAPI_CLI, ...args])
}

const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
if (fs.existsSync(path.join(root, 'js')) && fs.existsSync(tsc)) {
  run(process.execPath, [tsc, '-p', 'tsconfig.json'])
} else if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) {
  console.error('axiomatic-backup: dist/ is missing and TypeScript is not installed; run `npm install` in the package folder.')
  process.exit(1)
}
