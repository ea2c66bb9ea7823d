//! `recreate`: rebuilds an increment's metadata from its files, and the
//! mirror state from the mirror, when they are missing or damaged.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;
use serde::Serialize;

use super::kind_of;
use crate::backup::increments::{self, Increment};
use crate::backup::meta::{self, MetaHead};
use crate::backup::state::{self, StateEntry};
use crate::error::{Error, Warning};
use crate::explore::catalog::name_iso;
use crate::fs::util;
use crate::fs::walk;
use crate::layout::Layout;
use crate::progress::{Phase, Progress};

/// What `recreate` rebuilt.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecreateReport {
  /// Increments whose metadata was rebuilt.
  pub rebuilt: Vec<String>,
  /// Increments whose metadata was fine and kept.
  pub kept: Vec<String>,
  pub state_rebuilt: bool,
  /// Entries in the rebuilt state.
  pub state_entries: u64,
  pub warnings: Vec<Warning>,
}

fn metadata_ok(inc: &Increment) -> bool {
  increments::read_bytes(inc)
    .ok()
    .flatten()
    .is_some_and(|b| increments::parse(&inc.meta_path(), &b, &mut |_: &str, _: increments::EntryRef| {}).is_ok())
}

/// `backup recreate [--backup NAME] [--force]`.
pub fn recreate(dst: &Path, only: Option<&str>, force: bool, workers: usize, progress: &Progress) -> Result<RecreateReport, Error> {
  let r = recreate_inner(dst, only, force, workers, progress)?;
  if true {
    if let Some(w) = crate::explore::index::update(dst) {
      let mut r = r;
      r.warnings.push(w);
      return Ok(r);
    }
  }
  Ok(r)
}

/// The work itself, without the index update.
fn recreate_inner(dst: &Path, only: Option<&str>, force: bool, workers: usize, progress: &Progress) -> Result<RecreateReport, Error> {
  let l = Layout::new(dst);
  let incs = increments::list(dst)?;
  if let Some(n) = only {
    if !incs.iter().any(|i| i.name == n) {
      return Err(Error::config(format!("there is no increment {n:?} in {}; see `backup list`", dst.display())));
    }
  }
  let pool = crate::backup::engine::build_pool(workers)?;
  let mut report = RecreateReport::default();
  progress.set_phase(Phase::Apply);
  // Whether each path's newest mention so far is a stored (live) version.
  let mut live: HashMap<String, bool> = HashMap::new();
  for inc in &incs {
    let selected = only.is_none() || only == Some(inc.name.as_str());
    let rebuild = selected && (force || !metadata_ok(inc));
    if !rebuild {
      if let Some(b) = increments::read_bytes(inc)? {
        let _ = increments::parse(&inc.meta_path(), &b, &mut |p: &str, e: increments::EntryRef| {
          live.insert(p.to_string(), !e.is_deleted());
        });
      }
      report.kept.push(inc.name.clone());
      continue;
    }
    let mut files: Vec<(String, String, fs::Metadata)> = Vec::new();
    for cat in ["track", "deleted"] {
      for (p, md) in walk::files(&inc.dir.join(cat), &mut report.warnings) {
        files.push((p, cat.to_string(), md));
      }
    }
    progress.ops_total.fetch_add(files.len() as u64, Relaxed);
    progress.bytes_total.fetch_add(files.iter().map(|(_, _, md)| md.len()).sum(), Relaxed);
    let hashed: Vec<Option<[u8; 32]>> = pool.install(|| {
      files
        .par_iter()
        .map(|(p, cat, md)| {
          let h = util::sha256_of(&inc.dir.join(cat).join(crate::fs::names::to_path(p))).ok();
          progress.bytes_done.fetch_add(md.len(), Relaxed);
          progress.ops_done.fetch_add(1, Relaxed);
          h
        })
        .collect()
    });
    let mut catalog = BTreeMap::new();
    for ((p, cat, md), sha) in files.into_iter().zip(hashed) {
      if sha.is_none() {
        report.warnings.push(Warning::new(format!("{}/{cat}/{p}", inc.name), "unreadable", "could not be hashed; recorded without sha256"));
      }
      let op = if cat == "deleted" {
        "deleted"
      } else if live.get(&p).copied().unwrap_or(false) {
        "changed"
      } else {
        "new"
      };
      let e = meta::catalog_entry(md.len(), util::mtime_ns(&md), md.mode() & 0o7777, kind_of(&md), op, sha, md.nlink() <= 1);
      live.insert(p.clone(), cat != "deleted");
      catalog.insert(p, e);
    }
    let summary = meta::summarize(&catalog);
    let head = MetaHead {
      version: meta::METADATA_VERSION,
      backup_name: inc.name.clone(),
      timestamp: name_iso(inc),
      backup_timestamp: name_iso(inc),
      backup_type: "incremental",
      origin: "recreated".into(),
      statistics: meta::with_original_statistics(serde_json::json!({ "recreated_from_files": true }), &summary),
      summary,
    };
    meta::write_meta(&inc.meta_path(), &head, catalog.iter().map(|(p, e)| (p.as_str(), e.clone())))?;
    report.rebuilt.push(inc.name.clone());
  }
  // The mirror state: rebuilt when missing, unreadable, or with force.
  let state_ok = l.state.is_file() && state::read(&l.state).is_ok();
  if (!state_ok || force) && only.is_none() && l.mirror.is_dir() {
    let files = walk::files(&l.mirror, &mut report.warnings);
    // Mirror paths sharing an inode are a hard-link group (increments share
    // inodes with the mirror, never two mirror paths otherwise).
    let mut first: std::collections::HashMap<(u64, u64), &str> = std::collections::HashMap::new();
    let links: Vec<Option<Box<str>>> = files
      .iter()
      .map(|(p, md)| {
        if !md.is_file() || md.nlink() < 2 {
          return None;
        }
        let lead = *first.entry((md.dev(), md.ino())).or_insert(p.as_str());
        (lead != p.as_str()).then(|| lead.into())
      })
      .collect();
    // A folder of the original backup.py: tracked as its mirror.json says.
    let original = crate::backup::adopt::is_original(&l);
    let entries: Vec<StateEntry> = if original {
      pool.install(|| crate::backup::adopt::original_state(&l, true, &mut report.warnings))?
    } else {
      pool.install(|| {
        files
          .par_iter()
          .zip(links)
          .map(|((p, md), link)| {
            let tracked = live.get(p).copied().unwrap_or(false);
            StateEntry::from_mirror(&l.mirror, p, md, tracked, tracked, link.as_deref())
          })
          .collect()
      })
    };
    fs::create_dir_all(&l.meta).map_err(|e| Error::io(&l.meta, "cannot create", &e))?;
    state::write(&l.state, entries.len() as u64, entries.iter().map(std::borrow::Cow::Borrowed))?;
    report.state_rebuilt = true;
    report.state_entries = entries.len() as u64;
  }
  Ok(report)
}
