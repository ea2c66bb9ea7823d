//! Carrying out a plan: write the journal and create the increment under
//! `.axiomatic/incomplete/` ([`begin`]); apply the operations in parallel
//! ([`apply`]: removals, then copies and links, then the later members of
//! hard-link groups; temp file + rename into the mirror, hardlink into
//! `track/`/`deleted/`, never an in-place write nor a chmod/utime on a
//! shared inode); then [`commit`]: flush, the increment's metadata, the new
//! state, the rename of the increment into place, the journal's removal.
//! Each file-system step is a `fault_point` (the crash tests kill there).

use std::borrow::Cow;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use rayon::prelude::*;

use crate::backup::adopt;
use crate::backup::copy::CopyResult;
use crate::backup::engine::Report;
use crate::backup::meta::{self, CatalogEntry, JournalHeader, OpKind};
use crate::backup::plan::{Op, Plan};
use crate::backup::recover::recover;
use crate::backup::rules::Role;
use crate::backup::scan::{Entry, Kind};
use crate::backup::state::{self, Fields, StateEntry};
use crate::error::{is_disk_full, Error, Warning};
use crate::fs::longpath;
use crate::fs::names;
use crate::fs::util::{self, fault_point};
use crate::fs::xattrs::{self, Xattrs};
use crate::layout::{self, Layout};
use crate::progress::{timing, Progress};

/// Reads of a file that keeps changing before its copy is kept as read
/// (inconsistent) or, with `skip_inconsistent`, skipped.
pub const COPY_ATTEMPTS: usize = 3;

/// What happened to one op.
pub enum Outcome {
  /// Done; for copies/links the new state entry's hash and whether the
  /// increment holds a copy instead of a hardlink; the digest of the xattrs
  /// the mirror copy holds, and for tracked entries the xattrs themselves;
  /// `linked` when the mirror copy is a hardlink of its group's first path
  /// (nothing copied); a warning about a partial success; `stored` when the
  /// mirror holds another version than the scan saw (the file changed
  /// before it was copied); `inconsistent` when it changed while it was read.
  /// The xattrs, the note and the stored version are in [`Rare`].
  Done { sha: Option<Box<[u8; 32]>>, fallback: bool, linked: bool, inconsistent: bool, rare: Option<Box<Rare>> },
  /// Not done; the old state entry stays.
  Skipped(Box<Warning>),
  /// Deleted but the mirror copy was already gone.
  DoneMissing(Box<Warning>),
}

/// What few done ops have, boxed together: an op's outcome is held for
/// every op until the commit, and these four inline were 24 bytes more per
/// op (24 MB of a first full run of a million files) for nearly all ops
/// that have none of them.
pub struct Rare {
  /// The digest of the xattrs the mirror copy holds.
  xattr: Option<[u8; 32]>,
  /// Those xattrs, for a tracked entry's catalog.
  attrs: Option<Xattrs>,
  /// A warning about a partial success.
  note: Option<Warning>,
  /// The version the mirror holds when it is not the one the scan saw.
  stored: Option<Entry>,
}

/// The `Rare` of an outcome that has none of it.
static NO_RARE: Rare = Rare { xattr: None, attrs: None, note: None, stored: None };

impl Rare {
  /// The box, or `None` when all four are.
  fn boxed(xattr: Option<[u8; 32]>, attrs: Option<Xattrs>, note: Option<Warning>, stored: Option<Entry>) -> Option<Box<Rare>> {
    (xattr.is_some() || attrs.is_some() || note.is_some() || stored.is_some()).then(|| Box::new(Rare { xattr, attrs, note, stored }))
  }

  /// What `rare` holds (all `None` when it is).
  fn of(rare: &Option<Box<Rare>>) -> &Rare {
    rare.as_deref().unwrap_or(&NO_RARE)
  }
}

/// Writes the journal (every planned operation) and creates the increment
/// folder under `.axiomatic/incomplete/` when the plan stores versions:
/// from here on a killed run is finished by `recover`. Returns the
/// increment's name and folder.
pub fn begin(l: &Layout, plan: &Plan, now: SystemTime) -> Result<Option<(String, PathBuf)>, Error> {
  let name = (plan.tracked_ops() > 0).then(|| layout::unique_name(l, &layout::increment_name(now)));
  let header =
    JournalHeader { format: "axiomatic-journal".into(), increment: name.clone(), started: layout::iso(now), ops: plan.ops.len() as u64 };
  meta::write_journal(&l.journal, &header, plan.ops.iter().map(Op::journal))?;
  fault_point();
  let inc = name.map(|n| {
    let d = l.incomplete_increment(&n);
    (n, d)
  });
  if let Some((_, d)) = &inc {
    fs::create_dir_all(d).map_err(|e| Error::io(d, "cannot create", &e))?;
  }
  Ok(inc)
}

/// How the ops are carried out.
pub struct Setup<'a> {
  pub l: &'a Layout,
  pub src: &'a Path,
  /// The increment being built, if the plan stores versions.
  pub inc: Option<&'a Path>,
  /// The target has no hard links: increments get copies.
  pub no_links: bool,
  pub skip_inconsistent: bool,
  /// Which xattrs copies carry.
  pub xattrs: xattrs::Policy,
  /// Mirror folders never removed when they become empty.
  pub preserved_dirs: &'a [String],
}

/// The outcome of each op (in the plan's order) and how many increment
/// files are copies because a hardlink was impossible.
pub struct Applied {
  pub outcomes: Vec<Option<Outcome>>,
  pub fallbacks: u64,
}

/// Applies the plan: removals first (a file may replace a folder and
/// back), then copies, then the later members of hard-link groups (linked
/// to their group's first path, copied just before); each outcome is
/// written into its slot, no intermediate lists. A full disk stops the run
/// (the journal stays, the next run finishes the job); an abort commits
/// what was done as a recovered increment.
pub fn apply(pool: &rayon::ThreadPool, s: &Setup, plan: &Plan, progress: &Progress) -> Result<Applied, Error> {
  let fatal: Mutex<Option<Error>> = Mutex::new(None);
  let stop = AtomicBool::new(false);
  let fallbacks = AtomicU64::new(0);
  let ctx = ApplyCtx {
    l: s.l,
    src: s.src,
    inc: s.inc,
    progress,
    no_links: s.no_links,
    skip_inconsistent: s.skip_inconsistent,
    fatal: &fatal,
    stop: &stop,
    fallbacks: &fallbacks,
    checked: Mutex::new(Default::default()),
    made: Mutex::new(Default::default()),
    xattrs: s.xattrs,
    leads: Mutex::new(Default::default()),
  };
  let ops = &plan.ops;
  let is_removal = |op: &Op| op.kind.removes();
  let is_follower = |op: &Op| op.kind == OpKind::Copy && op.entry.is_some_and(|e| e.link().is_some());
  let mut outcomes: Vec<Option<Outcome>> = (0..ops.len()).map(|_| None).collect();
  pool.install(|| {
    ops.par_iter().zip(outcomes.par_iter_mut()).filter(|(op, _)| is_removal(op)).for_each(|(op, slot)| *slot = ctx.apply(op));
  });
  prune_empty_dirs(s.l, ops.iter().filter(|o| is_removal(o)).map(|o| o.rel()), s.preserved_dirs);
  pool.install(|| {
    ops
      .par_iter()
      .zip(outcomes.par_iter_mut())
      .filter(|(op, _)| !is_removal(op) && !is_follower(op))
      .for_each(|(op, slot)| *slot = ctx.apply(op));
  });
  ctx.record_leads(plan, &outcomes);
  pool.install(|| {
    ops.par_iter().zip(outcomes.par_iter_mut()).filter(|(op, _)| is_follower(op)).for_each(|(op, slot)| *slot = ctx.apply(op));
  });

  if let Some(err) = fatal.into_inner().unwrap() {
    // The journal stays: the next run (or `recover`) finishes the job.
    return Err(Error { message: format!("{}; the backup stopped and the next run will finish it", err.message), ..err });
  }
  if stop.load(Ordering::SeqCst) {
    // Aborted by the caller: commit what was done, as a recovered increment.
    let _ = pool.install(|| recover(s.l));
    return Err(Error::aborted());
  }
  Ok(Applied { outcomes, fallbacks: fallbacks.load(Ordering::Relaxed) })
}

/// Counts the outcomes into the report and collects their warnings; returns
/// how many entries the increment's catalog gets.
fn tally(report: &mut Report, ops: &[Op], outcomes: &[Option<Outcome>]) -> u64 {
  let mut catalog_len = 0u64;
  for (op, outcome) in ops.iter().zip(outcomes) {
    match outcome.as_ref().expect("every op has an outcome") {
      Outcome::Skipped(w) => report.warnings.push((**w).clone()),
      Outcome::DoneMissing(w) => {
        report.warnings.push((**w).clone());
        count(report, op);
        catalog_len += u64::from(op.kind == OpKind::Delete);
      }
      Outcome::Done { linked, inconsistent, rare, .. } => {
        let Rare { note, stored, .. } = Rare::of(rare);
        count(report, op);
        if op.kind == OpKind::Copy && !linked {
          report.bytes_copied += stored.as_ref().or(op.entry).unwrap().size;
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
          report.warnings.push(w.clone());
        }
        catalog_len += u64::from(op.tracked);
      }
    }
  }
  catalog_len
}

/// What a commit needs besides the plan and its outcomes.
pub struct Commit<'a> {
  pub entries: &'a [Entry],
  pub old: &'a [StateEntry],
  /// The increment being built: its name and folder under `incomplete/`.
  pub inc: Option<(String, PathBuf)>,
  pub now: SystemTime,
  pub started: Instant,
}

/// Commits an applied plan: counts and warnings into `report`, `syncfs`,
/// the increment's metadata (or its removal when nothing landed in it),
/// the new state (and the original's `mirror.json` where it exists), the
/// rename of the increment into `dst`, the journal's removal. Everything
/// streams over the ops (sorted by path, like the scan and the state), so
/// a run over a million files builds no second copy of the file list.
pub fn commit(l: &Layout, c: Commit, plan: &Plan, applied: &Applied, report: &mut Report) -> Result<(), Error> {
  let (ops, outcomes) = (&plan.ops, &applied.outcomes);
  let catalog_len = tally(report, ops, outcomes);
  let next = || next_state(c.entries, c.old, ops, outcomes, &plan.kept);
  report.link_fallbacks = applied.fallbacks;
  (report.mirror_files, report.tracked_files) = next().fold((0, 0), |(n, t), s| (n + 1, t + u64::from(s.tracked())));

  // The increment's metadata and the new state are written while `syncfs`
  // waits for the disk, and put in place only after it: nothing refers to
  // data before that data is durable.
  let inc = match c.inc {
    Some((_, dir)) if catalog_len == 0 => {
      meta::remove_tree(&dir)?;
      None
    }
    inc => inc,
  };
  if inc.is_some() {
    report.duration_ms = c.started.elapsed().as_millis() as u64;
  }
  let (flushed, staged) = std::thread::scope(|scope| {
    let staging = scope.spawn(|| -> Result<_, Error> {
      let meta = match &inc {
        Some((name, dir)) => Some(stage_increment_meta(dir, name, c.now, ops, outcomes, catalog_len, report)?),
        None => None,
      };
      Ok((meta, state::stage(&l.state, report.mirror_files, next().map(|r| r.line()))?))
    });
    let flushed = util::sync_fs(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e));
    (flushed, staging.join().expect("staging the metadata does not panic"))
  });
  flushed?;
  let (meta_staged, state_staged) = staged?;
  timing("flush", c.started);
  fault_point();
  if let Some(m) = meta_staged {
    m.publish()?;
    fault_point();
  }
  timing("increment metadata", c.started);
  state_staged.publish()?;
  timing("state", c.started);
  fault_point();
  adopt::update_mirror_json(&l.dst, next().map(|r| (r.rel(), r.stat().0, r.stat().1, r.tracked())))?;
  if let Some((name, dir)) = inc {
    let fin = l.increment(&name);
    fs::rename(&dir, &fin).map_err(|e| Error::io(&fin, "cannot commit the increment as", &e))?;
    util::sync_dir(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
    fault_point();
    report.increment = Some(name);
  }
  let r = remove_journal(l);
  timing("commit", c.started);
  r
}

/// Writes the metadata of the increment `name` in `dir` (still under
/// `incomplete/`): its summary, statistics and catalog, streamed; staged,
/// not yet in place.
fn stage_increment_meta(
  dir: &Path,
  name: &str,
  now: SystemTime,
  ops: &[Op],
  outcomes: &[Option<Outcome>],
  catalog_len: u64,
  report: &Report,
) -> Result<util::Staged, Error> {
  let summary = meta::Summary {
    new: report.new,
    changed: report.changed,
    deleted: report.deleted,
    total: catalog_len,
    bytes: Some(ops.iter().zip(outcomes).filter_map(|(op, o)| catalog_entry(op, o.as_ref().unwrap())).map(|c| c.size).sum()),
    ..Default::default()
  }
  .with_original_keys();
  let head = meta::MetaHead {
    version: meta::METADATA_VERSION,
    backup_name: name.to_string(),
    timestamp: layout::iso(now),
    backup_timestamp: layout::iso(now),
    backup_type: "incremental",
    origin: "run".into(),
    statistics: meta::with_original_statistics(statistics(report), &summary),
    summary,
  };
  let catalog = ops.iter().zip(outcomes).filter_map(|(op, o)| catalog_entry(op, o.as_ref().unwrap()).map(|c| (op.rel(), c)));
  meta::stage_meta(&dir.join(layout::meta_file_name(name)), &head, catalog)
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
    (Outcome::Done { sha, fallback, linked, inconsistent, rare }, OpKind::Copy | OpKind::Link) if op.tracked => {
      let Rare { attrs, stored, .. } = Rare::of(rare);
      let e = stored.as_ref().or(op.entry).unwrap();
      let mut c = meta::catalog_entry(e.size, e.mtime_ns, e.mode, e.kind, op.change().as_str(), sha.as_deref().copied(), *fallback);
      c.inconsistent = inconsistent.then_some(true);
      c.link = if *linked { e.link().map(str::to_string) } else { None };
      c.xattrs = attrs.as_ref().and_then(xattrs::to_catalog);
      Some(c)
    }
    _ => None,
  }
}

/// One line of the next mirror state, borrowed from the scan or the old state.
enum StateRef<'a> {
  /// Unchanged (or an op that was not done): the old entry, with the current
  /// role and change stamp (the scan's, when it saw the file unchanged).
  Old(&'a StateEntry, bool, u64),
  /// Copied or linked this run, with the hash of what the mirror now holds,
  /// its xattr digest, whether it is linked to its group's first path, and
  /// whether that copy is inconsistent.
  New(&'a Entry, Option<&'a [u8; 32]>, Option<&'a [u8; 32]>, bool, bool),
}

impl<'a> StateRef<'a> {
  fn rel(&self) -> &'a str {
    match *self {
      StateRef::Old(o, ..) => o.rel(),
      StateRef::New(e, ..) => &e.rel,
    }
  }
  fn tracked(&self) -> bool {
    match self {
      StateRef::Old(_, t, _) => *t,
      StateRef::New(e, ..) => e.role == Role::Tracked,
    }
  }
  /// The state line: the old entry itself when it stays as it was (no copy).
  fn line(&self) -> Cow<'a, StateEntry> {
    match *self {
      StateRef::Old(o, t, stamp) if o.tracked == t && (t || o.sha().is_none()) && o.stamp == stamp => Cow::Borrowed(o),
      StateRef::Old(o, t, stamp) => {
        Cow::Owned(StateEntry::new(Fields { tracked: t, sha256: if t { o.sha() } else { None }, stamp, ..o.fields() }))
      }
      StateRef::New(e, sha, xattr, linked, inconsistent) => Cow::Owned(StateEntry::new(Fields {
        rel: &e.rel,
        kind: e.kind,
        size: e.size,
        mtime_ns: e.mtime_ns,
        mode: e.mode,
        tracked: e.role == Role::Tracked,
        sha256: if e.role == Role::Tracked { sha.copied() } else { None },
        inconsistent,
        link: if linked { e.link() } else { None },
        xattr: xattr.copied(),
        // The scan saw no xattrs under this stamp, and the copy wrote none.
        stamp: if xattr.is_none() && !inconsistent { e.stamp } else { 0 },
      })),
    }
  }
  /// What `mirror.json` records of the entry: size and mtime.
  fn stat(&self) -> (u64, i64) {
    match *self {
      StateRef::Old(o, ..) => (o.size, o.mtime_ns),
      StateRef::New(e, ..) => (e.size, e.mtime_ns),
    }
  }
}

/// The mirror state after this run, in path order: every op that was done
/// gives its new entry; every op that was not done keeps the old entry (the
/// mirror still holds it, the next run tries again); entries without an op
/// keep theirs, and so do the `kept` ones (unreadable, not in the scan).
///
/// An iterator, not a list: the commit walks it three times (count, state,
/// `mirror.json`) instead of holding a line reference per file (32 MB at a
/// million files, the top of a first run's memory).
fn next_state<'a>(
  entries: &'a [Entry],
  old: &'a [StateEntry],
  ops: &'a [Op<'a>],
  outcomes: &'a [Option<Outcome>],
  kept: &'a [&'a StateEntry],
) -> impl Iterator<Item = StateRef<'a>> + 'a {
  let (mut i, mut j, mut k) = (0, 0, 0);
  let skipped = move |k: usize| match (&outcomes[k], ops[k].old) {
    (Some(Outcome::Skipped(_)), Some(o)) => Some(StateRef::Old(o, o.tracked, o.stamp)),
    _ => None,
  };
  let scanned = std::iter::from_fn(move || loop {
    let Some(e) = entries.get(i) else {
      // After the last scan entry: ops of paths after it that were not done.
      if k == ops.len() {
        return None;
      }
      k += 1;
      match skipped(k - 1) {
        Some(r) => return Some(r),
        None => continue,
      }
    };
    if k < ops.len() && ops[k].rel() < &*e.rel {
      k += 1;
      match skipped(k - 1) {
        Some(r) => return Some(r),
        None => continue,
      }
    }
    while j < old.len() && old[j].rel() < &*e.rel {
      j += 1;
    }
    i += 1;
    if k < ops.len() && ops[k].rel() == &*e.rel {
      k += 1;
      match (&outcomes[k - 1], ops[k - 1].old) {
        (Some(Outcome::Done { sha, linked, inconsistent, rare, .. }), _) => {
          let Rare { xattr, stored, .. } = Rare::of(rare);
          return Some(StateRef::New(stored.as_ref().unwrap_or(e), sha.as_deref(), xattr.as_ref(), *linked, *inconsistent));
        }
        (_, Some(o)) => return Some(StateRef::Old(o, o.tracked, o.stamp)),
        _ => {}
      }
    } else if j < old.len() && old[j].rel() == &*e.rel {
      // No op: the scan found it as recorded (xattrs included), so its
      // stamp, when it has one, is the one to keep.
      let o = &old[j];
      let stamp = if e.xattr().is_none() && o.xattr().is_none() { e.stamp } else { 0 };
      return Some(StateRef::Old(o, e.role == Role::Tracked, stamp));
    }
  });
  // Merge the kept entries in path order (their paths are in no op and no scan entry).
  let mut scanned = scanned.peekable();
  let mut kept = kept.iter().peekable();
  std::iter::from_fn(move || match (scanned.peek(), kept.peek()) {
    (Some(r), Some(o)) if *o.rel() < *r.rel() => kept.next().map(|o| StateRef::Old(o, o.tracked, o.stamp)),
    (Some(_), _) => scanned.next(),
    (None, _) => kept.next().map(|o| StateRef::Old(o, o.tracked, o.stamp)),
  })
}

/// Counts a planned (dry run) or done op in the report.
pub fn count(r: &mut Report, op: &Op) {
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

/// The last step of a run and of a recovery: without its journal, a run
/// is finished.
pub fn remove_journal(l: &Layout) -> Result<(), Error> {
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
  /// Folders this run made sure exist (mirror and increment): each is
  /// created once, not asked for again for every file in it (a `mkdir` and
  /// a `stat`, each a walk of the whole path).
  made: Mutex<std::collections::HashSet<PathBuf>>,
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

impl ApplyCtx<'_> {
  /// Creates the folder holding `p` unless this run already did (or found
  /// it). Nothing removes a folder that holds a file of this run while the
  /// copies go on: removals come first, and a folder replaced by a file
  /// (`put_in_place`) holds no selected path.
  fn ensure_parent(&self, p: &Path) -> io::Result<()> {
    let Some(d) = p.parent() else { return Ok(()) };
    if self.made.lock().unwrap().contains(d) {
      return Ok(());
    }
    longpath::create_dir_all(d)?;
    self.made.lock().unwrap().insert(d.to_path_buf());
    Ok(())
  }

  /// Records what became of each hard-link group's first path, before the
  /// later members are applied.
  fn record_leads(&self, plan: &Plan, outcomes: &[Option<Outcome>]) {
    let mut leads = self.leads.lock().unwrap();
    for (op, outcome) in plan.ops.iter().zip(outcomes) {
      if op.kind.stores() && plan.leaders.contains(op.rel()) {
        let lead = match outcome {
          Some(Outcome::Done { sha, .. }) => Lead::Done(sha.as_deref().copied()),
          _ => Lead::Failed,
        };
        leads.insert(op.rel().into(), lead);
      }
    }
  }

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
      OpKind::Copy if op.entry.is_some_and(|e| e.link().is_some()) => self.copy_follower(op),
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
    self.ensure_parent(&target).map_err(|e| ("cannot create the increment folder for", e))?;
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
    self.copy_as(op, e, op.tracked && op.old.is_none() && e.kind == Kind::File && !self.no_links)
  }

  /// Copies the source into a new file, then puts it in place. Usually the
  /// new file is the mirror's temp name, renamed over `mirror/<rel>`, then
  /// (tracked) linked into the increment. With `direct` (a tracked file
  /// the mirror did not hold) it is the increment's own `track/<rel>`
  /// (under `.axiomatic/incomplete/`, which nothing shows), hardlinked into
  /// the mirror once complete: the mirror never holds a partial file
  /// either way, and this way costs one directory operation fewer (a
  /// create and a link, not a create, a rename and a link). A mirror path
  /// taken after all (a leftover, a folder that became a file) gets the
  /// link under the temp name, then the rename; a link the mirror refuses
  /// (`EXDEV`: a mount of its own) sends the file the usual way. Whatever
  /// goes wrong removes the new file, and `recover` counts a `track/` file
  /// only once the mirror holds the same inode.
  fn copy_as(&self, op: &Op, e: &Entry, direct: bool) -> Result<Outcome, (&'static str, io::Error)> {
    let src = self.src.join(names::to_path(op.rel()));
    let dst = self.l.mirror_path(op.rel());
    // First no symlink or file on the way (removed), then the folder.
    if let Err(err) = self.safe_parents(op.rel()) {
      return Err(("cannot prepare the mirror folder for", err));
    }
    if let Err(err) = self.ensure_parent(&dst) {
      return Err(("cannot create the mirror folder for", err));
    }
    let new = if direct {
      let t = self.inc.expect("tracked ops have an increment").join("track").join(names::to_path(op.rel()));
      self.ensure_parent(&t).map_err(|e| ("cannot create the increment folder for", e))?;
      t
    } else {
      util::temp_path(&dst)
    };
    let remove_new = || {
      let _ = longpath::with(&new, |p| fs::remove_file(p));
    };
    // `copy_to_temp` removes the new file itself when the copy fails.
    let (c, stored) = match self.copy_to_temp(op, e, &src, &new)? {
      Ok(copied) => copied,
      Err(last) => {
        remove_new();
        return Ok(Outcome::Skipped(Box::new(Warning::new(
          op.rel(),
          "changed-during-read",
          format!("{last}; not recorded (--skip-inconsistent), the next run takes it"),
        ))));
      }
    };
    fault_point();
    let fallback = if direct {
      match self.link_into_mirror(&new, &dst) {
        Ok(()) => false,
        Err((what, err)) => {
          remove_new();
          if is_link_unsupported(&err) {
            return self.copy_as(op, e, false);
          }
          return Err((what, err));
        }
      }
    } else {
      self.put_in_place(&new, &dst)?;
      fault_point();
      if op.tracked {
        self.store(&dst, "track", op.rel())?
      } else {
        false
      }
    };
    if direct {
      fault_point();
    }
    let (xattr, note) = (xattrs::digest(&c.xattrs), c.xattr_warning(op.rel()));
    Ok(Outcome::Done {
      sha: c.sha256.map(Box::new),
      fallback,
      linked: false,
      inconsistent: c.torn,
      rare: Rare::boxed(xattr, (op.tracked && !c.xattrs.is_empty()).then_some(c.xattrs), note, stored),
    })
  }

  /// Hardlinks the complete file `new` to `mirror/<rel>` (`dst`): directly,
  /// or, where the path is taken, to the temp name and then renamed over it.
  fn link_into_mirror(&self, new: &Path, dst: &Path) -> Result<(), (&'static str, io::Error)> {
    match longpath::with2(new, dst, |a, b| fs::hard_link(a, b)) {
      Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
        let tmp = util::temp_path(dst);
        let _ = longpath::with(&tmp, |p| fs::remove_file(p));
        match longpath::with2(new, &tmp, |a, b| fs::hard_link(a, b)) {
          Ok(()) => self.put_in_place(&tmp, dst),
          Err(err) => Err(("cannot link into the mirror", err)),
        }
      }
      r => r.map_err(|err| ("cannot link into the mirror", err)),
    }
  }

  /// Copies `src` to the temp file `tmp` beside its mirror path. A file
  /// that changes under us is retried with its new metadata; the last
  /// attempt keeps what it read (marked inconsistent) unless the user
  /// refuses such copies: a file that is always being written still gets a
  /// copy. Returns the copy and the version it holds when that is not the
  /// one the scan saw, or (`Err`) why every attempt saw the file change.
  #[allow(clippy::type_complexity)]
  fn copy_to_temp(
    &self,
    op: &Op,
    e: &Entry,
    src: &Path,
    tmp: &Path,
  ) -> Result<Result<(crate::backup::copy::Copied, Option<Entry>), String>, (&'static str, io::Error)> {
    let mut last = String::new();
    for attempt in 0..COPY_ATTEMPTS {
      let mut cur = e.clone();
      if attempt > 0 {
        match longpath::with(src, |p| fs::symlink_metadata(p)) {
          Ok(md) => match Entry::from_metadata(e.rel.clone(), &md, e.role) {
            Some(n) => cur = Entry { extra: e.extra.clone(), ..n },
            None => break,
          },
          Err(err) => return Err(("cannot read", err)),
        }
      }
      // Xattrs only when the scan saw some: the common case costs no extra syscall.
      let xa = e.xattr().is_some().then_some(&self.xattrs);
      let accept_torn = attempt + 1 == COPY_ATTEMPTS && !self.skip_inconsistent;
      match longpath::with2(src, tmp, |s, t| crate::backup::copy::copy_entry_with(s, t, &cur, op.tracked, xa, accept_torn, self.progress)) {
        Ok(CopyResult::Done(mut c)) => {
          // What the mirror now holds, when it is not what the scan saw.
          let stored = c.stored.take().map(|n| Entry { extra: e.extra.clone(), ..n }).or_else(|| (!cur.same_stat(e)).then_some(cur));
          return Ok(Ok((c, stored)));
        }
        Ok(CopyResult::Changed(m)) => last = m,
        Err(err) => {
          let _ = longpath::with(tmp, |p| fs::remove_file(p));
          return Err(("cannot copy", err));
        }
      }
    }
    Ok(Err(last))
  }

  /// Renames the finished temp file over `mirror/<rel>` (a folder there,
  /// left empty by the removals, is removed first: a folder became a file).
  /// On failure the temp file goes.
  fn put_in_place(&self, tmp: &Path, dst: &Path) -> Result<(), (&'static str, io::Error)> {
    // Usually one rename (no `stat` first): only a folder in the way
    // refuses it (`EISDIR`).
    let mut renamed = longpath::with2(tmp, dst, |a, b| fs::rename(a, b));
    if renamed.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::EISDIR)) {
      // A folder became a file: the folder is empty by now unless it holds
      // preserved or foreign entries.
      if let Err(err) = longpath::with(dst, |p| fs::remove_dir(p)) {
        let _ = longpath::with(tmp, |p| fs::remove_file(p));
        return Err(("cannot replace the mirror folder", err));
      }
      renamed = longpath::with2(tmp, dst, |a, b| fs::rename(a, b));
    }
    if let Err(err) = renamed {
      let _ = longpath::with(tmp, |p| fs::remove_file(p));
      return Err(("cannot rename into the mirror", err));
    }
    Ok(())
  }

  /// A hard-link group's later member: `mirror/<rel>` becomes a hardlink of
  /// the group's first path's mirror copy (link to the temp name, then
  /// rename, so nothing is written in place), without reading the source
  /// again. Falls back to a copy of its own when the first path was not
  /// copied, the source is no longer the scanned inode, or links fail.
  fn copy_follower(&self, op: &Op) -> Result<Outcome, (&'static str, io::Error)> {
    use std::os::unix::fs::MetadataExt;
    let e = op.entry.unwrap();
    let leader = e.link().unwrap();
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
    self.safe_parents(op.rel()).map_err(|err| ("cannot prepare the mirror folder for", err))?;
    self.ensure_parent(&dst).map_err(|err| ("cannot create the mirror folder for", err))?;
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
    let attrs = if e.xattr().is_some() { xattrs::read_path(&dst, &self.xattrs).map(|f| f.attrs).unwrap_or_default() } else { Vec::new() };
    let sha = match (op.tracked, lead_sha.flatten()) {
      (false, _) => None,
      (true, Some(h)) => Some(h),
      (true, None) => Some(util::sha256_of(&dst).map_err(|err| ("cannot read the mirror copy of", err))?),
    };
    let fallback = if op.tracked { self.store(&dst, "track", op.rel())? } else { false };
    Ok(Outcome::Done {
      sha: sha.map(Box::new),
      fallback,
      linked: true,
      inconsistent: false,
      rare: Rare::boxed(xattrs::digest(&attrs), (op.tracked && !attrs.is_empty()).then_some(attrs), None, None),
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
          if old.xattr().is_some() { xattrs::read_path(&dst, &self.xattrs).map(|f| f.attrs).unwrap_or_default() } else { Vec::new() };
        Ok(Outcome::Done {
          sha: Some(Box::new(sha)),
          fallback,
          linked: old.link().is_some(),
          inconsistent: false,
          rare: Rare::boxed(old.xattr().copied(), (!attrs.is_empty()).then_some(attrs), None, None),
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
    Ok(Outcome::Done { sha: None, fallback, linked: false, inconsistent: false, rare: None })
  }

  fn remove(&self, op: &Op) -> Result<Outcome, (&'static str, io::Error)> {
    match longpath::with(&self.l.mirror_path(op.rel()), |p| fs::remove_file(p)) {
      Ok(()) => {}
      Err(e) if e.kind() == io::ErrorKind::NotFound => {}
      Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {}
      Err(e) => return Err(("cannot remove from the mirror", e)),
    }
    fault_point();
    Ok(Outcome::Done { sha: None, fallback: false, linked: false, inconsistent: false, rare: None })
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

#[cfg(test)]
mod tests {
  use super::*;

  /// An outcome is held for every op until the commit: a first full run of
  /// a million files holds a million of them (see [`Rare`]).
  #[test]
  fn outcomes_stay_small() {
    assert!(std::mem::size_of::<Option<Outcome>>() <= 24, "{}", std::mem::size_of::<Option<Outcome>>());
  }
}
