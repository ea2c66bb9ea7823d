/** The `backup` CLI: one clipanion command per file in ./commands. */
import fs from 'node:fs'
import path from 'node:path'

import { Builtins, Cli, UsageError } from 'clipanion'
import type { CommandClass } from 'clipanion'

import { BackupError, ExitCode } from '../errors'
import { colorsOn, reportError } from './base'
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

/**
 * Every command, by the word that names it, loaded only when asked for: a start that runs one
 * command loads that command's module alone, not the modules (and their dependencies) of all of
 * them (~30 ms of `require` for the whole set). The order is the order of `backup --help`.
 * `__test__/cli.spec.ts` checks that each key is one of its command's paths.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
export const COMMANDS: Record<string, () => CommandClass> = {
  run: () => (require('./commands/run') as typeof import('./commands/run')).default,
  explain: () => (require('./commands/explain') as typeof import('./commands/explain')).default,
  delete: () => (require('./commands/delete') as typeof import('./commands/delete')).default,
  diff: () => (require('./commands/diff') as typeof import('./commands/diff')).default,
  history: () => (require('./commands/history') as typeof import('./commands/history')).default,
  list: () => (require('./commands/list') as typeof import('./commands/list')).default,
  prune: () => (require('./commands/prune') as typeof import('./commands/prune')).default,
  recreate: () => (require('./commands/recreate') as typeof import('./commands/recreate')).default,
  restore: () => (require('./commands/restore') as typeof import('./commands/restore')).default,
  search: () => (require('./commands/search') as typeof import('./commands/search')).default,
  status: () => (require('./commands/status') as typeof import('./commands/status')).default,
  serve: () => (require('./commands/serve') as typeof import('./commands/serve')).default,
  checksum: () => (require('./commands/checksum') as typeof import('./commands/checksum')).default,
  verify: () => (require('./commands/verify') as typeof import('./commands/verify')).default,
  compare: () => (require('./commands/compare') as typeof import('./commands/compare')).default,
  repair: () => (require('./commands/repair') as typeof import('./commands/repair')).default,
  keygen: () => (require('./commands/keygen') as typeof import('./commands/keygen')).default,
  schedule: () => (require('./commands/schedule') as typeof import('./commands/schedule')).default,
}
/* eslint-enable @typescript-eslint/no-require-imports */

/**
 * The CLI. With `argv`, only the command it names is registered when it names one: clipanion builds
 * its parser (a state machine over every command's options) on each start, which for all commands
 * was most of the CLI's start-up (~60 ms of CPU before any work). `--version` alone needs none; no command, `--help`
 * or a misspelt command get them all, so usage, suggestions and errors are the same.
 */
export function makeCli(colored = false, argv?: string[]): Cli {
  const cli = new Cli({ binaryLabel: 'axiomatic-backup', binaryName: 'backup', binaryVersion: version, enableColors: colored })
  const versionOnly = argv?.length === 1 && ['--version', '-v'].includes(argv[0])
  const named = argv && Object.hasOwn(COMMANDS, argv[0]) ? [argv[0]] : Object.keys(COMMANDS)
  if (!versionOnly) for (const name of named) cli.register(COMMANDS[name]())
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
