/**
 * The backup run, as the library API and the CLI call it: load the config,
 * take the lock, hand the compiled rules to the native engine, return stats.
 */
import { BackupError, ConfigError, ExitCode } from './errors'
import { loadConfig, parseMaxDelete, resolveConfig, type Config, type ResolvedConfig } from './config'
import { acquireLock } from './lock'
import { fromNative, native, type BindingProgress } from './native'
import { readTarget, writeLastRun, type LastRun } from './last-run'
import type { Warning } from './types'

export type { Warning } from './types'

/** One path and the change a run gives it (dry run with `listChanges`). */
export interface PathChange {
  path: string
  role: 'tracked' | 'mirrored'
  change: 'new' | 'changed' | 'deleted' | 'removed' | 'unchanged' | 'start-tracking'
}

/** Statistics of one run (`backup run --json` prints exactly this object). */
export interface Stats {
  /** The increment this run committed, or null. */
  increment: string | null
  /** An increment finished on behalf of an interrupted earlier run, or null. */
  recovered: string | null
  dryRun: boolean
  mirrorFiles: number
  trackedFiles: number
  new: number
  changed: number
  deleted: number
  removedFromMirror: number
  /** Untracked files copied into the mirror. */
  mirrorUpdated: number
  bytesCopied: number
  /** Increment files stored as copies because a hardlink was impossible. */
  linkFallbacks: number
  /** Sockets, FIFOs and devices that the rules selected, skipped. */
  specialSkipped: number
  mtimeToleranceS: number
  durationMs: number
  warnings: Warning[]
  /** Advice about the rules, e.g. `did you mean "*.txt:rec"?`. */
  hints: string[]
  /** What the target cannot do, found by the run's probe (`dst/.axiomatic/target.json`); empty when nothing is limited. */
  targetLimits: string[]
  /** The target's file-system type (from the probe), or null. */
  targetFs: string | null
  /** Only with `listChanges`. */
  changes?: PathChange[]
  /**
   * Dry run only: why the real run would be refused (a foreign source or a mass deletion), or null.
   * A real run is refused with a `BackupError` of code `EREFUSED` instead.
   */
  refused: string | null
  /**
   * The backup folder was made by the original backup.py (no state of ours): its `mirror/` and `mirror.json` were taken
   * as the previous state, so unchanged files were not copied again.
   */
  adopted: boolean
}

export type Progress = BindingProgress

export interface BackupOptions {
  dryRun?: boolean
  /** With dryRun: list every selected path and its change. */
  listChanges?: boolean
  /** Skip files that keep changing while read (overrides the config's `skip_inconsistent`). */
  skipInconsistent?: boolean
  onProgress?: (p: Progress) => void
  signal?: AbortSignal
  /** Take the configured `src` as this backup's source even if the backup records another one. */
  adoptSource?: boolean
  /** Allow any number of removals from the mirror, even all of it. */
  allowMassDelete?: boolean
  /** Overrides the config's `max_delete`: a whole number of files or a percentage string such as `"20%"`. */
  maxDelete?: number | string
}

function resolve(configOrPath: Config | ResolvedConfig | string): ResolvedConfig {
  if (typeof configOrPath === 'string') return loadConfig(configOrPath)
  if ('rules' in configOrPath && 'maxWorkers' in configOrPath) return configOrPath
  return resolveConfig(configOrPath)
}

/** Runs one backup. Rejects with a ConfigError (exit 64) or BackupError (exit 2). */
export async function backup(configOrPath: Config | ResolvedConfig | string, opts: BackupOptions = {}): Promise<Stats> {
  const cfg = resolve(configOrPath)
  if (opts.listChanges && !opts.dryRun) throw new ConfigError('listChanges needs dryRun')
  const maxDelete = opts.maxDelete === undefined ? cfg.maxDelete : parseMaxDelete(opts.maxDelete)
  if (opts.maxDelete !== undefined && maxDelete === undefined)
    throw new ConfigError(`maxDelete (--max-delete) must be a whole number of files or a percentage such as "20%", got ${JSON.stringify(opts.maxDelete)}`)
  if (opts.signal?.aborted) {
    const e = new BackupError('EABORTED', 'the run was aborted before it started; nothing was written', ExitCode.Failed)
    e.name = 'AbortError'
    throw e
  }
  const release = opts.dryRun ? () => {} : acquireLock(cfg.dst)
  const started = new Date().toISOString()
  const record = (r: Omit<LastRun, 'started' | 'finished'>) => {
    if (opts.dryRun) return
    try {
      writeLastRun(cfg.dst, { started, finished: new Date().toISOString(), ...r })
    } catch {
      // The record is informational (`backup status`); never fail a run for it.
    }
  }
  try {
    // A killed `delete`/`prune` is finished before the mirror changes.
    if (!opts.dryRun) native().finishPending(cfg.dst, cfg.maxWorkers)
    const r = await native().runBackup(
      {
        src: cfg.src,
        dst: cfg.dst,
        rules: cfg.rules,
        workers: cfg.maxWorkers,
        mtimeToleranceS: cfg.mtimeToleranceS,
        preservedDirs: cfg.preservedDirs,
        dryRun: !!opts.dryRun,
        listChanges: !!opts.listChanges,
        skipInconsistent: opts.skipInconsistent ?? cfg.skipInconsistent,
        adoptSource: !!opts.adoptSource,
        allowMassDelete: !!opts.allowMassDelete,
        maxDelete,
      },
      opts.onProgress,
      opts.signal,
    )
    const stats: Stats = {
      increment: r.increment ?? null,
      recovered: r.recovered ?? null,
      dryRun: !!opts.dryRun,
      mirrorFiles: r.mirrorFiles,
      trackedFiles: r.trackedFiles,
      new: r.new,
      changed: r.changed,
      deleted: r.deleted,
      removedFromMirror: r.removedFromMirror,
      mirrorUpdated: r.mirrorUpdated,
      bytesCopied: r.bytesCopied,
      linkFallbacks: r.linkFallbacks,
      specialSkipped: r.specialSkipped,
      mtimeToleranceS: r.mtimeToleranceS,
      durationMs: r.durationMs,
      warnings: r.warnings,
      hints: r.hints,
      refused: r.refused ?? null,
      adopted: r.adopted,
      targetLimits: [],
      targetFs: null,
    }
    const target = opts.dryRun ? null : readTarget(cfg.dst)
    if (target) {
      stats.targetLimits = target.limits
      stats.targetFs = target.caps.fs_type
    }
    if (opts.listChanges) stats.changes = r.changes as PathChange[]
    record({
      result: stats.warnings.length ? 'partial' : 'ok',
      increment: stats.increment,
      warnings: stats.warnings.length,
      warningSample: stats.warnings.slice(0, 20),
      error: null,
    })
    return stats
  } catch (e) {
    const err = fromNative(e)
    const code = err instanceof BackupError ? err.code : 'EIO'
    record({ result: 'failed', increment: null, warnings: 0, warningSample: [], error: { code, message: err.message } })
    throw err
  } finally {
    release()
  }
}

/** Why a path (relative to `src`) is or is not selected. */
export interface Explanation {
  path: string
  selected: boolean
  role: 'tracked' | 'mirrored' | null
  steps: { path: string; key: string | null; pattern: string | null; effect: string }[]
}

/** Explains which rule selects, tracks or excludes `relPath`. */
export function explain(cfg: ResolvedConfig, relPath: string, isDir: boolean): Explanation {
  const e = native().explainPath(cfg.rules, relPath, isDir)
  return {
    path: relPath,
    selected: e.selected,
    role: (e.role ?? null) as Explanation['role'],
    steps: e.steps.map((s) => ({ path: s.path, key: s.key ?? null, pattern: s.pattern ?? null, effect: s.effect })),
  }
}
