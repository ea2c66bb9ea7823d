/**
 * The package's entry (`require('axiomatic-backup')`): the exports of `./index` (the library API, where they are
 * documented and typed), each module loaded the first time one of its exports is used. A script that runs one
 * backup need not compile the HTTP server, the ssh client and the integrity code first: loading them all was
 * ~35 ms of CPU, a tenth of a no-change run of 100k files (see docs/design.md, "A run"). `__test__/entry.spec.ts`
 * checks that this list and `./index` export the same names and values.
 */
import type * as Api from './index'

type Name = keyof typeof Api

/** Defines `names` on the exports as getters that load `load()` once, on first use. */
function lazy(load: () => Record<string, unknown>, names: readonly Name[]): void {
  let mod: Record<string, unknown> | undefined
  for (const name of names) {
    Object.defineProperty(exports, name, { enumerable: true, configurable: true, get: () => (mod ??= load())[name] })
  }
}

// `export let` only declares the names, typed: TypeScript emits `exports.name = void 0` for each, which is also
// what lets Node's ESM loader see them (`import { backup } from 'axiomatic-backup'`); `lazy` then defines them.
export let backup: typeof Api.backup, explain: typeof Api.explain
lazy(() => require('./backup'), ['backup', 'explain'])
export let loadConfig: typeof Api.loadConfig, resolveConfig: typeof Api.resolveConfig
lazy(() => require('./config'), ['loadConfig', 'resolveConfig'])
export let compileRules: typeof Api.compileRules, normalizePattern: typeof Api.normalizePattern
lazy(() => require('./patterns'), ['compileRules', 'normalizePattern'])
export let BackupError: typeof Api.BackupError, ConfigError: typeof Api.ConfigError, ExitCode: typeof Api.ExitCode
lazy(() => require('./errors'), ['BackupError', 'ConfigError', 'ExitCode'])
export let acquireLock: typeof Api.acquireLock, readLock: typeof Api.readLock
lazy(() => require('./lock'), ['acquireLock', 'readLock'])
export let runUnattended: typeof Api.runUnattended,
  alarms: typeof Api.alarms,
  sendNotification: typeof Api.sendNotification,
  parseDuration: typeof Api.parseDuration,
  BLOCKING_WARNINGS: typeof Api.BLOCKING_WARNINGS
lazy(() => require('./unattended'), [
  'runUnattended',
  'alarms',
  'sendNotification',
  'parseDuration',
  'BLOCKING_WARNINGS',
])
export let schedule: typeof Api.schedule,
  parseEvery: typeof Api.parseEvery,
  renderUnits: typeof Api.renderUnits,
  cronLine: typeof Api.cronLine,
  scheduleName: typeof Api.scheduleName
lazy(() => require('./schedule'), ['schedule', 'parseEvery', 'renderUnits', 'cronLine', 'scheduleName'])
export let now: typeof Api.now
lazy(() => require('./clock'), ['now'])
export let listIncrements: typeof Api.listIncrements,
  search: typeof Api.search,
  history: typeof Api.history,
  restore: typeof Api.restore,
  resolveAt: typeof Api.resolveAt,
  recreate: typeof Api.recreate,
  deleteFiles: typeof Api.deleteFiles,
  prune: typeof Api.prune,
  removeIncrements: typeof Api.removeIncrements,
  status: typeof Api.status,
  requireBackupDir: typeof Api.requireBackupDir,
  timeline: typeof Api.timeline,
  tree: typeof Api.tree,
  diff: typeof Api.diff,
  storedFile: typeof Api.storedFile,
  rebuildIndex: typeof Api.rebuildIndex
lazy(() => require('./explore'), [
  'listIncrements',
  'search',
  'history',
  'restore',
  'resolveAt',
  'recreate',
  'deleteFiles',
  'prune',
  'removeIncrements',
  'status',
  'requireBackupDir',
  'timeline',
  'tree',
  'diff',
  'storedFile',
  'rebuildIndex',
])
export let serve: typeof Api.serve, BackupData: typeof Api.BackupData
lazy(() => require('./serve'), ['serve', 'BackupData'])
export let applyPolicy: typeof Api.applyPolicy
lazy(() => require('./explore/retention'), ['applyPolicy'])
export let parseSize: typeof Api.parseSize,
  parseTime: typeof Api.parseTime,
  parseWhen: typeof Api.parseWhen,
  normalizeMask: typeof Api.normalizeMask
lazy(() => require('./explore/filters'), ['parseSize', 'parseTime', 'parseWhen', 'normalizeMask'])
export let restoreScript: typeof Api.restoreScript, shQuote: typeof Api.shQuote
lazy(() => require('./explore/script'), ['restoreScript', 'shQuote'])
export let checksumFolder: typeof Api.checksumFolder,
  checksumGroups: typeof Api.checksumGroups,
  loadChecksumConfig: typeof Api.loadChecksumConfig,
  verify: typeof Api.verify,
  verifyBackup: typeof Api.verifyBackup,
  compare: typeof Api.compare,
  writeCompareFiles: typeof Api.writeCompareFiles,
  keygen: typeof Api.keygen,
  rawPublicKey: typeof Api.rawPublicKey,
  parseAlgos: typeof Api.parseAlgos,
  localReports: typeof Api.localReports,
  ALGORITHMS: typeof Api.ALGORITHMS
lazy(() => require('./integrity'), [
  'checksumFolder',
  'checksumGroups',
  'loadChecksumConfig',
  'verify',
  'verifyBackup',
  'compare',
  'writeCompareFiles',
  'keygen',
  'rawPublicKey',
  'parseAlgos',
  'localReports',
  'ALGORITHMS',
])
export let repair: typeof Api.repair, repairExit: typeof Api.repairExit
lazy(() => require('./integrity/repair'), ['repair', 'repairExit'])
