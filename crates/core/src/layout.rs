//! Every name on disk of a backup folder, in one place: the `mirror/`, the
//! `.axiomatic/` files (state, journal, lock, source and target records,
//! last-run, prune and delete journals, scrub record, unattended log,
//! `incomplete/`, `trash/`), the
//! increment folder name `backup_YYYYMMDD_HHMMSS[_N]` with its metadata
//! file, and the calendar arithmetic the names and the metadata's ISO
//! times need. The binding exports the paths and the name parser, so the
//! TypeScript side never rebuilds them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The exact copy of the selected source.
pub const MIRROR: &str = "mirror";
/// The folder of our own records.
pub const META_DIR: &str = ".axiomatic";
/// The catalog index's file name inside `.axiomatic/` (derived data: safe to delete).
pub const INDEX_FILE: &str = "index.sqlite";
/// The prefix of every increment folder name.
pub const INCREMENT_PREFIX: &str = "backup_";

/// The fixed layout of a backup folder.
#[derive(Debug, Clone)]
pub struct Layout {
  pub dst: PathBuf,
  /// `dst/mirror`
  pub mirror: PathBuf,
  /// `dst/.axiomatic`
  pub meta: PathBuf,
  /// The mirror state of the last successful run.
  pub state: PathBuf,
  /// Present only while a run applies (or was killed doing so).
  pub journal: PathBuf,
  /// Increments being built.
  pub incomplete: PathBuf,
  /// OS-locked while a command changes the folder.
  pub lock: PathBuf,
  /// The source this backup belongs to.
  pub source: PathBuf,
  /// What the last run's probe found the target can do.
  pub target: PathBuf,
  /// The outcome of the last run (written by the TypeScript side).
  pub last_run: PathBuf,
  /// Present only while a prune works.
  pub prune: PathBuf,
  /// Increments being removed by prune.
  pub trash: PathBuf,
  /// Present only while a delete unlinks.
  pub pending_removals: PathBuf,
  /// When each stored version was last verified, and corruption found
  /// (`integrity::scrub`).
  pub scrub: PathBuf,
  /// The log of scheduled runs when no journal takes it (cron).
  pub unattended_log: PathBuf,
  /// The catalog index (`explore::index`), derived from the increments' metadata.
  pub index: PathBuf,
}

impl Layout {
  pub fn new(dst: &Path) -> Self {
    let meta = dst.join(META_DIR);
    Self {
      dst: dst.to_path_buf(),
      mirror: dst.join(MIRROR),
      state: meta.join("state.jsonl"),
      journal: meta.join("journal.jsonl"),
      incomplete: meta.join("incomplete"),
      lock: meta.join("lock"),
      source: meta.join("source.json"),
      target: meta.join("target.json"),
      last_run: meta.join("last-run.json"),
      prune: meta.join("prune.json"),
      trash: meta.join("trash"),
      pending_removals: meta.join("pending-removals.jsonl"),
      scrub: meta.join("scrub.json"),
      unattended_log: meta.join("unattended.log"),
      index: meta.join(INDEX_FILE),
      meta,
    }
  }

  /// `mirror/<rel>` (a canonical path, see `fs::names`).
  pub fn mirror_path(&self, rel: &str) -> PathBuf {
    self.mirror.join(crate::fs::names::to_path(rel))
  }

  /// A committed increment's folder.
  pub fn increment(&self, name: &str) -> PathBuf {
    self.dst.join(name)
  }

  /// An increment being built.
  pub fn incomplete_increment(&self, name: &str) -> PathBuf {
    self.incomplete.join(name)
  }
}

/// The metadata file inside an increment folder: `<name>.json`.
pub fn meta_file_name(increment: &str) -> String {
  format!("{increment}.json")
}

/// `backup_YYYYMMDD_HHMMSS` of an instant, in UTC.
pub fn increment_name(t: SystemTime) -> String {
  let (y, mo, d, h, mi, s, _) = parts(t);
  format!("{INCREMENT_PREFIX}{y:04}{mo:02}{d:02}_{h:02}{mi:02}{s:02}")
}

/// A name not used yet in `dst` nor among the unfinished increments: `base`,
/// else `base_1`, `base_2`… (two runs within one second).
pub fn unique_name(l: &Layout, base: &str) -> String {
  let taken = |n: &str| l.increment(n).symlink_metadata().is_ok() || l.incomplete_increment(n).symlink_metadata().is_ok();
  if !taken(base) {
    return base.to_string();
  }
  (1..).map(|i| format!("{base}_{i}")).find(|n| !taken(n)).unwrap()
}

/// Parses `backup_YYYYMMDD_HHMMSS[_N]` into (seconds since the epoch, N;
/// 0 without a suffix). The date must exist (no month 13, no February 30);
/// anything else is not an increment name.
pub fn parse_increment_name(name: &str) -> Option<(i64, u32)> {
  let rest = name.strip_prefix(INCREMENT_PREFIX)?;
  let b = rest.as_bytes();
  if b.len() < 15 || b[8] != b'_' || !b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit) {
    return None;
  }
  let seq = match &rest[15..] {
    "" => 0,
    s => s.strip_prefix('_').filter(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))?.parse().ok()?,
  };
  let num = |r: std::ops::Range<usize>| rest[r].parse::<u32>().ok();
  let (y, mo, d, h, mi, s) = (num(0..4)?, num(4..6)?, num(6..8)?, num(9..11)?, num(11..13)?, num(13..15)?);
  if !valid_date(y, mo, d) || h > 23 || mi > 59 || s > 60 {
    return None;
  }
  Some((days_from_civil(i64::from(y), mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s), seq))
}

/// Whether `name` is an increment folder's name.
pub fn is_increment_name(name: &str) -> bool {
  parse_increment_name(name).is_some()
}

/// ISO 8601 UTC with milliseconds (the metadata's and journal's times).
pub fn iso(t: SystemTime) -> String {
  let (y, mo, d, h, mi, s, ms) = parts(t);
  format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// Whether (year, month, day) is a day of the proleptic Gregorian calendar.
pub fn valid_date(y: u32, mo: u32, d: u32) -> bool {
  (1..=12).contains(&mo) && d >= 1 && civil(days_from_civil(i64::from(y), mo, d)) == (i64::from(y), mo, d)
}

/// (year, month, day) to days since 1970-01-01, proleptic Gregorian.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
  let y = if m <= 2 { y - 1 } else { y };
  let era = y.div_euclid(400);
  let yoe = y.rem_euclid(400);
  let mp = i64::from((m + 9) % 12);
  let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
  let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil(days: i64) -> (i64, u32, u32) {
  let z = days + 719_468;
  let era = z.div_euclid(146_097);
  let doe = z.rem_euclid(146_097);
  let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
  let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  let mp = (5 * doy + 2) / 153;
  let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
  let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
  (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// An instant as (year, month, day, hour, minute, second, millisecond) UTC.
fn parts(t: SystemTime) -> (i64, u32, u32, i64, i64, i64, u32) {
  let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
  let secs = d.as_secs() as i64;
  let (y, mo, da) = civil(secs.div_euclid(86_400));
  let s = secs.rem_euclid(86_400);
  (y, mo, da, s / 3600, (s / 60) % 60, s % 60, d.subsec_millis())
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac][Z|±HH:MM]` (a space instead of `T`
/// too) into (seconds since the epoch, nanoseconds). A time without a zone
/// is local time, as Python's `datetime.now().isoformat()` writes it (the
/// original `backup.py` and `backup_tool.py`).
pub fn parse_iso(s: &str) -> Option<(i64, u32)> {
  let b = s.as_bytes();
  if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
    return None;
  }
  let num = |r: std::ops::Range<usize>| -> Option<u32> {
    let t = s.get(r)?;
    t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
  };
  let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
  if !valid_date(y, mo, d) || h > 23 || mi > 59 || se > 60 {
    return None;
  }
  let mut rest = &s[19..];
  let mut nanos = 0u32;
  if let Some(f) = rest.strip_prefix('.') {
    let n = f.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
      return None;
    }
    let digits = &f[..n.min(9)];
    nanos = digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32);
    rest = &f[n..];
  }
  let local = days_from_civil(i64::from(y), mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + se);
  let secs = match rest {
    "Z" | "z" => local,
    "" => local_to_utc(y, mo, d, h, mi, se)?,
    z => {
      let zb = z.as_bytes();
      if zb.len() != 6 || !(zb[0] == b'+' || zb[0] == b'-') || zb[3] != b':' {
        return None;
      }
      let off = i64::from(z[1..3].parse::<u32>().ok()? * 3600 + z[4..6].parse::<u32>().ok()? * 60);
      if zb[0] == b'+' {
        local - off
      } else {
        local + off
      }
    }
  };
  Some((secs, nanos))
}

/// Local wall-clock time to seconds since the epoch (`mktime`, which knows
/// the time zone and its daylight saving rules).
#[allow(clippy::useless_conversion)] // `time_t` is not i64 everywhere
fn local_to_utc(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
  // SAFETY: a zeroed `tm` is valid; mktime only reads and normalizes it.
  let mut tm: libc::tm = unsafe { std::mem::zeroed() };
  tm.tm_year = y as i32 - 1900;
  tm.tm_mon = mo as i32 - 1;
  tm.tm_mday = d as i32;
  tm.tm_hour = h as i32;
  tm.tm_min = mi as i32;
  tm.tm_sec = s as i32;
  tm.tm_isdst = -1;
  let t = unsafe { libc::mktime(&mut tm) };
  (t != -1).then_some(i64::from(t))
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::Duration;

  #[test]
  fn names_are_utc() {
    let t = UNIX_EPOCH + Duration::from_millis(1_705_321_845_123); // 2024-01-15T12:30:45.123Z
    assert_eq!(increment_name(t), "backup_20240115_123045");
    assert_eq!(iso(t), "2024-01-15T12:30:45.123Z");
    assert_eq!(iso(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
  }

  #[test]
  fn increment_names_parse() {
    assert_eq!(parse_increment_name("backup_20240115_123045"), Some((1_705_321_845, 0)));
    assert_eq!(parse_increment_name("backup_20240115_123045_3"), Some((1_705_321_845, 3)));
    assert_eq!(parse_increment_name("backup_20240115_123045_12"), Some((1_705_321_845, 12)));
    assert_eq!(parse_increment_name("backup_19700101_000000"), Some((0, 0)));
    assert_eq!(parse_increment_name("backup_20000229_000000"), Some((951_782_400, 0)));
    // A name written is a name parsed, at any instant.
    for secs in [0u64, 951_782_400, 1_705_321_845, 4_102_444_799] {
      let t = UNIX_EPOCH + Duration::from_secs(secs);
      assert_eq!(parse_increment_name(&increment_name(t)), Some((secs as i64, 0)));
    }
  }

  #[test]
  fn bad_increment_names_are_refused() {
    for bad in [
      "backup_20241315_123045", // month 13
      "backup_20240015_123045", // month 0
      "backup_20240230_123045", // February 30
      "backup_20230229_123045", // not a leap year
      "backup_19000229_000000", // not a leap year either
      "backup_20240431_000000", // April 31
      "backup_20240100_000000", // day 0
      "backup_20240115_243045", // hour 24
      "backup_20240115_126045", // minute 60
      "backup_20240115_12304",  // short
      "backup_20240115_123045_",
      "backup_20240115_123045_x",
      "backup_20240115_123045-1",
      "backup_2024O115_123045",
      "backup_20240115123045",
      "backup_",
      "mirror",
      ".axiomatic",
      "",
    ] {
      assert_eq!(parse_increment_name(bad), None, "{bad:?}");
      assert!(!is_increment_name(bad), "{bad:?}");
    }
  }

  #[test]
  fn calendar_round_trips() {
    for days in -800_000..800_000 {
      let (y, m, d) = civil(days);
      assert_eq!(days_from_civil(y, m, d), days);
    }
  }

  #[test]
  fn paths() {
    let l = Layout::new(Path::new("/b"));
    assert_eq!(l.state, Path::new("/b/.axiomatic/state.jsonl"));
    assert_eq!(l.journal, Path::new("/b/.axiomatic/journal.jsonl"));
    assert_eq!(l.lock, Path::new("/b/.axiomatic/lock"));
    assert_eq!(l.last_run, Path::new("/b/.axiomatic/last-run.json"));
    assert_eq!(l.mirror_path("a/b"), Path::new("/b/mirror/a/b"));
    assert_eq!(meta_file_name("backup_20240115_123045"), "backup_20240115_123045.json");
  }

  #[test]
  fn iso_times() {
    assert_eq!(parse_iso("2024-01-15T12:30:45.123Z"), Some((1_705_321_845, 123_000_000)));
    assert_eq!(parse_iso("2024-01-15T14:30:45+02:00"), Some((1_705_321_845, 0)));
    assert_eq!(parse_iso("2024-01-15T12:30:45.123456789123Z"), Some((1_705_321_845, 123_456_789)));
    assert_eq!(parse_iso("2024-01-15"), None);
    assert_eq!(parse_iso("2024-13-15T12:30:45Z"), None);
    // Without a zone: local time (whatever the zone, within a day of UTC).
    let (t, n) = parse_iso("2024-01-15T12:30:45.5").unwrap();
    assert!((t - 1_705_321_845).abs() <= 14 * 3600 && n == 500_000_000);
  }
}
