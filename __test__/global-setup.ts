/**
 * One temp folder per test run, under $TMPDIR/axiomatic-tests, removed when the run ends, so
 * repeated `npm test` runs do not fill the disk (a full suite writes a few GB). Set
 * AXIOMATIC_KEEP_TEST_DIRS=1 to keep it for a post-mortem; its path is printed then.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export default function setup(): () => void {
  const base = path.join(os.tmpdir(), 'axiomatic-tests')
  fs.mkdirSync(base, { recursive: true })
  const dir = fs.mkdtempSync(path.join(base, 'run-'))
  process.env.AXIOMATIC_TEST_TMP = dir // inherited by the forked test workers
  return () => {
    if (process.env.AXIOMATIC_KEEP_TEST_DIRS) {
      console.log(`test folders kept in ${dir}`)
      return
    }
    try {
      fs.rmSync(dir, { recursive: true, force: true })
    } catch {
      // Node cannot unlink paths longer than PATH_MAX (the long-path tests make them); rm walks by handles.
      const r = spawnSync('rm', ['-rf', dir], { encoding: 'utf8' })
      if (r.status !== 0) console.warn(`could not remove the test folders in ${dir}: ${r.stderr || r.error}`)
    }
  }
}
