/**
 * The run lock: `dst/.axiomatic/lock`, created exclusively, holding the
 * holder's pid and host. A lock whose pid is dead on this host is stale and
 * taken over; a lock from another host is never broken automatically.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { BackupError, ExitCode } from './errors'

export interface LockInfo {
  pid: number
  host: string
  started: string
  command: string
}

export function lockPath(dst: string): string {
  return path.join(dst, '.axiomatic', 'lock')
}

/** Reads the lock of `dst`, if any. */
export function readLock(dst: string): LockInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(lockPath(dst), 'utf8')) as LockInfo
  } catch {
    return undefined
  }
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
  const why: Record<string, string> = {
    EROFS: 'is on a read-only file system (mounted read-only, or remounted so after disk errors); remount it read-write or check the disk',
    ENOSPC: 'is on a full disk (no space left on device); free space, then run again',
    EDQUOT: 'is over its disk quota; free space, then run again',
    EACCES: 'is not writable by this user (permission denied)',
    EPERM: 'is not writable by this user (operation not permitted)',
  }
  if (!code || !why[code]) return e
  return new BackupError(code === 'EDQUOT' ? 'ENOSPC' : code, `the backup folder ${dst} ${why[code]}; nothing was written`, ExitCode.Failed, { cause: e })
}

/** Takes the lock of `dst`; returns its release function. */
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
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx')
      fs.writeSync(fd, JSON.stringify(me) + '\n')
      fs.fsyncSync(fd)
      fs.closeSync(fd)
      return () => {
        const cur = readLock(dst)
        if (cur && cur.pid === me.pid && cur.host === me.host) fs.rmSync(file, { force: true })
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      const holder = readLock(dst)
      if (holder && holder.host === me.host && !isAlive(holder.pid)) {
        fs.rmSync(file, { force: true }) // stale: its process is gone
        continue
      }
      if (!holder) {
        // Unreadable (a writer died between create and write): stale if old enough.
        const age = Date.now() - fs.statSync(file).mtimeMs
        if (age > 10_000) {
          fs.rmSync(file, { force: true })
          continue
        }
      }
      const who = holder ? `pid ${holder.pid} on ${holder.host}, since ${holder.started} (${holder.command})` : 'a process that is starting'
      throw new BackupError(
        'ELOCKED',
        `${dst} is locked by ${who}. Wait for it to finish. If that process is gone (e.g. the lock comes from another host), remove ${file}.`,
        ExitCode.Failed,
      )
    }
  }
  throw new BackupError('ELOCKED', `cannot take the lock ${file}`, ExitCode.Failed)
}
