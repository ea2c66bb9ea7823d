/**
 * "Now", for everything that judges age (`status --max-age`, the scrub's "last verified" times). The test hook
 * `AXIOMATIC_NOW` (an ISO time such as `2030-01-02T03:04:05Z`, or ms since the epoch) replaces the clock, so tests
 * can age a backup without waiting; it is not meant for real use. A value that does not parse is an error, never
 * silently the real clock.
 */
import { ConfigError } from './errors'

/** ms since the epoch: the clock, or `AXIOMATIC_NOW`. */
export function now(): number {
  const fake = process.env.AXIOMATIC_NOW
  if (fake === undefined || fake === '') return Date.now()
  const ms = /^\d+$/.test(fake) ? Number(fake) : Date.parse(fake)
  if (!Number.isFinite(ms)) throw new ConfigError(`AXIOMATIC_NOW=${JSON.stringify(fake)} is neither an ISO time nor ms since the epoch`)
  return ms
}
