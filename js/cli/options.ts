/**
 * Every flag that more than one command takes, or that needs checking, defined once: its name, its
 * short form, its meaning and a typanion validator that refuses a bad value while the command line is
 * parsed (exit 64, the flag named), before anything is read or written. The meaning of a flag name is
 * the same in every command (README "Commands"); the old spellings kept for one release are in
 * `deprecated` below.
 */
import { Option } from 'clipanion'
import * as t from 'typanion'

import { parseSize, parseTime } from '../explore/filters'

/** A typanion state's error list takes `<path>: <message>`; clipanion prints it after the flag name. */
function fail(state: t.ValidationState | undefined, message: string): false {
  state?.errors?.push(`${state.p ?? '.'}: ${message}`)
  return false
}

/** Replaces the checked text by its parsed value (clipanion applies coercions after the check). */
function coerce<T>(state: t.ValidationState | undefined, value: T): void {
  if (state?.coercions && state.coercion) state.coercions.push([state.p ?? '.', state.coercion.bind(null, value)])
}

/** A whole number in [min, max] as typed (digits only: no sign, no `1e3`, no `0x10`), coerced to a number. */
export function isWholeNumber(min: number, max = Number.MAX_SAFE_INTEGER): t.StrictValidator<unknown, number> {
  const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`
  return t.makeValidator<unknown, number>({
    test: (value, state): value is number => {
      if (typeof value !== 'string' || !/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
        return fail(state, `expected a whole number ${range}, got ${JSON.stringify(value)}`)
      }
      coerce(state, Number(value))
      return true
    },
  })
}

/** Seconds: a positive number, fractions allowed (`0.5`), coerced to a number. */
export const isSeconds = t.makeValidator<unknown, number>({
  test: (value, state): value is number => {
    if (typeof value !== 'string' || !/^\d+(\.\d+)?$/.test(value) || Number(value) <= 0) {
      return fail(state, `expected a number of seconds > 0 (e.g. 15 or 2.5), got ${JSON.stringify(value)}`)
    }
    coerce(state, Number(value))
    return true
  },
})

/**
 * A path: any text but the empty one, which `path.resolve` would silently take for the current folder
 * (an unset shell variable, `--to "$DIR"`, must not restore into wherever the user stands).
 */
export const isPath = t.makeValidator<unknown, string>({
  test: (value, state): value is string => {
    if (typeof value !== 'string' || value === '') return fail(state, 'expected a path, got an empty string (an unset shell variable?)')
    if (value.includes('\0')) return fail(state, `expected a path, got ${JSON.stringify(value)} (a NUL byte cannot be in a path)`)
    return true
  },
})

/**
 * A filter checked by its parser (`--size`, `--time`): the parser's own ConfigError (exit 64, the
 * accepted forms listed) is thrown as is; the text is kept, the library parses it again.
 */
function checkedBy(parse: (spec: string) => unknown): t.StrictValidator<unknown, string> {
  return t.makeValidator<unknown, string>({
    test: (value, state): value is string => {
      if (typeof value !== 'string') return fail(state, 'expected text')
      parse(value)
      return true
    },
  })
}

// Where a backup is, and what to work on.

/** `--config FILE`, `-c`: a backup profile (src, dst, rules), in every command that reads one. */
export const config = () => Option.String('--config,-c', 'config.json', { validator: isPath, description: 'Backup profile: the config file with src, dst and rules' })

/** `--dst DIR`, `-d`: the backup folder (mirror/ and the increments); default the dst of --config. */
export const dst = () =>
  Option.String('--dst,-d', { validator: isPath, description: 'The backup folder (holds mirror/ and the increments); default: dst of --config' })

// Output.

export const json = () => Option.Boolean('--json', false, { description: 'Print one JSON object on stdout (stable schema, see README)' })
export const quiet = () => Option.Boolean('--quiet,-q', false, { description: 'No progress and no summary, only problems' })

/** `--dry-run`, `-n`: show what would happen, write nothing. */
export const dryRun = (description: string) => Option.Boolean('--dry-run,-n', false, { description })

/** `--force`: redo or replace what already exists and is fine (metadata that reads, key files). */
export const force = (description: string) => Option.Boolean('--force', false, { description })

/** `--out FILE|DIR`, `-o`: where results are written. */
export const out = (description: string) => Option.String('--out,-o', { validator: isPath, description })

/** Any other path-valued flag (`--to`, `--root`, `--source`, `--pubkey`, …): never empty. */
export const pathOption = (flag: string, description: string) => Option.String(flag, { validator: isPath, description })

// Selecting files.

/** `--mask M`, `-m` (repeatable): a glob or text on the name or relative path. */
export const masks = (description = 'Glob or text on the name or relative path (repeatable)') => Option.Array('--mask,-m', [], { description })

/** `--ignore-case`, `-i`: masks ignore case (as grep -i). */
export const ignoreCase = () => Option.Boolean('--ignore-case,-i', false, { description: 'Masks ignore case' })

export const size = () => Option.String('--size', { validator: checkedBy(parseSize), description: 'Size filter: 500K, >100M, <1G, 10K-100K' })
export const time = () =>
  Option.String('--time', { validator: checkedBy(parseTime), description: 'mtime filter: 2024-01-15, >2024-01-01, <2024-01-31, 2024-01-01..2024-01-15' })

// Numbers.

/** The most threads anyone needs for hashing (far above today's core counts; catches typos such as 40000). */
export const MAX_THREADS = 1024

/** `--threads N`: hashing threads, 1 to 1024. */
export const threads = (description: string) => Option.String('--threads', { validator: isWholeNumber(1, MAX_THREADS), description })

/** A count flag (`--keep-last N`, `--last-backups N`): a whole number ≥ min. */
export const count = (flag: string, min: number, description: string) => Option.String(flag, { validator: isWholeNumber(min), description })

/** `--algo a,b`: hash algorithms, comma-separated. */
export const algo = (description: string) => Option.String('--algo', { description })

/**
 * Old spellings kept for one release: they still work, and the command says once on stderr what to
 * write instead (`BaseCommand.deprecated`). Hidden from `--help`.
 */
export const deprecated = {
  string: (flag: string) => Option.String(flag, { hidden: true }),
  path: (flag: string) => Option.String(flag, { hidden: true, validator: isPath }),
  /** `--backup` of verify: a switch, or `--backup=DST`. */
  switchOrString: (flag: string) => Option.String(flag, { hidden: true, tolerateBoolean: true }),
}
