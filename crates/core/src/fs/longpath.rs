//! Paths longer than one system call takes (`PATH_MAX`, 4096 bytes on
//! Linux), reached through directory handles.
//!
//! A source may hold any depth of folders, and the same relative path is
//! longer under `dst/.axiomatic/incomplete/backup_…/track/` than under
//! `src`. Every file operation of a run, a restore or a check goes through
//! [`with`] / [`with2`]: the plain path is tried first (no cost for the
//! usual case); only when the kernel answers `ENAMETOOLONG` is the parent
//! folder opened component by component (`openat` with `O_NOFOLLOW`, and
//! `mkdirat` where asked to create it) and the operation repeated on
//! `/proc/self/fd/<handle>/<name>`: a short path that the kernel resolves
//! relative to the open handle, so every operation (open, `linkat`,
//! `renameat`, `unlinkat`, `fstatat`, ownership and times) works at any
//! depth. Linux only (it needs `/proc`); elsewhere the error stays and is
//! reported with the path.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Longest prefix opened with one plain `open` (well below `PATH_MAX`).
const PREFIX_MAX: usize = 3000;

fn too_long(e: &io::Error) -> bool {
  e.raw_os_error() == Some(libc::ENAMETOOLONG)
}

/// A short stand-in for a long path: keeps its parent folder open.
pub struct Short {
  _dir: OwnedFd,
  path: PathBuf,
}

impl std::ops::Deref for Short {
  type Target = Path;
  fn deref(&self) -> &Path {
    &self.path
  }
}

fn cstr(s: &OsStr) -> io::Result<CString> {
  CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

fn open_dir_at(dir: Option<&OwnedFd>, name: &OsStr, follow: bool) -> io::Result<OwnedFd> {
  let c = cstr(name)?;
  let mut flags = libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC;
  if !follow {
    flags |= libc::O_NOFOLLOW;
  }
  let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
  // SAFETY: a valid C string and a valid (or the cwd) directory handle.
  let fd = unsafe { libc::openat(at, c.as_ptr(), flags) };
  if fd < 0 {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: `fd` is a fresh descriptor we own.
  Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the file `name` of the folder `dir` for reading, never following a
/// symlink (`openat`: one name lookup however deep the folder is).
pub fn open_file_at(dir: &OwnedFd, name: &OsStr) -> io::Result<fs::File> {
  let c = cstr(name)?;
  // SAFETY: a valid C string and directory handle.
  let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
  if fd < 0 {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: `fd` is a fresh descriptor we own.
  Ok(unsafe { fs::File::from_raw_fd(fd) })
}

fn mkdir_at(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
  let c = cstr(name)?;
  // SAFETY: a valid C string and directory handle.
  if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o777) } == 0 {
    return Ok(());
  }
  let e = io::Error::last_os_error();
  if e.kind() == io::ErrorKind::AlreadyExists {
    Ok(())
  } else {
    Err(e)
  }
}

/// Opens the folder `dir` (any length): its first part with one `open`
/// (symlinks there are followed, as for any path), the rest one component
/// at a time without following symlinks, creating missing ones if asked.
pub fn open_dir(dir: &Path, create: bool) -> io::Result<OwnedFd> {
  let mut prefix = PathBuf::new();
  let mut rest: Vec<&OsStr> = Vec::new();
  for c in dir.components() {
    match c {
      Component::Normal(n) if !rest.is_empty() || prefix.as_os_str().len() + n.len() + 1 > PREFIX_MAX => rest.push(n),
      Component::Normal(n) => prefix.push(n),
      Component::RootDir => prefix.push("/"),
      Component::CurDir => {}
      Component::ParentDir | Component::Prefix(_) => {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a long path with `..` is not followed"));
      }
    }
  }
  if prefix.as_os_str().is_empty() {
    prefix.push(".");
  }
  if create {
    fs::create_dir_all(&prefix)?;
  }
  let mut fd = open_dir_at(None, prefix.as_os_str(), true)?;
  for n in rest {
    let next = match open_dir_at(Some(&fd), n, false) {
      Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
        mkdir_at(&fd, n)?;
        open_dir_at(Some(&fd), n, false)?
      }
      r => r?,
    };
    fd = next;
  }
  Ok(fd)
}

/// The short stand-in of `p` (its parent folder opened; created first when
/// `create_parent`).
pub fn short(p: &Path, create_parent: bool) -> io::Result<Short> {
  let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
    return Err(io::Error::new(io::ErrorKind::InvalidInput, "a long path without a file name"));
  };
  let dir = open_dir(parent, create_parent)?;
  let path = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
  Ok(Short { _dir: dir, path })
}

/// Runs `f` on `p`, and again on its short stand-in if `p` is too long.
pub fn with<T>(p: &Path, f: impl Fn(&Path) -> io::Result<T>) -> io::Result<T> {
  match f(p) {
    Err(e) if too_long(&e) => f(&short(p, false)?),
    r => r,
  }
}

/// [`with`] for operations on two paths (link, rename, copy).
pub fn with2<T>(a: &Path, b: &Path, f: impl Fn(&Path, &Path) -> io::Result<T>) -> io::Result<T> {
  match f(a, b) {
    Err(e) if too_long(&e) => {
      let sa = if a.as_os_str().len() > PREFIX_MAX { Some(short(a, false)?) } else { None };
      let sb = if b.as_os_str().len() > PREFIX_MAX { Some(short(b, false)?) } else { None };
      f(sa.as_deref().unwrap_or(a), sb.as_deref().unwrap_or(b))
    }
    r => r,
  }
}

/// `fs::create_dir_all` for a folder of any length.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
  match fs::create_dir_all(dir) {
    Err(e) if too_long(&e) => open_dir(dir, true).map(|_| ()),
    r => r,
  }
}

/// Creates the parent folder of `p` (any length).
pub fn ensure_parent(p: &Path) -> io::Result<()> {
  match p.parent() {
    Some(d) => create_dir_all(d),
    None => Ok(()),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn deep_paths_work_through_handles() {
    let root = tempfile::tempdir().unwrap();
    let mut deep = root.path().to_path_buf();
    for i in 0..24 {
      deep.push(format!("{i:02}-{}", "d".repeat(240)));
    }
    assert!(deep.as_os_str().len() > 5000);
    let file = deep.join("f.txt");
    assert!(too_long(&fs::write(&file, b"x").unwrap_err()));
    ensure_parent(&file).unwrap();
    with(&file, |p| fs::write(p, b"hello")).unwrap();
    assert_eq!(with(&file, |p| fs::read(p)).unwrap(), b"hello");
    let other = deep.join("g.txt");
    with2(&file, &other, |a, b| fs::hard_link(a, b)).unwrap();
    with2(&other, &deep.join("h.txt"), |a, b| fs::rename(a, b)).unwrap();
    assert_eq!(with(&deep.join("h.txt"), |p| fs::read(p)).unwrap(), b"hello");
    with(&file, |p| fs::remove_file(p)).unwrap();
    assert!(with(&file, |p| fs::symlink_metadata(p)).is_err());
  }
}
