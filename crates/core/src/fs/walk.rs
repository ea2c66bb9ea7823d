//! The one directory walker every command uses: the engine scan, checksum
//! and verify, the catalog's disk usage, recreate, status and tree removal.
//!
//! Why one: each walk used to have its own recursion and its own idea of
//! what to do with an unreadable folder. Here every folder is read once
//! (`readdir`, with the entry's type from `d_type`, so a folder costs no
//! `lstat`), folders are read in parallel on the caller's rayon pool, and
//! every problem reaches the caller as data carrying its path
//! ([`WalkError`]), never as a panic or an early return.
//!
//! The shape follows ripgrep's `ignore::WalkParallel`: each pool thread
//! that takes part gets its own [`Visitor`] (built by the caller's
//! factory), so visitors gather their results without locks and the
//! caller merges them at the end. The visitor decides, per folder, whether
//! to read it at all ([`Visitor::enter`]: early stops) and, per entry, what
//! to keep and whether to descend into a sub-folder
//! ([`Visitor::entry`] returns the sub-folder's context, e.g. the scan's
//! rule state, or `None` to prune it).
//!
//! Names: each entry's relative path is `/`-separated and encoded with
//! [`crate::fs::names`] (a name that is not UTF-8 stays lossless); it is
//! built in one buffer per folder and only borrowed, so an entry the
//! visitor does not keep costs no allocation for its path. Depth: folders
//! are opened through [`crate::fs::longpath`], and an entry's metadata is
//! read relative to the open folder (`fstatat`), so any depth works.
//! Symlinks are never followed. The order of visits is not defined
//! (parallel): callers that need one sort what they gathered.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
  /// Opening or listing a folder.
  ReadDir,
  /// Reading an entry's type or metadata.
  Stat,
}

/// A problem with one path of a walk: handed to the visitor, never fatal.
#[derive(Debug)]
pub struct WalkError {
  /// The relative path (`""` for the root), encoded as the entries' are.
  pub rel: String,
  /// The full path.
  pub path: PathBuf,
  pub op: Op,
  pub err: io::Error,
}

impl WalkError {
  /// The path is gone (deleted while the walk ran).
  pub fn vanished(&self) -> bool {
    self.err.kind() == io::ErrorKind::NotFound
  }

  /// The words a warning uses for `op`.
  pub fn what(&self) -> &'static str {
    match self.op {
      Op::ReadDir => "cannot read directory",
      Op::Stat => "cannot stat",
    }
  }
}

impl fmt::Display for WalkError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{} {}: {}", self.what(), self.path.display(), self.err)
  }
}

impl std::error::Error for WalkError {
  fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
    Some(&self.err)
  }
}

/// A folder about to be read, or whose entries are being visited.
pub struct Dir<'a, C> {
  /// The full path.
  pub path: &'a Path,
  /// Relative to the root (`""` for the root itself).
  pub rel: &'a str,
  /// What the visitor returned when it chose to descend here.
  pub ctx: &'a C,
  /// 0 for the root.
  pub depth: usize,
}

/// One entry of a folder (never `.` or `..`).
pub struct Entry<'a> {
  de: &'a fs::DirEntry,
  name: &'a OsStr,
  rel: &'a str,
  ft: fs::FileType,
  dir: &'a Path,
}

impl Entry<'_> {
  /// The relative path, `/`-separated, names encoded by `fs::names`.
  pub fn rel(&self) -> &str {
    self.rel
  }

  /// The name as the folder holds it (raw bytes on Unix).
  pub fn name(&self) -> &OsStr {
    self.name
  }

  /// The type, as `readdir` gave it (a symlink is a symlink).
  pub fn file_type(&self) -> fs::FileType {
    self.ft
  }

  pub fn is_dir(&self) -> bool {
    self.ft.is_dir()
  }

  /// The full path (an allocation: for the entries a visitor acts on).
  /// Longer than `PATH_MAX` when deep: use it through `fs::longpath`.
  pub fn path(&self) -> PathBuf {
    self.dir.join(self.name)
  }

  /// `lstat` of the entry, relative to the open folder (any depth).
  pub fn metadata(&self) -> Result<fs::Metadata, WalkError> {
    self.de.metadata().map_err(|e| self.error(Op::Stat, e))
  }

  /// An error about this entry, with its paths.
  pub fn error(&self, op: Op, err: io::Error) -> WalkError {
    WalkError { rel: self.rel.to_string(), path: self.path(), op, err }
  }
}

/// What a walk does with what it finds. One visitor per pool thread (see
/// [`walk`]); it must not call into rayon (it runs while its thread's slot
/// is held), and should keep per-entry work small or hand it on.
pub trait Visitor: Send {
  /// What a folder carries down to its entries (the scan's rule state;
  /// `()` for a plain walk).
  type Ctx: Send;

  /// Called before a folder is read; `false` skips it (an early stop).
  fn enter(&mut self, _dir: &Dir<'_, Self::Ctx>) -> bool {
    true
  }

  /// Called for each entry of `dir`. For a sub-folder, `Some(ctx)` reads it
  /// too (with that context); `None` prunes it. Ignored for other entries.
  fn entry(&mut self, dir: &Dir<'_, Self::Ctx>, e: &Entry<'_>) -> Option<Self::Ctx>;

  /// A folder that could not be read (the root included: `rel` `""`), a
  /// listing that broke off, or an entry whose type could not be read.
  fn error(&mut self, err: WalkError);

  /// Called once every entry of `dir` has been visited, with the number of
  /// its sub-folders that will be read (later, maybe by other threads).
  fn leave(&mut self, _dir: &Dir<'_, Self::Ctx>, _subdirs: usize) {}
}

/// A folder waiting to be read.
struct Job<C> {
  path: PathBuf,
  rel: String,
  ctx: C,
  depth: usize,
}

/// Reads one folder with `v`; returns the sub-folders to read.
fn read_one<V: Visitor>(job: Job<V::Ctx>, v: &mut V) -> Vec<Job<V::Ctx>> {
  let dir = Dir { path: &job.path, rel: &job.rel, ctx: &job.ctx, depth: job.depth };
  if !v.enter(&dir) {
    return Vec::new();
  }
  let rd = match crate::fs::longpath::with(&job.path, |p| fs::read_dir(p)) {
    Ok(rd) => rd,
    Err(err) => {
      v.error(WalkError { rel: job.rel.clone(), path: job.path.clone(), op: Op::ReadDir, err });
      return Vec::new();
    }
  };
  // Each entry's relative path is built here, in one buffer per folder.
  let mut rel = String::with_capacity(job.rel.len() + 64);
  rel.push_str(&job.rel);
  if !rel.is_empty() {
    rel.push('/');
  }
  let base = rel.len();
  let mut subs = Vec::new();
  for de in rd {
    let de = match de {
      Ok(de) => de,
      Err(err) => {
        v.error(WalkError { rel: job.rel.clone(), path: job.path.clone(), op: Op::ReadDir, err });
        break;
      }
    };
    let name = de.file_name();
    rel.truncate(base);
    rel.push_str(&crate::fs::names::encode(&name));
    let ft = match de.file_type() {
      Ok(ft) => ft,
      Err(err) => {
        v.error(WalkError { rel: rel.clone(), path: job.path.join(&name), op: Op::Stat, err });
        continue;
      }
    };
    let e = Entry { de: &de, name: &name, rel: &rel, ft, dir: &job.path };
    if let Some(ctx) = v.entry(&dir, &e) {
      if ft.is_dir() {
        subs.push(Job { path: job.path.join(&name), rel: rel.clone(), ctx, depth: job.depth + 1 });
      }
    }
  }
  v.leave(&dir, subs.len());
  subs
}

/// Walks `root` (with `ctx` as its context) on the current rayon pool and
/// returns the visitors `make` built, one per pool thread that took part.
///
/// Sub-folders become rayon tasks: the thread that found them goes on with
/// one of them (depth first, little memory), idle threads steal the rest
/// (the top of the tree first, so the work spreads early).
pub fn walk<V: Visitor>(root: &Path, ctx: V::Ctx, make: impl Fn() -> V + Sync) -> Vec<V> {
  let n = rayon::current_num_threads().max(1);
  let slots: Vec<Mutex<Option<V>>> = (0..n).map(|_| Mutex::new(None)).collect();
  // Each thread uses only its own slot, so the lock is never contended; a
  // visitor does not call into rayon, so the thread cannot re-enter it.
  let read = |job: Job<V::Ctx>| -> Vec<Job<V::Ctx>> {
    let i = rayon::current_thread_index().unwrap_or(0) % n;
    let mut slot = slots[i].lock().unwrap_or_else(|p| p.into_inner());
    read_one(job, slot.get_or_insert_with(&make))
  };
  let root = Job { path: root.to_path_buf(), rel: String::new(), ctx, depth: 0 };
  rayon::scope(|s| run(s, &read, root));
  slots.into_iter().filter_map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).collect()
}

/// Reads `job`, spawns all but one of its sub-folders and goes on with that one.
fn run<'s, C: Send + 's, F: Fn(Job<C>) -> Vec<Job<C>> + Sync>(s: &rayon::Scope<'s>, read: &'s F, job: Job<C>) {
  let mut job = job;
  loop {
    let mut subs = read(job);
    let Some(next) = subs.pop() else { return };
    for sub in subs {
      s.spawn(move |s| run(s, read, sub));
    }
    job = next;
  }
}

/// Whether `name` is a temp file of a copy into the mirror or an increment
/// (`fs::util::temp_path`): not part of what a backup holds.
pub fn is_temp_name(name: &str) -> bool {
  name.starts_with(".axb-") && name.ends_with(".tmp")
}

/// Every file and symlink under `root` with its `lstat`, by relative path
/// (sorted), leaving out copy temp files. A root that does not exist holds
/// nothing; a folder that cannot be read is a warning (full path); an entry
/// that vanished meanwhile is left out. For recreate, status and adoption.
pub fn files(root: &Path, warnings: &mut Vec<crate::error::Warning>) -> Vec<(String, fs::Metadata)> {
  struct Files {
    out: Vec<(String, fs::Metadata)>,
    errors: Vec<WalkError>,
  }
  impl Visitor for Files {
    type Ctx = ();
    fn entry(&mut self, _: &Dir<'_, ()>, e: &Entry<'_>) -> Option<()> {
      let rel = e.rel();
      if is_temp_name(&rel[rel.rfind('/').map_or(0, |i| i + 1)..]) {
        return None;
      }
      if e.is_dir() {
        return Some(());
      }
      if let Ok(md) = e.metadata() {
        if md.is_file() || md.file_type().is_symlink() {
          self.out.push((rel.to_string(), md));
        }
      }
      None
    }
    fn error(&mut self, err: WalkError) {
      if err.op == Op::ReadDir && !err.vanished() {
        self.errors.push(err);
      }
    }
  }
  let parts = walk(root, (), || Files { out: Vec::new(), errors: Vec::new() });
  let mut out = Vec::with_capacity(parts.iter().map(|p| p.out.len()).sum());
  let mut errors = Vec::new();
  for p in parts {
    out.extend(p.out);
    errors.extend(p.errors);
  }
  out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
  errors.sort_by(|a, b| a.path.cmp(&b.path));
  warnings.extend(errors.into_iter().map(|e| crate::error::Warning::from_io(e.path.display().to_string(), "cannot read", &e.err)));
  out
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::os::unix::ffi::OsStrExt;

  /// Gathers every entry (files by rel, folders entered) and every error.
  #[derive(Default)]
  struct All {
    files: Vec<String>,
    dirs: Vec<String>,
    errors: Vec<(String, PathBuf, Op, io::ErrorKind)>,
    skip: Option<&'static str>,
    remove_before_read: Option<PathBuf>,
  }

  impl Visitor for All {
    type Ctx = ();
    fn enter(&mut self, dir: &Dir<'_, ()>) -> bool {
      self.dirs.push(dir.rel.to_string());
      true
    }
    fn entry(&mut self, _: &Dir<'_, ()>, e: &Entry<'_>) -> Option<()> {
      if e.is_dir() {
        if Some(e.rel()) == self.skip {
          return None;
        }
        if let Some(p) = &self.remove_before_read {
          if e.path() == *p {
            // Gone between the listing of its parent and its own reading.
            fs::remove_dir_all(p).unwrap();
          }
        }
        return Some(());
      }
      let md = e.metadata().unwrap();
      assert_eq!(md.len(), 1, "{}", e.rel());
      self.files.push(e.rel().to_string());
      None
    }
    fn error(&mut self, err: WalkError) {
      self.errors.push((err.rel, err.path, err.op, err.err.kind()));
    }
  }

  fn merged(parts: Vec<All>) -> All {
    let mut all = All::default();
    for p in parts {
      all.files.extend(p.files);
      all.dirs.extend(p.dirs);
      all.errors.extend(p.errors);
    }
    all.files.sort();
    all.dirs.sort();
    all
  }

  fn touch(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, b"x").unwrap();
  }

  fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap()
  }

  #[test]
  fn visits_every_entry_once_in_parallel() {
    let t = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    for d in 0..30 {
      for f in 0..5 {
        let rel = format!("d{d:02}/sub/f{f}.txt");
        touch(&t.path().join(&rel));
        want.push(rel);
      }
    }
    touch(&t.path().join("top.txt"));
    want.push("top.txt".into());
    want.sort();
    let all = pool().install(|| merged(walk(t.path(), (), All::default)));
    assert_eq!(all.files, want);
    assert_eq!(all.dirs.len(), 1 + 30 * 2);
    assert!(all.errors.is_empty());
  }

  #[test]
  fn a_pruned_folder_is_never_read() {
    let t = tempfile::tempdir().unwrap();
    touch(&t.path().join("keep/a.txt"));
    touch(&t.path().join("skip/b.txt"));
    touch(&t.path().join("skip/deeper/c.txt"));
    let all = pool().install(|| merged(walk(t.path(), (), || All { skip: Some("skip"), ..Default::default() })));
    assert_eq!(all.files, ["keep/a.txt"]);
    assert_eq!(all.dirs, ["", "keep"]);
  }

  #[test]
  fn errors_carry_their_paths() {
    let t = tempfile::tempdir().unwrap();
    touch(&t.path().join("a/gone/x.txt"));
    touch(&t.path().join("a/kept.txt"));
    let gone = t.path().join("a/gone");
    let all = merged(walk(t.path(), (), || All { remove_before_read: Some(gone.clone()), ..Default::default() }));
    assert_eq!(all.files, ["a/kept.txt"]);
    assert_eq!(all.errors, [("a/gone".to_string(), gone.clone(), Op::ReadDir, io::ErrorKind::NotFound)]);
    // A root that cannot be read is an error of the root (rel ""), not a panic.
    let file = t.path().join("a/kept.txt");
    let all = merged(walk(&file, (), All::default));
    assert_eq!(all.errors.len(), 1);
    assert_eq!((all.errors[0].0.as_str(), &all.errors[0].1, all.errors[0].2), ("", &file, Op::ReadDir));
    // An unreadable folder (only testable without root's override).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
      use std::os::unix::fs::PermissionsExt;
      let locked = t.path().join("locked");
      touch(&locked.join("secret.txt"));
      fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
      let all = merged(walk(t.path(), (), All::default));
      fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
      assert!(all.errors.contains(&("locked".into(), locked.clone(), Op::ReadDir, io::ErrorKind::PermissionDenied)));
      assert!(!all.files.iter().any(|f| f.starts_with("locked/")));
    }
  }

  #[test]
  fn reads_folders_deeper_than_path_max() {
    let t = tempfile::tempdir().unwrap();
    let mut deep = t.path().to_path_buf();
    let mut rel = String::new();
    for i in 0..24 {
      let c = format!("{i:02}-{}", "d".repeat(240));
      deep.push(&c);
      rel.push_str(&c);
      rel.push('/');
    }
    assert!(deep.as_os_str().len() > 5000);
    crate::fs::longpath::ensure_parent(&deep.join("f.txt")).unwrap();
    crate::fs::longpath::with(&deep.join("f.txt"), |p| fs::write(p, b"x")).unwrap();
    let all = merged(walk(t.path(), (), All::default));
    assert!(all.errors.is_empty(), "{:?}", all.errors);
    assert_eq!(all.files, [format!("{rel}f.txt")]);
    assert_eq!(all.dirs.len(), 25);
  }

  #[test]
  fn names_that_are_not_utf8_are_kept_losslessly() {
    let t = tempfile::tempdir().unwrap();
    let raw: &[u8] = b"caf\xe9";
    let dir = t.path().join(OsStr::from_bytes(raw));
    touch(&dir.join(OsStr::from_bytes(b"\xff.txt")));
    struct Raw(Vec<(String, Vec<u8>)>);
    impl Visitor for Raw {
      type Ctx = ();
      fn entry(&mut self, _: &Dir<'_, ()>, e: &Entry<'_>) -> Option<()> {
        self.0.push((e.rel().to_string(), e.name().as_bytes().to_vec()));
        e.metadata().unwrap();
        Some(())
      }
      fn error(&mut self, err: WalkError) {
        panic!("{err}");
      }
    }
    let mut got: Vec<(String, Vec<u8>)> = walk(t.path(), (), || Raw(Vec::new())).into_iter().flat_map(|r| r.0).collect();
    got.sort();
    let d = crate::fs::names::encode_bytes(raw).into_owned();
    let f = format!("{d}/{}", crate::fs::names::encode_bytes(b"\xff.txt"));
    assert_eq!(got, [(d.clone(), raw.to_vec()), (f.clone(), b"\xff.txt".to_vec())]);
    assert_eq!(&*crate::fs::names::decode_bytes(&f), b"caf\xe9/\xff.txt");
  }

  #[test]
  fn files_lists_files_and_symlinks_sorted_without_temp_files() {
    let t = tempfile::tempdir().unwrap();
    touch(&t.path().join("b/x.txt"));
    touch(&t.path().join("a.txt"));
    touch(&t.path().join("b/.axb-0011223344556677.tmp"));
    std::os::unix::fs::symlink("a.txt", t.path().join("link")).unwrap();
    let mut w = Vec::new();
    let got: Vec<String> = files(t.path(), &mut w).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, ["a.txt", "b/x.txt", "link"]);
    assert!(w.is_empty());
    assert!(files(&t.path().join("missing"), &mut w).is_empty());
    assert!(w.is_empty(), "a missing root holds nothing: {w:?}");
  }
}
