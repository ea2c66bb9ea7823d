//! Shared progress counters and the abort flag.
//!
//! The engine only bumps atomics; whoever drives it (the napi binding, a
//! test) polls them at its own pace. Nothing here calls back.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// The phase a run is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
  Recover = 0,
  Scan = 1,
  Plan = 2,
  Apply = 3,
  Commit = 4,
  Done = 5,
}

impl Phase {
  pub fn name(self) -> &'static str {
    match self {
      Phase::Recover => "recover",
      Phase::Scan => "scan",
      Phase::Plan => "plan",
      Phase::Apply => "apply",
      Phase::Commit => "commit",
      Phase::Done => "done",
    }
  }
}

/// Counters shared between the engine and its observers.
#[derive(Debug, Default)]
pub struct Progress {
  pub phase: AtomicU8,
  pub files_scanned: AtomicU64,
  pub bytes_scanned: AtomicU64,
  pub dirs_read: AtomicU64,
  /// Operations planned / done in the apply phase.
  pub ops_total: AtomicU64,
  pub ops_done: AtomicU64,
  /// Bytes to copy / copied in the apply phase.
  pub bytes_total: AtomicU64,
  pub bytes_done: AtomicU64,
  aborted: AtomicBool,
}

impl Progress {
  pub fn new() -> Self {
    Self::default()
  }
  pub fn abort(&self) {
    self.aborted.store(true, Ordering::SeqCst);
  }
  pub fn is_aborted(&self) -> bool {
    self.aborted.load(Ordering::Relaxed)
  }
  pub fn set_phase(&self, p: Phase) {
    self.phase.store(p as u8, Ordering::Relaxed);
  }
  pub fn phase(&self) -> Phase {
    match self.phase.load(Ordering::Relaxed) {
      0 => Phase::Recover,
      1 => Phase::Scan,
      2 => Phase::Plan,
      3 => Phase::Apply,
      4 => Phase::Commit,
      _ => Phase::Done,
    }
  }
}

/// With `AXIOMATIC_TIMINGS=1`, prints at the end of each phase the time
/// since the start of the run, the process's CPU time so far, and its
/// resident and peak memory (for benchmarking: `run`, `checksum`, `verify` and `prune` print their
/// phases through it).
pub(crate) fn timing(what: &str, started: std::time::Instant) {
  static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
  if *ON.get_or_init(|| std::env::var_os("AXIOMATIC_TIMINGS").is_some()) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map_or("?", str::trim).to_string();
    // SAFETY: `ru` is a valid, writable rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ms = |t: libc::timeval| t.tv_sec * 1000 + t.tv_usec / 1000;
    eprintln!(
      "axiomatic: {what} done at {} ms (CPU user {} ms, system {} ms; RSS {}, peak {})",
      started.elapsed().as_millis(),
      ms(ru.ru_utime),
      ms(ru.ru_stime),
      kb("VmRSS:"),
      kb("VmHWM:")
    );
  }
}
