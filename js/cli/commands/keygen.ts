import { Command, Option } from 'clipanion'

import { keygen } from '../../integrity'
import { BaseCommand } from '../base'

export default class KeygenCommand extends BaseCommand {
  static paths = [['keygen']]
  static usage = Command.Usage({
    description: 'Make an Ed25519 key pair for signing checksum reports',
    details: `
      Writes NAME.key (the private key, PKCS#8 PEM, mode 600: keep it on the server that makes the reports)
      and NAME.pub (the public key, SPKI PEM: give it to whoever verifies). \`checksum --sign-key NAME.key\` signs,
      \`verify --pubkey NAME.pub\` refuses a report not signed by that key.

      \`--json\`: \`{ privateKey, publicKey }\` (paths). Exit codes: 0; 64 (a file exists; \`--force\` replaces it).
    `,
    examples: [['Make report-signing keys', '$0 keygen /etc/backup/reports']],
  })

  prefix = Option.String({ name: 'NAME' })
  force = Option.Boolean('--force', false, { description: 'Replace existing key files' })

  async run(): Promise<number> {
    const r = keygen(this.prefix, { force: this.force })
    if (this.json) this.print(r)
    else if (!this.quiet) this.context.stdout.write(`private key: ${r.privateKey} (keep it secret)\npublic key:  ${r.publicKey}\n`)
    return 0
  }
}
