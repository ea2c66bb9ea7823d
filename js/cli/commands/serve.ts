import { spawn } from 'node:child_process'

import { Command, Option } from 'clipanion'

import { ExitCode, type ExitCodeValue } from '../../errors'
import { serve } from '../../serve'
import { DstCommand } from '../base'
import * as options from '../options'

/** Addresses that only this machine can reach. */
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

export default class ServeCommand extends DstCommand {
  static paths = [['serve']]
  static usage = Command.Usage({
    description: 'Browse every point in time of a backup in a local web page',
    details: `
      Serves a page (timeline, folders at any point in time, a file's versions side by side, search, the
      difference between two points, downloads of a file or a folder as a tar, sizes over time, status) and
      its JSON API, until stopped with Ctrl-C. Prints the URL to open, with a random access token:
      \`http://127.0.0.1:PORT/?token=…\`. Every request needs the token (the page keeps it in a cookie).

      Binds 127.0.0.1 (this machine only) unless \`--host\` says otherwise; another address is reachable by
      others on the network (the token is still needed; the traffic is plain HTTP), and a warning says so.
      Read-only unless \`--allow-restore\`: then the page can restore into a folder, with the same checks
      as \`backup restore\`.

      With \`--json\`, prints \`{"url", "origin", "token", "dst", "allowRestore"}\` once it listens.

      Exit codes: 0 stopped by SIGINT/SIGTERM; 2 could not start (port in use…); 64 bad usage.

      Reference (the page, the API and its schemas, the security model): README, section "backup serve".
    `,
    examples: [
      ['Browse a backup (open the printed URL)', '$0 serve --dst /media/usb/backup'],
      ['A fixed port, and open the browser', '$0 serve --config usb.json --port 8080 --open'],
      ['Allow restoring from the page', '$0 serve --dst /media/usb/backup --allow-restore'],
      ['Reachable from the local network (token still required)', '$0 serve --dst /srv/backup --host 0.0.0.0 --port 8080'],
    ],
  })

  port = Option.String('--port,-p', '0', { validator: options.isWholeNumber(0, 65535), description: 'TCP port (default: a free one)' })
  host = Option.String('--host', '127.0.0.1', { description: 'Address to bind (default 127.0.0.1: this machine only)' })
  allowRestore = Option.Boolean('--allow-restore', false, { description: 'Allow restoring from the page (default: read-only)' })
  open = Option.Boolean('--open', false, { description: 'Open the page in the default browser' })

  async run(): Promise<ExitCodeValue> {
    const s = await serve(this.backupDir(), { port: Number(this.port), host: this.host, allowRestore: this.allowRestore })
    if (!LOOPBACK.has(this.host)) {
      this.warn(`serving on ${this.host}: other machines can reach this server; the token is still required, but the traffic is plain HTTP (use an SSH tunnel on untrusted networks)`)
    }
    if (this.json) this.print({ url: s.url, origin: s.origin, token: s.token, dst: s.dst, allowRestore: this.allowRestore })
    else {
      this.context.stdout.write(`${s.url}\n`)
      if (!this.quiet) {
        this.context.stderr.write(`serving ${s.dst} (${this.allowRestore ? 'restore allowed' : 'read-only'}); open the URL above; Ctrl-C stops\n`)
      }
    }
    if (this.open) {
      const cmd = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open'
      const child = spawn(cmd, [s.url], { stdio: 'ignore', detached: true })
      child.on('error', () => this.warn(`could not open a browser (${cmd}); open the URL yourself`))
      child.unref()
    }
    await new Promise<void>((stop) => {
      const done = () => {
        process.off('SIGINT', done)
        process.off('SIGTERM', done)
        stop()
      }
      process.on('SIGINT', done)
      process.on('SIGTERM', done)
    })
    await s.close()
    return ExitCode.Ok
  }
}
