//! Times reading a mirror state (`cargo run --release --example stateread -- dst/.axiomatic/state.jsonl`):
//! what a no-change run pays before it can plan.
use std::time::Instant;

fn main() {
  let path = std::env::args().nth(1).expect("usage: stateread STATE.jsonl");
  for _ in 0..5 {
    let t = Instant::now();
    let s = axiomatic_core::backup::state::read(std::path::Path::new(&path)).unwrap();
    eprintln!("{} entries in {:?}", s.len(), t.elapsed());
  }
}
