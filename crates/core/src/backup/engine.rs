//! One backup run, orchestrated: recover ([`recover`]), scan, plan
//! ([`plan`]), apply and commit ([`apply`]). This file holds the steps'
//! order, the options and the report; the steps live in those modules.
//!
//! Write ordering (what makes a run safe to kill at any instant):
//!
//! 1. Finish an interrupted run first (`recover`), using its journal.
//! 2. Scan `src`, read the mirror state, plan by merge-join (unreadable
//!    paths keep their state: no operation). A foreign source (checked
//!    before step 1) or too many removals stop the run here (`guard`),
//!    before anything is written.
//! 3. Write the journal (`.axiomatic/journal.jsonl`: every planned
//!    operation) and create the increment under
//!    `.axiomatic/incomplete/backup_X/`.
//! 4. Apply: deletions first (hardlink the mirror copy into `deleted/`, then
//!    unlink it), then copies (temp file in the same mirror folder, mode and
//!    mtime set on the temp file, rename over the mirror path, then hardlink
//!    into `track/`). Never an in-place write, never a chmod/utime on a
//!    shared inode.
//! 5. Commit: `syncfs`, write the increment metadata, write the new state,
//!    rename the increment to `dst/backup_X`, remove the journal.
//!
//! A crash before 5 leaves the journal; the next run's `recover` decides
//! from the files themselves which operations were done, commits those (the
//! increment is marked `recovered`) and leaves the rest to the normal plan.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::backup::adopt;
use crate::backup::apply::{self, Commit, Setup};
use crate::backup::guard;
use crate::backup::plan::{self, Plan};
use crate::backup::rules::{Role, RuleSpec, Rules};
use crate::backup::scan::{self, Entry};
use crate::backup::state::StateEntry;
use crate::error::{Error, Warning};
use crate::fs::util;
use crate::fs::xattrs;
use crate::layout::Layout;
use crate::progress::{timing, Phase, Progress};

pub use crate::backup::apply::COPY_ATTEMPTS;
pub use crate::backup::plan::{pattern_hints, Change};
pub use crate::backup::recover::recover;

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
  pub src: PathBuf,
  pub dst: PathBuf,
  pub rules: RuleSpec,
  /// Threads for scanning and applying.
  pub workers: usize,
  /// mtime differences up to this are not changes; `None` = automatic
  /// (2 s when `dst` is on FAT/exFAT, else 0).
  pub mtime_tolerance_ns: Option<i64>,
  /// Mirror folders (relative) never removed when they become empty.
  pub preserved_dirs: Vec<String>,
  pub dry_run: bool,
  /// Return every selected path with its change (for `--dry-run --verbose`).
  pub list_changes: bool,
  /// Refuse copies of files that keep changing while they are read (they
  /// are then skipped with a warning) instead of storing what was read,
  /// marked inconsistent.
  pub skip_inconsistent: bool,
  /// What the caller allows beyond the refusals of a foreign source and of
  /// mass deletions (see `guard`).
  pub safety: guard::Safety,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
  pub increment: Option<String>,
  /// An increment finished on behalf of an interrupted earlier run.
  pub recovered: Option<String>,
  pub mirror_files: u64,
  pub tracked_files: u64,
  pub new: u64,
  pub changed: u64,
  pub deleted: u64,
  pub removed_from_mirror: u64,
  /// Untracked files copied into the mirror.
  pub mirror_updated: u64,
  pub bytes_copied: u64,
  /// Files stored as copies because a hardlink was impossible.
  pub link_fallbacks: u64,
  pub special_skipped: u64,
  pub mtime_tolerance_ns: i64,
  pub duration_ms: u64,
  pub warnings: Vec<Warning>,
  /// Advice about the rules (e.g. an anchored pattern that only matches deeper).
  pub hints: Vec<String>,
  pub changes: Vec<Change>,
  /// Dry run only: why the real run would be refused (a real run fails instead).
  pub refused: Option<String>,
  /// The folder was made by the original `backup.py` (no state of ours):
  /// its mirror and `mirror.json` were taken as the previous state.
  pub adopted: bool,
}

pub(crate) fn build_pool(workers: usize) -> Result<rayon::ThreadPool, Error> {
  rayon::ThreadPoolBuilder::new()
    .num_threads(workers.max(1))
    .thread_name(|i| format!("axiomatic-{i}"))
    .build()
    .map_err(|e| Error::config(format!("cannot start {workers} workers: {e}")))
}

/// What the scan phase found: the selected entries (with hard-link groups
/// and xattr digests), the previous state, and the paths that could not be read.
struct Scanned {
  entries: Vec<Entry>,
  old: Vec<StateEntry>,
  unreadable: Vec<Box<str>>,
  policy: xattrs::Policy,
}

/// Runs one backup. Per-file problems come back as warnings in the report.
pub fn run(opts: &Options, progress: &Progress) -> Result<Report, Error> {
  let mut scanned = None;
  let r = run_with(opts, progress, &mut scanned);
  drop_later(scanned);
  r
}

/// Frees what the scan gathered on a thread of its own: a scan entry and a
/// state entry per file, each with its own allocations, were freed after
/// everything else and before the caller had its report (the free of a
/// million files' is tens of ms, all on the critical path).
fn drop_later<T: Send + 'static>(v: Option<T>) {
  if let Some(v) = v {
    // A thread that cannot be started frees it here.
    let _ = std::thread::Builder::new().name("axiomatic-free".into()).spawn(move || drop(v));
  }
}

/// [`run`], leaving the scan (which the plan borrows) in `scanned`.
fn run_with(opts: &Options, progress: &Progress, scanned: &mut Option<Scanned>) -> Result<Report, Error> {
  let started = Instant::now();
  let now = SystemTime::now();
  let rules = Rules::compile(&opts.rules)?;
  let pool = build_pool(opts.workers)?;
  let l = Layout::new(&opts.dst);
  // Whose backup is this? Decided before anything is written.
  let source = guard::check_source(&l, &opts.src, opts.safety.adopt_source)?;
  if let (Some(why), false) = (&source.refused, opts.dry_run) {
    return Err(Error::refused(why.clone()));
  }
  let caps = prepare_target(opts, &l)?;
  timing("target probe", started);
  // Sub-second granularity is not worth a tolerance; coarse (FAT) clocks are.
  let auto_tol = if caps.mtime_granularity_ns >= 1_000_000_000 { caps.mtime_granularity_ns } else { 0 };
  let tol = opts.mtime_tolerance_ns.unwrap_or(auto_tol);
  let mut report = Report { mtime_tolerance_ns: tol, ..Default::default() };

  if !opts.dry_run {
    progress.set_phase(Phase::Recover);
    report.recovered = pool.install(|| recover(&l))?;
    timing("recover", started);
  }

  progress.set_phase(Phase::Scan);
  let s: &Scanned = scanned.insert(scan_phase(opts, &l, &rules, &pool, &caps, progress, &mut report, started)?);
  timing("scan", started);
  progress.set_phase(Phase::Plan);
  let unreadable: HashSet<&str> = s.unreadable.iter().map(|r| &**r).collect();
  let plan = plan::plan(&s.entries, &s.old, &unreadable, tol);
  timing("plan", started);
  // A foreign source or too many removals: refused before the journal, so
  // nothing is written (a dry run reports it).
  report.refused = plan::refusal(source.refused.clone(), &plan, s.old.len(), &opts.safety);
  if let (Some(why), false) = (&report.refused, opts.dry_run) {
    return Err(Error::refused(why.clone()));
  }
  if opts.list_changes {
    report.changes = plan::changes(&s.entries, &plan);
  }
  progress.ops_total.store(plan.ops.len() as u64, Ordering::Relaxed);
  progress.bytes_total.store(plan.copy_bytes(), Ordering::Relaxed);

  if opts.dry_run {
    dry_run_report(&mut report, &s.entries, &plan, progress);
    return Ok(done(report, started, progress));
  }
  if source.write {
    guard::write_source(&l, &source.id)?;
  }
  // Nothing changed: the state stays as it is (a no-change run writes nothing
  // but a missing source record).
  if plan.ops.is_empty() && !plan.roles_changed && !report.adopted {
    report.mirror_files = s.old.len() as u64;
    report.tracked_files = s.old.iter().filter(|o| o.tracked).count() as u64;
    return Ok(done(report, started, progress));
  }

  let inc = apply::begin(&l, &plan, now)?;
  progress.set_phase(Phase::Apply);
  let setup = Setup {
    l: &l,
    src: &opts.src,
    inc: inc.as_ref().map(|(_, d)| d.as_path()),
    no_links: !caps.hardlinks,
    skip_inconsistent: opts.skip_inconsistent,
    xattrs: s.policy,
    preserved_dirs: &opts.preserved_dirs,
  };
  let applied = apply::apply(&pool, &setup, &plan, progress)?;
  timing("apply", started);
  progress.set_phase(Phase::Commit);
  apply::commit(&l, Commit { entries: &s.entries, old: &s.old, inc, now, started }, &plan, &applied, &mut report)?;
  report.warnings.sort_by(|a, b| a.path.cmp(&b.path));
  Ok(done(report, started, progress))
}

/// What the target can do: probed and recorded (creating the backup
/// folder's skeleton) for a real run, guessed from the file-system type
/// for a dry run (which writes nothing).
fn prepare_target(opts: &Options, l: &Layout) -> Result<util::FsCaps, Error> {
  if opts.dry_run {
    return Ok(util::FsCaps::from_fs_type(&opts.dst));
  }
  for d in [&l.dst, &l.mirror, &l.meta, &l.incomplete] {
    fs::create_dir_all(d).map_err(|e| Error::io(d, "cannot create", &e))?;
  }
  let caps = util::probe_caps(&l.meta);
  util::record_caps(&l.target, &caps);
  Ok(caps)
}

/// Scans `src` while the old state is read; then hard-link groups and
/// xattr digests (compared with the state like size and mtime). Scan
/// warnings, hints and what the target cannot hold go into the report.
#[allow(clippy::too_many_arguments)]
fn scan_phase(
  opts: &Options,
  l: &Layout,
  rules: &Rules,
  pool: &rayon::ThreadPool,
  caps: &util::FsCaps,
  progress: &Progress,
  report: &mut Report,
  started: Instant,
) -> Result<Scanned, Error> {
  let (scanned, old) = pool.install(|| {
    rayon::join(
      || {
        let r = scan::scan(&opts.src, rules, progress, scan::Limits::default());
        timing("walk", started);
        r
      },
      || {
        let r = adopt::read_state(l, !opts.dry_run);
        timing("state read", started);
        r
      },
    )
  });
  // `adopted`: no state of ours yet, a folder of the original `backup.py`
  // (its mirror and mirror.json are the previous state).
  let (scanned, (old, adopted)) = (scanned?, old?);
  timing("walk and state read", started);
  report.adopted = adopted;
  report.hints = pool.install(|| pattern_hints(&opts.src, &opts.rules, &scanned.entries));
  report.warnings = scanned.warnings;
  report.special_skipped = scanned.special_skipped;
  let mut entries = scanned.entries;
  let policy = xattrs::Policy { xattrs: caps.xattrs, acls: caps.acls, privileged: xattrs::is_root() };
  timing("hints", started);
  let notes = pool.install(|| scan::digest_entries(&opts.src, &mut entries, &old, &policy));
  timing("xattrs", started);
  let followers = scan::link_groups(&mut entries);
  if !caps.hardlinks {
    entries.iter_mut().for_each(|e| e.set_link(None));
  }
  report.warnings.extend(plan::capability_warnings(&opts.dst, caps, &notes, followers));
  Ok(Scanned { entries, old, unreadable: scanned.unreadable, policy })
}

/// A dry run's counts: what the plan would do.
fn dry_run_report(report: &mut Report, entries: &[Entry], plan: &Plan, progress: &Progress) {
  for op in &plan.ops {
    apply::count(report, op);
  }
  let kept = &plan.kept;
  report.mirror_files = (entries.len() + kept.len()) as u64;
  report.tracked_files = (entries.iter().filter(|e| e.role == Role::Tracked).count() + kept.iter().filter(|o| o.tracked).count()) as u64;
  report.bytes_copied = progress.bytes_total.load(Ordering::Relaxed);
}

/// The report of a finished run, with its duration.
fn done(mut report: Report, started: Instant, progress: &Progress) -> Report {
  report.duration_ms = started.elapsed().as_millis() as u64;
  progress.set_phase(Phase::Done);
  report
}
