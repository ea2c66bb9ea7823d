//! Errors: one fatal `Error` (kind + path + message) and per-path `Warning`s
//! that are collected as data and never stop a run.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What went wrong, coarse enough for the binding to map to a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
  /// The configuration or the rules are unusable (exit 64).
  Config,
  /// An I/O error that stops the run (exit 2).
  Io,
  /// The run was aborted by the caller.
  Aborted,
  /// On-disk state or metadata cannot be read.
  Corrupt,
  /// The run would remove what it should not (a foreign source, a mass
  /// deletion) and changed nothing (exit 2).
  Refused,
  /// The target is full (`ENOSPC`, `EDQUOT`; exit 2, the next run finishes).
  DiskFull,
  /// The target is mounted read-only (`EROFS`; exit 2, nothing written).
  ReadOnly,
}

/// A fatal error. `message` is what users read (it already names the path
/// and the OS error); `source` keeps the I/O error itself, as `walkdir` does,
/// so a program can look at its kind or errno instead of parsing text.
#[derive(Debug)]
pub struct Error {
  pub kind: ErrorKind,
  pub path: Option<PathBuf>,
  pub message: String,
  pub source: Option<io::Error>,
}

impl Error {
  pub fn config(message: impl Into<String>) -> Self {
    Self { kind: ErrorKind::Config, path: None, message: message.into(), source: None }
  }
  /// An I/O error; a full or read-only target gets its own kind (and
  /// code), so `status` and scripts can tell it from other failures.
  pub fn io(path: &Path, what: &str, err: &io::Error) -> Self {
    let kind = if is_disk_full(err) {
      ErrorKind::DiskFull
    } else if err.raw_os_error() == Some(libc::EROFS) {
      ErrorKind::ReadOnly
    } else {
      ErrorKind::Io
    };
    let hint = match kind {
      ErrorKind::ReadOnly => "; the file system is mounted read-only (remount it read-write, or check the disk for errors)",
      _ => "",
    };
    let message = format!("{what} {}: {err}{hint}", path.display());
    Self { kind, path: Some(path.to_path_buf()), message, source: Some(copy_io(err)) }
  }
  pub fn corrupt(path: &Path, message: impl Into<String>) -> Self {
    Self {
      kind: ErrorKind::Corrupt,
      path: Some(path.to_path_buf()),
      message: format!("{}: {}", path.display(), message.into()),
      source: None,
    }
  }
  pub fn refused(message: impl Into<String>) -> Self {
    Self { kind: ErrorKind::Refused, path: None, message: message.into(), source: None }
  }
  pub fn aborted() -> Self {
    Self { kind: ErrorKind::Aborted, path: None, message: "the run was aborted; nothing half-done was committed".into(), source: None }
  }
  pub fn code(&self) -> &'static str {
    match self.kind {
      ErrorKind::Config => "ECONFIG",
      ErrorKind::Io => "EIO",
      ErrorKind::Aborted => "EABORTED",
      ErrorKind::Corrupt => "ECORRUPT",
      ErrorKind::Refused => "EREFUSED",
      ErrorKind::DiskFull => "ENOSPC",
      ErrorKind::ReadOnly => "EROFS",
    }
  }
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(&self.message)
  }
}

impl std::error::Error for Error {
  fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
    self.source.as_ref().map(|e| e as _)
  }
}

/// An owned copy of a borrowed I/O error (`io::Error` is not `Clone`): the
/// same errno when it has one, else the same kind and text.
fn copy_io(err: &io::Error) -> io::Error {
  match err.raw_os_error() {
    Some(code) => io::Error::from_raw_os_error(code),
    None => io::Error::new(err.kind(), err.to_string()),
  }
}

/// A per-path problem that did not stop the run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Warning {
  /// Path relative to `src` (or to `dst` for backup-side problems).
  pub path: String,
  /// Stable machine-readable code. The codes emitted, and who emits them
  /// (declared for JS once, as `WarningCode` in `js/warnings.ts`; described
  /// in the README under "Warning codes"):
  /// - any reader, via [`Warning::from_io`]: `permission-denied`, `vanished`, `io-error`;
  /// - `run`: `changed-during-read`, `inconsistent-copy`, `mirror-missing`,
  ///   `symlink-unsupported`, `xattrs-not-copied`, and once per run
  ///   `target-no-xattrs`, `target-no-acls`, `target-no-hardlinks`, `xattrs-need-root`;
  /// - `restore`: `exists`, `unsafe-path`, `symlink-in-target`, `not-a-directory`,
  ///   `missing-in-backup`, `not-found`, `changed-during-read`, `checksum-mismatch`,
  ///   `overwritten-version`, `xattrs-not-restored`, `aborted`, and once
  ///   `target-no-xattrs`, `xattrs-need-root`;
  /// - `recreate`: `unreadable`;
  /// - `run` and `recreate` (`explore::index::update`): `index-not-updated`.
  pub code: String,
  pub message: String,
}

impl Warning {
  pub fn new(path: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
    Self { path: path.into(), code: code.into(), message: message.into() }
  }

  /// A warning for an I/O error, with a code derived from its kind.
  pub fn from_io(path: impl Into<String>, what: &str, err: &io::Error) -> Self {
    let code = match err.kind() {
      io::ErrorKind::PermissionDenied => "permission-denied",
      io::ErrorKind::NotFound => "vanished",
      _ => "io-error",
    };
    Self::new(path, code, format!("{what}: {err}"))
  }
}

/// Whether an I/O error means the target is full: such errors stop the run.
pub fn is_disk_full(err: &io::Error) -> bool {
  matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::error::Error as _;

  /// The I/O error stays reachable as `source()` (errno and all) while the
  /// message users read is unchanged.
  #[test]
  fn io_error_keeps_its_source() {
    let err = io::Error::from_raw_os_error(libc::EACCES);
    let e = Error::io(Path::new("/x/y"), "cannot read", &err);
    assert_eq!(e.kind, ErrorKind::Io);
    assert_eq!(e.to_string(), format!("cannot read /x/y: {err}"));
    let src = e.source().and_then(|s| s.downcast_ref::<io::Error>()).expect("an io::Error source");
    assert_eq!(src.raw_os_error(), Some(libc::EACCES));
    assert!(Error::config("bad").source().is_none());
    let full = Error::io(Path::new("/x"), "cannot write", &io::Error::from_raw_os_error(libc::ENOSPC));
    assert_eq!((full.kind, full.code()), (ErrorKind::DiskFull, "ENOSPC"));
  }
}
