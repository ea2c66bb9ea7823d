//! File-system building blocks every command shares: atomic writes and
//! copies ([`util`]), paths longer than `PATH_MAX` ([`longpath`]), names
//! that are not UTF-8 ([`names`]), extended attributes and ACLs
//! ([`xattrs`]) and the run lock ([`lock`]).

pub mod lock;
pub mod longpath;
pub mod names;
pub mod util;
pub mod xattrs;
