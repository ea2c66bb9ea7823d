//! Refusals that keep a run from removing what it should not: a backup
//! folder belongs to one source (an unmounted disk or another profile's
//! `src` is not that source), and a run that would remove all of the mirror,
//! or more than a limit, stops before it changes anything.
//!
//! Both are checked before the journal is written, so a refused run writes
//! nothing (a dry run reports what the real run would refuse).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fs::util;
use crate::layout::Layout;

/// What the caller allows beyond the default refusals.
#[derive(Debug, Clone, Default)]
pub struct Safety {
  /// Take `src` as the source of this backup even if it records another one.
  pub adopt_source: bool,
  /// Allow any number of removals, even all of the mirror.
  pub allow_mass_delete: bool,
  /// The most removals a run may make; `None` = the default rule (more
  /// than half of a mirror of 100 files or more is refused).
  pub max_delete: Option<DeleteLimit>,
}

/// A limit on removals per run: a count of files or a share of the mirror.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeleteLimit {
  Count(u64),
  Percent(f64),
}

impl DeleteLimit {
  /// Parses `"N"` (a count) or `"N%"` (0–100, a share of the mirror).
  pub fn parse(s: &str) -> Result<Self, Error> {
    let bad = || Error::config(format!("max_delete: expected a whole number of files or a percentage such as \"50%\", got {s:?}"));
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
      let v: f64 = p.trim().parse().map_err(|_| bad())?;
      if !(0.0..=100.0).contains(&v) {
        return Err(bad());
      }
      return Ok(DeleteLimit::Percent(v));
    }
    t.parse().map(DeleteLimit::Count).map_err(|_| bad())
  }
}

/// Mirrors at least this big get the default limit (more than half refused).
pub const DEFAULT_LIMIT_MIN_FILES: u64 = 100;

/// Why a run that removes `removals` of the `mirror` files it had is
/// refused, or `None` if it may go on.
pub fn mass_delete(removals: u64, mirror: u64, s: &Safety) -> Option<String> {
  if s.allow_mass_delete || removals == 0 {
    return None;
  }
  let how = "nothing was changed. If the source is right (check that its disk is mounted), run again with \
             --allow-mass-delete (library: allowMassDelete), or raise the limit with --max-delete N or \"max_delete\" in the config";
  if removals >= mirror {
    let n = if mirror == 1 { "1 file".to_string() } else { format!("{mirror} files") };
    return Some(format!("this run would remove every file of the mirror ({n}; the source has none of them any more); {how}"));
  }
  let over = match s.max_delete {
    Some(DeleteLimit::Count(n)) => (removals > n).then(|| format!("the limit max_delete = {n}")),
    Some(DeleteLimit::Percent(p)) => (removals as f64 > mirror as f64 * p / 100.0).then(|| format!("the limit max_delete = \"{p}%\"")),
    None => (mirror >= DEFAULT_LIMIT_MIN_FILES && removals * 2 > mirror)
      .then(|| format!("the default limit (half of a mirror of {DEFAULT_LIMIT_MIN_FILES} files or more)")),
  };
  over.map(|limit| format!("this run would remove {removals} of the {mirror} files of the mirror, more than {limit}; {how}"))
}

/// What identifies a source folder: its real path and its file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceId {
  pub format: String,
  /// The canonical absolute path of `src`.
  pub path: String,
  /// `statfs` `f_type` (the file-system type).
  pub fs_type: i64,
  /// `statfs` `f_fsid`, hex (from the UUID on ext4/btrfs; from the device
  /// number on FAT/exFAT/XFS).
  pub fsid: String,
  /// `st_dev` and `st_ino` of `src`.
  pub dev: u64,
  pub ino: u64,
  /// `statfs` `f_blocks` and `f_bsize`: the size of the file system.
  pub blocks: u64,
  pub bsize: i64,
}

impl SourceId {
  /// Reads the identity of `src` (which exists: the scan checks it).
  pub fn of(src: &Path) -> Result<Self, Error> {
    let real = fs::canonicalize(src).map_err(|e| Error::io(src, "cannot read source", &e))?;
    let md = fs::metadata(&real).map_err(|e| Error::io(src, "cannot read source", &e))?;
    let c = CString::new(real.as_os_str().as_bytes()).map_err(|_| Error::config("src contains a NUL byte"))?;
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `s` a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
      return Err(Error::io(src, "cannot read the file system of", &io::Error::last_os_error()));
    }
    // `fsid_t` is two ints whose fields are private in libc; read them as bytes.
    // SAFETY: `fsid_t` is plain old data of 8 bytes.
    let raw: [u8; 8] = unsafe { std::mem::transmute_copy(&s.f_fsid) };
    Ok(Self {
      format: "axiomatic-source".into(),
      path: real.to_string_lossy().into_owned(),
      fs_type: s.f_type as i64,
      fsid: hex::encode(raw),
      dev: md.dev(),
      ino: md.ino(),
      blocks: s.f_blocks as u64,
      bsize: s.f_bsize as i64,
    })
  }

  /// The same source: the same path on the same file system. The file
  /// system is the same when its type matches and its id does, or its
  /// device and the folder's inode do, or (ids that follow the device
  /// number, which changes when a disk is plugged in again) its size does.
  pub fn same_as(&self, rec: &SourceId) -> Result<(), String> {
    if self.path != rec.path {
      return Err(format!("it was made from {}, not from {}", rec.path, self.path));
    }
    let same_fs = self.fs_type == rec.fs_type
      && ((self.fsid == rec.fsid && self.fsid != "0000000000000000")
        || (self.dev == rec.dev && self.ino == rec.ino)
        || (self.blocks == rec.blocks && self.bsize == rec.bsize));
    if !same_fs {
      return Err(format!(
        "it was made from {} on another file system than the one there now (is the disk not mounted, or a different one?)",
        rec.path
      ));
    }
    Ok(())
  }
}

/// The outcome of the source check.
pub struct SourceCheck {
  pub id: SourceId,
  /// The record is missing or outdated and is written before the first change.
  pub write: bool,
  /// Why the run is refused (a real run fails with it, a dry run reports it).
  pub refused: Option<String>,
}

/// Compares `src` with the source recorded in the backup folder. No record
/// (a new backup, or one made before records existed) adopts `src`.
pub fn check_source(l: &Layout, src: &Path, adopt: bool) -> Result<SourceCheck, Error> {
  let id = SourceId::of(src)?;
  let rec_path = l.source.as_path();
  let rec: Option<SourceId> = match fs::read(rec_path) {
    Ok(b) => Some(
      serde_json::from_slice(&b)
        .map_err(|e| Error::corrupt(rec_path, format!("unreadable source record ({e}); remove it to adopt the configured src")))?,
    ),
    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
    Err(e) => return Err(Error::io(rec_path, "cannot read", &e)),
  };
  let Some(rec) = rec else { return Ok(SourceCheck { id, write: true, refused: None }) };
  match id.same_as(&rec) {
    Ok(()) => Ok(SourceCheck { write: id != rec, id, refused: None }),
    Err(_) if adopt => Ok(SourceCheck { id, write: true, refused: None }),
    Err(why) => Ok(SourceCheck {
      refused: Some(format!(
        "the backup folder {} belongs to another source: {why}; nothing was changed. If {} is meant to be backed up \
         there, run again with --adopt-source (library: adoptSource); with another source, the files of the first are \
         removed from the mirror (tracked ones kept in an increment)",
        l.dst.display(),
        id.path
      )),
      id,
      write: false,
    }),
  }
}

/// Writes the source record (atomically).
pub fn write_source(l: &Layout, id: &SourceId) -> Result<(), Error> {
  let mut text = serde_json::to_vec_pretty(id).expect("a source record serializes");
  text.push(b'\n');
  util::write_atomic(&l.source, |f| io::Write::write_all(f, &text))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn limits() {
    let d = Safety::default();
    assert!(mass_delete(3, 3, &d).is_some());
    assert!(mass_delete(2, 3, &d).is_none());
    assert!(mass_delete(50, 100, &d).is_none());
    assert!(mass_delete(51, 100, &d).is_some());
    assert!(mass_delete(60, 99, &d).is_none());
    assert!(mass_delete(0, 0, &d).is_none());
    let c = Safety { max_delete: Some(DeleteLimit::Count(5)), ..Default::default() };
    assert!(mass_delete(6, 1000, &c).is_some());
    assert!(mass_delete(5, 1000, &c).is_none());
    let p = Safety { max_delete: Some(DeleteLimit::parse("10%").unwrap()), ..Default::default() };
    assert!(mass_delete(2, 10, &p).is_some());
    assert!(mass_delete(1, 10, &p).is_none());
    assert!(mass_delete(10, 10, &Safety { allow_mass_delete: true, ..Default::default() }).is_none());
    assert!(DeleteLimit::parse("101%").is_err());
    assert!(DeleteLimit::parse("-1").is_err());
    assert!(DeleteLimit::parse("half").is_err());
  }
}
