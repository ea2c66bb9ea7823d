/** Exit codes, the same for every command (see docs/design.md). */
export const ExitCode = {
  /** Done. */
  Ok: 0,
  /** Done, but some files were skipped; they are listed as warnings. */
  Partial: 1,
  /** Failed; nothing new was committed. */
  Failed: 2,
  /** Bad usage or configuration; nothing was written. */
  Usage: 64,
} as const

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

/** An error with a stable `code` and the exit code the CLI returns for it. */
export class BackupError extends Error {
  readonly code: string
  readonly exitCode: ExitCodeValue
  constructor(code: string, message: string, exitCode: ExitCodeValue = ExitCode.Failed, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'BackupError'
    this.code = code
    this.exitCode = exitCode
  }
}

/** A configuration or usage mistake: names the file, key or path and what to do (exit 64). */
export class ConfigError extends BackupError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ECONFIG', message, ExitCode.Usage, options)
    this.name = 'ConfigError'
  }
}
