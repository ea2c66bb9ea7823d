//! `sha256sum`/`b3sum`/`md5sum` check lines: writing one (with coreutils'
//! escaping of `\` and newlines) and parsing a file of them.

use std::io::BufRead;
use std::path::Path;

use super::algo::Algo;
use super::report_read::Report;
use super::table::Files;
use crate::error::Error;

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

/// Unescapes a `sha256sum` line's name (after a leading `\`).
pub(super) fn unescape_sum(name: &str) -> String {
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

/// Parses a file of check lines (`<hex>  <name>`, or `<hex> *<name>` for
/// binary mode, `\` before an escaped name), one line at a time. The
/// algorithm comes from the digest length (or `algo_hint` when it fits).
pub fn parse(path: &Path, mut r: impl BufRead, algo_hint: Option<Algo>) -> Result<Report, Error> {
  let not_text = || Error::corrupt(path, "not a JSON report and not UTF-8 check lines");
  let mut files = Files::default();
  let mut algo: Option<Algo> = None;
  let mut raw = Vec::new();
  let mut n = 0;
  loop {
    raw.clear();
    if r.read_until(b'\n', &mut raw).map_err(|e| Error::io(path, "cannot read the report", &e))? == 0 {
      break;
    }
    n += 1;
    let line = std::str::from_utf8(&raw).map_err(|_| not_text())?;
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
      continue;
    }
    let (escaped, line) = match line.strip_prefix('\\') {
      Some(rest) => (true, rest),
      None => (false, line),
    };
    let Some((hex, name)) = line.split_once("  ").or_else(|| line.split_once(" *")) else {
      return Err(Error::corrupt(path, format!("line {n}: expected \"<hex digest>  <name>\"")));
    };
    if hex.is_empty() || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
      return Err(Error::corrupt(path, format!("line {n}: {hex:?} is not a hex digest")));
    }
    let a = match (algo_hint, hex.len()) {
      (Some(a), l) if a.hex_len() == l => a,
      (None, 64) => Algo::Sha256,
      (None, 32) => Algo::Md5,
      (None, 128) => Algo::Sha512,
      (None, 16) => Algo::Xxh3,
      _ => return Err(Error::corrupt(path, format!("line {n}: a {}-digit digest does not fit the algorithm; pass --algo", hex.len()))),
    };
    if algo.is_some_and(|x| x != a) {
      return Err(Error::corrupt(path, format!("line {n}: mixed digest lengths")));
    }
    algo = Some(a);
    let name = if escaped { unescape_sum(name) } else { name.to_string() };
    files.set_layout(&[a.hex_len() / 2]);
    let i = files.push(name.trim_start_matches("./"));
    files.put_sum(i, 0, hex, 1);
  }
  if files.overflow {
    return Err(Error::corrupt(path, "the report holds more than 4 GiB of paths; it cannot be verified in one piece"));
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
  use super::{sum_line, unescape_sum};

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
}
