/**
 * The run lock: an OS lock (`flock`) on `dst/.axiomatic/lock`, taken by the
 * native core and held for the whole command. The kernel releases it when
 * the holder dies, however it dies, so a lock is never "stale" and never
 * taken over: two commands can never both hold it. The file's content (pid,
 * host, start, command) is information only, for messages and `status`.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { BackupError, ExitCode, type ErrorCode } from './errors'
import { fromNative, native } from './native'

export interface LockInfo {
  pid: number
  host: string
  started: string
  command: string
}

/** `dst/.axiomatic/lock` (the name is the core's, see `crates/core/src/layout.rs`). */
export function lockPath(dst: string): string {
  return native().layoutPaths(dst).lock
}

function parseInfo(text: string): LockInfo | undefined {
  try {
    return JSON.parse(text) as LockInfo
  } catch {
    return undefined
  }
}

/**
 * The lock of `dst`, if a lock file is there: its information and whether a
 * process holds the lock right now (`held: false` is the leftover of a
 * process that died; the next command simply takes the lock).
 */
export function readLock(dst: string): (LockInfo & { held: boolean }) | undefined {
  let probe
  try {
    probe = native().probeRunLock(lockPath(dst))
  } catch (e) {
    throw fromNative(e)
  }
  if (!probe) return undefined
  const info = parseInfo(probe.info) ?? { pid: 0, host: '', started: '', command: '' }
  return { ...info, held: probe.held }
}

/** Whether a process with this pid runs on this host. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * The error for a target that cannot be written at all (the first write of a command is the lock): says
 * what is wrong in words, with the errno as the code (`EROFS`, `ENOSPC`, `EACCES`); other errors unchanged.
 */
export function targetError(dst: string, e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException).code
  // errno → our code and what it means.
  const why: Partial<Record<string, [ErrorCode, string]>> = {
    EROFS: ['EROFS', 'is on a read-only file system (mounted read-only, or remounted so after disk errors); remount it read-write or check the disk'],
    ENOSPC: ['ENOSPC', 'is on a full disk (no space left on device); free space, then run again'],
    EDQUOT: ['ENOSPC', 'is over its disk quota; free space, then run again'],
    EACCES: ['EACCES', 'is not writable by this user (permission denied)'],
    EPERM: ['EPERM', 'is not writable by this user (operation not permitted)'],
  }
  const known = code ? why[code] : undefined
  if (!known) return e
  return new BackupError(known[0], `the backup folder ${dst} ${known[1]}; nothing was written`, ExitCode.Failed, { cause: e })
}

/** Takes the lock of `dst`; returns its release function. Refuses (exit 2) while another command holds it. */
export function acquireLock(dst: string, command = 'run'): () => void {
  try {
    return takeLock(dst, command)
  } catch (e) {
    throw targetError(dst, e)
  }
}

function takeLock(dst: string, command: string): () => void {
  const file = lockPath(dst)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const me: LockInfo = { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), command }
  let lock
  try {
    lock = native().acquireRunLock(file, JSON.stringify(me))
  } catch (e) {
    throw fromNative(e)
  }
  if (!lock.held) {
    const holder = parseInfo(lock.holder ?? '')
    const who = holder
      ? `pid ${holder.pid} on ${holder.host}, since ${holder.started} (${holder.command})`
      : 'a process that is starting'
    throw new BackupError(
      'ELOCKED',
      `${dst} is locked by ${who}. Wait for it to finish; the lock is released as soon as that process ends, however it ends.`,
      ExitCode.Failed,
    )
  }
  return () => lock.release()
}
