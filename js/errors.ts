/** Exit codes, the same for every command (see docs/design.md). */
export const ExitCode = {
  /** Done. */
  Ok: 0,
  /** Done, but some files were skipped; they are listed as warnings. */
  Partial: 1,
  /**
   * Failed; nothing new was committed. Also the alarm of `status --max-age` (stale, last run failed, damaged,
   * corrupt, unreachable: CRITICAL to Nagios-style checks, as 1 is WARNING) and a scheduled run that failed,
   * left files unbacked or found corruption (`run --unattended`).
   */
  Failed: 2,
  /** Bad usage or configuration; nothing was written. */
  Usage: 64,
} as const

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

/**
 * Every error code, declared once. The native ones are those of the core's `Error::code()` and of the binding's
 * lock calls; the rest are raised in JS. `--json` prints it as `{"error": {"code", "message"}}`.
 */
export type ErrorCode =
  /** The configuration, a flag or an argument is unusable (exit 64). Native and JS. */
  | 'ECONFIG'
  /** The command line cannot be parsed (exit 64; CLI only). */
  | 'EUSAGE'
  /** An I/O error stopped the command. Native and JS. */
  | 'EIO'
  /** The run was aborted (`AbortSignal`); the error's `name` is `AbortError`. Native and JS. */
  | 'EABORTED'
  /** On-disk state, metadata or a report cannot be read or fails its check. Native. */
  | 'ECORRUPT'
  /** The run would remove what it should not (a foreign source, a mass deletion); nothing changed. Native. */
  | 'EREFUSED'
  /** The target is full or over quota. Native and JS. */
  | 'ENOSPC'
  /** The target is mounted read-only. Native and JS. */
  | 'EROFS'
  /** The target is not writable by this user. Native (lock) and JS. */
  | 'EACCES'
  /** The same, `EPERM`. JS. */
  | 'EPERM'
  /** Another command holds the backup folder's lock. JS. */
  | 'ELOCKED'
  /** The native addon is missing or the platform unsupported. JS. */
  | 'ENATIVE'
  /** SSH connection or SFTP failure (`compare ssh://…`). JS. */
  | 'ESSH'
  /** SSH key authentication failed. JS. */
  | 'EAUTH'
  /** The SSH host key is unknown or changed. JS. */
  | 'EHOSTKEY'
  /** An SSH step got no answer in time. JS. */
  | 'ETIMEDOUT'

/** The exit code of each error code: usage and configuration 64, everything else 2. */
export const EXIT_FOR: Record<ErrorCode, ExitCodeValue> = {
  ECONFIG: ExitCode.Usage,
  EUSAGE: ExitCode.Usage,
  EIO: ExitCode.Failed,
  EABORTED: ExitCode.Failed,
  ECORRUPT: ExitCode.Failed,
  EREFUSED: ExitCode.Failed,
  ENOSPC: ExitCode.Failed,
  EROFS: ExitCode.Failed,
  EACCES: ExitCode.Failed,
  EPERM: ExitCode.Failed,
  ELOCKED: ExitCode.Failed,
  ENATIVE: ExitCode.Failed,
  ESSH: ExitCode.Failed,
  EAUTH: ExitCode.Failed,
  EHOSTKEY: ExitCode.Failed,
  ETIMEDOUT: ExitCode.Failed,
}

/** Whether `code` is one of ours (a native error's `code`, or an errno Node gives). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(EXIT_FOR, code)
}

/** An error with a stable `code` and the exit code the CLI returns for it. */
export class BackupError extends Error {
  readonly code: ErrorCode
  readonly exitCode: ExitCodeValue
  constructor(code: ErrorCode, message: string, exitCode: ExitCodeValue = EXIT_FOR[code], options?: { cause?: unknown }) {
    super(message, options)
    this.name = code === 'EABORTED' ? 'AbortError' : 'BackupError'
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

/** The error class for a code: `ConfigError` for `ECONFIG`, else `BackupError` (named `AbortError` for `EABORTED`). */
export function errorFor(code: ErrorCode, message: string, options?: { cause?: unknown }): BackupError {
  return code === 'ECONFIG' ? new ConfigError(message, options) : new BackupError(code, message, EXIT_FOR[code], options)
}
