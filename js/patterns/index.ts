/**
 * Selection-rule semantics, in one place. Patterns are parsed and
 * normalized here once, then compiled and applied by the Rust walker.
 *
 * - Paths are relative to `src`; a leading `/` is relative to `src` too.
 * - `*` and `?` stay within one path segment, `[...]` is a class, `**` spans
 *   segments; `*` matches names that start with `.`.
 * - Include, track and `exclude_dirs` patterns are anchored at `src` (as the
 *   seed and the original backup.py: `"exclude_dirs": ["cache"]` is
 *   `src/cache` only); a trailing `:rec` makes them match at any depth
 *   (`X:rec` ≡ `**∕X`).
 * - `exclude_files` patterns without `/` match a file name at any depth (the
 *   original matches the name there); with `/` they are anchored unless they
 *   end in `:rec`.
 */
import { ConfigError } from '../errors'
import type { BindingPattern, BindingRules } from '../native'

export const DIR_KEYS = ['include_dirs', 'track_dirs', 'exclude_dirs'] as const
export const FILE_KEYS = ['include_files', 'track_files', 'exclude_files'] as const
export const RULE_KEYS = [...DIR_KEYS, ...FILE_KEYS] as const
export type RuleKey = (typeof RULE_KEYS)[number]

export type DirectoryPriority = 'track' | 'include'

export type RuleLists = { [K in RuleKey]?: readonly string[] }

const REC = ':rec'

/** Normalizes one pattern of `key` to a glob relative to `src`. */
export function normalizePattern(key: RuleKey, source: string): BindingPattern {
  const where = `${key}: pattern ${JSON.stringify(source)}`
  let s = source
  const rec = s.endsWith(REC)
  if (rec) s = s.slice(0, -REC.length)
  s = s.replace(/\/{2,}/g, '/').replace(/^\/+/, '').replace(/\/+$/, '')
  while (s.startsWith('./')) s = s.slice(2)
  if (s === '' || s === '.') {
    throw new ConfigError(`${where} is empty; write a path relative to src, e.g. "Documents" or "*.txt:rec"`)
  }
  if (s.split('/').some((seg) => seg === '..' || seg === '.')) {
    throw new ConfigError(`${where} contains "." or ".." segments; patterns are relative to src and cannot leave it`)
  }
  const anyDepth = key === 'exclude_files' ? rec || !s.includes('/') : rec
  const glob = anyDepth && !s.startsWith('**/') && s !== '**' ? `**/${s}` : s
  return { key, source, glob }
}

/** Normalizes all rule lists into the form the native walker compiles. */
export function compileRules(lists: RuleLists, directoryPriority: DirectoryPriority = 'track'): BindingRules {
  const n = (key: RuleKey) => (lists[key] ?? []).map((p) => normalizePattern(key, p))
  return {
    includeDirs: n('include_dirs'),
    trackDirs: n('track_dirs'),
    excludeDirs: n('exclude_dirs'),
    includeFiles: n('include_files'),
    trackFiles: n('track_files'),
    excludeFiles: n('exclude_files'),
    directoryPriority,
  }
}
