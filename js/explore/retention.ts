/**
 * The retention policy of `prune`, as restic applies it: `keepLast` keeps
 * the N newest increments; `keepDaily`/`keepWeekly`/`keepMonthly` keep the
 * newest increment of each of the N most recent days / ISO weeks / months
 * (local time) that have one. An increment kept by any rule is kept; the
 * newest increment is always kept.
 */
import { ConfigError } from '../errors'

export interface RetentionPolicy {
  keepLast?: number
  keepDaily?: number
  keepWeekly?: number
  keepMonthly?: number
}

export interface Decision {
  name: string
  keep: boolean
  /** Why it is kept: `last`, `daily`, `weekly`, `monthly`, `newest`. */
  reasons: string[]
}

function isoWeek(d: Date): string {
  const t = new Date(d.getFullYear(), d.getMonth(), d.getDate())
  const day = (t.getDay() + 6) % 7
  t.setDate(t.getDate() - day + 3)
  const firstThursday = new Date(t.getFullYear(), 0, 4)
  const week = 1 + Math.round(((t.getTime() - firstThursday.getTime()) / 86_400_000 - 3 + ((firstThursday.getDay() + 6) % 7)) / 7)
  return `${t.getFullYear()}-W${String(week).padStart(2, '0')}`
}

const pad = (n: number) => String(n).padStart(2, '0')

export function checkPolicy(p: RetentionPolicy): void {
  const given = Object.entries(p).filter(([, v]) => v !== undefined)
  if (given.length === 0) {
    throw new ConfigError('prune needs a policy: --keep-last N, and/or --keep-daily N, --keep-weekly N, --keep-monthly N')
  }
  for (const [k, v] of given) {
    if (!Number.isInteger(v) || (v as number) < 0) {
      const flag = '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
      throw new ConfigError(`${flag}: expected a whole number ≥ 0, got ${String(v)}`)
    }
  }
}

/** Decides for increments given oldest first with their times (ms). */
export function applyPolicy(incs: { name: string; timeMs: number }[], p: RetentionPolicy): Decision[] {
  checkPolicy(p)
  const newestFirst = [...incs].reverse()
  const out = new Map(newestFirst.map((i) => [i.name, { name: i.name, keep: false, reasons: [] as string[] }]))
  const mark = (name: string, why: string) => {
    const d = out.get(name)!
    d.keep = true
    d.reasons.push(why)
  }
  newestFirst.slice(0, p.keepLast ?? 0).forEach((i) => mark(i.name, 'last'))
  const buckets: [keyof RetentionPolicy, string, (d: Date) => string][] = [
    ['keepDaily', 'daily', (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`],
    ['keepWeekly', 'weekly', isoWeek],
    ['keepMonthly', 'monthly', (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}`],
  ]
  for (const [key, why, bucket] of buckets) {
    let left = p[key] ?? 0
    let last: string | undefined
    for (const i of newestFirst) {
      if (left <= 0) break
      const b = bucket(new Date(i.timeMs))
      if (b === last) continue
      last = b
      mark(i.name, why)
      left--
    }
  }
  if (newestFirst.length) mark(newestFirst[0].name, 'newest')
  return incs.map((i) => out.get(i.name)!)
}
