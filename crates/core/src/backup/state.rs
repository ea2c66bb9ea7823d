//! The mirror state: what the last successful run left in `dst/mirror`.
//!
//! Stored as `dst/.axiomatic/state.jsonl`: a header line, then one JSON
//! object per mirrored entry, sorted by path. Written to a temp file, fsynced
//! and renamed over the old one, so a reader sees either the old or the new
//! state, never a mix. Tracked entries carry the SHA-256 of the version the
//! mirror holds (computed when it was copied); entries with xattrs a digest
//! of them, later members of a hard-link group the group's first path.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backup::scan::Kind;
use crate::error::Error;
use crate::fs::util;

pub const FORMAT: &str = "axiomatic-mirror-state";
pub const VERSION: u32 = 1;

/// One mirrored entry: one line of the state file, read and written
/// through the same serde attributes (short keys on disk, optional keys
/// left out when empty), so what is written reads back as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
  #[serde(rename = "p")]
  pub rel: Box<str>,
  #[serde(rename = "k")]
  pub kind: Kind,
  #[serde(rename = "s")]
  pub size: u64,
  #[serde(rename = "m")]
  pub mtime_ns: i64,
  #[serde(rename = "mode")]
  pub mode: u32,
  #[serde(rename = "t")]
  pub tracked: bool,
  #[serde(rename = "h", default, skip_serializing_if = "Option::is_none", with = "sha_hex")]
  pub sha256: Option<Box<[u8; 32]>>,
  /// The mirror holds a copy read while the file kept changing: the next
  /// run copies it again whatever its size and mtime say.
  #[serde(rename = "i", default, skip_serializing_if = "std::ops::Not::not")]
  pub inconsistent: bool,
  /// A hard-link group's later member: the group's first path, which the
  /// mirror copy is a hardlink of.
  #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
  pub link: Option<Box<str>>,
  /// Digest of the xattrs (ACLs included) the mirror copy holds.
  #[serde(rename = "x", default, skip_serializing_if = "Option::is_none", with = "sha_hex")]
  pub xattr: Option<Box<[u8; 32]>>,
  /// The source file's change stamp (`scan::change_stamp`) when it was
  /// seen without xattrs; 0 (left out) = unknown. A run that sees the same
  /// stamp skips listing the file's xattrs.
  #[serde(rename = "c", default, skip_serializing_if = "is_zero")]
  pub stamp: u64,
}

fn is_zero(v: &u64) -> bool {
  *v == 0
}

/// A SHA-256 (boxed: most entries have none) as lowercase hex.
mod sha_hex {
  use serde::{Deserializer, Serializer};
  #[allow(clippy::ref_option, clippy::borrowed_box)]
  pub fn serialize<S: Serializer>(v: &Option<Box<[u8; 32]>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
      Some(b) => s.serialize_str(&hex::encode(**b)),
      None => s.serialize_none(),
    }
  }
  /// Decoded straight from the parser's buffer: no `String` per entry (a
  /// state of a million tracked files spent a quarter of its read there).
  pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<[u8; 32]>>, D::Error> {
    d.deserialize_option(OptHex)
  }

  struct OptHex;
  struct Hex;

  impl<'de> serde::de::Visitor<'de> for OptHex {
    type Value = Option<Box<[u8; 32]>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
      f.write_str("null or 64 hex digits")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
      Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
      Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
      d.deserialize_str(Hex).map(|h| Some(Box::new(h)))
    }
  }

  impl<'de> serde::de::Visitor<'de> for Hex {
    type Value = [u8; 32];
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
      f.write_str("64 hex digits")
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
      let mut out = [0u8; 32];
      if !crate::fs::util::decode_hex(s.as_bytes(), &mut out) {
        return Err(E::custom(format!("not a SHA-256 (64 hex digits): {s:?}")));
      }
      Ok(out)
    }
  }
}

#[derive(Serialize, Deserialize)]
struct Header {
  format: String,
  version: u32,
  entries: u64,
}

/// Reads the state; a missing file is an empty state (first run). Lines
/// are parsed in parallel, a block of a few MiB at a time.
pub fn read(path: &Path) -> Result<Vec<StateEntry>, Error> {
  use rayon::prelude::*;
  let f = match File::open(path) {
    Ok(f) => f,
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
    Err(e) => return Err(Error::io(path, "cannot read the mirror state", &e)),
  };
  let rebuild = "restore it from a copy, or move it aside to start over (the next run then copies everything \
                 again and records every tracked file as new)";
  let mut r = BufReader::with_capacity(1 << 20, f);
  let mut header = String::new();
  r.read_line(&mut header).map_err(|e| Error::io(path, "cannot read the mirror state", &e))?;
  if header.is_empty() {
    return Err(Error::corrupt(path, format!("the mirror state is empty; {rebuild}")));
  }
  let header: Header =
    serde_json::from_str(&header).map_err(|e| Error::corrupt(path, format!("not a mirror state file ({e}); {rebuild}")))?;
  if header.format != FORMAT || header.version > VERSION {
    return Err(Error::corrupt(path, format!("unsupported mirror state {} v{}", header.format, header.version)));
  }
  let mut out: Vec<StateEntry> = Vec::with_capacity(header.entries as usize);
  let mut block: Vec<u8> = Vec::with_capacity(8 << 20);
  loop {
    block.clear();
    // A block of whole lines: up to 8 MiB, then to the end of that line.
    let mut chunk = (&mut r).take(8 << 20);
    chunk.read_to_end(&mut block).map_err(|e| Error::io(path, "cannot read the mirror state", &e))?;
    if block.is_empty() {
      break;
    }
    if block.last() != Some(&b'\n') {
      r.read_until(b'\n', &mut block).map_err(|e| Error::io(path, "cannot read the mirror state", &e))?;
    }
    let mut lines = Vec::with_capacity(block.len() / 64);
    let mut at = 0;
    for end in memchr::memchr_iter(b'\n', &block).chain(std::iter::once(block.len())) {
      if end > at {
        lines.push(&block[at..end]);
      }
      at = end + 1;
    }
    let parsed: Result<Vec<StateEntry>, String> = lines.par_iter().map(|l| serde_json::from_slice(l).map_err(|e| e.to_string())).collect();
    out.extend(parsed.map_err(|e| Error::corrupt(path, format!("{e}; {rebuild}")))?);
  }
  if out.len() as u64 != header.entries {
    return Err(Error::corrupt(path, format!("truncated: {} of {} entries; {rebuild}", out.len(), header.entries)));
  }
  if !out.windows(2).all(|w| w[0].rel < w[1].rel) {
    out.par_sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
  }
  Ok(out)
}

impl StateEntry {
  /// The entry for the mirror file `mirror/<rel>` as it is (rebuilding a
  /// state: `recreate`, adopting a folder of the original backup.py): its
  /// size, mtime, mode and xattrs; the SHA-256 read from it when `hash`.
  pub fn from_mirror(mirror: &Path, rel: &str, md: &fs::Metadata, tracked: bool, hash: bool, link: Option<Box<str>>) -> Self {
    use std::os::unix::fs::MetadataExt;
    let file = mirror.join(crate::fs::names::to_path(rel));
    StateEntry {
      rel: rel.into(),
      kind: if md.file_type().is_symlink() { Kind::Symlink } else { Kind::File },
      size: md.len(),
      mtime_ns: util::mtime_ns(md),
      mode: md.mode() & 0o7777,
      tracked,
      sha256: if hash { util::sha256_of(&file).ok().map(Box::new) } else { None },
      inconsistent: false,
      link,
      xattr: crate::fs::xattrs::digest(&crate::fs::xattrs::read_quiet(&file)).map(Box::new),
      stamp: 0,
    }
  }

  /// The recorded SHA-256, if any.
  pub fn sha(&self) -> Option<[u8; 32]> {
    self.sha256.as_deref().copied()
  }
}

/// Writes the state atomically (temp file, fsync, rename, fsync of the
/// folder), streaming `count` lines in path order. Lines are borrowed
/// where the caller has them as they are (no second copy of a big state).
pub fn write<'a>(path: &Path, count: u64, lines: impl Iterator<Item = Cow<'a, StateEntry>>) -> Result<(), Error> {
  let dir = path.parent().expect("state path has a parent");
  fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create", &e))?;
  util::write_atomic(path, |w| {
    let mut w = BufWriter::with_capacity(1 << 20, w);
    serde_json::to_writer(&mut w, &Header { format: FORMAT.into(), version: VERSION, entries: count })?;
    w.write_all(b"\n")?;
    for e in lines {
      serde_json::to_writer(&mut w, &*e)?;
      w.write_all(b"\n")?;
    }
    w.flush()
  })
}

#[cfg(test)]
mod tests {
  use super::*;

  /// Lines in the format written so far read and write back byte for byte.
  #[test]
  fn lines_round_trip() {
    for line in [
      r#"{"p":"a/b.txt","k":"file","s":3,"m":1705321845123456789,"mode":420,"t":false}"#,
      r#"{"p":"t","k":"file","s":0,"m":-5,"mode":493,"t":true,"h":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","i":true,"l":"lead","x":"00000000000000000000000000000000000000000000000000000000000000ff"}"#,
      r#"{"p":"s","k":"symlink","s":4,"m":0,"mode":511,"t":true,"h":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#,
    ] {
      let e: StateEntry = serde_json::from_str(line).unwrap();
      assert_eq!(serde_json::to_string(&e).unwrap(), line);
    }
    let e: StateEntry = serde_json::from_str(r#"{"p":"a","k":"file","s":1,"m":2,"mode":420,"t":true,"h":null,"l":null}"#).unwrap();
    assert_eq!((e.sha256, e.link, e.inconsistent), (None, None, false));
  }
}
