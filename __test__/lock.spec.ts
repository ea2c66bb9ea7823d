/**
 * The run lock is an OS lock: never two holders, whatever the timing, and
 * nothing stale to take over after a holder dies.
 */
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { status } from '../js'
import { ROOT, bump, cli, tmpdir, workspace } from './helpers'
import { expectIncrementsMatchMetadata } from './invariants'

/** Starts `n` node processes at the same instant, each running `script` with `args`. */
async function startTogether(n: number, script: string, args: (i: number) => string[]): Promise<{ code: number | null; out: string; err: string }[]> {
  const gate = Date.now() + 1500
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const p = spawn(process.execPath, ['-e', script, String(gate), ...args(i)], { cwd: ROOT })
        let out = ''
        let err = ''
        p.stdout.on('data', (d) => (out += d))
        p.stderr.on('data', (d) => (err += d))
        p.on('close', (code) => resolve({ code, out, err }))
      }),
    ),
  )
}

const STALE = (pid: number) => JSON.stringify({ pid, host: require('node:os').hostname(), started: 'long ago', command: 'run' })

function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout)
}

async function contendOnce(n: number): Promise<void> {
  const dst = tmpdir()
  fs.mkdirSync(path.join(dst, '.axiomatic'))
  fs.writeFileSync(path.join(dst, '.axiomatic/lock'), STALE(deadPid()))
  const log = path.join(dst, 'log')
  // Each process: wait for the common start instant, try the lock, and while
  // holding it append enter/leave lines with a pause between them.
  const script = `
    const [gate, dst, log] = process.argv.slice(1)
    const { acquireLock } = require('./dist/lock')
    while (Date.now() < Number(gate)) {}
    let release
    try { release = acquireLock(dst, 'test') } catch (e) { process.stdout.write(e.code); process.exit(0) }
    const fs = require('node:fs')
    fs.appendFileSync(log, 'enter ' + process.pid + '\\n')
    const until = Date.now() + 150
    while (Date.now() < until) {}
    fs.appendFileSync(log, 'leave ' + process.pid + '\\n')
    release()
    process.stdout.write('held')
  `
  const res = await startTogether(n, script, () => [dst, log])
  for (const r of res) expect(['held', 'ELOCKED'], r.err).toContain(r.out)
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n')
  const held = res.filter((r) => r.out === 'held').length
  expect(held).toBeGreaterThanOrEqual(1)
  expect(lines.length).toBe(2 * held)
  // Strictly alternating enter/leave of the same process: no overlap.
  for (let i = 0; i < lines.length; i += 2) {
    expect(lines[i]).toMatch(/^enter /)
    expect(lines[i + 1]).toBe(lines[i].replace('enter', 'leave'))
  }
  expect(fs.existsSync(path.join(dst, '.axiomatic/lock'))).toBe(false)
}

describe('run lock', () => {
  it('many processes started together over a stale lock file: never two holders at once', async () => {
    for (let round = 0; round < 4; round++) await contendOnce(16)
  }, 120_000)

  it('simultaneous backup runs over a stale lock: one writer at a time, backup verifies clean', async () => {
    const tree: Record<string, string> = {}
    for (let i = 0; i < 200; i++) tree[`proj/f${i}.txt`] = `v1 ${i}`.repeat(200)
    const w = workspace(tree, { track_dirs: ['proj'] })
    expect(cli(['run', '-c', w.config, '-q']).status).toBe(0)
    for (let i = 0; i < 200; i += 3) {
      fs.writeFileSync(path.join(w.src, `proj/f${i}.txt`), `v2 ${i}`)
      bump(path.join(w.src, `proj/f${i}.txt`))
    }
    fs.writeFileSync(path.join(w.dst, '.axiomatic/lock'), STALE(deadPid()))
    const script = `
      const [gate, config] = process.argv.slice(1)
      while (Date.now() < Number(gate)) {}
      process.argv = [process.argv[0], 'backup', 'run', '-c', config, '--json']
      require('./bin/backup.js')
    `
    const res = await startTogether(6, script, () => [w.config])
    for (const r of res) {
      if (r.code === 2) expect(r.err).toContain('is locked by')
      else expect(r.code, r.err).toBe(0)
    }
    const incs = res.filter((r) => r.code === 0).map((r) => JSON.parse(r.out).increment).filter(Boolean)
    // The changes land in exactly one increment, whoever wrote it.
    expect(incs.length).toBe(1)
    expectIncrementsMatchMetadata(w.dst)
    const v = cli(['verify', '--dst', w.dst, '--json'])
    expect(v.status, v.stdout + v.stderr).toBe(0)
    const s = await status(w.dst)
    expect(s.leftovers.interruptedRun).toBeNull()
    expect(s.lock).toBeNull()
  }, 120_000)

  it('a holder killed with SIGKILL leaves no lock: the next command runs at once', async () => {
    const w = workspace({ 'proj/a.txt': 'a' }, { track_dirs: ['proj'] })
    fs.mkdirSync(path.join(w.dst, '.axiomatic'), { recursive: true })
    const holder = spawn(process.execPath, ['-e', `require('./dist/lock').acquireLock(process.argv[1], 'test'); process.stdout.write('held'); setInterval(() => {}, 1000)`, w.dst], { cwd: ROOT })
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()))
    let s = await status(w.dst)
    expect(s.lock).toMatchObject({ pid: holder.pid, alive: true, command: 'test' })
    expect(cli(['run', '-c', w.config]).status).toBe(2)
    holder.kill('SIGKILL')
    await new Promise((resolve) => holder.on('close', resolve))
    s = await status(w.dst)
    expect(s.lock).toMatchObject({ pid: holder.pid, alive: false })
    const r = cli(['run', '-c', w.config])
    expect(r.status, r.stderr).toBe(0)
  }, 60_000)
})
