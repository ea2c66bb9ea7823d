//! napi-rs binding of `axiomatic-core`: converts options, results, errors
//! and progress. No backup logic lives here. Results are `#[napi(object)]`
//! structs (the generated `binding.d.ts` is the TS contract); list, search
//! and history return JSON text, which converts faster at catalog scale.
//! Errors become JS errors with a `code` property.

#![deny(clippy::all)]

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use axiomatic_core::backup::engine::{self, Options, Report};
use axiomatic_core::backup::guard;
use axiomatic_core::backup::increments::DamagedMeta;
use axiomatic_core::backup::meta::PendingRun;
use axiomatic_core::backup::rules::{DirPriority, Pattern, Role, RuleSpec, Rules};
use axiomatic_core::explore::catalog::{self, SearchFilter};
use axiomatic_core::explore::index;
use axiomatic_core::explore::maintain;
use axiomatic_core::explore::restore::{self, RestoreOptions};
use axiomatic_core::progress::{Phase, Progress};
use axiomatic_core::{integrity::checksum, integrity::compare, integrity::verify};
use axiomatic_core::{Error as CoreError, Warning};
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

/// A per-path problem that did not stop the command (`code`: one of `WarningCode` in `js/warnings.ts`).
#[napi(object)]
pub struct BindingWarning {
  pub path: String,
  pub code: String,
  pub message: String,
}

impl From<Warning> for BindingWarning {
  fn from(w: Warning) -> Self {
    Self { path: w.path, code: w.code, message: w.message }
  }
}

fn js_warnings(v: Vec<Warning>) -> Vec<BindingWarning> {
  v.into_iter().map(Into::into).collect()
}

/// Whether a selected file keeps history (`tracked`) or only a mirror copy (`mirrored`).
#[napi(string_enum = "lowercase")]
pub enum BindingRole {
  Tracked,
  Mirrored,
}

impl From<Role> for BindingRole {
  fn from(r: Role) -> Self {
    match r {
      Role::Tracked => Self::Tracked,
      Role::Mirrored => Self::Mirrored,
    }
  }
}

/// One path and the change a run gives it (dry run with `listChanges`).
#[napi(object)]
pub struct BindingChange {
  pub path: String,
  pub role: BindingRole,
  #[napi(ts_type = "'new' | 'changed' | 'deleted' | 'removed' | 'unchanged' | 'start-tracking'")]
  pub change: String,
}

/// A selected file (`selectFiles`).
#[napi(object)]
pub struct BindingSelected {
  pub path: String,
  pub role: BindingRole,
}

/// The outcome of one run (the `Stats` of `js/backup.ts` adds `dryRun` and the target's probe).
#[napi(object, use_nullable = true)]
pub struct BindingReport {
  /// The increment this run committed, or null.
  pub increment: Option<String>,
  /// An increment finished on behalf of an interrupted earlier run, or null.
  pub recovered: Option<String>,
  pub mirror_files: f64,
  pub tracked_files: f64,
  pub new: f64,
  pub changed: f64,
  pub deleted: f64,
  pub removed_from_mirror: f64,
  /// Untracked files copied into the mirror.
  pub mirror_updated: f64,
  pub bytes_copied: f64,
  /// Increment files stored as copies because a hardlink was impossible.
  pub link_fallbacks: f64,
  /// Sockets, FIFOs and devices that the rules selected, skipped.
  pub special_skipped: f64,
  pub mtime_tolerance_s: f64,
  pub duration_ms: f64,
  pub warnings: Vec<BindingWarning>,
  /// Advice about the rules, e.g. `did you mean "*.txt:rec"?`.
  pub hints: Vec<String>,
  /// Every selected path and its change (dry run with `listChanges`; else empty).
  pub changes: Vec<BindingChange>,
  /// Dry run only: why the real run would be refused (a foreign source or a mass deletion), or null.
  /// A real run is refused with an error of code `EREFUSED` instead.
  pub refused: Option<String>,
  /// The backup folder was made by the original backup.py (no state of ours): its `mirror/` and `mirror.json` were
  /// taken as the previous state, so unchanged files were not copied again.
  pub adopted: bool,
}

impl From<Report> for BindingReport {
  fn from(r: Report) -> Self {
    // Every field named, so a field added to the core struct fails to compile here until the binding carries it.
    let Report {
      increment,
      recovered,
      mirror_files,
      tracked_files,
      new,
      changed,
      deleted,
      removed_from_mirror,
      mirror_updated,
      bytes_copied,
      link_fallbacks,
      special_skipped,
      mtime_tolerance_ns,
      duration_ms,
      warnings,
      hints,
      changes,
      refused,
      adopted,
    } = r;
    Self {
      increment,
      recovered,
      mirror_files: mirror_files as f64,
      tracked_files: tracked_files as f64,
      new: new as f64,
      changed: changed as f64,
      deleted: deleted as f64,
      removed_from_mirror: removed_from_mirror as f64,
      mirror_updated: mirror_updated as f64,
      bytes_copied: bytes_copied as f64,
      link_fallbacks: link_fallbacks as f64,
      special_skipped: special_skipped as f64,
      mtime_tolerance_s: mtime_tolerance_ns as f64 / 1e9,
      duration_ms: duration_ms as f64,
      warnings: js_warnings(warnings),
      hints,
      changes: changes.into_iter().map(|c| BindingChange { path: c.path, role: c.role.into(), change: c.change }).collect(),
      refused,
      adopted,
    }
  }
}

/// The phase a long command is in (`Phase` of the core).
#[napi(string_enum = "lowercase")]
#[derive(Clone, Copy)]
pub enum BindingPhase {
  Recover,
  Scan,
  Plan,
  Apply,
  Commit,
  Done,
}

impl From<Phase> for BindingPhase {
  fn from(p: Phase) -> Self {
    match p {
      Phase::Recover => Self::Recover,
      Phase::Scan => Self::Scan,
      Phase::Plan => Self::Plan,
      Phase::Apply => Self::Apply,
      Phase::Commit => Self::Commit,
      Phase::Done => Self::Done,
    }
  }
}

/// A progress snapshot.
#[napi(object)]
#[derive(Clone)]
pub struct BindingProgress {
  pub phase: BindingPhase,
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
    phase: p.phase().into(),
    files_scanned: p.files_scanned.load(Relaxed) as f64,
    bytes_scanned: p.bytes_scanned.load(Relaxed) as f64,
    ops_total: p.ops_total.load(Relaxed) as f64,
    ops_done: p.ops_done.load(Relaxed) as f64,
    bytes_total: p.bytes_total.load(Relaxed) as f64,
    bytes_done: p.bytes_done.load(Relaxed) as f64,
  }
}

/// A JS `Error` with the core's message and a `code` property (`ECONFIG`,
/// `EIO`… as `ErrorCode` in `js/errors.ts` declares them). napi sets `code`
/// from an error's status string; the object is built here, on the JS
/// thread, and handed back as the error to throw or reject with.
fn js_error(env: &Env, code: &str, message: String) -> Error {
  Error::from(JsError::from(Error::new(code, message)).into_unknown(*env))
}

/// A core error as a JS error with its code.
fn core_error(env: &Env, e: CoreError) -> Error {
  js_error(env, e.code(), e.message)
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

type CoreResult<T> = std::result::Result<T, CoreError>;
type Job<T> = Box<dyn FnOnce(&Progress) -> CoreResult<T> + Send>;

/// A core call off the main thread: its result `T` becomes the JS value
/// `J` (a `#[napi(object)]`, or JSON text where that converts faster),
/// its error a JS error with a code. The error is kept as data until
/// `resolve`, because a JS error can only be built on the JS thread.
pub struct CoreTask<T, J> {
  job: Option<Job<T>>,
  progress: Arc<Progress>,
  on_progress: Option<Arc<ProgressFn>>,
  js: PhantomData<fn() -> J>,
}

impl<T: Send + 'static, J: From<T> + ToNapiValue + TypeName> Task for CoreTask<T, J> {
  type Output = CoreResult<T>;
  type JsValue = J;

  fn compute(&mut self) -> Result<Self::Output> {
    let job = self.job.take().expect("a task runs once");
    Ok(with_ticker(&self.progress, self.on_progress.as_ref(), || job(&self.progress)))
  }

  fn resolve(&mut self, env: Env, output: Self::Output) -> Result<J> {
    output.map(J::from).map_err(|e| core_error(&env, e))
  }
}

/// JSON text of a result (plain data: serializing cannot fail).
fn json<T: serde::Serialize>(v: T) -> String {
  serde_json::to_string(&v).expect("plain data serializes")
}

fn task<T: Send + 'static, J: From<T> + ToNapiValue + TypeName>(
  job: impl FnOnce(&Progress) -> CoreResult<T> + Send + 'static,
  on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> AsyncTask<CoreTask<T, J>> {
  let progress = Arc::new(Progress::new());
  if let Some(sig) = &signal {
    let p = progress.clone();
    sig.on_abort(move || p.abort());
  }
  let t = CoreTask { job: Some(Box::new(job)), progress, on_progress: on_progress.map(Arc::new), js: PhantomData };
  AsyncTask::with_optional_signal(t, signal)
}

type JsonTask = CoreTask<String, String>;

/// Runs one backup off the main thread.
#[napi(ts_return_type = "Promise<BindingReport>")]
pub fn run_backup(
  env: Env,
  options: BindingRunOptions,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> Result<AsyncTask<CoreTask<Report, BindingReport>>> {
  let rules = options.rules.into_spec()?;
  let max_delete = options.max_delete.as_deref().map(guard::DeleteLimit::parse).transpose().map_err(|e| core_error(&env, e))?;
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
  Ok(task(
    move |p| {
      let mut r = engine::run(&opts, p)?;
      // The catalog index follows the run; a failure is a warning, never the run's.
      if !opts.dry_run {
        r.warnings.extend(index::update(&opts.dst));
      }
      Ok(r)
    },
    on_progress,
    signal,
  ))
}

/// Compiles the rules once to check them; throws an error of code `ECONFIG` naming the key if a pattern cannot compile.
#[napi]
pub fn check_rules(env: Env, rules: BindingRules) -> Result<()> {
  Rules::compile(&rules.into_spec()?).map(|_| ()).map_err(|e| core_error(&env, e))
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
  pub role: Option<BindingRole>,
  pub steps: Vec<BindingStep>,
}

/// Says which rule selects, tracks or excludes `path` (relative to `src`).
#[napi]
pub fn explain_path(env: Env, rules: BindingRules, path: String, is_dir: bool) -> Result<BindingExplanation> {
  let r = Rules::compile(&rules.into_spec()?).map_err(|e| core_error(&env, e))?;
  let e = r.explain(&path, is_dir);
  Ok(BindingExplanation {
    selected: e.selected,
    role: e.role.map(Into::into),
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
pub fn select_files(env: Env, src: String, rules: BindingRules) -> Result<Vec<BindingSelected>> {
  let r = Rules::compile(&rules.into_spec()?).map_err(|e| core_error(&env, e))?;
  let res = axiomatic_core::backup::scan::scan(std::path::Path::new(&src), &r, &Progress::new(), Default::default())
    .map_err(|e| core_error(&env, e))?;
  Ok(res.entries.into_iter().map(|e| BindingSelected { path: e.rel.into(), role: e.role.into() }).collect())
}

/// `backup list`: JSON text of `catalog::Listing` (JSON: see "The binding" in docs/design.md).
#[napi(ts_return_type = "Promise<string>")]
pub fn list_increments(dst: String, detailed: bool) -> AsyncTask<JsonTask> {
  task(move |_| Ok(json(catalog::list(Path::new(&dst), detailed)?)), None, None)
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

/// `backup search`: JSON text of `catalog::Found` (a million hits convert ≈ 2.5× faster as JSON).
#[napi(ts_return_type = "Promise<string>")]
pub fn search_backup(dst: String, filter: BindingSearchFilter) -> AsyncTask<JsonTask> {
  let f = search_filter(filter);
  task(move |_| Ok(json(catalog::search(Path::new(&dst), f)?)), None, None)
}

fn search_filter(filter: BindingSearchFilter) -> SearchFilter {
  SearchFilter {
    masks: filter.masks,
    ignore_case: filter.ignore_case,
    size_min: filter.size_min.map(|v| v as u64),
    size_max: filter.size_max.map(|v| v as u64),
    mtime_min_ns: filter.mtime_min_ms.map(|v| (v * 1e6) as i64),
    mtime_max_ns: filter.mtime_max_ms.map(|v| (v * 1e6) as i64),
    path_prefixes: filter.path_prefixes,
    path_globs: filter.path_globs,
    last: filter.last.map(|n| n as usize),
  }
}

/// `backup history PATH`: JSON text of `catalog::History`.
#[napi(ts_return_type = "Promise<string>")]
pub fn file_history(dst: String, path: String) -> AsyncTask<JsonTask> {
  task(move |_| Ok(json(catalog::history(Path::new(&dst), &path)?)), None, None)
}

/// The timeline: JSON text of `catalog::Listing` with `exclusiveBytes` from the catalog index.
#[napi(ts_return_type = "Promise<string>")]
pub fn backup_timeline(dst: String) -> AsyncTask<JsonTask> {
  task(move |_| Ok(json(index::timeline(Path::new(&dst))?)), None, None)
}

/// One folder at a point in time (`at`: an increment name; absent = the latest state): JSON text of `index::Tree`.
#[napi(ts_return_type = "Promise<string>")]
pub fn backup_tree(dst: String, path: String, at: Option<String>) -> AsyncTask<JsonTask> {
  task(move |_| Ok(json(index::tree(Path::new(&dst), &path, at.as_deref())?)), None, None)
}

/// The tracked files that differ between two increments: JSON text of `index::Diff`.
#[napi(ts_return_type = "Promise<string>")]
pub fn backup_diff(dst: String, from: String, to: String, paths: Vec<String>) -> AsyncTask<JsonTask> {
  task(move |_| Ok(json(index::diff(Path::new(&dst), &from, &to, &paths)?)), None, None)
}

/// What the index-free reading answers (list, search, history, tree, diff), for tests and
/// `AXIOMATIC_INDEX=off`-style comparisons: JSON text of the same shapes.
#[napi(object)]
pub struct BindingDirectQuery {
  /// `list`, `search`, `history`, `tree`, `diff`, `restore-at` (the newest mentions at `at`).
  pub what: String,
  pub path: Option<String>,
  pub at: Option<String>,
  pub from: Option<String>,
  pub to: Option<String>,
  pub paths: Option<Vec<String>>,
  pub filter: Option<BindingSearchFilter>,
}

/// Answers `q` from the index (`indexed`, as every reader gets it: rebuilt when damaged) or from the
/// metadata files: the tests compare both.
#[napi(ts_return_type = "Promise<string>")]
pub fn query_backup(dst: String, q: BindingDirectQuery, indexed: bool) -> AsyncTask<JsonTask> {
  task(
    move |_| {
      let d = Path::new(&dst);
      let path = q.path.clone().unwrap_or_default();
      let paths = q.paths.clone().unwrap_or_default();
      let (from, to) = (q.from.clone().unwrap_or_default(), q.to.clone().unwrap_or_default());
      let at = q.at.clone();
      let filter = q.filter.map(search_filter);
      let keep = |p: &str| paths.is_empty() || paths.iter().any(|w| catalog::prefix_match(p, w));
      let answer = |ix: Option<&index::Index>| -> CoreResult<String> {
        Ok(match (q.what.as_str(), ix) {
          ("list", Some(ix)) => json(ix.list()?),
          ("list", None) => json(catalog::list_direct(d, false)?),
          ("search", ix) => {
            let f = filter.clone().ok_or_else(|| CoreError::config("search needs a filter"))?;
            match ix {
              Some(ix) => json(ix.search(f)?),
              None => json(catalog::search_direct(d, f)?),
            }
          }
          ("history", Some(ix)) => json(ix.history(&path)?),
          ("history", None) => json(catalog::history_direct(d, &path)?),
          ("tree", Some(ix)) => json(ix.tree(&path, at.as_deref())?),
          ("tree", None) => json(index::tree_direct(d, &path, at.as_deref())?),
          ("diff", Some(ix)) => json(ix.diff(&from, &to, &paths)?),
          ("diff", None) => json(index::diff_direct(d, &from, &to, &paths)?),
          ("restore-at", ix) => {
            let at = at.clone().unwrap_or_default();
            let m: BTreeMap<String, (String, axiomatic_core::backup::meta::CatalogEntry)> = match ix {
              Some(ix) => ix.newest_mentions(&at, &keep)?.into_iter().collect(),
              None => {
                let incs = axiomatic_core::backup::increments::list(d)?;
                let k = incs.iter().position(|i| i.name == at).ok_or_else(|| CoreError::config(format!("no increment {at:?}")))?;
                catalog::newest_mentions(&incs[..=k], &keep)?.into_iter().map(|(p, (i, e))| (p, (incs[i].name.clone(), e))).collect()
              }
            };
            json(m)
          }
          (w, _) => return Err(CoreError::config(format!("unknown query {w:?}"))),
        })
      };
      if indexed {
        index::with(d, |ix| answer(Some(ix))).unwrap_or_else(|| Err(CoreError::config("the catalog index cannot be used here")))
      } else {
        answer(None)
      }
    },
    None,
    None,
  )
}

/// Builds the catalog index of `dst` anew (it is derived: this only costs time).
#[napi(ts_return_type = "Promise<string>")]
pub fn rebuild_index(dst: String) -> AsyncTask<JsonTask> {
  task(move |_| index::Index::rebuild(Path::new(&dst)).map(|_| json(serde_json::Value::Null)), None, None)
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

/// An interrupted run (its journal is still there): the next `backup run` finishes it.
#[napi(object, use_nullable = true)]
pub struct BindingPendingRun {
  /// The increment it was building, if any.
  pub increment: Option<String>,
  pub started: String,
  pub ops: i64,
}

impl From<PendingRun> for BindingPendingRun {
  fn from(p: PendingRun) -> Self {
    Self { increment: p.increment, started: p.started, ops: p.ops as i64 }
  }
}

/// Increment metadata that is missing or damaged: the file, what is wrong, the command that rebuilds it.
#[napi(object)]
pub struct BindingDamagedMetadata {
  pub increment: String,
  pub file: String,
  pub problem: String,
  pub fix: String,
}

impl From<DamagedMeta> for BindingDamagedMetadata {
  fn from(d: DamagedMeta) -> Self {
    Self { increment: d.increment, file: d.file, problem: d.problem, fix: d.fix }
  }
}

fn js_damaged(v: Vec<DamagedMeta>) -> Vec<BindingDamagedMetadata> {
  v.into_iter().map(Into::into).collect()
}

/// A file a restore writes (dry run only).
#[napi(object)]
pub struct BindingRestoreItem {
  pub path: String,
  /// `mirror` or the increment the version comes from.
  pub from: String,
  /// Restored from the mirror's current copy: no history is kept for it.
  pub untracked: bool,
  pub size: i64,
}

/// What `restore` did (or would do).
#[napi(object, use_nullable = true)]
pub struct BindingRestoreResult {
  /// The increment of the point in time; null = the latest state.
  pub at: Option<String>,
  pub dry_run: bool,
  pub files: i64,
  pub bytes: i64,
  pub restored: i64,
  /// Untracked files, restored from the mirror's current copy.
  pub untracked: i64,
  pub existing: i64,
  pub deleted_at_point: i64,
  /// An interrupted run, unfinished: the next `backup run` completes it.
  pub pending_run: Option<BindingPendingRun>,
  /// Mirror files that run already replaced (restored as they are) or removed (not restored).
  pub pending: i64,
  /// Dry run only: every file and where it comes from.
  pub items: Vec<BindingRestoreItem>,
  pub warnings: Vec<BindingWarning>,
}

impl From<restore::RestoreReport> for BindingRestoreResult {
  fn from(r: restore::RestoreReport) -> Self {
    // Every field named, so a field added to the core struct fails to compile here until the binding carries it.
    let restore::RestoreReport {
      at,
      dry_run,
      files,
      bytes,
      restored,
      untracked,
      existing,
      deleted_at_point,
      pending,
      pending_run,
      items,
      warnings,
    } = r;
    Self {
      at,
      dry_run,
      files: files as i64,
      bytes: bytes as i64,
      restored: restored as i64,
      untracked: untracked as i64,
      existing: existing as i64,
      deleted_at_point: deleted_at_point as i64,
      pending_run: pending_run.map(Into::into),
      pending: pending as i64,
      items: items
        .into_iter()
        .map(|i| BindingRestoreItem { path: i.path, from: i.from, untracked: i.untracked, size: i.size as i64 })
        .collect(),
      warnings: js_warnings(warnings),
    }
  }
}

/// `backup restore`.
#[napi(ts_return_type = "Promise<BindingRestoreResult>")]
pub fn restore_backup(
  options: BindingRestoreOptions,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> AsyncTask<CoreTask<restore::RestoreReport, BindingRestoreResult>> {
  let o = RestoreOptions {
    dst: PathBuf::from(options.dst),
    to: PathBuf::from(options.to),
    paths: options.paths,
    at: options.at,
    overwrite: options.overwrite,
    dry_run: options.dry_run,
    workers: options.workers.max(1) as usize,
  };
  task(move |p| restore::restore(&o, p), on_progress, signal)
}

/// What `recreate` rebuilt.
#[napi(object)]
pub struct BindingRecreateResult {
  pub rebuilt: Vec<String>,
  pub kept: Vec<String>,
  pub state_rebuilt: bool,
  pub state_entries: i64,
  pub warnings: Vec<BindingWarning>,
}

impl From<maintain::RecreateReport> for BindingRecreateResult {
  fn from(r: maintain::RecreateReport) -> Self {
    // Every field named, so a field added to the core struct fails to compile here until the binding carries it.
    let maintain::RecreateReport { rebuilt, kept, state_rebuilt, state_entries, warnings } = r;
    Self { rebuilt, kept, state_rebuilt, state_entries: state_entries as i64, warnings: js_warnings(warnings) }
  }
}

/// `backup recreate`.
#[napi(ts_return_type = "Promise<BindingRecreateResult>")]
pub fn recreate_metadata(
  dst: String,
  only: Option<String>,
  force: bool,
  workers: u32,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
) -> AsyncTask<CoreTask<maintain::RecreateReport, BindingRecreateResult>> {
  task(move |p| maintain::recreate(Path::new(&dst), only.as_deref(), force, workers.max(1) as usize, p), on_progress, None)
}

/// A file `delete` removed from an increment.
#[napi(object)]
pub struct BindingRemovedFile {
  pub path: String,
  /// `track` or `deleted`.
  pub category: String,
  pub size: i64,
}

/// What `delete` removed (or would remove).
#[napi(object)]
pub struct BindingDeleteResult {
  pub increment: String,
  pub dry_run: bool,
  pub removed: Vec<BindingRemovedFile>,
  pub bytes: i64,
}

impl From<maintain::DeleteReport> for BindingDeleteResult {
  fn from(r: maintain::DeleteReport) -> Self {
    // Every field named, so a field added to the core struct fails to compile here until the binding carries it.
    let maintain::DeleteReport { increment, dry_run, removed, bytes } = r;
    Self {
      increment,
      dry_run,
      removed: removed.into_iter().map(|f| BindingRemovedFile { path: f.path, category: f.category, size: f.size as i64 }).collect(),
      bytes: bytes as i64,
    }
  }
}

/// `backup delete NAME --mask M`.
#[napi(ts_return_type = "Promise<BindingDeleteResult>")]
pub fn delete_from_increment(
  dst: String,
  name: String,
  masks: Vec<String>,
  ignore_case: bool,
  dry_run: bool,
) -> AsyncTask<CoreTask<maintain::DeleteReport, BindingDeleteResult>> {
  task(move |_| maintain::delete(Path::new(&dst), &name, masks, ignore_case, dry_run), None, None)
}

/// What `prune` removed and carried.
#[napi(object)]
pub struct BindingPruneResult {
  pub dry_run: bool,
  pub removed: Vec<String>,
  pub kept: Vec<String>,
  /// Entries carried into each kept increment.
  pub carried: BTreeMap<String, i64>,
  pub files_removed: i64,
}

impl From<maintain::PruneReport> for BindingPruneResult {
  fn from(r: maintain::PruneReport) -> Self {
    // Every field named, so a field added to the core struct fails to compile here until the binding carries it.
    let maintain::PruneReport { dry_run, removed, kept, carried, files_removed } = r;
    Self { dry_run, removed, kept, carried: carried.into_iter().map(|(k, v)| (k, v as i64)).collect(), files_removed: files_removed as i64 }
  }
}

/// `backup prune`: removes the named increments (the policy is applied in JS).
#[napi(ts_return_type = "Promise<BindingPruneResult>")]
pub fn prune_increments(
  dst: String,
  remove: Vec<String>,
  dry_run: bool,
  workers: u32,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
) -> AsyncTask<CoreTask<maintain::PruneReport, BindingPruneResult>> {
  task(move |p| maintain::prune(Path::new(&dst), &remove, dry_run, workers.max(1) as usize, p), on_progress, None)
}

/// Finishes what a killed `delete` or `prune` left; returns what it did.
#[napi]
pub fn finish_pending(env: Env, dst: String, workers: u32) -> Result<Vec<String>> {
  maintain::finish_pending(Path::new(&dst), workers.max(1) as usize).map_err(|e| core_error(&env, e))
}

/// Fast check (size, mtime) of the mirror state against `dst/mirror`.
#[napi(object, use_nullable = true)]
pub struct BindingStateCheck {
  pub state_present: bool,
  /// A folder of the original backup.py: mirror.json compared with mirror/; the next run adopts it.
  pub original: bool,
  pub state_error: Option<String>,
  pub state_entries: i64,
  pub mirror_files: i64,
  pub missing: Vec<String>,
  pub extra: Vec<String>,
  pub differing: Vec<String>,
  /// Differences an interrupted run already made (the next run finishes it).
  pub pending: Vec<String>,
  pub agrees: bool,
}

/// What interrupted commands left in `.axiomatic/`.
#[napi(object, use_nullable = true)]
pub struct BindingLeftovers {
  pub interrupted_run: Option<BindingPendingRun>,
  pub incomplete_increments: Vec<String>,
  pub prune_pending: bool,
  pub delete_pending: bool,
}

#[napi(object)]
pub struct BindingStatus {
  pub state: BindingStateCheck,
  pub leftovers: BindingLeftovers,
}

/// The state check and leftovers of a backup folder.
pub struct StatusParts(maintain::StateCheck, maintain::Leftovers);

impl From<StatusParts> for BindingStatus {
  fn from(StatusParts(c, l): StatusParts) -> Self {
    // Every field named, so a field added to the core structs fails to compile here until the binding carries it.
    let maintain::StateCheck {
      state_present,
      original,
      state_error,
      state_entries,
      mirror_files,
      missing,
      extra,
      differing,
      pending,
      agrees,
    } = c;
    let maintain::Leftovers { interrupted_run, incomplete_increments, prune_pending, delete_pending } = l;
    let run = interrupted_run.map(|v| BindingPendingRun {
      increment: v.get("increment").and_then(|i| i.as_str()).map(String::from),
      started: v.get("started").and_then(|s| s.as_str()).unwrap_or_default().into(),
      ops: v.get("ops").and_then(|o| o.as_i64()).unwrap_or_default(),
    });
    Self {
      state: BindingStateCheck {
        state_present,
        original,
        state_error,
        state_entries: state_entries as i64,
        mirror_files: mirror_files as i64,
        missing,
        extra,
        differing,
        pending,
        agrees,
      },
      leftovers: BindingLeftovers { interrupted_run: run, incomplete_increments, prune_pending, delete_pending },
    }
  }
}

/// `backup status`: the mirror state check and the leftovers of interrupted commands.
#[napi(ts_return_type = "Promise<BindingStatus>")]
pub fn backup_status(dst: String) -> AsyncTask<CoreTask<StatusParts, BindingStatus>> {
  task(
    move |_| {
      let d = Path::new(&dst);
      Ok(StatusParts(maintain::check_state(d), maintain::leftovers(d)))
    },
    None,
    None,
  )
}

/// A file `checksum` could not read.
#[napi(object)]
pub struct BindingChecksumError {
  pub path: String,
  pub error: String,
}

/// One folder's checksum run (the report is written, not yet finished).
#[napi(object, use_nullable = true)]
pub struct BindingChecksumRun {
  /// SHA3-512 hex of the report data (json format).
  pub digest: Option<String>,
  pub files: i64,
  pub errors: Vec<BindingChecksumError>,
  pub bytes: i64,
  pub work_time: f64,
}

/// `backup checksum` for one folder: walks, hashes and streams the report
/// to `tmp` (unfinished: `finishReport` adds optional fields and renames it).
#[napi(ts_return_type = "Promise<BindingChecksumRun>")]
#[allow(clippy::too_many_arguments)]
pub fn checksum_folder(
  env: Env,
  root: String,
  algos: Vec<String>,
  threads: u32,
  group: String,
  start_timestamp: f64,
  format: String,
  tmp: String,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> Result<AsyncTask<CoreTask<BindingChecksumRun, BindingChecksumRun>>> {
  let algos = algos.iter().map(|a| checksum::Algo::parse(a)).collect::<CoreResult<Vec<_>>>().map_err(|e| core_error(&env, e))?;
  let format = match format.as_str() {
    "json" => checksum::Format::Json,
    "sha256sum" => checksum::Format::Sha256sum,
    "b3sum" => checksum::Format::B3sum,
    other => return Err(js_error(&env, "ECONFIG", format!("--format {other:?}: use json, sha256sum or b3sum"))),
  };
  Ok(task(
    move |p| {
      let to = checksum::ReportTo { tmp: Path::new(&tmp), group: &group, start_timestamp, format };
      let w = checksum::checksum_report(Path::new(&root), &algos, threads.max(1) as usize, p, &to)?;
      Ok(BindingChecksumRun {
        digest: w.digest,
        files: w.files as i64,
        errors: w.errors.into_iter().map(|(path, error)| BindingChecksumError { path, error }).collect(),
        bytes: w.bytes as i64,
        work_time: w.work_time,
      })
    },
    on_progress,
    signal,
  ))
}

/// Finishes a report written by `checksumFolder`: appends `extra` (JSON
/// fields, e.g. `,"signature_ed25519":"…"`) and the closing brace, fsyncs,
/// renames `tmp` to `path`.
#[napi]
pub fn finish_report(env: Env, tmp: String, path: String, extra: String, json_format: bool) -> Result<()> {
  checksum::finish_report(Path::new(&tmp), Path::new(&path), &extra, json_format).map_err(|e| core_error(&env, e))
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

/// The verdict on one path (`verify`, `verify --backup`).
#[napi(string_enum = "UPPERCASE")]
pub enum BindingVerifyStatus {
  Ok,
  /// Content differs (and size or mtime changed too: an edit).
  Failed,
  /// Content differs while size and mtime are unchanged: bit rot.
  Corrupt,
  Missing,
  /// Present, not in the report.
  New,
  /// Unreadable.
  Error,
  /// `verify --backup`: a version of the original backup.py that a later one overwrote in place.
  Overwritten,
}

impl From<verify::Status> for BindingVerifyStatus {
  fn from(s: verify::Status) -> Self {
    use verify::Status as S;
    match s {
      S::Ok => Self::Ok,
      S::Failed => Self::Failed,
      S::Corrupt => Self::Corrupt,
      S::Missing => Self::Missing,
      S::New => Self::New,
      S::Error => Self::Error,
      S::Overwritten => Self::Overwritten,
    }
  }
}

/// How the Ed25519 signature was checked: `pubkey` (by the key given: proves who signed), `embedded-key`
/// (by the key written in the report: proves only that nothing changed after signing), `no-key` (signed,
/// no key to check it with), `unsigned`. A signature that does not verify is an error (exit 2).
#[napi(string_enum = "kebab-case")]
pub enum BindingSignatureCheck {
  Unsigned,
  EmbeddedKey,
  NoKey,
  Pubkey,
}

impl From<verify::SignatureCheck> for BindingSignatureCheck {
  fn from(c: verify::SignatureCheck) -> Self {
    use verify::SignatureCheck as C;
    match c {
      C::Unsigned => Self::Unsigned,
      C::EmbeddedKey => Self::EmbeddedKey,
      C::NoKey => Self::NoKey,
      C::Pubkey => Self::Pubkey,
    }
  }
}

/// One path and its verdict (`detail` only when there is something to say).
#[napi(object)]
pub struct BindingVerdict {
  pub path: String,
  pub status: BindingVerifyStatus,
  pub detail: Option<String>,
}

/// What `verify REPORT` found.
#[napi(object, use_nullable = true)]
pub struct BindingVerifyResult {
  pub root: String,
  pub algorithms: Vec<String>,
  pub incremental: bool,
  pub digest: Option<String>,
  pub signature_ed25519: Option<String>,
  pub signature_check: BindingSignatureCheck,
  /// `incremental`: the report's SHA3-512 was taken from the cache of verified
  /// digests (`$XDG_CACHE_HOME/axiomatic-backup/verified/`), the report file being
  /// unchanged (size, mtime, ctime, inode, device) since it was last checked.
  pub signature_cached: bool,
  /// `incremental`: the report file was not read at all; its parsed form came from the cache beside the
  /// verified digest (`<dev>-<ino>.report`, same key), written by an earlier verify of the unchanged file.
  pub report_cached: bool,
  pub files: i64,
  /// Files trusted without reading (`incremental`: size, mtime, inode and ctime unchanged).
  pub trusted: i64,
  pub bytes_read: i64,
  /// Paths per status (`OK`, `FAILED`…); covers every path even without `all`.
  #[napi(ts_type = "Partial<Record<BindingVerifyStatus, number>>")]
  pub counts: HashMap<String, i64>,
  /// The problems (every path with `all`), sorted by path.
  pub results: Vec<BindingVerdict>,
}

impl From<verify::VerifyResult> for BindingVerifyResult {
  fn from(r: verify::VerifyResult) -> Self {
    // Every field named, so a field added to the core struct fails to compile here until the binding carries it.
    let verify::VerifyResult {
      root,
      algorithms,
      incremental,
      digest,
      signature_ed25519,
      signature_check,
      signature_cached,
      report_cached,
      files,
      trusted,
      bytes_read,
      counts,
      results,
    } = r;
    Self {
      root,
      algorithms,
      incremental,
      digest,
      signature_ed25519,
      signature_check: signature_check.into(),
      signature_cached,
      report_cached,
      files: files as i64,
      trusted: trusted as i64,
      bytes_read: bytes_read as i64,
      counts: counts.into_iter().map(|(k, v)| (k, v as i64)).collect(),
      results: results.into_iter().map(|v| BindingVerdict { path: v.path, status: v.status.into(), detail: v.detail }).collect(),
    }
  }
}

/// `backup verify REPORT`: checks the report (digest, and the Ed25519
/// signature: against the given key, else against the embedded one) before reading any file.
#[napi(ts_return_type = "Promise<BindingVerifyResult>")]
pub fn verify_report(
  options: BindingVerifyOptions,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> AsyncTask<CoreTask<verify::VerifyResult, BindingVerifyResult>> {
  let key = options.public_key.map(|b| b.to_vec());
  task(
    move |p| {
      let o = verify::VerifyOptions {
        root: options.root.as_ref().map(std::path::PathBuf::from),
        algo_hint: options.algo.as_deref(),
        pubkey: key.as_deref(),
        incremental: options.incremental,
        all: options.all,
        threads: options.threads.max(1) as usize,
        cache: axiomatic_core::integrity::digest_cache::DigestCache::user(),
      };
      verify::verify_report(Path::new(&options.report), &o, p)
    },
    on_progress,
    signal,
  )
}

/// One problem found in a backup folder.
#[napi(object, use_nullable = true)]
pub struct BindingBackupProblem {
  /// `mirror` or the increment name.
  pub location: String,
  pub path: String,
  pub status: BindingVerifyStatus,
  pub detail: Option<String>,
  /// With repair: `repaired`, or why not.
  pub repair: Option<String>,
}

/// What `verify --backup` found.
#[napi(object, use_nullable = true)]
pub struct BindingBackupVerifyResult {
  pub increments: i64,
  pub files_checked: i64,
  /// Distinct inodes hashed (hardlinked versions are read once).
  pub inodes_read: i64,
  pub bytes_read: i64,
  /// Untracked mirror files: no hash is recorded for them.
  pub unverifiable: i64,
  /// Versions of the original backup.py without a hash, checked by size and mtime only.
  pub size_mtime_only: i64,
  pub problems: Vec<BindingBackupProblem>,
  pub repaired: i64,
  /// Increments whose metadata is missing or damaged (their readable entries were still checked).
  pub damaged: Vec<BindingDamagedMetadata>,
  /// The mirror state could not be read, so the mirror was not checked.
  pub state_error: Option<String>,
  /// An interrupted run, unfinished: the next `backup run` completes it.
  pub pending_run: Option<BindingPendingRun>,
  /// Mirror files that run already replaced or removed: not checked (no hash recorded yet), never CORRUPT/MISSING.
  pub pending: i64,
  /// `scrub`: the share chosen and whether it finished.
  pub scrub: Option<BindingScrubRun>,
  /// `increment`: only that increment was checked (not the mirror).
  pub only: Option<String>,
  /// The scrub record (`.axiomatic/scrub.json`) could not be read or written; the check itself is complete.
  pub scrub_state_error: Option<String>,
}

/// What one scrub chose and did.
#[napi(object)]
pub struct BindingScrubRun {
  /// The share asked for (0 < fraction <= 1).
  pub fraction: f64,
  /// Versions with a recorded hash in the backup.
  pub total: i64,
  /// The least recently verified ones chosen.
  pub selected: i64,
  /// Of the chosen, the ones never verified before.
  pub never_verified_before: i64,
  /// Versions never verified after this scrub.
  pub never_verified_after: i64,
  /// Aborted before the end: what was checked is recorded, the next scrub starts with the rest.
  pub stopped: bool,
}

impl From<verify::ScrubRun> for BindingScrubRun {
  fn from(r: verify::ScrubRun) -> Self {
    Self {
      fraction: r.fraction,
      total: r.total as i64,
      selected: r.selected as i64,
      never_verified_before: r.never_verified_before as i64,
      never_verified_after: r.never_verified_after as i64,
      stopped: r.stopped,
    }
  }
}

/// What `verify --dst` is asked besides the folder.
#[napi(object)]
pub struct BindingVerifyBackupOptions {
  /// With repair: the source folder corrupt mirror files are replaced from.
  pub source: Option<String>,
  pub threads: u32,
  /// Check only this share (0 < scrub <= 1) of the versions, the least recently verified first.
  pub scrub: Option<f64>,
  /// Check only this increment's versions.
  pub increment: Option<String>,
  /// "Now" in ms since the epoch (a test's fake clock; default the clock).
  pub now_ms: Option<f64>,
}

/// A corruption a verify found, remembered until a full verify passes.
#[napi(object, use_nullable = true)]
pub struct BindingRememberedCorruption {
  pub location: String,
  pub path: String,
  /// `CORRUPT` or `MISSING`.
  pub status: String,
  pub detail: Option<String>,
  /// When it was found (ms since the epoch).
  pub found_ms: f64,
}

/// The scrub record summed up (`status`).
#[napi(object, use_nullable = true)]
pub struct BindingScrubSummary {
  /// Whether a record exists (some verify of this folder ran).
  pub present: bool,
  /// Why it could not be read.
  pub error: Option<String>,
  pub versions: i64,
  pub never_verified: i64,
  /// The least recent "last verified" time (ms since the epoch), or null.
  pub oldest_verified_ms: Option<f64>,
  /// The last full verify that found nothing wrong (ms), or null.
  pub last_full_ms: Option<f64>,
  /// The last verify or scrub (ms), or null.
  pub last_check_ms: Option<f64>,
  /// Corruption found and not yet cleared by a passing full verify.
  pub corrupt: Vec<BindingRememberedCorruption>,
}

/// The scrub record of `dst` (`.axiomatic/scrub.json`), summed up; nothing is written.
#[napi]
pub fn scrub_summary(dst: String) -> BindingScrubSummary {
  let s = axiomatic_core::integrity::scrub::summary(Path::new(&dst));
  BindingScrubSummary {
    present: s.present,
    error: s.error,
    versions: s.versions as i64,
    never_verified: s.never_verified as i64,
    oldest_verified_ms: s.oldest_verified_ms.map(|v| v as f64),
    last_full_ms: s.last_full_ms.map(|v| v as f64),
    last_check_ms: s.last_check_ms.map(|v| v as f64),
    corrupt: s
      .corrupt
      .into_iter()
      .map(|c| BindingRememberedCorruption {
        location: c.location,
        path: c.path,
        status: c.status,
        detail: c.detail,
        found_ms: c.found_ms as f64,
      })
      .collect(),
  }
}

impl From<verify::BackupVerifyResult> for BindingBackupVerifyResult {
  fn from(r: verify::BackupVerifyResult) -> Self {
    // Every field named, so a field added to the core struct fails to compile here until the binding carries it.
    let verify::BackupVerifyResult {
      increments,
      files_checked,
      inodes_read,
      bytes_read,
      unverifiable,
      size_mtime_only,
      problems,
      repaired,
      damaged,
      state_error,
      pending,
      pending_run,
      scrub,
      only,
      scrub_state_error,
    } = r;
    Self {
      increments: increments as i64,
      files_checked: files_checked as i64,
      inodes_read: inodes_read as i64,
      bytes_read: bytes_read as i64,
      unverifiable: unverifiable as i64,
      size_mtime_only: size_mtime_only as i64,
      problems: problems
        .into_iter()
        .map(|p| BindingBackupProblem { location: p.location, path: p.path, status: p.status.into(), detail: p.detail, repair: p.repair })
        .collect(),
      repaired: repaired as i64,
      damaged: js_damaged(damaged),
      state_error,
      pending_run: pending_run.map(Into::into),
      pending: pending as i64,
      scrub: scrub.map(Into::into),
      only,
      scrub_state_error,
    }
  }
}

/// `backup verify --dst DST [--repair] [--scrub N%] [--increment NAME]`; keeps the scrub record.
#[napi(ts_return_type = "Promise<BindingBackupVerifyResult>")]
pub fn verify_backup(
  dst: String,
  options: BindingVerifyBackupOptions,
  #[napi(ts_arg_type = "((progress: BindingProgress) => void) | undefined | null")] on_progress: Option<ProgressFn>,
  signal: Option<AbortSignal>,
) -> AsyncTask<CoreTask<verify::BackupVerifyResult, BindingBackupVerifyResult>> {
  let o = verify::BackupVerifyOptions {
    source: options.source.map(PathBuf::from),
    threads: options.threads.max(1) as usize,
    scrub: options.scrub,
    only: options.increment,
    now_ms: options.now_ms.map(|v| v as i64),
    record: true,
  };
  task(move |p| verify::verify_backup_with(Path::new(&dst), &o, p), on_progress, signal)
}

#[napi(object)]
pub struct BindingCompareInput {
  pub server: String,
  pub path: String,
}

/// One server's report of a group.
#[napi(object)]
pub struct BindingCompareServer {
  pub server: String,
  pub report: String,
  pub start_timestamp: f64,
  pub work_time: f64,
  pub files: i64,
  pub errors: i64,
}

/// A file some servers have and others lack.
#[napi(object)]
pub struct BindingLostFile {
  pub path: String,
  pub present_on: Vec<String>,
  pub missing_on: Vec<String>,
}

/// A file whose sums differ between servers (`sums`: server → hex).
#[napi(object)]
pub struct BindingMismatch {
  pub path: String,
  pub algorithm: String,
  pub sums: BTreeMap<String, String>,
}

#[napi(object)]
pub struct BindingCompareGroup {
  pub group: String,
  pub servers: Vec<BindingCompareServer>,
  pub lost_files: Vec<BindingLostFile>,
  pub mismatched: Vec<BindingMismatch>,
}

/// What `compare` found, per group.
#[napi(object)]
pub struct BindingCompareResult {
  pub groups: Vec<BindingCompareGroup>,
}

impl From<compare::CompareResult> for BindingCompareResult {
  fn from(r: compare::CompareResult) -> Self {
    let group = |g: compare::GroupResult| BindingCompareGroup {
      group: g.group,
      servers: g
        .servers
        .into_iter()
        .map(|s| BindingCompareServer {
          server: s.server,
          report: s.report,
          start_timestamp: s.start_timestamp,
          work_time: s.work_time,
          files: s.files as i64,
          errors: s.errors as i64,
        })
        .collect(),
      lost_files: g
        .lost_files
        .into_iter()
        .map(|l| BindingLostFile { path: l.path, present_on: l.present_on, missing_on: l.missing_on })
        .collect(),
      mismatched: g.mismatched.into_iter().map(|m| BindingMismatch { path: m.path, algorithm: m.algorithm, sums: m.sums }).collect(),
    };
    Self { groups: r.groups.into_iter().map(group).collect() }
  }
}

/// `backup compare`.
#[napi(ts_return_type = "Promise<BindingCompareResult>")]
pub fn compare_reports(inputs: Vec<BindingCompareInput>) -> AsyncTask<CoreTask<compare::CompareResult, BindingCompareResult>> {
  let inputs: Vec<compare::Input> = inputs.into_iter().map(|i| compare::Input { server: i.server, path: PathBuf::from(i.path) }).collect();
  task(move |_| compare::compare(&inputs), None, None)
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
pub fn acquire_run_lock(env: Env, path: String, info: String) -> Result<RunLock> {
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
      Err(js_error(&env, code, format!("cannot take the lock {path}: {e}")))
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
pub fn probe_run_lock(env: Env, path: String) -> Result<Option<BindingLockProbe>> {
  axiomatic_core::fs::lock::probe(Path::new(&path))
    .map(|o| o.map(|(held, info)| BindingLockProbe { held, info }))
    .map_err(|e| js_error(&env, "EIO", format!("cannot read the lock {path}: {e}")))
}

/// Single-core SHA-256 and MD5 speed measured inside this addon.
#[napi(object)]
pub struct BindingSha256Speed {
  /// The CPU has SHA-256 instructions.
  pub sha_extensions: bool,
  pub sha256_mbs: f64,
  pub md5_mbs: f64,
}

/// Which SHA-256 kernel runs in the addon as Node loads it (issue 12: the
/// fear was CPU-feature detection failing inside a shared library), told
/// by SHA-256 vs MD5 speed back to back; see `fs::util::sha256_speed`.
#[napi]
pub fn sha256_speed(mib: u32, rounds: u32) -> BindingSha256Speed {
  let s = axiomatic_core::fs::util::sha256_speed(mib as usize, rounds as usize);
  BindingSha256Speed { sha_extensions: s.sha_extensions, sha256_mbs: s.sha256_mbs, md5_mbs: s.md5_mbs }
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
  pub scrub: String,
  pub unattended_log: String,
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
    scrub: s(&l.scrub),
    unattended_log: s(&l.unattended_log),
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
