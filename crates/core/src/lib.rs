//! The per-file engine of axiomatic-backup.
//!
//! Pure Rust, no Node-API. The tree shows the architecture, each layer
//! using only the ones listed before it:
//!
//! - shared underneath: errors and warnings ([`error`]), progress counters
//!   and the abort flag ([`progress`]), file-system building blocks ([`fs`]),
//!   every name on disk of a backup folder ([`layout`]);
//! - [`backup`]: rules, scan, copy, state, metadata and journal, reading
//!   increments, the run (plan, apply, recover);
//! - [`explore`]: catalogs (list/search/history), restore, recreate/delete/prune/status;
//! - [`integrity`]: checksum reports, verify, compare.
//!
//! The napi binding in `crates/node` only converts types, errors and progress.
//!
//! ```no_run
//! use axiomatic_core::{backup::engine, progress::Progress, backup::rules::RuleSpec};
//! let opts = engine::Options {
//!   src: "/home/me/Documents".into(),
//!   dst: "/media/usb/backup".into(),
//!   rules: RuleSpec::default(),
//!   workers: 2,
//!   mtime_tolerance_ns: None,
//!   preserved_dirs: vec![],
//!   dry_run: true,
//!   list_changes: false,
//!   skip_inconsistent: false,
//!   safety: Default::default(),
//! };
//! let report = engine::run(&opts, &Progress::new()).unwrap();
//! println!("{} files would be copied", report.new + report.changed);
//! ```

pub mod backup;
pub mod error;
pub mod explore;
pub mod fs;
pub mod integrity;
pub mod layout;
pub mod progress;

pub use error::{Error, ErrorKind, Warning};
