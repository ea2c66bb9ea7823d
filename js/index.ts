/**
 * axiomatic-backup: the library API.
 *
 * ```ts
 * import { backup, loadConfig } from 'axiomatic-backup'
 * const stats = await backup(loadConfig('usb.json'), { onProgress: (p) => console.log(p.phase) })
 * ```
 */
export { backup, explain } from './backup'
export type { BackupOptions, Stats, Warning, WarningCode, PathChange, Progress, Explanation } from './backup'
export { loadConfig, resolveConfig } from './config'
export type { Config, ResolvedConfig, NotifyConfig } from './config'
export { compileRules, normalizePattern } from './patterns'
export type { RuleLists, RuleKey, DirectoryPriority } from './patterns'
export { BackupError, ConfigError, ExitCode } from './errors'
export type { ErrorCode, ExitCodeValue } from './errors'
export { acquireLock, readLock } from './lock'
export { runUnattended, alarms, sendNotification, parseDuration, BLOCKING_WARNINGS } from './unattended'
export type { UnattendedResult, UnattendedOptions, Reason, NotifyBody } from './unattended'
export { schedule, parseEvery, renderUnits, cronLine, scheduleName } from './schedule'
export type { ScheduleOptions, ScheduleResult, Via, Scope, When } from './schedule'
export { now } from './clock'
export {
  listIncrements,
  search,
  history,
  restore,
  resolveAt,
  recreate,
  deleteFiles,
  prune,
  removeIncrements,
  status,
  requireBackupDir,
  timeline,
  tree,
  diff,
  storedFile,
  rebuildIndex,
} from './explore'
export type {
  IncrementInfo,
  Listing,
  CatalogEntry,
  SearchHit,
  SearchOptions,
  SearchResult,
  FileHistory,
  RestoreOptions,
  RestoreResult,
  RecreateResult,
  DeleteResult,
  PruneResult,
  PruneOptions,
  RetentionPolicy,
  Decision,
  BackupStatus,
  LastRun,
  DamagedMetadata,
  PendingRun,
  Tree,
  TreeEntry,
  DiffResult,
  DiffItem,
  DiffSide,
  DiffOptions,
} from './explore'
export { serve, BackupData } from './serve'
export type { ServeOptions, Served, TreeResult, TreeEntry as ServeTreeEntry, SizesResult } from './serve'
export { applyPolicy } from './explore/retention'
export { parseSize, parseTime, parseWhen, normalizeMask } from './explore/filters'
export { restoreScript, shQuote } from './explore/script'
export {
  checksumFolder,
  checksumGroups,
  loadChecksumConfig,
  verify,
  verifyBackup,
  compare,
  writeCompareFiles,
  keygen,
  rawPublicKey,
  parseAlgos,
  localReports,
  ALGORITHMS,
} from './integrity'
export type {
  Algorithm,
  ReportFormat,
  ChecksumConfig,
  ChecksumGroup,
  ChecksumOptions,
  ChecksumResult,
  VerifyOptions,
  VerifyResult,
  VerifyStatus,
  BackupVerifyResult,
  CompareResult,
  SshOptions,
} from './integrity'
export { repair, repairExit } from './integrity/repair'
export type { RepairOptions, RepairResult, RepairCopy, RepairUndecided } from './integrity/repair'
