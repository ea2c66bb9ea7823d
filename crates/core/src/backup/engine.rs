//! One backup run: recover, scan, plan, apply, commit.
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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use rayon::prelude::*;
use serde::Serialize;

use crate::backup::adopt;
use crate::backup::guard;
use crate::backup::meta::{self, CatalogEntry, JournalHeader, JournalOp, OpKind};
use crate::backup::rules::{Role, RuleSpec, Rules};
use crate::backup::scan::{self, Entry, Kind};
use crate::backup::state::{self, StateEntry};
use crate::error::{is_disk_full, Error, Warning};
use crate::fs::longpath;
use crate::fs::names;
use crate::fs::util::{self, fault_point, CopyResult};
use crate::fs::xattrs::{self, Xattrs};
use crate::layout::{self, Layout};
use crate::progress::{Phase, Progress};

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

/// Reads of a file that keeps changing before its copy is kept as read
/// (inconsistent) or, with `skip_inconsistent`, skipped.
pub const COPY_ATTEMPTS: usize = 3;

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
  /// Dry run only: why the real run would be refused (a real run fails instead).
  pub refused: Option<String>,
  /// The folder was made by the original `backup.py` (no state of ours):
  /// its mirror and `mirror.json` were taken as the previous state.
  pub adopted: bool,
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
    let (kind, size, mtime_ns, mode) = match (self.entry, self.old) {
      (Some(e), _) => (e.kind, e.size, e.mtime_ns, e.mode),
      (None, Some(o)) => (o.kind, o.size, o.mtime_ns, o.mode),
      (None, None) => unreachable!("an op has an entry or a state entry"),
    };
    JournalOp {
      rel: self.rel().to_string(),
      op: self.kind,
      change: self.kind.stores().then_some(self.change()),
      tracked: self.tracked,
      kind,
      size,
      mtime_ns,
      mode,
      sha256: if self.kind == OpKind::Delete { self.old.and_then(|o| o.sha()).map(hex::encode) } else { None },
      link: self.entry.and_then(|e| e.link.as_deref()).map(str::to_string),
    }
  }

  /// What a copy or link records: a changed version of a file tracked before, else new.
  fn change(&self) -> meta::Change {
    if self.changed {
      meta::Change::Changed
    } else {
      meta::Change::New
    }
  }
}

enum Outcome {
  /// Done; for copies/links the new state entry's hash and whether the
  /// increment holds a copy instead of a hardlink; the digest of the xattrs
  /// the mirror copy holds, and for tracked entries the xattrs themselves;
  /// `linked` when the mirror copy is a hardlink of its group's first path
  /// (nothing copied); a warning about a partial success; `stored` when the
  /// mirror holds another version than the scan saw (the file changed
  /// before it was copied); `inconsistent` when it changed while it was read.
  Done {
    sha: Option<Box<[u8; 32]>>,
    fallback: bool,
    xattr: Option<Box<[u8; 32]>>,
    attrs: Option<Box<Xattrs>>,
    linked: bool,
    note: Option<Box<Warning>>,
    stored: Option<Box<Entry>>,
    inconsistent: bool,
  },
  /// Not done; the old state entry stays.
  Skipped(Box<Warning>),
  /// Deleted but the mirror copy was already gone.
  DoneMissing(Box<Warning>),
}

/// Whether the source entry differs from what the mirror holds. An
/// inconsistent copy always differs: it is copied again until a read sees
/// the file hold still.
fn differs(e: &Entry, o: &StateEntry, tol: i64) -> bool {
  o.inconsistent
    || e.kind != o.kind
    || e.size != o.size
    || e.mode != o.mode
    || (e.mtime_ns - o.mtime_ns).abs() > tol
    || e.xattr != o.xattr
    || e.link != o.link
}

/// The once-per-run warnings about what the target cannot hold (xattrs,
/// ACLs, hard links) or a non-root run cannot set, instead of one per file.
fn capability_warnings(dst: &Path, caps: &util::FsCaps, notes: &xattrs::ScanNotes, followers: u64) -> Vec<Warning> {
  let mut out = Vec::new();
  let eg = |p: &Option<Box<str>>| p.as_deref().map(|p| format!(" (e.g. {p:?})")).unwrap_or_default();
  if notes.target_cannot.0 > 0 {
    let (code, what) = match (caps.xattrs, caps.acls) {
      (true, _) => ("target-no-acls", "POSIX ACLs"),
      (false, true) => ("target-no-xattrs", "extended attributes"),
      (false, false) => ("target-no-xattrs", "extended attributes or ACLs"),
    };
    out.push(Warning::new(
      "",
      code,
      format!(
        "{} selected files have {what}{}, but {} cannot hold them (exFAT, some FUSE or network file systems): the files are backed up without them",
        notes.target_cannot.0,
        eg(&notes.target_cannot.1),
        dst.display()
      ),
    ));
  }
  if notes.need_root.0 > 0 {
    out.push(Warning::new(
      "",
      "xattrs-need-root",
      format!(
        "{} selected files have security.* or trusted.* extended attributes{} (SELinux labels, file capabilities) that only root can set: they are backed up without them; run as root to keep them",
        notes.need_root.0,
        eg(&notes.need_root.1)
      ),
    ));
  }
  if followers > 0 && !caps.hardlinks {
    out.push(Warning::new(
      "",
      "target-no-hardlinks",
      format!(
        "{followers} selected files are hard links of other selected files, but {} has no hard links: each is stored as a separate copy",
        dst.display()
      ),
    ));
  }
  out.extend(notes.warnings.iter().cloned());
  out
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
  // Whose backup is this? Decided before anything is written.
  let source = guard::check_source(&l, &opts.src, opts.safety.adopt_source)?;
  if let (Some(why), false) = (&source.refused, opts.dry_run) {
    return Err(Error::refused(why.clone()));
  }
  let caps = if opts.dry_run {
    util::FsCaps::from_fs_type(&opts.dst)
  } else {
    for d in [&l.dst, &l.mirror, &l.meta, &l.incomplete] {
      fs::create_dir_all(d).map_err(|e| Error::io(d, "cannot create", &e))?;
    }
    let caps = util::probe_caps(&l.meta);
    util::record_caps(&l.target, &caps);
    caps
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
  let (scanned, old) = pool
    .install(|| rayon::join(|| scan::scan(&opts.src, &rules, progress, scan::Limits::default()), || adopt::read_state(&l, !opts.dry_run)));
  // `adopted`: no state of ours yet, a folder of the original `backup.py`
  // (its mirror and mirror.json are the previous state).
  let (scanned, (old, adopted)) = (scanned?, old?);
  report.adopted = adopted;
  report.hints = pool.install(|| pattern_hints(&opts.src, &opts.rules, &scanned.entries));
  report.warnings = scanned.warnings;
  report.special_skipped = scanned.special_skipped;
  report.refused = source.refused;
  let mut entries = scanned.entries;
  // Hard-link groups and xattr digests, compared with the state like size and mtime.
  let policy = xattrs::Policy { xattrs: caps.xattrs, acls: caps.acls, privileged: xattrs::is_root() };
  let notes = pool.install(|| xattrs::digest_entries(&opts.src, &mut entries, &policy));
  let followers = scan::link_groups(&mut entries);
  if !caps.hardlinks {
    entries.iter_mut().for_each(|e| e.link = None);
  }
  report.warnings.extend(capability_warnings(&opts.dst, &caps, &notes, followers));
  let entries = entries;
  // A group's first path: when it is copied, the whole group is relinked to the new copy.
  let leaders: std::collections::HashSet<&str> = entries.iter().filter_map(|e| e.link.as_deref()).collect();
  let mut recopied: std::collections::HashSet<&str> = std::collections::HashSet::new();
  // Paths that could not be read keep their state entry and mirror copy.
  let unreadable: std::collections::HashSet<&str> = scanned.unreadable.iter().map(|r| &**r).collect();
  let mut kept: Vec<&StateEntry> = Vec::new();

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
        if leaders.contains(&*e.rel) {
          recopied.insert(&e.rel);
        }
        i += 1;
      }
      std::cmp::Ordering::Greater => {
        let o = &old[j];
        if scan::is_unreadable(&unreadable, &o.rel) {
          kept.push(o);
        } else {
          let kind = if o.tracked { OpKind::Delete } else { OpKind::Remove };
          ops.push(Op { kind, entry: None, old: Some(o), tracked: o.tracked, changed: false });
        }
        j += 1;
      }
      std::cmp::Ordering::Equal => {
        let (e, o) = (&entries[i], &old[j]);
        let tracked = e.role == Role::Tracked;
        let regroup = e.link.as_deref().is_some_and(|l| recopied.contains(l));
        if differs(e, o, tol) || regroup {
          ops.push(Op { kind: OpKind::Copy, entry: Some(e), old: Some(o), tracked, changed: o.tracked });
          if leaders.contains(&*e.rel) {
            recopied.insert(&e.rel);
          }
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
  // A foreign source or too many removals: refused before the journal, so
  // nothing is written (a dry run reports it).
  let removals = ops.iter().filter(|o| matches!(o.kind, OpKind::Delete | OpKind::Remove)).count() as u64;
  if report.refused.is_none() {
    report.refused = guard::mass_delete(removals, old.len() as u64, &opts.safety);
  }
  if let (Some(why), false) = (&report.refused, opts.dry_run) {
    return Err(Error::refused(why.clone()));
  }
  if opts.list_changes {
    let mut by_path: BTreeMap<&str, Change> = BTreeMap::new();
    for e in &entries {
      by_path.insert(&e.rel, Change { path: e.rel.to_string(), role: e.role, change: "unchanged".into() });
    }
    for o in &kept {
      let role = if o.tracked { Role::Tracked } else { Role::Mirrored };
      by_path.insert(&o.rel, Change { path: o.rel.to_string(), role, change: "unchanged".into() });
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
  // Later members of hard-link groups are linked, not copied: no bytes.
  let copied_bytes =
    ops.iter().filter(|o| o.kind == OpKind::Copy).filter_map(|o| o.entry).filter(|e| e.link.is_none()).map(|e| e.size).sum();
  progress.bytes_total.store(copied_bytes, Ordering::Relaxed);

  if opts.dry_run {
    for op in &ops {
      count(&mut report, op);
    }
    report.mirror_files = (entries.len() + kept.len()) as u64;
    report.tracked_files = (entries.iter().filter(|e| e.role == Role::Tracked).count() + kept.iter().filter(|o| o.tracked).count()) as u64;
    report.bytes_copied = progress.bytes_total.load(Ordering::Relaxed);
    report.duration_ms = started.elapsed().as_millis() as u64;
    progress.set_phase(Phase::Done);
    return Ok(report);
  }

  if source.write {
    guard::write_source(&l, &source.id)?;
  }
  // Nothing changed: the state stays as it is (a no-change run writes nothing
  // but a missing source record).
  if ops.is_empty() && !roles_changed && !adopted {
    report.mirror_files = old.len() as u64;
    report.tracked_files = old.iter().filter(|o| o.tracked).count() as u64;
    report.duration_ms = started.elapsed().as_millis() as u64;
    progress.set_phase(Phase::Done);
    return Ok(report);
  }

  let name = (tracked_ops > 0).then(|| layout::unique_name(&l, &layout::increment_name(now)));
  let header =
    JournalHeader { format: "axiomatic-journal".into(), increment: name.clone(), started: layout::iso(now), ops: ops.len() as u64 };
  meta::write_journal(&l.journal, &header, ops.iter().map(Op::journal))?;
  fault_point();
  let inc_dir = name.as_ref().map(|n| l.incomplete_increment(n));
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
    xattrs: policy,
    leads: Mutex::new(Default::default()),
  };

  // Removals first (a file may replace a folder and back), then copies,
  // then the later members of hard-link groups (linked to their group's
  // first path, copied just before); each outcome is written into its
  // slot, no intermediate lists.
  let is_removal = |op: &Op| matches!(op.kind, OpKind::Delete | OpKind::Remove);
  let is_follower = |op: &Op| op.kind == OpKind::Copy && op.entry.is_some_and(|e| e.link.is_some());
  let mut outcomes: Vec<Option<Outcome>> = (0..ops.len()).map(|_| None).collect();
  pool.install(|| {
    ops.par_iter().zip(outcomes.par_iter_mut()).filter(|(op, _)| is_removal(op)).for_each(|(op, slot)| *slot = ctx.apply(op));
  });
  prune_empty_dirs(&l, ops.iter().filter(|o| is_removal(o)).map(|o| o.rel()), &opts.preserved_dirs);
  pool.install(|| {
    ops
      .par_iter()
      .zip(outcomes.par_iter_mut())
      .filter(|(op, _)| !is_removal(op) && !is_follower(op))
      .for_each(|(op, slot)| *slot = ctx.apply(op));
  });
  {
    let mut leads = ctx.leads.lock().unwrap();
    for (op, outcome) in ops.iter().zip(&outcomes) {
      if matches!(op.kind, OpKind::Copy | OpKind::Link) && leaders.contains(op.rel()) {
        let lead = match outcome {
          Some(Outcome::Done { sha, .. }) => Lead::Done(sha.as_deref().copied()),
          _ => Lead::Failed,
        };
        leads.insert(op.rel().into(), lead);
      }
    }
  }
  pool.install(|| {
    ops.par_iter().zip(outcomes.par_iter_mut()).filter(|(op, _)| is_follower(op)).for_each(|(op, slot)| *slot = ctx.apply(op));
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
      Outcome::Done { linked, note, stored, inconsistent, .. } => {
        count(&mut report, op);
        if op.kind == OpKind::Copy && !linked {
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
        if let Some(w) = note {
          report.warnings.push((**w).clone());
        }
        catalog_len += u64::from(op.tracked);
      }
    }
  }
  let next = next_state(&entries, &old, &ops, &outcomes, &kept);
  report.link_fallbacks = fallbacks.load(Ordering::Relaxed);
  report.mirror_files = next.len() as u64;
  report.tracked_files = next.iter().filter(|s| s.tracked()).count() as u64;

  util::sync_fs(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
  fault_point();
  let mut committed = None;
  if let (Some(name), Some(dir)) = (&name, &inc_dir) {
    if catalog_len == 0 {
      meta::remove_tree(dir)?;
    } else {
      report.duration_ms = started.elapsed().as_millis() as u64;
      let summary = meta::Summary {
        new: report.new,
        changed: report.changed,
        deleted: report.deleted,
        total: catalog_len,
        bytes: Some(ops.iter().zip(&outcomes).filter_map(|(op, o)| catalog_entry(op, o.as_ref().unwrap())).map(|c| c.size).sum()),
        ..Default::default()
      }
      .with_original_keys();
      let head = meta::MetaHead {
        version: meta::METADATA_VERSION,
        backup_name: name.clone(),
        timestamp: layout::iso(now),
        backup_timestamp: layout::iso(now),
        backup_type: "incremental",
        origin: "run".into(),
        statistics: meta::with_original_statistics(statistics(&report), &summary),
        summary,
      };
      let catalog = ops.iter().zip(&outcomes).filter_map(|(op, o)| catalog_entry(op, o.as_ref().unwrap()).map(|c| (op.rel(), c)));
      meta::write_meta(&dir.join(layout::meta_file_name(name)), &head, catalog)?;
      fault_point();
      committed = Some((name.clone(), dir.clone()));
    }
  }
  state::write(&l.state, next.len() as u64, next.iter().map(StateRef::line))?;
  fault_point();
  adopt::update_mirror_json(&l.dst, next.iter().map(|r| (r.rel(), r.stat().0, r.stat().1, r.tracked())))?;
  if let Some((name, dir)) = committed {
    let fin = l.increment(&name);
    fs::rename(&dir, &fin).map_err(|e| Error::io(&fin, "cannot commit the increment as", &e))?;
    util::sync_dir(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
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
/// same for bare `exclude_dirs` names (`rules::exclude_dir_hints`). Then
/// every other include/track pattern that selected nothing at all.
pub fn pattern_hints(src: &Path, spec: &RuleSpec, entries: &[Entry]) -> Vec<String> {
  let mut hints = deeper_hints(src, spec, entries);
  let rels: Vec<&str> = entries.iter().map(|e| &*e.rel).collect();
  for p in crate::backup::rules::unmatched(spec, &rels) {
    if !hints.iter().any(|h| h.starts_with(&format!("{}: {:?} ", p.key, p.source))) {
      hints.push(format!("{}: {:?} selected nothing in src (patterns are relative to src; check the spelling)", p.key, p.source));
    }
  }
  hints
}

/// The anchored one-segment file patterns of [`pattern_hints`] that match deeper.
fn deeper_hints(src: &Path, spec: &RuleSpec, entries: &[Entry]) -> Vec<String> {
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
    let deep = crate::backup::rules::Pattern { glob: format!("**/{}", p.glob), ..p.clone() };
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
  hints.extend(crate::backup::rules::exclude_dir_hints(src, spec));
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
    (Outcome::Done { sha, fallback, attrs, linked, stored, inconsistent, .. }, OpKind::Copy | OpKind::Link) if op.tracked => {
      let e = stored.as_deref().or(op.entry).unwrap();
      let mut c = meta::catalog_entry(
        e.size,
        e.mtime_ns,
        e.mode,
        e.kind,
        op.change().as_str(),
        sha.as_deref().copied(),
        *fallback,
      );
      c.inconsistent = inconsistent.then_some(true);
      c.link = if *linked { e.link.as_deref().map(str::to_string) } else { None };
      c.xattrs = attrs.as_deref().and_then(xattrs::to_catalog);
      Some(c)
    }
    _ => None,
  }
}

/// One line of the next mirror state, borrowed from the scan or the old state.
enum StateRef<'a> {
  /// Unchanged (or an op that was not done): the old entry, with the current role.
  Old(&'a StateEntry, bool),
  /// Copied or linked this run, with the hash of what the mirror now holds,
  /// its xattr digest, whether it is linked to its group's first path, and
  /// whether that copy is inconsistent.
  New(&'a Entry, Option<&'a [u8; 32]>, Option<&'a [u8; 32]>, bool, bool),
}

impl<'a> StateRef<'a> {
  fn rel(&self) -> &'a str {
    match *self {
      StateRef::Old(o, _) => &o.rel,
      StateRef::New(e, ..) => &e.rel,
    }
  }
  fn tracked(&self) -> bool {
    match self {
      StateRef::Old(_, t) => *t,
      StateRef::New(e, ..) => e.role == Role::Tracked,
    }
  }
  /// The state line: the old entry itself when it stays as it was (no copy).
  fn line(&self) -> Cow<'a, StateEntry> {
    match *self {
      StateRef::Old(o, t) if o.tracked == t && (t || o.sha256.is_none()) => Cow::Borrowed(o),
      StateRef::Old(o, t) => Cow::Owned(StateEntry { tracked: t, sha256: if t { o.sha256.clone() } else { None }, ..o.clone() }),
      StateRef::New(e, sha, xattr, linked, inconsistent) => Cow::Owned(StateEntry {
        rel: e.rel.clone(),
        kind: e.kind,
        size: e.size,
        mtime_ns: e.mtime_ns,
        mode: e.mode,
        tracked: e.role == Role::Tracked,
        sha256: if e.role == Role::Tracked { sha.map(|h| Box::new(*h)) } else { None },
        inconsistent,
        link: if linked { e.link.clone() } else { None },
        xattr: xattr.map(|h| Box::new(*h)),
      }),
    }
  }
  /// What `mirror.json` records of the entry: size and mtime.
  fn stat(&self) -> (u64, i64) {
    match *self {
      StateRef::Old(o, _) => (o.size, o.mtime_ns),
      StateRef::New(e, ..) => (e.size, e.mtime_ns),
    }
  }
}

/// The mirror state after this run, in path order: every op that was done
/// gives its new entry; every op that was not done keeps the old entry (the
/// mirror still holds it, the next run tries again); entries without an op
/// keep theirs, and so do the `kept` ones (unreadable, not in the scan).
fn next_state<'a>(
  entries: &'a [Entry],
  old: &'a [StateEntry],
  ops: &[Op<'a>],
  outcomes: &'a [Option<Outcome>],
  kept: &[&'a StateEntry],
) -> Vec<StateRef<'a>> {
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
        (Some(Outcome::Done { sha, xattr, linked, stored, inconsistent, .. }), _) => {
          out.push(StateRef::New(stored.as_deref().unwrap_or(e), sha.as_deref(), xattr.as_deref(), *linked, *inconsistent))
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
  if kept.is_empty() {
    return out;
  }
  // Merge the kept entries in path order (their paths are in no op and no scan entry).
  let mut merged = Vec::with_capacity(out.len() + kept.len());
  let mut kept = kept.iter().peekable();
  for r in out {
    while let Some(o) = kept.next_if(|o| *o.rel < *r.rel()) {
      merged.push(StateRef::Old(o, o.tracked));
    }
    merged.push(r);
  }
  merged.extend(kept.map(|o| StateRef::Old(o, o.tracked)));
  merged
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
  util::sync_dir(&l.meta).map_err(|e| Error::io(&l.meta, "cannot flush", &e))?;
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
  /// Which xattrs copies carry.
  xattrs: xattrs::Policy,
  /// Hard-link groups' first paths copied or linked this run, filled before
  /// the later members are applied.
  leads: Mutex<std::collections::HashMap<Box<str>, Lead>>,
}

/// What became of a hard-link group's first path this run.
enum Lead {
  /// Its mirror copy is current; the SHA-256 if tracked.
  Done(Option<[u8; 32]>),
  /// Not done: the later members are copied on their own.
  Failed,
}

fn is_link_unsupported(e: &io::Error) -> bool {
  matches!(e.raw_os_error(), Some(libc::EMLINK) | Some(libc::EPERM) | Some(libc::EXDEV) | Some(libc::ENOTSUP) | Some(libc::ENOSYS))
}

fn ensure_parent(p: &Path) -> io::Result<()> {
  longpath::ensure_parent(p)
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
      OpKind::Copy if op.entry.is_some_and(|e| e.link.is_some()) => self.copy_follower(op),
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
      Err((_, e)) if op.entry.is_some_and(|x| x.kind == Kind::Symlink) && util::is_symlink_unsupported(&e) => {
        Some(Outcome::Skipped(Box::new(Warning::new(
          op.rel(),
          "symlink-unsupported",
          "this file system cannot store symlinks (exFAT, FAT…), so the symlink is not in the backup",
        ))))
      }
      Err((what, e)) => Some(Outcome::Skipped(Box::new(Warning::from_io(op.rel(), what, &e)))),
    }
  }

  /// Hardlinks the mirror file into the increment, or copies it where links are impossible.
  fn store(&self, mirror: &Path, sub: &str, rel: &str) -> Result<bool, (&'static str, io::Error)> {
    let inc = self.inc.expect("tracked ops have an increment");
    let target = inc.join(sub).join(names::to_path(rel));
    ensure_parent(&target).map_err(|e| ("cannot create the increment folder for", e))?;
    if !self.no_links {
      match longpath::with2(mirror, &target, |a, b| fs::hard_link(a, b)) {
        Ok(()) => {
          fault_point();
          return Ok(false);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
          let _ = longpath::with(&target, |p| fs::remove_file(p));
          if longpath::with2(mirror, &target, |a, b| fs::hard_link(a, b)).is_ok() {
            fault_point();
            return Ok(false);
          }
        }
        Err(e) if is_link_unsupported(&e) => {}
        Err(e) => return Err(("cannot link into the increment", e)),
      }
    }
    let _ = longpath::with(&target, |p| fs::remove_file(p));
    longpath::with2(mirror, &target, util::copy_plain).map_err(|e| ("cannot copy into the increment", e))?;
    fault_point();
    self.fallbacks.fetch_add(1, Ordering::Relaxed);
    Ok(true)
  }

  fn copy(&self, op: &Op) -> Result<Outcome, (&'static str, io::Error)> {
    let e = op.entry.unwrap();
    let src = self.src.join(names::to_path(op.rel()));
    let dst = self.l.mirror_path(op.rel());
    let tmp = util::temp_path(&dst);
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
        match longpath::with(&src, |p| fs::symlink_metadata(p)) {
          Ok(md) => match Entry::from_metadata(e.rel.clone(), &md, e.role) {
            Some(n) => cur = Entry { link: e.link.clone(), xattr: e.xattr.clone(), ..n },
            None => break,
          },
          Err(err) => return Err(("cannot read", err)),
        }
      }
      // Xattrs only when the scan saw some: the common case costs no extra syscall.
      let xa = e.xattr.is_some().then_some(&self.xattrs);
      let accept_torn = attempt + 1 == COPY_ATTEMPTS && !self.skip_inconsistent;
      match longpath::with2(&src, &tmp, |s, t| util::copy_entry_with(s, t, &cur, op.tracked, xa, accept_torn, self.progress)) {
        Ok(CopyResult::Done(mut c)) => {
          // What the mirror now holds, when it is not what the scan saw.
          let stored = c
            .stored
            .take()
            .map(|n| Entry { link: e.link.clone(), xattr: e.xattr.clone(), ..n })
            .or_else(|| (!cur.same_stat(e)).then_some(cur));
          copied = Some((c, stored));
          break;
        }
        Ok(CopyResult::Changed(m)) => last = m,
        Err(err) => {
          let _ = longpath::with(&tmp, |p| fs::remove_file(p));
          return Err(("cannot copy", err));
        }
      }
    }
    let Some((c, stored)) = copied else {
      let _ = longpath::with(&tmp, |p| fs::remove_file(p));
      return Ok(Outcome::Skipped(Box::new(Warning::new(
        op.rel(),
        "changed-during-read",
        format!("{last}; not recorded (--skip-inconsistent), the next run takes it"),
      ))));
    };
    fault_point();
    if let Ok(md) = longpath::with(&dst, |p| fs::symlink_metadata(p)) {
      if md.is_dir() {
        // A folder became a file: the folder is empty by now unless it holds
        // preserved or foreign entries.
        if let Err(err) = longpath::with(&dst, |p| fs::remove_dir(p)) {
          let _ = longpath::with(&tmp, |p| fs::remove_file(p));
          return Err(("cannot replace the mirror folder", err));
        }
      }
    }
    if let Err(err) = longpath::with2(&tmp, &dst, |a, b| fs::rename(a, b)) {
      let _ = longpath::with(&tmp, |p| fs::remove_file(p));
      return Err(("cannot rename into the mirror", err));
    }
    fault_point();
    let fallback = if op.tracked { self.store(&dst, "track", op.rel())? } else { false };
    Ok(Outcome::Done {
      sha: c.sha256.map(Box::new),
      fallback,
      xattr: xattrs::digest(&c.xattrs).map(Box::new),
      note: c.xattr_warning(op.rel()).map(Box::new),
      attrs: (op.tracked && !c.xattrs.is_empty()).then(|| Box::new(c.xattrs)),
      linked: false,
      stored: stored.map(Box::new),
      inconsistent: c.torn,
    })
  }

  /// A hard-link group's later member: `mirror/<rel>` becomes a hardlink of
  /// the group's first path's mirror copy (link to the temp name, then
  /// rename, so nothing is written in place), without reading the source
  /// again. Falls back to a copy of its own when the first path was not
  /// copied, the source is no longer the scanned inode, or links fail.
  fn copy_follower(&self, op: &Op) -> Result<Outcome, (&'static str, io::Error)> {
    use std::os::unix::fs::MetadataExt;
    let e = op.entry.unwrap();
    let leader = e.link.as_deref().unwrap();
    let lead_sha = match self.leads.lock().unwrap().get(leader) {
      Some(Lead::Done(sha)) => Some(*sha),
      Some(Lead::Failed) => return self.copy(op),
      None => None, // unchanged this run: its mirror copy is current
    };
    let src = self.src.join(names::to_path(op.rel()));
    let dst = self.l.mirror_path(op.rel());
    let lead = self.l.mirror_path(leader);
    let same = |md: &fs::Metadata| md.is_file() && md.len() == e.size && util::mtime_ns(md) == e.mtime_ns && md.mode() & 0o7777 == e.mode;
    match (fs::symlink_metadata(&src), fs::symlink_metadata(&lead)) {
      (Ok(s), Ok(m)) if same(&s) && s.dev() == e.dev && s.ino() == e.ino && same(&m) => {}
      _ => return self.copy(op),
    }
    ensure_parent(&dst).map_err(|err| ("cannot create the mirror folder for", err))?;
    self.safe_parents(op.rel()).map_err(|err| ("cannot prepare the mirror folder for", err))?;
    let tmp = util::temp_path(&dst);
    let _ = fs::remove_file(&tmp);
    let linked_already = matches!((fs::symlink_metadata(&dst), fs::symlink_metadata(&lead)), (Ok(a), Ok(b)) if util::same_file(&a, &b));
    // Already linked (a killed run got that far): rename(2) of two links of
    // one inode would do nothing and leave the temp name behind.
    if !linked_already {
      match fs::hard_link(&lead, &tmp) {
        Ok(()) => {}
        Err(err) if is_link_unsupported(&err) || err.kind() == io::ErrorKind::NotFound => return self.copy(op),
        Err(err) => return Err(("cannot link into the mirror", err)),
      }
      fault_point();
      if let Ok(md) = fs::symlink_metadata(&dst) {
        if md.is_dir() {
          if let Err(err) = fs::remove_dir(&dst) {
            let _ = fs::remove_file(&tmp);
            return Err(("cannot replace the mirror folder", err));
          }
        }
      }
      let renamed = fs::rename(&tmp, &dst);
      let _ = fs::remove_file(&tmp);
      if let Err(err) = renamed {
        return Err(("cannot rename into the mirror", err));
      }
      fault_point();
    }
    let attrs = if e.xattr.is_some() { xattrs::read_path(&dst, &self.xattrs).map(|f| f.attrs).unwrap_or_default() } else { Vec::new() };
    let sha = match (op.tracked, lead_sha.flatten()) {
      (false, _) => None,
      (true, Some(h)) => Some(h),
      (true, None) => Some(util::sha256_of(&dst).map_err(|err| ("cannot read the mirror copy of", err))?),
    };
    let fallback = if op.tracked { self.store(&dst, "track", op.rel())? } else { false };
    Ok(Outcome::Done {
      sha: sha.map(Box::new),
      fallback,
      xattr: xattrs::digest(&attrs).map(Box::new),
      attrs: (op.tracked && !attrs.is_empty()).then(|| Box::new(attrs)),
      linked: true,
      note: None,
      stored: None,
      inconsistent: false,
    })
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
      match longpath::with(&p, |p| fs::symlink_metadata(p)) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => longpath::with(&p, |p| fs::remove_file(p))?,
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
    match longpath::with(&dst, util::sha256_of) {
      Ok(sha) => {
        let fallback = self.store(&dst, "track", op.rel())?;
        let old = op.old.unwrap();
        let attrs =
          if old.xattr.is_some() { xattrs::read_path(&dst, &self.xattrs).map(|f| f.attrs).unwrap_or_default() } else { Vec::new() };
        Ok(Outcome::Done {
          sha: Some(Box::new(sha)),
          fallback,
          xattr: old.xattr.clone(),
          attrs: (!attrs.is_empty()).then(|| Box::new(attrs)),
          linked: old.link.is_some(),
          note: None,
          stored: None,
          inconsistent: false,
        })
      }
      Err(err) if err.kind() == io::ErrorKind::NotFound => self.copy(&Op { kind: OpKind::Copy, ..*op }),
      Err(err) => Err(("cannot read the mirror copy of", err)),
    }
  }

  fn delete(&self, op: &Op) -> Result<Outcome, (&'static str, io::Error)> {
    let dst = self.l.mirror_path(op.rel());
    if longpath::with(&dst, |p| fs::symlink_metadata(p)).is_err() {
      return Ok(Outcome::DoneMissing(Box::new(Warning::new(
        op.rel(),
        "mirror-missing",
        "deleted from the source, but its mirror copy was already gone; the deletion is recorded, earlier versions stay in older increments",
      ))));
    }
    let fallback = self.store(&dst, "deleted", op.rel())?;
    match longpath::with(&dst, |p| fs::remove_file(p)) {
      Ok(()) => {}
      Err(e) if e.kind() == io::ErrorKind::NotFound => {}
      Err(e) => return Err(("cannot remove from the mirror", e)),
    }
    fault_point();
    Ok(Outcome::Done { sha: None, fallback, xattr: None, attrs: None, linked: false, note: None, stored: None, inconsistent: false })
  }

  fn remove(&self, op: &Op) -> Result<Outcome, (&'static str, io::Error)> {
    match longpath::with(&self.l.mirror_path(op.rel()), |p| fs::remove_file(p)) {
      Ok(()) => {}
      Err(e) if e.kind() == io::ErrorKind::NotFound => {}
      Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {}
      Err(e) => return Err(("cannot remove from the mirror", e)),
    }
    fault_point();
    Ok(Outcome::Done { sha: None, fallback: false, xattr: None, attrs: None, linked: false, note: None, stored: None, inconsistent: false })
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
      let _ = longpath::with(&l.mirror.join(names::to_path(d)), |p| fs::remove_dir(p));
    }
  }
}

/// Finishes a run that was interrupted, from its journal. Returns the name
/// of the increment it committed, if any. Safe to run again at any point.
pub fn recover(l: &Layout) -> Result<Option<String>, Error> {
  util::clean_atomic_leftovers(&l.meta);
  let Some((header, ops)) = meta::read_journal(&l.journal)? else { return Ok(None) };
  let mut state: BTreeMap<String, StateEntry> = state::read(&l.state)?.into_iter().map(|e| (e.rel.to_string(), e)).collect();
  let inc_pending = header.increment.as_ref().map(|n| l.incomplete_increment(n));
  let inc_final = header.increment.as_ref().map(|n| l.increment(n));
  let inc_dir = match (&inc_pending, &inc_final) {
    (Some(p), _) if p.is_dir() => Some(p.clone()),
    (_, Some(f)) if f.is_dir() => Some(f.clone()),
    _ => None,
  };
  if let Some(d) = &inc_dir {
    util::clean_atomic_leftovers(d);
  }
  let existing_meta = match (&header.increment, &inc_dir) {
    (Some(n), Some(d)) if d.join(layout::meta_file_name(n)).is_file() => Some(meta::read_meta(&d.join(layout::meta_file_name(n)))?),
    _ => None,
  };

  // (op index, sha256, stored as a copy, the stored version when it is not
  // the journaled one, the file that was written)
  type Done = (usize, Option<[u8; 32]>, bool, Option<(u64, i64, u32)>, Option<PathBuf>);
  let done: Vec<Done> = ops
    .par_iter()
    .enumerate()
    .filter_map(|(k, op)| {
      let mirror = l.mirror_path(&op.rel);
      let _ = longpath::with(&util::temp_path(&mirror), |p| fs::remove_file(p));
      let mmd = longpath::with(&mirror, |p| fs::symlink_metadata(p)).ok();
      match (op.op, op.tracked) {
        (OpKind::Copy | OpKind::Link, true) => {
          let f = inc_dir.as_ref()?.join("track").join(names::to_path(&op.rel));
          let md = longpath::with(&f, |p| fs::symlink_metadata(p)).ok()?;
          // A file that changed before or while it was copied is stored as
          // read, not as journaled: kept, with what the file itself says,
          // and marked inconsistent (this run cannot know whether it was).
          let other = (md.len() != op.size || util::mtime_ns(&md) != op.mtime_ns)
            .then(|| (md.len(), util::mtime_ns(&md), std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777));
          let known = existing_meta.as_ref().and_then(|m| m.file_catalog.get(&op.rel)).and_then(|c| c.sha256.clone());
          let sha = match known {
            Some(h) => {
              let mut b = [0u8; 32];
              hex::decode_to_slice(h, &mut b).ok()?;
              b
            }
            None => longpath::with(&f, util::sha256_of).ok()?,
          };
          let linked = mmd.as_ref().is_some_and(|m| util::same_file(m, &md));
          Some((k, Some(sha), !linked, other, Some(f)))
        }
        (OpKind::Delete, _) => {
          let f = inc_dir.as_ref()?.join("deleted").join(names::to_path(&op.rel));
          let md = longpath::with(&f, |p| fs::symlink_metadata(p)).ok()?;
          if let Some(m) = &mmd {
            if util::same_file(m, &md) || util::mtime_ns(m) == op.mtime_ns && m.len() == op.size {
              let _ = longpath::with(&mirror, |p| fs::remove_file(p));
            }
          }
          Some((k, None, false, None, None))
        }
        (OpKind::Copy, false) => {
          let m = mmd?;
          let same = m.len() == op.size
            && util::mtime_ns(&m) == op.mtime_ns
            && (op.kind == Kind::Symlink || std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777 == op.mode);
          same.then_some((k, None, false, None, Some(mirror)))
        }
        (OpKind::Remove, _) => mmd.is_none().then_some((k, None, false, None, None)),
        (OpKind::Link, false) => None,
      }
    })
    .collect();

  let mut catalog: BTreeMap<String, CatalogEntry> = BTreeMap::new();
  for (k, sha, copied, other, file) in &done {
    let (op, sha, copied, other) = (&ops[*k], *sha, *copied, *other);
    match op.op {
      OpKind::Copy | OpKind::Link => {
        let (size, mtime_ns, mode) = other.unwrap_or((op.size, op.mtime_ns, op.mode));
        // What the written file holds: its xattrs, and whether it is linked
        // to its group's first path (else the next run links it).
        let attrs = file.as_deref().map(xattrs::read_quiet).unwrap_or_default();
        let link = op.link.as_ref().filter(|lead| {
          let a = fs::symlink_metadata(l.mirror_path(&op.rel));
          let b = fs::symlink_metadata(l.mirror_path(lead));
          matches!((a, b), (Ok(a), Ok(b)) if util::same_file(&a, &b))
        });
        state.insert(
          op.rel.clone(),
          StateEntry {
            rel: op.rel.clone().into(),
            kind: op.kind,
            size,
            mtime_ns,
            mode,
            tracked: op.tracked,
            sha256: if op.tracked { sha.map(Box::new) } else { None },
            inconsistent: other.is_some(),
            link: link.map(|s| s.as_str().into()),
            xattr: xattrs::digest(&attrs).map(Box::new),
          },
        );
        if op.tracked {
          let what = op.change.unwrap_or(meta::Change::New).as_str();
          let mut c = meta::catalog_entry(size, mtime_ns, mode, op.kind, what, sha, copied);
          c.inconsistent = other.map(|_| true);
          c.link = link.cloned();
          c.xattrs = xattrs::to_catalog(&attrs);
          catalog.insert(op.rel.clone(), c);
        }
      }
      OpKind::Delete | OpKind::Remove => {
        state.remove(&op.rel);
        if op.op == OpKind::Delete {
          let mut sha = None;
          if let Some(h) = &op.sha256 {
            let mut b = [0u8; 32];
            if hex::decode_to_slice(h, &mut b).is_ok() {
              sha = Some(b);
            }
          }
          catalog.insert(op.rel.clone(), meta::catalog_entry(op.size, op.mtime_ns, op.mode, op.kind, "deleted", sha, false));
        }
      }
    }
  }

  util::sync_fs(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
  let mut committed = None;
  if let (Some(name), Some(dir)) = (&header.increment, &inc_dir) {
    let meta_path = dir.join(layout::meta_file_name(name));
    if existing_meta.is_none() {
      if catalog.is_empty() {
        meta::remove_tree(dir)?;
      } else {
        let summary = meta::summarize(&catalog);
        let head = meta::MetaHead {
          version: meta::METADATA_VERSION,
          backup_name: name.clone(),
          timestamp: header.started.clone(),
          backup_timestamp: header.started.clone(),
          backup_type: "incremental",
          origin: "recovered".into(),
          statistics: meta::with_original_statistics(
            serde_json::json!({ "recovered_from_interrupted_run": true, "planned_ops": ops.len(), "done_ops": done.len() }),
            &summary,
          ),
          summary,
        };
        meta::write_meta(&meta_path, &head, catalog.iter().map(|(p, e)| (p.as_str(), e.clone())))?;
        fault_point();
      }
    }
    if meta_path.is_file() {
      committed = Some(name.clone());
    }
  }
  state::write(&l.state, state.len() as u64, state.values().map(Cow::Borrowed))?;
  fault_point();
  if let (Some(name), Some(p)) = (&committed, &inc_pending) {
    if p.is_dir() {
      let fin = l.increment(name);
      fs::rename(p, &fin).map_err(|e| Error::io(&fin, "cannot commit the increment as", &e))?;
      util::sync_dir(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
      fault_point();
    }
  }
  remove_journal(l)?;
  Ok(committed)
}
