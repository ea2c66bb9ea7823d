//! Checksum reports, by concern: the hash algorithms ([`algo`]), the walk
//! and hash of a folder ([`run`]), writing a report ([`report_write`]: the
//! original service's envelope `{"data": "<report JSON>", "signature":
//! "<SHA3-512 hex of data>"}`, streamed), reading one back
//! ([`report_read`]) and `sha256sum`/`b3sum` check lines ([`lines`]).
//!
//! What other modules use is re-exported here, so callers name
//! `checksum::checksum_report`, `checksum::read_report`…

pub mod algo;
pub(crate) mod batch;
pub mod lines;
pub mod report_read;
pub mod report_write;
pub mod run;
pub mod table;

pub use algo::{digests_hex, Algo, Multi};
pub use lines::sum_line;
pub use report_read::{read_report, read_report_with, relative_to_root, ReadOptions, Report};
pub use report_write::{finish_report, Format, Written};
pub use run::{checksum_report, hash_file, walk_compact, Found, ReportTo};
pub use table::{FileRef, Files};

use sha3::Digest;

/// The envelope's signature, shared by the writer and the reader: a
/// SHA3-512 computed on its own thread from chunks sent to it.
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
