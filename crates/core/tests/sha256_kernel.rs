//! The SHA-256 kernel ring picks (issue 12): on a CPU with SHA instructions
//! the fast one must run. ring does not say which it chose, so the test
//! compares SHA-256 with MD5 measured back to back in this thread: with SHA
//! instructions SHA-256 is 2–3× faster than MD5, in software 2–3× slower.

use axiomatic_core::fs::util::sha256_speed;

#[test]
fn sha256_uses_the_cpus_sha_instructions_when_it_has_them() {
  let s = sha256_speed(16, 9);
  eprintln!("SHA-256 {:.0} MB/s, MD5 {:.0} MB/s (one core, CPU time, medians of 9 × 16 MiB)", s.sha256_mbs, s.md5_mbs);
  if !s.sha_extensions {
    eprintln!("SKIPPED: this CPU has no SHA-256 instructions; only the software kernels can run");
    return;
  }
  assert!(
    s.sha256_mbs > 1.2 * s.md5_mbs,
    "SHA-256 runs {:.0} MB/s, MD5 {:.0} MB/s: ring is not using the CPU's SHA instructions (expected SHA-256 ≥ 1.2× MD5)",
    s.sha256_mbs,
    s.md5_mbs
  );
}
