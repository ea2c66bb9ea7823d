//! `cargo run --release --example hashspeed`: single-core speed of each
//! report algorithm here (to compare with `openssl speed -evp sha256`).
use axiomatic_core::integrity::checksum::{Algo, Multi};
fn main() {
  let buf = vec![7u8; 256 * 1024];
  let total = 512u64 << 20;
  for a in Algo::ALL {
    let t = std::time::Instant::now();
    let mut h = Multi::new(&[a]);
    for _ in 0..total / buf.len() as u64 {
      h.update(&buf);
    }
    let _ = h.finish();
    println!("{:>9}: {:7.0} MB/s", a.name(), total as f64 / t.elapsed().as_secs_f64() / 1e6);
  }
}
