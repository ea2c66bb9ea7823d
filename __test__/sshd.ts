/**
 * Real OpenSSH servers on 127.0.0.1 for the specs that go over SSH (`compare`, `repair`): each with its
 * own host key, port and authorized keys, started with `sshd -D` and stopped by `stop()`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'

import { expect } from 'vitest'

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port
      s.close(() => resolve(p))
    })
  })
}

/** An Ed25519 key pair without passphrase at `file` and `file.pub`. */
export function sshKey(file: string): string {
  expect(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]).status).toBe(0)
  return file
}

export interface Sshd {
  port: number
  /** The known_hosts line of this server. */
  knownHostsLine: string
  /** The listening sshd's pid (its children serve the connections). */
  pid: number
  /** Ends every connection it serves (the listener stays). */
  dropConnections(): void
  stop(): void
}

/** Starts an sshd in `home` that lets in root with the keys whose public halves are `authorized`. */
export async function startSshd(home: string, authorized: string[]): Promise<Sshd> {
  fs.mkdirSync(home, { recursive: true })
  const hostKey = sshKey(path.join(home, 'host_key'))
  fs.writeFileSync(path.join(home, 'authorized_keys'), authorized.map((k) => fs.readFileSync(k, 'utf8').trim()).join('\n') + '\n')
  fs.mkdirSync('/run/sshd', { recursive: true })
  const port = await freePort()
  fs.writeFileSync(
    path.join(home, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${path.join(home, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'AllowTcpForwarding yes',
      `PidFile ${path.join(home, 'sshd.pid')}`,
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  )
  const child: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', path.join(home, 'sshd_config')], { stdio: 'ignore' })
  for (let i = 0; i < 50; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => (c.end(), resolve(true)))
      c.on('error', () => resolve(false))
    })
    if (ok) break
    await new Promise((r) => setTimeout(r, 100))
  }
  const pub = fs.readFileSync(`${hostKey}.pub`, 'utf8').trim().split(' ')
  return {
    port,
    knownHostsLine: `[127.0.0.1]:${port} ${pub[0]} ${pub[1]}`,
    pid: child.pid!,
    dropConnections() {
      const kids = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)
      for (const k of kids) {
        try {
          process.kill(Number(k), 'SIGKILL')
        } catch {
          // already gone
        }
      }
    },
    stop() {
      child.kill()
    },
  }
}
