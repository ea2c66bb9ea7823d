/**
 * The only importer of the generated napi loader (`binding.js`). Turns a
 * missing binary into an error that says which platform package is missing
 * and how to build it, and native errors (a JS Error whose `code` the binding set) into BackupErrors.
 */
import { BackupError, ExitCode, errorFor, isErrorCode } from './errors'
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

/**
 * Maps an error thrown by the binding (a JS `Error` whose `code` the binding set: `ECONFIG`, `EIO`…) to the
 * error class of its code; anything else (a napi `AbortError`, a bug) passes through unchanged.
 */
export function fromNative(err: unknown): Error {
  if (!(err instanceof Error)) return new BackupError('EIO', String(err))
  const { code, syscall } = err as NodeJS.ErrnoException
  // Node's own errors (they name a syscall) pass through as they are.
  return isErrorCode(code) && syscall === undefined ? errorFor(code, err.message, { cause: err }) : err
}

/**
 * Awaits a native call, its error mapped by `fromNative`. Most exports return typed objects (declared by the
 * binding's `#[napi(object)]` structs in `binding.d.ts`); the few whose results can be huge (list, search,
 * history) return JSON text, parsed with `callJson` (see docs/design.md, "The binding").
 */
export async function call<T>(p: Promise<T>): Promise<T> {
  try {
    return await p
  } catch (e) {
    throw fromNative(e)
  }
}

/** `call` for the exports that return JSON text: parses it into the documented type. */
export async function callJson<T>(p: Promise<string>): Promise<T> {
  return JSON.parse(await call(p)) as T
}

