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

/// A fatal error.
#[derive(Debug)]
pub struct Error {
  pub kind: ErrorKind,
  pub path: Option<PathBuf>,
  pub message: String,
}

impl Error {
  pub fn config(message: impl Into<String>) -> Self {
    Self { kind: ErrorKind::Config, path: None, message: message.into() }
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
    Self { kind, path: Some(path.to_path_buf()), message: format!("{what} {}: {err}{hint}", path.display()) }
  }
  pub fn corrupt(path: &Path, message: impl Into<String>) -> Self {
    Self { kind: ErrorKind::Corrupt, path: Some(path.to_path_buf()), message: format!("{}: {}", path.display(), message.into()) }
  }
  pub fn refused(message: impl Into<String>) -> Self {
    Self { kind: ErrorKind::Refused, path: None, message: message.into() }
  }
  pub fn aborted() -> Self {
    Self { kind: ErrorKind::Aborted, path: None, message: "the run was aborted; nothing half-done was committed".into() }
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

impl std::error::Error for Error {}

/// A per-path problem that did not stop the run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Warning {
  /// Path relative to `src` (or to `dst` for backup-side problems).
  pub path: String,
  /// Stable machine-readable code: `permission-denied`, `vanished`,
  /// `changed-during-read`, `inconsistent-copy`, `unreadable`, `special-file`,
  /// `mirror-missing`, `link-fallback`…
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
