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
use crate::backup::state::StateEntry;
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

/// What few scan entries have, boxed together so that the others (nearly
/// all) pay one null pointer instead of 24 bytes each: a run holds the scan
/// of a million files beside the mirror state, and this was 16 MB of it.
/// (A state entry keeps both in its one allocation, see `state`.)
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extra {
  /// For a hard-link group's later members: the first path of the group
  /// (in path order), which the mirror copy is linked to.
  pub link: Option<Box<str>>,
  /// Digest of the xattrs (ACLs included) the copy holds; `None` = none.
  pub xattr: Option<[u8; 32]>,
}

impl Extra {
  /// The box for `link` and `xattr`; `None` when both are.
  pub fn boxed(link: Option<Box<str>>, xattr: Option<[u8; 32]>) -> Option<Box<Extra>> {
    (link.is_some() || xattr.is_some()).then(|| Box::new(Extra { link, xattr }))
  }
}

impl Entry {
  /// A hard-link group's later member: the group's first path.
  pub fn link(&self) -> Option<&str> {
    self.extra.as_ref()?.link.as_deref()
  }
  /// The digest of the xattrs (ACLs included); `None` = none.
  pub fn xattr(&self) -> Option<&[u8; 32]> {
    self.extra.as_ref()?.xattr.as_ref()
  }
  pub fn set_link(&mut self, link: Option<Box<str>>) {
    let xattr = self.extra.take().and_then(|x| x.xattr);
    self.extra = Extra::boxed(link, xattr);
  }
  pub fn set_xattr(&mut self, xattr: Option<[u8; 32]>) {
    let link = self.extra.take().and_then(|x| x.link);
    self.extra = Extra::boxed(link, xattr);
  }
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
  pub nlink: u16,
  /// The hard-link group's first path and the xattr digest, when there is
  /// either (see [`Extra`]; read through [`Entry::link`], [`Entry::xattr`]).
  pub extra: Option<Box<Extra>>,
  /// The file's change stamp (see [`change_stamp`]) while it is known to
  /// have no xattrs at all; 0 = unknown. Kept in the mirror state, so a
  /// later run whose stamp is the same does not list the xattrs again.
  pub stamp: u64,
}

/// How recent a change (ctime) may be for its stamp to be trusted: the
/// kernel sets ctime from a clock that ticks every few milliseconds, so a
/// second change within the same tick as the one seen would keep the same
/// ctime (the "racy" case git's index knows). Files changed within this
/// window get no stamp and are listed again on the next run.
const RACY_NS: i64 = 2_000_000_000;

/// A stamp of the inode and its ctime: every xattr change (like every
/// write, chmod, chown, link or rename) sets ctime to the current time, and
/// nothing else can set it, so the same stamp means the same xattrs. `0`
/// when the change is too recent to tell (see [`RACY_NS`]).
pub fn change_stamp(md: &fs::Metadata) -> u64 {
  let ctime_ns = md.ctime().saturating_mul(1_000_000_000).saturating_add(md.ctime_nsec());
  let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
  if ctime_ns > now_ns - RACY_NS {
    return 0;
  }
  let mut b = [0u8; 24];
  b[..8].copy_from_slice(&md.dev().to_le_bytes());
  b[8..16].copy_from_slice(&md.ino().to_le_bytes());
  b[16..].copy_from_slice(&ctime_ns.to_le_bytes());
  // 53 bits: exact as a JSON number in any reader (JavaScript's included).
  (xxhash_rust::xxh3::xxh3_64(&b) & ((1 << 53) - 1)) | 1
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
      nlink: md.nlink().min(u64::from(u16::MAX)) as u16,
      extra: None,
      stamp: change_stamp(md),
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
  // (device, inode, index) of the candidates, sorted: a group is a run of
  // equal inodes, led by its lowest index (the first path). A sorted list
  // is a third of a hash map's memory, and most trees have no candidate.
  let mut cand: Vec<(u64, u64, usize)> =
    entries.iter().enumerate().filter(|(_, e)| e.kind == Kind::File && e.nlink > 1).map(|(i, e)| (e.dev, e.ino, i)).collect();
  cand.sort_unstable();
  let mut marks = 0;
  for g in cand.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
    let lead = entries[g[0].2].rel.clone();
    for &(_, _, i) in &g[1..] {
      entries[i].set_link(Some(lead.clone()));
      marks += 1;
    }
  }
  marks
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
    // Moved over in slices, each freed as it goes (the parts of a million
    // files are ~50 MB each: both whole at once were the scan's peak).
    self.entries.reserve_exact(other.entries.len());
    let mut rest = other.entries;
    while !rest.is_empty() {
      let k = rest.len().saturating_sub(1 << 15);
      self.entries.extend(rest.drain(k..));
      rest.shrink_to_fit();
    }
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
/// compare it with the mirror state. An entry the previous state (`old`,
/// sorted by path) recorded as having no xattrs under the same change
/// stamp is not read again (most files of a no-change run); any other
/// costs one `llistxattr`, and keeps its stamp only if it has none.
pub fn digest_entries(src: &Path, entries: &mut [Entry], old: &[StateEntry], policy: &Policy) -> ScanNotes {
  // Both are sorted by path: each chunk finds its start in `old` once and
  // then walks along (a binary search per entry cost more than the
  // listing it saves).
  entries
    .par_chunks_mut(4096)
    .fold(ScanNotes::default, |mut notes, chunk| {
      let mut j = old.partition_point(|o| o.rel() < &*chunk[0].rel);
      for e in chunk {
        while j < old.len() && old[j].rel() < &*e.rel {
          j += 1;
        }
        if e.stamp != 0 && j < old.len() && old[j].rel() == &*e.rel && old[j].stamp == e.stamp && old[j].xattr().is_none() {
          continue;
        }
        digest_entry(src, e, policy, &mut notes);
      }
      notes
    })
    .reduce(ScanNotes::default, ScanNotes::merge)
}

/// Lists one entry's xattrs: their digest, the notes for the run's
/// warnings, and its stamp kept only if it has none.
fn digest_entry(src: &Path, e: &mut Entry, policy: &Policy, notes: &mut ScanNotes) {
  let p = src.join(crate::fs::names::to_path(&e.rel));
  match read_path(&p, policy) {
    Ok(f) => {
      if f.target_cannot > 0 {
        *notes = std::mem::take(notes).merge(ScanNotes { target_cannot: (1, Some(e.rel.clone())), ..Default::default() });
      }
      if f.need_root > 0 {
        *notes = std::mem::take(notes).merge(ScanNotes { need_root: (1, Some(e.rel.clone())), ..Default::default() });
      }
      if !f.attrs.is_empty() || f.target_cannot > 0 || f.need_root > 0 {
        e.stamp = 0;
      }
      e.set_xattr(digest(&f.attrs));
    }
    // Gone or unreadable: the copy reports it.
    Err(err) if err.kind() == io::ErrorKind::NotFound || err.kind() == io::ErrorKind::PermissionDenied => e.stamp = 0,
    Err(err) => {
      e.stamp = 0;
      notes.warnings.push(Warning::from_io(&*e.rel, "cannot read the extended attributes of", &err));
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  /// A file changed within the racy window has no stamp; an old one has
  /// a stable one that moves with its ctime (here: a chmod).
  #[test]
  fn change_stamp_is_zero_while_racy_and_follows_ctime() {
    let dir = std::env::temp_dir().join(format!("axb-stamp-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let f = dir.join("f");
    fs::write(&f, "x").unwrap();
    assert_eq!(change_stamp(&fs::symlink_metadata(&f).unwrap()), 0);
    fs::remove_dir_all(&dir).unwrap();
    // `/usr` has not changed in the last two seconds on any machine running tests.
    let usr = fs::symlink_metadata("/usr").unwrap();
    let s = change_stamp(&usr);
    assert_ne!(s, 0);
    assert!(s < 1 << 53);
    assert_eq!(s, change_stamp(&fs::symlink_metadata("/usr").unwrap()));
  }

  /// A million files are held twice during a run (scan and state): these
  /// sizes are what keeps a no-change run of 1M files under 300 MB.
  #[test]
  fn entries_stay_small() {
    assert!(std::mem::size_of::<Entry>() <= 80, "{}", std::mem::size_of::<Entry>());
    assert!(std::mem::size_of::<StateEntry>() <= 40, "{}", std::mem::size_of::<StateEntry>());
  }

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
