//! The per-file engine of axiomatic-backup.
//!
//! Pure Rust, no Node-API: the run lock ([`lock`]), selection rules ([`rules`]), the parallel scan
//! ([`scan`]), the mirror state ([`state`]), increment metadata and the run
//! journal ([`meta`]), and the run itself ([`engine`]); reading increments
//! ([`increments`], [`explore`]), point-in-time restore ([`restore`]) and
//! changing a backup outside a run ([`maintain`]: recreate, delete, prune);
//! checksum reports ([`checksum`]), verification ([`verify`]) and comparing
//! reports of several servers ([`compare`]).
//! The napi binding in `crates/node` only converts types, errors and progress.
//!
//! ```no_run
//! use axiomatic_core::{engine, progress::Progress, rules::RuleSpec};
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

pub mod adopt;
pub mod checksum;
pub mod compare;
pub mod engine;
pub mod error;
pub mod explore;
pub mod fsutil;
pub mod guard;
pub mod increments;
pub mod lock;
pub mod longpath;
pub mod maintain;
pub mod meta;
pub mod names;
pub mod progress;
pub mod restore;
pub mod rules;
pub mod scan;
pub mod state;
pub mod verify;
pub mod xattrs;

pub use error::{Error, ErrorKind, Warning};
