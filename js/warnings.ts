/**
 * Warning codes, declared once: what the core emits (`crates/core/src/error.rs`
 * lists who emits which). The README describes each under "Warning codes".
 */
import type { BindingWarning } from './native'

export type WarningCode =
  // Any reader of files (from the OS error): the folder or file keeps its earlier backup, except `vanished`.
  | 'permission-denied'
  | 'vanished'
  | 'io-error'
  // `run`
  | 'changed-during-read'
  | 'inconsistent-copy'
  | 'mirror-missing'
  | 'symlink-unsupported'
  | 'xattrs-not-copied'
  // `run` and `restore`, once each, with path "": what the target or a non-root user cannot hold.
  | 'target-no-xattrs'
  | 'target-no-acls'
  | 'target-no-hardlinks'
  | 'xattrs-need-root'
  // `restore`
  | 'exists'
  | 'unsafe-path'
  | 'symlink-in-target'
  | 'not-a-directory'
  | 'missing-in-backup'
  | 'not-found'
  | 'checksum-mismatch'
  | 'overwritten-version'
  | 'xattrs-not-restored'
  | 'aborted'
  // `recreate`
  | 'unreadable'
  // `run` and `recreate`: the catalog index (dst/.axiomatic/index.sqlite) could not be updated; the next reader rebuilds it.
  | 'index-not-updated'

/** A per-path problem that did not stop the command (path relative to `src`, or to the backup folder). */
export type Warning = Omit<BindingWarning, 'code'> & { code: WarningCode }

/** The binding's warnings with their codes typed (the core emits only the codes above). */
export function typedWarnings(ws: BindingWarning[]): Warning[] {
  return ws as Warning[]
}
