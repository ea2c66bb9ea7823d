//! File names as the metadata, the state and the rules see them: always
//! valid UTF-8, even when the name on disk is not.
//!
//! Unix names are bytes. A name that is valid UTF-8 (nearly all) is kept as
//! it is. In a name that is not, each byte that is not part of a valid UTF-8
//! sequence (always ≥ 0x80) is written as the code point U+10FF00 + byte
//! (U+10FF80..U+10FFFF, in Unicode's last private-use plane); a name that
//! really contains one of those code points has that character's own four
//! bytes escaped the same way, so the mapping is lossless both ways:
//! `decode(encode(x)) == x` for every byte string. JSON holds the result as
//! an ordinary string; `backup` shows each escaped byte as `\xNN`.
//!
//! Every relative path read from the metadata or the state becomes a file
//! system path through [`to_path`], and every name read from a folder
//! becomes a relative path through [`encode`].

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The first code point of the escaped bytes (byte `b` ↔ `ESCAPE + b`).
pub const ESCAPE: u32 = 0x10_FF00;

fn is_escape(c: char) -> bool {
  (ESCAPE + 0x80..=ESCAPE + 0xFF).contains(&(c as u32))
}

fn push_byte(out: &mut String, b: u8) {
  out.push(char::from_u32(ESCAPE + u32::from(b)).expect("a valid code point"));
}

/// The name (or `/`-separated path) `raw` as a UTF-8 string, escaping the
/// bytes that are not valid UTF-8. Borrows when nothing needs escaping.
pub fn encode_bytes(raw: &[u8]) -> Cow<'_, str> {
  if let Ok(s) = std::str::from_utf8(raw) {
    if !s.chars().any(is_escape) {
      return Cow::Borrowed(s);
    }
  }
  let mut out = String::with_capacity(raw.len() + 8);
  for chunk in raw.utf8_chunks() {
    for c in chunk.valid().chars() {
      if is_escape(c) {
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
          push_byte(&mut out, b);
        }
      } else {
        out.push(c);
      }
    }
    for &b in chunk.invalid() {
      push_byte(&mut out, b);
    }
  }
  Cow::Owned(out)
}

/// [`encode_bytes`] of an OS name.
pub fn encode(name: &OsStr) -> Cow<'_, str> {
  #[cfg(unix)]
  {
    use std::os::unix::ffi::OsStrExt;
    encode_bytes(name.as_bytes())
  }
  #[cfg(not(unix))]
  {
    name.to_string_lossy()
  }
}

/// Whether `rel` holds escaped bytes (a name that is not valid UTF-8).
pub fn has_escapes(rel: &str) -> bool {
  rel.chars().any(is_escape)
}

/// The raw bytes an encoded string stands for.
pub fn decode_bytes(rel: &str) -> Cow<'_, [u8]> {
  if !has_escapes(rel) {
    return Cow::Borrowed(rel.as_bytes());
  }
  let mut out = Vec::with_capacity(rel.len());
  for c in rel.chars() {
    if is_escape(c) {
      out.push((c as u32 - ESCAPE) as u8);
    } else {
      let mut buf = [0u8; 4];
      out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
  }
  Cow::Owned(out)
}

/// The file system path (relative) an encoded relative path stands for.
pub fn to_path(rel: &str) -> Cow<'_, Path> {
  match decode_bytes(rel) {
    Cow::Borrowed(_) => Cow::Borrowed(Path::new(rel)),
    Cow::Owned(bytes) => {
      #[cfg(unix)]
      {
        use std::os::unix::ffi::OsStringExt;
        Cow::Owned(OsString::from_vec(bytes).into())
      }
      #[cfg(not(unix))]
      {
        Cow::Owned(OsString::from(String::from_utf8_lossy(&bytes).into_owned()).into())
      }
    }
  }
}

/// How a person reads an encoded path: each escaped byte as `\xNN`.
pub fn display(rel: &str) -> Cow<'_, str> {
  if !has_escapes(rel) {
    return Cow::Borrowed(rel);
  }
  let mut out = String::with_capacity(rel.len() + 8);
  for c in rel.chars() {
    if is_escape(c) {
      out.push_str(&format!("\\x{:02x}", c as u32 - ESCAPE));
    } else {
      out.push(c);
    }
  }
  Cow::Owned(out)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn valid_names_are_kept_and_borrowed() {
    for s in ["a.txt", "Документы/отчёт.pdf", "emoji 😀/x", ""] {
      assert!(matches!(encode_bytes(s.as_bytes()), Cow::Borrowed(x) if x == s));
      assert_eq!(&*decode_bytes(s), s.as_bytes());
    }
  }

  #[test]
  fn round_trips_every_byte_string() {
    let cases: Vec<Vec<u8>> = vec![
      b"caf\xe9.txt".to_vec(),
      b"\xff\xfe\x80".to_vec(),
      b"half \xd0".to_vec(),
      "real \u{10FF80} and \u{10FFFF}".as_bytes().to_vec(),
      b"mixed \xe9 \xf4\x8f\xbe\x80".to_vec(),
      (0u8..=255).filter(|&b| b != b'/' && b != 0).collect(),
    ];
    for raw in cases {
      let enc = encode_bytes(&raw);
      assert_eq!(&*decode_bytes(&enc), &raw[..], "{enc:?}");
    }
    assert_eq!(display(&encode_bytes(b"caf\xe9.txt")), "caf\\xe9.txt");
    // A real U+10FF80 is escaped as its own bytes, so it cannot be mistaken for a raw byte.
    assert_eq!(display(&encode_bytes("\u{10FF80}".as_bytes())), "\\xf4\\x8f\\xbe\\x80");
  }
}
