/**
 * The only importer of the generated napi loader (`binding.js`). Turns a
 * missing binary into an error that says which platform package is missing
 * and how to build it, and native errors (`ECONFIG: …`) into BackupErrors.
 */
import { BackupError, ConfigError, ExitCode } from './errors'
import type * as Binding from '../binding'

export type * from '../binding'

function platformTriple(): string {
  const { platform, arch } = process
  if (platform === 'linux') {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
    const libc = report?.header?.glibcVersionRuntime ? 'gnu' : 'musl'
    return `linux-${arch}-${libc}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function load(): typeof Binding {
  if (process.platform === 'win32') {
    throw new BackupError(
      'ENATIVE',
      'axiomatic-backup does not support Windows yet: its core relies on Unix file-system calls (hardlinks, modes, ' +
        'owners, flock). Use it on Linux (tested) or macOS (built, not tested), e.g. inside WSL.',
      ExitCode.Failed,
    )
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('../binding.js') as typeof Binding
  } catch (cause) {
    const triple = platformTriple()
    throw new BackupError(
      'ENATIVE',
      `the native addon for ${triple} is missing: neither axiomatic-backup.${triple}.node nor the package ` +
        `axiomatic-backup-${triple} could be loaded. Build it from source with a Rust toolchain ` +
        `(https://rustup.rs): run \`npm run build:native\` in the package folder (or reinstall with cargo on PATH).`,
      ExitCode.Failed,
      { cause },
    )
  }
}

let cached: typeof Binding | undefined

/** The native binding, loaded on first use. */
export function native(): typeof Binding {
  cached ??= load()
  return cached
}

/** Maps an error thrown by the binding to a BackupError with a code. */
export function fromNative(err: unknown): Error {
  if (!(err instanceof Error)) return new BackupError('EIO', String(err))
  const m = /^(E[A-Z]+): ([\s\S]*)$/.exec(err.message)
  if (!m) return err
  const [, code, message] = m
  if (code === 'ECONFIG') return new ConfigError(message, { cause: err })
  if (code === 'EABORTED') {
    const e = new BackupError(code, message, ExitCode.Failed, { cause: err })
    e.name = 'AbortError'
    return e
  }
  return new BackupError(code, message, ExitCode.Failed, { cause: err })
}
