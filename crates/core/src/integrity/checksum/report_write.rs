//! Writing a report: the original service's envelope `{"data": "<report
//! JSON>", "signature": "<SHA3-512 hex of data>"}`, streamed (the data is
//! escaped and hashed as it is written), or `sha256sum`/`b3sum` check lines.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::algo::Algo;
use super::lines::sum_line;
use super::run::{Run, Sum};
use super::Digester;
use crate::error::Error;
use crate::fs::util::{self, fault_point};

/// Writes JSON text as the contents of a JSON string (escaping it) while
/// hashing the unescaped text with SHA3-512: the envelope is streamed.
struct DataWriter<W: Write> {
  out: W,
  /// Unescaped bytes on their way to the SHA3-512 thread (the digest is
  /// sequential and slower than writing: it runs beside the writing).
  digest: Digester,
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
