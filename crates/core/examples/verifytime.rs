//! `cargo run --release --example verifytime -- REPORT`: where `verify --incremental` spends its time:
//! Keccak alone over the report's bytes, the report read with and without its SHA3-512, the walk,
//! and the whole verify (report read overlapped with the walk).
use axiomatic_core::integrity::{checksum, digest_cache::DigestCache, verify};
use axiomatic_core::progress::Progress;
use sha3::Digest;
use std::path::Path;
use std::time::Instant;

fn main() {
  let report = std::env::args().nth(1).expect("REPORT");
  let path = Path::new(&report);
  let bytes = std::fs::read(path).unwrap();
  let mb = bytes.len() as f64 / 1e6;
  let t = Instant::now();
  let mut d = sha3::Sha3_512::new();
  for c in bytes.chunks(1 << 20) {
    d.update(c);
  }
  let _ = d.finalize();
  let s = t.elapsed().as_secs_f64();
  println!("sha3 crate over {mb:.0} MB: {:.0} ms ({:.0} MB/s)", s * 1e3, mb / s);
  drop(bytes);
  let t = Instant::now();
  let rep = verify::load(path, None).unwrap();
  let s = t.elapsed().as_secs_f64();
  println!("read with digest: {:.0} ms ({:.0} MB/s, {} files)", s * 1e3, mb / s, rep.files.len());
  let dir = tempfile::tempdir().unwrap();
  let cache = DigestCache::at(dir.path());
  checksum::read_report_with(path, None, checksum::ReadOptions { cache: Some(&cache), ..Default::default() }).unwrap();
  let t = Instant::now();
  let r2 = checksum::read_report_with(path, None, checksum::ReadOptions { cache: Some(&cache), trust_cache: true, on_root: None }).unwrap();
  let s = t.elapsed().as_secs_f64();
  println!("read, digest cached: {:.0} ms ({:.0} MB/s, cached {})", s * 1e3, mb / s, r2.digest_cached);
  let t = Instant::now();
  let (found, _) = checksum::walk_compact(Path::new(&rep.root_data), &Progress::new());
  println!("walk (one thread): {} ms ({} found)", t.elapsed().as_millis(), found.len());
  let o = verify::VerifyOptions { incremental: true, threads: 2, cache: Some(cache), ..Default::default() };
  let t = Instant::now();
  let r = verify::verify_report(path, &o, &Progress::new()).unwrap();
  println!(
    "verify_report --incremental (cached digest): {} ms, trusted {}, cached {}",
    t.elapsed().as_millis(),
    r.trusted,
    r.signature_cached
  );
}
