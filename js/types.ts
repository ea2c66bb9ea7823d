/**
 * Types shared by the run (`backup.ts`) and the readers of a backup
 * (`explore/`), kept here so neither has to import the other.
 */

/** A per-file problem that did not stop the run. */
export interface Warning {
  /** Path relative to `src`. */
  path: string
  /**
   * Stable code: `permission-denied`, `vanished`, `changed-during-read` (skipped: it kept changing, with
   * `skipInconsistent`), `inconsistent-copy` (stored as read while it kept changing, marked inconsistent),
   * `io-error`, `mirror-missing`.
   * A folder or file that could not be read (any code but `vanished`) keeps its earlier backup.
   */
  code: string
  message: string
}
