/**
 * Unit tests of the search/restore filter parsers (`js/explore/filters.ts`): every accepted form of
 * `--size`, `--time` and `--at`, the units, the edges (0 bytes, ranges of one value, leap days, a
 * minute or a second as the unit of a date-time), and every refusal with the words the user sees.
 * The Rust core only compares the bounds these produce (catalog.rs `Filter`); it parses nothing.
 */
import { describe, expect, it } from 'vitest'

import { ConfigError } from '../js/errors'
import { parseSize, parseTime, parseWhen } from '../js/explore/filters'

const K = 1024
const local = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0) => new Date(y, mo - 1, d, h, mi, s, ms).getTime()

/** The ConfigError a call throws (a test fails when it throws nothing or something else). */
function refusal(f: () => unknown): ConfigError {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    return e as ConfigError
  }
  throw new Error('expected a ConfigError, nothing was thrown')
}

describe('--size', () => {
  it('a bare size means exactly that many bytes; K/M/G/T are 1024-based, case and a B/iB suffix do not matter', () => {
    expect(parseSize('0')).toEqual({ min: 0, max: 0 })
    expect(parseSize('500')).toEqual({ min: 500, max: 500 })
    expect(parseSize('500B')).toEqual({ min: 500, max: 500 })
    expect(parseSize('500K')).toEqual({ min: 500 * K, max: 500 * K })
    for (const s of ['1k', '1K', '1KB', '1kb', '1KiB', '1 K', ' 1K ']) expect(parseSize(s), s).toEqual({ min: K, max: K })
    expect(parseSize('2M')).toEqual({ min: 2 * K ** 2, max: 2 * K ** 2 })
    expect(parseSize('3G')).toEqual({ min: 3 * K ** 3, max: 3 * K ** 3 })
    expect(parseSize('1T')).toEqual({ min: K ** 4, max: K ** 4 })
  })

  it('fractions are rounded to whole bytes', () => {
    expect(parseSize('1.5G')).toEqual({ min: 1.5 * K ** 3, max: 1.5 * K ** 3 })
    expect(parseSize('0.5K')).toEqual({ min: 512, max: 512 })
    expect(parseSize('1.3K')).toEqual({ min: 1331, max: 1331 }) // 1331.2
  })

  it('comparisons give inclusive bounds in bytes', () => {
    expect(parseSize('>100M')).toEqual({ min: 100 * K ** 2 + 1 })
    expect(parseSize('>=100M')).toEqual({ min: 100 * K ** 2 })
    expect(parseSize('<1G')).toEqual({ max: K ** 3 - 1 })
    expect(parseSize('<=1G')).toEqual({ max: K ** 3 })
    expect(parseSize('>0')).toEqual({ min: 1 })
    expect(parseSize('<=0')).toEqual({ max: 0 })
    expect(parseSize('<1')).toEqual({ max: 0 })
    expect(parseSize(' > 10K')).toEqual({ min: 10 * K + 1 })
  })

  it('a range is low-high, both ends included; a range of one value is that value', () => {
    expect(parseSize('10K-100K')).toEqual({ min: 10 * K, max: 100 * K })
    expect(parseSize('0-1')).toEqual({ min: 0, max: 1 })
    expect(parseSize('5K-5K')).toEqual({ min: 5 * K, max: 5 * K })
    expect(parseSize('1M - 2M')).toEqual({ min: K ** 2, max: 2 * K ** 2 })
  })

  it('refuses what it cannot read, naming the option, the text and the accepted forms', () => {
    const forms = '`500K` (exactly), `>100M`, `>=100M`, `<1G`, `<=1G`, `10K-100K` (K/M/G/T are 1024-based)'
    for (const [spec, part] of [
      ['', ''],
      ['big', 'big'],
      ['>10X', '10X'],
      ['10P', '10P'],
      ['-5', '-5'],
      ['1e3', '1e3'],
      ['1,5K', '1,5K'],
      ['.5K', '.5K'],
      ['>>1K', '>1K'],
      ['=1K', '=1K'],
      ['1K-', '1K-'],
      ['1-2-3', '1-2-3'],
    ]) {
      const e = refusal(() => parseSize(spec))
      expect(e.message, spec).toBe(`--size ${JSON.stringify(spec)}: cannot read ${JSON.stringify(part)}; use ${forms}`)
      expect(e.exitCode).toBe(64)
    }
  })

  it('refuses an empty range and "smaller than 0 bytes"', () => {
    expect(refusal(() => parseSize('100K-10K')).message).toBe('--size "100K-10K": the range is empty (102400 > 10240 bytes); write it low-high')
    expect(refusal(() => parseSize('<0')).message).toBe('--size "<0": no file is smaller than 0 bytes')
    expect(refusal(() => parseSize('<0K')).message).toBe('--size "<0K": no file is smaller than 0 bytes')
  })
})

describe('--time', () => {
  it('a date is that whole local day: [its start, the next day’s start)', () => {
    expect(parseTime('2024-01-15')).toEqual({ minMs: local(2024, 1, 15), maxMs: local(2024, 1, 16) })
    // Month and year ends, and a leap day.
    expect(parseTime('2024-01-31')).toEqual({ minMs: local(2024, 1, 31), maxMs: local(2024, 2, 1) })
    expect(parseTime('2023-12-31')).toEqual({ minMs: local(2023, 12, 31), maxMs: local(2024, 1, 1) })
    expect(parseTime('2024-02-29')).toEqual({ minMs: local(2024, 2, 29), maxMs: local(2024, 3, 1) })
  })

  it('a date-time is that minute, or that second when seconds are given; T or a space separates', () => {
    expect(parseTime('2024-01-15T10:30')).toEqual({ minMs: local(2024, 1, 15, 10, 30), maxMs: local(2024, 1, 15, 10, 31) })
    expect(parseTime('2024-01-15 10:30')).toEqual(parseTime('2024-01-15T10:30'))
    expect(parseTime('2024-01-15T10:30:15')).toEqual({ minMs: local(2024, 1, 15, 10, 30, 15), maxMs: local(2024, 1, 15, 10, 30, 16) })
    expect(parseTime('2024-01-15T23:59:59')).toEqual({ minMs: local(2024, 1, 15, 23, 59, 59), maxMs: local(2024, 1, 16) })
  })

  it('comparisons: > and >= from the start on, < before the start, <= up to the end', () => {
    expect(parseTime('>2024-01-01')).toEqual({ minMs: local(2024, 1, 1) })
    expect(parseTime('>=2024-01-01')).toEqual({ minMs: local(2024, 1, 1) })
    expect(parseTime('<2024-01-31')).toEqual({ maxMs: local(2024, 1, 31) })
    expect(parseTime('<=2024-01-31')).toEqual({ maxMs: local(2024, 2, 1) })
    expect(parseTime('<=2024-01-31T12:00')).toEqual({ maxMs: local(2024, 1, 31, 12, 1) })
    expect(parseTime(' >2024-01-01 ')).toEqual({ minMs: local(2024, 1, 1) })
  })

  it('a range a..b includes both ends; a..a is that day', () => {
    expect(parseTime('2024-01-01..2024-01-15')).toEqual({ minMs: local(2024, 1, 1), maxMs: local(2024, 1, 16) })
    expect(parseTime('2024-01-15..2024-01-15')).toEqual({ minMs: local(2024, 1, 15), maxMs: local(2024, 1, 16) })
    expect(parseTime('2024-01-15T10:00..2024-01-15T10:00')).toEqual({ minMs: local(2024, 1, 15, 10), maxMs: local(2024, 1, 15, 10, 1) })
  })

  it('refuses what it cannot read, naming the option, the text and the accepted forms', () => {
    for (const [spec, part] of [
      ['', ''],
      ['yesterday', 'yesterday'],
      ['2024-1-5', '2024-1-5'],
      ['15.01.2024', '15.01.2024'],
      ['2024-01-15T10', '2024-01-15T10'],
      ['2024-01-15T10:30Z', '2024-01-15T10:30Z'],
      ['>', ''],
      ['2024-01-01..', ''],
      ['2024-01-01...2024-01-02', '.2024-01-02'],
    ]) {
      const e = refusal(() => parseTime(spec))
      expect(e.message, spec).toMatch(new RegExp(`^--time ${escape(JSON.stringify(spec))}: cannot read ${escape(JSON.stringify(part))}; use \`2024-01-15\` \\(that day\\)`))
      expect(e.message).toContain('`2024-01-01..2024-01-15` (both days included)')
    }
  })

  it('refuses a date or time that is not on the calendar or the clock (nothing rolls over into the next month or hour)', () => {
    for (const [spec, text] of [
      ['2024-13-01', '2024-13-01'],
      ['2024-00-10', '2024-00-10'],
      ['2024-02-30', '2024-02-30'],
      ['2023-02-29', '2023-02-29'],
      ['2024-04-31', '2024-04-31'],
      ['2024-01-00', '2024-01-00'],
      ['>2024-02-30', '2024-02-30'],
      ['2024-01-15T24:00', '2024-01-15T24:00'],
      ['2024-01-15T10:60', '2024-01-15T10:60'],
      ['2024-01-15T10:30:60', '2024-01-15T10:30:60'],
      ['2024-01-01..2024-02-30', '2024-02-30'],
    ]) {
      expect(refusal(() => parseTime(spec)).message, spec).toBe(`--time ${JSON.stringify(spec)}: ${text} is not a calendar date or time`)
    }
  })

  it('refuses an empty range', () => {
    expect(refusal(() => parseTime('2024-01-15..2024-01-01')).message).toBe('--time "2024-01-15..2024-01-01": the range is empty; write it earlier..later')
  })
})

describe('--at (restore)', () => {
  it('an increment name is taken as a name', () => {
    expect(parseWhen('backup_20240115_103000')).toEqual({ name: 'backup_20240115_103000' })
    expect(parseWhen('backup_20240115_103000_2')).toEqual({ name: 'backup_20240115_103000_2' })
  })

  it('a date is the end of that local day; a local date-time the end of that second; Z or an offset is absolute', () => {
    expect(parseWhen('2024-01-15')).toEqual({ ms: local(2024, 1, 16) - 1 })
    expect(parseWhen('2024-02-29')).toEqual({ ms: local(2024, 3, 1) - 1 })
    expect(parseWhen('2024-01-15T10:30')).toEqual({ ms: local(2024, 1, 15, 10, 30, 0, 999) })
    expect(parseWhen('2024-01-15 10:30:15')).toEqual({ ms: local(2024, 1, 15, 10, 30, 15, 999) })
    expect(parseWhen('2024-01-15T10:30:15.250')).toEqual({ ms: local(2024, 1, 15, 10, 30, 15, 999) })
    expect(parseWhen('2024-01-15T09:30:00Z')).toEqual({ ms: Date.UTC(2024, 0, 15, 9, 30) })
    expect(parseWhen('2024-01-15T10:30:00+01:00')).toEqual({ ms: Date.UTC(2024, 0, 15, 9, 30) })
  })

  it('refuses anything else, naming both accepted kinds', () => {
    for (const when of ['', 'yesterday', 'backup_2024', 'backup_20240115_1030', '20240115', '2024-01-15T10']) {
      const e = refusal(() => parseWhen(when))
      expect(e.message, when).toBe(
        `--at ${JSON.stringify(when)}: use an increment name (backup_20240115_103000, see \`backup list\`) or a date ` +
          '(2024-01-15 = the end of that day, 2024-01-15T10:30 local time, 2024-01-15T09:30:00Z)',
      )
    }
  })

  it('refuses a date or time that is not on the calendar or the clock, with or without an offset', () => {
    for (const when of ['2024-02-30', '2023-02-29', '2024-02-30T10:00', '2024-01-15T10:60', '2024-01-15T25:00', '2024-02-30T10:00:00Z', '2024-04-31T10:00:00+02:00']) {
      expect(refusal(() => parseWhen(when)).message, when).toMatch(new RegExp(`^--at ${escape(JSON.stringify(when))}: .* is not a calendar date or time`))
    }
  })
})

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
