//! File-system building blocks every command shares: atomic writes and
//! copies ([`util`]), paths longer than `PATH_MAX` ([`longpath`]), names
//! that are not UTF-8 ([`names`]), extended attributes and ACLs
//! ([`xattrs`]), the run lock ([`lock`]) and the one parallel directory
//! walker ([`walk`]).

pub mod lock;
pub mod longpath;
pub mod names;
pub mod util;
pub mod walk;
pub mod xattrs;
