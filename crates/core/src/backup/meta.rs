//! Increment metadata (`backup_X/backup_X.json`) and the run journal.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Deserializer, Serialize};

use crate::backup::scan::Kind;
use crate::error::Error;
use crate::fs::util;

pub const METADATA_VERSION: u32 = 1;

/// One file of an increment's catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CatalogEntry {
  pub size: u64,
  /// Seconds since the epoch, with fraction (as Python's `st_mtime`).
  pub mtime: f64,
  /// Nanoseconds since the epoch, as a decimal string (exact). Empty when
  /// read from the original's metadata (then `mtime` is all there is).
  #[serde(default)]
  pub mtime_ns: String,
  /// 0 when unknown (the original's metadata): the stored file's mode is used.
  #[serde(default)]
  pub mode: u32,
  #[serde(default = "file_kind")]
  pub kind: Kind,
  /// `track` (a stored version) or `deleted` (the version that was deleted).
  pub category: String,
  /// `new`, `changed` or `deleted`.
  #[serde(default)]
  pub op: String,
  /// SHA-256 of the content (of the target for a symlink); null if unknown.
  #[serde(default)]
  pub sha256: Option<String>,
  /// `hardlink` to the mirror, or `copy` where a hardlink was impossible.
  #[serde(default = "hardlink")]
  pub stored_as: String,
  /// Set when `prune` moved this entry here from a removed increment.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub carried_from: Option<String>,
  /// `true` when the file kept changing while it was read: the stored copy
  /// may mix old and new content (absent otherwise).
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub inconsistent: Option<bool>,
  /// A hard-link group's later member: the group's first path (the stored
  /// file is the same inode as that path's version).
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub link: Option<String>,
  /// Extended attributes (ACLs included): name → hex value.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub xattrs: Option<BTreeMap<String, String>>,
}

fn file_kind() -> Kind {
  Kind::File
}

fn hardlink() -> String {
  "hardlink".into()
}

/// Counts of one increment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
  #[serde(default)]
  pub new: u64,
  #[serde(default)]
  pub changed: u64,
  #[serde(default)]
  pub deleted: u64,
  #[serde(default)]
  pub total: u64,
  /// Sum of the sizes of the catalog's entries (absent in old metadata).
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub bytes: Option<u64>,
  /// Entries carried in from increments removed by `prune`.
  #[serde(default, skip_serializing_if = "is_zero")]
  pub carried: u64,
  /// The original `backup.py`'s keys (`backup_tool.py list` prints them):
  /// stored versions (`new + changed`), deletions, and their sum.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub new_or_changed_tracked: Option<u64>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub deleted_tracked: Option<u64>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub total_operations: Option<u64>,
  /// Only for metadata of the original, which does not tell new from
  /// changed: how many stored versions it has (never written).
  #[serde(default, skip_serializing)]
  pub new_or_changed: Option<u64>,
}

impl Summary {
  /// Fills in the original's keys from ours (real counts).
  pub fn with_original_keys(mut self) -> Self {
    self.new_or_changed_tracked = Some(self.new + self.changed);
    self.deleted_tracked = Some(self.deleted);
    self.total_operations = Some(self.new + self.changed + self.deleted);
    self
  }
}

/// The original `backup_tool.py`'s `statistics` keys (`total_files`,
/// `total_size`: the catalog's entries and the sum of their sizes) added
/// to ours, so `backup_tool.py list --detailed` shows real numbers.
pub fn with_original_statistics(mut stats: serde_json::Value, s: &Summary) -> serde_json::Value {
  if !stats.is_object() {
    stats = serde_json::json!({});
  }
  stats["total_files"] = s.total.into();
  stats["total_size"] = s.bytes.unwrap_or(0).into();
  stats
}

fn is_zero(n: &u64) -> bool {
  *n == 0
}

/// The whole metadata file of an increment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncrementMeta {
  #[serde(default, deserialize_with = "version_any")]
  pub version: u32,
  #[serde(default)]
  pub backup_name: String,
  /// ISO 8601 UTC.
  #[serde(default)]
  pub timestamp: String,
  /// `run` for a normal run, `recovered` when finished after an interruption.
  #[serde(default)]
  pub origin: String,
  pub file_catalog: BTreeMap<String, CatalogEntry>,
  #[serde(default)]
  pub summary: Summary,
  #[serde(default)]
  pub statistics: serde_json::Value,
  /// The original's keys, only read (see [`crate::backup::increments::Head`]).
  #[serde(default, skip_serializing)]
  pub backup_timestamp: String,
  #[serde(default, skip_serializing)]
  pub backup_type: String,
}

pub fn catalog_entry(size: u64, mtime_ns: i64, mode: u32, kind: Kind, op: &str, sha: Option<[u8; 32]>, copied: bool) -> CatalogEntry {
  CatalogEntry {
    size,
    mtime: mtime_ns as f64 / 1e9,
    mtime_ns: mtime_ns.to_string(),
    mode,
    kind,
    category: if op == "deleted" { "deleted".into() } else { "track".into() },
    op: op.into(),
    sha256: sha.map(hex::encode),
    stored_as: if copied { "copy".into() } else { "hardlink".into() },
    carried_from: None,
    inconsistent: None,
    link: None,
    xattrs: None,
  }
}

pub fn summarize(catalog: &BTreeMap<String, CatalogEntry>) -> Summary {
  let mut s = Summary::default();
  for e in catalog.values() {
    if e.carried_from.is_some() {
      s.carried += 1;
      continue;
    }
    match e.op.as_str() {
      "new" => s.new += 1,
      "changed" => s.changed += 1,
      _ => s.deleted += 1,
    }
  }
  s.total = catalog.len() as u64;
  s.bytes = Some(catalog.values().map(|e| e.size).sum());
  s.with_original_keys()
}

/// Everything of an increment's metadata but the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct MetaHead {
  pub version: u32,
  pub backup_name: String,
  pub timestamp: String,
  /// The original `backup_tool.py`'s keys, for its `list` and `search`:
  /// the same instant as `timestamp`, and always `incremental`.
  pub backup_timestamp: String,
  pub backup_type: &'static str,
  pub origin: String,
  pub summary: Summary,
  pub statistics: serde_json::Value,
}

/// Writes an increment's metadata atomically, streaming the catalog
/// (entries in path order), so a first backup of a million files needs no
/// catalog in memory. The result reads back as an `IncrementMeta`.
pub fn write_meta<'a>(path: &Path, head: &MetaHead, catalog: impl Iterator<Item = (&'a str, CatalogEntry)>) -> Result<(), Error> {
  stage_meta(path, head, catalog)?.publish()
}

/// [`write_meta`] up to its publication (see [`util::stage_atomic`]).
pub fn stage_meta<'a>(path: &Path, head: &MetaHead, catalog: impl Iterator<Item = (&'a str, CatalogEntry)>) -> Result<util::Staged, Error> {
  util::stage_atomic(path, |f| {
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let head = serde_json::to_string_pretty(head)?;
    w.write_all(&head.as_bytes()[..head.len() - 2])?; // without the closing "\n}"
    w.write_all(b",\n  \"file_catalog\": {")?;
    for (i, (rel, e)) in catalog.enumerate() {
      w.write_all(if i == 0 { b"\n    " } else { b",\n    " })?;
      serde_json::to_writer(&mut w, rel)?;
      w.write_all(b": ")?;
      serde_json::to_writer(&mut w, &e)?;
    }
    w.write_all(b"\n  }\n}\n")?;
    w.flush()
  })
}

/// Writes changed metadata back (atomically), with its summary recomputed.
pub fn rewrite_meta(path: &Path, m: &IncrementMeta) -> Result<(), Error> {
  let summary = summarize(&m.file_catalog);
  let head = MetaHead {
    version: METADATA_VERSION,
    backup_name: m.backup_name.clone(),
    timestamp: m.timestamp.clone(),
    backup_timestamp: m.timestamp.clone(),
    backup_type: "incremental",
    origin: m.origin.clone(),
    statistics: with_original_statistics(m.statistics.clone(), &summary),
    summary,
  };
  write_meta(path, &head, m.file_catalog.iter().map(|(p, e)| (p.as_str(), e.clone())))
}

/// Reads a whole metadata file, ours or the original's (whose entries lack
/// `mtime_ns`, `mode`, `op`…: filled in from what they have).
pub fn read_meta(path: &Path) -> Result<IncrementMeta, Error> {
  let f = File::open(path).map_err(|e| Error::io(path, "cannot read", &e))?;
  let mut m: IncrementMeta =
    serde_json::from_reader(BufReader::new(f)).map_err(|e| Error::corrupt(path, format!("invalid increment metadata: {e}")))?;
  if m.timestamp.is_empty() || !m.timestamp.ends_with('Z') {
    let ts = if m.timestamp.is_empty() { &m.backup_timestamp } else { &m.timestamp };
    if let Some((s, n)) = crate::layout::parse_iso(ts) {
      m.timestamp = crate::layout::iso(UNIX_EPOCH + std::time::Duration::new(s.max(0) as u64, n));
    }
  }
  if m.origin.is_empty() {
    m.origin = "original".into();
    // backup.py never lists its deleted files (see increments::parse_filtered).
    if let Some(dir) = path.parent() {
      let mut warnings = Vec::new();
      for (p, md) in crate::fs::walk::files(&dir.join("deleted"), &mut warnings) {
        let ns = util::mtime_ns(&md);
        let kind = if md.file_type().is_symlink() { Kind::Symlink } else { Kind::File };
        m.file_catalog.entry(p).or_insert_with(|| catalog_entry(md.len(), ns, 0, kind, "deleted", None, false));
      }
    }
  }
  for e in m.file_catalog.values_mut() {
    if e.mtime_ns.is_empty() {
      e.mtime_ns = ((e.mtime * 1e9).round() as i64).to_string();
    }
    let deleted = e.category == "deleted" || e.category == "delete";
    e.category = if deleted { "deleted".into() } else { "track".into() };
    if e.op.is_empty() {
      e.op = if deleted { "deleted".into() } else { "new".into() };
    }
  }
  Ok(m)
}

/// What an operation does to one path (the journal's `op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
  /// Copy from src into the mirror (and link into `track/` if tracked).
  Copy,
  /// The mirror is current; only link it into `track/` (became tracked).
  Link,
  /// Tracked file gone: link into `deleted/`, unlink from the mirror.
  Delete,
  /// Untracked file gone: unlink from the mirror.
  Remove,
}

impl OpKind {
  /// Copies and links put a version into the mirror (and `track/`).
  pub fn stores(self) -> bool {
    matches!(self, OpKind::Copy | OpKind::Link)
  }
  /// Deletes and removes take a path out of the mirror.
  pub fn removes(self) -> bool {
    !self.stores()
  }
}

/// What a copy or link records in the increment (the journal's `change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
  New,
  Changed,
}

impl Change {
  /// The catalog's `op`.
  pub fn as_str(self) -> &'static str {
    match self {
      Change::New => "new",
      Change::Changed => "changed",
    }
  }
}

/// One planned operation, as written to the journal before it is applied.
/// The keys on disk are short (one line per operation, a million lines for
/// a first backup); the field names say what they are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JournalOp {
  #[serde(rename = "p")]
  pub rel: String,
  pub op: OpKind,
  /// For copy/link.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub change: Option<Change>,
  #[serde(rename = "t")]
  pub tracked: bool,
  #[serde(rename = "k")]
  pub kind: Kind,
  #[serde(rename = "s")]
  pub size: u64,
  #[serde(rename = "m")]
  pub mtime_ns: i64,
  pub mode: u32,
  /// For a delete: the SHA-256 (hex) of the version deleted, if known.
  #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
  pub sha256: Option<String>,
  /// For a hard-link group's later member: the group's first path.
  #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
  pub link: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalHeader {
  pub format: String,
  pub increment: Option<String>,
  pub started: String,
  pub ops: u64,
}

/// Writes the journal, one operation at a time (nothing is materialized).
pub fn write_journal(path: &Path, header: &JournalHeader, ops: impl Iterator<Item = JournalOp>) -> Result<(), Error> {
  util::write_atomic(path, |f| {
    let mut w = BufWriter::with_capacity(1 << 20, f);
    serde_json::to_writer(&mut w, header)?;
    w.write_all(b"\n")?;
    for op in ops {
      serde_json::to_writer(&mut w, &op)?;
      w.write_all(b"\n")?;
    }
    w.flush()
  })
}

pub fn read_journal(path: &Path) -> Result<Option<(JournalHeader, Vec<JournalOp>)>, Error> {
  let f = match File::open(path) {
    Ok(f) => f,
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
    Err(e) => return Err(Error::io(path, "cannot read the run journal", &e)),
  };
  let mut lines = BufReader::new(f).lines();
  let bad = |m: String| Error::corrupt(path, m);
  let header: JournalHeader = match lines.next() {
    Some(Ok(l)) => serde_json::from_str(&l).map_err(|e| bad(format!("invalid journal header: {e}")))?,
    _ => return Err(bad("empty journal".into())),
  };
  let mut ops = Vec::with_capacity(header.ops as usize);
  for l in lines {
    let l = l.map_err(|e| Error::io(path, "cannot read the run journal", &e))?;
    ops.push(serde_json::from_str(&l).map_err(|e| bad(format!("invalid journal line: {e}")))?);
  }
  Ok(Some((header, ops)))
}

/// An interrupted run, as its journal describes it, for the readers of a
/// backup (`verify --backup`, `restore`, `status`): until the next run
/// finishes it, the mirror may already hold versions the mirror state does
/// not describe yet (a copy renamed into place before the state was
/// written), or lack entries the state still lists. Those are pending, not
/// damaged.
#[derive(Debug, Clone, Serialize)]
pub struct PendingRun {
  /// The increment it was building (under `.axiomatic/incomplete/`), if any.
  pub increment: Option<String>,
  pub started: String,
  /// Operations it planned.
  pub ops: u64,
  #[serde(skip)]
  by_path: std::collections::HashMap<String, JournalOp>,
}

impl PendingRun {
  /// The unfinished run of a backup folder, if its journal exists and can be read.
  pub fn read(journal: &Path) -> Option<Self> {
    let (h, ops) = read_journal(journal).ok()??;
    Some(Self { increment: h.increment, started: h.started, ops: h.ops, by_path: ops.into_iter().map(|o| (o.rel.clone(), o)).collect() })
  }

  /// The journaled operation on `rel` if the run already applied it to the
  /// mirror entry `mirror` (and so the mirror differs from what the state
  /// `recorded` as (size, mtime_ns)): a copy whose result is in place
  /// (journaled size and mtime), or a delete/remove whose entry is gone.
  pub fn applied(&self, rel: &str, mirror: &Path, recorded: Option<(u64, i64)>) -> Option<&JournalOp> {
    let op = self.by_path.get(rel)?;
    let md = fs::symlink_metadata(mirror).ok();
    if op.op.stores() {
      let md = md?;
      let now = (md.len(), util::mtime_ns(&md));
      (now == (op.size, op.mtime_ns) && recorded != Some(now)).then_some(op)
    } else {
      md.is_none().then_some(op)
    }
  }
}

/// Removes a directory tree if it exists.
pub fn remove_tree(p: &Path) -> Result<(), Error> {
  match fs::remove_dir_all(p) {
    Ok(()) => Ok(()),
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
    Err(e) => Err(Error::io(p, "cannot remove", &e)),
  }
}

/// A metadata version as a number (ours) or a string such as `"1.0"` (the
/// original scripts'): its major number.
pub(crate) fn version_any<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
  #[derive(Deserialize)]
  #[serde(untagged)]
  enum V {
    N(u32),
    F(f64),
    S(String),
  }
  match V::deserialize(d)? {
    V::N(n) => Ok(n),
    V::F(f) if f >= 0.0 && f < f64::from(u32::MAX) => Ok(f as u32),
    V::S(s) => s
      .split('.')
      .next()
      .and_then(|m| m.trim().parse().ok())
      .ok_or_else(|| serde::de::Error::custom(format!("invalid version {s:?}, expected a number such as 1 or \"1.0\""))),
    V::F(f) => Err(serde::de::Error::custom(format!("invalid version {f}"))),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  /// Journal lines as runs have written them read into the typed record and
  /// write back byte for byte (an old journal is still finished by recover).
  #[test]
  fn journal_lines_keep_their_format() {
    let lines = [
      r#"{"p":"docs/a.txt","op":"copy","change":"new","t":true,"k":"file","s":12,"m":1705321845123456789,"mode":420}"#,
      r#"{"p":"docs/b","op":"link","change":"changed","t":true,"k":"symlink","s":3,"m":-1,"mode":511,"l":"docs/lead"}"#,
      r#"{"p":"gone","op":"delete","t":true,"k":"file","s":0,"m":0,"mode":384,"h":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#,
      r#"{"p":"x","op":"remove","t":false,"k":"file","s":1,"m":2,"mode":420}"#,
    ];
    let ops: Vec<JournalOp> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((ops[0].op, ops[0].change, ops[0].tracked, ops[0].size), (OpKind::Copy, Some(Change::New), true, 12));
    assert_eq!(
      (ops[1].op, ops[1].change, ops[1].kind, ops[1].link.as_deref()),
      (OpKind::Link, Some(Change::Changed), Kind::Symlink, Some("docs/lead"))
    );
    assert_eq!((ops[2].op, ops[2].sha256.as_deref().map(str::len), ops[2].mode), (OpKind::Delete, Some(64), 384));
    assert_eq!((ops[3].op, ops[3].tracked, ops[3].mtime_ns), (OpKind::Remove, false, 2));
    for (op, line) in ops.iter().zip(lines) {
      assert_eq!(serde_json::to_string(op).unwrap(), line);
    }
    assert!(serde_json::from_str::<JournalOp>(r#"{"p":"a","op":"move","t":true,"k":"file","s":1,"m":2,"mode":420}"#).is_err());
  }
}
