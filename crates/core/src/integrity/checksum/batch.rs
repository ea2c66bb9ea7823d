//! Small files hashed together, so MD5 runs on SIMD lanes.
//!
//! MD5 cannot split one stream (each block needs the last one's result),
//! so a file's MD5 runs at one core's scalar speed however wide the CPU
//! is. Many files at once can: `md5_many` puts one file per SIMD lane (16
//! with AVX-512, 8 with AVX2) and runs them side by side. A [`Batch`] reads
//! each small file whole into one buffer, runs every other algorithm on it
//! at once (while it is still in the cache), and computes the MD5 of the
//! whole batch in one call when it is full or its thread has nothing else
//! to do. Large files stay on the streaming path ([`Multi`]): they are few,
//! and their bytes would not fit the buffer.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use super::algo::{Algo, Multi};
use super::run::{check_unchanged, open_nofollow};
use crate::progress::Progress;

/// Files up to this size go through a batch.
pub(crate) const SMALL: u64 = 64 << 10;
/// A batch is full at this many files, or this many bytes (a thread's
/// batch stays in its core's L2 cache).
const FILES: usize = 64;
const BYTES: usize = 1 << 20;

/// A run of `algos` gains from batches: it has MD5 (once).
pub(crate) fn helps(algos: &[Algo]) -> bool {
  algos.iter().filter(|a| **a == Algo::Md5).count() == 1
}

/// A file of this size is hashed through a batch.
pub(crate) fn takes(size: u64) -> bool {
  size <= SMALL
}

/// Small files read, hashed by every algorithm but MD5, waiting for their
/// MD5. `K` names a file to the caller (a walk id, a report index).
pub(crate) struct Batch<K> {
  /// The algorithms but MD5, in the run's order.
  others: Vec<Algo>,
  /// Where MD5's digest goes among the concatenated raw digests.
  md5_at: usize,
  buf: Vec<u8>,
  items: Vec<Item<K>>,
}

struct Item<K> {
  key: K,
  at: usize,
  len: usize,
  /// The other algorithms' digests (concatenated), or why the file failed.
  got: Result<Box<[u8]>, String>,
}

impl<K> Batch<K> {
  /// A batch for `algos`, or None when they hold no MD5 (nothing to gain)
  /// or hold it twice.
  pub(crate) fn new(algos: &[Algo]) -> Option<Self> {
    if !helps(algos) {
      return None;
    }
    let i = algos.iter().position(|a| *a == Algo::Md5)?;
    Some(Batch {
      others: algos.iter().copied().filter(|a| *a != Algo::Md5).collect(),
      md5_at: algos[..i].iter().map(|a| a.hex_len() / 2).sum(),
      buf: Vec::with_capacity(BYTES + SMALL as usize),
      items: Vec::with_capacity(FILES),
    })
  }

  pub(crate) fn is_empty(&self) -> bool {
    self.items.is_empty()
  }

  pub(crate) fn is_full(&self) -> bool {
    self.items.len() >= FILES || self.buf.len() >= BYTES
  }

  /// Reads the opened file `f` (at most `size` bytes: the size its caller
  /// saw) into the batch and hashes it with every algorithm but MD5; then
  /// `check` tells whether the file stayed the one the caller saw (it
  /// `fstat`s after the read). A failure is kept as this key's answer.
  pub(crate) fn add(&mut self, key: K, f: io::Result<File>, size: u64, progress: &Progress, check: impl FnOnce(&File) -> io::Result<()>) {
    let at = self.buf.len();
    let read = f.and_then(|f| {
      self.buf.reserve(size as usize);
      let n = (&f).take(size).read_to_end(&mut self.buf)?;
      progress.bytes_done.fetch_add(n as u64, Relaxed);
      check(&f)
    });
    let got = match read {
      Ok(()) => {
        let mut h = Multi::new(&self.others);
        h.update(&self.buf[at..]);
        Ok(h.finish_raw())
      }
      Err(e) => {
        self.buf.truncate(at);
        Err(e.to_string())
      }
    };
    self.items.push(Item { key, at, len: self.buf.len() - at, got });
  }

  /// Opens the file at `path` (never following a symlink) and adds it when
  /// it is small now, failing it if it changes (size, mtime) while read;
  /// gives `key` back when it has grown past [`SMALL`] (the caller streams
  /// it instead).
  pub(crate) fn add_path(&mut self, key: K, path: &Path, progress: &Progress) -> Option<K> {
    let opened = open_nofollow(path).and_then(|f| f.metadata().map(|m| (f, m)));
    match opened {
      Ok((_, before)) if !takes(before.len()) => Some(key),
      Ok((f, before)) => {
        self.add(key, Ok(f), before.len(), progress, |f| check_unchanged(f, &before));
        None
      }
      Err(e) => {
        self.add(key, Err(e), 0, progress, |_| Ok(()));
        None
      }
    }
  }

  /// Computes the MD5 of every file in the batch at once and hands each
  /// key its digests (concatenated in the run's order of algorithms, as
  /// [`Multi::finish_raw`] gives them) or its error; the batch is empty
  /// afterwards.
  pub(crate) fn finish(&mut self, mut out: impl FnMut(K, Result<Box<[u8]>, String>)) {
    let inputs: Vec<&[u8]> = self.items.iter().filter(|it| it.got.is_ok()).map(|it| &self.buf[it.at..it.at + it.len]).collect();
    let mut md5s = vec![[0u8; 16]; inputs.len()];
    md5_many::md5_many(&inputs, &mut md5s);
    drop(inputs);
    let mut md5s = md5s.into_iter();
    for it in self.items.drain(..) {
      let got = it.got.map(|others| {
        let md5 = md5s.next().expect("one MD5 per file read");
        let mut all = Vec::with_capacity(others.len() + 16);
        all.extend_from_slice(&others[..self.md5_at]);
        all.extend_from_slice(&md5);
        all.extend_from_slice(&others[self.md5_at..]);
        all.into_boxed_slice()
      });
      out(it.key, got);
    }
    self.buf.clear();
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  /// Files of every length around the block and padding edges, more than a
  /// batch holds, with MD5 first, in the middle, last and alone: each
  /// file's digests are the streaming hashers' (RustCrypto's md-5 for MD5).
  #[test]
  fn a_batch_gives_each_file_the_digests_of_the_streaming_hashers() {
    let dir = tempfile::tempdir().unwrap();
    let mut lens: Vec<usize> = (0..=200).collect();
    lens.extend([255, 256, 1000, 4095, 4096, 4097, 65_535, 65_536, 9, 55, 56, 57, 63, 64, 65, 119, 120, 121]);
    let mut seed = 7u64;
    let files: Vec<(std::path::PathBuf, Vec<u8>)> = lens
      .iter()
      .enumerate()
      .map(|(i, &n)| {
        let data: Vec<u8> = (0..n)
          .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as u8
          })
          .collect();
        let p = dir.path().join(format!("f{i}"));
        std::fs::write(&p, &data).unwrap();
        (p, data)
      })
      .collect();
    let progress = Progress::default();
    for algos in [
      vec![Algo::Md5],
      vec![Algo::Sha256, Algo::Md5],
      vec![Algo::Md5, Algo::Sha256],
      vec![Algo::Blake3, Algo::Md5, Algo::Xxh3, Algo::Sha512],
    ] {
      let mut batch = Batch::new(&algos).unwrap();
      let mut got = vec![None; files.len()];
      for (i, (p, data)) in files.iter().enumerate() {
        batch.add(i, File::open(p), data.len() as u64, &progress, |_| Ok(()));
        if batch.is_full() {
          batch.finish(|k, d| got[k] = Some(d.unwrap()));
        }
      }
      batch.finish(|k, d| got[k] = Some(d.unwrap()));
      assert!(batch.is_empty());
      for (i, (_, data)) in files.iter().enumerate() {
        let mut want = Vec::new();
        for a in &algos {
          if *a == Algo::Md5 {
            use md5::Digest;
            want.extend_from_slice(&md5::Md5::digest(data));
          } else {
            let mut h = Multi::new(&[*a]);
            h.update(data);
            want.extend_from_slice(&h.finish_raw());
          }
        }
        assert_eq!(got[i].as_deref(), Some(&want[..]), "{algos:?}, {} bytes", data.len());
      }
    }
  }

  /// A file that cannot be opened, or fails its check, is that file's
  /// error; the others in the batch keep their own digests.
  #[test]
  fn a_failed_file_is_its_own_error_and_leaves_the_batch_right() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a");
    std::fs::write(&p, b"abc").unwrap();
    let progress = Progress::default();
    let mut batch = Batch::new(&[Algo::Md5]).unwrap();
    batch.add(0, File::open(&p), 3, &progress, |_| Ok(()));
    batch.add(1, File::open(dir.path().join("missing")), 3, &progress, |_| Ok(()));
    batch.add(2, File::open(&p), 3, &progress, |_| Err(io::Error::other("the file changed while it was read")));
    batch.add(3, File::open(&p), 3, &progress, |_| Ok(()));
    let mut got = Vec::new();
    batch.finish(|k, d| got.push((k, d.map(hex::encode))));
    let abc = "900150983cd24fb0d6963f7d28e17f72".to_string();
    assert_eq!(got[0], (0, Ok(abc.clone())));
    assert!(got[1].1.as_ref().is_err_and(|e| e.contains("No such file")), "{got:?}");
    assert_eq!(got[2], (2, Err("the file changed while it was read".into())));
    assert_eq!(got[3], (3, Ok(abc)));
  }

  /// Only a run with MD5 batches.
  #[test]
  fn no_batch_without_md5() {
    assert!(Batch::<u32>::new(&[Algo::Sha256, Algo::Blake3]).is_none());
    assert!(Batch::<u32>::new(&[Algo::Md5, Algo::Md5]).is_none());
  }
}
