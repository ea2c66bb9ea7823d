//! Making a backup: selection rules ([`rules`]), the parallel scan of `src`
//! ([`scan`]), the mirror state ([`state`]), increment metadata and the run
//! journal ([`meta`]), reading increments back ([`increments`]: the run
//! needs them to adopt a folder of the original backup.py, so they live
//! here), copying one entry into place ([`copy`]), the refusals that keep a
//! run from removing what it should not ([`guard`]), adopting the original
//! `backup.py`'s folders ([`adopt`]) and the run itself: [`engine`] orchestrates, [`plan`] turns
//! the scan and the state into operations, [`apply`] carries them out and
//! commits, [`recover`] finishes an interrupted run from its journal.

pub mod adopt;
pub mod apply;
pub mod copy;
pub mod engine;
pub mod guard;
pub mod increments;
pub mod meta;
pub mod plan;
pub mod recover;
pub mod rules;
pub mod scan;
pub mod state;
