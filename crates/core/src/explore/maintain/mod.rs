//! Changing a backup folder outside a run: rebuilding metadata and the
//! mirror state (`recreate`), removing files from an increment (`delete`),
//! removing whole increments without breaking point-in-time restore
//! (`prune`), and the consistency check behind `status`.
//!
//! Every change is resumable: `delete` journals the files it will unlink
//! (`.axiomatic/pending-removals.jsonl`) before it rewrites the metadata;
//! `prune` journals the increments it removes (`.axiomatic/prune.json`),
//! carries entries by hardlink before anything is removed, and hides a
//! removed increment by renaming it into `.axiomatic/trash/` before the
//! tree is deleted. `finish_pending` completes whatever a killed command left.
//!
//! One file per command: `recreate.rs`, `delete.rs`, `prune.rs`,
//! `status.rs` (the consistency check and leftovers) and `tree.rs` (the
//! parallel tree removal that prune and the trash use). Here: the journal
//! paths, the checks and `finish_pending` they share.

mod delete;
mod prune;
mod recreate;
mod status;
mod tree;

pub use delete::{delete, DeleteReport, Removed};
pub use prune::{prune, PruneReport};
pub use recreate::{recreate, RecreateReport};
pub use status::{check_state, leftovers, Leftovers, StateCheck};
pub use tree::{remove_tree_parallel, remove_tree_with};

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backup::increments::{self, safe_rel, Increment};
use crate::backup::scan::Kind;
use crate::error::Error;
use crate::fs::util;
use crate::layout::Layout;
use crate::progress::Progress;

/// Refuses a path whose folders under `root` are not all real folders.
fn real_dirs(root: &Path, rel: &str) -> bool {
  let mut cur = root.to_path_buf();
  let comps: Vec<&str> = rel.split('/').collect();
  comps[..comps.len() - 1].iter().all(|c| {
    cur.push(crate::fs::names::to_path(c));
    crate::fs::longpath::with(&cur, |p| fs::symlink_metadata(p)).is_ok_and(|m| m.is_dir())
  })
}

#[derive(Serialize, Deserialize)]
struct PruneJournal {
  remove: Vec<String>,
}

/// Finishes what a killed `delete` or `prune` left: journaled unlinks, a
/// prune in progress, trash. Returns what was finished, for the report.
pub fn finish_pending(dst: &Path, workers: usize) -> Result<Vec<String>, Error> {
  let l = Layout::new(dst);
  let mut done = Vec::new();
  // Temp files of metadata writes that were killed before their rename.
  util::clean_atomic_leftovers(&l.meta);
  for inc in increments::list(dst)? {
    util::clean_atomic_leftovers(&inc.dir);
  }
  let pending = l.pending_removals.clone();
  if let Ok(f) = fs::File::open(&pending) {
    // Unlink only what the increment's metadata no longer lists: if the
    // delete was killed before its metadata was rewritten, nothing goes.
    let mut listed: HashMap<String, Option<HashSet<String>>> = HashMap::new();
    let mut n = 0;
    for line in BufReader::new(f).lines().map_while(Result::ok) {
      let Ok(rel) = serde_json::from_str::<String>(&line) else { continue };
      let Some((inc, inner)) = rel.split_once('/') else { continue };
      let cat = listed.entry(inc.to_string()).or_insert_with(|| {
        let inc = Increment::at(dst, inc)?;
        let bytes = increments::read_bytes(&inc).ok()??;
        let mut keys = HashSet::new();
        increments::parse(&inc.meta_path(), &bytes, &mut |p: &str, e: increments::EntryRef| {
          keys.insert(format!("{}/{p}", e.folder()));
        })
        .ok()?;
        Some(keys)
      });
      let Some(cat) = cat else { continue };
      if cat.contains(inner) || !safe_rel(&rel) || !real_dirs(dst, &rel) {
        continue;
      }
      match crate::fs::longpath::with(&dst.join(crate::fs::names::to_path(&rel)), |p| fs::remove_file(p)) {
        Ok(()) => n += 1,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&dst.join(crate::fs::names::to_path(&rel)), "cannot remove", &e)),
      }
    }
    fs::remove_file(&pending).map_err(|e| Error::io(&pending, "cannot remove", &e))?;
    if n > 0 {
      done.push(format!("finished an interrupted delete ({n} files)"));
    }
  }
  if let Ok(b) = fs::read(&l.prune) {
    let j: PruneJournal = serde_json::from_slice(&b).map_err(|e| Error::corrupt(&l.prune, format!("invalid prune journal: {e}")))?;
    let present: HashSet<String> = increments::list(dst)?.into_iter().map(|i| i.name).collect();
    let remove: Vec<String> = j.remove.into_iter().filter(|n| present.contains(n)).collect();
    let r = prune(dst, &remove, false, workers, &Progress::new())?;
    done.push(format!("finished an interrupted prune ({} increments removed)", r.removed.len()));
  }
  let t = l.trash.clone();
  if t.is_dir() {
    remove_tree_parallel(&t)?;
  }
  Ok(done)
}

fn kind_of(md: &fs::Metadata) -> Kind {
  if md.file_type().is_symlink() {
    Kind::Symlink
  } else {
    Kind::File
  }
}
