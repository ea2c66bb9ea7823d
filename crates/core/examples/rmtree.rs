//! `cargo run --release --example rmtree -- DIR THREADS`: times the parallel tree removal
//! (used to choose the thread count; see bench/explore.js for the real benchmark).
fn main() {
  let mut a = std::env::args().skip(1);
  let dir = a.next().expect("DIR");
  let threads: usize = a.next().and_then(|t| t.parse().ok()).unwrap_or(8);
  let t = std::time::Instant::now();
  let n = axiomatic_core::explore::maintain::remove_tree_with(std::path::Path::new(&dir), threads).unwrap();
  println!("{n} files, {threads} threads: {} ms", t.elapsed().as_millis());
}
