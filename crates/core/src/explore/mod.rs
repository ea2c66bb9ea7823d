//! Reading and changing a backup folder outside a run: finding increments
//! and streaming their catalogs ([`increments`]), list/search/history and
//! the state at a point in time ([`catalog`]), point-in-time restore
//! ([`restore`]), and recreate/delete/prune/status ([`maintain`]).

pub mod catalog;
pub mod increments;
pub mod maintain;
pub mod restore;
