/**
 * System tools some tests need, and the Debian packages that bring them (the
 * same table as `scripts/test-deps.sh`, which `npm test` runs first and which
 * installs them where it can). A test whose tools are missing is skipped,
 * and says so with the install command: never silently.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'

const PACKAGES: Record<string, string> = {
  sshd: 'openssh-server',
  'ssh-keygen': 'openssh-client',
  b3sum: 'b3sum',
  sha256sum: 'coreutils',
  rsync: 'rsync',
  'mkfs.exfat': 'exfatprogs',
  'mount.exfat-fuse': 'exfat-fuse',
  losetup: 'mount',
  setpriv: 'util-linux',
  script: 'bsdutils',
  setfacl: 'acl',
  getfacl: 'acl',
  setfattr: 'attr',
  getfattr: 'attr',
  python3: 'python3',
  strace: 'strace',
  pgrep: 'procps',
  chromium: 'chromium',
  'systemd-analyze': 'systemd',
}

function have(tool: string): boolean {
  if (['/usr/sbin/', '/sbin/'].some((d) => fs.existsSync(d + tool))) return true
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0
}

const told = new Set<string>()

/**
 * `false` when every tool is there (and root, if `root`), else the reason to
 * skip, printed once: use as `it.skipIf(needs(...))`.
 */
export function needs(what: string, tools: string[], opts: { root?: boolean } = {}): string | false {
  const missing = tools.filter((t) => !have(t))
  const reasons: string[] = []
  if (missing.length) {
    const pkgs = [...new Set(missing.map((t) => PACKAGES[t] ?? t))].join(' ')
    reasons.push(`needs ${missing.join(', ')} (install: apt-get install ${pkgs}; \`npm test\` does it when run as root)`)
  }
  if (opts.root && process.getuid?.() !== 0) reasons.push('needs root (it mounts, loops or changes users)')
  if (!reasons.length) return false
  const reason = `SKIPPED: ${what}: ${reasons.join('; ')}`
  if (!told.has(reason)) {
    told.add(reason)
    console.warn(reason)
  }
  return reason
}
