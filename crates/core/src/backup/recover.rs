//! Finishing an interrupted run from its journal
//! (`.axiomatic/journal.jsonl`). Each journaled operation is judged done or
//! not from the files themselves (the increment's `track/`/`deleted/`
//! links, the mirror entry's size, mtime and mode), never from what the
//! killed run believed; the done ones are committed as a `recovered`
//! increment and into the state, the rest is left to the next plan. Safe
//! to run again at any point: every step is idempotent.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::backup::apply::remove_journal;
use crate::backup::meta::{self, CatalogEntry, IncrementMeta, JournalHeader, JournalOp, OpKind};
use crate::backup::scan::Kind;
use crate::backup::state::{self, Fields, StateEntry};
use crate::error::Error;
use crate::fs::longpath;
use crate::fs::names;
use crate::fs::util::{self, fault_point};
use crate::fs::xattrs;
use crate::layout::{self, Layout};

/// Finishes a run that was interrupted, from its journal. Returns the name
/// of the increment it committed, if any. Safe to run again at any point.
pub fn recover(l: &Layout) -> Result<Option<String>, Error> {
  util::clean_atomic_leftovers(&l.meta);
  let Some((header, ops)) = meta::read_journal(&l.journal)? else { return Ok(None) };
  let mut state: BTreeMap<String, StateEntry> = state::read(&l.state)?.into_iter().map(|e| (e.rel().to_string(), e)).collect();
  let inc = Unfinished::find(l, &header)?;
  let done = done_ops(l, &ops, &inc);
  let catalog = replay(l, &ops, &done, &mut state);
  util::sync_fs(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
  let committed = inc.write_meta(&header, &catalog, ops.len(), done.len())?;
  state::write(&l.state, state.len() as u64, state.values().map(Cow::Borrowed))?;
  fault_point();
  if let Some(name) = &committed {
    inc.move_into_place(l, name)?;
  }
  remove_journal(l)?;
  Ok(committed)
}

/// The increment the interrupted run was building, where it got to.
struct Unfinished {
  name: Option<String>,
  /// Under `.axiomatic/incomplete/` (not yet committed).
  pending: Option<PathBuf>,
  /// Where it is now: under `incomplete/`, or already renamed into `dst`.
  dir: Option<PathBuf>,
  /// Its metadata, if the run wrote it before it was killed.
  meta: Option<IncrementMeta>,
}

impl Unfinished {
  fn find(l: &Layout, header: &JournalHeader) -> Result<Self, Error> {
    let pending = header.increment.as_ref().map(|n| l.incomplete_increment(n));
    let fin = header.increment.as_ref().map(|n| l.increment(n));
    let dir = match (&pending, &fin) {
      (Some(p), _) if p.is_dir() => Some(p.clone()),
      (_, Some(f)) if f.is_dir() => Some(f.clone()),
      _ => None,
    };
    if let Some(d) = &dir {
      util::clean_atomic_leftovers(d);
    }
    let meta = match (&header.increment, &dir) {
      (Some(n), Some(d)) if d.join(layout::meta_file_name(n)).is_file() => Some(meta::read_meta(&d.join(layout::meta_file_name(n)))?),
      _ => None,
    };
    Ok(Self { name: header.increment.clone(), pending, dir, meta })
  }

  /// Writes the increment's metadata from the `catalog` of what was done
  /// (unless the run wrote it already), or removes an increment nothing
  /// landed in. Returns the increment's name when it has its metadata.
  fn write_meta(
    &self,
    header: &JournalHeader,
    catalog: &BTreeMap<String, CatalogEntry>,
    planned: usize,
    done: usize,
  ) -> Result<Option<String>, Error> {
    let (Some(name), Some(dir)) = (&self.name, &self.dir) else { return Ok(None) };
    let meta_path = dir.join(layout::meta_file_name(name));
    if self.meta.is_none() {
      if catalog.is_empty() {
        meta::remove_tree(dir)?;
      } else {
        let summary = meta::summarize(catalog);
        let head = meta::MetaHead {
          version: meta::METADATA_VERSION,
          backup_name: name.clone(),
          timestamp: header.started.clone(),
          backup_timestamp: header.started.clone(),
          backup_type: "incremental",
          origin: "recovered".into(),
          statistics: meta::with_original_statistics(
            serde_json::json!({ "recovered_from_interrupted_run": true, "planned_ops": planned, "done_ops": done }),
            &summary,
          ),
          summary,
        };
        meta::write_meta(&meta_path, &head, catalog.iter().map(|(p, e)| (p.as_str(), e.clone())))?;
        fault_point();
      }
    }
    Ok(meta_path.is_file().then(|| name.clone()))
  }

  /// Renames the committed increment from `incomplete/` into `dst` (if the
  /// run had not done so yet).
  fn move_into_place(&self, l: &Layout, name: &str) -> Result<(), Error> {
    if let Some(p) = self.pending.as_ref().filter(|p| p.is_dir()) {
      let fin = l.increment(name);
      fs::rename(p, &fin).map_err(|e| Error::io(&fin, "cannot commit the increment as", &e))?;
      util::sync_dir(&l.dst).map_err(|e| Error::io(&l.dst, "cannot flush", &e))?;
      fault_point();
    }
    Ok(())
  }
}

/// A journaled op found done.
struct Done {
  /// Its index in the journal.
  k: usize,
  sha: Option<[u8; 32]>,
  /// Stored in the increment as a copy (not a hardlink of the mirror file).
  copied: bool,
  /// The version stored when it is not the journaled one: (size, mtime_ns, mode).
  other: Option<(u64, i64, u32)>,
  /// The file that was written.
  file: Option<PathBuf>,
}

/// Which journaled ops are done, judged from the files (in parallel).
/// Leftover temp files of the mirror are removed on the way; a delete
/// whose `deleted/` link exists has its mirror copy unlinked.
fn done_ops(l: &Layout, ops: &[JournalOp], inc: &Unfinished) -> Vec<Done> {
  ops.par_iter().enumerate().filter_map(|(k, op)| done_op(l, k, op, inc)).collect()
}

fn done_op(l: &Layout, k: usize, op: &JournalOp, inc: &Unfinished) -> Option<Done> {
  let mirror = l.mirror_path(&op.rel);
  let _ = longpath::with(&util::temp_path(&mirror), |p| fs::remove_file(p));
  let mmd = longpath::with(&mirror, |p| fs::symlink_metadata(p)).ok();
  let none = Done { k, sha: None, copied: false, other: None, file: None };
  match (op.op, op.tracked) {
    (OpKind::Copy | OpKind::Link, true) => {
      let f = inc.dir.as_ref()?.join("track").join(names::to_path(&op.rel));
      let md = longpath::with(&f, |p| fs::symlink_metadata(p)).ok()?;
      // Stored only once the mirror holds it too: the same inode (the
      // usual hardlink), or a copy of it (a target without hard links,
      // where the copy's mtime is set last). Else the file is what a
      // killed run left half done (a new file is written in `track/`
      // first, then linked into the mirror): not yet committed, it goes.
      // Once the run wrote the increment's metadata, its catalog says.
      let linked = mmd.as_ref().is_some_and(|m| util::same_file(m, &md));
      let copied = mmd.as_ref().is_some_and(|m| m.len() == md.len() && util::mtime_ns(m) == util::mtime_ns(&md));
      if !linked && !copied && inc.meta.is_none() {
        let _ = longpath::with(&f, |p| fs::remove_file(p));
        return None;
      }
      // A file that changed before or while it was copied is stored as
      // read, not as journaled: kept, with what the file itself says,
      // and marked inconsistent (this run cannot know whether it was).
      let other = (md.len() != op.size || util::mtime_ns(&md) != op.mtime_ns)
        .then(|| (md.len(), util::mtime_ns(&md), std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777));
      let known = inc.meta.as_ref().and_then(|m| m.file_catalog.get(&op.rel)).and_then(|c| c.sha256.clone());
      let sha = match known {
        Some(h) => {
          let mut b = [0u8; 32];
          hex::decode_to_slice(h, &mut b).ok()?;
          b
        }
        None => longpath::with(&f, util::sha256_of).ok()?,
      };
      Some(Done { sha: Some(sha), copied: !linked, other, file: Some(f), ..none })
    }
    (OpKind::Delete, _) => {
      let f = inc.dir.as_ref()?.join("deleted").join(names::to_path(&op.rel));
      let md = longpath::with(&f, |p| fs::symlink_metadata(p)).ok()?;
      if let Some(m) = &mmd {
        if util::same_file(m, &md) || util::mtime_ns(m) == op.mtime_ns && m.len() == op.size {
          let _ = longpath::with(&mirror, |p| fs::remove_file(p));
        }
      }
      Some(none)
    }
    (OpKind::Copy, false) => {
      let m = mmd?;
      let same = m.len() == op.size
        && util::mtime_ns(&m) == op.mtime_ns
        && (op.kind == Kind::Symlink || std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777 == op.mode);
      same.then_some(Done { file: Some(mirror), ..none })
    }
    (OpKind::Remove, _) => mmd.is_none().then_some(none),
    (OpKind::Link, false) => None,
  }
}

/// Puts the done ops into the state and returns the catalog of the
/// versions they stored or deleted.
fn replay(l: &Layout, ops: &[JournalOp], done: &[Done], state: &mut BTreeMap<String, StateEntry>) -> BTreeMap<String, CatalogEntry> {
  let mut catalog: BTreeMap<String, CatalogEntry> = BTreeMap::new();
  for d in done {
    let op = &ops[d.k];
    match op.op {
      OpKind::Copy | OpKind::Link => {
        let (entry, c) = stored(l, op, d);
        state.insert(op.rel.clone(), entry);
        if let Some(c) = c {
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
  catalog
}

/// The state entry of a done copy or link, and its catalog entry if tracked.
fn stored(l: &Layout, op: &JournalOp, d: &Done) -> (StateEntry, Option<CatalogEntry>) {
  let (size, mtime_ns, mode) = d.other.unwrap_or((op.size, op.mtime_ns, op.mode));
  // What the written file holds: its xattrs, and whether it is linked
  // to its group's first path (else the next run links it).
  let attrs = d.file.as_deref().map(xattrs::read_quiet).unwrap_or_default();
  let link = op.link.as_ref().filter(|lead| same_inode(&l.mirror_path(&op.rel), &l.mirror_path(lead)));
  let entry = StateEntry::new(Fields {
    rel: &op.rel,
    kind: op.kind,
    size,
    mtime_ns,
    mode,
    tracked: op.tracked,
    sha256: if op.tracked { d.sha } else { None },
    inconsistent: d.other.is_some(),
    link: link.map(String::as_str),
    xattr: xattrs::digest(&attrs),
    stamp: 0,
  });
  let catalog = op.tracked.then(|| {
    let what = op.change.unwrap_or(meta::Change::New).as_str();
    let mut c = meta::catalog_entry(size, mtime_ns, mode, op.kind, what, d.sha, d.copied);
    c.inconsistent = d.other.map(|_| true);
    c.link = link.cloned();
    c.xattrs = xattrs::to_catalog(&attrs);
    c
  });
  (entry, catalog)
}

fn same_inode(a: &Path, b: &Path) -> bool {
  matches!((fs::symlink_metadata(a), fs::symlink_metadata(b)), (Ok(a), Ok(b)) if util::same_file(&a, &b))
}
