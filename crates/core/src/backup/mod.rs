//! Making a backup: selection rules ([`rules`]), the parallel scan of `src`
//! ([`scan`]), the mirror state ([`state`]), increment metadata and the run
//! journal ([`meta`]), the refusals that keep a run from removing what it
//! should not ([`guard`]), adopting the original `backup.py`'s folders
//! ([`adopt`]) and the run itself ([`engine`]).

pub mod adopt;
pub mod engine;
pub mod guard;
pub mod meta;
pub mod rules;
pub mod scan;
pub mod state;
