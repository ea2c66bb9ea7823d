//! Finding the committed increments of a backup folder and reading their
//! catalogs without materializing them: a catalog of a million entries is
//! parsed in place (keys and strings borrowed from the file's bytes) and
//! handed to a callback one entry at a time.

use std::borrow::Cow;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::backup::meta::version_any;
use crate::backup::meta::{CatalogEntry, Summary};
use crate::backup::scan::Kind;
use crate::error::Error;
use crate::layout::{meta_file_name, parse_increment_name, parse_iso};

/// A committed increment folder `dst/backup_YYYYMMDD_HHMMSS[_N]`.
#[derive(Debug, Clone, Serialize)]
pub struct Increment {
  pub name: String,
  #[serde(skip)]
  pub dir: PathBuf,
  /// Seconds since the epoch, from the name (UTC).
  pub name_time: i64,
  /// Seconds since the epoch when the increment was made: the metadata's
  /// recorded time (`timestamp`, or the original `backup_timestamp`), else
  /// `name_time`. Increments are ordered by it (the original `backup.py`
  /// names its folders in local time, we in UTC).
  #[serde(skip)]
  pub time: i64,
  #[serde(skip)]
  seq: u32,
}

impl Increment {
  /// The increment `name` of `dst`, if the name is an increment name.
  pub fn at(dst: &Path, name: &str) -> Option<Self> {
    let (t, seq) = parse_increment_name(name)?;
    let mut inc = Self { name: name.to_string(), dir: dst.join(name), name_time: t, time: t, seq };
    inc.time = recorded_time(&inc).unwrap_or(t);
    Some(inc)
  }

  pub fn meta_path(&self) -> PathBuf {
    self.dir.join(meta_file_name(&self.name))
  }
}

/// The committed increments of `dst`, oldest first. Folders under
/// `.axiomatic/` (unfinished or being removed) are not increments.
pub fn list(dst: &Path) -> Result<Vec<Increment>, Error> {
  let rd = fs::read_dir(dst).map_err(|e| Error::io(dst, "cannot read the backup folder", &e))?;
  let mut out = Vec::new();
  for e in rd {
    let e = e.map_err(|e| Error::io(dst, "cannot read the backup folder", &e))?;
    let Ok(name) = e.file_name().into_string() else { continue };
    let Some((t, seq)) = parse_increment_name(&name) else { continue };
    if !e.file_type().is_ok_and(|t| t.is_dir()) {
      continue;
    }
    let mut inc = Increment { dir: e.path(), name, name_time: t, time: t, seq };
    inc.time = recorded_time(&inc).unwrap_or(t);
    out.push(inc);
  }
  out.sort_by(|a, b| (a.time, a.name_time, a.seq, &a.name).cmp(&(b.time, b.name_time, b.seq, &b.name)));
  Ok(out)
}

/// The time the increment's metadata records (whole seconds), if readable.
fn recorded_time(inc: &Increment) -> Option<i64> {
  let h = read_head(inc).ok()??;
  parse_iso(&h.timestamp).map(|(s, _)| s)
}

/// One catalog entry, borrowed from the metadata file's bytes.
#[derive(Debug, Deserialize)]
pub struct EntryRef<'a> {
  pub size: u64,
  #[serde(default)]
  pub mtime: f64,
  #[serde(borrow, default)]
  pub mtime_ns: Option<Cow<'a, str>>,
  #[serde(default)]
  pub mode: u32,
  #[serde(default = "default_kind")]
  pub kind: Kind,
  #[serde(borrow)]
  pub category: Cow<'a, str>,
  #[serde(borrow, default)]
  pub op: Option<Cow<'a, str>>,
  #[serde(borrow, default)]
  pub sha256: Option<Cow<'a, str>>,
  #[serde(borrow, default)]
  pub stored_as: Option<Cow<'a, str>>,
  #[serde(borrow, default)]
  pub carried_from: Option<Cow<'a, str>>,
  #[serde(default)]
  pub inconsistent: Option<bool>,
  #[serde(borrow, default)]
  pub link: Option<Cow<'a, str>>,
  #[serde(default)]
  pub xattrs: Option<std::collections::BTreeMap<String, String>>,
}

fn default_kind() -> Kind {
  Kind::File
}

impl EntryRef<'_> {
  /// The exact mtime: `mtime_ns` when present, else from the float seconds.
  pub fn mtime_ns(&self) -> i64 {
    self.mtime_ns.as_deref().and_then(|s| s.parse().ok()).unwrap_or((self.mtime * 1e9).round() as i64)
  }
  /// `deleted` (the original also reads `delete`); every other category
  /// (`track`, the original `backup.py`'s `tracked`) is a stored version.
  pub fn is_deleted(&self) -> bool {
    self.category == "deleted" || self.category == "delete"
  }
  /// The increment's subfolder holding this entry's file.
  pub fn folder(&self) -> &'static str {
    if self.is_deleted() {
      "deleted"
    } else {
      "track"
    }
  }
  pub fn to_owned(&self) -> CatalogEntry {
    let op = self.op.as_deref().unwrap_or(if self.is_deleted() { "deleted" } else { "new" });
    CatalogEntry {
      size: self.size,
      mtime: self.mtime,
      mtime_ns: self.mtime_ns().to_string(),
      mode: self.mode,
      kind: self.kind,
      category: if self.is_deleted() { "deleted".into() } else { "track".into() },
      op: op.to_string(),
      sha256: self.sha256.as_deref().map(str::to_string),
      stored_as: self.stored_as.as_deref().unwrap_or("hardlink").to_string(),
      carried_from: self.carried_from.as_deref().map(str::to_string),
      inconsistent: self.inconsistent,
      link: self.link.as_deref().map(str::to_string),
      xattrs: self.xattrs.clone(),
    }
  }
}

/// Everything of a metadata file but its catalog.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Head {
  /// Ours is the number 1; the original scripts write the string `"1.0"`
  /// (read as its major number).
  #[serde(default, deserialize_with = "version_any")]
  pub version: u32,
  #[serde(default)]
  pub backup_name: String,
  #[serde(default)]
  pub timestamp: String,
  /// The original `backup_tool.py`'s key for the time (written by us too).
  #[serde(default, skip_serializing_if = "String::is_empty")]
  pub backup_timestamp: String,
  #[serde(default, skip_serializing_if = "String::is_empty")]
  pub backup_type: String,
  #[serde(default)]
  pub origin: String,
  #[serde(default)]
  pub summary: Summary,
  #[serde(default)]
  pub statistics: serde_json::Value,
}

struct VersionAny(u32);
impl<'de> Deserialize<'de> for VersionAny {
  fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
    version_any(d).map(VersionAny)
  }
}

impl Head {
  /// Metadata of the original `backup.py` / `backup_tool.py` in our terms:
  /// its time (local, without a zone; `backup_timestamp` when `timestamp`
  /// is absent) as UTC ISO 8601, and its counts (`new_or_changed_tracked`,
  /// `deleted_tracked`) as `total`/`deleted`. `new`/`changed` stay 0: the
  /// original does not tell them apart (`new_or_changed` says how many).
  pub fn normalize(mut self) -> Self {
    if self.timestamp.is_empty() {
      self.timestamp = std::mem::take(&mut self.backup_timestamp);
    }
    if let Some((secs, nanos)) = parse_iso(&self.timestamp) {
      if !self.timestamp.ends_with('Z') {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs.max(0) as u64, nanos);
        self.timestamp = crate::layout::iso(t);
      }
    }
    let s = &mut self.summary;
    if s.total == 0 && s.new == 0 && s.changed == 0 && s.deleted == 0 {
      let (nc, del) = (s.new_or_changed_tracked.unwrap_or(0), s.deleted_tracked.unwrap_or(0));
      s.deleted = del;
      s.total = nc + del;
      s.new_or_changed = (nc > 0).then_some(nc);
    }
    if self.origin.is_empty() && !self.backup_type.is_empty() {
      self.origin = "original".into();
    }
    self
  }
}

/// Keys for which `want` is false are skipped without parsing their value.
struct CatalogSeed<'f, F> {
  want: &'f dyn Fn(&str) -> bool,
  f: &'f mut F,
}

impl<'de, F: FnMut(&str, EntryRef<'de>)> DeserializeSeed<'de> for CatalogSeed<'_, F> {
  type Value = ();
  fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
    d.deserialize_map(self)
  }
}

impl<'de, F: FnMut(&str, EntryRef<'de>)> Visitor<'de> for CatalogSeed<'_, F> {
  type Value = ();
  fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
    f.write_str("a file catalog object")
  }
  fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
    while let Some(k) = map.next_key::<Cow<'de, str>>()? {
      if (self.want)(&k) {
        let v: EntryRef<'de> = map.next_value()?;
        (self.f)(&k, v);
      } else {
        map.next_value::<IgnoredAny>()?;
      }
    }
    Ok(())
  }
}

struct MetaVisitor<'f, F> {
  want: &'f dyn Fn(&str) -> bool,
  f: Option<&'f mut F>,
}

impl<'de, F: FnMut(&str, EntryRef<'de>)> Visitor<'de> for MetaVisitor<'_, F> {
  type Value = Head;
  fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
    f.write_str("increment metadata")
  }
  fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Head, A::Error> {
    let mut h = Head::default();
    while let Some(k) = map.next_key::<Cow<'de, str>>()? {
      match &*k {
        "file_catalog" => match self.f.as_mut() {
          Some(f) => map.next_value_seed(CatalogSeed { want: self.want, f: &mut **f })?,
          None => {
            map.next_value::<IgnoredAny>()?;
          }
        },
        "version" => h.version = map.next_value::<VersionAny>()?.0,
        "backup_timestamp" => h.backup_timestamp = map.next_value()?,
        "backup_type" => h.backup_type = map.next_value()?,
        "backup_name" => h.backup_name = map.next_value()?,
        "timestamp" => h.timestamp = map.next_value()?,
        "origin" => h.origin = map.next_value()?,
        "summary" => h.summary = map.next_value()?,
        "statistics" => h.statistics = map.next_value()?,
        _ => {
          map.next_value::<IgnoredAny>()?;
        }
      }
    }
    Ok(h)
  }
}

/// The raw bytes of an increment's metadata, or None if it has none.
pub fn read_bytes(inc: &Increment) -> Result<Option<Vec<u8>>, Error> {
  let p = inc.meta_path();
  match fs::read(&p) {
    Ok(b) => Ok(Some(b)),
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
    Err(e) => Err(Error::io(&p, "cannot read", &e)),
  }
}

/// An increment whose metadata is missing or cannot be read, in the same
/// words for every command (`list`, `status`, `history`, `search`,
/// `verify --backup`, `restore`…): which file, what is wrong, what to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DamagedMeta {
  pub increment: String,
  /// The metadata file (absolute path).
  pub file: String,
  pub problem: String,
  /// The command that rebuilds it from the stored files.
  pub fix: String,
}

impl DamagedMeta {
  pub fn new(inc: &Increment, problem: impl Into<String>) -> Self {
    Self {
      increment: inc.name.clone(),
      file: inc.meta_path().to_string_lossy().into_owned(),
      problem: problem.into(),
      fix: format!("backup recreate --backup {}", inc.name),
    }
  }

  /// An increment folder without its metadata file.
  pub fn missing(inc: &Increment) -> Self {
    Self::new(inc, "the metadata file is missing")
  }

  /// From an error of [`parse`], [`read_head`] or [`read_bytes`] (its message without the leading path).
  pub fn from_error(inc: &Increment, e: &Error) -> Self {
    let p = format!("{}: ", inc.meta_path().display());
    let m = e.message.strip_prefix(&p).unwrap_or(&e.message);
    // Our own messages end with the fix, which has a field of its own here.
    let m = m.split("; rebuild it with").next().unwrap_or(m);
    let m = m.strip_prefix("damaged increment metadata: ").unwrap_or(m);
    Self::new(inc, m)
  }
}

/// What is wrong with metadata bytes that serde_json refused, in words.
fn describe(e: &serde_json::Error) -> String {
  if e.is_eof() {
    format!("the file ends early, at line {} column {} (truncated or partly written)", e.line(), e.column())
  } else if e.is_syntax() {
    format!("it is not valid JSON ({e})")
  } else {
    format!("it is not increment metadata ({e})")
  }
}

/// The error for unreadable metadata: the file, what is wrong, and the
/// command that rebuilds it (named after the increment the file is in).
fn meta_error(path: &Path, what: String) -> Error {
  let name = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "NAME".into());
  Error::corrupt(path, format!("damaged increment metadata: {what}; rebuild it with `backup recreate --backup {name}`"))
}

/// The error for an increment whose metadata file is missing; `why` says
/// what cannot be done without it.
pub fn missing_error(inc: &Increment, why: &str) -> Error {
  Error::corrupt(
    &inc.meta_path(),
    format!("the increment's metadata file is missing, so {why}; rebuild it with `backup recreate --backup {}`", inc.name),
  )
}

/// Whether an increment's metadata is usable; `None` if it is. `quick`
/// reads only the head and the last bytes (enough to see a missing file, a
/// damaged head, or a file cut short, which is how an interrupted or
/// failing write damages it); otherwise the whole catalog is parsed and its
/// entries counted against the summary.
pub fn damage(inc: &Increment, quick: bool) -> Option<DamagedMeta> {
  let head = match read_head(inc) {
    Ok(None) => return Some(DamagedMeta::missing(inc)),
    Err(e) => return Some(DamagedMeta::from_error(inc, &e)),
    Ok(Some(h)) => h,
  };
  if quick && ends_as_written(&inc.meta_path()) {
    return None;
  }
  let bytes = match read_bytes(inc) {
    Ok(Some(b)) => b,
    Ok(None) => return Some(DamagedMeta::missing(inc)),
    Err(e) => return Some(DamagedMeta::from_error(inc, &e)),
  };
  let mut n = 0u64;
  match parse(&inc.meta_path(), &bytes, &mut |_: &str, _: EntryRef| n += 1) {
    Err(e) => Some(DamagedMeta::from_error(inc, &e)),
    Ok(_) if head.summary.total != n && head.summary.total != 0 => {
      Some(DamagedMeta::new(inc, format!("the catalog has {n} entries where the summary says {}", head.summary.total)))
    }
    Ok(_) => None,
  }
}

/// Whether the file ends the way our writer ends it (`\n  }\n}\n`: the
/// catalog's and the object's closing braces). A file cut anywhere before
/// its last byte does not.
fn ends_as_written(path: &Path) -> bool {
  use std::io::{Read, Seek, SeekFrom};
  const END: &[u8] = b"\n  }\n}\n";
  let Ok(mut f) = fs::File::open(path) else { return false };
  let Ok(len) = f.seek(SeekFrom::End(0)) else { return false };
  if len < END.len() as u64 || f.seek(SeekFrom::End(-(END.len() as i64))).is_err() {
    return false;
  }
  let mut tail = [0u8; END.len()];
  f.read_exact(&mut tail).is_ok() && tail == END
}

/// Parses metadata bytes, calling `f` for every catalog entry in file order.
pub fn parse<'de, F: FnMut(&str, EntryRef<'de>)>(path: &Path, bytes: &'de [u8], f: &mut F) -> Result<Head, Error> {
  parse_filtered(path, bytes, &|_| true, f)
}

/// As [`parse`], but entries whose path `want` refuses are skipped
/// unparsed (much cheaper when most are not wanted).
pub fn parse_filtered<'de, F: FnMut(&str, EntryRef<'de>)>(
  path: &Path,
  bytes: &'de [u8],
  want: &dyn Fn(&str) -> bool,
  f: &mut F,
) -> Result<Head, Error> {
  if !is_original_bytes(bytes) {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let h = de.deserialize_map(MetaVisitor { want, f: Some(f) }).and_then(|h| de.end().map(|()| h));
    return h.map(Head::normalize).map_err(|e| meta_error(path, describe(&e)));
  }
  // The original backup.py's metadata: its catalog never lists the deleted
  // files (it looks them up in a mirror state it has already replaced), but
  // `deleted/` holds them and `summary.deleted_tracked` counts them. They
  // are read from the folder: size and mtime of the stored last version.
  let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
  let mut record = |k: &str, e: EntryRef<'de>| {
    if e.is_deleted() {
      seen.insert(k.to_string());
    }
    f(k, e);
  };
  let mut de = serde_json::Deserializer::from_slice(bytes);
  let h = de.deserialize_map(MetaVisitor { want, f: Some(&mut record) }).and_then(|h| de.end().map(|()| h));
  let h = h.map(Head::normalize).map_err(|e| meta_error(path, describe(&e)))?;
  if let Some(dir) = path.parent() {
    let mut warnings = Vec::new();
    for (p, md) in crate::fs::walk::files(&dir.join("deleted"), &mut warnings) {
      if seen.contains(&p) || !want(&p) {
        continue;
      }
      let ns = crate::fs::util::mtime_ns(&md);
      let e = EntryRef {
        size: md.len(),
        mtime: ns as f64 / 1e9,
        mtime_ns: Some(Cow::Owned(ns.to_string())),
        mode: 0,
        kind: if md.file_type().is_symlink() { Kind::Symlink } else { Kind::File },
        category: Cow::Borrowed("deleted"),
        op: None,
        sha256: None,
        stored_as: None,
        carried_from: None,
        inconsistent: None,
        link: None,
        xattrs: None,
      };
      f(&p, e);
    }
  }
  Ok(h)
}

/// The paths a catalog mentions, unescaped, in file order, packed in one
/// buffer (100k paths are two allocations, not 100k).
#[derive(Debug, Default)]
pub struct Keys {
  text: String,
  ends: Vec<usize>,
}

impl Keys {
  pub fn len(&self) -> usize {
    self.ends.len()
  }

  pub fn is_empty(&self) -> bool {
    self.ends.is_empty()
  }

  /// The `i`th path.
  pub fn get(&self, i: usize) -> &str {
    let start = if i == 0 { 0 } else { self.ends[i - 1] };
    &self.text[start..self.ends[i]]
  }

  pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
    (0..self.len()).map(|i| self.get(i))
  }

  fn push(&mut self, k: &str) {
    self.text.push_str(k);
    self.ends.push(self.text.len());
  }
}

/// The paths an increment's catalog mentions, without parsing its entries
/// (all that prune's decision needs); `None` without a metadata file.
/// Metadata exactly as [`crate::backup::meta::write_meta`] writes it (the
/// head, then one entry per line, `\n    "path": {…}`) is read in 1 MiB
/// chunks and its lines checked as they go by: a `memchr` per line, and
/// no copy of a 25 MB catalog in memory. Any other layout, the original's
/// metadata (whose deleted files are read from its folder) or a count that
/// disagrees with the summary goes through the full parser, which also
/// names the damage. The line reader checks the layout and the keys, not
/// the values: they are parsed where they are used (carried entries, the
/// rewrite of the kept increment's metadata).
pub fn catalog_keys(inc: &Increment) -> Result<Option<Keys>, Error> {
  let p = inc.meta_path();
  let mut f = match fs::File::open(&p) {
    Ok(f) => f,
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
    Err(e) => return Err(Error::io(&p, "cannot read", &e)),
  };
  if let Some(keys) = line_keys(&mut f).map_err(|e| Error::io(&p, "cannot read", &e))? {
    return Ok(Some(keys));
  }
  drop(f);
  let Some(bytes) = read_bytes(inc)? else { return Ok(None) };
  let keys = std::cell::RefCell::new(Keys::default());
  let record = |k: &str| {
    keys.borrow_mut().push(k);
    false
  };
  parse_filtered(&p, &bytes, &record, &mut |_: &str, _: EntryRef| {})?;
  Ok(Some(keys.into_inner()))
}

/// [`catalog_keys`]' line reader; `Ok(None)` at the first byte that is not
/// as our writer puts it.
fn line_keys(f: &mut impl std::io::Read) -> std::io::Result<Option<Keys>> {
  const MARK: &[u8] = b",\n  \"file_catalog\": {\n";
  const SUMMARY: &[u8] = b"\n  \"summary\": {";
  let mut buf = vec![0u8; 1 << 20];
  let mut len = 0;
  while len < buf.len() {
    match f.read(&mut buf[len..])? {
      0 => break,
      n => len += n,
    }
  }
  if is_original_bytes(&buf[..len]) {
    return Ok(None);
  }
  let window = &buf[..len.min(64 * 1024)];
  let Some(at) = memchr::memmem::find(window, MARK) else { return Ok(None) };
  if memchr::memmem::find(&window[..at], SUMMARY).is_none() {
    return Ok(None);
  }
  let mut head = buf[..at].to_vec();
  head.extend_from_slice(b"\n}");
  let Ok(head) = serde_json::from_slice::<Head>(&head) else { return Ok(None) };
  let mut lines = CatalogLines { keys: Keys::default(), after: After::Open };
  let mut pos = at + MARK.len();
  loop {
    while let Some(n) = memchr::memchr(b'\n', &buf[pos..len]) {
      if lines.line(&buf[pos..pos + n]).is_none() {
        return Ok(None);
      }
      pos += n + 1;
    }
    // The partial line to the front; a line longer than the buffer grows it.
    buf.copy_within(pos..len, 0);
    len -= pos;
    pos = 0;
    if len == buf.len() {
      buf.resize(buf.len() * 2, 0);
    }
    match f.read(&mut buf[len..])? {
      0 => break,
      n => len += n,
    }
  }
  let whole = len == 0 && matches!(lines.after, After::End) && lines.keys.len() as u64 == head.summary.total;
  Ok(whole.then_some(lines.keys))
}

/// What the last line of a catalog allows next.
enum After {
  /// `file_catalog: {` or an entry ending in `,`: an entry (or, first, `  }`).
  Open,
  /// An entry without `,`: the catalog's `  }`.
  Last,
  /// `  }`: the object's `}`.
  Closed,
  /// `}`: nothing.
  End,
}

/// The catalog's lines, one at a time, and the keys they hold.
struct CatalogLines {
  keys: Keys,
  after: After,
}

impl CatalogLines {
  /// One line without its `\n`; `None` if it is not what comes next.
  fn line(&mut self, l: &[u8]) -> Option<()> {
    match self.after {
      After::Open | After::Last if l == b"  }" => {
        if matches!(self.after, After::Open) && !self.keys.is_empty() {
          return None;
        }
        self.after = After::Closed;
        return Some(());
      }
      After::Closed if l == b"}" => {
        self.after = After::End;
        return Some(());
      }
      After::Open => {}
      _ => return None,
    }
    let rest = l.strip_prefix(b"    \"")?;
    let quote = memchr::memchr2(b'"', b'\\', rest)?;
    let end = if rest[quote] == b'"' {
      let raw = &rest[..quote];
      if raw.iter().any(|&c| c < 0x20) {
        return None;
      }
      self.keys.push(std::str::from_utf8(raw).ok()?);
      quote
    } else {
      // An escape: find the closing quote, then let serde decode the string.
      let mut i = quote;
      loop {
        match *rest.get(i)? {
          b'\\' => i += 2,
          b'"' => break,
          _ => i += 1,
        }
      }
      self.keys.push(&serde_json::from_slice::<String>(&l[4..=i + 5]).ok()?);
      i
    };
    let value = rest[end + 1..].strip_prefix(b": {")?;
    self.after = match value.last()? {
      b',' if value.ends_with(b"},") => After::Open,
      b'}' => After::Last,
      _ => return None,
    };
    Some(())
  }
}

/// Whether metadata bytes are the original scripts' (`"version": "1.0"`,
/// their first key; ours is the number 1).
fn is_original_bytes(bytes: &[u8]) -> bool {
  const V: &[u8] = b"\"version\": \"";
  bytes[..bytes.len().min(256)].windows(V.len()).any(|w| w == V)
}

/// Reads only the head of a metadata file. Our writer puts the catalog
/// last, so the head is parsed from the first bytes; other layouts fall
/// back to a full (skipping) parse.
pub fn read_head(inc: &Increment) -> Result<Option<Head>, Error> {
  use std::io::Read;
  let p = inc.meta_path();
  let mut f = match fs::File::open(&p) {
    Ok(f) => f,
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
    Err(e) => return Err(Error::io(&p, "cannot read", &e)),
  };
  let mut buf = vec![0u8; 64 * 1024];
  let mut n = 0;
  while n < buf.len() {
    match f.read(&mut buf[n..]) {
      Ok(0) => break,
      Ok(k) => n += k,
      Err(e) => return Err(Error::io(&p, "cannot read", &e)),
    }
  }
  const MARK: &[u8] = b",\n  \"file_catalog\": {";
  // Only when the summary precedes the catalog (ours; the original puts
  // the catalog before its summary).
  const SUMMARY: &[u8] = b"\n  \"summary\": {";
  if let Some(at) =
    buf[..n].windows(MARK.len()).position(|w| w == MARK).filter(|&at| buf[..at].windows(SUMMARY.len()).any(|w| w == SUMMARY))
  {
    let mut head = buf[..at].to_vec();
    head.extend_from_slice(b"\n}");
    if let Ok(h) = serde_json::from_slice::<Head>(&head) {
      return Ok(Some(h.normalize()));
    }
  }
  drop(f);
  let bytes = fs::read(&p).map_err(|e| Error::io(&p, "cannot read", &e))?;
  let mut de = serde_json::Deserializer::from_slice(&bytes);
  let h = de.deserialize_map(MetaVisitor::<fn(&str, EntryRef)> { want: &|_| false, f: None }).map_err(|e| meta_error(&p, describe(&e)))?;
  Ok(Some(h.normalize()))
}

/// Whether a path found in metadata is a plain relative path: not empty,
/// not absolute, no empty, `.` or `..` component, no NUL. Everything read
/// from metadata goes through this before it is joined to a folder.
pub fn safe_rel(p: &str) -> bool {
  !p.is_empty() && !p.starts_with('/') && !p.contains('\0') && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn original_head() {
    let meta = br#"{"version": "1.0", "backup_type": "incremental", "backup_timestamp": "2024-01-15T12:30:45+00:00",
      "file_catalog": {"a": {"size": 1, "mtime": 1.5, "category": "tracked"}, "b": {"size": 2, "mtime": 2.0, "category": "deleted"}},
      "summary": {"new_or_changed_tracked": 1, "deleted_tracked": 1}}"#;
    let mut seen = Vec::new();
    let h = parse(Path::new("m.json"), meta, &mut |p: &str, e: EntryRef| seen.push((p.to_string(), e.folder(), e.mtime_ns()))).unwrap();
    assert_eq!(h.version, 1);
    assert_eq!(h.timestamp, "2024-01-15T12:30:45.000Z");
    assert_eq!(h.origin, "original");
    assert_eq!((h.summary.total, h.summary.deleted, h.summary.new_or_changed), (2, 1, Some(1)));
    assert_eq!(seen, vec![("a".into(), "track", 1_500_000_000), ("b".into(), "deleted", 2_000_000_000)]);
    assert!(parse(Path::new("m.json"), br#"{"version": "x", "file_catalog": {}}"#, &mut |_: &str, _: EntryRef| {}).is_err());
  }

  /// Writes metadata with `write_meta` (our layout) for `paths`; the
  /// increment it belongs to.
  fn written(dir: &Path, paths: &[String]) -> Increment {
    use crate::backup::meta::{catalog_entry, summarize, write_meta, MetaHead};
    let name = "backup_20240101_000000";
    let inc = Increment::at(dir, name).unwrap();
    fs::create_dir_all(&inc.dir).unwrap();
    let mut cat = std::collections::BTreeMap::new();
    for (i, p) in paths.iter().enumerate() {
      let mut e = catalog_entry(i as u64, 1_500_000_000, 0o644, Kind::File, "new", Some([7; 32]), false);
      if i % 7 == 3 {
        e.xattrs = Some([("user.x".to_string(), "a}\"{,\n".to_string())].into());
      }
      cat.insert(p.clone(), e);
    }
    let head = MetaHead {
      version: 1,
      backup_name: name.into(),
      timestamp: "2024-01-01T00:00:00.000Z".into(),
      backup_timestamp: "2024-01-01T00:00:00.000Z".into(),
      backup_type: "incremental",
      origin: "run".into(),
      summary: summarize(&cat),
      statistics: serde_json::json!({}),
    };
    write_meta(&inc.meta_path(), &head, cat.iter().map(|(p, e)| (p.as_str(), e.clone()))).unwrap();
    inc
  }

  /// The keys the full parser finds, in file order.
  fn parsed_keys(inc: &Increment) -> Result<Vec<String>, Error> {
    let b = read_bytes(inc)?.unwrap();
    let mut out = Vec::new();
    parse(&inc.meta_path(), &b, &mut |p: &str, _: EntryRef| out.push(p.to_string()))?;
    Ok(out)
  }

  fn line_read(inc: &Increment) -> Option<Vec<String>> {
    let keys = line_keys(&mut fs::File::open(inc.meta_path()).unwrap()).unwrap()?;
    Some(keys.iter().map(str::to_string).collect())
  }

  #[test]
  fn catalog_keys_read_by_line_match_the_parser() {
    let d = tempfile::tempdir().unwrap();
    // Escapes of every kind, non-ASCII, and enough entries (~4 MB) that
    // lines cross the reader's 1 MiB chunks; one line longer than a chunk.
    let mut paths: Vec<String> = (0..15_000).map(|i| format!("d{}/s{}/f{i}.dat", i / 1000, i % 17)).collect();
    paths.extend(["q\"uote", "back\\slash", "new\nline", "tab\tx", "ctl\u{1}x", "ünï/cødé", "a/ b", "\u{7f}del"].map(String::from));
    paths.push(format!("long/{}", "x".repeat(1 << 21)));
    let inc = written(d.path(), &paths);
    let expected = parsed_keys(&inc).unwrap();
    assert_eq!(expected.len(), paths.len());
    assert_eq!(line_read(&inc).as_ref(), Some(&expected), "our layout is read by the line reader");
    let keys = catalog_keys(&inc).unwrap().unwrap();
    assert_eq!(keys.iter().collect::<Vec<_>>(), expected);
    // An empty catalog, and no metadata at all.
    let e = tempfile::tempdir().unwrap();
    let inc = written(e.path(), &[]);
    assert_eq!(line_read(&inc), Some(vec![]));
    fs::remove_file(inc.meta_path()).unwrap();
    assert!(catalog_keys(&inc).unwrap().is_none());
  }

  #[test]
  fn catalog_keys_other_layouts_go_through_the_parser() {
    let d = tempfile::tempdir().unwrap();
    let paths: Vec<String> = ["a", "b/c", "d"].map(String::from).to_vec();
    let inc = written(d.path(), &paths);
    let ours = fs::read(inc.meta_path()).unwrap();
    let keys = |inc: &Increment| catalog_keys(inc).map(|k| k.unwrap().iter().map(str::to_string).collect::<Vec<_>>());
    let cases: Vec<(&str, Vec<u8>)> = vec![
      // Pretty-printed by another tool: same keys, not our lines.
      ("re-indented", serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(&ours).unwrap()).unwrap()),
      // One line.
      ("compact", serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&ours).unwrap()).unwrap()),
      // The summary counts another number of entries than the lines hold.
      ("miscounted", String::from_utf8(ours.clone()).unwrap().replace("\"total\": 3", "\"total\": 4").into_bytes()),
      // A trailing comma after the last entry is not JSON.
      ("trailing comma", String::from_utf8(ours.clone()).unwrap().replace("}\n  }\n}", "},\n  }\n}").into_bytes()),
      // Cut short.
      ("truncated", ours[..ours.len() - 3].to_vec()),
    ];
    for (what, bytes) in cases {
      fs::write(inc.meta_path(), &bytes).unwrap();
      assert_eq!(line_read(&inc), None, "{what}");
      assert_eq!(keys(&inc).ok(), parsed_keys(&inc).ok(), "{what}");
    }
    // The original's metadata: its deleted files come from `deleted/`.
    fs::create_dir_all(inc.dir.join("deleted/old")).unwrap();
    fs::write(inc.dir.join("deleted/old/gone.txt"), "x").unwrap();
    fs::write(
      inc.meta_path(),
      br#"{"version": "1.0", "backup_type": "incremental", "backup_timestamp": "2024-01-15T12:30:45",
        "file_catalog": {"a": {"size": 1, "mtime": 1.5, "category": "tracked"}},
        "summary": {"new_or_changed_tracked": 1, "deleted_tracked": 1}}"#,
    )
    .unwrap();
    assert_eq!(line_read(&inc), None);
    assert_eq!(keys(&inc).unwrap(), vec!["a".to_string(), "old/gone.txt".to_string()]);
    // Damage the parser names is an error, as before.
    fs::write(inc.meta_path(), b"{\"version\": 1, \"file_catalog\": {\"a\": ").unwrap();
    assert!(keys(&inc).unwrap_err().message.contains("damaged increment metadata"));
  }

  #[test]
  fn rel_paths() {
    for bad in ["", "/etc/passwd", "a/../../x", "..", "a//b", "./a", "a/.", "a\0b"] {
      assert!(!safe_rel(bad), "{bad:?}");
    }
    for good in ["a", "a/b c/d", "..a", "a..", "-rf", "x\ny"] {
      assert!(safe_rel(good), "{good:?}");
    }
  }
}
