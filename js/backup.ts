/**
 * The backup run, as the library API and the CLI call it: load the config,
 * take the lock, hand the compiled rules to the native engine, return stats.
 */
import { BackupError, ConfigError, ExitCode } from './errors'
import { loadConfig, parseMaxDelete, resolveConfig, type Config, type ResolvedConfig } from './config'
import { acquireLock } from './lock'
import { fromNative, native, type BindingChange, type BindingProgress, type BindingReport, type BindingRole } from './native'
import { typedWarnings, type Warning } from './warnings'
import { readTarget, writeLastRun, type LastRun } from './last-run'

export type { Warning, WarningCode } from './warnings'

/** One path and the change a run gives it (dry run with `listChanges`). */
export type PathChange = BindingChange

/**
 * Statistics of one run (`backup run --json` prints exactly this object): the binding's report (fields documented
 * in `binding.d.ts`, `BindingReport`) and what the JS side adds.
 */
export type Stats = Omit<BindingReport, 'changes' | 'warnings'> & {
  dryRun: boolean
  warnings: Warning[]
  /** What the target cannot do, found by the run's probe (`dst/.axiomatic/target.json`); empty when nothing is limited. */
  targetLimits: string[]
  /** The target's file-system type (from the probe), or null. */
  targetFs: string | null
  /** Only with `listChanges`. */
  changes?: PathChange[]
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
    throw new BackupError('EABORTED', 'the run was aborted before it started; nothing was written')
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
      increment: r.increment,
      recovered: r.recovered,
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
      warnings: typedWarnings(r.warnings),
      hints: r.hints,
      refused: r.refused,
      adopted: r.adopted,
      targetLimits: [],
      targetFs: null,
    }
    const target = opts.dryRun ? null : readTarget(cfg.dst)
    if (target) {
      stats.targetLimits = target.limits
      stats.targetFs = target.caps.fs_type
    }
    if (opts.listChanges) stats.changes = r.changes
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
  role: BindingRole | null
  steps: { path: string; key: string | null; pattern: string | null; effect: string }[]
}

/** Explains which rule selects, tracks or excludes `relPath`. */
export function explain(cfg: ResolvedConfig, relPath: string, isDir: boolean): Explanation {
  const e = native().explainPath(cfg.rules, relPath, isDir)
  return {
    path: relPath,
    selected: e.selected,
    role: e.role ?? null,
    steps: e.steps.map((s) => ({ path: s.path, key: s.key ?? null, pattern: s.pattern ?? null, effect: s.effect })),
  }
}
