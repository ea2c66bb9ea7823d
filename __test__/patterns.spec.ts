/**
 * Selection semantics: the README's worked examples, line by line, and a
 * property test of the Rust walker against a straightforward reference
 * implementation of the rules (written here from the README, sharing no code
 * with the walker).
 */
import fs from 'node:fs'
import path from 'node:path'

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import { compileRules, normalizePattern, type RuleLists } from '../js/patterns'
import { native } from '../js/native'
import { tmpdir, writeTree } from './helpers'

type Rules = RuleLists & { directory_priority?: 'track' | 'include' }

function select(tree: string[], rules: Rules): Record<string, string> {
  const dir = tmpdir('sel-')
  writeTree(dir, Object.fromEntries(tree.map((p) => [p, 'x'])))
  const out = native().selectFiles(dir, compileRules(rules, rules.directory_priority ?? 'track'))
  fs.rmSync(dir, { recursive: true })
  return Object.fromEntries(out.map((c) => [c.path, c.role]))
}

// ---- the reference implementation ---------------------------------------

function globToRegex(glob: string): RegExp {
  const segs = glob.split('/').map((s) =>
    s === '**'
      ? '(?:[^/]*(?:/[^/]*)*)'
      : s.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'),
  )
  // `**/` may match zero segments.
  let re = ''
  segs.forEach((s, i) => {
    if (i === 0) re = s
    else if (segs[i - 1] === '(?:[^/]*(?:/[^/]*)*)') re = re.slice(0, -'(?:[^/]*(?:/[^/]*)*)'.length) + '(?:(?:[^/]*(?:/[^/]*)*)/)?' + s
    else re += '/' + s
  })
  return new RegExp(`^${re}$`)
}

/** Does `pattern` (as the user writes it, in list `key`) match `p`? */
function refMatch(key: string, pattern: string, p: string): boolean {
  let s = pattern
  const rec = s.endsWith(':rec')
  if (rec) s = s.slice(0, -4)
  s = s.replace(/^\/+/, '')
  // Only exclude_files match a bare name at any depth (the original matches the file's name there);
  // exclude_dirs are anchored at src like every other list, unless ":rec".
  const anyDepth = key === 'exclude_files' ? rec || !s.includes('/') : rec
  const re = globToRegex(s)
  const segs = p.split('/')
  if (!anyDepth) return re.test(p)
  return segs.some((_, k) => re.test(segs.slice(k).join('/')))
}

function reference(files: string[], rules: Rules): Record<string, string> {
  const any = (key: keyof RuleLists, p: string) => (rules[key] ?? []).some((pat) => refMatch(key, pat, p))
  const out: Record<string, string> = {}
  for (const p of files) {
    const segs = p.split('/')
    const ancestors = segs.slice(0, -1).map((_, i) => segs.slice(0, i + 1).join('/'))
    const inInc = ancestors.some((a) => any('include_dirs', a))
    const inTrk = ancestors.some((a) => any('track_dirs', a))
    const excl = ancestors.some((a) => any('exclude_dirs', a))
    if (any('include_files', p)) out[p] = 'mirrored'
    else if (any('track_files', p)) out[p] = 'tracked'
    else if (!excl && (inInc || inTrk) && !any('exclude_files', p)) {
      out[p] = inTrk && (!inInc || (rules.directory_priority ?? 'track') === 'track') ? 'tracked' : 'mirrored'
    }
  }
  return out
}

// ---- worked examples (the README's table) --------------------------------

const TREE = [
  'a.txt',
  '.bashrc',
  'notes/b.txt',
  'notes/deep/c.txt',
  'Projects/web/data.json',
  'Projects/web/src/data.json',
  'Projects/old/x.txt',
  'Archive/Projects/app/data.json',
  'Documents/report.pdf',
  'Documents/2024/scan.pdf',
  'Documents/node_modules/m.js',
  'Documents/cache/tmp.bin',
  'Documents/x.tmp',
  'Documents/sub/y.tmp',
]

export const EXAMPLES: { rules: Rules; selected: Record<string, string>; why: string }[] = [
  { why: '"*.txt" only matches directly in src', rules: { include_files: ['*.txt'] }, selected: { 'a.txt': 'mirrored' } },
  {
    why: '"*.txt:rec" matches at any depth (≡ **/*.txt)',
    rules: { include_files: ['*.txt:rec'] },
    selected: { 'a.txt': 'mirrored', 'notes/b.txt': 'mirrored', 'notes/deep/c.txt': 'mirrored', 'Projects/old/x.txt': 'mirrored' },
  },
  { why: '"*" matches dot-files', rules: { include_files: ['.*'] }, selected: { '.bashrc': 'mirrored' } },
  {
    why: '"Projects/*/data.json" only that path shape',
    rules: { track_files: ['Projects/*/data.json'] },
    selected: { 'Projects/web/data.json': 'tracked' },
  },
  {
    why: '":rec" on a path pattern ≡ **/Projects/*/data.json',
    rules: { track_files: ['Projects/*/data.json:rec'] },
    selected: { 'Projects/web/data.json': 'tracked', 'Archive/Projects/app/data.json': 'tracked' },
  },
  {
    why: 'a matched directory selects its whole subtree; a leading / is relative to src',
    rules: { track_dirs: ['/notes'] },
    selected: { 'notes/b.txt': 'tracked', 'notes/deep/c.txt': 'tracked' },
  },
  {
    why: 'exclude_dirs are anchored at src: a bare "cache" is src/cache only (as the original backup.py)',
    rules: { include_dirs: ['Documents'], exclude_dirs: ['node_modules', 'cache'] },
    selected: {
      'Documents/report.pdf': 'mirrored',
      'Documents/2024/scan.pdf': 'mirrored',
      'Documents/node_modules/m.js': 'mirrored',
      'Documents/cache/tmp.bin': 'mirrored',
      'Documents/x.tmp': 'mirrored',
      'Documents/sub/y.tmp': 'mirrored',
    },
  },
  {
    why: '"node_modules:rec" excludes at any depth; exclude_files without "/" match file names at any depth',
    rules: { include_dirs: ['Documents'], exclude_dirs: ['node_modules:rec', 'cache:rec'], exclude_files: ['*.tmp'] },
    selected: { 'Documents/report.pdf': 'mirrored', 'Documents/2024/scan.pdf': 'mirrored' },
  },
  {
    why: 'exclusions with "/" are anchored at src',
    rules: { include_dirs: ['Documents'], exclude_files: ['Documents/*.tmp'], exclude_dirs: ['Documents/2024'] },
    selected: {
      'Documents/report.pdf': 'mirrored',
      'Documents/node_modules/m.js': 'mirrored',
      'Documents/cache/tmp.bin': 'mirrored',
      'Documents/sub/y.tmp': 'mirrored',
    },
  },
  {
    why: 'include_dirs + track_dirs overlap: directory_priority "track" (default)',
    rules: { include_dirs: ['Projects'], track_dirs: ['Projects/web'] },
    selected: { 'Projects/web/data.json': 'tracked', 'Projects/web/src/data.json': 'tracked', 'Projects/old/x.txt': 'mirrored' },
  },
  {
    why: 'directory_priority "include"',
    rules: { include_dirs: ['Projects'], track_dirs: ['Projects/web'], directory_priority: 'include' },
    selected: { 'Projects/web/data.json': 'mirrored', 'Projects/web/src/data.json': 'mirrored', 'Projects/old/x.txt': 'mirrored' },
  },
  {
    why: 'file rules beat exclusions: include_files inside an excluded dir',
    rules: { include_dirs: ['Documents'], exclude_dirs: ['Documents/cache'], exclude_files: ['*.pdf'], include_files: ['Documents/cache/*', 'Documents/report.pdf'] },
    selected: {
      'Documents/report.pdf': 'mirrored',
      'Documents/cache/tmp.bin': 'mirrored',
      'Documents/node_modules/m.js': 'mirrored',
      'Documents/x.tmp': 'mirrored',
      'Documents/sub/y.tmp': 'mirrored',
    },
  },
  {
    why: 'track_files tracks wherever it is; include_files beats track_files',
    rules: { include_dirs: ['Documents'], track_files: ['*.pdf:rec', 'a.txt'], include_files: ['a.txt'] },
    selected: {
      'a.txt': 'mirrored',
      'Documents/report.pdf': 'tracked',
      'Documents/2024/scan.pdf': 'tracked',
      'Documents/node_modules/m.js': 'mirrored',
      'Documents/cache/tmp.bin': 'mirrored',
      'Documents/x.tmp': 'mirrored',
      'Documents/sub/y.tmp': 'mirrored',
    },
  },
  {
    why: 'include_files beats track_dirs: such a file is mirrored, not tracked',
    rules: { track_dirs: ['notes'], include_files: ['notes/b.txt'] },
    selected: { 'notes/b.txt': 'mirrored', 'notes/deep/c.txt': 'tracked' },
  },
  { why: 'nothing else is selected (default exclusion)', rules: {}, selected: {} },
]

describe('selection semantics', () => {
  for (const ex of EXAMPLES) {
    it(ex.why, () => {
      expect(select(TREE, ex.rules)).toEqual(ex.selected)
      expect(reference(TREE, ex.rules)).toEqual(ex.selected)
    })
  }

  it('normalization', () => {
    expect(normalizePattern('include_files', '*.txt').glob).toBe('*.txt')
    expect(normalizePattern('include_files', '*.txt:rec').glob).toBe('**/*.txt')
    expect(normalizePattern('track_dirs', '/Projects/').glob).toBe('Projects')
    expect(normalizePattern('exclude_dirs', 'node_modules').glob).toBe('node_modules')
    expect(normalizePattern('exclude_dirs', 'node_modules:rec').glob).toBe('**/node_modules')
    expect(normalizePattern('exclude_files', '*.tmp').glob).toBe('**/*.tmp')
    expect(normalizePattern('exclude_files', 'Documents/*.pdf').glob).toBe('Documents/*.pdf')
    expect(normalizePattern('exclude_files', 'Documents/*.pdf:rec').glob).toBe('**/Documents/*.pdf')
    expect(() => normalizePattern('include_dirs', '../etc')).toThrow(/include_dirs.*"\.\.\/etc".*cannot leave/)
    expect(() => normalizePattern('include_files', ':rec')).toThrow(/empty/)
  })

  it('property: the walker agrees with the reference on random trees and rules', () => {
    const name = fc.constantFrom('a', 'b', 'ab', '.a', 'a.t', 'b.t', 'c d')
    const file = fc.array(name, { minLength: 1, maxLength: 4 }).map((s) => s.join('/'))
    const seg = fc.constantFrom('a', 'b', '*', '?', 'a*', '*.t', '**', '.a', '[ab]')
    const pattern = fc
      .tuple(fc.array(seg, { minLength: 1, maxLength: 3 }), fc.boolean(), fc.boolean())
      .map(([s, rec, lead]) => (lead ? '/' : '') + s.join('/') + (rec ? ':rec' : ''))
    const list = fc.array(pattern, { maxLength: 2 })
    const rules = fc.record({
      include_dirs: list,
      track_dirs: list,
      exclude_dirs: list,
      include_files: list,
      track_files: list,
      exclude_files: list,
      directory_priority: fc.constantFrom('track' as const, 'include' as const),
    })
    const tree = fc.array(file, { minLength: 1, maxLength: 25 }).map((files) => {
      const set = [...new Set(files)]
      return set.filter((f) => !set.some((g) => g.startsWith(f + '/')))
    })
    fc.assert(
      fc.property(tree, rules, (t, r) => {
        expect(select(t, r)).toEqual(reference(t, r))
      }),
      { numRuns: 300 },
    )
  })
})
