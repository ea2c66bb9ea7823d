//! The verified SHA3-512 of a report, remembered so `verify --incremental`
//! does not hash a 300 MB report again when the report did not change.
//!
//! Why keyed on (size, mtime_ns, ctime_ns, inode, device): any write to the
//! file changes its ctime, and ctime cannot be set back by a user (only by
//! moving the system clock): so a byte changed in place, with size and mtime
//! restored, still changes the key. A replaced file has another inode. An
//! entry is trusted only when all five parts match.
//!
//! Why in the user's cache dir (`$XDG_CACHE_HOME/axiomatic-backup/verified/`,
//! else `~/.cache/…`), never beside the report: whoever can alter a report in
//! its folder could also write a matching entry beside it, and the original
//! service's checker reads every file name of a group folder (an extra file
//! there is not harmless). The folder is made `0700`; an entry not owned by
//! us, or writable by others, is ignored. Any failure (no home, read-only
//! cache, a damaged entry) means "no cache": the digest is computed, as
//! without one; verify never fails because of the cache.
//!
//! Beside each digest entry, the report's parsed form (`<dev>-<ino>.report`,
//! [`DigestCache::store_parsed`]): parsing a 50 MB report costs ≈ 0.5 s, far
//! more than the walk `verify --incremental` has to do, so an unchanged
//! report is loaded from there instead. Same key, same rules; it carries
//! its own checksum, and any doubt (key, checksum, a bound) means "parse".

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::integrity::checksum::table::{Files, Rec, HAS_LINK};
use crate::integrity::checksum::Report;

/// The identity of a report file's current content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Key {
  pub size: u64,
  pub mtime_ns: i64,
  pub ctime_ns: i64,
  pub ino: u64,
  pub dev: u64,
}

impl Key {
  pub fn of(md: &fs::Metadata) -> Key {
    Key {
      size: md.len(),
      mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
      ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
      ino: md.ino(),
      dev: md.dev(),
    }
  }
}

#[derive(Serialize, Deserialize)]
struct Entry {
  key: Key,
  digest: String,
  /// For a person looking at the cache; not part of the key.
  path: String,
}

/// Where entries live; `None`: no cache.
#[derive(Debug, Clone)]
pub struct DigestCache {
  dir: PathBuf,
}

impl DigestCache {
  /// The user's cache (`$XDG_CACHE_HOME` or `$HOME/.cache`), or `None`.
  pub fn user() -> Option<DigestCache> {
    let base = std::env::var_os("XDG_CACHE_HOME")
      .filter(|v| Path::new(v).is_absolute())
      .map(PathBuf::from)
      .or_else(|| std::env::var_os("HOME").filter(|v| Path::new(v).is_absolute()).map(|h| Path::new(&h).join(".cache")))?;
    Some(DigestCache { dir: base.join("axiomatic-backup").join("verified") })
  }

  /// A cache in `dir` (tests).
  pub fn at(dir: &Path) -> DigestCache {
    DigestCache { dir: dir.to_path_buf() }
  }

  /// One entry per report inode: a report rewritten in place keeps its
  /// entry's name, and the key decides.
  fn entry_path(&self, key: &Key) -> PathBuf {
    self.dir.join(format!("{:016x}-{:x}.json", key.dev, key.ino))
  }

  /// The digest verified earlier for exactly this key.
  pub fn lookup(&self, key: &Key) -> Option<String> {
    let p = self.entry_path(key);
    let f = fs::File::open(&p).ok()?;
    let md = f.metadata().ok()?;
    // Only our own entry, that nobody else could have written.
    if md.uid() != unsafe { libc::geteuid() } || md.mode() & 0o022 != 0 || !md.is_file() || md.len() > 4096 {
      return None;
    }
    let e: Entry = serde_json::from_reader(f).ok()?;
    (e.key == *key && e.digest.len() == 128 && e.digest.bytes().all(|c| c.is_ascii_hexdigit())).then_some(e.digest)
  }

  /// Remembers `digest` for `key`; failures are ignored (temp + rename, so
  /// a reader never sees half an entry).
  pub fn store(&self, key: &Key, digest: &str, report: &Path) {
    let _ = (|| -> std::io::Result<()> {
      fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
      let p = self.entry_path(key);
      let tmp = self.dir.join(format!(".tmp-{}-{:x}", std::process::id(), key.ino));
      let body = serde_json::to_vec(&Entry { key: *key, digest: digest.to_string(), path: report.to_string_lossy().into_owned() })?;
      let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
      f.write_all(&body)?;
      drop(f);
      fs::rename(&tmp, &p).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
      })
    })();
  }
}

/// The parsed form of a report (`<dev>-<ino>.report` beside the digest
/// entry): what `verify --incremental` loads instead of parsing an
/// unchanged report. Little-endian throughout: a magic, the body's length,
/// its xxh3 (a damaged entry is ignored: the report is parsed again) and
/// the xxh3 of the body's first part (key, group, root: checked before a
/// walk of that root starts), then the key, the report's head (root, digest, signatures, algorithms,
/// errors) and its files as [`Files`] holds them (the path arena, 40-byte
/// records sorted by path, the digest rows, the odd digests, the symlinks).
const MAGIC: &[u8; 8] = b"AXVRPT01";

/// Writes the body while hashing it.
struct Sink<W: Write> {
  w: W,
  h: xxhash_rust::xxh3::Xxh3,
  /// The head's own hash (key, group, root), while it is written.
  head: Option<xxhash_rust::xxh3::Xxh3>,
  n: u64,
}

impl<W: Write> Sink<W> {
  fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
    self.h.update(b);
    if let Some(h) = &mut self.head {
      h.update(b);
    }
    self.n += b.len() as u64;
    self.w.write_all(b)
  }
  fn u8(&mut self, v: u8) -> std::io::Result<()> {
    self.put(&[v])
  }
  fn u32(&mut self, v: u32) -> std::io::Result<()> {
    self.put(&v.to_le_bytes())
  }
  fn u64(&mut self, v: u64) -> std::io::Result<()> {
    self.put(&v.to_le_bytes())
  }
  fn str(&mut self, s: &str) -> std::io::Result<()> {
    self.u32(u32::try_from(s.len()).map_err(std::io::Error::other)?)?;
    self.put(s.as_bytes())
  }
  fn opt(&mut self, s: &Option<String>) -> std::io::Result<()> {
    match s {
      Some(s) => {
        self.u8(1)?;
        self.str(s)
      }
      None => self.u8(0),
    }
  }
}

/// Reads the body while hashing it, never asking for more than the file holds.
struct Source<R: Read> {
  r: R,
  h: xxhash_rust::xxh3::Xxh3,
  head: Option<xxhash_rust::xxh3::Xxh3>,
  left: u64,
}

impl<R: Read> Source<R> {
  fn take(&mut self, out: &mut [u8]) -> Option<()> {
    if out.len() as u64 > self.left {
      return None;
    }
    self.r.read_exact(out).ok()?;
    self.left -= out.len() as u64;
    self.h.update(out);
    if let Some(h) = &mut self.head {
      h.update(out);
    }
    Some(())
  }
  /// A buffer of `n` bytes read whole (`n` checked against what is left first).
  fn bytes(&mut self, n: u64) -> Option<Vec<u8>> {
    if n > self.left {
      return None;
    }
    let mut v = vec![0u8; n as usize];
    self.take(&mut v)?;
    Some(v)
  }
  fn u8(&mut self) -> Option<u8> {
    let mut b = [0u8; 1];
    self.take(&mut b)?;
    Some(b[0])
  }
  fn u32(&mut self) -> Option<u32> {
    let mut b = [0u8; 4];
    self.take(&mut b)?;
    Some(u32::from_le_bytes(b))
  }
  fn u64(&mut self) -> Option<u64> {
    let mut b = [0u8; 8];
    self.take(&mut b)?;
    Some(u64::from_le_bytes(b))
  }
  fn str(&mut self) -> Option<String> {
    let n = self.u32()?;
    String::from_utf8(self.bytes(n as u64)?).ok()
  }
  fn opt(&mut self) -> Option<Option<String>> {
    match self.u8()? {
      0 => Some(None),
      1 => Some(Some(self.str()?)),
      _ => None,
    }
  }
}

impl DigestCache {
  fn parsed_path(&self, key: &Key) -> PathBuf {
    self.dir.join(format!("{:016x}-{:x}.report", key.dev, key.ino))
  }

  /// Remembers the parsed form of the report whose key is `key` (its
  /// digest verified; the files sorted by path). Temp + rename; failures
  /// are ignored, as for [`DigestCache::store`]. `keep_same` (a full
  /// verify, which never reads the entry): an entry of this key and
  /// length is left as it is (a damaged one is found, and rewritten, by
  /// the next `--incremental`).
  pub fn store_parsed(&self, key: &Key, rep: &Report, keep_same: bool) {
    if !rep.files.sorted || rep.digest.is_none() || (keep_same && self.has_parsed(key)) {
      return;
    }
    let _ = (|| -> std::io::Result<()> {
      fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
      let tmp = self.dir.join(format!(".tmp-{}-{:x}.report", std::process::id(), key.ino));
      let f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
      let done = (|| -> std::io::Result<()> {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        w.write_all(MAGIC)?;
        w.write_all(&[0u8; 24])?;
        let mut s = Sink { w, h: xxhash_rust::xxh3::Xxh3::new(), head: Some(xxhash_rust::xxh3::Xxh3::new()), n: 0 };
        let hh = write_body(&mut s, key, rep)?;
        let (n, h) = (s.n, s.h.digest());
        let mut f = s.w.into_inner().map_err(|e| e.into_error())?;
        f.seek(SeekFrom::Start(8))?;
        f.write_all(&n.to_le_bytes())?;
        f.write_all(&h.to_le_bytes())?;
        f.write_all(&hh.to_le_bytes())?;
        Ok(())
      })();
      done.and_then(|()| fs::rename(&tmp, self.parsed_path(key))).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
      })
    })();
  }

  /// An entry of this key whose length is the one its header says (not checked further).
  fn has_parsed(&self, key: &Key) -> bool {
    let Ok(mut f) = fs::File::open(self.parsed_path(key)) else { return false };
    let mut b = [0u8; 72];
    let len = f.metadata().map_or(0, |m| m.len());
    f.read_exact(&mut b).is_ok()
      && &b[..8] == MAGIC
      && u64::from_le_bytes(b[8..16].try_into().unwrap()) + 32 == len
      && (0..5).map(|i| u64::from_le_bytes(b[32 + 8 * i..40 + 8 * i].try_into().unwrap())).eq([
        key.size,
        key.mtime_ns as u64,
        key.ctime_ns as u64,
        key.ino,
        key.dev,
      ])
  }

  /// The report parsed earlier for exactly this key, or `None` (no entry,
  /// another key, not ours or writable by others, damaged: the checksum or
  /// any bound does not hold). `on_root` hears the report's root as soon
  /// as the entry's head is read, so a walk can start while the rest loads.
  pub fn lookup_parsed(&self, key: &Key, on_root: impl FnOnce(&str)) -> Option<Report> {
    let f = fs::File::open(self.parsed_path(key)).ok()?;
    let md = f.metadata().ok()?;
    if md.uid() != unsafe { libc::geteuid() } || md.mode() & 0o022 != 0 || !md.is_file() || md.len() < 32 {
      return None;
    }
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let mut head = [0u8; 32];
    r.read_exact(&mut head).ok()?;
    if &head[..8] != MAGIC {
      return None;
    }
    let word = |a: usize| u64::from_le_bytes(head[a..a + 8].try_into().unwrap());
    let (n, sum, head_sum) = (word(8), word(16), word(24));
    if n != md.len() - 32 {
      return None;
    }
    let mut s = Source { r, h: xxhash_rust::xxh3::Xxh3::new(), head: Some(xxhash_rust::xxh3::Xxh3::new()), left: n };
    let rep = read_body(&mut s, key, head_sum, on_root)?;
    (s.left == 0 && s.h.digest() == sum && valid(&rep.files)).then_some(rep)
  }
}

/// Writes the body; returns the hash of its head (key, group, root),
/// which a reader checks before it starts a walk of that root.
fn write_body<W: Write>(s: &mut Sink<W>, key: &Key, rep: &Report) -> std::io::Result<u64> {
  for v in [key.size, key.mtime_ns as u64, key.ctime_ns as u64, key.ino, key.dev] {
    s.u64(v)?;
  }
  s.str(&rep.group)?;
  s.str(&rep.root_data)?;
  let hh = s.head.take().map_or(0, |h| h.digest());
  s.opt(&rep.digest)?;
  s.opt(&rep.signature_ed25519)?;
  s.opt(&rep.public_key)?;
  s.u64(rep.start_timestamp.to_bits())?;
  s.u64(rep.work_time.to_bits())?;
  s.u8(rep.records_symlinks as u8)?;
  s.u32(rep.algorithms.len() as u32)?;
  for a in &rep.algorithms {
    s.str(a)?;
  }
  s.u64(rep.errors.len() as u64)?;
  for (p, e) in &rep.errors {
    s.str(p)?;
    s.str(e)?;
  }
  let t = &rep.files;
  s.u64(t.recs.len() as u64)?;
  s.u64(t.arena.len() as u64)?;
  s.u32(t.lens.len() as u32)?;
  s.put(&t.lens)?;
  s.put(&t.arena)?;
  let mut buf = Vec::with_capacity(40 * 4096);
  for chunk in t.recs.chunks(4096) {
    buf.clear();
    for r in chunk {
      buf.extend_from_slice(&r.off.to_le_bytes());
      buf.extend_from_slice(&r.len.to_le_bytes());
      buf.extend_from_slice(&r.size.to_le_bytes());
      buf.extend_from_slice(&r.mtime_ns.to_le_bytes());
      buf.extend_from_slice(&r.ctime_ns.to_le_bytes());
      buf.extend_from_slice(&r.ino.to_le_bytes());
    }
    s.put(&buf)?;
  }
  s.put(&t.sums)?;
  let mut odd: Vec<_> = t.odd.iter().collect();
  odd.sort_by_key(|(k, _)| **k);
  s.u64(odd.len() as u64)?;
  for (k, v) in odd {
    s.u32(*k)?;
    s.u32(v.len() as u32)?;
    s.put(v)?;
  }
  let mut links: Vec<_> = t.links.iter().collect();
  links.sort_by_key(|(k, _)| **k);
  s.u64(links.len() as u64)?;
  for (k, v) in links {
    s.u32(*k)?;
    s.str(v)?;
  }
  Ok(hh)
}

fn read_body<R: Read>(s: &mut Source<R>, key: &Key, head_sum: u64, on_root: impl FnOnce(&str)) -> Option<Report> {
  let k = Key { size: s.u64()?, mtime_ns: s.u64()? as i64, ctime_ns: s.u64()? as i64, ino: s.u64()?, dev: s.u64()? };
  if k != *key {
    return None;
  }
  let group = s.str()?;
  let root_data = s.str()?;
  // A damaged head must not start a walk of some other folder.
  if s.head.take()?.digest() != head_sum {
    return None;
  }
  on_root(&root_data);
  let mut rep = Report { group, root_data, ..Default::default() };
  rep.digest = s.opt()?;
  rep.signature_ed25519 = s.opt()?;
  rep.public_key = s.opt()?;
  rep.start_timestamp = f64::from_bits(s.u64()?);
  rep.work_time = f64::from_bits(s.u64()?);
  rep.records_symlinks = s.u8()? != 0;
  let na = s.u32()?;
  for _ in 0..na {
    rep.algorithms.push(s.str()?);
  }
  let ne = s.u64()?;
  for _ in 0..ne {
    rep.errors.push((s.str()?, s.str()?));
  }
  let n = s.u64()?;
  let arena_len = s.u64()?;
  if n.checked_mul(40)? > s.left || arena_len > s.left || arena_len > u32::MAX as u64 {
    return None;
  }
  let nl = s.u32()?;
  let t = &mut rep.files;
  t.lens = s.bytes(nl as u64)?;
  t.stride = t.lens.iter().map(|&l| l as usize + 1).sum();
  t.arena = s.bytes(arena_len)?;
  t.recs = Vec::with_capacity(n as usize);
  let mut buf = vec![0u8; 40 * 4096];
  let mut left = n as usize;
  while left > 0 {
    let k = left.min(4096);
    s.take(&mut buf[..k * 40])?;
    for c in buf[..k * 40].chunks_exact(40) {
      let u = |a: usize| u64::from_le_bytes(c[a..a + 8].try_into().unwrap());
      t.recs.push(Rec {
        off: u32::from_le_bytes(c[0..4].try_into().unwrap()),
        len: u32::from_le_bytes(c[4..8].try_into().unwrap()),
        size: u(8),
        mtime_ns: u(16) as i64,
        ctime_ns: u(24) as i64,
        ino: u(32),
      });
    }
    left -= k;
  }
  t.sums = s.bytes((n as usize).checked_mul(t.stride)? as u64)?;
  let nodd = s.u64()?;
  for _ in 0..nodd {
    let i = s.u32()?;
    let l = s.u32()?;
    t.odd.insert(i, s.bytes(l as u64)?.into_boxed_slice());
  }
  let nlinks = s.u64()?;
  for _ in 0..nlinks {
    let i = s.u32()?;
    t.links.insert(i, s.str()?.into());
  }
  t.sorted = true;
  Some(rep)
}

/// Every bound a loaded [`Files`] relies on: paths inside the arena and on
/// character boundaries, links and odd digests of existing files, and the
/// records in path order (the merge of `verify` relies on it).
fn valid(t: &Files) -> bool {
  let Ok(arena) = std::str::from_utf8(&t.arena) else { return false };
  let n = t.recs.len();
  let paths_ok = t.recs.iter().all(|r| {
    let (a, b) = (r.off as usize, r.off as usize + r.path_len());
    b <= arena.len() && arena.is_char_boundary(a) && arena.is_char_boundary(b)
  });
  let links_ok = t.links.len() == t.recs.iter().filter(|r| r.len & HAS_LINK != 0).count()
    && t.links.keys().all(|&i| (i as usize) < n && t.recs[i as usize].len & HAS_LINK != 0);
  let odd_ok = t.odd.keys().all(|&i| (i as usize) < n);
  let sorted = (1..n).all(|i| t.path_bytes(i as u32 - 1) <= t.path_bytes(i as u32));
  paths_ok && links_ok && odd_ok && sorted && t.sums.len() == n * t.stride
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_parsed_entry_round_trips_and_a_damaged_head_starts_no_walk() {
    let t = tempfile::tempdir().unwrap();
    let c = DigestCache::at(&t.path().join("c"));
    let k = Key { size: 10, mtime_ns: 1, ctime_ns: 2, ino: 3, dev: 4 };
    let mut files = Files::default();
    files.set_layout(&[2]);
    for (n, name) in ["/data/b", "/data/a", "/data/ü"].iter().enumerate() {
      let i = files.push(name);
      files.put_sum(i, 0, &format!("{n:04x}"), 1);
      files.set_size(i, n as u64);
    }
    files.set_link(0, "t".into());
    files.relativize("/data");
    files.sort_by_path();
    let rep =
      Report { root_data: "/data".into(), digest: Some("ab".repeat(64)), algorithms: vec!["x".into()], files, ..Default::default() };
    c.store_parsed(&k, &rep, false);
    assert!(c.has_parsed(&k) && !c.has_parsed(&Key { ino: 9, ..k }));
    let mut heard = Vec::new();
    let back = c.lookup_parsed(&k, |r| heard.push(r.to_string())).unwrap();
    assert_eq!(heard, ["/data"]);
    type Row<'a> = (&'a str, Option<u64>, Option<String>, Option<&'a str>);
    let names: Vec<Row> = back.files.iter().map(|f| (f.rel(), f.size(), f.sum(0), f.link())).collect();
    assert_eq!(
      names,
      [
        ("a", Some(1), Some("0001".into()), None),
        ("b", Some(0), Some("0000".into()), Some("t")),
        ("ü", Some(2), Some("0002".into()), None)
      ]
    );
    assert_eq!((back.digest, back.algorithms), (rep.digest.clone(), rep.algorithms.clone()));
    assert!(c.lookup_parsed(&Key { ctime_ns: 9, ..k }, |_| panic!("another key")).is_none());
    // A byte of the root damaged: no walk is started, the entry is ignored.
    let p = c.parsed_path(&k);
    let good = fs::read(&p).unwrap();
    let mut bad = good.clone();
    let at = bad.windows(5).position(|w| w == b"/data").unwrap();
    bad[at + 1] = b'e';
    fs::write(&p, &bad).unwrap();
    assert!(c.lookup_parsed(&k, |r| panic!("walk of {r}")).is_none());
  }

  #[test]
  fn an_entry_is_used_only_when_every_key_part_matches() {
    let t = tempfile::tempdir().unwrap();
    let c = DigestCache::at(&t.path().join("c"));
    let k = Key { size: 10, mtime_ns: 1, ctime_ns: 2, ino: 3, dev: 4 };
    let d = "ab".repeat(64);
    assert_eq!(c.lookup(&k), None);
    c.store(&k, &d, Path::new("/r.json"));
    assert_eq!(c.lookup(&k), Some(d.clone()));
    for other in [Key { size: 11, ..k }, Key { mtime_ns: 9, ..k }, Key { ctime_ns: 9, ..k }, Key { ino: 9, ..k }, Key { dev: 9, ..k }] {
      assert_eq!(c.lookup(&other), None, "{other:?}");
    }
    // Writable by others: ignored.
    let p = c.entry_path(&k);
    fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    assert_eq!(c.lookup(&k), None);
    // A cache that cannot be written is no cache, not an error.
    let ro = DigestCache::at(Path::new("/proc/no-such/dir"));
    ro.store(&k, &d, Path::new("/r.json"));
    assert_eq!(ro.lookup(&k), None);
  }
}
