//! napi-rs binding of `axiomatic-core`: converts options, reports, errors
//! and progress. No backup logic lives here.

#![deny(clippy::all)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use axiomatic_core::backup::engine::{self, Options, Report};
use axiomatic_core::backup::guard;
use axiomatic_core::backup::rules::{DirPriority, Pattern, RuleSpec, Rules};
use axiomatic_core::explore::catalog::{self, SearchFilter};
use axiomatic_core::explore::maintain;
use axiomatic_core::explore::restore::{self, RestoreOptions};
use axiomatic_core::progress::{Phase, Progress};
use axiomatic_core::{integrity::checksum, integrity::compare, integrity::verify};
use axiomatic_core::{Error as CoreError, ErrorKind};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

/// One normalized pattern (see `js/patterns`).
#[napi(object)]
pub struct BindingPattern {
  pub key: String,
  pub source: String,
  pub glob: String,
}

/// The normalized rules.
#[napi(object)]
pub struct BindingRules {
  pub include_dirs: Vec<BindingPattern>,
  pub track_dirs: Vec<BindingPattern>,
  pub exclude_dirs: Vec<BindingPattern>,
  pub include_files: Vec<BindingPattern>,
  pub track_files: Vec<BindingPattern>,
  pub exclude_files: Vec<BindingPattern>,
  /// `track` or `include`.
  pub directory_priority: String,
}

fn pats(v: Vec<BindingPattern>) -> Vec<Pattern> {
  v.into_iter().map(|p| Pattern { key: p.key, source: p.source, glob: p.glob }).collect()
}

impl BindingRules {
  fn into_spec(self) -> Result<RuleSpec> {
    let directory_priority = match self.directory_priority.as_str() {
      "track" => DirPriority::Track,
      "include" => DirPriority::Include,
      other => return Err(Error::new(Status::InvalidArg, format!("directory_priority: expected \"track\" or \"include\", got {other:?}"))),
    };
    Ok(RuleSpec {
      include_dirs: pats(self.include_dirs),
      track_dirs: pats(self.track_dirs),
      exclude_dirs: pats(self.exclude_dirs),
      include_files: pats(self.include_files),
      track_files: pats(self.track_files),
      exclude_files: pats(self.exclude_files),
      directory_priority,
    })
  }
}

/// Options of one run.
#[napi(object)]
pub struct BindingRunOptions {
  pub src: String,
  pub dst: String,
  pub rules: BindingRules,
  pub workers: u32,
  /// Seconds; absent = automatic (2 s on FAT/exFAT, else 0).
  pub mtime_tolerance_s: Option<f64>,
  pub preserved_dirs: Vec<String>,
  pub dry_run: bool,
  pub list_changes: bool,
  /// Skip files that keep changing while read instead of storing them marked inconsistent.
  pub skip_inconsistent: Option<bool>,
  /// Take `src` as this backup's source even if another one is recorded.
  pub adopt_source: Option<bool>,
  /// Allow any number of removals (even all of the mirror).
  pub allow_mass_delete: Option<bool>,
  /// `"N"` files or `"N%"` of the mirror; absent = the default rule.
  pub max_delete: Option<String>,
}

#[napi(object)]
pub struct BindingWarning {
  pub path: String,
  pub code: String,
  pub message: String,
}

#[napi(object)]
pub struct BindingChange {
  pub path: String,
  pub role: String,
  pub change: String,
}

#[napi(object)]
pub struct BindingReport {
  pub increment: Option<String>,
  pub recovered: Option<String>,
  pub mirror_files: f64,
  pub tracked_files: f64,
  pub new: f64,
  pub changed: f64,
  pub deleted: f64,
  pub removed_from_mirror: f64,
  pub mirror_updated: f64,
  pub bytes_copied: f64,
  pub link_fallbacks: f64,
  pub special_skipped: f64,
  pub mtime_tolerance_s: f64,
  pub duration_ms: f64,
  pub warnings: Vec<BindingWarning>,
  pub hints: Vec<String>,
  pub changes: Vec<BindingChange>,
  /// Dry run only: why the real run would be refused.
  pub refused: Option<String>,
  /// A folder of the original backup.py was adopted (its mirror and mirror.json as the previous state).
  pub adopted: bool,
}

fn role_name(r: axiomatic_core::backup::rules::Role) -> String {
  match r {
    axiomatic_core::backup::rules::Role::Tracked => "tracked".into(),
    axiomatic_core::backup::rules::Role::Mirrored => "mirrored".into(),
  }
}

impl From<Report> for BindingReport {
  fn from(r: Report) -> Self {
    Self {
      increment: r.increment,
      recovered: r.recovered,
      mirror_files: r.mirror_files as f64,
      tracked_files: r.tracked_files as f64,
      new: r.new as f64,
      changed: r.changed as f64,
      deleted: r.deleted as f64,
      removed_from_mirror: r.removed_from_mirror as f64,
      mirror_updated: r.mirror_updated as f64,
      bytes_copied: r.bytes_copied as f64,
      link_fallbacks: r.link_fallbacks as f64,
      special_skipped: r.special_skipped as f64,
      mtime_tolerance_s: r.mtime_tolerance_ns as f64 / 1e9,
      duration_ms: r.duration_ms as f64,
      warnings: r.warnings.into_iter().map(|w| BindingWarning { path: w.path, code: w.code, message: w.message }).collect(),
      hints: r.hints,
      changes: r.changes.into_iter().map(|c| BindingChange { path: c.path, role: role_name(c.role), change: c.change }).collect(),
      refused: r.refused,
      adopted: r.adopted,
    }
  }
}

/// A progress snapshot.
#[napi(object)]
#[derive(Clone)]
pub struct BindingProgress {
  pub phase: String,
  pub files_scanned: f64,
  pub bytes_scanned: f64,
  pub ops_total: f64,
  pub ops_done: f64,
  pub bytes_total: f64,
  pub bytes_done: f64,
}

fn snapshot(p: &Progress) -> BindingProgress {
  use std::sync::atomic::Ordering::Relaxed;
  BindingProgress {
    phase: p.phase().name().into(),
    files_scanned: p.files_scanned.load(Relaxed) as f64,
    bytes_scanned: p.bytes_scanned.load(Relaxed) as f64,
    ops_total: p.ops_total.load(Relaxed) as f64,
    ops_done: p.ops_done.load(Relaxed) as f64,
    bytes_total: p.bytes_total.load(Relaxed) as f64,
    bytes_done: p.bytes_done.load(Relaxed) as f64,
  }
}

/// Core errors become JS errors whose message starts with a code
/// (`ECONFIG: …`) that `js/native.ts` turns into a `code` property.
fn to_napi(e: CoreError) -> Error {
  let status = match e.kind {
    ErrorKind::Config => Status::InvalidArg,
    ErrorKind::Aborted => Status::Cancelled,
    _ => Status::GenericFailure,
  };
  Error::new(status, format!("{}: {}", e.code(), e.message))
}

type ProgressFn = ThreadsafeFunction<BindingProgress, (), BindingProgress, Status, false, true>;

/// Runs `f` while a thread reports progress every 150 ms (if asked to).
fn with_ticker<T>(progress: &Arc<Progress>, on_progress: Option<&Arc<ProgressFn>>, f: impl FnOnce() -> T) -> T {
  let ticker = on_progress.cloned().map(|cb| {
    let p = progress.clone();
    thread::spawn(move || loop {
      thread::sleep(Duration::from_millis(150));
      let done = p.phase() == Phase::Done || p.is_aborted();
      cb.call(snapshot(&p), ThreadsafeFunctionCallMode::NonBlocking);
      if done {
        break;
      }
    })
  });
  let res = f();
  progress.set_phase(Phase::Done);
  if let Some(t) = ticker {
    let _ = t.join();
  }
  res
}

pub struct RunTask {
  opts: Option<Options>,
  progress: Arc<Progress>,
  on_progress: Option<Arc<ProgressFn>>,
}

impl Task for RunTask {
  type Output = Report;
  type JsValue = BindingReport;

  fn compute(&mut self) -> Result<Self::Output> {
    let opts = self.opts.take().expect("a task runs once");
    with_ticker(&self.progress, self.on_progress.as_ref(), || engine::run(&opts, &self.progress)).map_err(to_napi)
  }

  fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
    Ok(output.into())
  }
}

type Job = Box<dyn FnOnce(&Progress) -> std::result::Result<String, CoreError> + Send>;

/// A core call off the main thread whose result crosses as JSON text (the
/// JS side parses it into the documented types; large results such as a
/// million search hits convert faster this way than as napi objects).
pub struct JsonTask {
  job: Option<Job>,
  progress: Arc<Progress>,
  on_progress: Option<Arc<ProgressFn>>,
}

impl Task for JsonTask {
  type Output = String;
  type JsValue = String;

  fn compute(&mut self) -> Result<String> {
    let job = self.job.take().expect("a task runs once");
    with_ticker(&self.progress, self.on_progress.as_ref(), || job(&self.progress)).map_err(to_napi)
  }

  fn resolve(&mut self, _env: Env, output: String) -> Result<String> {
    Ok(output)
  }
}

fn json<T: serde::Serialize>(v: T) -> std::result::Result<String, CoreError> {
  serde_json::to_string(&v).map_err(|e| CoreError { kind: ErrorKind::Io, path: None, message: e.to_string() })
}

fn json_task(
  job: impl FnOnce(&Progress) -> std::result::Result<String, CoreError> + Send + 'static,
  on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> AsyncTask<JsonTask> {
  let progress = Arc::new(Progress::new());
  if let Some(sig) = &signal {
    let p = progress.clone();
    sig.on_abort(move || p.abort());
  }
  AsyncTask::with_optional_signal(JsonTask { job: Some(Box::new(job)), progress, on_progress: on_progress.map(Arc::new) }, signal)
}

/// Runs one backup off the main thread.
#[napi(ts_return_type = "Promise<BindingReport>")]
pub fn run_backup(
  options: BindingRunOptions,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> Result<AsyncTask<RunTask>> {
  let rules = options.rules.into_spec()?;
  let max_delete = options.max_delete.as_deref().map(guard::DeleteLimit::parse).transpose().map_err(to_napi)?;
  let opts = Options {
    src: PathBuf::from(options.src),
    dst: PathBuf::from(options.dst),
    rules,
    workers: options.workers.max(1) as usize,
    mtime_tolerance_ns: options.mtime_tolerance_s.map(|s| (s * 1e9) as i64),
    preserved_dirs: options.preserved_dirs,
    dry_run: options.dry_run,
    list_changes: options.list_changes,
    skip_inconsistent: options.skip_inconsistent.unwrap_or(false),
    safety: guard::Safety {
      adopt_source: options.adopt_source.unwrap_or(false),
      allow_mass_delete: options.allow_mass_delete.unwrap_or(false),
      max_delete,
    },
  };
  let progress = Arc::new(Progress::new());
  if let Some(sig) = &signal {
    let p = progress.clone();
    sig.on_abort(move || p.abort());
  }
  let task = RunTask { opts: Some(opts), progress, on_progress: on_progress.map(Arc::new) };
  Ok(AsyncTask::with_optional_signal(task, signal))
}

/// Compiles the rules once to check them; throws `ECONFIG: <key>: …` if a pattern cannot compile.
#[napi]
pub fn check_rules(rules: BindingRules) -> Result<()> {
  Rules::compile(&rules.into_spec()?).map(|_| ()).map_err(to_napi)
}

#[napi(object)]
pub struct BindingStep {
  pub path: String,
  pub key: Option<String>,
  pub pattern: Option<String>,
  pub effect: String,
}

#[napi(object)]
pub struct BindingExplanation {
  pub selected: bool,
  pub role: Option<String>,
  pub steps: Vec<BindingStep>,
}

/// Says which rule selects, tracks or excludes `path` (relative to `src`).
#[napi]
pub fn explain_path(rules: BindingRules, path: String, is_dir: bool) -> Result<BindingExplanation> {
  let r = Rules::compile(&rules.into_spec()?).map_err(to_napi)?;
  let e = r.explain(&path, is_dir);
  Ok(BindingExplanation {
    selected: e.selected,
    role: e.role.map(role_name),
    steps: e
      .steps
      .into_iter()
      .map(|s| BindingStep {
        path: s.path,
        key: s.rule.as_ref().map(|p| p.key.clone()),
        pattern: s.rule.map(|p| p.source),
        effect: s.effect,
      })
      .collect(),
  })
}

/// Lists the files the rules select under `src` (sorted), for tests and `--dry-run`.
#[napi]
pub fn select_files(src: String, rules: BindingRules) -> Result<Vec<BindingChange>> {
  let r = Rules::compile(&rules.into_spec()?).map_err(to_napi)?;
  let res = axiomatic_core::backup::scan::scan(std::path::Path::new(&src), &r, &Progress::new(), Default::default()).map_err(to_napi)?;
  Ok(res.entries.into_iter().map(|e| BindingChange { path: e.rel.into(), role: role_name(e.role), change: String::new() }).collect())
}

/// `backup list`: JSON of `explore::Listing`.
#[napi(ts_return_type = "Promise<string>")]
pub fn list_increments(dst: String, detailed: bool) -> AsyncTask<JsonTask> {
  json_task(move |_| json(catalog::list(Path::new(&dst), detailed)?), None, None)
}

/// Search filters, already parsed and normalized by `js/explore`.
#[napi(object)]
pub struct BindingSearchFilter {
  pub masks: Vec<String>,
  pub ignore_case: bool,
  pub size_min: Option<f64>,
  pub size_max: Option<f64>,
  pub mtime_min_ms: Option<f64>,
  pub mtime_max_ms: Option<f64>,
  pub path_prefixes: Vec<String>,
  pub path_globs: Vec<String>,
  pub last: Option<u32>,
}

/// `backup search`: JSON of `explore::Found`.
#[napi(ts_return_type = "Promise<string>")]
pub fn search_backup(dst: String, filter: BindingSearchFilter) -> AsyncTask<JsonTask> {
  let f = SearchFilter {
    masks: filter.masks,
    ignore_case: filter.ignore_case,
    size_min: filter.size_min.map(|v| v as u64),
    size_max: filter.size_max.map(|v| v as u64),
    mtime_min_ns: filter.mtime_min_ms.map(|v| (v * 1e6) as i64),
    mtime_max_ns: filter.mtime_max_ms.map(|v| (v * 1e6) as i64),
    path_prefixes: filter.path_prefixes,
    path_globs: filter.path_globs,
    last: filter.last.map(|n| n as usize),
  };
  json_task(move |_| json(catalog::search(Path::new(&dst), f)?), None, None)
}

/// `backup history PATH`: JSON of `explore::History`.
#[napi(ts_return_type = "Promise<string>")]
pub fn file_history(dst: String, path: String) -> AsyncTask<JsonTask> {
  json_task(move |_| json(catalog::history(Path::new(&dst), &path)?), None, None)
}

#[napi(object)]
pub struct BindingRestoreOptions {
  pub dst: String,
  pub to: String,
  pub paths: Vec<String>,
  /// An increment name; absent = the latest state.
  pub at: Option<String>,
  pub overwrite: bool,
  pub dry_run: bool,
  pub workers: u32,
}

/// `backup restore`: JSON of `restore::RestoreReport`.
#[napi(ts_return_type = "Promise<string>")]
pub fn restore_backup(
  options: BindingRestoreOptions,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> AsyncTask<JsonTask> {
  let o = RestoreOptions {
    dst: PathBuf::from(options.dst),
    to: PathBuf::from(options.to),
    paths: options.paths,
    at: options.at,
    overwrite: options.overwrite,
    dry_run: options.dry_run,
    workers: options.workers.max(1) as usize,
  };
  json_task(move |p| json(restore::restore(&o, p)?), on_progress, signal)
}

/// `backup recreate`: JSON of `maintain::RecreateReport`.
#[napi(ts_return_type = "Promise<string>")]
pub fn recreate_metadata(
  dst: String,
  only: Option<String>,
  force: bool,
  workers: u32,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
) -> AsyncTask<JsonTask> {
  json_task(move |p| json(maintain::recreate(Path::new(&dst), only.as_deref(), force, workers.max(1) as usize, p)?), on_progress, None)
}

/// `backup delete NAME --mask M`: JSON of `maintain::DeleteReport`.
#[napi(ts_return_type = "Promise<string>")]
pub fn delete_from_increment(dst: String, name: String, masks: Vec<String>, ignore_case: bool, dry_run: bool) -> AsyncTask<JsonTask> {
  json_task(move |_| json(maintain::delete(Path::new(&dst), &name, masks, ignore_case, dry_run)?), None, None)
}

/// `backup prune`: removes the named increments (the policy is applied in JS). JSON of `maintain::PruneReport`.
#[napi(ts_return_type = "Promise<string>")]
pub fn prune_increments(
  dst: String,
  remove: Vec<String>,
  dry_run: bool,
  workers: u32,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
) -> AsyncTask<JsonTask> {
  json_task(move |p| json(maintain::prune(Path::new(&dst), &remove, dry_run, workers.max(1) as usize, p)?), on_progress, None)
}

/// Finishes what a killed `delete` or `prune` left; returns what it did.
#[napi]
pub fn finish_pending(dst: String, workers: u32) -> Result<Vec<String>> {
  maintain::finish_pending(Path::new(&dst), workers.max(1) as usize).map_err(to_napi)
}

/// `backup status`: JSON `{ state: maintain::StateCheck, leftovers: maintain::Leftovers }`.
#[napi(ts_return_type = "Promise<string>")]
pub fn backup_status(dst: String) -> AsyncTask<JsonTask> {
  json_task(
    move |_| {
      let d = Path::new(&dst);
      json(serde_json::json!({ "state": maintain::check_state(d), "leftovers": maintain::leftovers(d) }))
    },
    None,
    None,
  )
}

/// `backup checksum` for one folder: walks, hashes and streams the report
/// to `tmp` (unfinished: `finishReport` adds optional fields and renames
/// it). JSON `{ digest, files, errors, bytes, workTime }`.
#[napi(ts_return_type = "Promise<string>")]
#[allow(clippy::too_many_arguments)]
pub fn checksum_folder(
  root: String,
  algos: Vec<String>,
  threads: u32,
  group: String,
  start_timestamp: f64,
  format: String,
  tmp: String,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> Result<AsyncTask<JsonTask>> {
  let algos = algos.iter().map(|a| checksum::Algo::parse(a)).collect::<std::result::Result<Vec<_>, _>>().map_err(to_napi)?;
  let format = match format.as_str() {
    "json" => checksum::Format::Json,
    "sha256sum" => checksum::Format::Sha256sum,
    "b3sum" => checksum::Format::B3sum,
    other => return Err(Error::new(Status::InvalidArg, format!("ECONFIG: --format {other:?}: use json, sha256sum or b3sum"))),
  };
  Ok(json_task(
    move |p| {
      let run = checksum::run(Path::new(&root), &algos, threads.max(1) as usize, p)?;
      let digest = checksum::write_report(Path::new(&tmp), &run, &group, start_timestamp, format)?;
      json(serde_json::json!({
        "digest": digest,
        "files": run.sums.len(),
        "errors": run.errors.iter().map(|(p, e)| serde_json::json!({ "path": p, "error": e })).collect::<Vec<_>>(),
        "bytes": run.sums.iter().filter(|s| s.f.link.is_none()).map(|s| s.f.size).sum::<u64>(),
        "workTime": run.work_time,
      }))
    },
    on_progress,
    signal,
  ))
}

/// Finishes a report written by `checksumFolder`: appends `extra` (JSON
/// fields, e.g. `,"signature_ed25519":"…"`) and the closing brace, fsyncs,
/// renames `tmp` to `path`.
#[napi]
pub fn finish_report(tmp: String, path: String, extra: String, json_format: bool) -> Result<()> {
  checksum::finish_report(Path::new(&tmp), Path::new(&path), &extra, json_format).map_err(to_napi)
}

#[napi(object)]
pub struct BindingVerifyOptions {
  pub report: String,
  /// Default: the report's `root_data`.
  pub root: Option<String>,
  pub incremental: bool,
  pub threads: u32,
  pub algo: Option<String>,
  /// A raw 32-byte Ed25519 public key: the report must carry a valid `signature_ed25519`.
  pub public_key: Option<Buffer>,
  /// List every path in `results` (else only the problems).
  pub all: bool,
}

/// `backup verify REPORT`: checks the report (digest, and the Ed25519
/// signature: against the given key, else against the embedded one) before reading any file. JSON of `verify::VerifyResult`.
#[napi(ts_return_type = "Promise<string>")]
pub fn verify_report(
  options: BindingVerifyOptions,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> AsyncTask<JsonTask> {
  let key = options.public_key.map(|b| b.to_vec());
  json_task(
    move |p| {
      let path = Path::new(&options.report);
      let rep = verify::load(path, options.algo.as_deref())?;
      let check = verify::check_signature(&rep, path, key.as_deref())?;
      let root = options.root.clone().unwrap_or_else(|| rep.root_data.clone());
      let mut r = verify::verify(&rep, Path::new(&root), options.incremental, options.all, options.threads.max(1) as usize, p)?;
      r.signature_check = check;
      json(r)
    },
    on_progress,
    signal,
  )
}

/// `backup verify --backup DST [--repair]`: JSON of `verify::BackupVerifyResult`.
#[napi(ts_return_type = "Promise<string>")]
pub fn verify_backup(
  dst: String,
  source: Option<String>,
  threads: u32,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
) -> AsyncTask<JsonTask> {
  json_task(
    move |p| json(verify::verify_backup(Path::new(&dst), source.as_deref().map(Path::new), threads.max(1) as usize, p)?),
    on_progress,
    None,
  )
}

#[napi(object)]
pub struct BindingCompareInput {
  pub server: String,
  pub path: String,
}

/// `backup compare`: JSON of `compare::CompareResult`.
#[napi(ts_return_type = "Promise<string>")]
pub fn compare_reports(inputs: Vec<BindingCompareInput>) -> AsyncTask<JsonTask> {
  let inputs: Vec<compare::Input> = inputs.into_iter().map(|i| compare::Input { server: i.server, path: PathBuf::from(i.path) }).collect();
  json_task(move |_| json(compare::compare(&inputs)?), None, None)
}

/// An attempt at the run lock of a backup folder. When `held`, the lock is
/// kept until `release()` (or until the process ends: the OS releases it
/// however the process dies); otherwise `holder` is the information the
/// holder wrote into the lock file (may be empty while it starts).
#[napi]
pub struct RunLock {
  inner: Option<axiomatic_core::fs::lock::RunLock>,
  holder: Option<String>,
}

#[napi]
impl RunLock {
  #[napi(getter)]
  pub fn held(&self) -> bool {
    self.inner.is_some()
  }

  #[napi(getter)]
  pub fn holder(&self) -> Option<String> {
    self.holder.clone()
  }

  /// Releases the lock (idempotent).
  #[napi]
  pub fn release(&mut self) {
    if let Some(mut l) = self.inner.take() {
      l.release();
    }
  }
}

/// Tries to take the lock file `path` (its folder must exist), writing `info` into it.
#[napi]
pub fn acquire_run_lock(path: String, info: String) -> Result<RunLock> {
  match axiomatic_core::fs::lock::acquire(Path::new(&path), &info) {
    Ok(axiomatic_core::fs::lock::Acquire::Held(l)) => Ok(RunLock { inner: Some(l), holder: None }),
    Ok(axiomatic_core::fs::lock::Acquire::Busy(h)) => Ok(RunLock { inner: None, holder: Some(h) }),
    Err(e) => {
      // The errno's name as the code, so the caller can say what is wrong (read-only, full, no permission).
      let code = match e.kind() {
        std::io::ErrorKind::ReadOnlyFilesystem => "EROFS",
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => "ENOSPC",
        std::io::ErrorKind::PermissionDenied => "EACCES",
        _ => "EIO",
      };
      Err(Error::from_reason(format!("{code}: cannot take the lock {path}: {e}")))
    }
  }
}

/// Whether the lock file `path` is held right now (`null` without a lock file).
#[napi(object)]
pub struct BindingLockProbe {
  pub held: bool,
  /// The information in the file (a stale one's when not held).
  pub info: String,
}

#[napi]
pub fn probe_run_lock(path: String) -> Result<Option<BindingLockProbe>> {
  axiomatic_core::fs::lock::probe(Path::new(&path))
    .map(|o| o.map(|(held, info)| BindingLockProbe { held, info }))
    .map_err(|e| Error::from_reason(format!("EIO: cannot read the lock {path}: {e}")))
}

// ---------------------------------------------------------------- layout
// Every on-disk name of a backup folder comes from `axiomatic_core::layout`;
// the TypeScript side asks here instead of rebuilding paths and patterns.

/// The paths of a backup folder (`layout::Layout`).
#[napi(object)]
pub struct BindingLayoutPaths {
  pub dst: String,
  pub mirror: String,
  pub meta: String,
  pub state: String,
  pub journal: String,
  pub incomplete: String,
  pub lock: String,
  pub source: String,
  pub target: String,
  pub last_run: String,
  pub prune: String,
  pub trash: String,
  pub pending_removals: String,
}

/// The paths of the backup folder `dst` (nothing is read or created).
#[napi]
pub fn layout_paths(dst: String) -> BindingLayoutPaths {
  let l = axiomatic_core::layout::Layout::new(Path::new(&dst));
  let s = |p: &Path| p.to_string_lossy().into_owned();
  BindingLayoutPaths {
    dst: s(&l.dst),
    mirror: s(&l.mirror),
    meta: s(&l.meta),
    state: s(&l.state),
    journal: s(&l.journal),
    incomplete: s(&l.incomplete),
    lock: s(&l.lock),
    source: s(&l.source),
    target: s(&l.target),
    last_run: s(&l.last_run),
    prune: s(&l.prune),
    trash: s(&l.trash),
    pending_removals: s(&l.pending_removals),
  }
}

/// An increment folder name `backup_YYYYMMDD_HHMMSS[_N]`, parsed.
#[napi(object)]
pub struct BindingIncrementName {
  /// Seconds since the epoch the name says (UTC).
  pub time_s: f64,
  /// `N`, 0 without a suffix.
  pub seq: u32,
}

/// Parses an increment folder name; `null` when it is not one (bad date included).
#[napi]
pub fn parse_increment_name(name: String) -> Option<BindingIncrementName> {
  axiomatic_core::layout::parse_increment_name(&name).map(|(t, seq)| BindingIncrementName { time_s: t as f64, seq })
}

/// Whether `name` is an increment folder name.
#[napi]
pub fn is_increment_name(name: String) -> bool {
  axiomatic_core::layout::is_increment_name(&name)
}
