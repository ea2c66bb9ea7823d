/**
 * The records a run leaves for `backup status`: its outcome
 * (`dst/.axiomatic/last-run.json`, written here) and what its probe found
 * the target can do (`dst/.axiomatic/target.json`, written by the core).
 * Both are information only: a missing or unreadable record is `null`.
 */
import fs from 'node:fs'
import path from 'node:path'

import { native } from './native'
import type { Warning } from './warnings'

/** The outcome of the last run of a backup folder. */
export interface LastRun {
  started: string
  finished: string
  /** `ok`, `partial` (files skipped, see warnings) or `failed`. */
  result: 'ok' | 'partial' | 'failed'
  increment: string | null
  warnings: number
  /** The first warnings (at most 20). */
  warningSample: Warning[]
  error: { code: string; message: string } | null
  /**
   * When the newest run that did not fail (`ok` or `partial`) finished: this run's `finished`, or, after a failed
   * run, the one before it carried over. `null` when no run ever succeeded; absent in records of older versions.
   */
  lastSuccess?: string | null
}

/** What the last run's probe found the target can do (`dst/.axiomatic/target.json`). */
export interface TargetInfo {
  probed: string
  caps: { hardlinks: boolean; mtime_granularity_ns: number; symlinks: boolean; link_max: number | null; fs_type: string }
  /** What it cannot do, in words; empty when nothing is limited. */
  limits: string[]
}

/** `dst/.axiomatic/last-run.json` (the name is the core's, see `crates/core/src/layout.rs`). */
export function lastRunPath(dst: string): string {
  return native().layoutPaths(dst).lastRun
}

/** Records the outcome of a run (written by `backup()`): temp file, then rename. A failed run keeps the last success. */
export function writeLastRun(dst: string, r: LastRun): void {
  if (r.lastSuccess === undefined) {
    const before = readLastRun(dst)
    r = { ...r, lastSuccess: r.result === 'failed' ? lastSuccessOf(before) : r.finished }
  }
  const file = lastRunPath(dst)
  const tmp = `${file}.tmp-${process.pid}`
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(tmp, JSON.stringify(r, null, 2) + '\n')
  fs.renameSync(tmp, file)
}

/** The recorded outcome of the last run, or null (never run, or unreadable). */
export function readLastRun(dst: string): LastRun | null {
  try {
    return JSON.parse(fs.readFileSync(lastRunPath(dst), 'utf8')) as LastRun
  } catch {
    return null
  }
}

/** The recorded probe of the target, or null (never probed, or unreadable). */
export function readTarget(dst: string): TargetInfo | null {
  try {
    return JSON.parse(fs.readFileSync(native().layoutPaths(dst).target, 'utf8')) as TargetInfo
  } catch {
    return null
  }
}

/** When the newest successful run of this record finished (older records: their own time unless failed). */
export function lastSuccessOf(r: LastRun | null): string | null {
  if (!r) return null
  if (r.lastSuccess !== undefined) return r.lastSuccess
  return r.result === 'failed' ? null : r.finished
}
