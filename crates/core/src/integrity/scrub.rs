//! The scrub record (`dst/.axiomatic/scrub.json`): when each stored version
//! was last verified, and the corruption verifies found. `verify --scrub N%`
//! reads it to check the least recently verified share of the versions and
//! writes it after every chunk, so a scheduled scrub covers everything over
//! 100/N runs and a killed scrub resumes where it stopped. A corruption is
//! remembered here until a full verify finds none, so `status` keeps
//! alarming after the scrub that found it.
//!
//! Versions are keyed by a short hash of (location, path): the record does
//! not repeat every path name, and stays a fraction of the metadata's size.
//! It lives in `.axiomatic/`, never inside an increment; it is written
//! atomically (temp + rename) and no stored file is touched.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fs::util;
use crate::layout::Layout;

/// A corruption a verify found, kept until a full verify passes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Remembered {
  /// `mirror` or the increment name.
  pub location: String,
  pub path: String,
  /// `CORRUPT` or `MISSING`.
  pub status: String,
  pub detail: Option<String>,
  /// When it was found (ms since the epoch).
  pub found_ms: i64,
}

/// The record as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrubState {
  pub version: u32,
  /// When the record was last written (ms since the epoch).
  pub updated_ms: i64,
  /// The versions that had a recorded hash when it was written.
  pub versions: u64,
  /// Of those, the ones never verified.
  pub never_verified: u64,
  /// The last full verify that found nothing wrong.
  pub last_full_ms: Option<i64>,
  /// The last scrub or verify that checked anything.
  pub last_check_ms: Option<i64>,
  /// Version key → last verified (ms since the epoch).
  pub verified: HashMap<String, i64>,
  pub corrupt: Vec<Remembered>,
}

/// The key of one version: 16 hex digits of SHA-256(location NUL path).
pub fn key(location: &str, rel: &str) -> String {
  let mut buf = Vec::with_capacity(location.len() + rel.len() + 1);
  buf.extend_from_slice(location.as_bytes());
  buf.push(0);
  buf.extend_from_slice(rel.as_bytes());
  hex::encode(&ring::digest::digest(&ring::digest::SHA256, &buf).as_ref()[..8])
}

impl ScrubState {
  /// The record of `dst`: empty when there is none; an unreadable one is
  /// started afresh (it only orders the scrub) and its error returned.
  pub fn load(dst: &Path) -> (Self, Option<String>) {
    let path = Layout::new(dst).scrub;
    match fs::read(&path) {
      Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Self { version: 1, ..Default::default() }, None),
      Err(e) => (Self { version: 1, ..Default::default() }, Some(format!("{}: cannot read: {e}", path.display()))),
      Ok(b) => match serde_json::from_slice::<Self>(&b) {
        Ok(s) => (s, None),
        Err(e) => (
          Self { version: 1, ..Default::default() },
          Some(format!("{}: damaged ({e}); started afresh (every version counts as never verified)", path.display())),
        ),
      },
    }
  }

  /// Writes the record atomically (temp + fsync + rename).
  pub fn save(&self, dst: &Path) -> Result<(), Error> {
    let l = Layout::new(dst);
    fs::create_dir_all(&l.meta).map_err(|e| Error::io(&l.meta, "cannot create", &e))?;
    let text = serde_json::to_vec(self).expect("plain data serializes");
    util::write_atomic(&l.scrub, |f| std::io::Write::write_all(f, &text))?;
    remove_dead_temps(&l);
    Ok(())
  }

  /// Remembers a corruption (once per location and path).
  pub fn remember(&mut self, r: Remembered) {
    if !self.corrupt.iter().any(|c| c.location == r.location && c.path == r.path) {
      self.corrupt.push(r);
    }
  }
}

/// Removes the temp files of the record that killed scrubs left (those of
/// a process that still runs are its own, in flight, and stay).
fn remove_dead_temps(l: &Layout) {
  let Ok(rd) = fs::read_dir(&l.meta) else { return };
  let prefix = format!(".{}.tmp-", l.scrub.file_name().unwrap().to_string_lossy());
  for e in rd.flatten() {
    let name = e.file_name().to_string_lossy().into_owned();
    let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<i32>().ok()) else { continue };
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = pid == std::process::id() as i32
      || unsafe { libc::kill(pid, 0) } == 0
      || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !alive {
      let _ = fs::remove_file(e.path());
    }
  }
}

/// What `status` shows of the record.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrubSummary {
  /// Whether a record exists (any verify of this folder ran).
  pub present: bool,
  /// Why it could not be read, if so.
  pub error: Option<String>,
  pub versions: u64,
  pub never_verified: u64,
  /// The least recent "last verified" time (ms); `None` if none was verified.
  pub oldest_verified_ms: Option<i64>,
  pub last_full_ms: Option<i64>,
  pub last_check_ms: Option<i64>,
  pub corrupt: Vec<Remembered>,
}

/// The record of `dst`, summed up for `status` (nothing is written).
pub fn summary(dst: &Path) -> ScrubSummary {
  let present = Layout::new(dst).scrub.exists();
  let (s, error) = ScrubState::load(dst);
  ScrubSummary {
    present,
    error,
    versions: s.versions,
    never_verified: s.never_verified,
    oldest_verified_ms: s.verified.values().min().copied(),
    last_full_ms: s.last_full_ms,
    last_check_ms: s.last_check_ms,
    corrupt: s.corrupt,
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn keys_are_short_and_distinct() {
    assert_eq!(key("mirror", "a").len(), 16);
    assert_ne!(key("mirror", "a/b"), key("mirror/a", "b"));
    assert_eq!(key("backup_20240101_000000", "x"), key("backup_20240101_000000", "x"));
  }

  #[test]
  fn a_damaged_record_starts_afresh_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let l = Layout::new(t.path());
    assert!(!summary(t.path()).present);
    fs::create_dir_all(&l.meta).unwrap();
    fs::write(&l.scrub, "{not json").unwrap();
    let s = summary(t.path());
    assert!(s.present && s.error.unwrap().contains("damaged"));
    let mut st = ScrubState::load(t.path()).0;
    st.verified.insert(key("mirror", "a"), 5);
    st.remember(Remembered { location: "mirror".into(), path: "a".into(), status: "CORRUPT".into(), detail: None, found_ms: 1 });
    st.remember(Remembered { location: "mirror".into(), path: "a".into(), status: "CORRUPT".into(), detail: None, found_ms: 2 });
    st.save(t.path()).unwrap();
    let s = summary(t.path());
    assert_eq!((s.oldest_verified_ms, s.corrupt.len(), s.error), (Some(5), 1, None));
  }
}
