/** Human output helpers: sizes, durations, the live progress line. */
import { displayName } from '../names'
import type { Progress } from '../backup'

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  const s = Math.round(ms / 1000)
  if (s < 60) return `${(ms / 1000).toFixed(1)} s`
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

/**
 * A progress line on a TTY; silent otherwise. `labels` names the engine's phases for this command
 * (checksum's and verify's `apply` phase is hashing, not applying a plan).
 */
export class ProgressLine {
  private readonly started = Date.now()
  private last = ''
  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly enabled: boolean,
    private readonly labels: Partial<Record<string, string>> = {},
  ) {}

  /** The line for one progress report (what `update` shows). */
  format(p: Progress, secs: number): string {
    const label = this.labels[p.phase] ?? p.phase
    if (p.phase === 'scan' || p.phase === 'recover' || p.phase === 'plan') {
      return `${label}: ${p.filesScanned.toLocaleString('en-US')} files, ${bytes(p.bytesScanned)}`
    }
    const rate = secs > 0 ? p.bytesDone / secs : 0
    const left = p.bytesTotal - p.bytesDone
    const eta = rate > 0 && left > 0 ? ` · ETA ${duration((left / rate) * 1000)}` : ''
    return `${label}: ${p.opsDone.toLocaleString('en-US')}/${p.opsTotal.toLocaleString('en-US')} files · ${bytes(p.bytesDone)}/${bytes(p.bytesTotal)} · ${bytes(rate)}/s${eta}`
  }

  update = (p: Progress): void => {
    if (!this.enabled) return
    const line = this.format(p, (Date.now() - this.started) / 1000)
    if (line === this.last) return
    this.last = line
    this.stream.write(`\r\x1b[2K${line.slice(0, (this.stream.columns || 100) - 1)}`)
  }

  done(): void {
    if (this.enabled && this.last) this.stream.write('\r\x1b[2K')
  }
}

export interface Colors {
  green: (s: string) => string
  red: (s: string) => string
  yellow: (s: string) => string
  dim: (s: string) => string
  bold: (s: string) => string
}

export function colors(on: boolean): Colors {
  const c = (code: number) => (s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s)
  return { green: c(32), red: c(31), yellow: c(33), dim: c(2), bold: c(1) }
}

/** A path for human output: control characters (a newline in a name) shown escaped. */
export function shown(p: string): string {
  // eslint-disable-next-line no-control-regex
  const s = /[\x00-\x1f\x7f]/.test(p) ? JSON.stringify(p) : p
  // Bytes of a name that is not valid UTF-8: `\xNN` (as `history`, `restore` and `search` accept them).
  return displayName(s)
}

/** Local date and time, `YYYY-MM-DD HH:MM` (`:SS` with seconds). */
export function localTime(ms: number, seconds = false): string {
  const d = new Date(ms)
  const p = (n: number) => String(n).padStart(2, '0')
  const t = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`
  return seconds ? `${t}:${p(d.getSeconds())}` : t
}

/** Left-aligned columns. */
export function table(rows: string[][], rightAligned: number[] = []): string {
  // eslint-disable-next-line no-control-regex
  const width = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').length
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => width(r[i] ?? ''))))
  return rows
    .map((r) =>
      r
        .map((cell, i) => {
          const pad = ' '.repeat(w[i] - width(cell))
          return rightAligned.includes(i) ? pad + cell : i === r.length - 1 ? cell : cell + pad
        })
        .join('  '),
    )
    .join('\n')
}
