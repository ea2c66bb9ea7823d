//! Point-in-time restore into a target folder.
//!
//! Safety rules: every path read from metadata or the mirror state must be
//! a plain relative path (`increments::safe_rel`); every folder on the way
//! to a target file is checked with `lstat` and must be a real folder (a
//! symlink there is refused, never followed); files are written to a temp
//! file beside the target and put in place by `link` (which fails if the
//! name exists) or, with `overwrite`, by `rename`. Restored files are
//! copies, never hardlinks into the backup.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::backup::copy::CopyResult;
use crate::backup::increments::{self, safe_rel};
use crate::backup::meta::PendingRun;
use crate::backup::rules::Role;
use crate::backup::scan::{Entry, Kind};
use crate::backup::state;
use crate::error::{Error, Warning};
use crate::explore::catalog::{newest_mentions, prefix_match};
use crate::fs::util;
use crate::layout::Layout;
use crate::progress::{Phase, Progress};

#[derive(Debug, Clone)]
pub struct RestoreOptions {
  pub dst: PathBuf,
  pub to: PathBuf,
  /// Files or folder prefixes relative to the backed-up `src`; empty = all.
  pub paths: Vec<String>,
  /// The increment that marks the point in time; None = the latest state (the mirror).
  pub at: Option<String>,
  pub overwrite: bool,
  pub dry_run: bool,
  pub workers: usize,
}

/// One file to restore.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
  pub path: String,
  /// `mirror` or the increment the version comes from.
  pub from: String,
  /// Untracked: restored from the mirror; its history is not kept.
  pub untracked: bool,
  pub size: u64,
  #[serde(skip)]
  mtime_ns: i64,
  #[serde(skip)]
  mode: u32,
  #[serde(skip)]
  sha256: Option<String>,
  /// The folder the stored file is under (`dst/mirror`, `dst/<inc>/track`).
  #[serde(skip)]
  root: PathBuf,
  /// A hard-link group's later member: the group's first path.
  #[serde(skip)]
  link: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
  /// The increment of the point in time, or null for the latest state.
  pub at: Option<String>,
  pub dry_run: bool,
  /// Files selected for restore.
  pub files: u64,
  pub bytes: u64,
  /// Files written (0 in a dry run).
  pub restored: u64,
  /// Untracked files taken from the mirror (their current copy).
  pub untracked: u64,
  /// Paths that exist in the target and were left alone (no `overwrite`).
  pub existing: u64,
  /// Paths the point in time knows as deleted (not restored).
  pub deleted_at_point: u64,
  /// An interrupted run the next `backup run` finishes.
  pub pending_run: Option<PendingRun>,
  /// Mirror files that run already replaced (restored as they are now,
  /// without a recorded hash to check) or removed (not restored).
  pub pending: u64,
  /// With `dry_run`: every file and where it would come from.
  pub items: Vec<Item>,
  /// Per-file problems: `exists`, `unsafe-path`, `symlink-in-target`,
  /// `not-a-directory`, `missing-in-backup`, `checksum-mismatch`,
  /// `not-found`, `changed-during-read`, I/O codes.
  pub warnings: Vec<Warning>,
}

/// Folders already checked (or created) as real folders.
struct Dirs(Mutex<HashSet<PathBuf>>);

impl Dirs {
  /// Checks every folder between `root` and `root/rel`'s parent; creates
  /// missing ones when `create`. A symlink or a non-folder on the way is an error.
  fn ensure(&self, root: &Path, rel: &str, create: bool) -> Result<(), Warning> {
    let mut cur = root.to_path_buf();
    let comps: Vec<&str> = rel.split('/').collect();
    for c in &comps[..comps.len() - 1] {
      cur.push(crate::fs::names::to_path(c));
      if self.0.lock().unwrap().contains(&cur) {
        continue;
      }
      match crate::fs::longpath::with(&cur, |p| fs::symlink_metadata(p)) {
        Ok(md) if md.file_type().is_symlink() => {
          return Err(Warning::new(rel, "symlink-in-target", format!("{} is a symlink; refusing to follow it", cur.display())))
        }
        Ok(md) if !md.is_dir() => return Err(Warning::new(rel, "not-a-directory", format!("{} is not a folder", cur.display()))),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => match crate::fs::longpath::with(&cur, |p| fs::create_dir(p)) {
          Ok(()) => {}
          Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let md = crate::fs::longpath::with(&cur, |p| fs::symlink_metadata(p))
              .map_err(|e| Warning::from_io(rel, "cannot check a folder", &e))?;
            if !md.is_dir() {
              return Err(Warning::new(rel, "not-a-directory", format!("{} is not a folder", cur.display())));
            }
          }
          Err(e) => return Err(Warning::from_io(rel, &format!("cannot create {}", cur.display()), &e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Warning::from_io(rel, &format!("cannot check {}", cur.display()), &e)),
      }
      self.0.lock().unwrap().insert(cur.clone());
    }
    Ok(())
  }
}

/// The newest mention of each path `keep` accepts at or before increment
/// `name`: (increment name, entry); from the catalog index when it can be
/// used, else from every catalog (the same answer).
fn mentions_at(
  dst: &Path,
  name: &str,
  keep: &(dyn Fn(&str) -> bool + Sync),
) -> Result<std::collections::HashMap<String, (String, crate::backup::meta::CatalogEntry)>, Error> {
  if let Some(r) = crate::explore::index::with(dst, |ix| ix.newest_mentions(name, keep)) {
    return r;
  }
  let incs = increments::list(dst)?;
  let Some(idx) = incs.iter().position(|i| i.name == name) else {
    return Err(Error::config(format!("there is no increment {name:?} in {}; see `backup list`", dst.display())));
  };
  let upto = &incs[..=idx];
  Ok(newest_mentions(upto, keep)?.into_iter().map(|(p, (i, e))| (p, (upto[i].name.clone(), e))).collect())
}

/// Works out what a restore copies: the newest mention of each path at
/// or before `at` (deletions leave it out), untracked files from the
/// mirror; without `at`, the mirror as the last run left it.
fn plan(o: &RestoreOptions, report: &mut RestoreReport) -> Result<Vec<Item>, Error> {
  let l = Layout::new(&o.dst);
  // A folder of the original backup.py has no state of ours: its mirror is
  // the latest state (tracked as its mirror.json says).
  let original = crate::backup::adopt::is_original(&l);
  if !l.state.is_file() && !original {
    return Err(Error::corrupt(
      &l.state,
      "the mirror state is missing, so the backup's current files are unknown; rebuild it with `backup recreate`",
    ));
  }
  let wanted: Vec<String> = o.paths.iter().map(|p| p.trim_start_matches("./").trim_end_matches('/').to_string()).collect();
  let keep = |p: &str| wanted.is_empty() || wanted.iter().any(|w| prefix_match(p, w));
  let (mirror_state, _) = crate::backup::adopt::read_state(&l, false)?;
  let mut items = Vec::new();
  let mut unsafe_paths = Vec::new();
  // An interrupted run may have replaced or removed mirror files already:
  // a replaced one is restored as the mirror now holds it (the journal's
  // size, mtime and mode; no hash is recorded for it yet), a removed one
  // is not restored. Both are counted as pending, never as damage.
  report.pending_run = PendingRun::read(&l.journal);
  let pending = std::cell::Cell::new(0u64);
  let from_state = |s: &state::StateEntry, items: &mut Vec<Item>| {
    if let Some(run) = &report.pending_run {
      if safe_rel(s.rel()) {
        if let Some(op) = run.applied(s.rel(), &l.mirror.join(crate::fs::names::to_path(s.rel())), Some((s.size, s.mtime_ns))) {
          pending.set(pending.get() + 1);
          if op.op.stores() {
            items.push(Item {
              path: s.rel().to_string(),
              from: "mirror".into(),
              untracked: !op.tracked,
              size: op.size,
              mtime_ns: op.mtime_ns,
              mode: op.mode,
              sha256: None,
              root: l.mirror.clone(),
              link: op.link.clone(),
            });
          }
          return;
        }
      }
    }
    items.push(Item {
      path: s.rel().to_string(),
      from: "mirror".into(),
      untracked: !s.tracked,
      size: s.size,
      mtime_ns: s.mtime_ns,
      mode: s.mode,
      sha256: s.sha().map(hex::encode),
      root: l.mirror.clone(),
      link: s.link().map(str::to_string),
    });
  };
  match &o.at {
    None => {
      for s in mirror_state.iter().filter(|s| keep(s.rel())) {
        from_state(s, &mut items);
      }
    }
    Some(name) => {
      let mentions = mentions_at(&o.dst, name, &keep)?;
      for (p, (inc, e)) in &mentions {
        if e.category == "deleted" {
          report.deleted_at_point += 1;
          continue;
        }
        items.push(Item {
          path: p.clone(),
          from: inc.clone(),
          untracked: false,
          size: e.size,
          mtime_ns: e.mtime_ns.parse().unwrap_or((e.mtime * 1e9) as i64),
          mode: e.mode,
          sha256: e.sha256.clone(),
          root: l.increment(inc).join("track"),
          link: e.link.clone(),
        });
      }
      for s in mirror_state.iter().filter(|s| !s.tracked && keep(s.rel()) && !mentions.contains_key(s.rel())) {
        from_state(s, &mut items);
      }
    }
  }
  report.pending = pending.get();
  items.retain(|it| {
    let ok = safe_rel(&it.path);
    if !ok {
      unsafe_paths.push(Warning::new(
        it.path.clone(),
        "unsafe-path",
        "a path in the backup's metadata is not a plain relative path; refused",
      ));
    }
    ok
  });
  report.warnings.extend(unsafe_paths);
  for w in &wanted {
    if !w.is_empty() && !items.iter().any(|it| prefix_match(&it.path, w)) {
      let what = if o.at.is_some() { "at that point in time" } else { "in the latest backup" };
      report.warnings.push(Warning::new(w.clone(), "not-found", format!("nothing to restore under this path {what}")));
    }
  }
  items.sort_by(|a, b| a.path.cmp(&b.path));
  Ok(items)
}

enum Done {
  Restored,
  Exists,
}

/// Xattr problems of a whole restore, reported once rather than per file.
#[derive(Default)]
struct XattrTally {
  /// Files whose xattrs the target refused as unsupported, and the first.
  unsupported: Mutex<(u64, Option<String>)>,
  /// Files with `security.*`/`trusted.*` xattrs a non-root restore cannot set.
  need_root: Mutex<(u64, Option<String>)>,
}

impl XattrTally {
  fn add(slot: &Mutex<(u64, Option<String>)>, rel: &str) {
    let mut s = slot.lock().unwrap();
    s.0 += 1;
    if s.1.as_deref().is_none_or(|f| rel < f) {
      s.1 = Some(rel.to_string());
    }
  }

  fn warnings(self, to: &Path) -> Vec<Warning> {
    let mut out = Vec::new();
    let (n, first) = self.unsupported.into_inner().unwrap();
    if n > 0 {
      out.push(Warning::new(
        "",
        "target-no-xattrs",
        format!(
          "{n} restored files had extended attributes or ACLs (e.g. {:?}) that {} cannot hold; the files were restored without them",
          first.unwrap_or_default(),
          to.display()
        ),
      ));
    }
    let (n, first) = self.need_root.into_inner().unwrap();
    if n > 0 {
      out.push(Warning::new(
        "",
        "xattrs-need-root",
        format!(
          "{n} restored files had security.* or trusted.* extended attributes (e.g. {:?}) that only root can set; restore as root to get them back",
          first.unwrap_or_default()
        ),
      ));
    }
    out
  }
}

/// Restores a hard-link group's later member as a hardlink of the group's
/// first path, restored just before by this restore (`lead`), when both
/// are the same version: the same stored inode, or the same recorded
/// SHA-256, size, mtime and mode. `None`: restore it on its own.
fn restore_linked(o: &RestoreOptions, it: &Item, lead: &Item, dirs_src: &Dirs, dirs_dst: &Dirs) -> Option<Result<Done, Warning>> {
  use std::os::unix::fs::MetadataExt;
  let rel = it.path.as_str();
  dirs_src.ensure(&it.root, rel, false).ok()?;
  let a = fs::symlink_metadata(it.root.join(crate::fs::names::to_path(rel))).ok()?;
  let b = fs::symlink_metadata(lead.root.join(crate::fs::names::to_path(&lead.path))).ok()?;
  let same_inode = a.dev() == b.dev() && a.ino() == b.ino();
  let same_version =
    it.sha256.is_some() && it.sha256 == lead.sha256 && (it.size, it.mtime_ns, it.mode) == (lead.size, lead.mtime_ns, lead.mode);
  if !a.is_file() || !(same_inode || same_version) {
    return None;
  }
  if let Err(w) = dirs_dst.ensure(&o.to, rel, true) {
    return Some(Err(w));
  }
  let target = o.to.join(crate::fs::names::to_path(rel));
  match fs::symlink_metadata(&target) {
    Ok(t) if t.is_dir() => {
      return Some(Err(Warning::new(rel, "not-a-directory", format!("{} is a folder; not replaced", target.display()))))
    }
    Ok(_) if !o.overwrite => return Some(Ok(Done::Exists)),
    _ => {}
  }
  let tmp = util::temp_path(&target);
  let _ = fs::remove_file(&tmp);
  // No hardlinks in the target (FAT) or at the link limit: a copy of its own.
  fs::hard_link(o.to.join(crate::fs::names::to_path(&lead.path)), &tmp).ok()?;
  let put = if o.overwrite {
    // (rename(2) of two links of one inode does nothing: remove the temp name.)
    fs::rename(&tmp, &target).map(|()| Done::Restored).inspect(|_| {
      let _ = fs::remove_file(&tmp);
    })
  } else {
    match fs::hard_link(&tmp, &target) {
      Ok(()) => fs::remove_file(&tmp).map(|()| Done::Restored),
      Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs::remove_file(&tmp).map(|()| Done::Exists),
      Err(e) => Err(e),
    }
  };
  Some(put.map_err(|e| {
    let _ = fs::remove_file(&tmp);
    Warning::from_io(rel, "cannot restore", &e)
  }))
}

fn restore_one(
  o: &RestoreOptions,
  it: &Item,
  dirs_src: &Dirs,
  dirs_dst: &Dirs,
  tally: &XattrTally,
  progress: &Progress,
) -> Result<Done, Warning> {
  let rel = it.path.as_str();
  // The source must not lead out of the backup through a symlinked folder.
  dirs_src.ensure(&it.root, rel, false).map_err(|w| Warning::new(rel, "unsafe-path", format!("in the backup: {}", w.message)))?;
  let source = it.root.join(crate::fs::names::to_path(rel));
  let md = crate::fs::longpath::with(&source, |p| fs::symlink_metadata(p)).map_err(|e| {
    if e.kind() == io::ErrorKind::NotFound {
      Warning::new(rel, "missing-in-backup", format!("{} is missing", source.display()))
    } else {
      Warning::from_io(rel, "cannot read the stored version", &e)
    }
  })?;
  let Some(mut entry) = Entry::from_metadata(rel, &md, Role::Tracked) else {
    return Err(Warning::new(rel, "missing-in-backup", format!("{} is not a file", source.display())));
  };
  // Mode 0: not recorded (the original backup.py's metadata); the stored
  // file's own mode is used.
  if it.mode != 0 {
    entry.mode = it.mode;
  }
  // Without a recorded hash (the original's metadata) the stored file may
  // be a later version than the metadata says (backup.py overwrote mirror
  // files in place): restored as it is, with its own mtime, and named.
  let overwritten =
    it.sha256.is_none() && it.from != "mirror" && (entry.size != it.size || (entry.mtime_ns - it.mtime_ns).abs() > 1_000_000_000);
  dirs_dst.ensure(&o.to, rel, true)?;
  let target = o.to.join(crate::fs::names::to_path(rel));
  match crate::fs::longpath::with(&target, |p| fs::symlink_metadata(p)) {
    Ok(t) if t.is_dir() => return Err(Warning::new(rel, "not-a-directory", format!("{} is a folder; not replaced", target.display()))),
    Ok(_) if !o.overwrite => return Ok(Done::Exists),
    _ => {}
  }
  let tmp = util::temp_path(&target);
  let mut copied =
    match crate::fs::longpath::with2(&source, &tmp, |s, t| crate::backup::copy::copy_entry(s, t, &entry, it.sha256.is_some(), progress)) {
      Ok(CopyResult::Done(c)) => c,
      Ok(CopyResult::Changed(m)) => return Err(Warning::new(rel, "changed-during-read", m)),
      Err(e) => {
        let _ = crate::fs::longpath::with(&tmp, |p| fs::remove_file(p));
        return Err(Warning::from_io(rel, "cannot restore", &e));
      }
    };
  // The original's versions keep the stored file's exact mtime (its
  // metadata has only float seconds; `copy2` preserved the source's).
  let original_version = it.sha256.is_none() && it.from != "mirror";
  if entry.mtime_ns != it.mtime_ns && !original_version {
    let mt = filetime::FileTime::from_unix_time(it.mtime_ns.div_euclid(1_000_000_000), it.mtime_ns.rem_euclid(1_000_000_000) as u32);
    let r = crate::fs::longpath::with(&tmp, |t| {
      if entry.kind == Kind::Symlink {
        filetime::set_symlink_file_times(t, mt, mt)
      } else {
        filetime::set_file_mtime(t, mt)
      }
    });
    r.map_err(|e| Warning::from_io(rel, "cannot set the mtime", &e))?;
  }
  let put = if o.overwrite {
    crate::fs::longpath::with2(&tmp, &target, |a, b| fs::rename(a, b)).map(|()| Done::Restored)
  } else {
    match crate::fs::longpath::with2(&tmp, &target, |a, b| fs::hard_link(a, b)) {
      Ok(()) => crate::fs::longpath::with(&tmp, |p| fs::remove_file(p)).map(|()| Done::Restored),
      Err(e) if e.kind() == io::ErrorKind::AlreadyExists => crate::fs::longpath::with(&tmp, |p| fs::remove_file(p)).map(|()| Done::Exists),
      // No hardlinks here (FAT): check, then rename.
      Err(_) if crate::fs::longpath::with(&target, |p| fs::symlink_metadata(p)).is_err() => {
        crate::fs::longpath::with2(&tmp, &target, |a, b| fs::rename(a, b)).map(|()| Done::Restored)
      }
      Err(_) => crate::fs::longpath::with(&tmp, |p| fs::remove_file(p)).map(|()| Done::Exists),
    }
  };
  let done = put.map_err(|e| {
    let _ = crate::fs::longpath::with(&tmp, |p| fs::remove_file(p));
    Warning::from_io(rel, "cannot restore", &e)
  })?;
  if copied.xattrs_need_root > 0 {
    XattrTally::add(&tally.need_root, rel);
  }
  let unsupported = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOSYS));
  if copied.xattr_errors.iter().any(|(_, e)| unsupported(e)) {
    XattrTally::add(&tally.unsupported, rel);
    copied.xattr_errors.retain(|(_, e)| !unsupported(e));
  }
  if let Some(w) = copied.xattr_warning(rel) {
    return Err(Warning { code: "xattrs-not-restored".into(), ..w });
  }
  if let (Some(want), Some(got)) = (&it.sha256, copied.sha256) {
    if *want != hex::encode(got) {
      return Err(Warning::new(
        rel,
        "checksum-mismatch",
        format!("restored, but its SHA-256 {} differs from the recorded {want}: the stored copy is damaged", hex::encode(got)),
      ));
    }
  }
  if overwritten && matches!(done, Done::Restored) {
    return Err(Warning::new(
      rel,
      "overwritten-version",
      format!(
        "restored, but {} holds a later version than {} records ({} bytes, recorded {}): backup.py overwrote this file in \
         place after that increment, so the recorded version is lost",
        source.display(),
        it.from,
        entry.size,
        it.size
      ),
    ));
  }
  Ok(done)
}

/// `backup restore`.
pub fn restore(o: &RestoreOptions, progress: &Progress) -> Result<RestoreReport, Error> {
  progress.set_phase(Phase::Plan);
  let mut report = RestoreReport { at: o.at.clone(), dry_run: o.dry_run, ..Default::default() };
  let items = plan(o, &mut report)?;
  report.files = items.len() as u64;
  report.bytes = items.iter().map(|i| i.size).sum();
  report.untracked = items.iter().filter(|i| i.untracked).count() as u64;
  if o.dry_run {
    report.existing = items
      .iter()
      .filter(|i| crate::fs::longpath::with(&o.to.join(crate::fs::names::to_path(&i.path)), |p| fs::symlink_metadata(p)).is_ok())
      .count() as u64;
    report.items = items;
    return Ok(report);
  }
  fs::create_dir_all(&o.to).map_err(|e| Error::io(&o.to, "cannot create the restore target", &e))?;
  progress.ops_total.store(report.files, Relaxed);
  progress.bytes_total.store(report.bytes, Relaxed);
  progress.set_phase(Phase::Apply);
  let pool = crate::backup::engine::build_pool(o.workers)?;
  let dirs_src = Dirs(Mutex::new(HashSet::new()));
  let dirs_dst = Dirs(Mutex::new(HashSet::new()));
  let tally = XattrTally::default();
  // Hard-link groups: later members whose first path is restored too are
  // restored after it, as hardlinks of it.
  let index: std::collections::HashMap<&str, usize> = items.iter().enumerate().map(|(i, it)| (it.path.as_str(), i)).collect();
  let lead_of = |it: &Item| it.link.as_deref().and_then(|l| index.get(l).copied());
  let mut results: Vec<Option<Result<Done, Warning>>> = (0..items.len()).map(|_| None).collect();
  let mut restored: HashSet<usize> = HashSet::new();
  for second in [false, true] {
    pool.install(|| {
      items.par_iter().zip(results.par_iter_mut()).filter(|(it, _)| lead_of(it).is_some() == second).for_each(|(it, slot)| {
        if progress.is_aborted() {
          *slot = Some(Err(Warning::new(it.path.clone(), "aborted", "not restored: the restore was aborted")));
          return;
        }
        let linked = lead_of(it).filter(|i| restored.contains(i)).and_then(|i| restore_linked(o, it, &items[i], &dirs_src, &dirs_dst));
        let r = linked.unwrap_or_else(|| restore_one(o, it, &dirs_src, &dirs_dst, &tally, progress));
        progress.ops_done.fetch_add(1, Relaxed);
        *slot = Some(r);
      });
    });
    restored = results.iter().enumerate().filter(|(_, r)| matches!(r, Some(Ok(Done::Restored)))).map(|(i, _)| i).collect();
  }
  let results: Vec<Result<Done, Warning>> = results.into_iter().map(|r| r.expect("every item has a result")).collect();
  if progress.is_aborted() {
    return Err(Error::aborted());
  }
  for r in results {
    match r {
      Ok(Done::Restored) => report.restored += 1,
      Ok(Done::Exists) => report.existing += 1,
      Err(w) => {
        if w.code == "checksum-mismatch" || w.code == "overwritten-version" {
          report.restored += 1;
        }
        report.warnings.push(w);
      }
    }
  }
  report.warnings.splice(0..0, tally.warnings(&o.to));
  if report.existing > 0 {
    report.warnings.push(Warning::new(
      "",
      "exists",
      format!("{} files exist in the target and were left alone; pass --overwrite to replace them", report.existing),
    ));
  }
  Ok(report)
}
