//! Changing a backup folder outside a run: rebuilding metadata and the
//! mirror state (`recreate`), removing files from an increment (`delete`),
//! removing whole increments without breaking point-in-time restore
//! (`prune`), and the consistency check behind `status`.
//!
//! Every change is resumable: `delete` journals the files it will unlink
//! (`.axiomatic/pending-removals.jsonl`) before it rewrites the metadata;
//! `prune` journals the increments it removes (`.axiomatic/prune.json`),
//! carries entries by hardlink before anything is removed, and hides a
//! removed increment by renaming it into `.axiomatic/trash/` before the
//! tree is deleted. `finish_pending` completes whatever a killed command left.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backup::meta::{self, CatalogEntry, MetaHead};
use crate::backup::scan::Kind;
use crate::backup::state::{self, StateEntry};
use crate::error::{Error, Warning};
use crate::explore::catalog::{name_iso, Matcher, SearchFilter};
use crate::explore::increments::{self, safe_rel, Increment};
use crate::fs::util::{self, fault_point};
use crate::layout::Layout;
use crate::progress::{Phase, Progress};

/// Refuses a path whose folders under `root` are not all real folders.
fn real_dirs(root: &Path, rel: &str) -> bool {
  let mut cur = root.to_path_buf();
  let comps: Vec<&str> = rel.split('/').collect();
  comps[..comps.len() - 1].iter().all(|c| {
    cur.push(crate::fs::names::to_path(c));
    crate::fs::longpath::with(&cur, |p| fs::symlink_metadata(p)).is_ok_and(|m| m.is_dir())
  })
}

/// Threads for removing trees. Unlinking is kernel CPU work under per-folder
/// locks: on a 2-core ext4 machine a 100k-file tree took 1.1 s with one
/// thread, 0.7 s with 2, and the same with 4–32 (`examples/rmtree.rs`);
/// more threads than cores cost nothing and help on slower disks.
const REMOVE_THREADS: usize = 8;

/// Unlinks every non-folder entry of `dir` (by name, relative to the open
/// folder: no path walk per file); returns its sub-folders and the count.
fn clear_dir(dir: &Path) -> (Vec<PathBuf>, u64) {
  use std::os::fd::AsRawFd;
  use std::os::unix::ffi::OsStrExt;
  let mut sub = Vec::new();
  let mut n = 0;
  let rd = crate::fs::longpath::with(dir, |p| fs::read_dir(p));
  let fd = crate::fs::longpath::with(dir, |p| fs::File::open(p));
  let (Ok(rd), Ok(fd)) = (rd, fd) else { return (sub, 0) };
  for e in rd.flatten() {
    if e.file_type().is_ok_and(|t| t.is_dir()) {
      sub.push(dir.join(e.file_name()));
      continue;
    }
    let Ok(name) = std::ffi::CString::new(e.file_name().as_bytes()) else { continue };
    // SAFETY: `fd` is an open folder and `name` a NUL-terminated entry name in it.
    if unsafe { libc::unlinkat(fd.as_raw_fd(), name.as_ptr(), 0) } == 0 {
      n += 1;
    }
  }
  (sub, n)
}

/// Removes a tree with many threads: each folder's files are unlinked by
/// one thread as the folder is read, sibling folders in parallel, then the
/// folders deepest first. Returns the number of files removed.
pub fn remove_tree_parallel(root: &Path) -> Result<u64, Error> {
  remove_tree_with(root, REMOVE_THREADS)
}

/// [`remove_tree_parallel`] with a given number of threads.
pub fn remove_tree_with(root: &Path, threads: usize) -> Result<u64, Error> {
  let md = match fs::symlink_metadata(root) {
    Ok(m) => m,
    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
    Err(e) => return Err(Error::io(root, "cannot remove", &e)),
  };
  if !md.is_dir() {
    fs::remove_file(root).map_err(|e| Error::io(root, "cannot remove", &e))?;
    return Ok(1);
  }
  let pool = crate::backup::engine::build_pool(threads)?;
  let mut levels: Vec<Vec<PathBuf>> = vec![vec![root.to_path_buf()]];
  let mut files = 0u64;
  pool.install(|| {
    loop {
      let next: Vec<(Vec<PathBuf>, u64)> = levels.last().unwrap().par_iter().map(|d| clear_dir(d)).collect();
      let mut subs = Vec::new();
      for (s, n) in next {
        subs.extend(s);
        files += n;
      }
      if subs.is_empty() {
        break;
      }
      levels.push(subs);
    }
    for level in levels.iter().rev() {
      level.par_iter().for_each(|d| {
        let _ = crate::fs::longpath::with(d, |p| fs::remove_dir(p));
      });
    }
  });
  // Anything left (a file that appeared meanwhile, a permission problem) is reported.
  meta::remove_tree(root)?;
  Ok(files)
}

/// A metadata file's bytes and the paths its catalog mentions.
type KeyScan = Result<(Vec<u8>, HashSet<String>), Error>;

#[derive(Serialize, Deserialize)]
struct PruneJournal {
  remove: Vec<String>,
}

/// Finishes what a killed `delete` or `prune` left: journaled unlinks, a
/// prune in progress, trash. Returns what was finished, for the report.
pub fn finish_pending(dst: &Path, workers: usize) -> Result<Vec<String>, Error> {
  let l = Layout::new(dst);
  let mut done = Vec::new();
  // Temp files of metadata writes that were killed before their rename.
  util::clean_atomic_leftovers(&l.meta);
  for inc in increments::list(dst)? {
    util::clean_atomic_leftovers(&inc.dir);
  }
  let pending = l.pending_removals.clone();
  if let Ok(f) = fs::File::open(&pending) {
    // Unlink only what the increment's metadata no longer lists: if the
    // delete was killed before its metadata was rewritten, nothing goes.
    let mut listed: HashMap<String, Option<HashSet<String>>> = HashMap::new();
    let mut n = 0;
    for line in BufReader::new(f).lines().map_while(Result::ok) {
      let Ok(rel) = serde_json::from_str::<String>(&line) else { continue };
      let Some((inc, inner)) = rel.split_once('/') else { continue };
      let cat = listed.entry(inc.to_string()).or_insert_with(|| {
        let inc = Increment::at(dst, inc)?;
        let bytes = increments::read_bytes(&inc).ok()??;
        let mut keys = HashSet::new();
        increments::parse(&inc.meta_path(), &bytes, &mut |p: &str, e: increments::EntryRef| {
          keys.insert(format!("{}/{p}", e.folder()));
        })
        .ok()?;
        Some(keys)
      });
      let Some(cat) = cat else { continue };
      if cat.contains(inner) || !safe_rel(&rel) || !real_dirs(dst, &rel) {
        continue;
      }
      match crate::fs::longpath::with(&dst.join(crate::fs::names::to_path(&rel)), |p| fs::remove_file(p)) {
        Ok(()) => n += 1,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&dst.join(crate::fs::names::to_path(&rel)), "cannot remove", &e)),
      }
    }
    fs::remove_file(&pending).map_err(|e| Error::io(&pending, "cannot remove", &e))?;
    if n > 0 {
      done.push(format!("finished an interrupted delete ({n} files)"));
    }
  }
  if let Ok(b) = fs::read(&l.prune) {
    let j: PruneJournal = serde_json::from_slice(&b).map_err(|e| Error::corrupt(&l.prune, format!("invalid prune journal: {e}")))?;
    let present: HashSet<String> = increments::list(dst)?.into_iter().map(|i| i.name).collect();
    let remove: Vec<String> = j.remove.into_iter().filter(|n| present.contains(n)).collect();
    let r = prune(dst, &remove, false, workers, &Progress::new())?;
    done.push(format!("finished an interrupted prune ({} increments removed)", r.removed.len()));
  }
  let t = l.trash.clone();
  if t.is_dir() {
    remove_tree_parallel(&t)?;
  }
  Ok(done)
}

/// What `prune` did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
  pub dry_run: bool,
  pub removed: Vec<String>,
  pub kept: Vec<String>,
  /// Entries carried into the next kept increment, per kept increment.
  pub carried: BTreeMap<String, u64>,
  pub files_removed: u64,
}

/// Removes the increments `remove` (names). Entries of a removed increment
/// that the next kept increment does not mention move into it, so every
/// kept point in time restores exactly as before.
pub fn prune(dst: &Path, remove: &[String], dry_run: bool, workers: usize, progress: &Progress) -> Result<PruneReport, Error> {
  let l = Layout::new(dst);
  let incs = increments::list(dst)?;
  let names: HashSet<&str> = incs.iter().map(|i| i.name.as_str()).collect();
  let remove_set: HashSet<&str> = remove.iter().map(String::as_str).filter(|n| names.contains(n)).collect();
  for n in remove {
    if !names.contains(n.as_str()) {
      return Err(Error::config(format!("there is no increment {n:?} in {}; see `backup list`", dst.display())));
    }
  }
  if let Some(newest) = incs.last() {
    if remove_set.contains(newest.name.as_str()) {
      return Err(Error::config(format!("{} is the newest increment: prune always keeps it", newest.name)));
    }
  }
  for inc in incs.iter().filter(|i| remove_set.contains(i.name.as_str())) {
    if !inc.meta_path().is_file() {
      return Err(increments::missing_error(inc, "its entries cannot be carried into the next kept increment"));
    }
  }
  let mut report = PruneReport { dry_run, ..Default::default() };
  report.removed = incs.iter().filter(|i| remove_set.contains(i.name.as_str())).map(|i| i.name.clone()).collect();
  report.kept = incs.iter().filter(|i| !remove_set.contains(i.name.as_str())).map(|i| i.name.clone()).collect();
  let pool = crate::backup::engine::build_pool(workers)?;
  if !dry_run && !report.removed.is_empty() {
    fs::create_dir_all(&l.meta).map_err(|e| Error::io(&l.meta, "cannot create", &e))?;
    let j = serde_json::to_vec(&PruneJournal { remove: report.removed.clone() }).expect("serializable");
    util::write_atomic(&l.prune, |f| f.write_all(&j))?;
    fault_point();
  }
  progress.set_phase(Phase::Apply);
  progress.ops_total.store(report.removed.len() as u64, Relaxed);
  // Groups: the removed increments before each kept one. Entries of a
  // group that the kept increment does not mention are carried into it
  // (newer removed increments win). Only those entries are parsed fully.
  let mut group: Vec<&Increment> = Vec::new();
  for inc in &incs {
    if remove_set.contains(inc.name.as_str()) {
      group.push(inc);
      continue;
    }
    if group.is_empty() {
      continue;
    }
    // The paths each metadata file mentions, all read in parallel (keys only).
    let keys_of = |i: &Increment| -> KeyScan {
      let b = increments::read_bytes(i)?.ok_or_else(|| increments::missing_error(i, "prune cannot tell what it holds"))?;
      let keys = std::cell::RefCell::new(HashSet::new());
      let record = |p: &str| {
        keys.borrow_mut().insert(p.to_string());
        false
      };
      increments::parse_filtered(&i.meta_path(), &b, &record, &mut |_: &str, _: increments::EntryRef| {})?;
      Ok((b, keys.into_inner()))
    };
    let mut scans: Vec<KeyScan> =
      pool.install(|| std::iter::once(inc).chain(group.iter().copied()).collect::<Vec<_>>().par_iter().map(|i| keys_of(i)).collect());
    let mentioned = scans.remove(0)?.1;
    let mut carry: BTreeMap<String, (usize, CatalogEntry)> = BTreeMap::new();
    for (gi, scan) in scans.into_iter().enumerate() {
      let (rb, keys) = scan?;
      if keys.iter().all(|k| mentioned.contains(k)) {
        continue;
      }
      let r = group[gi];
      increments::parse_filtered(
        &r.meta_path(),
        &rb,
        &|p| !mentioned.contains(p) && safe_rel(p),
        &mut |p: &str, e: increments::EntryRef| {
          carry.insert(p.to_string(), (gi, e.to_owned()));
        },
      )?;
    }
    let moved = carry.len() as u64;
    report.carried.insert(inc.name.clone(), moved);
    if !dry_run {
      if moved > 0 {
        let errors: Vec<Error> =
          pool.install(|| carry.par_iter().filter_map(|(p, (gi, e))| carry_file(group[*gi], inc, p, &e.category).err()).collect());
        if let Some(e) = errors.into_iter().next() {
          return Err(e);
        }
        let mut km = meta::read_meta(&inc.meta_path())?;
        for (p, (gi, mut e)) in carry {
          if e.carried_from.is_none() {
            e.carried_from = Some(group[gi].name.clone());
          }
          km.file_catalog.insert(p, e);
        }
        meta::rewrite_meta(&inc.meta_path(), &km)?;
        fault_point();
      }
      // Hide the removed increments (atomic renames), then delete them.
      let t = l.trash.clone();
      fs::create_dir_all(&t).map_err(|e| Error::io(&t, "cannot create", &e))?;
      for r in &group {
        let to = t.join(&r.name);
        meta::remove_tree(&to)?;
        fs::rename(&r.dir, &to).map_err(|e| Error::io(&r.dir, "cannot move aside", &e))?;
        fault_point();
      }
      util::sync_dir(dst).map_err(|e| Error::io(dst, "cannot flush", &e))?;
      for r in &group {
        report.files_removed += remove_tree_parallel(&t.join(&r.name))?;
        progress.ops_done.fetch_add(1, Relaxed);
      }
    }
    group.clear();
  }
  if !dry_run {
    let _ = fs::remove_dir(&l.trash);
    match fs::remove_file(&l.prune) {
      Ok(()) => {}
      Err(e) if e.kind() == io::ErrorKind::NotFound => {}
      Err(e) => return Err(Error::io(&l.prune, "cannot remove", &e)),
    }
  }
  Ok(report)
}

/// Puts `from/<category>/<p>` into `to/<category>/<p>` as a hardlink
/// (temp name + rename, so a half-done carry is harmless and can be
/// redone); moves it where hardlinks are impossible.
fn carry_file(from: &Increment, to: &Increment, p: &str, category: &str) -> Result<(), Error> {
  let src_root = from.dir.join(category);
  let dst_root = to.dir.join(category);
  let src = src_root.join(crate::fs::names::to_path(p));
  let target = dst_root.join(crate::fs::names::to_path(p));
  if !real_dirs(&src_root, p) {
    return Err(Error::corrupt(&src, "a folder on the way is a symlink; refusing to follow it"));
  }
  let md = match crate::fs::longpath::with(&src, |p| fs::symlink_metadata(p)) {
    Ok(m) => m,
    // Already moved by an interrupted prune (no-hardlink file systems).
    Err(e) if e.kind() == io::ErrorKind::NotFound && crate::fs::longpath::with(&target, |p| fs::symlink_metadata(p)).is_ok() => {
      return Ok(())
    }
    // The stored file is gone (deleted by hand): nothing to carry; the entry still documents the version.
    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
    Err(e) => return Err(Error::io(&src, "cannot read", &e)),
  };
  if !real_dirs(&dst_root, p) {
    let parent = target.parent().unwrap();
    crate::fs::longpath::create_dir_all(parent).map_err(|e| Error::io(parent, "cannot create", &e))?;
    if !real_dirs(&dst_root, p) {
      return Err(Error::corrupt(&target, "a folder on the way is a symlink; refusing to follow it"));
    }
  }
  // Usually the name is free: one link(2). A leftover of a killed prune (a
  // stray not in the metadata) is replaced through a temp name + rename.
  match crate::fs::longpath::with2(&src, &target, |a, b| fs::hard_link(a, b)) {
    Ok(()) => {}
    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
      if crate::fs::longpath::with(&target, |p| fs::symlink_metadata(p)).is_ok_and(|t| util::same_file(&t, &md)) {
        return Ok(());
      }
      let tmp = util::temp_path(&target);
      let _ = crate::fs::longpath::with(&tmp, |p| fs::remove_file(p));
      match crate::fs::longpath::with2(&src, &tmp, |a, b| fs::hard_link(a, b)) {
        Ok(()) => {
          crate::fs::longpath::with2(&tmp, &target, |a, b| fs::rename(a, b)).map_err(|e| Error::io(&target, "cannot create", &e))?
        }
        Err(_) => {
          crate::fs::longpath::with2(&src, &target, |a, b| fs::rename(a, b)).map_err(|e| Error::io(&target, "cannot move into", &e))?
        }
      }
    }
    // No hardlinks here (FAT) or the link limit: move it (the source goes away anyway).
    Err(_) => crate::fs::longpath::with2(&src, &target, |a, b| fs::rename(a, b)).map_err(|e| Error::io(&target, "cannot move into", &e))?,
  }
  fault_point();
  Ok(())
}

/// What `delete` removed (or would remove).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteReport {
  pub increment: String,
  pub dry_run: bool,
  pub removed: Vec<Removed>,
  pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Removed {
  pub path: String,
  pub category: String,
  pub size: u64,
}

/// `backup delete NAME --mask M…`: removes matching entries from one
/// increment. The metadata is rewritten first (atomically), after the
/// files to unlink are journaled, so no metadata ever lists a removed file.
pub fn delete(dst: &Path, name: &str, masks: Vec<String>, ignore_case: bool, dry_run: bool) -> Result<DeleteReport, Error> {
  let l = Layout::new(dst);
  let incs = increments::list(dst)?;
  let Some(inc) = incs.iter().find(|i| i.name == name) else {
    return Err(Error::config(format!("there is no increment {name:?} in {}; see `backup list`", dst.display())));
  };
  let mut m = meta::read_meta(&inc.meta_path())?;
  let matcher = Matcher::new(SearchFilter { masks, ignore_case, ..Default::default() })?;
  let hit: Vec<String> = m.file_catalog.keys().filter(|p| matcher.path_matches(p)).cloned().collect();
  let mut report = DeleteReport { increment: name.to_string(), dry_run, ..Default::default() };
  for p in &hit {
    let e = &m.file_catalog[p];
    report.bytes += e.size;
    report.removed.push(Removed { path: p.clone(), category: e.category.clone(), size: e.size });
  }
  if dry_run || hit.is_empty() {
    return Ok(report);
  }
  let rels: Vec<String> =
    report.removed.iter().filter(|r| safe_rel(&r.path)).map(|r| format!("{}/{}/{}", inc.name, r.category, r.path)).collect();
  fs::create_dir_all(&l.meta).map_err(|e| Error::io(&l.meta, "cannot create", &e))?;
  util::write_atomic(&l.pending_removals, |f| {
    let mut w = io::BufWriter::new(f);
    for r in &rels {
      serde_json::to_writer(&mut w, r)?;
      w.write_all(b"\n")?;
    }
    w.flush()
  })?;
  fault_point();
  for p in &hit {
    m.file_catalog.remove(p);
  }
  meta::rewrite_meta(&inc.meta_path(), &m)?;
  fault_point();
  finish_pending(dst, 1)?;
  // Folders left empty inside the increment go too.
  for r in &rels {
    let mut d = dst.join(crate::fs::names::to_path(r));
    while d.pop() && d != inc.dir && d.starts_with(&inc.dir) {
      if crate::fs::longpath::with(&d, |p| fs::remove_dir(p)).is_err() {
        break;
      }
    }
  }
  Ok(report)
}

/// What `recreate` rebuilt.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecreateReport {
  /// Increments whose metadata was rebuilt.
  pub rebuilt: Vec<String>,
  /// Increments whose metadata was fine and kept.
  pub kept: Vec<String>,
  pub state_rebuilt: bool,
  /// Entries in the rebuilt state.
  pub state_entries: u64,
  pub warnings: Vec<Warning>,
}

/// Every file and symlink under `root` (relative, sorted), skipping our temp files.
pub(crate) fn walk_files(root: &Path, warnings: &mut Vec<Warning>) -> Vec<(String, fs::Metadata)> {
  fn go(dir: &Path, rel: &str, out: &mut Vec<(String, fs::Metadata)>, warnings: &mut Vec<Warning>) {
    let rd = match crate::fs::longpath::with(dir, |p| fs::read_dir(p)) {
      Ok(r) => r,
      Err(e) if e.kind() == io::ErrorKind::NotFound => return,
      Err(e) => return warnings.push(Warning::from_io(dir.display().to_string(), "cannot read", &e)),
    };
    for e in rd.flatten() {
      let name = crate::fs::names::encode(&e.file_name()).into_owned();
      if name.starts_with(".axb-") && name.ends_with(".tmp") {
        continue;
      }
      let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
      let Ok(md) = e.metadata() else { continue };
      if md.is_dir() {
        go(&dir.join(e.file_name()), &r, out, warnings);
      } else if md.is_file() || md.file_type().is_symlink() {
        out.push((r, md));
      }
    }
  }
  let mut out = Vec::new();
  go(root, "", &mut out, warnings);
  out.sort_by(|a, b| a.0.cmp(&b.0));
  out
}

fn kind_of(md: &fs::Metadata) -> Kind {
  if md.file_type().is_symlink() {
    Kind::Symlink
  } else {
    Kind::File
  }
}

fn metadata_ok(inc: &Increment) -> bool {
  increments::read_bytes(inc)
    .ok()
    .flatten()
    .is_some_and(|b| increments::parse(&inc.meta_path(), &b, &mut |_: &str, _: increments::EntryRef| {}).is_ok())
}

/// `backup recreate [--backup NAME] [--force]`.
pub fn recreate(dst: &Path, only: Option<&str>, force: bool, workers: usize, progress: &Progress) -> Result<RecreateReport, Error> {
  let l = Layout::new(dst);
  let incs = increments::list(dst)?;
  if let Some(n) = only {
    if !incs.iter().any(|i| i.name == n) {
      return Err(Error::config(format!("there is no increment {n:?} in {}; see `backup list`", dst.display())));
    }
  }
  let pool = crate::backup::engine::build_pool(workers)?;
  let mut report = RecreateReport::default();
  progress.set_phase(Phase::Apply);
  // Whether each path's newest mention so far is a stored (live) version.
  let mut live: HashMap<String, bool> = HashMap::new();
  for inc in &incs {
    let selected = only.is_none() || only == Some(inc.name.as_str());
    let rebuild = selected && (force || !metadata_ok(inc));
    if !rebuild {
      if let Some(b) = increments::read_bytes(inc)? {
        let _ = increments::parse(&inc.meta_path(), &b, &mut |p: &str, e: increments::EntryRef| {
          live.insert(p.to_string(), !e.is_deleted());
        });
      }
      report.kept.push(inc.name.clone());
      continue;
    }
    let mut files: Vec<(String, String, fs::Metadata)> = Vec::new();
    for cat in ["track", "deleted"] {
      for (p, md) in walk_files(&inc.dir.join(cat), &mut report.warnings) {
        files.push((p, cat.to_string(), md));
      }
    }
    progress.ops_total.fetch_add(files.len() as u64, Relaxed);
    progress.bytes_total.fetch_add(files.iter().map(|(_, _, md)| md.len()).sum(), Relaxed);
    let hashed: Vec<Option<[u8; 32]>> = pool.install(|| {
      files
        .par_iter()
        .map(|(p, cat, md)| {
          let h = util::sha256_of(&inc.dir.join(cat).join(crate::fs::names::to_path(p))).ok();
          progress.bytes_done.fetch_add(md.len(), Relaxed);
          progress.ops_done.fetch_add(1, Relaxed);
          h
        })
        .collect()
    });
    let mut catalog = BTreeMap::new();
    for ((p, cat, md), sha) in files.into_iter().zip(hashed) {
      if sha.is_none() {
        report.warnings.push(Warning::new(format!("{}/{cat}/{p}", inc.name), "unreadable", "could not be hashed; recorded without sha256"));
      }
      let op = if cat == "deleted" {
        "deleted"
      } else if live.get(&p).copied().unwrap_or(false) {
        "changed"
      } else {
        "new"
      };
      let e = meta::catalog_entry(md.len(), util::mtime_ns(&md), md.mode() & 0o7777, kind_of(&md), op, sha, md.nlink() <= 1);
      live.insert(p.clone(), cat != "deleted");
      catalog.insert(p, e);
    }
    let summary = meta::summarize(&catalog);
    let head = MetaHead {
      version: meta::METADATA_VERSION,
      backup_name: inc.name.clone(),
      timestamp: name_iso(inc),
      backup_timestamp: name_iso(inc),
      backup_type: "incremental",
      origin: "recreated".into(),
      statistics: meta::with_original_statistics(serde_json::json!({ "recreated_from_files": true }), &summary),
      summary,
    };
    meta::write_meta(&inc.meta_path(), &head, catalog.iter().map(|(p, e)| (p.as_str(), e.clone())))?;
    report.rebuilt.push(inc.name.clone());
  }
  // The mirror state: rebuilt when missing, unreadable, or with force.
  let state_ok = l.state.is_file() && state::read(&l.state).is_ok();
  if (!state_ok || force) && only.is_none() && l.mirror.is_dir() {
    let files = walk_files(&l.mirror, &mut report.warnings);
    // Mirror paths sharing an inode are a hard-link group (increments share
    // inodes with the mirror, never two mirror paths otherwise).
    let mut first: std::collections::HashMap<(u64, u64), &str> = std::collections::HashMap::new();
    let links: Vec<Option<Box<str>>> = files
      .iter()
      .map(|(p, md)| {
        if !md.is_file() || md.nlink() < 2 {
          return None;
        }
        let lead = *first.entry((md.dev(), md.ino())).or_insert(p.as_str());
        (lead != p.as_str()).then(|| lead.into())
      })
      .collect();
    // A folder of the original backup.py: tracked as its mirror.json says.
    let original = crate::backup::adopt::is_original(&l);
    let entries: Vec<StateEntry> = if original {
      pool.install(|| crate::backup::adopt::original_state(&l, true, &mut report.warnings))?
    } else {
      pool.install(|| {
        files
          .par_iter()
          .zip(links)
          .map(|((p, md), link)| {
            let tracked = live.get(p).copied().unwrap_or(false);
            StateEntry::from_mirror(&l.mirror, p, md, tracked, tracked, link)
          })
          .collect()
      })
    };
    fs::create_dir_all(&l.meta).map_err(|e| Error::io(&l.meta, "cannot create", &e))?;
    state::write(&l.state, entries.len() as u64, entries.iter().map(std::borrow::Cow::Borrowed))?;
    report.state_rebuilt = true;
    report.state_entries = entries.len() as u64;
  }
  Ok(report)
}

/// How the mirror state compares with `dst/mirror` (size, mtime, kind).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateCheck {
  pub state_present: bool,
  /// A folder of the original backup.py (no state of ours; its
  /// `mirror.json` is compared with `mirror/`): the next run adopts it.
  pub original: bool,
  pub state_error: Option<String>,
  pub state_entries: u64,
  pub mirror_files: u64,
  /// In the state, not in the mirror.
  pub missing: Vec<String>,
  /// In the mirror, not in the state.
  pub extra: Vec<String>,
  /// Size, mtime or kind differ.
  pub differing: Vec<String>,
  /// Differences an interrupted run made (its journal lists them): the
  /// next run finishes it. Not in `missing`/`extra`/`differing`.
  pub pending: Vec<String>,
  pub agrees: bool,
}

/// The fast consistency check of `status` (no file is read, only stat'ed).
pub fn check_state(dst: &Path) -> StateCheck {
  let l = Layout::new(dst);
  let mut c = StateCheck { state_present: l.state.is_file(), ..Default::default() };
  c.original = crate::backup::adopt::is_original(&l);
  // The original's mirror.json records float seconds: compared within 1 ms.
  let tol = if c.original { 1_000_000 } else { 0 };
  let st = if c.original {
    match crate::backup::adopt::read_mirror_json(dst) {
      Ok(m) => {
        let mut v: Vec<StateEntry> = m
          .unwrap_or_default()
          .into_iter()
          .map(|(p, o)| StateEntry {
            link: None,
            xattr: None,
            rel: p.into(),
            kind: Kind::File,
            size: o.size,
            mtime_ns: (o.mtime * 1e9).round() as i64,
            mode: 0,
            tracked: o.tracked,
            sha256: None,
            inconsistent: false,
          })
          .collect();
        v.sort_by(|a, b| a.rel.cmp(&b.rel));
        v
      }
      Err(e) => {
        c.state_error = Some(e.message);
        return c;
      }
    }
  } else {
    match state::read(&l.state) {
      Ok(s) => s,
      Err(e) => {
        c.state_error = Some(e.message);
        return c;
      }
    }
  };
  let mut warnings = Vec::new();
  let files = walk_files(&l.mirror, &mut warnings);
  c.state_entries = st.len() as u64;
  c.mirror_files = files.len() as u64;
  let (mut i, mut j) = (0, 0);
  while i < st.len() || j < files.len() {
    match (st.get(i), files.get(j)) {
      (Some(s), Some((p, md))) if &*s.rel == p.as_str() => {
        if s.size != md.len() || (s.mtime_ns - util::mtime_ns(md)).abs() > tol || s.kind != kind_of(md) {
          c.differing.push(p.clone());
        }
        i += 1;
        j += 1;
      }
      (Some(s), Some((p, _))) if &*s.rel < p.as_str() => {
        c.missing.push(s.rel.to_string());
        i += 1;
      }
      (Some(s), None) => {
        c.missing.push(s.rel.to_string());
        i += 1;
      }
      (_, Some((p, _))) => {
        c.extra.push(p.clone());
        j += 1;
      }
      (None, None) => break,
    }
  }
  // What an interrupted run already changed is pending, not a disagreement.
  if let Some(run) = meta::PendingRun::read(&l.journal) {
    let rec: HashMap<&str, (u64, i64)> = st.iter().map(|s| (&*s.rel, (s.size, s.mtime_ns))).collect();
    let mut pending = Vec::new();
    for list in [&mut c.missing, &mut c.extra, &mut c.differing] {
      list.retain(|p| {
        let applied = safe_rel(p) && run.applied(p, &l.mirror.join(crate::fs::names::to_path(p)), rec.get(p.as_str()).copied()).is_some();
        if applied {
          pending.push(p.clone());
        }
        !applied
      });
    }
    pending.sort();
    c.pending = pending;
  }
  c.agrees = (c.state_present || c.original) && c.missing.is_empty() && c.extra.is_empty() && c.differing.is_empty();
  c
}

/// Leftovers of interrupted work, for `status`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leftovers {
  /// The journal of an interrupted run: the increment it was building.
  pub interrupted_run: Option<serde_json::Value>,
  pub incomplete_increments: Vec<String>,
  pub prune_pending: bool,
  pub delete_pending: bool,
}

pub fn leftovers(dst: &Path) -> Leftovers {
  let l = Layout::new(dst);
  let mut lo = Leftovers::default();
  if let Ok(Some((h, ops))) = meta::read_journal(&l.journal) {
    lo.interrupted_run = Some(serde_json::json!({ "increment": h.increment, "started": h.started, "ops": ops.len() }));
  }
  if let Ok(rd) = fs::read_dir(&l.incomplete) {
    lo.incomplete_increments = rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
    lo.incomplete_increments.sort();
  }
  lo.prune_pending = l.prune.exists() || l.trash.exists();
  lo.delete_pending = l.pending_removals.exists();
  lo
}
