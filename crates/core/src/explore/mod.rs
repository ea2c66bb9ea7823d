//! Reading and changing a backup folder outside a run (the increments
//! themselves are found and read by [`crate::backup::increments`]):
//! list/search/history and the state at a point in time ([`catalog`]), the derived catalog
//! index that answers them fast ([`index`]), point-in-time restore
//! ([`restore`]), and recreate/delete/prune/status ([`maintain`]).

pub mod catalog;
pub mod index;
pub mod maintain;
pub mod restore;
