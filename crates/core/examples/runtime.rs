//! `cargo run --release --example runtime -- SRC DST track|mirror [RUNS]`: runs the engine (no Node) on
//! `SRC` → `DST` with `track_dirs: ["**"]` or `include_dirs: ["**"]` and prints each run's time and
//! counts; with `AXIOMATIC_TIMINGS=1` the per-phase times too. For `perf record` of a no-change run
//! without Node's start-up.
use axiomatic_core::backup::engine::{self, Options};
use axiomatic_core::backup::guard::Safety;
use axiomatic_core::backup::rules::{Pattern, RuleSpec};
use axiomatic_core::progress::Progress;
use std::time::Instant;

fn main() {
  let a: Vec<String> = std::env::args().skip(1).collect();
  let (src, dst, mode) = (a.first().expect("SRC"), a.get(1).expect("DST"), a.get(2).map_or("track", String::as_str));
  let runs: usize = a.get(3).and_then(|n| n.parse().ok()).unwrap_or(1);
  let all =
    vec![Pattern { key: if mode == "track" { "track_dirs" } else { "include_dirs" }.into(), source: "**".into(), glob: "**".into() }];
  let rules =
    if mode == "track" { RuleSpec { track_dirs: all, ..Default::default() } } else { RuleSpec { include_dirs: all, ..Default::default() } };
  let opts = Options {
    src: src.into(),
    dst: dst.into(),
    rules,
    workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
    mtime_tolerance_ns: None,
    preserved_dirs: Vec::new(),
    dry_run: false,
    list_changes: false,
    skip_inconsistent: false,
    safety: Safety::default(),
  };
  for _ in 0..runs {
    let t = Instant::now();
    let r = engine::run(&opts, &Progress::new()).unwrap();
    eprintln!("{:?}: {} files, {} new, {} changed, increment {:?}", t.elapsed(), r.mirror_files, r.new, r.changed, r.increment);
  }
}
