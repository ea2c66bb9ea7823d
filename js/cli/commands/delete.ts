import { Command, Option } from 'clipanion'

import { deleteFiles } from '../../explore'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { DstCommand } from '../base'
import { bytes, shown } from '../format'
import * as options from '../options'

export default class DeleteCommand extends DstCommand {
  static paths = [['delete']]
  static usage = Command.Usage({
    description: 'Remove matching files from one increment',
    details: `
      Removes from increment NAME every stored file matching one of the masks (as \`search --mask\`; \`-i\` ignores
      case) and their entries from its metadata; the mirror is never touched. A killed delete is finished by the next
      command that changes the backup.

      Exit codes: 0; 2; 64.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup delete".
    `,
    examples: [
      ['See what would go', '$0 delete backup_20240115_103000 --mask "*.iso" --dry-run'],
      ['Remove disk images and logs from an increment', '$0 delete backup_20240115_103000 --mask "*.iso" --mask "*.log"'],
    ],
  })

  name = Option.String({ name: 'NAME' })
  masks = options.masks('Glob or text on the name or relative path (repeatable, at least one)')
  ignoreCase = options.ignoreCase()
  dryRun = options.dryRun('List what would be removed; change nothing')

  async run(): Promise<ExitCodeValue> {
    const r = await deleteFiles(this.backupDir(), this.name, { masks: this.masks, ignoreCase: this.ignoreCase, dryRun: this.dryRun })
    if (this.json) {
      this.print(r)
      return ExitCode.Ok
    }
    const out = this.context.stdout
    if (!this.quiet) for (const f of r.removed) out.write(`${r.dryRun ? 'would remove' : 'removed'} ${f.category}/${shown(f.path)} (${bytes(f.size)})\n`)
    out.write(`${r.removed.length} files (${bytes(r.bytes)}) ${r.dryRun ? 'would be removed' : 'removed'} from ${r.increment}\n`)
    return ExitCode.Ok
  }
}
