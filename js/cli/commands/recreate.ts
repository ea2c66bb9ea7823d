import { Command, Option } from 'clipanion'

import { recreate } from '../../explore'
import { ExitCode } from '../../errors'
import { DstCommand } from '../base'
import { ProgressLine, shown } from '../format'

export default class RecreateCommand extends DstCommand {
  static paths = [['recreate']]
  static usage = Command.Usage({
    description: 'Rebuild increment metadata and the mirror state from the files',
    details: `
      Rebuilds the metadata of every increment that has none or whose metadata is unreadable (with
      \`--backup NAME\` only that one; with \`--force\` also metadata that reads fine) from the files in its
      \`track/\` and \`deleted/\` folders: sizes, mtimes, modes and SHA-256 of the stored files, \`op\` derived
      from the increments before it, marked \`origin: "recreated"\`. Also rebuilds the mirror state
      (\`.axiomatic/state.jsonl\`) from \`mirror/\` when it is missing or unreadable (or with \`--force\`): a file
      is tracked when the newest increment that mentions it stores it; tracked files are hashed.

      \`--json\`: \`{ rebuilt, kept, stateRebuilt, stateEntries, warnings, finished }\`. Exit codes: 0; 1 some files
      could not be hashed; 2; 64.
    `,
    examples: [
      ['Rebuild whatever is missing', '$0 recreate --dst /media/usb/backup'],
      ['Rebuild everything (as the original tool)', '$0 recreate --force'],
      ['Rebuild one increment', '$0 recreate --backup backup_20240115_103000 --force'],
    ],
  })

  backup = Option.String('--backup', { description: 'Only this increment' })
  force = Option.Boolean('--force', false, { description: 'Also rebuild metadata (and the state) that reads fine' })

  async run(): Promise<number> {
    const line = new ProgressLine(this.context.stderr as NodeJS.WriteStream, this.tty, { apply: 'hash' })
    let r
    try {
      r = await recreate(this.backupDir(), { backup: this.backup, force: this.force, onProgress: this.tty ? line.update : undefined })
    } finally {
      line.done()
    }
    const code = r.warnings.length ? ExitCode.Partial : ExitCode.Ok
    if (this.json) {
      this.print(r)
      return code
    }
    const out = this.context.stdout
    for (const f of r.finished) out.write(`${f}\n`)
    for (const w of r.warnings) this.context.stderr.write(`warning: ${shown(w.path)}: ${w.code}: ${w.message}\n`)
    if (this.quiet) return code
    out.write(r.rebuilt.length ? `rebuilt metadata: ${r.rebuilt.join(', ')}\n` : 'no increment metadata needed rebuilding\n')
    if (r.stateRebuilt) out.write(`rebuilt the mirror state: ${r.stateEntries} entries\n`)
    return code
  }
}
