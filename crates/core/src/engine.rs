//! One backup run: recover, scan, plan, apply, commit.
//!
//! Write ordering (what makes a run safe to kill at any instant):
//!
//! 1. Finish an interrupted run first (`recover`), using its journal.
//! 2. Scan `src`, read the mirror state, plan by merge-join.
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

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{is_disk_full, Error, Warning};
use crate::fsutil::{self, fault_point, CopyResult};
use crate::meta::{self, CatalogEntry, JournalHeader, JournalOp};
use crate::progress::{Phase, Progress};
use crate::rules::{Role, RuleSpec, Rules};
use crate::scan::{self, Entry, Kind};
use crate::state::{self, StateEntry};

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
}

/// Reads of a file that keeps changing before its copy is kept as read
/// (inconsistent) or, with `skip_inconsistent`, skipped.
pub const COPY_ATTEMPTS: usize = 3;

/// The fixed layout of a backup folder.
#[derive(Debug, Clone)]
pub struct Layout {
  pub dst: PathBuf,
  pub mirror: PathBuf,
  pub meta: PathBuf,
  pub state: PathBuf,
  pub journal: PathBuf,
  pub incomplete: PathBuf,
}

impl Layout {
  pub fn new(dst: &Path) -> Self {
    let meta = dst.join(".axiomatic");
    Self {
      dst: dst.to_path_buf(),
      mirror: dst.join("mirror"),
      state: meta.join("state.jsonl"),
      journal: meta.join("journal.jsonl"),
      incomplete: meta.join("incomplete"),
      meta,
    }
  }
  fn mirror_path(&self, rel: &str) -> PathBuf {
    self.mirror.join(rel)
  }
}

/// One path and the change a run gives it.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
  pub path: String,
  pub role: Role,
  /// `new`, `changed`, `deleted` (tracked, kept in the increment),
  /// `removed` (mirror only), `unchanged`, or `start-tracking`.
  pub change: String,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
  /// Copy from src into the mirror (and link into `track/` if tracked).
  Copy,
  /// The mirror is current; only link it into `track/` (became tracked).
  Link,
  /// Tracked file gone: link into `deleted/`, unlink from the mirror.
  Delete,
  /// Untracked file gone: unlink from the mirror.
  Remove,
}

struct Op<'a> {
  kind: OpKind,
  entry: Option<&'a Entry>,
  old: Option<&'a StateEntry>,
  tracked: bool,
  changed: bool,
}

impl<'a> Op<'a> {
  /// The path, from the scan entry or the old state entry.
  fn rel(&self) -> &'a str {
    match (self.entry, self.old) {
      (Some(e), _) => &e.rel,
      (None, Some(o)) => &o.rel,
      (None, None) => unreachable!("an op has an entry or a state entry"),
    }
  }

  fn journal(&self) -> JournalOp {
    let (k, s, m, mode) = match (self.entry, self.old) {
      (Some(e), _) => (e.kind, e.size, e.mtime_ns, e.mode),
      (None, Some(o)) => (o.kind, o.size, o.mtime_ns, o.mode),
      (None, None) => unreachable!("an op has an entry or a state entry"),
    };
    JournalOp {
      p: self.rel().to_string(),
      op: match self.kind {
        OpKind::Copy => "copy",
        OpKind::Link => "link",
        OpKind::Delete => "delete",
        OpKind::Remove => "remove",
      }
      .into(),
      change: matches!(self.kind, OpKind::Copy | OpKind::Link).then(|| if self.changed { "changed" } else { "new" }.into()),
      t: self.tracked,
      k,
      s,
      m,
      mode,
      h: if self.kind == OpKind::Delete { self.old.and_then(|o| o.sha()).map(hex::encode) } else { None },
    }
  }
}

enum Outcome {
  /// Done; for copies/links the new state entry's hash and whether the
  /// increment holds a copy instead of a hardlink; `stored` when the mirror
  /// holds another version than the scan saw (the file changed before it
  /// was copied); `inconsistent` when it changed while it was read.
  Done { sha: Option<Box<[u8; 32]>>, fallback: bool, stored: Option<Box<Entry>>, inconsistent: bool },
  /// Not done; the old state entry stays.
  Skipped(Box<Warning>),
  /// Deleted but the mirror copy was already gone.
  DoneMissing(Box<Warning>),
}

/// Whether the source entry differs from what the mirror holds. An
/// inconsistent copy always differs: it is copied again until a read sees
/// the file hold still.
fn differs(e: &Entry, o: &StateEntry, tol: i64) -> bool {
  o.inconsistent || e.kind != o.kind || e.size != o.size || e.mode != o.mode || (e.mtime_ns - o.mtime_ns).abs() > tol
}

pub(crate) fn build_pool(workers: usize) -> Result<rayon::ThreadPool, Error> {
  rayon::ThreadPoolBuilder::new()
    .num_threads(workers.max(1))
    .thread_name(|i| format!("axiomatic-{i}"))
    .build()
    .map_err(|e| Error::config(format!("cannot start {workers} workers: {e}")))
}

/// Runs one backup. Per-file problems come back as warnings in the report.
pub fn run(opts: &Options, progress: &Progress) -> Result<Report, Error> {
  let started = Instant::now();
  let now = SystemTime::now();
  let rules = Rules::compile(&opts.rules)?;
  let pool = build_pool(opts.workers)?;
  let l = Layout::new(&opts.dst);
  let caps = if opts.dry_run {
    fsutil::FsCaps::from_fs_type(&opts.dst)
  } else {
    for d in [&l.dst, &l.mirror, &l.meta, &l.incomplete] {
      fs::create_dir_all(d).map_err(|e| Error::io(d, "cannot create", &e))?;
    }
    fsutil::probe_caps(&l.meta)
  };
  // Sub-second granularity is not worth a tolerance; coarse (FAT) clocks are.
  let auto_tol = if caps.mtime_granularity_ns >= 1_000_000_000 { caps.mtime_granularity_ns } else { 0 };
  let tol = opts.mtime_tolerance_ns.unwrap_or(auto_tol);
  let mut report = Report { mtime_tolerance_ns: tol, ..Default::default() };

  if !opts.dry_run {
    progress.set_phase(Phase::Recover);
    report.recovered = pool.install(|| recover(&l))?;
  }

  progress.set_phase(Phase::Scan);
  // The old state is read while the source is scanned.
  let (scanned, old) =
    pool.install(|| rayon::join(|| scan::scan(&opts.src, &rules, progress, scan::Limits::default()), || state::read(&l.state)));
  let (scanned, old) = (scanned?, old?);
  report.hints = pool.install(|| pattern_hints(&opts.src, &opts.rules, &scanned.entries));
  report.warnings = scanned.warnings;
  report.special_skipped = scanned.special_skipped;
  let entries = scanned.entries;

  timing("scan", started);
  progress.set_phase(Phase::Plan);
  let mut ops: Vec<Op> = Vec::new();
  // Tracked files that became untracked need no file operation, only a new state.
  let mut roles_changed = false;
  let (mut i, mut j) = (0, 0);
  while i < entries.len() || j < old.len() {
    let ord = match (entries.get(i), old.get(j)) {
      (Some(e), Some(o)) => e.rel.cmp(&o.rel),
      (Some(_), None) => std::cmp::Ordering::Less,
      (None, _) => std::cmp::Ordering::Greater,
    };
    match ord {
      std::cmp::Ordering::Less => {
        let e = &entries[i];
        ops.push(Op { kind: OpKind::Copy, entry: Some(e), old: None, tracked: e.role == Role::Tracked, changed: false });
        i += 1;
      }
      std::cmp::Ordering::Greater => {
        let o = &old[j];
        let kind = if o.tracked { OpKind::Delete } else { OpKind::Remove };
        ops.push(Op { kind, entry: None, old: Some(o), tracked: o.tracked, changed: false });
        j += 1;
      }
      std::cmp::Ordering::Equal => {
        let (e, o) = (&entries[i], &old[j]);
        let tracked = e.role == Role::Tracked;
        if differs(e, o, tol) {
          ops.push(Op { kind: OpKind::Copy, entry: Some(e), old: Some(o), tracked, changed: o.tracked });
        } else if tracked && !o.tracked {
          ops.push(Op { kind: OpKind::Link, entry: Some(e), old: Some(o), tracked, changed: false });
        } else if !tracked && o.tracked {
          roles_changed = true;
        }
        i += 1;
        j += 1;
      }
    }
  }

  timing("plan", started);
  if opts.list_changes {
    let mut by_path: BTreeMap<&str, Change> = BTreeMap::new();
    for e in &entries {
      by_path.insert(&e.rel, Change { path: e.rel.to_string(), role: e.role, change: "unchanged".into() });
    }
    for op in &ops {
      let role = if op.tracked { Role::Tracked } else { Role::Mirrored };
      let change = match op.kind {
        OpKind::Copy if op.old.is_none() || (op.tracked && !op.changed) => "new",
        OpKind::Copy => "changed",
        OpKind::Link => "start-tracking",
        OpKind::Delete => "deleted",
        OpKind::Remove => "removed",
      };
      by_path.insert(op.rel(), Change { path: op.rel().to_string(), role, change: change.into() });
    }
    report.changes = by_path.into_values().collect();
  }

  let tracked_ops = ops.iter().filter(|o| o.tracked).count();
  progress.ops_total.store(ops.len() as u64, Ordering::Relaxed);
  progress.bytes_total.store(ops.iter().filter(|o| o.kind == OpKind::Copy).map(|o| o.entry.map_or(0, |e| e.size)).sum(), Ordering::Relaxed);

  if opts.dry_run {
    for op in &ops {
      count(&mut report, op);
    }
    report.mirror_files = entries.len() as u64;
    report.tracked_files = entries.iter().filter(|e| e.role == Role::Tracked).count() as u64;
    report.bytes_copied = progress.bytes_total.load(Ordering::Relaxed);
    report.duration_ms = started.elapsed().as_millis() as u64;
    progress.set_phase(Phase::Done);
    return Ok(report);
  }

  // Nothing changed: the state stays as it is (a no-change run writes nothing).
  if ops.is_empty() && !roles_changed {
    report.mirror_files = old.len() as u64;
    report.tracked_files = old.iter().filter(|o| o.tracked).count() as u64;
    report.duration_ms = started.elapsed().as_millis() as u64;
    progress.set_phase(Phase::Done);
    return Ok(report);
  }

  let name = (tracked_ops > 0).then(|| meta::unique_name(&l.dst, &l.incomplete, &meta::increment_name(now)));
  let header =
    JournalHeader { format: "axiomatic-journal".into(), increment: name.clone(), started: meta::iso(now), ops: ops.len() as u64 };
  meta::write_journal(&l.journal, &header, ops.iter().map(Op::journal))?;
  fault_point();
  let inc_dir = name.as_ref().map(|n| l.incomplete.join(n));
  if let Some(d) = &inc_dir {
    fs::create_dir_all(d).map_err(|e| Error::io(d, "cannot create", &e))?;
  }

  progress.set_phase(Phase::Apply);
  let no_links = !caps.hardlinks;
  let fatal: Mutex<Option<Error>> = Mutex::new(None);
  let stop = AtomicBool::new(false);
  let fallbacks = AtomicU64::new(0);
  let ctx = ApplyCtx {
    l: &l,
    src: &opts.src,
    inc: inc_dir.as_deref(),
    progress,
    no_links,
    skip_inconsistent: opts.skip_inconsistent,
    fatal: &fatal,
    stop: &stop,
    fallbacks: &fallbacks,
    checked: Mutex::new(Default::default()),
  };

  // Removals first (a file may replace a folder and back), then copies;
  // each outcome is written into its slot, no intermediate lists.
  let is_removal = |op: &Op| matches!(op.kind, OpKind::Delete | OpKind::Remove);
  let mut outcomes: Vec<Option<Outcome>> = (0..ops.len()).map(|_| None).collect();
  pool.install(|| {
    ops.par_iter().zip(outcomes.par_iter_mut()).filter(|(op, _)| is_removal(op)).for_each(|(op, slot)| *slot = ctx.apply(op));
  });
  prune_empty_dirs(&l, ops.iter().filter(|o| is_removal(o)).map(|o| o.rel()), &opts.preserved_dirs);
  pool.install(|| {
    ops.par_iter().zip(outcomes.par_iter_mut()).filter(|(op, _)| !is_removal(op)).for_each(|(op, slot)| *slot = ctx.apply(op));
  });

  if let Some(err) = fatal.into_inner().unwrap() {
    // The journal stays: the next run (or `recover`) finishes the job.
    return Err(Error { message: format!("{}; the backup stopped and the next run will finish it", err.message), ..err });
  }
  if stop.load(Ordering::SeqCst) {
    // Aborted by the caller: commit what was done, as a recovered increment.
    let _ = pool.install(|| recover(&l));
    return Err(Error::aborted());
  }

  timing("apply", started);
  progress.set_phase(Phase::Commit);
  // Counts and warnings. Everything below streams over `ops` (sorted by
  // path, like `entries` and `old`), so a run over a million files builds
  // no second copy of the file list.
  let mut catalog_len = 0u64;
  for (op, outcome) in ops.iter().zip(&outcomes) {
    match outcome.as_ref().expect("every op has an outcome") {
      Outcome::Skipped(w) => report.warnings.push((**w).clone()),
      Outcome::DoneMissing(w) => {
        report.warnings.push((**w).clone());
        count(&mut report, op);
        catalog_len += u64::from(op.kind == OpKind::Delete);
      }
      Outcome::Done { stored, inconsistent, .. } => {
        count(&mut report, op);
        if op.kind == OpKind::Copy {
          report.bytes_copied += stored.as_deref().or(op.entry).unwrap().size;
        }
        if *inconsistent {
          report.warnings.push(Warning::new(
            op.rel(),
            "inconsistent-copy",
            format!(
              "the file kept changing while it was read ({COPY_ATTEMPTS} attempts); the stored copy may mix old and new \
               content and is marked inconsistent in the metadata; the next run copies it again"
            ),
          ));
        }
        catalog_len += u64::from(op.tracked);
      }
    }
  }
  let next = next_state(&entries, &old, &ops, &outcomes);
  report.link_fallbacks = fallbacks.load(Ordering::Relaxed);
  report.mirror_files = next.len() as u64;
  report.tracked_files = next.iter().filter(|s| s.tracked()).count() as u64;

  fsutil::sync_fs(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
  fault_point();
  let mut committed = None;
  if let (Some(name), Some(dir)) = (&name, &inc_dir) {
    if catalog_len == 0 {
      meta::remove_tree(dir)?;
    } else {
      report.duration_ms = started.elapsed().as_millis() as u64;
      let head = meta::MetaHead {
        version: meta::METADATA_VERSION,
        backup_name: name.clone(),
        timestamp: meta::iso(now),
        origin: "run".into(),
        summary: meta::Summary {
          new: report.new,
          changed: report.changed,
          deleted: report.deleted,
          total: catalog_len,
          bytes: Some(ops.iter().zip(&outcomes).filter_map(|(op, o)| catalog_entry(op, o.as_ref().unwrap())).map(|c| c.size).sum()),
          carried: 0,
        },
        statistics: statistics(&report),
      };
      let catalog = ops.iter().zip(&outcomes).filter_map(|(op, o)| catalog_entry(op, o.as_ref().unwrap()).map(|c| (op.rel(), c)));
      meta::write_meta(&dir.join(format!("{name}.json")), &head, catalog)?;
      fault_point();
      committed = Some((name.clone(), dir.clone()));
    }
  }
  state::write(&l.state, next.len() as u64, next.iter().map(StateRef::line))?;
  fault_point();
  if let Some((name, dir)) = committed {
    let fin = l.dst.join(&name);
    fs::rename(&dir, &fin).map_err(|e| Error::io(&fin, "cannot commit the increment as", &e))?;
    fsutil::sync_dir(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
    fault_point();
    report.increment = Some(name);
  }
  remove_journal(&l)?;
  report.warnings.sort_by(|a, b| a.path.cmp(&b.path));
  report.duration_ms = started.elapsed().as_millis() as u64;
  progress.set_phase(Phase::Done);
  Ok(report)
}

/// For each anchored one-segment include/track file pattern that selected
/// nothing directly in `src`: does it match deeper? (A bounded probe.) The
/// same for bare `exclude_dirs` names (`rules::exclude_dir_hints`).
pub fn pattern_hints(src: &Path, spec: &RuleSpec, entries: &[Entry]) -> Vec<String> {
  let mut hints = Vec::new();
  for p in spec.include_files.iter().chain(&spec.track_files) {
    if p.glob.contains('/') {
      continue;
    }
    let single = RuleSpec { include_files: vec![p.clone()], ..Default::default() };
    let Ok(r) = Rules::compile(&single) else { continue };
    let at_root = entries.iter().any(|e| !e.rel.contains('/') && r.classify(Default::default(), &e.rel).is_some());
    if at_root {
      continue;
    }
    let deep = crate::rules::Pattern { glob: format!("**/{}", p.glob), ..p.clone() };
    let probe = RuleSpec { include_files: vec![deep], ..Default::default() };
    let Ok(r) = Rules::compile(&probe) else { continue };
    let pr = Progress::new();
    if let Ok(found) = scan::scan(src, &r, &pr, scan::Limits { files: Some(1), dirs: Some(2000) }) {
      if let Some(e) = found.entries.first() {
        hints.push(format!(
          "{}: {:?} matches nothing directly in src but matches deeper (e.g. {:?}); did you mean {:?}?",
          p.key,
          p.source,
          e.rel,
          format!("{}:rec", p.source.trim_end_matches(":rec"))
        ));
      }
    }
  }
  hints.extend(crate::rules::exclude_dir_hints(src, spec));
  hints
}

/// With `AXIOMATIC_TIMINGS=1`, prints the time since the start of the run
/// at the end of each phase (for benchmarking).
fn timing(what: &str, started: Instant) {
  static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
  if *ON.get_or_init(|| std::env::var_os("AXIOMATIC_TIMINGS").is_some()) {
    eprintln!("axiomatic: {what} done at {} ms", started.elapsed().as_millis());
  }
}

/// The catalog entry an op contributes to the increment, if any.
fn catalog_entry(op: &Op, outcome: &Outcome) -> Option<CatalogEntry> {
  match (outcome, op.kind) {
    (Outcome::Skipped(_), _) | (_, OpKind::Remove) => None,
    (Outcome::DoneMissing(_), OpKind::Delete) | (Outcome::Done { .. }, OpKind::Delete) if op.tracked => {
      let o = op.old.unwrap();
      let fallback = matches!(outcome, Outcome::Done { fallback: true, .. });
      Some(meta::catalog_entry(o.size, o.mtime_ns, o.mode, o.kind, "deleted", o.sha(), fallback))
    }
    (Outcome::Done { sha, fallback, stored, inconsistent }, OpKind::Copy | OpKind::Link) if op.tracked => {
      let e = stored.as_deref().or(op.entry).unwrap();
      let mut c = meta::catalog_entry(
        e.size,
        e.mtime_ns,
        e.mode,
        e.kind,
        if op.changed { "changed" } else { "new" },
        sha.as_deref().copied(),
        *fallback,
      );
      c.inconsistent = inconsistent.then_some(true);
      Some(c)
    }
    _ => None,
  }
}

/// One line of the next mirror state, borrowed from the scan or the old state.
enum StateRef<'a> {
  /// Unchanged (or an op that was not done): the old entry, with the current role.
  Old(&'a StateEntry, bool),
  /// Copied or linked this run, with the hash of what the mirror now holds
  /// and whether that copy is inconsistent.
  New(&'a Entry, Option<&'a [u8; 32]>, bool),
}

impl<'a> StateRef<'a> {
  fn tracked(&self) -> bool {
    match self {
      StateRef::Old(_, t) => *t,
      StateRef::New(e, _, _) => e.role == Role::Tracked,
    }
  }
  fn line(&self) -> state::StateLine<'a> {
    match *self {
      StateRef::Old(o, t) => state::StateLine {
        rel: &o.rel,
        kind: o.kind,
        size: o.size,
        mtime_ns: o.mtime_ns,
        mode: o.mode,
        tracked: t,
        sha256: if t { o.sha() } else { None },
        inconsistent: o.inconsistent,
      },
      StateRef::New(e, sha, inconsistent) => state::StateLine {
        rel: &e.rel,
        kind: e.kind,
        size: e.size,
        mtime_ns: e.mtime_ns,
        mode: e.mode,
        tracked: e.role == Role::Tracked,
        sha256: if e.role == Role::Tracked { sha.copied() } else { None },
        inconsistent,
      },
    }
  }
}

/// The mirror state after this run, in path order: every op that was done
/// gives its new entry; every op that was not done keeps the old entry (the
/// mirror still holds it, the next run tries again); entries without an op
/// keep theirs.
fn next_state<'a>(entries: &'a [Entry], old: &'a [StateEntry], ops: &[Op<'a>], outcomes: &'a [Option<Outcome>]) -> Vec<StateRef<'a>> {
  let mut out = Vec::with_capacity(entries.len());
  let (mut j, mut k) = (0, 0);
  for e in entries {
    while k < ops.len() && ops[k].rel() < &*e.rel {
      if let (Some(Outcome::Skipped(_)), Some(o)) = (&outcomes[k], ops[k].old) {
        out.push(StateRef::Old(o, o.tracked));
      }
      k += 1;
    }
    while j < old.len() && old[j].rel < e.rel {
      j += 1;
    }
    if k < ops.len() && ops[k].rel() == &*e.rel {
      match (&outcomes[k], ops[k].old) {
        (Some(Outcome::Done { sha, stored, inconsistent, .. }), _) => {
          out.push(StateRef::New(stored.as_deref().unwrap_or(e), sha.as_deref(), *inconsistent))
        }
        (_, Some(o)) => out.push(StateRef::Old(o, o.tracked)),
        _ => {}
      }
      k += 1;
    } else if j < old.len() && old[j].rel == e.rel {
      out.push(StateRef::Old(&old[j], e.role == Role::Tracked));
    }
  }
  for k in k..ops.len() {
    if let (Some(Outcome::Skipped(_)), Some(o)) = (&outcomes[k], ops[k].old) {
      out.push(StateRef::Old(o, o.tracked));
    }
  }
  out
}

fn count(r: &mut Report, op: &Op) {
  match (op.kind, op.tracked) {
    (OpKind::Copy | OpKind::Link, true) if op.changed => r.changed += 1,
    (OpKind::Copy | OpKind::Link, true) => r.new += 1,
    (OpKind::Copy, false) => r.mirror_updated += 1,
    (OpKind::Delete, _) => r.deleted += 1,
    (OpKind::Remove, _) => r.removed_from_mirror += 1,
    (OpKind::Link, false) => {}
  }
}

fn statistics(r: &Report) -> serde_json::Value {
  serde_json::json!({
    "mirror_files": r.mirror_files,
    "tracked_files": r.tracked_files,
    "new": r.new,
    "changed": r.changed,
    "deleted": r.deleted,
    "removed_from_mirror": r.removed_from_mirror,
    "mirror_updated": r.mirror_updated,
    "bytes_copied": r.bytes_copied,
    "link_fallbacks": r.link_fallbacks,
    "duration_ms": r.duration_ms,
    "warnings": r.warnings.len(),
  })
}

fn remove_journal(l: &Layout) -> Result<(), Error> {
  match fs::remove_file(&l.journal) {
    Ok(()) => {}
    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
    Err(e) => return Err(Error::io(&l.journal, "cannot remove", &e)),
  }
  fsutil::sync_dir(&l.meta).map_err(|e| Error::io(&l.meta, "cannot flush", &e))?;
  fault_point();
  Ok(())
}

struct ApplyCtx<'a> {
  l: &'a Layout,
  src: &'a Path,
  inc: Option<&'a Path>,
  progress: &'a Progress,
  no_links: bool,
  skip_inconsistent: bool,
  fatal: &'a Mutex<Option<Error>>,
  stop: &'a AtomicBool,
  fallbacks: &'a AtomicU64,
  checked: Mutex<std::collections::HashSet<String>>,
}

fn is_link_unsupported(e: &io::Error) -> bool {
  matches!(e.raw_os_error(), Some(libc::EMLINK) | Some(libc::EPERM) | Some(libc::EXDEV) | Some(libc::ENOTSUP) | Some(libc::ENOSYS))
}

fn ensure_parent(p: &Path) -> io::Result<()> {
  match p.parent() {
    Some(d) => fs::create_dir_all(d),
    None => Ok(()),
  }
}

impl ApplyCtx<'_> {
  /// Applies one op; `None` when the run stopped before it.
  fn apply(&self, op: &Op) -> Option<Outcome> {
    if self.stop.load(Ordering::Relaxed) {
      return None;
    }
    if self.progress.is_aborted() {
      self.stop.store(true, Ordering::SeqCst);
      return None;
    }
    let res = match op.kind {
      OpKind::Copy => self.copy(op),
      OpKind::Link => self.link_only(op),
      OpKind::Delete => self.delete(op),
      OpKind::Remove => self.remove(op),
    };
    self.progress.ops_done.fetch_add(1, Ordering::Relaxed);
    match res {
      Ok(o) => Some(o),
      Err((what, e)) if is_disk_full(&e) => {
        let mut f = self.fatal.lock().unwrap();
        if f.is_none() {
          *f = Some(Error::io(&self.l.dst, &format!("{what} {}: disk full;", op.rel()), &e));
        }
        self.stop.store(true, Ordering::SeqCst);
        None
      }
      Err((what, e)) => Some(Outcome::Skipped(Box::new(Warning::from_io(op.rel(), what, &e)))),
    }
  }

  /// Hardlinks the mirror file into the increment, or copies it where links are impossible.
  fn store(&self, mirror: &Path, sub: &str, rel: &str) -> Result<bool, (&'static str, io::Error)> {
    let inc = self.inc.expect("tracked ops have an increment");
    let target = inc.join(sub).join(rel);
    ensure_parent(&target).map_err(|e| ("cannot create the increment folder for", e))?;
    if !self.no_links {
      match fs::hard_link(mirror, &target) {
        Ok(()) => {
          fault_point();
          return Ok(false);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
          let _ = fs::remove_file(&target);
          if fs::hard_link(mirror, &target).is_ok() {
            fault_point();
            return Ok(false);
          }
        }
        Err(e) if is_link_unsupported(&e) => {}
        Err(e) => return Err(("cannot link into the increment", e)),
      }
    }
    let _ = fs::remove_file(&target);
    fsutil::copy_plain(mirror, &target).map_err(|e| ("cannot copy into the increment", e))?;
    fault_point();
    self.fallbacks.fetch_add(1, Ordering::Relaxed);
    Ok(true)
  }

  fn copy(&self, op: &Op) -> Result<Outcome, (&'static str, io::Error)> {
    let e = op.entry.unwrap();
    let src = self.src.join(op.rel());
    let dst = self.l.mirror_path(op.rel());
    let tmp = fsutil::temp_path(&dst);
    if let Err(err) = ensure_parent(&dst) {
      return Err(("cannot create the mirror folder for", err));
    }
    if let Err(err) = self.safe_parents(op.rel()) {
      return Err(("cannot prepare the mirror folder for", err));
    }
    // A file that changes under us is retried with its new metadata; the
    // last attempt keeps what it read (marked inconsistent) unless the user
    // refuses such copies: a file that is always being written still gets
    // a copy.
    let mut copied = None;
    let mut last = String::new();
    for attempt in 0..COPY_ATTEMPTS {
      let mut cur = e.clone();
      if attempt > 0 {
        match fs::symlink_metadata(&src) {
          Ok(md) => match Entry::from_metadata(e.rel.clone(), &md, e.role) {
            Some(n) => cur = n,
            None => break,
          },
          Err(err) => return Err(("cannot read", err)),
        }
      }
      let accept_torn = attempt + 1 == COPY_ATTEMPTS && !self.skip_inconsistent;
      match fsutil::copy_entry(&src, &tmp, &cur, op.tracked, accept_torn, self.progress) {
        Ok(CopyResult::Done(mut c)) => {
          // What the mirror now holds, when it is not what the scan saw.
          let stored = c.stored.take().or_else(|| (cur != *e).then_some(cur));
          copied = Some((c, stored));
          break;
        }
        Ok(CopyResult::Changed(m)) => last = m,
        Err(err) => {
          let _ = fs::remove_file(&tmp);
          return Err(("cannot copy", err));
        }
      }
    }
    let Some((c, stored)) = copied else {
      let _ = fs::remove_file(&tmp);
      return Ok(Outcome::Skipped(Box::new(Warning::new(
        op.rel(),
        "changed-during-read",
        format!("{last}; not recorded (--skip-inconsistent), the next run takes it"),
      ))));
    };
    fault_point();
    if let Ok(md) = fs::symlink_metadata(&dst) {
      if md.is_dir() {
        // A folder became a file: the folder is empty by now unless it holds
        // preserved or foreign entries.
        if let Err(err) = fs::remove_dir(&dst) {
          let _ = fs::remove_file(&tmp);
          return Err(("cannot replace the mirror folder", err));
        }
      }
    }
    if let Err(err) = fs::rename(&tmp, &dst) {
      let _ = fs::remove_file(&tmp);
      return Err(("cannot rename into the mirror", err));
    }
    fault_point();
    let fallback = if op.tracked { self.store(&dst, "track", op.rel())? } else { false };
    Ok(Outcome::Done { sha: c.sha256.map(Box::new), fallback, stored: stored.map(Box::new), inconsistent: c.torn })
  }

  /// Makes sure no folder on the way to `mirror/<rel>` is a symlink (or a
  /// file), so a write can never leave the mirror: such an entry is a
  /// leftover of a removal that failed, and is removed. Each folder is
  /// checked once per run.
  fn safe_parents(&self, rel: &str) -> io::Result<()> {
    let mut end = 0;
    while let Some(i) = rel[end..].find('/') {
      end += i;
      let dir = &rel[..end];
      end += 1;
      if self.checked.lock().unwrap().contains(dir) {
        continue;
      }
      let p = self.l.mirror_path(dir);
      match fs::symlink_metadata(&p) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => fs::remove_file(&p)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
      }
      self.checked.lock().unwrap().insert(dir.to_string());
    }
    Ok(())
  }

  fn link_only(&self, op: &Op) -> Result<Outcome, (&'static str, io::Error)> {
    let dst = self.l.mirror_path(op.rel());
    // The mirror holds the version already: hash it and link it.
    match fsutil::sha256_of(&dst) {
      Ok(sha) => {
        let fallback = self.store(&dst, "track", op.rel())?;
        Ok(Outcome::Done { sha: Some(Box::new(sha)), fallback, stored: None, inconsistent: false })
      }
      Err(err) if err.kind() == io::ErrorKind::NotFound => self.copy(&Op { kind: OpKind::Copy, ..*op }),
      Err(err) => Err(("cannot read the mirror copy of", err)),
    }
  }

  fn delete(&self, op: &Op) -> Result<Outcome, (&'static str, io::Error)> {
    let dst = self.l.mirror_path(op.rel());
    if fs::symlink_metadata(&dst).is_err() {
      return Ok(Outcome::DoneMissing(Box::new(Warning::new(
        op.rel(),
        "mirror-missing",
        "deleted from the source, but its mirror copy was already gone; the deletion is recorded, earlier versions stay in older increments",
      ))));
    }
    let fallback = self.store(&dst, "deleted", op.rel())?;
    match fs::remove_file(&dst) {
      Ok(()) => {}
      Err(e) if e.kind() == io::ErrorKind::NotFound => {}
      Err(e) => return Err(("cannot remove from the mirror", e)),
    }
    fault_point();
    Ok(Outcome::Done { sha: None, fallback, stored: None, inconsistent: false })
  }

  fn remove(&self, op: &Op) -> Result<Outcome, (&'static str, io::Error)> {
    match fs::remove_file(self.l.mirror_path(op.rel())) {
      Ok(()) => {}
      Err(e) if e.kind() == io::ErrorKind::NotFound => {}
      Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {}
      Err(e) => return Err(("cannot remove from the mirror", e)),
    }
    fault_point();
    Ok(Outcome::Done { sha: None, fallback: false, stored: None, inconsistent: false })
  }
}

/// Removes mirror folders left empty by removals, deepest first, except
/// preserved ones (and their ancestors).
fn prune_empty_dirs<'a>(l: &Layout, removed: impl Iterator<Item = &'a str>, preserved: &[String]) {
  let mut dirs: Vec<&str> = Vec::new();
  for rel in removed {
    let mut r = rel;
    while let Some(i) = r.rfind('/') {
      r = &r[..i];
      dirs.push(r);
    }
  }
  dirs.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
  dirs.dedup();
  let keep = |d: &str| preserved.iter().any(|p| p.trim_matches('/') == d || p.trim_matches('/').starts_with(&format!("{d}/")));
  for d in dirs {
    if !keep(d) {
      let _ = fs::remove_dir(l.mirror.join(d));
    }
  }
}

/// Finishes a run that was interrupted, from its journal. Returns the name
/// of the increment it committed, if any. Safe to run again at any point.
pub fn recover(l: &Layout) -> Result<Option<String>, Error> {
  fsutil::clean_atomic_leftovers(&l.meta);
  let Some((header, ops)) = meta::read_journal(&l.journal)? else { return Ok(None) };
  let mut state: BTreeMap<String, StateEntry> = state::read(&l.state)?.into_iter().map(|e| (e.rel.to_string(), e)).collect();
  let inc_pending = header.increment.as_ref().map(|n| l.incomplete.join(n));
  let inc_final = header.increment.as_ref().map(|n| l.dst.join(n));
  let inc_dir = match (&inc_pending, &inc_final) {
    (Some(p), _) if p.is_dir() => Some(p.clone()),
    (_, Some(f)) if f.is_dir() => Some(f.clone()),
    _ => None,
  };
  if let Some(d) = &inc_dir {
    fsutil::clean_atomic_leftovers(d);
  }
  let existing_meta = match (&header.increment, &inc_dir) {
    (Some(n), Some(d)) if d.join(format!("{n}.json")).is_file() => Some(meta::read_meta(&d.join(format!("{n}.json")))?),
    _ => None,
  };

  // (op index, sha256, stored as a copy, the stored version when it is not
  // the journaled one)
  type Done = (usize, Option<[u8; 32]>, bool, Option<(u64, i64, u32)>);
  let done: Vec<Done> = ops
    .par_iter()
    .enumerate()
    .filter_map(|(k, op)| {
      let mirror = l.mirror_path(&op.p);
      let _ = fs::remove_file(fsutil::temp_path(&mirror));
      let mmd = fs::symlink_metadata(&mirror).ok();
      match (op.op.as_str(), op.t) {
        ("copy" | "link", true) => {
          let f = inc_dir.as_ref()?.join("track").join(&op.p);
          let md = fs::symlink_metadata(&f).ok()?;
          // A file that changed before or while it was copied is stored as
          // read, not as journaled: kept, with what the file itself says,
          // and marked inconsistent (this run cannot know whether it was).
          let other = (md.len() != op.s || fsutil::mtime_ns(&md) != op.m)
            .then(|| (md.len(), fsutil::mtime_ns(&md), std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777));
          let known = existing_meta.as_ref().and_then(|m| m.file_catalog.get(&op.p)).and_then(|c| c.sha256.clone());
          let sha = match known {
            Some(h) => {
              let mut b = [0u8; 32];
              hex::decode_to_slice(h, &mut b).ok()?;
              b
            }
            None => fsutil::sha256_of(&f).ok()?,
          };
          let linked = mmd.as_ref().is_some_and(|m| fsutil::same_file(m, &md));
          Some((k, Some(sha), !linked, other))
        }
        ("delete", _) => {
          let f = inc_dir.as_ref()?.join("deleted").join(&op.p);
          let md = fs::symlink_metadata(&f).ok()?;
          if let Some(m) = &mmd {
            if fsutil::same_file(m, &md) || fsutil::mtime_ns(m) == op.m && m.len() == op.s {
              let _ = fs::remove_file(&mirror);
            }
          }
          Some((k, None, false, None))
        }
        ("copy", false) => {
          let m = mmd?;
          let same = m.len() == op.s
            && fsutil::mtime_ns(&m) == op.m
            && (op.k == Kind::Symlink || std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777 == op.mode);
          same.then_some((k, None, false, None))
        }
        ("remove", _) => mmd.is_none().then_some((k, None, false, None)),
        _ => None,
      }
    })
    .collect();

  let mut catalog: BTreeMap<String, CatalogEntry> = BTreeMap::new();
  for &(k, sha, copied, other) in &done {
    let op = &ops[k];
    match op.op.as_str() {
      "copy" | "link" => {
        let (size, mtime_ns, mode) = other.unwrap_or((op.s, op.m, op.mode));
        state.insert(
          op.p.clone(),
          StateEntry {
            rel: op.p.clone().into(),
            kind: op.k,
            size,
            mtime_ns,
            mode,
            tracked: op.t,
            sha256: if op.t { sha.map(Box::new) } else { None },
            inconsistent: other.is_some(),
          },
        );
        if op.t {
          let what = op.change.as_deref().unwrap_or("new");
          let mut c = meta::catalog_entry(size, mtime_ns, mode, op.k, what, sha, copied);
          c.inconsistent = other.map(|_| true);
          catalog.insert(op.p.clone(), c);
        }
      }
      _ => {
        state.remove(&op.p);
        if op.op == "delete" {
          let mut sha = None;
          if let Some(h) = &op.h {
            let mut b = [0u8; 32];
            if hex::decode_to_slice(h, &mut b).is_ok() {
              sha = Some(b);
            }
          }
          catalog.insert(op.p.clone(), meta::catalog_entry(op.s, op.m, op.mode, op.k, "deleted", sha, false));
        }
      }
    }
  }

  fsutil::sync_fs(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
  let mut committed = None;
  if let (Some(name), Some(dir)) = (&header.increment, &inc_dir) {
    let meta_path = dir.join(format!("{name}.json"));
    if existing_meta.is_none() {
      if catalog.is_empty() {
        meta::remove_tree(dir)?;
      } else {
        let head = meta::MetaHead {
          version: meta::METADATA_VERSION,
          backup_name: name.clone(),
          timestamp: header.started.clone(),
          origin: "recovered".into(),
          summary: meta::summarize(&catalog),
          statistics: serde_json::json!({ "recovered_from_interrupted_run": true, "planned_ops": ops.len(), "done_ops": done.len() }),
        };
        meta::write_meta(&meta_path, &head, catalog.iter().map(|(p, e)| (p.as_str(), e.clone())))?;
        fault_point();
      }
    }
    if meta_path.is_file() {
      committed = Some(name.clone());
    }
  }
  state::write(&l.state, state.len() as u64, state.values().map(StateEntry::line))?;
  fault_point();
  if let (Some(name), Some(p)) = (&committed, &inc_pending) {
    if p.is_dir() {
      let fin = l.dst.join(name);
      fs::rename(p, &fin).map_err(|e| Error::io(&fin, "cannot commit the increment as", &e))?;
      fsutil::sync_dir(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
      fault_point();
    }
  }
  remove_journal(l)?;
  Ok(committed)
}
