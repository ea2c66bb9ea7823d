//! The fast consistency check behind `status` (the mirror state against
//! `dst/mirror`, only stat'ed) and the leftovers of interrupted work.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde::Serialize;

use super::kind_of;
use crate::backup::increments::safe_rel;
use crate::backup::meta;
use crate::backup::scan::Kind;
use crate::backup::state::{self, Fields, StateEntry};
use crate::fs::util;
use crate::fs::walk;
use crate::layout::Layout;

/// How the mirror state compares with `dst/mirror` (size, mtime, kind).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateCheck {
  pub state_present: bool,
  /// A folder of the original backup.py (no state of ours; its
  /// `mirror.json` is compared with `mirror/`): the next run adopts it.
  pub original: bool,
  pub state_error: Option<String>,
  pub state_entries: u64,
  pub mirror_files: u64,
  /// In the state, not in the mirror.
  pub missing: Vec<String>,
  /// In the mirror, not in the state.
  pub extra: Vec<String>,
  /// Size, mtime or kind differ.
  pub differing: Vec<String>,
  /// Differences an interrupted run made (its journal lists them): the
  /// next run finishes it. Not in `missing`/`extra`/`differing`.
  pub pending: Vec<String>,
  pub agrees: bool,
}

/// The fast consistency check of `status` (no file is read, only stat'ed).
pub fn check_state(dst: &Path) -> StateCheck {
  let l = Layout::new(dst);
  let mut c = StateCheck { state_present: l.state.is_file(), ..Default::default() };
  c.original = crate::backup::adopt::is_original(&l);
  // The original's mirror.json records float seconds: compared within 1 ms.
  let tol = if c.original { 1_000_000 } else { 0 };
  let st = if c.original {
    match crate::backup::adopt::read_mirror_json(dst) {
      Ok(m) => {
        let mut v: Vec<StateEntry> = m
          .unwrap_or_default()
          .into_iter()
          .map(|(p, o)| {
            StateEntry::new(Fields {
              link: None,
              xattr: None,
              stamp: 0,
              rel: &p,
              kind: Kind::File,
              size: o.size,
              mtime_ns: (o.mtime * 1e9).round() as i64,
              mode: 0,
              tracked: o.tracked,
              sha256: None,
              inconsistent: false,
            })
          })
          .collect();
        v.sort_by(|a, b| a.rel().cmp(b.rel()));
        v
      }
      Err(e) => {
        c.state_error = Some(e.message);
        return c;
      }
    }
  } else {
    match state::read(&l.state) {
      Ok(s) => s,
      Err(e) => {
        c.state_error = Some(e.message);
        return c;
      }
    }
  };
  let mut warnings = Vec::new();
  let files = walk::files(&l.mirror, &mut warnings);
  c.state_entries = st.len() as u64;
  c.mirror_files = files.len() as u64;
  let (mut i, mut j) = (0, 0);
  while i < st.len() || j < files.len() {
    match (st.get(i), files.get(j)) {
      (Some(s), Some((p, md))) if s.rel() == p.as_str() => {
        if s.size != md.len() || (s.mtime_ns - util::mtime_ns(md)).abs() > tol || s.kind != kind_of(md) {
          c.differing.push(p.clone());
        }
        i += 1;
        j += 1;
      }
      (Some(s), Some((p, _))) if s.rel() < p.as_str() => {
        c.missing.push(s.rel().to_string());
        i += 1;
      }
      (Some(s), None) => {
        c.missing.push(s.rel().to_string());
        i += 1;
      }
      (_, Some((p, _))) => {
        c.extra.push(p.clone());
        j += 1;
      }
      (None, None) => break,
    }
  }
  // What an interrupted run already changed is pending, not a disagreement.
  if let Some(run) = meta::PendingRun::read(&l.journal) {
    let rec: HashMap<&str, (u64, i64)> = st.iter().map(|s| (s.rel(), (s.size, s.mtime_ns))).collect();
    let mut pending = Vec::new();
    for list in [&mut c.missing, &mut c.extra, &mut c.differing] {
      list.retain(|p| {
        let applied = safe_rel(p) && run.applied(p, &l.mirror.join(crate::fs::names::to_path(p)), rec.get(p.as_str()).copied()).is_some();
        if applied {
          pending.push(p.clone());
        }
        !applied
      });
    }
    pending.sort();
    c.pending = pending;
  }
  c.agrees = (c.state_present || c.original) && c.missing.is_empty() && c.extra.is_empty() && c.differing.is_empty();
  c
}

/// Leftovers of interrupted work, for `status`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leftovers {
  /// The journal of an interrupted run: the increment it was building.
  pub interrupted_run: Option<serde_json::Value>,
  pub incomplete_increments: Vec<String>,
  pub prune_pending: bool,
  pub delete_pending: bool,
}

pub fn leftovers(dst: &Path) -> Leftovers {
  let l = Layout::new(dst);
  let mut lo = Leftovers::default();
  if let Ok(Some((h, ops))) = meta::read_journal(&l.journal) {
    lo.interrupted_run = Some(serde_json::json!({ "increment": h.increment, "started": h.started, "ops": ops.len() }));
  }
  if let Ok(rd) = fs::read_dir(&l.incomplete) {
    lo.incomplete_increments = rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
    lo.incomplete_increments.sort();
  }
  lo.prune_pending = l.prune.exists() || l.trash.exists();
  lo.delete_pending = l.pending_removals.exists();
  lo
}
