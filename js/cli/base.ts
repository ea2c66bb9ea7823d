/**
 * The shared base of every command. It owns the output concerns, so that a command only computes its
 * result and says what to print: `--json` (one object on stdout, errors as `{error: {code, message}}`),
 * `--quiet`, colours (a terminal and no NO_COLOR), the progress line (a terminal on stderr, neither
 * `--quiet` nor `--json`), warnings and deprecation notes on stderr, and errors mapped to exit codes.
 */
import fs from 'node:fs'

import { Command, UsageError } from 'clipanion'

import type { Progress } from '../backup'
import { loadConfig } from '../config'
import { BackupError, ExitCode, type ExitCodeValue } from '../errors'
import { ProgressLine, colors, shown, type Colors } from './format'
import * as options from './options'

/** Colours on a stream: only on a terminal, never with NO_COLOR (https://no-color.org). */
export function colorsOn(stream: NodeJS.WritableStream): boolean {
  return !!(stream as NodeJS.WriteStream).isTTY && !process.env.NO_COLOR
}

/**
 * Prints an error the way every command does and returns its exit code: a usage mistake 64, a
 * BackupError its own, anything else 2. With `json` the error is the one object on stdout.
 */
export function reportError(e: unknown, json: boolean, stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream): ExitCodeValue {
  const message = e instanceof Error ? e.message : String(e)
  const [code, exit] =
    e instanceof UsageError ? ['EUSAGE', ExitCode.Usage] : e instanceof BackupError ? [e.code, e.exitCode] : ['EIO', ExitCode.Failed]
  if (json) stdout.write(JSON.stringify({ error: { code, message } }) + '\n')
  else stderr.write(`backup: ${message}\n`)
  return exit
}

export abstract class BaseCommand extends Command {
  json = options.json()
  quiet = options.quiet()

  /** The command's work; resolves to its exit code (ExitCode, never a bare number). */
  abstract run(): Promise<ExitCodeValue>

  async execute(): Promise<number> {
    try {
      return await this.run()
    } catch (e) {
      return reportError(e, this.json, this.context.stdout, this.context.stderr)
    }
  }

  /** The `--json` result: one object on stdout. */
  protected print(obj: unknown): void {
    this.context.stdout.write(JSON.stringify(obj, null, 2) + '\n')
  }

  /** Colours for human output on stdout. */
  protected get colors(): Colors {
    return colors(colorsOn(this.context.stdout))
  }

  /** Colours for what goes to stderr (warnings, notes), judged on stderr itself. */
  protected get stderrColors(): Colors {
    return colors(colorsOn(this.context.stderr))
  }

  /** Whether a live progress line is shown: stderr is a terminal and the output is for a person. */
  protected get showProgress(): boolean {
    return !!(this.context.stderr as NodeJS.WriteStream).isTTY && !this.quiet && !this.json
  }

  /**
   * Runs `work` with a progress callback when a progress line is shown (else none, so the engine
   * sends no reports), and clears the line afterwards whatever happens. `labels` names the phases.
   */
  protected async withProgress<T>(labels: Partial<Record<string, string>>, work: (onProgress?: (p: Progress) => void) => Promise<T>): Promise<T> {
    const line = new ProgressLine(this.context.stderr as NodeJS.WriteStream, this.showProgress, labels)
    try {
      return await work(this.showProgress ? line.update : undefined)
    } finally {
      line.done()
    }
  }

  /** One warning line on stderr: `warning: TEXT`. */
  protected warn(text: string): void {
    this.context.stderr.write(`${this.stderrColors.yellow('warning')}: ${text}\n`)
  }

  /** A per-file problem: `warning: PATH: CODE: MESSAGE` (the path shown escaped; none for a whole-run one). */
  protected warning(w: { path?: string; code?: string; message: string }): void {
    this.warn(`${w.path ? shown(w.path) + ': ' : ''}${w.code ? w.code + ': ' : ''}${w.message}`)
  }

  /**
   * An old spelling was used: it works for this release; one line on stderr (never on stdout, so
   * `--json` output stays one object) says what to write instead.
   */
  protected deprecated(old: string, instead: string): void {
    this.context.stderr.write(`backup: ${old} is deprecated and will be removed in the next release; ${instead}\n`)
  }
}

/** Commands that read a backup profile: `--config FILE` (`-c`, default ./config.json). */
export abstract class ProfileCommand extends BaseCommand {
  config = options.config()
}

/** Commands that work on a backup folder: `--dst DIR`, or the `dst` of `--config FILE`. */
export abstract class DstCommand extends ProfileCommand {
  dst = options.dst()

  protected backupDir(): string {
    if (this.dst) return this.dst
    if (!fs.existsSync(this.config)) {
      throw new UsageError(`which backup? pass the backup folder with --dst DIR, or a config file with --config FILE (${this.config} does not exist)`)
    }
    return loadConfig(this.config).dst
  }
}
