//! Checksum reports: a parallel walk of a folder, every file hashed with
//! several algorithms in one read, and the report streamed to disk in the
//! original service's envelope `{"data": "<report JSON>", "signature":
//! "<SHA3-512 hex of data>"}`, or as `sha256sum`/`b3sum` check lines.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha3::Digest;

use crate::error::Error;
use crate::fs::util::{self, fault_point};
use crate::progress::{Phase, Progress};

/// A hash algorithm of the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algo {
  Sha256,
  Md5,
  Blake3,
  Sha512,
  Sha3_512,
  Xxh3,
}

impl Algo {
  pub const ALL: [Algo; 6] = [Algo::Sha256, Algo::Md5, Algo::Blake3, Algo::Sha512, Algo::Sha3_512, Algo::Xxh3];

  pub fn name(self) -> &'static str {
    match self {
      Algo::Sha256 => "sha256",
      Algo::Md5 => "md5",
      Algo::Blake3 => "blake3",
      Algo::Sha512 => "sha512",
      Algo::Sha3_512 => "sha3-512",
      Algo::Xxh3 => "xxh3",
    }
  }

  pub fn parse(s: &str) -> Result<Algo, Error> {
    Algo::ALL.into_iter().find(|a| a.name() == s.trim().to_ascii_lowercase()).ok_or_else(|| {
      Error::config(format!("unknown algorithm {s:?}; use one or more of {} (comma-separated)", Algo::ALL.map(Algo::name).join(", ")))
    })
  }

  /// Hex length of a digest.
  pub fn hex_len(self) -> usize {
    match self {
      Algo::Sha256 | Algo::Blake3 => 64,
      Algo::Md5 => 32,
      Algo::Sha512 | Algo::Sha3_512 => 128,
      Algo::Xxh3 => 16,
    }
  }
}

enum State {
  Sha256(ring::digest::Context),
  Sha512(ring::digest::Context),
  Md5(md5::Md5),
  Blake3(Box<blake3::Hasher>),
  Sha3(sha3::Sha3_512),
  Xxh3(Box<xxhash_rust::xxh3::Xxh3>),
}

/// Several hashes fed by one read.
pub struct Multi(Vec<State>, Vec<Algo>);

/// Splits digests concatenated in the order of `algos` (as
/// [`Multi::finish_raw`] returns them) into hex strings.
pub fn digests_hex(algos: &[Algo], raw: &[u8]) -> Vec<String> {
  let mut at = 0;
  algos
    .iter()
    .map(|a| {
      let n = a.hex_len() / 2;
      at += n;
      hex::encode(&raw[at - n..at])
    })
    .collect()
}

impl Multi {
  pub fn new(algos: &[Algo]) -> Self {
    Multi(
      algos
        .iter()
        .map(|a| match a {
          Algo::Sha256 => State::Sha256(ring::digest::Context::new(&ring::digest::SHA256)),
          Algo::Sha512 => State::Sha512(ring::digest::Context::new(&ring::digest::SHA512)),
          Algo::Md5 => State::Md5(md5::Md5::new()),
          Algo::Blake3 => State::Blake3(Box::new(blake3::Hasher::new())),
          Algo::Sha3_512 => State::Sha3(sha3::Sha3_512::new()),
          Algo::Xxh3 => State::Xxh3(Box::new(xxhash_rust::xxh3::Xxh3::new())),
        })
        .collect(),
      algos.to_vec(),
    )
  }
  pub fn update(&mut self, b: &[u8]) {
    for s in &mut self.0 {
      match s {
        State::Sha256(c) | State::Sha512(c) => c.update(b),
        State::Md5(h) => h.update(b),
        State::Blake3(h) => {
          h.update(b);
        }
        State::Sha3(h) => h.update(b),
        State::Xxh3(h) => h.update(b),
      }
    }
  }
  /// The digests, concatenated (each `hex_len / 2` bytes, in order).
  pub fn finish_raw(self) -> Box<[u8]> {
    let mut out = Vec::with_capacity(self.0.len() * 32);
    for s in self.0 {
      match s {
        State::Sha256(c) | State::Sha512(c) => out.extend_from_slice(c.finish().as_ref()),
        State::Md5(h) => out.extend_from_slice(&h.finalize()),
        State::Blake3(h) => out.extend_from_slice(h.finalize().as_bytes()),
        State::Sha3(h) => out.extend_from_slice(&h.finalize()),
        State::Xxh3(h) => out.extend_from_slice(&h.digest().to_be_bytes()),
      }
    }
    out.into_boxed_slice()
  }
  /// The digests as hex strings.
  pub fn finish(self) -> Vec<String> {
    let algos = self.1.clone();
    digests_hex(&algos, &self.finish_raw())
  }
}

/// One walked entry.
#[derive(Debug, Clone)]
pub struct Found {
  pub rel: Box<str>,
  pub size: u64,
  pub mtime_ns: i64,
  pub ctime_ns: i64,
  pub ino: u64,
  /// A symlink's target (recorded, never followed).
  pub link: Option<Box<str>>,
}

/// Walks `root` in parallel: files and symlinks (relative paths), and the
/// errors of what could not be read.
pub fn walk(root: &Path, progress: &Progress) -> (Vec<Found>, Vec<(String, String)>) {
  let found = Mutex::new(Vec::new());
  let errors = Mutex::new(Vec::new());
  fn go(dir: &Path, rel: &str, found: &Mutex<Vec<Found>>, errors: &Mutex<Vec<(String, String)>>, progress: &Progress) {
    let rd = match fs::read_dir(dir) {
      Ok(r) => r,
      Err(e) => return errors.lock().unwrap().push((if rel.is_empty() { ".".into() } else { rel.to_string() }, e.to_string())),
    };
    let mut subdirs = Vec::new();
    let mut mine = Vec::new();
    for e in rd.flatten() {
      let name = match e.file_name().into_string() {
        Ok(n) => n,
        Err(n) => {
          errors.lock().unwrap().push((format!("{rel}/{}", n.to_string_lossy()), "the name is not valid UTF-8; skipped".into()));
          continue;
        }
      };
      let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
      let md = match e.metadata() {
        Ok(m) => m,
        Err(err) => {
          errors.lock().unwrap().push((r, err.to_string()));
          continue;
        }
      };
      let ft = md.file_type();
      if ft.is_dir() {
        subdirs.push((e.path(), r));
      } else if ft.is_file() || ft.is_symlink() {
        let link = if ft.is_symlink() { fs::read_link(e.path()).ok().map(|t| t.to_string_lossy().into()) } else { None };
        progress.files_scanned.fetch_add(1, Relaxed);
        progress.bytes_scanned.fetch_add(if link.is_some() { 0 } else { md.len() }, Relaxed);
        mine.push(Found {
          rel: r.into(),
          size: md.len(),
          mtime_ns: util::mtime_ns(&md),
          ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
          ino: md.ino(),
          link,
        });
      }
    }
    found.lock().unwrap().extend(mine);
    subdirs.par_iter().for_each(|(p, r)| go(p, r, found, errors, progress));
  }
  go(root, "", &found, &errors, progress);
  (found.into_inner().unwrap(), errors.into_inner().unwrap())
}

/// Hashes one file with every algorithm in one read; fails if the file
/// changed while it was read.
pub fn hash_file(path: &Path, algos: &[Algo], progress: &Progress) -> io::Result<(Box<[u8]>, fs::Metadata)> {
  let mut f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
  let before = f.metadata()?;
  let mut h = Multi::new(algos);
  util::with_buf(|buf| -> io::Result<()> {
    loop {
      let n = match f.read(buf) {
        Ok(0) => break,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
        Err(e) => return Err(e),
      };
      h.update(&buf[..n]);
      progress.bytes_done.fetch_add(n as u64, Relaxed);
    }
    Ok(())
  })?;
  let after = f.metadata()?;
  if after.len() != before.len() || util::mtime_ns(&after) != util::mtime_ns(&before) {
    return Err(io::Error::other("the file changed while it was read"));
  }
  Ok((h.finish_raw(), before))
}

/// Digests of symlinks: of the target text (as `sha256sum` of the link
/// would not; recorded so a changed target is seen).
fn hash_bytes(b: &[u8], algos: &[Algo]) -> Box<[u8]> {
  let mut h = Multi::new(algos);
  h.update(b);
  h.finish_raw()
}

/// One hashed file of a report: its digests as raw bytes, concatenated in
/// the order of the run's algorithms (kept small: a million of these are
/// held until the report is written).
#[derive(Debug, Clone)]
pub struct Sum {
  pub f: Found,
  pub digest: Box<[u8]>,
}

impl Sum {
  /// Hex of the digest of the `i`-th algorithm.
  pub fn hex(&self, algos: &[Algo], i: usize) -> String {
    let start: usize = algos[..i].iter().map(|a| a.hex_len() / 2).sum();
    hex::encode(&self.digest[start..start + algos[i].hex_len() / 2])
  }
}

/// The result of a checksum run, before it is written.
pub struct Run {
  pub algos: Vec<Algo>,
  pub root: PathBuf,
  pub sums: Vec<Sum>,
  pub errors: Vec<(String, String)>,
  pub work_time: f64,
}

/// Walks and hashes `root`. Files are hashed largest first (the long ones
/// start early, so the threads finish together); with one thread in inode
/// order, which on most file systems follows the on-disk layout (fewer
/// seeks on spinning disks).
pub fn run(root: &Path, algos: &[Algo], threads: usize, progress: &Progress) -> Result<Run, Error> {
  let started = Instant::now();
  let md = fs::metadata(root).map_err(|e| Error::io(root, "cannot read", &e))?;
  if !md.is_dir() {
    return Err(Error::config(format!("{} is not a folder", root.display())));
  }
  let pool = crate::backup::engine::build_pool(threads)?;
  progress.set_phase(Phase::Scan);
  let (mut found, mut errors) = pool.install(|| walk(root, progress));
  if threads <= 1 {
    found.sort_by_key(|f| f.ino);
  } else {
    found.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.rel.cmp(&b.rel)));
  }
  progress.set_phase(Phase::Apply);
  progress.ops_total.store(found.len() as u64, Relaxed);
  progress.bytes_total.store(found.iter().filter(|f| f.link.is_none()).map(|f| f.size).sum(), Relaxed);
  let failed = Mutex::new(Vec::new());
  let mut sums: Vec<Sum> = pool.install(|| {
    found
      .into_par_iter()
      .map(|f| {
        let digest = match &f.link {
          Some(t) => hash_bytes(t.as_bytes(), algos),
          None => match hash_file(&root.join(&*f.rel), algos, progress) {
            Ok((d, _)) => d,
            Err(e) => {
              failed.lock().unwrap().push((f.rel.to_string(), e.to_string()));
              Box::default()
            }
          },
        };
        progress.ops_done.fetch_add(1, Relaxed);
        Sum { f, digest }
      })
      .collect()
  });
  if progress.is_aborted() {
    return Err(Error::aborted());
  }
  sums.retain(|s| !s.digest.is_empty());
  errors.extend(failed.into_inner().unwrap());
  if threads <= 1 {
    sums.sort_by(|a, b| b.f.size.cmp(&a.f.size).then_with(|| a.f.rel.cmp(&b.f.rel)));
  }
  errors.sort();
  Ok(Run { algos: algos.to_vec(), root: root.to_path_buf(), sums, errors, work_time: started.elapsed().as_secs_f64() })
}

/// Writes JSON text as the contents of a JSON string (escaping it) while
/// hashing the unescaped text with SHA3-512: the envelope is streamed.
struct DataWriter<W: Write> {
  out: W,
  /// Unescaped bytes on their way to the SHA3-512 thread (the digest is
  /// sequential and slower than writing: it runs beside the writing).
  digest: Digester,
}

/// A SHA3-512 computed on its own thread from chunks sent to it.
struct Digester {
  chunk: Vec<u8>,
  tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
  thread: Option<std::thread::JoinHandle<String>>,
}

impl Digester {
  fn new() -> Self {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let thread = std::thread::spawn(move || {
      let mut d = sha3::Sha3_512::new();
      for c in rx {
        d.update(&c);
      }
      hex::encode(d.finalize())
    });
    Digester { chunk: Vec::with_capacity(1 << 20), tx: Some(tx), thread: Some(thread) }
  }
  fn update(&mut self, b: &[u8]) {
    self.chunk.extend_from_slice(b);
    if self.chunk.len() >= 1 << 20 {
      if let Some(tx) = &self.tx {
        let _ = tx.send(std::mem::replace(&mut self.chunk, Vec::with_capacity(1 << 20)));
      }
    }
  }
  /// The hex digest of everything given.
  fn finish(mut self) -> String {
    if let Some(tx) = self.tx.take() {
      let _ = tx.send(std::mem::take(&mut self.chunk));
    }
    self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
  }
}

impl<W: Write> Write for DataWriter<W> {
  fn write(&mut self, b: &[u8]) -> io::Result<usize> {
    self.digest.update(b);
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
      let esc: Option<&[u8]> = match c {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        0..=0x1f => None,
        _ => continue,
      };
      self.out.write_all(&b[start..i])?;
      match esc {
        Some(e) => self.out.write_all(e)?,
        None => write!(self.out, "\\u{c:04x}")?,
      }
      start = i + 1;
    }
    self.out.write_all(&b[start..])?;
    Ok(b.len())
  }
  fn flush(&mut self) -> io::Result<()> {
    self.out.flush()
  }
}

fn json_str(w: &mut impl Write, s: &str) -> io::Result<()> {
  serde_json::to_writer(&mut *w, s).map_err(io::Error::other)
}

/// A report path as the original service writes it: absolute, `<root>/<rel>`,
/// as `find <root> -type f` prints it (its checker turns `"<root>` into `".`).
fn abs_path(root: &str, rel: &str) -> String {
  if rel == "." || rel.is_empty() {
    root.to_string()
  } else if root.ends_with('/') {
    format!("{root}{rel}")
  } else {
    format!("{root}/{rel}")
  }
}

/// Writes the report data JSON: the original service's keys in its order
/// (`checksums`, `errors`, `files`, `start_timestamp` as a string,
/// `work_time`, `group`, `root_data`), absolute paths, then our additions
/// (`algorithms`, `sizes`, `mtimes`, `stat`, `symlinks`). Symlinks are only
/// in `symlinks` (and the metadata maps): `find -type f` does not list them,
/// so the original checker would call them lost on an original server.
fn write_data(w: &mut impl Write, run: &Run, group: &str, start_timestamp: f64) -> io::Result<()> {
  let root = run.root.to_string_lossy();
  let abs = |rel: &str| abs_path(&root, rel);
  let files = || run.sums.iter().filter(|s| s.f.link.is_none());
  w.write_all(b"{\"checksums\":{")?;
  for (i, s) in files().enumerate() {
    if i > 0 {
      w.write_all(b",")?;
    }
    json_str(w, &abs(&s.f.rel))?;
    w.write_all(b":{")?;
    for (j, a) in run.algos.iter().enumerate() {
      write!(w, "{}\"{}\":\"{}\"", if j > 0 { "," } else { "" }, a.name(), s.hex(&run.algos, j))?;
    }
    w.write_all(b"}")?;
  }
  w.write_all(b"},\"errors\":{")?;
  for (i, (p, e)) in run.errors.iter().enumerate() {
    if i > 0 {
      w.write_all(b",")?;
    }
    json_str(w, &abs(p))?;
    w.write_all(b":{\"error\":")?;
    json_str(w, e)?;
    w.write_all(b"}")?;
  }
  w.write_all(b"},\"files\":[")?;
  for (i, s) in files().enumerate() {
    if i > 0 {
      w.write_all(b",")?;
    }
    json_str(w, &abs(&s.f.rel))?;
  }
  // `str(int(time))`, as the original writes it.
  write!(w, "],\"start_timestamp\":\"{}\",\"work_time\":{:?},\"group\":", start_timestamp.floor() as i64, run.work_time)?;
  json_str(w, group)?;
  w.write_all(b",\"root_data\":")?;
  json_str(w, &root)?;
  w.write_all(b",\"algorithms\":[")?;
  for (i, a) in run.algos.iter().enumerate() {
    write!(w, "{}\"{}\"", if i > 0 { "," } else { "" }, a.name())?;
  }
  w.write_all(b"]")?;
  let map = |w: &mut dyn Write, key: &str, f: &dyn Fn(&Sum) -> String| -> io::Result<()> {
    write!(w, ",\"{key}\":{{")?;
    for (i, s) in run.sums.iter().enumerate() {
      if i > 0 {
        w.write_all(b",")?;
      }
      serde_json::to_writer(&mut *w, &abs(&s.f.rel)).map_err(io::Error::other)?;
      write!(w, ":{}", f(s))?;
    }
    w.write_all(b"}")
  };
  map(w, "sizes", &|s| s.f.size.to_string())?;
  map(w, "mtimes", &|s| format!("{:.9}", s.f.mtime_ns as f64 / 1e9))?;
  map(w, "stat", &|s| format!("[{},{},{}]", s.f.mtime_ns, s.f.ctime_ns, s.f.ino))?;
  w.write_all(b",\"symlinks\":{")?;
  let mut first = true;
  for s in run.sums.iter().filter(|s| s.f.link.is_some()) {
    if !first {
      w.write_all(b",")?;
    }
    first = false;
    json_str(w, &abs(&s.f.rel))?;
    w.write_all(b":")?;
    json_str(w, s.f.link.as_deref().unwrap())?;
  }
  w.write_all(b"}}")
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
  /// The envelope with the report JSON.
  Json,
  /// `sha256sum -c` lines (first algorithm).
  Sha256sum,
  /// `b3sum --check` lines.
  B3sum,
}

/// `sha256sum`'s escaping: a name with `\` or a newline gets a leading `\`
/// on the line and those characters escaped.
pub fn sum_line(hex: &str, name: &str) -> String {
  if name.contains(['\\', '\n', '\r']) {
    let esc = name.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r");
    format!("\\{hex}  {esc}\n")
  } else {
    format!("{hex}  {name}\n")
  }
}

/// Writes the report to `tmp` (not yet renamed): the envelope without its
/// closing brace, so the caller can add fields (an Ed25519 signature)
/// before it finishes the file with [`finish_report`]. Returns the
/// SHA3-512 hex of the data (JSON format) or None.
pub fn write_report(tmp: &Path, run: &Run, group: &str, start_timestamp: f64, format: Format) -> Result<Option<String>, Error> {
  let f = File::create(tmp).map_err(|e| Error::io(tmp, "cannot write", &e))?;
  let mut w = BufWriter::with_capacity(1 << 20, f);
  let r = (|| -> io::Result<Option<String>> {
    match format {
      Format::Json => {
        w.write_all(b"{\"data\":\"")?;
        let mut dw = DataWriter { out: &mut w, digest: Digester::new() };
        {
          let mut bw = BufWriter::with_capacity(1 << 20, &mut dw);
          write_data(&mut bw, run, group, start_timestamp)?;
          bw.flush()?;
        }
        let digest = dw.digest.finish();
        write!(w, "\",\"signature\":\"{digest}\"")?;
        w.flush()?;
        Ok(Some(digest))
      }
      Format::Sha256sum | Format::B3sum => {
        let idx = if format == Format::B3sum {
          run.algos.iter().position(|a| *a == Algo::Blake3)
        } else {
          run.algos.iter().position(|a| *a == Algo::Sha256)
        }
        .ok_or_else(|| io::Error::other("the format needs its algorithm in --algo"))?;
        for s in run.sums.iter().filter(|s| s.f.link.is_none()) {
          w.write_all(sum_line(&s.hex(&run.algos, idx), &s.f.rel).as_bytes())?;
        }
        w.flush()?;
        Ok(None)
      }
    }
  })();
  r.map_err(|e| Error::io(tmp, "cannot write", &e))
}

/// Adds `extra` (e.g. `,"signature_ed25519":"…"`) and the closing brace
/// for the JSON format, fsyncs, and renames `tmp` to `path`.
pub fn finish_report(tmp: &Path, path: &Path, extra: &str, json: bool) -> Result<(), Error> {
  let r = (|| -> io::Result<()> {
    let mut f = OpenOptions::new().append(true).open(tmp)?;
    if json {
      f.write_all(extra.as_bytes())?;
      f.write_all(b"}\n")?;
    }
    f.sync_all()?;
    drop(f);
    fault_point();
    fs::rename(tmp, path)?;
    util::sync_dir(path.parent().unwrap_or(Path::new(".")))
  })();
  r.map_err(|e| {
    let _ = fs::remove_file(tmp);
    Error::io(path, "cannot write the report", &e)
  })
}

/// A report as read back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
  pub group: String,
  pub root_data: String,
  pub start_timestamp: f64,
  pub work_time: f64,
  pub algorithms: Vec<String>,
  #[serde(skip)]
  pub files: Vec<ReportFile>,
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

/// One file of a report, kept compact (a million are held while verifying).
#[derive(Debug, Clone, Default)]
pub struct ReportFile {
  pub rel: Box<str>,
  /// Per algorithm of the report, in order: a length byte, then that many
  /// digest bytes (length 0: absent).
  digest: Box<[u8]>,
  pub size: Option<u64>,
  /// (mtime_ns, ctime_ns, ino)
  pub stat: Option<(i64, i64, u64)>,
  pub mtime: Option<f64>,
  pub link: Option<Box<str>>,
}

impl ReportFile {
  /// Hex digest of the `i`-th algorithm of the report, if recorded.
  pub fn sum(&self, i: usize) -> Option<String> {
    let mut at = 0;
    for k in 0..=i {
      let n = *self.digest.get(at)? as usize;
      if k == i {
        return (n > 0).then(|| hex::encode(&self.digest[at + 1..at + 1 + n]));
      }
      at += 1 + n;
    }
    None
  }

  fn set_sum(&mut self, i: usize, hexd: &str, algos: usize) {
    let Ok(raw) = hex::decode(hexd) else { return };
    let mut parts: Vec<Vec<u8>> = (0..algos).map(|k| self.sum(k).and_then(|h| hex::decode(h).ok()).unwrap_or_default()).collect();
    if i < parts.len() {
      parts[i] = raw;
    }
    let mut d = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
      d.push(p.len() as u8);
      d.extend_from_slice(&p);
    }
    self.digest = d.into_boxed_slice();
  }
}

/// The envelope's `data` string, unescaped on the fly (the report JSON is
/// parsed straight from it, never held whole). The unescaped bytes go in
/// chunks to a thread that computes their SHA-3-512 meanwhile.
struct DataReader<R: io::BufRead> {
  inner: R,
  done: bool,
  pending: Vec<u8>,
  digest: Digester,
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
  fn escape(&mut self) -> io::Result<()> {
    let e = self.byte()?;
    let ch = match e {
      b'"' => '"',
      b'\\' => '\\',
      b'/' => '/',
      b'n' => '\n',
      b'r' => '\r',
      b't' => '\t',
      b'b' => '\u{8}',
      b'f' => '\u{c}',
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
      _ => return Err(io::Error::other("bad escape")),
    };
    let mut buf = [0u8; 4];
    self.pending.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    Ok(())
  }
}

impl<R: io::BufRead> Read for DataReader<R> {
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
      match buf[..room].iter().position(|&c| c == b'"' || c == b'\\') {
        None => {
          out[n..n + room].copy_from_slice(&buf[..room]);
          self.inner.consume(room);
          n += room;
        }
        Some(0) => {
          let c = buf[0];
          self.inner.consume(1);
          if c == b'"' {
            self.done = true;
          } else {
            self.escape()?;
          }
        }
        Some(p) => {
          out[n..n + p].copy_from_slice(&buf[..p]);
          self.inner.consume(p);
          n += p;
        }
      }
    }
    self.digest.update(&out[..n]);
    Ok(n)
  }
}

/// Builds the compact report while the data JSON streams by.
struct Builder {
  head: Report,
  files: Vec<ReportFile>,
  /// xxh3 of a path → index of the first file with that hash; the rare
  /// second path with the same hash goes to `collisions`.
  index: HashMap<u64, u32>,
  collisions: HashMap<Box<str>, u32>,
  /// Digest lengths of the report's algorithms (when known), for the layout.
  lens: Vec<usize>,
}

impl Builder {
  fn slot(&mut self, rel: &str) -> &mut ReportFile {
    let h = xxhash_rust::xxh3::xxh3_64(rel.as_bytes());
    let i = match self.index.get(&h).copied() {
      Some(i) if &*self.files[i as usize].rel == rel => i,
      Some(_) => match self.collisions.get(rel).copied() {
        Some(i) => i,
        None => {
          let i = self.push(rel);
          self.collisions.insert(rel.into(), i);
          i
        }
      },
      None => {
        let i = self.push(rel);
        self.index.insert(h, i);
        i
      }
    };
    &mut self.files[i as usize]
  }
  fn push(&mut self, rel: &str) -> u32 {
    let mut d = Vec::with_capacity(self.lens.iter().map(|n| n + 1).sum());
    for &n in &self.lens {
      d.push(0);
      d.extend(std::iter::repeat_n(0u8, n));
    }
    self.files.push(ReportFile { rel: rel.into(), digest: d.into_boxed_slice(), ..Default::default() });
    (self.files.len() - 1) as u32
  }
}

impl ReportFile {
  /// Writes a digest in place when the file has the layout of `lens` (the
  /// usual case: every file has every algorithm of the report).
  fn put_sum(&mut self, i: usize, hexd: &str, lens: &[usize], algos: usize) {
    let want = hexd.len() / 2;
    let layout: usize = lens.iter().map(|n| n + 1).sum();
    if lens.len() == algos && lens.get(i) == Some(&want) && self.digest.len() == layout && hexd.len() & 1 == 0 {
      let at: usize = lens[..i].iter().map(|n| n + 1).sum();
      if hex::decode_to_slice(hexd, &mut self.digest[at + 1..at + 1 + want]).is_ok() {
        self.digest[at] = want as u8;
      }
      return;
    }
    self.set_sum(i, hexd, algos);
  }
}

struct SumsSeed<'b> {
  b: &'b mut Builder,
  rel: std::borrow::Cow<'b, str>,
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
    let mut pairs: Vec<(std::borrow::Cow<'de, str>, std::borrow::Cow<'de, str>)> = Vec::with_capacity(4);
    while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
      pairs.push((k, map.next_value()?));
    }
    let b = self.b;
    if b.head.algorithms.is_empty() {
      let mut names: Vec<String> = pairs.iter().map(|(k, _)| k.to_string()).collect();
      names.sort();
      b.head.algorithms = names;
    }
    let algos = b.head.algorithms.len();
    let idx: Vec<Option<usize>> = pairs.iter().map(|(k, _)| b.head.algorithms.iter().position(|a| a == k)).collect();
    let lens = b.lens.clone();
    let slot = b.slot(&self.rel);
    for ((_, h), i) in pairs.iter().zip(idx) {
      if let Some(i) = i {
        // The original service takes `sha256sum`'s first word, which for a name with `\` or a
        // newline carries coreutils' escape mark: `\<hex>`.
        slot.put_sum(i, h.strip_prefix('\\').unwrap_or(h), &lens, algos);
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

impl<'de, T: Deserialize<'de>, F: FnMut(&mut ReportFile, T)> DeserializeSeed<'de> for PathMap<'_, T, F> {
  type Value = ();
  fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
    d.deserialize_map(self)
  }
}

impl<'de, T: Deserialize<'de>, F: FnMut(&mut ReportFile, T)> Visitor<'de> for PathMap<'_, T, F> {
  type Value = ();
  fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
    f.write_str("a map of paths")
  }
  fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
    while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
      let v: T = map.next_value()?;
      (self.f)(self.b.slot(&k), v);
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
    while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
      map.next_value_seed(SumsSeed { b: &mut *self.0, rel: std::borrow::Cow::Owned(k.into_owned()) })?;
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
    while let Some(p) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
      self.0.slot(&p);
    }
    Ok(())
  }
}

struct DataVisitor<'b>(&'b mut Builder);

impl<'de> Visitor<'de> for DataVisitor<'_> {
  type Value = ();
  fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
    f.write_str("report data")
  }
  fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
    let b = self.0;
    while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
      match &*k {
        "group" => b.head.group = map.next_value()?,
        "root_data" => b.head.root_data = map.next_value()?,
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
          b.lens = b.head.algorithms.iter().map(|a| Algo::parse(a).map(|a| a.hex_len() / 2).unwrap_or(0)).collect();
        }
        "files" => map.next_value_seed(FilesSeed(b))?,
        "checksums" => map.next_value_seed(ChecksumsSeed(b))?,
        "sizes" => map.next_value_seed(PathMap { b, f: |f: &mut ReportFile, v: u64| f.size = Some(v), _t: std::marker::PhantomData })?,
        "mtimes" => map.next_value_seed(PathMap { b, f: |f: &mut ReportFile, v: f64| f.mtime = Some(v), _t: std::marker::PhantomData })?,
        "stat" => {
          map.next_value_seed(PathMap { b, f: |f: &mut ReportFile, v: (i64, i64, u64)| f.stat = Some(v), _t: std::marker::PhantomData })?
        }
        "symlinks" => {
          b.head.records_symlinks = true;
          map.next_value_seed(PathMap { b, f: |f: &mut ReportFile, v: String| f.link = Some(v.into()), _t: std::marker::PhantomData })?
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

fn read_json_report(path: &Path) -> Result<Report, Error> {
  let bad = |m: String| Error::corrupt(path, m);
  let f = File::open(path).map_err(|e| Error::io(path, "cannot read the report", &e))?;
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
  let mut b = Builder { head: Report::default(), files: Vec::new(), index: HashMap::new(), collisions: HashMap::new(), lens: Vec::new() };
  let mut dr = DataReader { inner: &mut r, done: false, pending: Vec::new(), digest: Digester::new() };
  let parsed = (|| -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_reader(io::BufReader::with_capacity(1 << 20, &mut dr));
    de.deserialize_map(DataVisitor(&mut b)).map_err(|e| e.to_string())?;
    drop(de);
    // Whatever follows the data object inside the string (nothing, for our reports) is hashed too.
    io::copy(&mut dr, &mut io::sink()).map_err(|e| e.to_string())?;
    Ok(())
  })();
  let digest = dr.digest.finish();
  parsed.map_err(|e| bad(format!("the report's data is not valid: {e}")))?;
  let mut rest = String::new();
  r.read_to_string(&mut rest).map_err(|e| bad(format!("cannot read the end of the report: {e}")))?;
  let tail: Tail = serde_json::from_str(&format!("{{{}", rest.trim_start().trim_start_matches(',')))
    .map_err(|e| bad(format!("the end of the report is not valid: {e}")))?;
  let Some(sig) = tail.signature else { return Err(bad("the report has no signature".into())) };
  if !digest.eq_ignore_ascii_case(sig.trim()) {
    return Err(bad(
      "the report's SHA3-512 signature does not match its data: the report was altered or damaged; refusing to use it".into(),
    ));
  }
  let mut rep = b.head;
  rep.files = b.files;
  // `root_data` comes last in the original's key order: paths are made relative once all is read.
  for f in &mut rep.files {
    let rel = relative_to_root(&f.rel, &rep.root_data);
    if rel.len() != f.rel.len() {
      f.rel = rel.into();
    }
  }
  for (p, _) in &mut rep.errors {
    let rel = relative_to_root(p, &rep.root_data);
    if rel.len() != p.len() {
      *p = rel.to_string();
    }
  }
  rep.digest = Some(digest);
  rep.signature_ed25519 = tail.signature_ed25519;
  rep.public_key = tail.public_key;
  Ok(rep)
}

/// Unescapes a `sha256sum` line's name (after a leading `\`).
fn unescape_sum(name: &str) -> String {
  let mut out = String::with_capacity(name.len());
  let mut it = name.chars();
  while let Some(c) = it.next() {
    if c == '\\' {
      match it.next() {
        Some('n') => out.push('\n'),
        Some('r') => out.push('\r'),
        Some('\\') => out.push('\\'),
        Some(o) => {
          out.push('\\');
          out.push(o);
        }
        None => out.push('\\'),
      }
    } else {
      out.push(c);
    }
  }
  out
}

/// Reads a report: the JSON envelope (the digest is checked first; a
/// mismatch is an error before anything else happens) or check lines
/// (`sha256sum`, `b3sum`, `md5sum`…; `algo_hint` names the algorithm when
/// the digest length is ambiguous).
pub fn read_report(path: &Path, algo_hint: Option<Algo>) -> Result<Report, Error> {
  let bytes = fs::read(path).map_err(|e| Error::io(path, "cannot read the report", &e))?;
  let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
  if first == Some(b'{') {
    drop(bytes);
    return read_json_report(path);
  }
  let text = String::from_utf8(bytes).map_err(|_| Error::corrupt(path, "not a JSON report and not UTF-8 check lines"))?;
  let mut files = Vec::new();
  let mut algo: Option<Algo> = None;
  for (n, line) in text.lines().enumerate() {
    if line.trim().is_empty() {
      continue;
    }
    let (escaped, line) = match line.strip_prefix('\\') {
      Some(rest) => (true, rest),
      None => (false, line),
    };
    let Some((hex, name)) = line.split_once("  ").or_else(|| line.split_once(" *")) else {
      return Err(Error::corrupt(path, format!("line {}: expected \"<hex digest>  <name>\"", n + 1)));
    };
    if hex.is_empty() || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
      return Err(Error::corrupt(path, format!("line {}: {hex:?} is not a hex digest", n + 1)));
    }
    let a = match (algo_hint, hex.len()) {
      (Some(a), l) if a.hex_len() == l => a,
      (None, 64) => Algo::Sha256,
      (None, 32) => Algo::Md5,
      (None, 128) => Algo::Sha512,
      (None, 16) => Algo::Xxh3,
      _ => {
        return Err(Error::corrupt(path, format!("line {}: a {}-digit digest does not fit the algorithm; pass --algo", n + 1, hex.len())))
      }
    };
    if algo.is_some_and(|x| x != a) {
      return Err(Error::corrupt(path, format!("line {}: mixed digest lengths", n + 1)));
    }
    algo = Some(a);
    let name = if escaped { unescape_sum(name) } else { name.to_string() };
    let mut f = ReportFile { rel: name.trim_start_matches("./").into(), ..Default::default() };
    f.set_sum(0, hex, 1);
    files.push(f);
  }
  Ok(Report {
    algorithms: vec![algo.unwrap_or(Algo::Sha256).name().to_string()],
    files,
    root_data: path.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
    ..Default::default()
  })
}

#[cfg(test)]
mod tests {
  use super::{relative_to_root, sum_line, unescape_sum, DataReader, Digester};
  use std::io::Read;

  /// The envelope's data string (after its opening quote) unescaped as the reader does.
  fn unescape_data(escaped: &str) -> std::io::Result<String> {
    let src = format!("{escaped}\"");
    let mut r = std::io::BufReader::new(src.as_bytes());
    let mut dr = DataReader { inner: &mut r, done: false, pending: Vec::new(), digest: Digester::new() };
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
  fn check_lines_escape_and_unescape_names_as_sha256sum_does() {
    let h = "ab".repeat(32);
    assert_eq!(sum_line(&h, "plain name.txt"), format!("{h}  plain name.txt\n"));
    for name in ["back\\slash", "new\nline", "cr\rhere", "both\\and\nthis"] {
      let line = sum_line(&h, name);
      assert!(line.starts_with('\\'), "{line:?}");
      let esc = line.trim_end_matches('\n').split_once("  ").unwrap().1;
      assert_eq!(unescape_sum(esc), name);
    }
    // An unknown escape is kept as written.
    assert_eq!(unescape_sum(r"a\qb"), r"a\qb");
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
}
