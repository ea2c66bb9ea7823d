//! Proving data intact: checksum reports in the original service's format
//! ([`checksum`]), verifying files against a report and a backup folder
//! against its recorded SHA-256 ([`verify`]), and comparing the reports of
//! several servers ([`compare`]).

pub mod checksum;
pub mod compare;
pub mod digest_cache;
pub mod scrub;
pub mod verify;
