//! The run lock of a backup folder: an OS lock (`flock` on Unix,
//! `LockFileEx` on Windows, through `std::fs::File::try_lock`) on
//! `dst/.axiomatic/lock`, held for the whole command.
//!
//! The kernel releases an OS lock when its holder dies, however it dies, so
//! there is never a stale lock to take over and no race in taking one over.
//! The file's content (pid, host, start, command) is information only, for
//! the message of a refused command and for `status`.
//!
//! Protocol: open (or create) the file, try the exclusive lock, then check
//! that the path still names the inode we locked (a releasing holder
//! unlinks the file while it still holds the lock; whoever opened the old
//! inode in between must not believe it holds the lock of the new one), and
//! only then write our information into it. Release: unlink, then unlock
//! (by closing).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a contended lock is retried before giving up. Short: `status`
/// takes a shared lock for an instant to see whether the lock is held, and
/// a command started at that instant must not be refused for it.
const CONTENDED_RETRY: Duration = Duration::from_millis(1500);

/// A held lock. Dropping it releases it (the file is removed first).
#[derive(Debug)]
pub struct RunLock {
  file: Option<File>,
  path: PathBuf,
}

/// What happened to a lock attempt.
#[derive(Debug)]
pub enum Acquire {
  Held(RunLock),
  /// Another process holds the lock; its information, as written (may be
  /// empty if it is just starting).
  Busy(String),
}

fn same_inode(f: &File, path: &Path) -> io::Result<bool> {
  let a = f.metadata()?;
  let b = match fs::metadata(path) {
    Ok(b) => b,
    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
    Err(e) => return Err(e),
  };
  #[cfg(unix)]
  {
    use std::os::unix::fs::MetadataExt;
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
  }
  #[cfg(not(unix))]
  {
    // Windows cannot delete an open file, so the path always names it.
    let _ = (a, b);
    Ok(true)
  }
}

fn read_info(f: &mut File) -> String {
  let mut s = String::new();
  let _ = f.seek(SeekFrom::Start(0)).and_then(|_| f.read_to_string(&mut s));
  s.trim().to_string()
}

/// Tries to take the lock at `path` (its folder must exist) and writes
/// `info` into it. Never waits long: a held lock gives `Busy`.
pub fn acquire(path: &Path, info: &str) -> io::Result<Acquire> {
  let deadline = Instant::now() + CONTENDED_RETRY;
  loop {
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    match f.try_lock() {
      Ok(()) => {}
      Err(TryLockError::WouldBlock) => {
        let holder = read_info(&mut f);
        drop(f);
        if Instant::now() >= deadline {
          return Ok(Acquire::Busy(holder));
        }
        std::thread::sleep(Duration::from_millis(50));
        continue;
      }
      Err(TryLockError::Error(e)) => return Err(e),
    }
    if !same_inode(&f, path)? {
      // The holder we waited for released it (and removed the file) after we
      // opened it: try again on the current file.
      continue;
    }
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(info.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    return Ok(Acquire::Held(RunLock { file: Some(f), path: path.to_path_buf() }));
  }
}

/// Whether the lock at `path` is held by a live process right now, and the
/// information in the file (`None` when there is no lock file). Takes a
/// shared lock for an instant.
pub fn probe(path: &Path) -> io::Result<Option<(bool, String)>> {
  let mut f = match File::open(path) {
    Ok(f) => f,
    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
    Err(e) => return Err(e),
  };
  let info = read_info(&mut f);
  let held = match f.try_lock_shared() {
    Ok(()) => false,
    Err(TryLockError::WouldBlock) => true,
    Err(TryLockError::Error(e)) => return Err(e),
  };
  Ok(Some((held, info)))
}

impl RunLock {
  /// Releases the lock: removes the file while still holding it, then unlocks.
  pub fn release(&mut self) {
    if let Some(f) = self.file.take() {
      let _ = fs::remove_file(&self.path);
      drop(f);
    }
  }
}

impl Drop for RunLock {
  fn drop(&mut self) {
    self.release();
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn second_acquire_is_busy_until_release() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lock");
    let Acquire::Held(mut a) = acquire(&p, "{\"pid\":1}").unwrap() else { panic!("first must hold") };
    match acquire(&p, "{\"pid\":2}").unwrap() {
      Acquire::Busy(info) => assert_eq!(info, "{\"pid\":1}"),
      Acquire::Held(_) => panic!("two holders"),
    }
    assert_eq!(probe(&p).unwrap().map(|x| x.0), Some(true));
    a.release();
    assert!(probe(&p).unwrap().is_none());
    assert!(matches!(acquire(&p, "x").unwrap(), Acquire::Held(_)));
  }

  #[test]
  fn a_stale_file_is_not_a_lock() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lock");
    fs::write(&p, "{\"pid\":999999,\"host\":\"gone\"}").unwrap();
    assert_eq!(probe(&p).unwrap().map(|x| x.0), Some(false));
    let Acquire::Held(_l) = acquire(&p, "mine").unwrap() else { panic!("stale file must not block") };
    assert_eq!(fs::read_to_string(&p).unwrap(), "mine\n");
  }
}
