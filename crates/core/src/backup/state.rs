//! The mirror state: what the last successful run left in `dst/mirror`.
//!
//! Stored as `dst/.axiomatic/state.jsonl`: a header line, then one JSON
//! object per mirrored entry, sorted by path. Written to a temp file, fsynced
//! and renamed over the old one, so a reader sees either the old or the new
//! state, never a mix. Tracked entries carry the SHA-256 of the version the
//! mirror holds (computed when it was copied); entries with xattrs a digest
//! of them, later members of a hard-link group the group's first path.
//!
//! In memory an entry is its fixed-size fields and one allocation holding
//! the rest (digests, link, path): a run holds the whole state beside the
//! scan, and a boxed path plus a boxed digest per tracked file (two
//! allocations, each with its allocator header and rounding) was the
//! largest part of a no-change run's peak memory.

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
/// through [`Line`] (short keys on disk, optional keys left out when
/// empty), so what is written reads back as it was. Built from and read
/// as [`Fields`].
#[derive(Clone, PartialEq, Eq)]
pub struct StateEntry {
  /// The variable-length fields in one allocation: the SHA-256 (if
  /// [`HAS_SHA`]), the xattr digest (if [`HAS_XATTR`]), the link's length
  /// (4 bytes, little-endian) and bytes (if [`HAS_LINK`]), then the path
  /// (the rest). Built only from `&str`s by [`StateEntry::new`]. Behind
  /// a thin pointer: 8 bytes less per entry than a `Box<[u8]>`.
  data: Thin,
  pub size: u64,
  pub mtime_ns: i64,
  /// The source file's change stamp (`scan::change_stamp`) when it was
  /// seen without xattrs; 0 (left out) = unknown. A run that sees the same
  /// stamp skips listing the file's xattrs.
  pub stamp: u64,
  pub mode: u32,
  pub kind: Kind,
  pub tracked: bool,
  /// The mirror holds a copy read while the file kept changing: the next
  /// run copies it again whatever its size and mtime say.
  pub inconsistent: bool,
  /// Which of the optional parts `data` holds.
  has: u8,
}

const HAS_SHA: u8 = 1;
const HAS_XATTR: u8 = 2;
const HAS_LINK: u8 = 4;

/// A state entry's fields, borrowed: what builds one ([`StateEntry::new`])
/// and what one reads as ([`StateEntry::fields`]), so a changed copy is
/// `StateEntry::new(Fields { tracked: false, ..e.fields() })`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
  pub rel: &'a str,
  pub kind: Kind,
  pub size: u64,
  pub mtime_ns: i64,
  pub mode: u32,
  pub tracked: bool,
  /// The SHA-256 of a tracked entry.
  pub sha256: Option<[u8; 32]>,
  pub inconsistent: bool,
  /// A hard-link group's later member: the group's first path, which the
  /// mirror copy is a hardlink of (`l`).
  pub link: Option<&'a str>,
  /// The digest of the xattrs (ACLs included) the mirror copy holds (`x`).
  pub xattr: Option<[u8; 32]>,
  pub stamp: u64,
}

impl StateEntry {
  /// The entry of `f`, its digests, link and path in one allocation.
  pub fn new(f: Fields<'_>) -> Self {
    let link_len = f.link.map(|l| u32::try_from(l.len()).expect("a path shorter than 4 GiB").to_le_bytes());
    let data = Thin::new(&[
      f.sha256.as_ref().map_or(&[][..], |h| h),
      f.xattr.as_ref().map_or(&[][..], |x| x),
      link_len.as_ref().map_or(&[][..], |n| n),
      f.link.map_or(&[][..], str::as_bytes),
      f.rel.as_bytes(),
    ]);
    let has = [(f.sha256.is_some(), HAS_SHA), (f.xattr.is_some(), HAS_XATTR), (f.link.is_some(), HAS_LINK)]
      .into_iter()
      .fold(0, |has, (yes, bit)| if yes { has | bit } else { has });
    StateEntry {
      data,
      size: f.size,
      mtime_ns: f.mtime_ns,
      stamp: f.stamp,
      mode: f.mode,
      kind: f.kind,
      tracked: f.tracked,
      inconsistent: f.inconsistent,
      has,
    }
  }

  /// Every field, borrowed.
  pub fn fields(&self) -> Fields<'_> {
    Fields {
      rel: self.rel(),
      kind: self.kind,
      size: self.size,
      mtime_ns: self.mtime_ns,
      mode: self.mode,
      tracked: self.tracked,
      sha256: self.sha(),
      inconsistent: self.inconsistent,
      link: self.link(),
      xattr: self.xattr().copied(),
      stamp: self.stamp,
    }
  }

  /// Where the link's length is, and where the path starts.
  fn offsets(&self) -> (usize, usize) {
    let at = if self.has & HAS_SHA != 0 { 32 } else { 0 } + if self.has & HAS_XATTR != 0 { 32 } else { 0 };
    if self.has & HAS_LINK == 0 {
      return (at, at);
    }
    let n = u32::from_le_bytes(self.data.bytes()[at..at + 4].try_into().expect("4 bytes")) as usize;
    (at, at + 4 + n)
  }

  /// Bytes of `data` that [`StateEntry::new`] copied from a `&str`.
  fn str_at(&self, from: usize, to: usize) -> &str {
    let b = &self.data.bytes()[from..to];
    debug_assert!(std::str::from_utf8(b).is_ok());
    // SAFETY: `new` writes the link and the path from `&str`s at exactly
    // these offsets, and `data` is never changed after.
    unsafe { std::str::from_utf8_unchecked(b) }
  }

  /// The path, relative to the mirror, `/`-separated.
  pub fn rel(&self) -> &str {
    let (_, at) = self.offsets();
    self.str_at(at, self.data.bytes().len())
  }

  /// The recorded SHA-256, if any.
  pub fn sha(&self) -> Option<[u8; 32]> {
    (self.has & HAS_SHA != 0).then(|| self.data.bytes()[..32].try_into().expect("32 bytes"))
  }

  /// The digest of the xattrs (ACLs included); `None` = none.
  pub fn xattr(&self) -> Option<&[u8; 32]> {
    let at = if self.has & HAS_SHA != 0 { 32 } else { 0 };
    (self.has & HAS_XATTR != 0).then(|| self.data.bytes()[at..at + 32].try_into().expect("32 bytes"))
  }

  /// A hard-link group's later member: the group's first path.
  pub fn link(&self) -> Option<&str> {
    if self.has & HAS_LINK == 0 {
      return None;
    }
    let (n, rel) = self.offsets();
    Some(self.str_at(n + 4, rel))
  }
}

/// Bytes owned behind one thin pointer, their length (`u32`) in front of
/// them in the same allocation: what a `Box<[u8]>` is, in 8 bytes instead
/// of 16 (a million state entries are held at once).
struct Thin(std::ptr::NonNull<u8>);

// SAFETY: `Thin` owns its bytes like a `Box<[u8]>` and never changes them
// after `new`: sending or sharing it is as safe as for the box.
unsafe impl Send for Thin {}
unsafe impl Sync for Thin {}

impl Thin {
  const HEAD: usize = std::mem::size_of::<u32>();

  fn layout(len: usize) -> std::alloc::Layout {
    std::alloc::Layout::array::<u8>(Self::HEAD + len).expect("a state entry's size fits in memory")
  }

  /// The bytes of `parts`, one after the other.
  fn new(parts: &[&[u8]]) -> Self {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let n = u32::try_from(len).expect("a state entry shorter than 4 GiB");
    let layout = Self::layout(len);
    // SAFETY: `layout` is never zero-sized (it has the length in front);
    // the writes fill it exactly.
    unsafe {
      let p = std::alloc::alloc(layout);
      let Some(p) = std::ptr::NonNull::new(p) else { std::alloc::handle_alloc_error(layout) };
      std::ptr::copy_nonoverlapping(n.to_le_bytes().as_ptr(), p.as_ptr(), Self::HEAD);
      let mut at = Self::HEAD;
      for part in parts {
        std::ptr::copy_nonoverlapping(part.as_ptr(), p.as_ptr().add(at), part.len());
        at += part.len();
      }
      Thin(p)
    }
  }

  fn bytes(&self) -> &[u8] {
    // SAFETY: `new` wrote the length and that many bytes after it.
    unsafe {
      let mut n = [0u8; Self::HEAD];
      std::ptr::copy_nonoverlapping(self.0.as_ptr(), n.as_mut_ptr(), Self::HEAD);
      std::slice::from_raw_parts(self.0.as_ptr().add(Self::HEAD), u32::from_le_bytes(n) as usize)
    }
  }
}

impl Drop for Thin {
  fn drop(&mut self) {
    // SAFETY: allocated by `new` with this very layout.
    unsafe { std::alloc::dealloc(self.0.as_ptr(), Self::layout(self.bytes().len())) }
  }
}

impl Clone for Thin {
  fn clone(&self) -> Self {
    Self::new(&[self.bytes()])
  }
}

impl PartialEq for Thin {
  fn eq(&self, o: &Self) -> bool {
    self.bytes() == o.bytes()
  }
}

impl Eq for Thin {}

impl std::fmt::Debug for StateEntry {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    self.fields().fmt(f)
  }
}

/// A line of the state file as serde reads and writes it: the entry's
/// [`Fields`], with the strings owned where the line escapes them.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
  #[serde(rename = "p", borrow)]
  rel: Cow<'a, str>,
  #[serde(rename = "k")]
  kind: Kind,
  #[serde(rename = "s")]
  size: u64,
  #[serde(rename = "m")]
  mtime_ns: i64,
  #[serde(rename = "mode")]
  mode: u32,
  #[serde(rename = "t")]
  tracked: bool,
  #[serde(rename = "h", default, skip_serializing_if = "Option::is_none", with = "sha_hex")]
  sha256: Option<[u8; 32]>,
  #[serde(rename = "i", default, skip_serializing_if = "std::ops::Not::not")]
  inconsistent: bool,
  #[serde(rename = "l", default, skip_serializing_if = "Option::is_none", borrow)]
  link: Option<Cow<'a, str>>,
  #[serde(rename = "x", default, skip_serializing_if = "Option::is_none", with = "sha_hex")]
  xattr: Option<[u8; 32]>,
  #[serde(rename = "c", default, skip_serializing_if = "is_zero")]
  stamp: u64,
}

impl Serialize for StateEntry {
  fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
    let f = self.fields();
    Line {
      rel: Cow::Borrowed(f.rel),
      kind: f.kind,
      size: f.size,
      mtime_ns: f.mtime_ns,
      mode: f.mode,
      tracked: f.tracked,
      sha256: f.sha256,
      inconsistent: f.inconsistent,
      link: f.link.map(Cow::Borrowed),
      xattr: f.xattr,
      stamp: f.stamp,
    }
    .serialize(s)
  }
}

impl<'de> Deserialize<'de> for StateEntry {
  fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
    let l = Line::deserialize(d)?;
    Ok(StateEntry::new(Fields {
      rel: &l.rel,
      kind: l.kind,
      size: l.size,
      mtime_ns: l.mtime_ns,
      mode: l.mode,
      tracked: l.tracked,
      sha256: l.sha256,
      inconsistent: l.inconsistent,
      link: l.link.as_deref(),
      xattr: l.xattr,
      stamp: l.stamp,
    }))
  }
}

fn is_zero(v: &u64) -> bool {
  *v == 0
}

/// A SHA-256 as lowercase hex.
mod sha_hex {
  use serde::{Deserializer, Serializer};
  #[allow(clippy::ref_option)]
  pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match v {
      Some(b) => s.serialize_str(&hex::encode(b)),
      None => s.serialize_none(),
    }
  }
  /// Decoded straight from the parser's buffer: no `String` per entry (a
  /// state of a million tracked files spent a quarter of its read there).
  pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
    d.deserialize_option(OptHex)
  }

  struct OptHex;
  struct Hex;

  impl<'de> serde::de::Visitor<'de> for OptHex {
    type Value = Option<[u8; 32]>;
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
      d.deserialize_str(Hex).map(Some)
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

/// Reads one line as this version writes it (keys in [`Line`]'s order, no
/// escape in a path), without serde: a third of the cost of a no-change
/// run's state read went to serde's generic map walk. `None` for anything
/// else (an escaped name, a key of a later version, another order, a
/// malformed line), which serde then reads or rejects with its message.
fn fast_line(l: &[u8]) -> Option<StateEntry> {
  let mut r = Cursor { b: l, at: 0 };
  r.lit(br#"{"p":""#)?;
  let rel = r.plain_str()?;
  r.lit(br#","k":""#)?;
  let kind = if r.lit(br#"file""#).is_some() {
    Kind::File
  } else {
    r.lit(br#"symlink""#)?;
    Kind::Symlink
  };
  r.lit(br#","s":"#)?;
  let size = r.uint()?;
  r.lit(br#","m":"#)?;
  let mtime_ns = if r.lit(b"-").is_some() { 0i64.checked_sub_unsigned(r.uint()?)? } else { i64::try_from(r.uint()?).ok()? };
  r.lit(br#","mode":"#)?;
  let mode = u32::try_from(r.uint()?).ok()?;
  r.lit(br#","t":"#)?;
  let tracked = r.boolean()?;
  let sha256 = if r.lit(br#","h":""#).is_some() { Some(r.hex()?) } else { None };
  let inconsistent = r.lit(br#","i":true"#).is_some();
  let link = if r.lit(br#","l":""#).is_some() { Some(r.plain_str()?) } else { None };
  let xattr = if r.lit(br#","x":""#).is_some() { Some(r.hex()?) } else { None };
  let stamp = if r.lit(br#","c":"#).is_some() { r.uint()? } else { 0 };
  r.lit(b"}")?;
  (r.at == l.len()).then(|| StateEntry::new(Fields { rel, kind, size, mtime_ns, mode, tracked, sha256, inconsistent, link, xattr, stamp }))
}

/// A position in a line, for [`fast_line`]: each step either matches and
/// moves on, or answers `None`.
struct Cursor<'a> {
  b: &'a [u8],
  at: usize,
}

impl<'a> Cursor<'a> {
  fn lit(&mut self, s: &[u8]) -> Option<()> {
    self.b[self.at..].starts_with(s).then(|| self.at += s.len())
  }
  /// The rest of a string up to its closing quote, when it has no escape.
  fn plain_str(&mut self) -> Option<&'a str> {
    let rest = &self.b[self.at..];
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[end] != b'"' || rest[..end].iter().any(|&c| c < 0x20) {
      return None;
    }
    self.at += end + 1;
    std::str::from_utf8(&rest[..end]).ok()
  }
  /// Digits as JSON writes them (no leading zero), within `u64`.
  fn uint(&mut self) -> Option<u64> {
    let rest = &self.b[self.at..];
    let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || (n > 1 && rest[0] == b'0') {
      return None;
    }
    let mut v = 0u64;
    for &c in &rest[..n] {
      v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    self.at += n;
    Some(v)
  }
  fn boolean(&mut self) -> Option<bool> {
    if self.lit(b"true").is_some() {
      return Some(true);
    }
    self.lit(b"false").map(|()| false)
  }
  /// 64 hex digits and the closing quote.
  fn hex(&mut self) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let digits = self.b.get(self.at..self.at + 64)?;
    if !util::decode_hex(digits, &mut out) {
      return None;
    }
    self.at += 64;
    self.lit(b"\"")?;
    Some(out)
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
    let parsed: Result<Vec<StateEntry>, String> =
      lines.par_iter().map(|l| fast_line(l).map_or_else(|| serde_json::from_slice(l).map_err(|e| e.to_string()), Ok)).collect();
    out.extend(parsed.map_err(|e| Error::corrupt(path, format!("{e}; {rebuild}")))?);
  }
  if out.len() as u64 != header.entries {
    return Err(Error::corrupt(path, format!("truncated: {} of {} entries; {rebuild}", out.len(), header.entries)));
  }
  if !out.windows(2).all(|w| w[0].rel() < w[1].rel()) {
    out.par_sort_unstable_by(|a, b| a.rel().cmp(b.rel()));
  }
  Ok(out)
}

impl StateEntry {
  /// The entry for the mirror file `mirror/<rel>` as it is (rebuilding a
  /// state: `recreate`, adopting a folder of the original backup.py): its
  /// size, mtime, mode and xattrs; the SHA-256 read from it when `hash`.
  pub fn from_mirror(mirror: &Path, rel: &str, md: &fs::Metadata, tracked: bool, hash: bool, link: Option<&str>) -> Self {
    use std::os::unix::fs::MetadataExt;
    let file = mirror.join(crate::fs::names::to_path(rel));
    StateEntry::new(Fields {
      rel,
      kind: if md.file_type().is_symlink() { Kind::Symlink } else { Kind::File },
      size: md.len(),
      mtime_ns: util::mtime_ns(md),
      mode: md.mode() & 0o7777,
      tracked,
      sha256: if hash { util::sha256_of(&file).ok() } else { None },
      inconsistent: false,
      link,
      xattr: crate::fs::xattrs::digest(&crate::fs::xattrs::read_quiet(&file)),
      stamp: 0,
    })
  }
}

/// Writes the state atomically (temp file, fsync, rename, fsync of the
/// folder), streaming `count` lines in path order. Lines are borrowed
/// where the caller has them as they are (no second copy of a big state).
pub fn write<'a>(path: &Path, count: u64, lines: impl Iterator<Item = Cow<'a, StateEntry>>) -> Result<(), Error> {
  stage(path, count, lines)?.publish()
}

/// [`write`] up to its publication (see [`util::stage_atomic`]).
pub fn stage<'a>(path: &Path, count: u64, lines: impl Iterator<Item = Cow<'a, StateEntry>>) -> Result<util::Staged, Error> {
  let dir = path.parent().expect("state path has a parent");
  fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create", &e))?;
  util::stage_atomic(path, |w| {
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
    assert_eq!((e.sha(), e.link(), e.xattr(), e.inconsistent), (None, None, None, false));
  }

  /// An untracked 3-byte file at `rel`, nothing optional.
  fn plain(rel: &str) -> Fields<'_> {
    Fields {
      rel,
      kind: Kind::File,
      size: 3,
      mtime_ns: 1_705_321_845_123_456_789,
      mode: 0o644,
      tracked: false,
      sha256: None,
      inconsistent: false,
      link: None,
      xattr: None,
      stamp: 0,
    }
  }

  /// The fast reader gives what serde gives for every line this version
  /// writes, and leaves every other line to serde (`None`).
  #[test]
  fn fast_lines_read_as_serde_reads_them() {
    let sha = Some([0xab; 32]);
    let base = plain("d/f.txt");
    let cases = [
      base,
      Fields { mtime_ns: -5, size: 0, mode: 0, ..base },
      Fields { mtime_ns: i64::MIN, size: u64::MAX, mode: u32::MAX, ..base },
      Fields { kind: Kind::Symlink, tracked: true, sha256: sha, stamp: (1 << 53) - 1, ..base },
      Fields { tracked: true, sha256: sha, inconsistent: true, link: Some("lead/é €"), xattr: Some([7; 32]), stamp: 9, ..base },
      Fields { xattr: Some([0; 32]), ..base },
      Fields { link: Some("a"), ..base },
      Fields { rel: "名前/ü\u{7f}", ..base },
    ];
    for f in cases {
      let e = StateEntry::new(f);
      assert_eq!(e.fields(), f);
      let line = serde_json::to_string(&e).unwrap();
      assert_eq!(fast_line(line.as_bytes()).as_ref(), Some(&e), "{line}");
      assert_eq!(serde_json::from_str::<StateEntry>(&line).unwrap(), e);
    }
    for line in [
      r#"{"p":"a\"b","k":"file","s":1,"m":2,"mode":420,"t":false}"#,
      r#"{"p":"a\nb","k":"file","s":1,"m":2,"mode":420,"t":false}"#,
      r#"{"k":"file","p":"a","s":1,"m":2,"mode":420,"t":false}"#,
      r#"{"p":"a","k":"file","s":1,"m":2,"mode":420,"t":false,"z":1}"#,
      r#"{"p":"a","k":"file","s":1,"m":2,"mode":420,"t":false,"h":null}"#,
      r#"{"p":"a","k":"file","s":01,"m":2,"mode":420,"t":false}"#,
      r#"{"p":"a","k":"file","s":18446744073709551616,"m":2,"mode":420,"t":false}"#,
      r#"{"p":"a","k":"file","s":1,"m":9223372036854775808,"mode":420,"t":false}"#,
      r#"{"p":"a","k":"file","s":1,"m":2,"mode":4294967296,"t":false}"#,
      r#"{"p":"a","k":"file","s":1,"m":2,"mode":420,"t":false,"h":"abc"}"#,
      r#"{"p":"a","k":"dir","s":1,"m":2,"mode":420,"t":false}"#,
      r#"{"p":"a","k":"file","s":1,"m":2,"mode":420,"t":false} "#,
      r#"{"p":"a","k":"file","s":1,"m":2,"mode":420,"t":false}x"#,
      r#"{"p":"a","k":"file","s":1,"m":2,"mode":420,"t":fals}"#,
      r#"{"p": "a","k":"file","s":1,"m":2,"mode":420,"t":false}"#,
      "{\"p\":\"a\u{1}\",\"k\":\"file\",\"s\":1,\"m\":2,\"mode\":420,\"t\":false}",
    ] {
      assert_eq!(fast_line(line.as_bytes()), None, "{line}");
    }
  }

  /// Tracked, untracked, hard-linked and xattr entries (and their mixes)
  /// keep every field through the one-allocation form, its clone, and the
  /// state file (write, then read back equal).
  #[test]
  fn entries_round_trip_through_memory_and_the_state_file() {
    let untracked = Fields { size: 10, stamp: 77, ..plain("a/untracked.txt") };
    let long = "l/".repeat(300) + "lead.bin";
    let cases = [
      untracked,
      Fields { rel: "b/tracked.txt", tracked: true, sha256: Some([0x5a; 32]), ..untracked },
      Fields { rel: "c/linked", tracked: true, sha256: Some([1; 32]), link: Some("b/tracked.txt"), stamp: 0, ..untracked },
      Fields { rel: "d/untracked-linked", link: Some(&long), ..untracked },
      Fields { rel: "e/xattr", xattr: Some([0xee; 32]), stamp: 0, ..untracked },
      Fields { rel: "f/tracked-xattr", tracked: true, sha256: Some([2; 32]), xattr: Some([3; 32]), ..untracked },
      Fields {
        rel: "g/all \"quoted\" é",
        tracked: true,
        sha256: Some([4; 32]),
        inconsistent: true,
        link: Some("e/xattr"),
        xattr: Some([5; 32]),
        ..untracked
      },
      Fields { rel: "h/link", kind: Kind::Symlink, tracked: true, sha256: Some([6; 32]), mode: 0o777, ..untracked },
      Fields { rel: &long, ..untracked },
    ];
    let entries: Vec<StateEntry> = cases.iter().map(|f| StateEntry::new(*f)).collect();
    for (e, f) in entries.iter().zip(&cases) {
      assert_eq!(e.fields(), *f);
      assert_eq!((e.rel(), e.sha(), e.link(), e.xattr().copied()), (f.rel, f.sha256, f.link, f.xattr));
      assert_eq!(e.clone().fields(), *f);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.jsonl");
    write(&path, entries.len() as u64, entries.iter().map(Cow::Borrowed)).unwrap();
    let back = read(&path).unwrap();
    assert_eq!(back, entries);
    assert_eq!(back.iter().map(StateEntry::fields).collect::<Vec<_>>(), cases);
  }

  /// A state whose lines take both readers reads whole and in order, and
  /// a line neither accepts names the problem.
  #[test]
  fn read_takes_lines_of_both_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.jsonl");
    let fa = Fields {
      rel: "a",
      kind: Kind::File,
      size: 1,
      mtime_ns: 2,
      mode: 0o644,
      tracked: true,
      sha256: Some([1; 32]),
      inconsistent: false,
      link: None,
      xattr: None,
      stamp: 5,
    };
    let a = StateEntry::new(fa);
    let b = StateEntry::new(Fields { rel: "b\"q", ..fa });
    let c = StateEntry::new(Fields { rel: "c", link: Some("a"), ..fa });
    write(&path, 3, [&a, &b, &c].into_iter().map(Cow::Borrowed)).unwrap();
    assert_eq!(read(&path).unwrap(), [a.clone(), b, c]);
    let text = fs::read_to_string(&path).unwrap().replace(r#""s":1,"m":2"#, r#""s":"x","m":2"#);
    fs::write(&path, text).unwrap();
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains("invalid type") && err.contains("move it aside"), "{err}");
  }
}
