import { Command, Option } from 'clipanion'

import { recreate } from '../../explore'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { DstCommand } from '../base'
import * as options from '../options'

export default class RecreateCommand extends DstCommand {
  static paths = [['recreate']]
  static usage = Command.Usage({
    description: 'Rebuild increment metadata and the mirror state from the files',
    details: `
      Rebuilds increment metadata that is missing or unreadable (\`--backup NAME\`: only that increment; \`--force\`:
      also metadata that reads fine) from the files in \`track/\` and \`deleted/\`, and the mirror state from \`mirror/\`.

      Exit codes: 0; 1 some files could not be hashed; 2; 64.

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup recreate".
    `,
    examples: [
      ['Rebuild whatever is missing', '$0 recreate --dst /media/usb/backup'],
      ['Rebuild everything (as the original tool)', '$0 recreate --force'],
      ['Rebuild one increment', '$0 recreate --backup backup_20240115_103000 --force'],
    ],
  })

  backup = Option.String('--backup', { description: 'Only this increment (NAME, as `backup list` shows it)' })
  force = options.force('Also rebuild metadata (and the state) that reads fine')

  async run(): Promise<ExitCodeValue> {
    const r = await this.withProgress({ apply: 'hash' }, (onProgress) => recreate(this.backupDir(), { backup: this.backup, force: this.force, onProgress }))
    const code = r.warnings.length ? ExitCode.Partial : ExitCode.Ok
    if (this.json) {
      this.print(r)
      return code
    }
    const out = this.context.stdout
    for (const f of r.finished) out.write(`${f}\n`)
    for (const w of r.warnings) this.warning(w)
    if (this.quiet) return code
    out.write(r.rebuilt.length ? `rebuilt metadata: ${r.rebuilt.join(', ')}\n` : 'no increment metadata needed rebuilding\n')
    if (r.stateRebuilt) out.write(`rebuilt the mirror state: ${r.stateEntries} entries\n`)
    return code
  }
}
