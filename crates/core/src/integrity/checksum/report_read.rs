//! Reading a report back: the JSON envelope, parsed straight from its
//! escaped `data` string while its SHA3-512 is checked (never held whole),
//! into a compact [`Report`]; check lines go to [`super::lines`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, Read, Seek};
use std::path::Path;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::algo::Algo;
use super::table::Files;
use super::Digester;
use crate::error::Error;
use crate::integrity::digest_cache::{DigestCache, Key};

/// A report as read back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
  pub group: String,
  pub root_data: String,
  pub start_timestamp: f64,
  pub work_time: f64,
  pub algorithms: Vec<String>,
  #[serde(skip)]
  pub files: Files,
  #[serde(skip)]
  pub errors: Vec<(String, String)>,
  /// SHA3-512 hex of the data (JSON reports).
  pub digest: Option<String>,
  /// The envelope's extra fields (`signature_ed25519`, `public_key`), checked by
  /// `verify::check_signature`.
  pub signature_ed25519: Option<String>,
  /// The signer's public key as written into the report (SPKI PEM). It proves
  /// the report was not altered after signing, not who signed it.
  pub public_key: Option<String>,
  /// The report has a `symlinks` map (ours): one without it (the original
  /// service's, `find -type f`) cannot say anything about symlinks.
  #[serde(skip)]
  pub records_symlinks: bool,
  /// The digest was taken from the cache of verified digests (the file's
  /// size, mtime, ctime, inode and device unchanged since it was computed).
  pub digest_cached: bool,
  /// The whole report was taken from the cache of parsed reports (see
  /// `integrity::digest_cache`): the file was not read at all.
  #[serde(skip)]
  pub parsed_cached: bool,
  /// The key (size, mtime, ctime, inode, device) of the file this report was
  /// read from, when its digest was verified and it did not change during the read.
  #[serde(skip)]
  pub key: Option<Key>,
}

/// The path relative to `root` of a report path: the original service
/// writes absolute paths (`<root>/a/f.bin`, as `find <root>` prints them;
/// its checker replaces the text `"<root>` by `".`), ours were relative,
/// and `./a/f.bin` is what that checker makes. Only a whole `<root>/`
/// prefix is taken off (`/data2/x` is not under `/data`), so a path is
/// never moved out of the root it was recorded under.
pub fn relative_to_root<'a>(p: &'a str, root: &str) -> &'a str {
  let base = root.trim_end_matches('/');
  if root.starts_with('/') {
    if p == root || p == base {
      return ".";
    }
    if let Some(rest) = p.strip_prefix(base).and_then(|r| r.strip_prefix('/')) {
      let rest = rest.trim_start_matches('/');
      if !rest.is_empty() {
        return rest;
      }
    }
  }
  let mut p = p;
  while let Some(rest) = p.strip_prefix("./") {
    p = rest.trim_start_matches('/');
  }
  p
}

/// The envelope's `data` string, unescaped on the fly (the report JSON is
/// parsed straight from it, never held whole). The unescaped bytes go in
/// chunks to a thread that computes their SHA-3-512 meanwhile (none when
/// the digest is known from the cache).
struct DataReader<R: io::BufRead> {
  inner: R,
  done: bool,
  pending: Vec<u8>,
  digest: Option<Digester>,
}

impl<R: io::BufRead> DataReader<R> {
  fn byte(&mut self) -> io::Result<u8> {
    let buf = self.inner.fill_buf()?;
    let Some(&b) = buf.first() else { return Err(io::Error::other("the report ends inside its data")) };
    self.inner.consume(1);
    Ok(b)
  }
  fn hex4(&mut self) -> io::Result<u32> {
    let mut v = 0;
    for _ in 0..4 {
      let c = self.byte()?;
      v = v * 16 + (c as char).to_digit(16).ok_or_else(|| io::Error::other("bad \\u escape"))?;
    }
    Ok(v)
  }
  /// The one-byte escapes (`\"`, `\\`, `\n`…), by the byte after the backslash.
  fn simple(e: u8) -> Option<u8> {
    Some(match e {
      b'"' => b'"',
      b'\\' => b'\\',
      b'/' => b'/',
      b'n' => b'\n',
      b'r' => b'\r',
      b't' => b'\t',
      b'b' => 8,
      b'f' => 12,
      _ => return None,
    })
  }
  /// An escape whose backslash was consumed, unescaped into `pending`.
  fn escape(&mut self) -> io::Result<()> {
    let e = self.byte()?;
    let ch = match e {
      b'u' => {
        let mut v = self.hex4()?;
        if (0xd800..0xdc00).contains(&v) {
          if self.byte()? != b'\\' || self.byte()? != b'u' {
            return Err(io::Error::other("lone surrogate"));
          }
          let lo = self.hex4()?;
          if !(0xdc00..0xe000).contains(&lo) {
            return Err(io::Error::other("a high surrogate without its low half"));
          }
          v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
        }
        char::from_u32(v).ok_or_else(|| io::Error::other("bad \\u escape"))?
      }
      _ => match Self::simple(e) {
        Some(c) => c as char,
        None => return Err(io::Error::other("bad escape")),
      },
    };
    let mut buf = [0u8; 4];
    self.pending.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    Ok(())
  }
}

impl<R: io::BufRead> Read for DataReader<R> {
  /// Copies runs between escapes in bulk (`memchr`), and the common
  /// two-byte escapes in place: every key of the data is quoted, so an
  /// escape comes every few bytes and per-escape overhead is what counts.
  fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < out.len() {
      if !self.pending.is_empty() {
        let k = self.pending.len().min(out.len() - n);
        out[n..n + k].copy_from_slice(&self.pending[..k]);
        self.pending.drain(..k);
        n += k;
        continue;
      }
      if self.done {
        break;
      }
      let buf = self.inner.fill_buf()?;
      if buf.is_empty() {
        return Err(io::Error::other("the report ends inside its data"));
      }
      let room = (out.len() - n).min(buf.len());
      let (used, escape) = match memchr::memchr2(b'"', b'\\', &buf[..room]) {
        None => {
          out[n..n + room].copy_from_slice(&buf[..room]);
          n += room;
          (room, false)
        }
        Some(p) => {
          out[n..n + p].copy_from_slice(&buf[..p]);
          n += p;
          if buf[p] == b'"' {
            self.done = true;
            (p + 1, false)
          } else if let Some(c) = buf.get(p + 1).and_then(|&e| Self::simple(e)).filter(|_| n < out.len()) {
            out[n] = c;
            n += 1;
            (p + 2, false)
          } else {
            (p + 1, true)
          }
        }
      };
      self.inner.consume(used);
      if escape {
        self.escape()?;
      }
    }
    if let Some(d) = &mut self.digest {
      d.update(&out[..n]);
    }
    Ok(n)
  }
}

/// The hasher of `Builder::index`, whose keys are xxh3 hashes already:
/// they are used as they are (SipHash over them cost 5% of a report read).
#[derive(Default)]
struct Xxh3Key(u64);

impl std::hash::Hasher for Xxh3Key {
  fn finish(&self) -> u64 {
    self.0
  }
  fn write(&mut self, b: &[u8]) {
    for &x in b {
      self.0 = self.0.rotate_left(8) ^ x as u64;
    }
  }
  fn write_u64(&mut self, v: u64) {
    self.0 = v;
  }
}

/// Builds the compact report while the data JSON streams by.
struct Builder {
  head: Report,
  files: Files,
  /// xxh3 of a path → index of the first file with that hash; the rare
  /// second path with the same hash goes to `collisions`.
  index: HashMap<u64, u32, std::hash::BuildHasherDefault<Xxh3Key>>,
  collisions: HashMap<Box<str>, u32>,
}

impl Builder {
  /// The index of the file `rel`, added if new.
  fn slot_index(&mut self, rel: &str) -> u32 {
    let h = xxhash_rust::xxh3::xxh3_64(rel.as_bytes());
    match self.index.get(&h).copied() {
      Some(i) if self.files.path_bytes(i) == rel.as_bytes() => i,
      Some(_) => match self.collisions.get(rel).copied() {
        Some(i) => i,
        None => {
          let i = self.files.push(rel);
          self.collisions.insert(rel.into(), i);
          i
        }
      },
      None => {
        let i = self.files.push(rel);
        self.index.insert(h, i);
        i
      }
    }
  }
  /// Lays the files' digests out for the report's algorithms.
  fn set_layout(&mut self) {
    let lens: Vec<usize> = self.head.algorithms.iter().map(|a| Algo::parse(a).map(|a| a.hex_len() / 2).unwrap_or(0)).collect();
    self.files.set_layout(&lens);
  }
}

/// A path key, looked up (or added) straight from the parser's buffer:
/// no `String` per path (each path is read five times, once per map).
struct SlotKey<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for SlotKey<'_> {
  type Value = u32;
  fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
    d.deserialize_str(self)
  }
}

impl<'de> Visitor<'de> for SlotKey<'_> {
  type Value = u32;
  fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
    f.write_str("a path")
  }
  fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u32, E> {
    Ok(self.0.slot_index(v))
  }
}

/// An algorithm name: its index among the report's algorithms.
struct AlgoKey<'b>(&'b [String]);

impl<'de> DeserializeSeed<'de> for AlgoKey<'_> {
  type Value = Option<usize>;
  fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
    d.deserialize_str(self)
  }
}

impl<'de> Visitor<'de> for AlgoKey<'_> {
  type Value = Option<usize>;
  fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
    f.write_str("an algorithm name")
  }
  fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<usize>, E> {
    Ok(self.0.iter().position(|a| a == v))
  }
}

/// A hex digest written into its file's record from the parser's buffer.
struct HexInto<'b> {
  files: &'b mut Files,
  i: u32,
  at: Option<usize>,
  algos: usize,
}

impl<'de> DeserializeSeed<'de> for HexInto<'_> {
  type Value = ();
  fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
    d.deserialize_str(self)
  }
}

impl<'de> Visitor<'de> for HexInto<'_> {
  type Value = ();
  fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
    f.write_str("a hex digest")
  }
  fn visit_str<E: serde::de::Error>(self, h: &str) -> Result<(), E> {
    if let Some(k) = self.at {
      // See `SumsSeed`: coreutils' escape mark before the hex.
      self.files.put_sum(self.i, k, h.strip_prefix('\\').unwrap_or(h), self.algos);
    }
    Ok(())
  }
}

struct SumsSeed<'b> {
  b: &'b mut Builder,
  i: u32,
}

impl<'de> DeserializeSeed<'de> for SumsSeed<'_> {
  type Value = ();
  fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
    d.deserialize_map(self)
  }
}

impl<'de> Visitor<'de> for SumsSeed<'_> {
  type Value = ();
  fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
    f.write_str("a map of algorithm to hex digest")
  }
  fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
    let b = self.b;
    if !b.head.algorithms.is_empty() {
      // The usual case: every digest decoded in place as it is parsed.
      let algos = b.head.algorithms.len();
      let Builder { head, files, .. } = b;
      while let Some(at) = map.next_key_seed(AlgoKey(&head.algorithms))? {
        map.next_value_seed(HexInto { files: &mut *files, i: self.i, at, algos })?;
      }
      return Ok(());
    }
    let mut pairs: Vec<(std::borrow::Cow<'de, str>, std::borrow::Cow<'de, str>)> = Vec::with_capacity(4);
    while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
      pairs.push((k, map.next_value()?));
    }
    {
      let mut names: Vec<String> = pairs.iter().map(|(k, _)| k.to_string()).collect();
      names.sort();
      b.head.algorithms = names;
      // Every file (this one too) gets the layout.
      b.set_layout();
    }
    let algos = b.head.algorithms.len();
    let idx: Vec<Option<usize>> = pairs.iter().map(|(k, _)| b.head.algorithms.iter().position(|a| a == k)).collect();
    for ((_, h), k) in pairs.iter().zip(idx) {
      if let Some(k) = k {
        // The original service takes `sha256sum`'s first word, which for a name with `\` or a
        // newline carries coreutils' escape mark: `\<hex>`.
        b.files.put_sum(self.i, k, h.strip_prefix('\\').unwrap_or(h), algos);
      }
    }
    Ok(())
  }
}

/// A map of path → value, each value handed to `f` as it is parsed.
struct PathMap<'b, T, F> {
  b: &'b mut Builder,
  f: F,
  _t: std::marker::PhantomData<T>,
}

impl<'de, T: Deserialize<'de>, F: FnMut(&mut Files, u32, T)> DeserializeSeed<'de> for PathMap<'_, T, F> {
  type Value = ();
  fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
    d.deserialize_map(self)
  }
}

impl<'de, T: Deserialize<'de>, F: FnMut(&mut Files, u32, T)> Visitor<'de> for PathMap<'_, T, F> {
  type Value = ();
  fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
    f.write_str("a map of paths")
  }
  fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
    while let Some(i) = map.next_key_seed(SlotKey(&mut *self.b))? {
      let v: T = map.next_value()?;
      (self.f)(&mut self.b.files, i, v);
    }
    Ok(())
  }
}

/// `checksums`: path → {algo: hex}.
struct ChecksumsSeed<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for ChecksumsSeed<'_> {
  type Value = ();
  fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
    d.deserialize_map(self)
  }
}

impl<'de> Visitor<'de> for ChecksumsSeed<'_> {
  type Value = ();
  fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
    f.write_str("a map of paths to checksums")
  }
  fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
    while let Some(i) = map.next_key_seed(SlotKey(&mut *self.0))? {
      map.next_value_seed(SumsSeed { b: &mut *self.0, i })?;
    }
    Ok(())
  }
}

struct FilesSeed<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for FilesSeed<'_> {
  type Value = ();
  fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
    d.deserialize_seq(self)
  }
}

impl<'de> Visitor<'de> for FilesSeed<'_> {
  type Value = ();
  fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
    f.write_str("a list of paths")
  }
  fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
    while seq.next_element_seed(SlotKey(&mut *self.0))?.is_some() {}
    Ok(())
  }
}

/// The data object; `on_root` hears `root_data` as soon as it is parsed.
struct DataVisitor<'b, 'h>(&'b mut Builder, Option<&'b mut (dyn FnMut(&str) + 'h)>);

impl<'de> Visitor<'de> for DataVisitor<'_, '_> {
  type Value = ();
  fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
    f.write_str("report data")
  }
  fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
    let b = self.0;
    let mut on_root = self.1;
    while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
      match &*k {
        "group" => b.head.group = map.next_value()?,
        "root_data" => {
          b.head.root_data = map.next_value()?;
          if let Some(f) = on_root.take() {
            f(&b.head.root_data);
          }
        }
        // The original writes `str(int(time))`; ours used to be a number.
        "start_timestamp" => {
          let v: serde_json::Value = map.next_value()?;
          b.head.start_timestamp = match &v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(t) => t.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
            _ => None,
          }
          .ok_or_else(|| serde::de::Error::custom(format!("start_timestamp {v} is not a Unix time (a number or a string of digits)")))?;
        }
        "work_time" => b.head.work_time = map.next_value()?,
        // In the original's key order (ours since issue 10) `algorithms` follows
        // `checksums`, whose first entry already named them: that order stays.
        "algorithms" if !b.head.algorithms.is_empty() => {
          map.next_value::<serde::de::IgnoredAny>()?;
        }
        "algorithms" => {
          b.head.algorithms = map.next_value()?;
          // Lay each file's digests out for these algorithms.
          b.set_layout();
        }
        "files" => map.next_value_seed(FilesSeed(b))?,
        "checksums" => map.next_value_seed(ChecksumsSeed(b))?,
        "sizes" => map.next_value_seed(PathMap { b, f: |f: &mut Files, i, v: u64| f.set_size(i, v), _t: std::marker::PhantomData })?,
        // Seconds as floats: `stat` has the exact nanoseconds, and nothing
        // reads these (not kept: 16 bytes a file, and a fifth of the path lookups).
        "mtimes" => {
          map.next_value::<serde::de::IgnoredAny>()?;
        }
        "stat" => {
          map.next_value_seed(PathMap { b, f: |f: &mut Files, i, v: (i64, i64, u64)| f.set_stat(i, v), _t: std::marker::PhantomData })?
        }
        "symlinks" => {
          b.head.records_symlinks = true;
          map.next_value_seed(PathMap { b, f: |f: &mut Files, i, v: String| f.set_link(i, v.into()), _t: std::marker::PhantomData })?
        }
        "errors" => {
          let errs: HashMap<String, serde_json::Value> = map.next_value()?;
          b.head.errors = errs
            .into_iter()
            .map(|(p, v)| (p, v.get("error").and_then(|e| e.as_str()).map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect();
          b.head.errors.sort();
        }
        _ => {
          map.next_value::<serde::de::IgnoredAny>()?;
        }
      }
    }
    Ok(())
  }
}

/// Reads the rest of the envelope after `data`: `"signature"`, `"signature_ed25519"` and `"public_key"`.
#[derive(Deserialize)]
struct Tail {
  signature: Option<String>,
  #[serde(default)]
  signature_ed25519: Option<String>,
  #[serde(default)]
  public_key: Option<String>,
}

/// How a report is read (`verify`'s needs; [`read_report`] uses the defaults).
#[derive(Default)]
pub struct ReadOptions<'a, 'h> {
  /// Where verified digests are remembered (see `integrity::digest_cache`):
  /// a computed digest that matched is stored there.
  pub cache: Option<&'a DigestCache>,
  /// Use a digest the cache holds for exactly this file instead of hashing
  /// the data again (`verify --incremental`).
  pub trust_cache: bool,
  /// Called once with the report's root (`root_data`) as soon as it is
  /// parsed, so the caller can start walking that folder while the rest is read.
  pub on_root: Option<&'a mut (dyn FnMut(&str) + 'h)>,
}

fn read_json_report(path: &Path, opts: ReadOptions) -> Result<Report, Error> {
  let bad = |m: String| Error::corrupt(path, m);
  let f = File::open(path).map_err(|e| Error::io(path, "cannot read the report", &e))?;
  // The key is taken from the open file: it names the content this read sees.
  let key = f.metadata().ok().map(|m| Key::of(&m));
  let mut on_root = opts.on_root;
  // `verify --incremental` of an unchanged report: its parsed form from the
  // cache, the report not read at all (the walk starts with the cached root).
  if let (Some(c), Some(k), true) = (opts.cache, key, opts.trust_cache) {
    if let Some(mut rep) = c.lookup_parsed(&k, |root| {
      if let Some(f) = on_root.as_mut() {
        f(root)
      }
    }) {
      let key_after = File::open(path).and_then(|f| f.metadata()).ok().map(|m| Key::of(&m));
      if key_after == key {
        rep.digest_cached = true;
        rep.parsed_cached = true;
        rep.key = key;
        return Ok(rep);
      }
    }
  }
  let cached = match (opts.cache, key) {
    (Some(c), Some(k)) if opts.trust_cache => c.lookup(&k),
    _ => None,
  };
  let mut r = io::BufReader::with_capacity(1 << 20, f);
  // The envelope must start with its data: `{ "data" : "`.
  let mut prefix = Vec::new();
  let mut quotes = 0;
  while quotes < 3 {
    let mut b = [0u8; 1];
    if r.read(&mut b).map_err(|e| Error::io(path, "cannot read the report", &e))? == 0 {
      return Err(bad("not a checksum report (expected {\"data\": \"…\", \"signature\": \"…\"})".into()));
    }
    prefix.push(b[0]);
    if b[0] == b'"' {
      quotes += 1;
    }
    if prefix.len() > 64 {
      break;
    }
  }
  let compact: String = String::from_utf8_lossy(&prefix).chars().filter(|c| !c.is_whitespace()).collect();
  if compact != "{\"data\":\"" {
    return Err(bad("not a checksum report: it must start with {\"data\": \"…\"".into()));
  }
  let mut b = Builder { head: Report::default(), files: Files::default(), index: HashMap::default(), collisions: HashMap::new() };
  let mut dr = DataReader { inner: &mut r, done: false, pending: Vec::new(), digest: cached.is_none().then(Digester::new) };
  let parsed = (|| -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_reader(io::BufReader::with_capacity(1 << 20, &mut dr));
    de.deserialize_map(DataVisitor(&mut b, on_root)).map_err(|e| e.to_string())?;
    drop(de);
    // Whatever follows the data object inside the string (nothing, for our reports) is hashed too.
    io::copy(&mut dr, &mut io::sink()).map_err(|e| e.to_string())?;
    Ok(())
  })();
  let computed = dr.digest.take().map(Digester::finish);
  parsed.map_err(|e| bad(format!("the report's data is not valid: {e}")))?;
  let mut rest = String::new();
  r.read_to_string(&mut rest).map_err(|e| bad(format!("cannot read the end of the report: {e}")))?;
  let tail: Tail = serde_json::from_str(&format!("{{{}", rest.trim_start().trim_start_matches(',')))
    .map_err(|e| bad(format!("the end of the report is not valid: {e}")))?;
  let Some(sig) = tail.signature else { return Err(bad("the report has no signature".into())) };
  let digest = computed.clone().or(cached.clone()).unwrap_or_default();
  if !digest.eq_ignore_ascii_case(sig.trim()) {
    return Err(bad(
      "the report's SHA3-512 signature does not match its data: the report was altered or damaged; refusing to use it".into(),
    ));
  }
  // The file must be the one the key named when the read began (a cached
  // digest speaks for that content only; a computed one is stored only then).
  let key_after = File::open(path).and_then(|f| f.metadata()).ok().map(|m| Key::of(&m));
  if cached.is_some() && key_after != key {
    return Err(bad("the report changed while it was read; run verify again".into()));
  }
  if let (Some(c), Some(k), Some(_)) = (opts.cache, key, &computed) {
    if key_after == key {
      c.store(&k, &digest, path);
    }
  }
  let Builder { head: mut rep, mut files, index, collisions } = b;
  drop((index, collisions));
  // `root_data` comes last in the original's key order: paths are made relative once all is read.
  files.relativize(&rep.root_data);
  if files.overflow {
    return Err(bad("the report holds more than 4 GiB of paths; it cannot be verified in one piece".into()));
  }
  rep.files = files;
  for (p, _) in &mut rep.errors {
    let rel = relative_to_root(p, &rep.root_data);
    if rel.len() != p.len() {
      *p = rel.to_string();
    }
  }
  rep.digest = Some(digest);
  rep.digest_cached = cached.is_some();
  rep.key = if key_after == key { key } else { None };
  rep.signature_ed25519 = tail.signature_ed25519;
  rep.public_key = tail.public_key;
  Ok(rep)
}

/// Reads a report: the JSON envelope (the digest is checked first; a
/// mismatch is an error before anything else happens) or check lines
/// (`sha256sum`, `b3sum`, `md5sum`…; `algo_hint` names the algorithm when
/// the digest length is ambiguous). Only the first bytes decide which:
/// the file is streamed either way, never read whole.
pub fn read_report(path: &Path, algo_hint: Option<Algo>) -> Result<Report, Error> {
  read_report_with(path, algo_hint, ReadOptions::default())
}

/// [`read_report`] with a digest cache and a hook for the root (`verify`).
pub fn read_report_with(path: &Path, algo_hint: Option<Algo>, opts: ReadOptions) -> Result<Report, Error> {
  let io_err = |e: io::Error| Error::io(path, "cannot read the report", &e);
  let f = File::open(path).map_err(io_err)?;
  let mut r = io::BufReader::with_capacity(1 << 20, f);
  if first_byte(&mut r).map_err(io_err)? == Some(b'{') {
    drop(r);
    return read_json_report(path, opts);
  }
  r.rewind().map_err(io_err)?;
  let rep = super::lines::parse(path, r, algo_hint)?;
  if let Some(f) = opts.on_root {
    f(&rep.root_data);
  }
  Ok(rep)
}

/// The first byte that is not whitespace (consumed with what precedes it).
fn first_byte(r: &mut impl BufRead) -> io::Result<Option<u8>> {
  loop {
    let buf = r.fill_buf()?;
    if buf.is_empty() {
      return Ok(None);
    }
    match buf.iter().position(|b| !b.is_ascii_whitespace()) {
      Some(i) => return Ok(Some(buf[i])),
      None => {
        let n = buf.len();
        r.consume(n);
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::{read_report, relative_to_root, DataReader, Digester};
  use std::io::Read;

  /// The envelope's data string (after its opening quote) unescaped as the reader does.
  fn unescape_data(escaped: &str) -> std::io::Result<String> {
    let src = format!("{escaped}\"");
    let mut r = std::io::BufReader::new(src.as_bytes());
    let mut dr = DataReader { inner: &mut r, done: false, pending: Vec::new(), digest: Some(Digester::new()) };
    let mut out = String::new();
    dr.read_to_string(&mut out)?;
    Ok(out)
  }

  #[test]
  fn data_unescaper_handles_every_json_escape_and_surrogate_pairs() {
    assert_eq!(unescape_data(r#"a\"b\\c\/d\n\r\t\b\f"#).unwrap(), "a\"b\\c/d\n\r\t\u{8}\u{c}");
    assert_eq!(unescape_data(r"\u00e9\u0416").unwrap(), "éЖ");
    // A character outside the BMP, as json.dumps(ensure_ascii=True) writes it.
    assert_eq!(unescape_data(r"\ud83d\ude00!").unwrap(), "😀!");
    // Broken pairs are errors, never a wrong character.
    assert!(unescape_data(r"\ud83dx").is_err());
    assert!(unescape_data(r"\ud83d\u0041").is_err());
    assert!(unescape_data(r"\ude00").is_err());
    assert!(unescape_data(r"\uZZZZ").is_err());
    assert!(unescape_data(r"\q").is_err());
    assert!(unescape_data("unterminated\\").is_err());
  }

  #[test]
  fn report_paths_made_relative_to_the_root() {
    assert_eq!(relative_to_root("/data/g/a/f.bin", "/data/g"), "a/f.bin");
    assert_eq!(relative_to_root("/data/g/a/f.bin", "/data/g/"), "a/f.bin");
    assert_eq!(relative_to_root("/data/g//a/f.bin", "/data/g"), "a/f.bin");
    assert_eq!(relative_to_root("./a/f.bin", "/data/g"), "a/f.bin");
    assert_eq!(relative_to_root("a/f.bin", "/data/g"), "a/f.bin");
    assert_eq!(relative_to_root("/a/f.bin", "/"), "a/f.bin");
    assert_eq!(relative_to_root("/data/g", "/data/g"), ".");
    // A sibling folder is not under the root (the original checker's text replacement makes `.2/x`).
    assert_eq!(relative_to_root("/data/g2/x", "/data/g"), "/data/g2/x");
  }

  #[test]
  fn the_first_bytes_tell_a_json_report_from_check_lines() {
    let t = tempfile::tempdir().unwrap();
    let h = "ab".repeat(32);
    // Check lines after blank lines: parsed, and line numbers count from the file's start.
    let p = t.path().join("sums.txt");
    std::fs::write(&p, format!("\n  \n{h}  a.txt\r\n\\{h}  new\\nline\n")).unwrap();
    let r = read_report(&p, None).unwrap();
    let names: Vec<&str> = r.files.iter().map(|f| f.rel()).collect();
    assert_eq!(names, ["a.txt", "new\nline"]);
    assert_eq!(r.files.get(0).sum(0).as_deref(), Some(h.as_str()));
    std::fs::write(&p, format!("\n\n{h}  a.txt\nnot a line\n")).unwrap();
    let e = read_report(&p, None).unwrap_err();
    assert!(e.message.contains("line 4:"), "{}", e.message);
    // Whitespace, then `{`: the envelope (here a damaged one), whatever its size.
    std::fs::write(&p, format!("{}{{\"data\": 1}}", " \n".repeat(600_000))).unwrap();
    let e = read_report(&p, None).unwrap_err();
    assert!(e.message.contains("not a checksum report"), "{}", e.message);
    std::fs::write(&p, b"\xff\xfe  x\n").unwrap();
    assert!(read_report(&p, None).unwrap_err().message.contains("not UTF-8"));
  }
}
