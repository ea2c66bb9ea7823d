import fs from 'node:fs'
import path from 'node:path'

import { Command, Option, UsageError } from 'clipanion'

import { explain } from '../../backup'
import { loadConfig } from '../../config'
import { ExitCode } from '../../errors'
import { BaseCommand } from '../base'

export default class ExplainCommand extends BaseCommand {
  static paths = [['explain']]
  static usage = Command.Usage({
    description: 'Say which rule selects, tracks or excludes a path',
    details: `
      PATH is relative to \`src\` (or absolute inside it). Prints each rule that applies, in order, and the
      verdict: tracked, mirrored only, or not selected. A directory is recognised from \`src\`, or with \`--dir\`.
      Patterns are anchored at \`src\` unless they end in \`:rec\` (only \`exclude_files\` without \`/\` match a file
      name at any depth): a folder whose name a bare \`exclude_dirs\` pattern names, below \`src\`, is shown with
      why it is not excluded (\`"cache"\` is \`src/cache\`; \`"cache:rec"\` excludes every \`cache\`).
      Exit code 0 if the path is selected, 1 if not, 64 on bad usage.
    `,
    examples: [
      ['Why is this file not backed up?', '$0 explain Projects/old/notes.txt --config usb.json'],
      ['Will this folder be walked?', '$0 explain node_modules --dir'],
    ],
  })

  dir = Option.Boolean('--dir', false, { description: 'Treat PATH as a directory even if it does not exist' })
  target = Option.String({ name: 'PATH' })

  async run(): Promise<number> {
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
