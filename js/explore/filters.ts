/**
 * The search filters' syntax, parsed once into plain bounds for the native
 * search. Every mistake is a ConfigError (exit 64) naming the option and
 * the accepted forms; nothing is silently ignored.
 */
import { ConfigError } from '../errors'
import { native } from '../native'

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }
const SIZE_FORMS = '`500K` (exactly), `>100M`, `>=100M`, `<1G`, `<=1G`, `10K-100K` (K/M/G/T are 1024-based)'

function sizeValue(text: string, whole: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim())
  if (!m) throw new ConfigError(`--size ${JSON.stringify(whole)}: cannot read ${JSON.stringify(text)}; use ${SIZE_FORMS}`)
  return Math.round(Number(m[1]) * UNITS[m[2].toUpperCase()])
}

/** `--size`: inclusive bounds in bytes. */
export function parseSize(spec: string): { min?: number; max?: number } {
  const s = spec.trim()
  if (s.startsWith('>=')) return { min: sizeValue(s.slice(2), spec) }
  if (s.startsWith('>')) return { min: sizeValue(s.slice(1), spec) + 1 }
  if (s.startsWith('<=')) return { max: sizeValue(s.slice(2), spec) }
  if (s.startsWith('<')) {
    const v = sizeValue(s.slice(1), spec)
    if (v === 0) throw new ConfigError(`--size ${JSON.stringify(spec)}: no file is smaller than 0 bytes`)
    return { max: v - 1 }
  }
  const range = /^([^-]+)-([^-]+)$/.exec(s)
  if (range) {
    const min = sizeValue(range[1], spec)
    const max = sizeValue(range[2], spec)
    if (min > max) throw new ConfigError(`--size ${JSON.stringify(spec)}: the range is empty (${min} > ${max} bytes); write it low-high`)
    return { min, max }
  }
  const v = sizeValue(s, spec)
  return { min: v, max: v }
}

const TIME_FORMS =
  '`2024-01-15` (that day), `>2024-01-01` (after its start), `<2024-01-31` (before its start), ' +
  '`<=2024-01-31` (up to its end), `2024-01-01..2024-01-15` (both days included); ' +
  'a time may follow the date: `2024-01-15T10:30` (local time)'

/**
 * Whether y-mo-d h:mi:s is on the calendar and the clock. Checked by the numbers, not by `Date`,
 * which rolls `10:60` into 11:00 and February 30 into March 1 without a word.
 */
function onCalendar(y: number, mo: number, d: number, h = 0, mi = 0, s = 0): boolean {
  const days = new Date(Date.UTC(y, mo, 0)).getUTCDate()
  return mo >= 1 && mo <= 12 && d >= 1 && d <= days && h <= 23 && mi <= 59 && s <= 59
}

/** A local date or date-time: [start, end) in ms since the epoch. `option` names the flag in errors. */
function timeValue(text: string, whole: string, option = '--time'): [number, number] {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(text.trim())
  if (!m) throw new ConfigError(`${option} ${JSON.stringify(whole)}: cannot read ${JSON.stringify(text)}; use ${TIME_FORMS}`)
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map((x) => Number(x ?? 0))
  if (!onCalendar(y, mo, d, h, mi, s)) throw new ConfigError(`${option} ${JSON.stringify(whole)}: ${text.trim()} is not a calendar date or time`)
  const start = new Date(y, mo - 1, d, h, mi, s)
  let end: Date
  if (m[4] === undefined) end = new Date(y, mo - 1, d + 1)
  else if (m[6] === undefined) end = new Date(start.getTime() + 60_000)
  else end = new Date(start.getTime() + 1000)
  return [start.getTime(), end.getTime()]
}

/** `--time` (file mtime, local time): min inclusive, max exclusive, in ms. */
export function parseTime(spec: string): { minMs?: number; maxMs?: number } {
  const s = spec.trim()
  if (s.startsWith('>=')) return { minMs: timeValue(s.slice(2), spec)[0] }
  if (s.startsWith('>')) return { minMs: timeValue(s.slice(1), spec)[0] }
  if (s.startsWith('<=')) return { maxMs: timeValue(s.slice(2), spec)[1] }
  if (s.startsWith('<')) return { maxMs: timeValue(s.slice(1), spec)[0] }
  const range = s.split('..')
  if (range.length === 2) {
    const [a] = timeValue(range[0], spec)
    const [, b] = timeValue(range[1], spec)
    if (a >= b) throw new ConfigError(`--time ${JSON.stringify(spec)}: the range is empty; write it earlier..later`)
    return { minMs: a, maxMs: b }
  }
  const [a, b] = timeValue(s, spec)
  return { minMs: a, maxMs: b }
}

const WILDCARD = /[*?[\]{}]/

/** `--mask`: a mask without wildcards means `*M*` (as in the original tool). */
export function normalizeMask(mask: string): string {
  if (mask === '') throw new ConfigError('--mask: an empty mask matches nothing; give a name, part of a name, or a glob such as "*.pdf"')
  return WILDCARD.test(mask) ? mask : `*${mask}*`
}

/** `--path`: a glob when it has wildcards, else a folder-or-file prefix. */
export function parsePathFilter(p: string): { prefix?: string; glob?: string } {
  const clean = p.replace(/^\.\//, '').replace(/\/+$/, '')
  if (clean.startsWith('/') || clean.split('/').includes('..')) {
    throw new ConfigError(`--path ${JSON.stringify(p)}: give a path relative to the backed-up folder (no leading "/", no "..")`)
  }
  return WILDCARD.test(clean) ? { glob: clean } : { prefix: clean }
}

/**
 * `--at WHEN` for restore: an increment name, or an ISO date/date-time
 * (local time unless it ends in `Z` or an offset; a date alone means the
 * end of that day). Returns ms since the epoch, or the name.
 */
export function parseWhen(when: string): { name: string } | { ms: number } {
  if (native().isIncrementName(when)) return { name: when }
  const dateOnly = /^(\d{4})-(\d{2})-(\d{2})$/.exec(when)
  if (dateOnly) return { ms: timeValue(when, when, '--at')[1] - 1 }
  const local = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?$/.exec(when)
  const iso = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.exec(when)
  const parts = (local ?? iso)?.slice(1, 7).map((x) => Number(x ?? 0))
  if (parts && !onCalendar(...(parts as [number, number, number, number, number, number]))) {
    throw new ConfigError(`--at ${JSON.stringify(when)}: ${when} is not a calendar date or time`)
  }
  if (local) {
    const [y, mo, d, h, mi, s] = parts!
    return { ms: new Date(y, mo - 1, d, h, mi, s, 999).getTime() }
  }
  const t = Date.parse(when)
  if (iso && !Number.isNaN(t)) return { ms: t }
  throw new ConfigError(
    `--at ${JSON.stringify(when)}: use an increment name (backup_20240115_103000, see \`backup list\`) or a date ` +
      `(2024-01-15 = the end of that day, 2024-01-15T10:30 local time, 2024-01-15T09:30:00Z)`,
  )
}
