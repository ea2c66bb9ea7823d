#!/usr/bin/env node
'use strict'
// A command that never settles (a native callback that never comes, an event that never fires)
// would let Node's event loop run dry and exit 0: a scheduled job would be told that work it never
// finished succeeded. Until the command's promise settles the exit code is 2 (failed), and Node
// running out of work first is said on stderr.
let settled = false
process.exitCode = 2
process.on('exit', () => {
  if (!settled) process.stderr.write('backup: internal error: the command stopped before it finished; treat it as failed (exit 2) and please report it\n')
})
require('../dist/cli/index.js')
  .main()
  .then(
    (code) => {
      settled = true
      process.exitCode = code
    },
    (e) => {
      settled = true
      process.stderr.write(`backup: internal error: ${e && e.stack ? e.stack : e}\n`)
      process.exitCode = 2
    },
  )
