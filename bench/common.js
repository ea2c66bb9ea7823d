// Helpers shared by the benchmark scripts: timing a command, medians.
'use strict'
const { spawnSync } = require('node:child_process')

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Runs a command to completion; its wall time in ms and its stdout. Exit 0 or 1 is success. */
function time(cmd, argv, opts = {}) {
  const t = process.hrtime.bigint()
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 1 << 30, ...opts })
  const ms = Number(process.hrtime.bigint() - t) / 1e6
  if (r.status !== 0 && r.status !== 1) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr}`)
  return { ms, out: r.stdout }
}

module.exports = { median, time }
