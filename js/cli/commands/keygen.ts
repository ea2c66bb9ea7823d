import { Command, Option } from 'clipanion'

import { keygen } from '../../integrity'
import { ExitCode, type ExitCodeValue } from '../../errors'
import { BaseCommand } from '../base'
import * as options from '../options'

export default class KeygenCommand extends BaseCommand {
  static paths = [['keygen']]
  static usage = Command.Usage({
    description: 'Make an Ed25519 key pair for signing checksum reports',
    details: `
      Writes NAME.key (private, mode 600) and NAME.pub (public). \`checksum --sign-key NAME.key\` signs,
      \`verify --pubkey NAME.pub\` refuses a report not signed by that key.

      Exit codes: 0; 64 (a file exists; \`--force\` replaces it).

      Reference (every option, the \`--json\` schema, what is guaranteed): README, section "backup keygen".
    `,
    examples: [['Make report-signing keys', '$0 keygen /etc/backup/reports']],
  })

  prefix = Option.String({ name: 'NAME' })
  force = options.force('Replace existing key files')
  /** Until 0.2: every command took --config; keygen never read it. */
  oldConfig = options.deprecated.string('--config,-c')

  async run(): Promise<ExitCodeValue> {
    if (this.oldConfig) this.deprecated('keygen --config', 'it has no effect here (keygen writes a key pair, it reads no backup profile): leave it out')
    const r = keygen(this.prefix, { force: this.force })
    if (this.json) this.print(r)
    else if (!this.quiet) this.context.stdout.write(`private key: ${r.privateKey} (keep it secret)\npublic key:  ${r.publicKey}\n`)
    return ExitCode.Ok
  }
}
