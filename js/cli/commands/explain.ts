import fs from 'node:fs'
import path from 'node:path'

import { Command, Option, UsageError } from 'clipanion'

import { explain } from '../../backup'
import { loadConfig } from '../../config'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { ProfileCommand } from '../base'

export default class ExplainCommand extends ProfileCommand {
  static paths = [['explain']]
  static usage = Command.Usage({
    description: 'Say which rule selects, tracks or excludes a path',
    details: `
      PATH is relative to \`src\` (or absolute inside it); \`--dir\` judges it as a directory even if it does not exist.
      Prints each rule that applies, in order, and the verdict: tracked, mirrored only, or not selected.

      Exit codes: 0 selected; 1 not selected; 64 bad usage.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup explain".
    `,
    examples: [
      ['Why is this file not backed up?', '$0 explain Projects/old/notes.txt --config usb.json'],
      ['Will this folder be walked?', '$0 explain node_modules --dir'],
    ],
  })

  dir = Option.Boolean('--dir', false, { description: 'Treat PATH as a directory even if it does not exist' })
  target = Option.String({ name: 'PATH' })

  async run(): Promise<ExitCodeValue> {
    const cfg = loadConfig(this.config)
    let rel = this.target
    if (path.isAbsolute(rel)) {
      rel = path.relative(cfg.src, rel)
      if (rel.startsWith('..') || path.isAbsolute(rel)) throw new UsageError(`${this.target} is not inside src ${cfg.src}`)
    }
    rel = rel.split(path.sep).join('/').replace(/^\.\/+/, '').replace(/\/+$/, '')
    if (rel === '' || rel.split('/').includes('..')) throw new UsageError(`PATH must name something inside src, got ${JSON.stringify(this.target)}`)
    let isDir = this.dir
    try {
      isDir ||= fs.lstatSync(path.join(cfg.src, rel)).isDirectory()
    } catch {
      /* does not exist: judged as a file unless --dir */
    }
    const e = explain(cfg, rel, isDir)
    if (this.json) {
      this.print(e)
    } else {
      for (const s of e.steps) {
        const rule = s.key ? `${s.key} ${JSON.stringify(s.pattern)}: ` : ''
        this.context.stdout.write(`${s.path}: ${rule}${s.effect}\n`)
      }
    }
    return e.selected ? ExitCode.Ok : ExitCode.Partial
  }
}
