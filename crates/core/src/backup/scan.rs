//! Parallel walk of `src` with the compiled rules.
//!
//! Built on the shared walker (`fs::walk`): each directory is read once;
//! subdirectories are walked in parallel on the rayon pool of the caller. A
//! directory is entered only when `Rules::descend` says something below it
//! can still be selected, so unselected subtrees cost one `readdir` entry,
//! not a walk. Entries are `lstat`ed only when selected. Symlinks are never
//! followed. Results are gathered per thread and merged, then sorted by path
//! so the plan can merge-join them with the mirror state.
//!
//! A folder or file that cannot be read for any reason other than "it is
//! gone" is listed in `ScanResult::unreadable`: its absence from the scan is
//! doubt, not a deletion, and the plan keeps its backup as it was.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backup::rules::{DirCtx, Role, Rules};
use crate::error::{Error, Warning};
use crate::fs::walk::{self, Dir, Visitor, WalkError};
use crate::fs::xattrs::{digest, read_path, Policy, ScanNotes};
use crate::progress::Progress;

/// The kind of a selected entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
  File,
  Symlink,
}

/// One selected file (or symlink) of `src`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
  /// Path relative to `src`, `/`-separated.
  pub rel: Box<str>,
  pub kind: Kind,
  pub size: u64,
  /// Modification time in nanoseconds since the epoch.
  pub mtime_ns: i64,
  /// Permission bits (`st_mode & 0o7777`).
  pub mode: u32,
  pub uid: u32,
  pub gid: u32,
  pub role: Role,
  /// Device and inode, and the link count (saturated): files sharing an
  /// inode are one hard-link group.
  pub dev: u64,
  pub ino: u64,
  pub nlink: u32,
  /// For a hard-link group's later members: the first path of the group
  /// (in path order), which the mirror copy is linked to.
  pub link: Option<Box<str>>,
  /// Digest of the xattrs (ACLs included) a run copies; `None` = none.
  pub xattr: Option<Box<[u8; 32]>>,
}

impl Entry {
  pub fn from_metadata(rel: impl Into<Box<str>>, md: &fs::Metadata, role: Role) -> Option<Self> {
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
      Kind::Symlink
    } else if ft.is_file() {
      Kind::File
    } else {
      return None;
    };
    Some(Self {
      rel: rel.into(),
      kind,
      size: md.len(),
      mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
      mode: md.mode() & 0o7777,
      uid: md.uid(),
      gid: md.gid(),
      role,
      dev: md.dev(),
      ino: md.ino(),
      nlink: md.nlink().min(u64::from(u32::MAX)) as u32,
      link: None,
      xattr: None,
    })
  }

  /// Same file as scanned (kind, size, mtime, mode, owner, inode)? The
  /// link and xattr fields, which a scan adds later, are not compared.
  pub fn same_stat(&self, o: &Entry) -> bool {
    (self.kind, self.size, self.mtime_ns, self.mode, self.uid, self.gid, self.dev, self.ino)
      == (o.kind, o.size, o.mtime_ns, o.mode, o.uid, o.gid, o.dev, o.ino)
  }
}

/// Marks hard-link groups among the sorted `entries`: regular files with
/// more than one link that share (device, inode). Every member but the
/// first (in path order) gets `link` = the first one's path. Returns the
/// number of such members. Files linked only to unselected paths form no
/// group.
pub fn link_groups(entries: &mut [Entry]) -> u64 {
  let mut first: std::collections::HashMap<(u64, u64), usize> = std::collections::HashMap::new();
  let mut marks: Vec<(usize, usize)> = Vec::new();
  for (i, e) in entries.iter().enumerate() {
    if e.kind == Kind::File && e.nlink > 1 {
      match first.entry((e.dev, e.ino)) {
        std::collections::hash_map::Entry::Occupied(o) => marks.push((i, *o.get())),
        std::collections::hash_map::Entry::Vacant(v) => {
          v.insert(i);
        }
      }
    }
  }
  for &(i, lead) in &marks {
    entries[i].link = Some(entries[lead].rel.clone());
  }
  marks.len() as u64
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanResult {
  /// Selected entries, sorted by `rel`.
  pub entries: Vec<Entry>,
  pub warnings: Vec<Warning>,
  /// Selected sockets, FIFOs and devices, skipped.
  pub special_skipped: u64,
  /// Directories read.
  pub dirs_read: u64,
  /// Folders (their whole subtree) and files that could not be read for a
  /// reason other than having vanished; sorted. Their previous backup stays.
  pub unreadable: Vec<Box<str>>,
}

impl ScanResult {
  fn merge(mut self, other: ScanResult) -> ScanResult {
    if self.entries.len() < other.entries.len() {
      return other.merge(self);
    }
    self.entries.extend(other.entries);
    self.warnings.extend(other.warnings);
    self.special_skipped += other.special_skipped;
    self.dirs_read += other.dirs_read;
    self.unreadable.extend(other.unreadable);
    self
  }

  /// Records a read error for `rel`. An error other than "not found" makes
  /// `rel` (and everything below it) unreadable: kept, not deleted.
  fn failed(&mut self, rel: String, what: &str, err: &io::Error) {
    let mut w = Warning::from_io(rel.clone(), what, err);
    if err.kind() != io::ErrorKind::NotFound {
      w.message.push_str("; its earlier backup is kept as it was (nothing is recorded as deleted)");
      self.unreadable.push(rel.into());
    }
    self.warnings.push(w);
  }
}

/// Whether `rel` is an unreadable path or lies below one (`unreadable` as
/// built by the scan). Checks `rel` and each of its ancestors: O(depth).
pub fn is_unreadable(unreadable: &std::collections::HashSet<&str>, rel: &str) -> bool {
  if unreadable.is_empty() {
    return false;
  }
  let mut r = rel;
  loop {
    if unreadable.contains(r) {
      return true;
    }
    match r.rfind('/') {
      Some(i) => r = &r[..i],
      // A read error on `src` itself (rel "") covers everything.
      None => return unreadable.contains(""),
    }
  }
}

/// Early stops, for probes that only need to know whether something exists.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
  /// Stop after this many selected files.
  pub files: Option<u64>,
  /// Stop after this many directories read.
  pub dirs: Option<u64>,
}

/// The scan's visitor: one per pool thread, each with its own result.
struct Scanner<'a> {
  rules: &'a Rules,
  progress: &'a Progress,
  limits: Limits,
  out: ScanResult,
}

impl Visitor for Scanner<'_> {
  type Ctx = DirCtx;

  fn enter(&mut self, _dir: &Dir<'_, DirCtx>) -> bool {
    self.out.dirs_read += 1;
    !(self.progress.is_aborted()
      || self.limits.files.is_some_and(|l| self.progress.files_scanned.load(Ordering::Relaxed) >= l)
      || self.limits.dirs.is_some_and(|l| self.progress.dirs_read.fetch_add(1, Ordering::Relaxed) >= l))
  }

  fn entry(&mut self, dir: &Dir<'_, DirCtx>, e: &walk::Entry<'_>) -> Option<DirCtx> {
    let child = e.rel();
    let ft = e.file_type();
    if ft.is_dir() {
      let cctx = self.rules.enter_dir(*dir.ctx, child);
      return self.rules.descend(cctx, child).then_some(cctx);
    }
    let role = self.rules.classify(*dir.ctx, child)?;
    if !(ft.is_file() || ft.is_symlink()) {
      self.out.special_skipped += 1;
      return None;
    }
    match e.metadata() {
      Ok(md) => match Entry::from_metadata(child, &md, role) {
        Some(en) => {
          self.progress.files_scanned.fetch_add(1, Ordering::Relaxed);
          self.progress.bytes_scanned.fetch_add(en.size, Ordering::Relaxed);
          self.out.entries.push(en)
        }
        None => self.out.special_skipped += 1,
      },
      Err(err) => self.error(err),
    }
    None
  }

  fn error(&mut self, err: WalkError) {
    let what = err.what();
    self.out.failed(err.rel, what, &err.err);
  }
}

/// Walks `src` and returns the selected entries sorted by path.
///
/// Runs on the current rayon pool. `limits` stop the walk early (for
/// probes). Fails only if `src` itself cannot be read; everything below is
/// reported as warnings.
pub fn scan(src: &Path, rules: &Rules, progress: &Progress, limits: Limits) -> Result<ScanResult, Error> {
  let md = fs::metadata(src).map_err(|e| Error::io(src, "cannot read source", &e))?;
  if !md.is_dir() {
    return Err(Error::config(format!("src {} is not a directory", src.display())));
  }
  fs::read_dir(src).map_err(|e| Error::io(src, "cannot read source", &e))?;
  let parts = walk::walk(src, DirCtx::default(), || Scanner { rules, progress, limits, out: ScanResult::default() });
  let mut res = parts.into_iter().map(|s| s.out).reduce(ScanResult::merge).unwrap_or_default();
  if progress.is_aborted() {
    return Err(Error::aborted());
  }
  res.entries.par_sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
  res.warnings.sort_by(|a, b| a.path.cmp(&b.path));
  res.unreadable.sort_unstable();
  Ok(res)
}

/// Reads the xattrs of every selected entry (in parallel, on the caller's
/// rayon pool) and stores their digest in `Entry::xattr`, so the plan can
/// compare it with the mirror state. Entries without xattrs cost one
/// `llistxattr`.
pub fn digest_entries(src: &Path, entries: &mut [Entry], policy: &Policy) -> ScanNotes {
  entries
    .par_iter_mut()
    .fold(ScanNotes::default, |mut notes, e| {
      let p = src.join(crate::fs::names::to_path(&e.rel));
      match read_path(&p, policy) {
        Ok(f) => {
          if f.target_cannot > 0 {
            notes = notes.merge(ScanNotes { target_cannot: (1, Some(e.rel.clone())), ..Default::default() });
          }
          if f.need_root > 0 {
            notes = notes.merge(ScanNotes { need_root: (1, Some(e.rel.clone())), ..Default::default() });
          }
          e.xattr = digest(&f.attrs).map(Box::new);
        }
        // Gone or unreadable: the copy reports it.
        Err(err) if err.kind() == io::ErrorKind::NotFound || err.kind() == io::ErrorKind::PermissionDenied => {}
        Err(err) => notes.warnings.push(Warning::from_io(&*e.rel, "cannot read the extended attributes of", &err)),
      }
      notes
    })
    .reduce(ScanNotes::default, ScanNotes::merge)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn unreadable_covers_the_path_and_everything_below() {
    let set: std::collections::HashSet<&str> = ["a", "b/c.txt"].into_iter().collect();
    assert!(is_unreadable(&set, "a"));
    assert!(is_unreadable(&set, "a/x/y.txt"));
    assert!(!is_unreadable(&set, "a-b/x.txt"));
    assert!(!is_unreadable(&set, "ab"));
    assert!(is_unreadable(&set, "b/c.txt"));
    assert!(!is_unreadable(&set, "b/d.txt"));
    let root: std::collections::HashSet<&str> = [""].into_iter().collect();
    assert!(is_unreadable(&root, "any/thing"));
    assert!(!is_unreadable(&Default::default(), "a"));
  }
}
