//! The hash algorithms of the reports, and [`Multi`]: several of them fed
//! by one read of a file.

use sha3::Digest;

use crate::error::Error;

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
  /// md5-many's single stream: faster than md-5's assembly here (625 vs
  /// 547 MB/s, as fast as OpenSSL), and the same crate as the batches'.
  Md5(md5_many::Md5State),
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
          Algo::Md5 => State::Md5(md5_many::Md5State::new()),
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
  /// [`Multi::update`] for a large chunk: BLAKE3 splits it over the
  /// current rayon pool (the others cannot split a stream).
  pub fn update_par(&mut self, b: &[u8]) {
    for s in &mut self.0 {
      match s {
        State::Blake3(h) => {
          h.update_rayon(b);
        }
        State::Sha256(c) | State::Sha512(c) => c.update(b),
        State::Md5(h) => h.update(b),
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

#[cfg(test)]
mod tests {
  use super::*;

  /// MD5 comes from md5-many (young, pinned): every length around the
  /// block and padding edges, fed whole and in pieces that straddle blocks,
  /// gives RustCrypto md-5's digest.
  #[test]
  fn streamed_md5_is_md5() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    for n in (0..=300).chain([511, 512, 513, 1000, 4096, 4999]) {
      let want = md5::Md5::digest(&data[..n]);
      for piece in [n.max(1), 1, 7, 63, 64, 65, 1000] {
        let mut h = Multi::new(&[Algo::Md5]);
        data[..n].chunks(piece).for_each(|c| h.update(c));
        assert_eq!(&h.finish_raw()[..], &want[..], "{n} bytes in pieces of {piece}");
      }
    }
  }
}
