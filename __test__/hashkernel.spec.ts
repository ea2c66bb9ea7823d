/**
 * The SHA-256 kernel inside the Node addon (issue 12): on a CPU with SHA
 * instructions ring must pick the fast kernel in the library Node loads, not
 * only in a Rust binary. ring does not say which kernel it chose, so the
 * addon measures SHA-256 and MD5 back to back on one core (CPU time,
 * medians): with SHA instructions SHA-256 is 2–3× faster than MD5, in
 * software 2–3× slower, a gap that load on the machine does not close.
 */
import { describe, expect, it } from 'vitest'

import { native } from '../js/native'

describe('SHA-256 kernel', () => {
  it('the addon hashes SHA-256 with the CPU’s SHA instructions when it has them (faster than MD5, same thread)', (ctx) => {
    const s = native().sha256Speed(16, 9)
    console.log(`addon: SHA-256 ${s.sha256Mbs.toFixed(0)} MB/s, MD5 ${s.md5Mbs.toFixed(0)} MB/s (one core, CPU time)`)
    if (!s.shaExtensions) {
      console.warn('SKIPPED: SHA-256 kernel: this CPU has no SHA-256 instructions; only the software kernels can run')
      ctx.skip()
    }
    expect(s.sha256Mbs, 'ring in the addon does not use the CPU’s SHA instructions').toBeGreaterThan(1.2 * s.md5Mbs)
  })
})
