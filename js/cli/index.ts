/** The `backup` CLI: one clipanion command per file in ./commands. */
import fs from 'node:fs'
import path from 'node:path'

import { Builtins, Cli, UsageError } from 'clipanion'

import { BackupError, ExitCode } from '../errors'
import { colorsOn, reportError } from './base'
import ChecksumCommand from './commands/checksum'
import CompareCommand from './commands/compare'
import DeleteCommand from './commands/delete'
import DiffCommand from './commands/diff'
import ExplainCommand from './commands/explain'
import HistoryCommand from './commands/history'
import KeygenCommand from './commands/keygen'
import ListCommand from './commands/list'
import PruneCommand from './commands/prune'
import RecreateCommand from './commands/recreate'
import RepairCommand from './commands/repair'
import RestoreCommand from './commands/restore'
import RunCommand from './commands/run'
import ScheduleCommand from './commands/schedule'
import SearchCommand from './commands/search'
import ServeCommand from './commands/serve'
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

const COMMANDS = [
  RunCommand,
  ExplainCommand,
  DeleteCommand,
  DiffCommand,
  HistoryCommand,
  ListCommand,
  PruneCommand,
  RecreateCommand,
  RestoreCommand,
  SearchCommand,
  StatusCommand,
  ServeCommand,
  ChecksumCommand,
  VerifyCommand,
  CompareCommand,
  RepairCommand,
  KeygenCommand,
  ScheduleCommand,
]

/**
 * The CLI. With `argv`, only the command it names is registered when it names one: clipanion builds
 * its parser (a state machine over every command's options) on each start, which for all commands
 * was most of the CLI's start-up (~60 ms of CPU before any work). `--version` alone needs none; no command, `--help`
 * or a misspelt command get them all, so usage, suggestions and errors are the same.
 */
export function makeCli(colored = false, argv?: string[]): Cli {
  const cli = new Cli({ binaryLabel: 'axiomatic-backup', binaryName: 'backup', binaryVersion: version, enableColors: colored })
  const versionOnly = argv?.length === 1 && ['--version', '-v'].includes(argv[0])
  const named = argv && COMMANDS.filter((c) => c.paths?.some((p) => p.length > 0 && p.every((w, i) => argv[i] === w)))
  if (!versionOnly) for (const c of named?.length ? named : COMMANDS) cli.register(c)
  cli.register(Builtins.HelpCommand)
  cli.register(Builtins.VersionCommand)
  return cli
}

/**
 * Runs the CLI; resolves to the exit code. A command line that does not parse, or a flag value its
 * validator refuses, is a usage error (64) reported before any command runs: as clipanion's message
 * with the usage line, or with `--json` as the `{error}` object every command prints.
 */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const colored = colorsOn(process.stdout)
  const cli = makeCli(colored, argv)
  const context = { ...Cli.defaultContext, colorDepth: colored ? process.stdout.getColorDepth() : 1 }
  let command
  try {
    command = cli.process(argv, context)
  } catch (e) {
    const json = argv.includes('--json')
    // Whatever fails here is the command line's fault (64), unless a validator's own error says otherwise.
    if (e instanceof BackupError) return reportError(e, json, process.stdout, process.stderr)
    if (json) return reportError(new UsageError((e as Error).message), json, process.stdout, process.stderr)
    process.stderr.write(cli.error(e as Error, { colored }))
    return ExitCode.Usage
  }
  // The parsed command itself: parsing again would build the parser again.
  return cli.run(command, context)
}
