import { Command, Option } from 'clipanion'

import { deleteFiles } from '../../explore'
import { DstCommand } from '../base'
import { bytes, shown } from '../format'

export default class DeleteCommand extends DstCommand {
  static paths = [['delete']]
  static usage = Command.Usage({
    description: 'Remove matching files from one increment',
    details: `
      Removes from increment NAME every stored file whose name or relative path matches one of the masks (same
      syntax as \`search --mask\`), and their entries from its metadata. The metadata is rewritten atomically
      before any file is unlinked, and the unlinks are journaled, so a killed delete is finished by the next
      command that changes the backup. Point-in-time restore at NAME and later then no longer sees those
      versions (older versions, if any, take their place). The mirror is never touched.

      \`--json\`: \`{ increment, dryRun, removed: [{ path, category, size }], bytes }\`. Exit codes: 0; 2; 64.
    `,
    examples: [
      ['See what would go', '$0 delete backup_20240115_103000 --mask "*.iso" --dry-run'],
      ['Remove disk images and logs from an increment', '$0 delete backup_20240115_103000 --mask "*.iso" --mask "*.log"'],
    ],
  })

  name = Option.String({ name: 'NAME' })
  masks = Option.Array('--mask,-m', [], { description: 'Glob or text on the name or relative path (repeatable, at least one)' })
  ignoreCase = Option.Boolean('--ignore-case,-i', false, { description: 'Masks ignore case' })
  dryRun = Option.Boolean('--dry-run,-n', false, { description: 'List what would be removed; change nothing' })

  async run(): Promise<number> {
    const r = await deleteFiles(this.backupDir(), this.name, { masks: this.masks, ignoreCase: this.ignoreCase, dryRun: this.dryRun })
    if (this.json) {
      this.print(r)
      return 0
    }
    const out = this.context.stdout
    if (!this.quiet) for (const f of r.removed) out.write(`${r.dryRun ? 'would remove' : 'removed'} ${f.category}/${shown(f.path)} (${bytes(f.size)})\n`)
    out.write(`${r.removed.length} files (${bytes(r.bytes)}) ${r.dryRun ? 'would be removed' : 'removed'} from ${r.increment}\n`)
    return 0
  }
}
