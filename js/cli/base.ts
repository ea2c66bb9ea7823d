/** The shared base of every command: --config, --json, --quiet, errors to exit codes. */
import fs from 'node:fs'

import { Command, Option, UsageError } from 'clipanion'

import { loadConfig } from '../config'
import { colors, type Colors } from './format'

import { BackupError, ExitCode } from '../errors'

export abstract class BaseCommand extends Command {
  config = Option.String('--config,-c', 'config.json', { description: 'Config file (one file = one profile)' })
  json = Option.Boolean('--json', false, { description: 'Print one JSON object on stdout (stable schema, see README)' })
  quiet = Option.Boolean('--quiet,-q', false, { description: 'No progress and no summary, only problems' })

  abstract run(): Promise<number>

  async execute(): Promise<number> {
    try {
      return await this.run()
    } catch (e) {
      const err = e as Error
      if (e instanceof UsageError) {
        if (this.json) this.context.stdout.write(JSON.stringify({ error: { code: 'EUSAGE', message: err.message } }) + '\n')
        else this.context.stderr.write(`backup: ${err.message}\n`)
        return ExitCode.Usage
      }
      const code = e instanceof BackupError ? e.code : 'EIO'
      const exit = e instanceof BackupError ? e.exitCode : ExitCode.Failed
      if (this.json) {
        this.context.stdout.write(JSON.stringify({ error: { code, message: err.message } }) + '\n')
      } else {
        this.context.stderr.write(`backup: ${err.message}\n`)
      }
      return exit
    }
  }

  protected print(obj: unknown): void {
    this.context.stdout.write(JSON.stringify(obj, null, 2) + '\n')
  }
}

/** Commands that work on a backup folder: `--dst DIR`, or the `dst` of `--config FILE`. */
export abstract class DstCommand extends BaseCommand {
  dst = Option.String('--dst,-d', { description: 'The backup folder (holds mirror/ and the increments); default: dst of --config' })

  protected backupDir(): string {
    if (this.dst) return this.dst
    if (!fs.existsSync(this.config)) {
      throw new UsageError(`which backup? pass the backup folder with --dst DIR, or a config file with --config FILE (${this.config} does not exist)`)
    }
    return loadConfig(this.config).dst
  }

  /** Colours for human output: only on a terminal and without NO_COLOR. */
  protected get colors(): Colors {
    return colors(!!(this.context.stdout as NodeJS.WriteStream).isTTY && !process.env.NO_COLOR)
  }

  protected get tty(): boolean {
    return !!(this.context.stderr as NodeJS.WriteStream).isTTY && !this.quiet && !this.json
  }
}
