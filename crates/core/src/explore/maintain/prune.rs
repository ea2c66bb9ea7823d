//! `prune`: removes whole increments without breaking point-in-time
//! restore. The removed increments are journaled, their entries that the
//! next kept increment does not mention are carried into it by hardlink,
//! then they are hidden in the trash (atomic renames) and deleted.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;
use serde::Serialize;

use super::{real_dirs, remove_tree_parallel, PruneJournal};
use crate::backup::increments::{self, safe_rel, Increment, Keys};
use crate::backup::meta::{self, CatalogEntry};
use crate::error::Error;
use crate::fs::util::{self, fault_point};
use crate::layout::Layout;
use crate::progress::timing;
use crate::progress::{Phase, Progress};

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
///
/// The order: journal; per kept increment, decide and carry, rewrite its
/// metadata, hide the removed ones in the trash; then, once every removed
/// increment is hidden, delete the trash while the catalog index (if there
/// is one) is brought up to date beside it: the deletion is kernel work
/// on every core, the index update SQLite work on one.
pub fn prune(dst: &Path, remove: &[String], dry_run: bool, workers: usize, progress: &Progress) -> Result<PruneReport, Error> {
  let started = std::time::Instant::now();
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
  timing("list", started);
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
  // Removed increments, hidden in the trash, to delete at the end.
  let mut hidden: Vec<std::path::PathBuf> = Vec::new();
  for inc in &incs {
    if remove_set.contains(inc.name.as_str()) {
      group.push(inc);
      continue;
    }
    if group.is_empty() {
      continue;
    }
    // The paths the kept increment and its group mention, read in parallel
    // (keys only).
    let members: Vec<&Increment> = std::iter::once(inc).chain(group.iter().copied()).collect();
    let keys_of =
      |i: &Increment| increments::catalog_keys(i)?.ok_or_else(|| increments::missing_error(i, "prune cannot tell what it holds"));
    let keys: Vec<Result<Keys, Error>> = pool.install(|| members.par_iter().map(|i| keys_of(i)).collect());
    let mut keys = keys.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter();
    timing("key scan", started);
    let mentioned = keys.next().unwrap_or_default();
    let mut carry: BTreeMap<String, (usize, CatalogEntry)> = BTreeMap::new();
    for (gi, rk) in keys.enumerate() {
      // What the kept increment does not mention: only those entries are parsed.
      let missing = missing_from(&rk, &mentioned);
      if missing.is_empty() {
        continue;
      }
      let r = group[gi];
      let bytes = increments::read_bytes(r)?.ok_or_else(|| increments::missing_error(r, "prune cannot tell what it holds"))?;
      increments::parse_filtered(
        &r.meta_path(),
        &bytes,
        &|p| missing.contains(p) && safe_rel(p),
        &mut |p: &str, e: increments::EntryRef| {
          carry.insert(p.to_string(), (gi, e.to_owned()));
        },
      )?;
    }
    let moved = carry.len() as u64;
    report.carried.insert(inc.name.clone(), moved);
    timing("carry decided", started);
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
      // Hide the removed increments (atomic renames); deleted below.
      fs::create_dir_all(&l.trash).map_err(|e| Error::io(&l.trash, "cannot create", &e))?;
      for r in &group {
        let to = l.trash.join(&r.name);
        meta::remove_tree(&to)?;
        fs::rename(&r.dir, &to).map_err(|e| Error::io(&r.dir, "cannot move aside", &e))?;
        fault_point();
        hidden.push(to);
      }
      util::sync_dir(dst).map_err(|e| Error::io(dst, "cannot flush", &e))?;
      timing("hidden in the trash", started);
    }
    group.clear();
  }
  if !dry_run {
    // The index is derived: a failure leaves it stale, and the next reader
    // updates or rebuilds it. It only needs the removed increments gone
    // from `dst`, so it runs while their trees are deleted.
    let removed = std::thread::scope(|sc| -> Result<(), Error> {
      let index = sc.spawn(|| crate::explore::index::update(dst));
      let removed = hidden.iter().try_for_each(|t| {
        report.files_removed += remove_tree_parallel(t)?;
        progress.ops_done.fetch_add(1, Relaxed);
        Ok(())
      });
      timing("removed", started);
      let _ = index.join();
      timing("index updated", started);
      removed
    });
    removed?;
    let _ = fs::remove_dir(&l.trash);
    match fs::remove_file(&l.prune) {
      Ok(()) => {}
      Err(e) if e.kind() == io::ErrorKind::NotFound => {}
      Err(e) => return Err(Error::io(&l.prune, "cannot remove", &e)),
    }
  }
  Ok(report)
}

/// The keys of `of` that `kept` does not have. Both usually list the
/// same paths in the same order (our writer's path order) for the stretch
/// they share: that stretch costs one comparison per key; the rest is
/// looked up in a set of `kept` keyed by xxh3 (SipHash over 100k paths
/// cost more than their scan).
fn missing_from<'a>(of: &'a Keys, kept: &Keys) -> PathSet<'a> {
  let same = of.iter().zip(kept.iter()).take_while(|(a, b)| a == b).count();
  if same == of.len() {
    return PathSet::default();
  }
  let set: PathSet = kept.iter().collect();
  of.iter().skip(same).filter(|p| !set.contains(p)).collect()
}

/// Paths borrowed from metadata bytes, hashed with [`PathHash`].
type PathSet<'a> = HashSet<&'a str, BuildHasherDefault<PathHash>>;

/// xxh3 of a path, for [`PathSet`].
#[derive(Default)]
struct PathHash(u64);

impl Hasher for PathHash {
  fn finish(&self) -> u64 {
    self.0
  }
  fn write(&mut self, b: &[u8]) {
    self.0 ^= xxhash_rust::xxh3::xxh3_64(b);
  }
  /// `str`'s terminator: the bytes alone identify the path.
  fn write_u8(&mut self, _: u8) {}
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
