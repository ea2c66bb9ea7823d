/** The `backup` CLI: one clipanion command per file in ./commands. */
import fs from 'node:fs'
import path from 'node:path'

import { Builtins, Cli } from 'clipanion'

import { ExitCode } from '../errors'
import ChecksumCommand from './commands/checksum'
import CompareCommand from './commands/compare'
import DeleteCommand from './commands/delete'
import ExplainCommand from './commands/explain'
import HistoryCommand from './commands/history'
import KeygenCommand from './commands/keygen'
import ListCommand from './commands/list'
import PruneCommand from './commands/prune'
import RecreateCommand from './commands/recreate'
import RestoreCommand from './commands/restore'
import RunCommand from './commands/run'
import SearchCommand from './commands/search'
import StatusCommand from './commands/status'
import VerifyCommand from './commands/verify'

function packageVersion(): string {
  let dir = __dirname
  for (;;) {
    const f = path.join(dir, 'package.json')
    if (fs.existsSync(f)) {
      const pkg = JSON.parse(fs.readFileSync(f, 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'axiomatic-backup') return pkg.version ?? '0.0.0'
    }
    const up = path.dirname(dir)
    if (up === dir) return '0.0.0'
    dir = up
  }
}
const version = packageVersion()

export function makeCli(colored = false): Cli {
  const cli = new Cli({ binaryLabel: 'axiomatic-backup', binaryName: 'backup', binaryVersion: version, enableColors: colored })
  cli.register(RunCommand)
  cli.register(ExplainCommand)
  cli.register(DeleteCommand)
  cli.register(HistoryCommand)
  cli.register(ListCommand)
  cli.register(PruneCommand)
  cli.register(RecreateCommand)
  cli.register(RestoreCommand)
  cli.register(SearchCommand)
  cli.register(StatusCommand)
  cli.register(ChecksumCommand)
  cli.register(VerifyCommand)
  cli.register(CompareCommand)
  cli.register(KeygenCommand)
  cli.register(Builtins.HelpCommand)
  cli.register(Builtins.VersionCommand)
  return cli
}

/** Runs the CLI; resolves to the exit code (64 for usage errors). */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  // Colours only on a terminal, and never with NO_COLOR.
  const colored = !!process.stdout.isTTY && !process.env.NO_COLOR
  const cli = makeCli(colored)
  try {
    cli.process(argv)
  } catch (e) {
    process.stderr.write(cli.error(e as Error, { colored }))
    return ExitCode.Usage
  }
  return cli.run(argv, { ...Cli.defaultContext, colorDepth: colored ? process.stdout.getColorDepth() : 1 })
}
