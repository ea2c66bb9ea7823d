//! A checksum run: the parallel walk of a folder (the shared walker,
//! `fs::walk`) and every file hashed with several algorithms in one read.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;

use super::algo::{Algo, Multi};
use crate::error::Error;
use crate::fs::util;
use crate::fs::walk::{self, Dir, WalkError};
use crate::progress::{Phase, Progress};

/// One walked entry.
#[derive(Debug, Clone)]
pub struct Found {
  pub rel: Box<str>,
  pub size: u64,
  pub mtime_ns: i64,
  pub ctime_ns: i64,
  pub ino: u64,
  /// A symlink's target (recorded, never followed).
  pub link: Option<Box<str>>,
}

/// What the checksum walk gathers on one pool thread.
struct Gather<'a> {
  found: Vec<Found>,
  errors: Vec<(String, String)>,
  progress: &'a Progress,
}

impl walk::Visitor for Gather<'_> {
  type Ctx = ();

  fn entry(&mut self, dir: &Dir<'_, ()>, e: &walk::Entry<'_>) -> Option<()> {
    // Reports hold UTF-8 paths that `sha256sum -c` and the original checker can open.
    if e.name().to_str().is_none() {
      let lossy = e.name().to_string_lossy();
      let rel = if dir.rel.is_empty() { lossy.into_owned() } else { format!("{}/{lossy}", dir.rel) };
      self.errors.push((rel, "the name is not valid UTF-8; skipped".into()));
      return None;
    }
    if e.is_dir() {
      return Some(());
    }
    let ft = e.file_type();
    if !(ft.is_file() || ft.is_symlink()) {
      return None;
    }
    let md = match e.metadata() {
      Ok(m) => m,
      Err(err) => {
        walk::Visitor::error(self, err);
        return None;
      }
    };
    let link = if ft.is_symlink() {
      crate::fs::longpath::with(&e.path(), |p| fs::read_link(p)).ok().map(|t| t.to_string_lossy().into())
    } else {
      None
    };
    self.progress.files_scanned.fetch_add(1, Relaxed);
    self.progress.bytes_scanned.fetch_add(if link.is_some() { 0 } else { md.len() }, Relaxed);
    // Every name on the way is UTF-8 (checked on the way down), so the path
    // is the one on disk; only a real U+10FF80.. character was escaped.
    let rel: Box<str> = if crate::fs::names::has_escapes(e.rel()) {
      String::from_utf8_lossy(&crate::fs::names::decode_bytes(e.rel())).into()
    } else {
      e.rel().into()
    };
    self.found.push(Found {
      rel,
      size: md.len(),
      mtime_ns: util::mtime_ns(&md),
      ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
      ino: md.ino(),
      link,
    });
    None
  }

  fn error(&mut self, err: WalkError) {
    let rel = if err.rel.is_empty() { ".".to_string() } else { err.rel };
    self.errors.push((rel, err.err.to_string()));
  }
}

/// Walks `root` in parallel (the shared walker, on the current rayon
/// pool): files and symlinks (relative paths), and the errors of what
/// could not be read, each with its path (`.` for the root).
pub fn walk(root: &Path, progress: &Progress) -> (Vec<Found>, Vec<(String, String)>) {
  let parts = walk::walk(root, (), || Gather { found: Vec::new(), errors: Vec::new(), progress });
  let mut found = Vec::with_capacity(parts.iter().map(|p| p.found.len()).sum());
  let mut errors = Vec::new();
  for p in parts {
    found.extend(p.found);
    errors.extend(p.errors);
  }
  (found, errors)
}

/// Hashes one file with every algorithm in one read; fails if the file
/// changed while it was read. Opened through a directory handle when the
/// path is longer than `PATH_MAX` (the walk reaches such files).
pub fn hash_file(path: &Path, algos: &[Algo], progress: &Progress) -> io::Result<(Box<[u8]>, fs::Metadata)> {
  let mut f = crate::fs::longpath::with(path, |p| OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(p))?;
  let before = f.metadata()?;
  let mut h = Multi::new(algos);
  util::with_buf(|buf| -> io::Result<()> {
    loop {
      let n = match f.read(buf) {
        Ok(0) => break,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
        Err(e) => return Err(e),
      };
      h.update(&buf[..n]);
      progress.bytes_done.fetch_add(n as u64, Relaxed);
    }
    Ok(())
  })?;
  let after = f.metadata()?;
  if after.len() != before.len() || util::mtime_ns(&after) != util::mtime_ns(&before) {
    return Err(io::Error::other("the file changed while it was read"));
  }
  Ok((h.finish_raw(), before))
}

/// Digests of symlinks: of the target text (as `sha256sum` of the link
/// would not; recorded so a changed target is seen).
fn hash_bytes(b: &[u8], algos: &[Algo]) -> Box<[u8]> {
  let mut h = Multi::new(algos);
  h.update(b);
  h.finish_raw()
}

/// One hashed file of a report: its digests as raw bytes, concatenated in
/// the order of the run's algorithms (kept small: a million of these are
/// held until the report is written).
#[derive(Debug, Clone)]
pub struct Sum {
  pub f: Found,
  pub digest: Box<[u8]>,
}

impl Sum {
  /// Hex of the digest of the `i`-th algorithm.
  pub fn hex(&self, algos: &[Algo], i: usize) -> String {
    let start: usize = algos[..i].iter().map(|a| a.hex_len() / 2).sum();
    hex::encode(&self.digest[start..start + algos[i].hex_len() / 2])
  }
}

/// The result of a checksum run, before it is written.
pub struct Run {
  pub algos: Vec<Algo>,
  pub root: PathBuf,
  pub sums: Vec<Sum>,
  pub errors: Vec<(String, String)>,
  pub work_time: f64,
}

/// Walks and hashes `root`. Files are hashed largest first (the long ones
/// start early, so the threads finish together); with one thread in inode
/// order, which on most file systems follows the on-disk layout (fewer
/// seeks on spinning disks).
pub fn run(root: &Path, algos: &[Algo], threads: usize, progress: &Progress) -> Result<Run, Error> {
  let started = Instant::now();
  let md = fs::metadata(root).map_err(|e| Error::io(root, "cannot read", &e))?;
  if !md.is_dir() {
    return Err(Error::config(format!("{} is not a folder", root.display())));
  }
  let pool = crate::backup::engine::build_pool(threads)?;
  progress.set_phase(Phase::Scan);
  let (mut found, mut errors) = pool.install(|| walk(root, progress));
  if threads <= 1 {
    found.sort_by_key(|f| f.ino);
  } else {
    found.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.rel.cmp(&b.rel)));
  }
  progress.set_phase(Phase::Apply);
  progress.ops_total.store(found.len() as u64, Relaxed);
  progress.bytes_total.store(found.iter().filter(|f| f.link.is_none()).map(|f| f.size).sum(), Relaxed);
  let failed = Mutex::new(Vec::new());
  let mut sums: Vec<Sum> = pool.install(|| {
    found
      .into_par_iter()
      .map(|f| {
        let digest = match &f.link {
          Some(t) => hash_bytes(t.as_bytes(), algos),
          None => match hash_file(&root.join(&*f.rel), algos, progress) {
            Ok((d, _)) => d,
            Err(e) => {
              failed.lock().unwrap().push((f.rel.to_string(), e.to_string()));
              Box::default()
            }
          },
        };
        progress.ops_done.fetch_add(1, Relaxed);
        Sum { f, digest }
      })
      .collect()
  });
  if progress.is_aborted() {
    return Err(Error::aborted());
  }
  sums.retain(|s| !s.digest.is_empty());
  errors.extend(failed.into_inner().unwrap());
  if threads <= 1 {
    sums.sort_by(|a, b| b.f.size.cmp(&a.f.size).then_with(|| a.f.rel.cmp(&b.f.rel)));
  }
  errors.sort();
  Ok(Run { algos: algos.to_vec(), root: root.to_path_buf(), sums, errors, work_time: started.elapsed().as_secs_f64() })
}
