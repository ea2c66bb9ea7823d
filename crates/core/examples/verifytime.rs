//! `cargo run --release --example verifytime -- REPORT`: where `verify --incremental` spends its time.
use axiomatic_core::{integrity::verify, progress::Progress};
fn main() {
  let report = std::env::args().nth(1).expect("REPORT");
  let t = std::time::Instant::now();
  let rep = verify::load(std::path::Path::new(&report), None).unwrap();
  println!("load: {} ms ({} files)", t.elapsed().as_millis(), rep.files.len());
  let t = std::time::Instant::now();
  let (found, _) = axiomatic_core::integrity::checksum::walk(std::path::Path::new(&rep.root_data), &Progress::new());
  println!("walk: {} ms ({} found)", t.elapsed().as_millis(), found.len());
  let t = std::time::Instant::now();
  let r = verify::verify(&rep, std::path::Path::new(&rep.root_data.clone()), true, false, 2, &Progress::new()).unwrap();
  println!("verify (walk + compare): {} ms, trusted {}", t.elapsed().as_millis(), r.trusted);
}
