//! Writing a report: the original service's envelope `{"data": "<report
//! JSON>", "signature": "<SHA3-512 hex of data>"}`, or `sha256sum`/`b3sum`
//! check lines, streamed while the files are still being hashed.
//!
//! The data's keys are ordered so that all that is known once the walk has
//! ended (the root, the list of files, their sizes and times) comes first
//! and is written, escaped and hashed while the hashers work; `checksums`
//! follows, entry by entry in the report's order as their digests arrive;
//! `errors` and `work_time`, known only at the end, close it. What is left
//! after the last hash is a few entries, not the whole report.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::Receiver;

use super::algo::Algo;
use super::lines::sum_line;
use super::run::Found;
#[cfg(test)]
use super::run::Run;
use super::Digester;
use crate::error::Error;
use crate::fs::util::{self, fault_point};

/// Writes JSON text as the contents of a JSON string (escaping it) while
/// hashing the unescaped text with SHA3-512: the envelope is streamed.
///
/// The text is JSON that this module wrote (`serde_json` escapes control
/// characters inside strings, and there are none outside them), so only
/// `"` and `\` need escaping here: they are found with `memchr2`.
struct DataWriter<W: Write> {
  out: W,
  /// Unescaped bytes on their way to the SHA3-512 thread (the digest is
  /// sequential and slower than writing: it runs beside the writing).
  digest: Digester,
}

impl<W: Write> Write for DataWriter<W> {
  fn write(&mut self, b: &[u8]) -> io::Result<usize> {
    debug_assert!(!b.iter().any(|&c| c < 0x20), "raw control character in report data");
    self.digest.update(b);
    let mut start = 0;
    for i in memchr::memchr2_iter(b'"', b'\\', b) {
      self.out.write_all(&b[start..i])?;
      self.out.write_all(if b[i] == b'"' { b"\\\"" } else { b"\\\\" })?;
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
/// Written as a JSON string; the root's escaped form is made once, and a
/// relative path that needs no escaping (nearly all) is copied as it is.
struct AbsPaths {
  root: String,
  /// `"<root>/` escaped, without the closing quote.
  prefix: Vec<u8>,
}

impl AbsPaths {
  fn new(root: &str) -> Self {
    let mut prefix = serde_json::to_vec(&if root.ends_with('/') { root.to_string() } else { format!("{root}/") }).unwrap_or_default();
    prefix.pop();
    AbsPaths { root: root.to_string(), prefix }
  }

  fn write(&self, w: &mut impl Write, rel: &str) -> io::Result<()> {
    if rel == "." || rel.is_empty() {
      return json_str(w, &self.root);
    }
    if rel.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\') {
      let mut esc = serde_json::to_vec(rel).map_err(io::Error::other)?;
      esc.remove(0);
      w.write_all(&self.prefix)?;
      return w.write_all(&esc);
    }
    w.write_all(&self.prefix)?;
    w.write_all(rel.as_bytes())?;
    w.write_all(b"\"")
  }
}

const PENDING: u8 = 0;
const HASHED: u8 = 1;
const FAILED: u8 = 2;

/// A hasher's answer for the file with walk id `.0`: its digests
/// (concatenated in the run's algorithm order) or why it could not be read.
pub(crate) type Arrival = (u32, Result<Box<[u8]>, String>);

/// The files of a report in its order (largest first, then by path) and
/// their digests, which arrive from the hashers in any order; the writer
/// waits for each when it comes to it.
pub(crate) struct Sums {
  pub(crate) algos: Vec<Algo>,
  /// In report order, each with its walk id (one vector: sorting and
  /// keeping them as pairs needs no second copy of a million records).
  found: Vec<(Found, u32)>,
  dlen: usize,
  /// `found.len() * dlen` bytes: no allocation per file.
  digests: Vec<u8>,
  state: Vec<u8>,
  /// Walk id → position in `found`.
  pos_of_id: Vec<u32>,
  incoming: Option<Receiver<Vec<Arrival>>>,
  /// Files that could not be hashed (relative path, why), in arrival order.
  pub(crate) failed: Vec<(String, String)>,
}

impl Sums {
  /// Files in report order, each with its walk id, whose digests will
  /// arrive on `incoming`.
  pub(crate) fn streamed(algos: &[Algo], found: Vec<(Found, u32)>, incoming: Receiver<Vec<Arrival>>) -> Self {
    let mut pos_of_id = vec![0u32; found.len()];
    for (pos, (_, id)) in found.iter().enumerate() {
      pos_of_id[*id as usize] = pos as u32;
    }
    let dlen = algos.iter().map(|a| a.hex_len() / 2).sum();
    let n = found.len();
    Sums {
      algos: algos.to_vec(),
      found,
      dlen,
      digests: vec![0; n * dlen],
      state: vec![PENDING; n],
      pos_of_id,
      incoming: Some(incoming),
      failed: Vec::new(),
    }
  }

  /// The files of a finished run (already in report order).
  #[cfg(test)]
  fn of_run(run: &Run) -> Self {
    let dlen = run.algos.iter().map(|a| a.hex_len() / 2).sum();
    let mut digests = Vec::with_capacity(run.sums.len() * dlen);
    for s in &run.sums {
      digests.extend_from_slice(&s.digest);
    }
    Sums {
      algos: run.algos.clone(),
      found: run.sums.iter().map(|s| (s.f.clone(), 0)).collect(),
      dlen,
      digests,
      state: vec![HASHED; run.sums.len()],
      pos_of_id: Vec::new(),
      incoming: None,
      failed: Vec::new(),
    }
  }

  /// Takes one batch of arrivals; false when no more can come.
  fn receive(&mut self) -> bool {
    let Some(rx) = &self.incoming else { return false };
    let Ok(batch) = rx.recv() else { return false };
    for (id, r) in batch {
      let pos = self.pos_of_id[id as usize] as usize;
      match r {
        Ok(d) => {
          self.digests[pos * self.dlen..(pos + 1) * self.dlen].copy_from_slice(&d);
          self.state[pos] = HASHED;
        }
        Err(why) => {
          self.state[pos] = FAILED;
          self.failed.push((self.found[pos].0.rel.to_string(), why));
        }
      }
    }
    true
  }

  /// Waits for the file at `pos`: true once its digests are in (see
  /// [`Sums::digest`]), false if it could not be hashed. An error when the
  /// hashers stopped without it (the run was aborted).
  fn wait(&mut self, pos: usize) -> io::Result<bool> {
    while self.state[pos] == PENDING {
      if !self.receive() {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "the hashing stopped"));
      }
    }
    Ok(self.state[pos] == HASHED)
  }

  fn digest(&self, pos: usize) -> &[u8] {
    &self.digests[pos * self.dlen..(pos + 1) * self.dlen]
  }

  /// Whether the file at `pos` is in the report as far as is known now
  /// (a file still being hashed is assumed to be).
  fn listed(&self, pos: usize) -> bool {
    self.state[pos] != FAILED
  }

  fn all_known(&self) -> bool {
    !self.state.contains(&PENDING)
  }

  /// Hex of the `i`-th algorithm's digest within `d`, into `buf`.
  fn hex<'b>(&self, d: &[u8], i: usize, buf: &'b mut [u8; 128]) -> &'b str {
    let start: usize = self.algos[..i].iter().map(|a| a.hex_len() / 2).sum();
    let n = self.algos[i].hex_len() / 2;
    let out = &mut buf[..2 * n];
    hex::encode_to_slice(&d[start..start + n], out).expect("hex length");
    std::str::from_utf8(out).expect("hex is ASCII")
  }
}

/// What a written report holds, for the caller's summary.
pub struct Written {
  /// SHA3-512 hex of the data (JSON format).
  pub digest: Option<String>,
  /// Files and symlinks with digests.
  pub files: usize,
  /// Bytes of the files hashed.
  pub bytes: u64,
  /// Paths that could not be read (walk and hashing), sorted.
  pub errors: Vec<(String, String)>,
  pub work_time: f64,
}

/// The report's header fields and the errors known before the hashing.
pub(crate) struct Head<'a> {
  pub root: &'a str,
  pub group: &'a str,
  pub start_timestamp: f64,
  /// Errors of the walk (the hashers' come through [`Sums`]).
  pub walk_errors: &'a [(String, String)],
  /// The run's work time, asked for once every digest is in.
  pub work_time: &'a dyn Fn() -> f64,
  /// When the run started (`AXIOMATIC_TIMINGS`).
  pub started: std::time::Instant,
}

/// Writes the report data JSON. Keys: those known once the walk has ended
/// (`root_data`, `group`, `start_timestamp` as a string, `algorithms`,
/// `files`, then ours: `sizes`, `stat`, `symlinks`), then
/// `checksums` as digests arrive, then `errors` and `work_time`. Absolute
/// paths. Symlinks are only in `symlinks` (and the metadata maps): `find
/// -type f` does not list them, so the original checker would call them
/// lost on an original server. Returns false when a file listed before its
/// hash was known turned out unreadable: the text is then wrong and must be
/// written again (with every state known, that second time is exact).
fn write_data(w: &mut impl Write, s: &mut Sums, head: &Head, work_time: &mut f64) -> io::Result<bool> {
  let abs = AbsPaths::new(head.root);
  let n = s.found.len();
  let known_at_start = s.all_known();
  w.write_all(b"{\"root_data\":")?;
  json_str(w, head.root)?;
  w.write_all(b",\"group\":")?;
  json_str(w, head.group)?;
  // `str(int(time))`, as the original writes it.
  write!(w, ",\"start_timestamp\":\"{}\",\"algorithms\":[", head.start_timestamp.floor() as i64)?;
  for (i, a) in s.algos.iter().enumerate() {
    write!(w, "{}\"{}\"", if i > 0 { "," } else { "" }, a.name())?;
  }
  w.write_all(b"],\"files\":[")?;
  let mut first = true;
  for pos in 0..n {
    if s.found[pos].0.link.is_none() && s.listed(pos) {
      w.write_all(if first { b"" } else { b"," })?;
      first = false;
      abs.write(w, &s.found[pos].0.rel)?;
    }
  }
  w.write_all(b"]")?;
  let mut num = itoa::Buffer::new();
  for key in ["sizes", "stat"] {
    write!(w, ",\"{key}\":{{")?;
    let mut first = true;
    for pos in 0..n {
      if !s.listed(pos) {
        continue;
      }
      let f = &s.found[pos].0;
      w.write_all(if first { b"" } else { b"," })?;
      first = false;
      abs.write(w, &f.rel)?;
      w.write_all(b":")?;
      match key {
        "sizes" => w.write_all(num.format(f.size).as_bytes())?,
        _ => {
          w.write_all(b"[")?;
          w.write_all(num.format(f.mtime_ns).as_bytes())?;
          w.write_all(b",")?;
          w.write_all(num.format(f.ctime_ns).as_bytes())?;
          w.write_all(b",")?;
          w.write_all(num.format(f.ino).as_bytes())?;
          w.write_all(b"]")?;
        }
      }
    }
    w.write_all(b"}")?;
  }
  w.write_all(b",\"symlinks\":{")?;
  let mut first = true;
  for pos in 0..n {
    if let (Some(t), true) = (&s.found[pos].0.link, s.listed(pos)) {
      w.write_all(if first { b"" } else { b"," })?;
      first = false;
      abs.write(w, &s.found[pos].0.rel)?;
      w.write_all(b":")?;
      json_str(w, t)?;
    }
  }
  crate::progress::timing("report head", head.started);
  w.write_all(b"},\"checksums\":{")?;
  let mut first = true;
  let mut hex = [0u8; 128];
  for pos in 0..n {
    if !s.wait(pos)? || s.found[pos].0.link.is_some() {
      continue;
    }
    let d = s.digest(pos);
    w.write_all(if first { b"" } else { b"," })?;
    first = false;
    abs.write(w, &s.found[pos].0.rel)?;
    w.write_all(b":{")?;
    for j in 0..s.algos.len() {
      write!(w, "{}\"{}\":\"{}\"", if j > 0 { "," } else { "" }, s.algos[j].name(), s.hex(d, j, &mut hex))?;
    }
    w.write_all(b"}")?;
  }
  // Every digest is in: the work is done.
  *work_time = (head.work_time)();
  crate::progress::timing("checksums", head.started);
  let mut errors: Vec<&(String, String)> = head.walk_errors.iter().chain(&s.failed).collect();
  errors.sort();
  w.write_all(b"},\"errors\":{")?;
  for (i, (p, e)) in errors.into_iter().enumerate() {
    w.write_all(if i > 0 { b"," } else { b"" })?;
    abs.write(w, p)?;
    w.write_all(b":{\"error\":")?;
    json_str(w, e)?;
    w.write_all(b"}")?;
  }
  write!(w, "}},\"work_time\":{:?}}}", *work_time)?;
  Ok(known_at_start || s.failed.is_empty())
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

impl Format {
  /// The index of the algorithm a check-line format writes, or an error
  /// naming what is missing (checked before any work starts).
  pub fn line_algo(self, algos: &[Algo]) -> Result<Option<usize>, Error> {
    let want = match self {
      Format::Json => return Ok(None),
      Format::Sha256sum => Algo::Sha256,
      Format::B3sum => Algo::Blake3,
    };
    match algos.iter().position(|a| *a == want) {
      Some(i) => Ok(Some(i)),
      None => {
        Err(Error::config(format!("--format {}: add {} to --algo", if want == Algo::Sha256 { "sha256sum" } else { "b3sum" }, want.name())))
      }
    }
  }
}

/// Streams the report of `sums` to `tmp` (not yet renamed): the envelope
/// without its closing brace, so the caller can add fields (an Ed25519
/// signature) before it finishes the file with [`finish_report`].
pub(crate) fn write_sums(tmp: &Path, s: &mut Sums, head: &Head, format: Format) -> Result<Written, Error> {
  let line_algo = format.line_algo(&s.algos)?;
  let mut work_time = 0.0;
  let written = |s: &mut Sums, work_time: &mut f64| -> io::Result<(bool, Option<String>)> {
    let f = File::create(tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    match line_algo {
      None => {
        w.write_all(b"{\"data\":\"")?;
        let mut dw = DataWriter { out: &mut w, digest: Digester::new() };
        let exact = {
          let mut bw = BufWriter::with_capacity(1 << 20, &mut dw);
          let exact = write_data(&mut bw, s, head, work_time)?;
          bw.flush()?;
          exact
        };
        let digest = dw.digest.finish();
        write!(w, "\",\"signature\":\"{digest}\"")?;
        w.flush()?;
        Ok((exact, Some(digest)))
      }
      Some(idx) => {
        let mut hex = [0u8; 128];
        for pos in 0..s.found.len() {
          if !s.wait(pos)? || s.found[pos].0.link.is_some() {
            continue;
          }
          w.write_all(sum_line(s.hex(s.digest(pos), idx, &mut hex), &s.found[pos].0.rel).as_bytes())?;
        }
        *work_time = (head.work_time)();
        w.flush()?;
        Ok((true, None))
      }
    }
  };
  let mut r = written(s, &mut work_time);
  if let Ok((false, _)) = r {
    // A file listed before its hash failed: written again, now exact.
    r = written(s, &mut work_time);
  }
  let digest = match r {
    Ok((_, d)) => d,
    Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(Error::aborted()),
    Err(e) => return Err(Error::io(tmp, "cannot write", &e)),
  };
  let mut errors: Vec<(String, String)> = head.walk_errors.iter().chain(&s.failed).cloned().collect();
  errors.sort();
  let hashed = |pos: &usize| s.state[*pos] == HASHED;
  Ok(Written {
    digest,
    files: (0..s.found.len()).filter(hashed).count(),
    bytes: (0..s.found.len()).filter(hashed).filter(|&p| s.found[p].0.link.is_none()).map(|p| s.found[p].0.size).sum(),
    errors,
    work_time,
  })
}

/// Writes the report of a finished run (already in report order) to `tmp`
/// (see [`write_sums`]): the tests' sequential reference. Returns the
/// SHA3-512 hex of the data (JSON format) or None.
#[cfg(test)]
pub(crate) fn write_report(tmp: &Path, run: &Run, group: &str, start_timestamp: f64, format: Format) -> Result<Option<String>, Error> {
  let root = run.root.to_string_lossy();
  let head = Head {
    root: &root,
    group,
    start_timestamp,
    walk_errors: &run.errors,
    work_time: &|| run.work_time,
    started: std::time::Instant::now(),
  };
  Ok(write_sums(tmp, &mut Sums::of_run(run), &head, format)?.digest)
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
