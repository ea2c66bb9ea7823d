//! `delete`: removes matching entries from one increment. The files to
//! unlink are journaled, then the metadata is rewritten, then the files go
//! (`finish_pending`), so no metadata ever lists a removed file.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::finish_pending;
use crate::backup::increments::{self, safe_rel};
use crate::backup::meta;
use crate::error::Error;
use crate::explore::catalog::{Matcher, SearchFilter};
use crate::fs::util::{self, fault_point};
use crate::layout::Layout;

/// What `delete` removed (or would remove).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteReport {
  pub increment: String,
  pub dry_run: bool,
  pub removed: Vec<Removed>,
  pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Removed {
  pub path: String,
  pub category: String,
  pub size: u64,
}

/// `backup delete NAME --mask M…`: removes matching entries from one
/// increment. The metadata is rewritten first (atomically), after the
/// files to unlink are journaled, so no metadata ever lists a removed file.
pub fn delete(dst: &Path, name: &str, masks: Vec<String>, ignore_case: bool, dry_run: bool) -> Result<DeleteReport, Error> {
  let r = delete_inner(dst, name, masks, ignore_case, dry_run)?;
  if !dry_run {
    // The index is derived: a failure here leaves it stale, and the next
    // reader updates or rebuilds it.
    let _ = crate::explore::index::update(dst);
  }
  Ok(r)
}

/// The work itself, without the index update.
fn delete_inner(dst: &Path, name: &str, masks: Vec<String>, ignore_case: bool, dry_run: bool) -> Result<DeleteReport, Error> {
  let l = Layout::new(dst);
  let incs = increments::list(dst)?;
  let Some(inc) = incs.iter().find(|i| i.name == name) else {
    return Err(Error::config(format!("there is no increment {name:?} in {}; see `backup list`", dst.display())));
  };
  let mut m = meta::read_meta(&inc.meta_path())?;
  let matcher = Matcher::new(SearchFilter { masks, ignore_case, ..Default::default() })?;
  let hit: Vec<String> = m.file_catalog.keys().filter(|p| matcher.path_matches(p)).cloned().collect();
  let mut report = DeleteReport { increment: name.to_string(), dry_run, ..Default::default() };
  for p in &hit {
    let e = &m.file_catalog[p];
    report.bytes += e.size;
    report.removed.push(Removed { path: p.clone(), category: e.category.clone(), size: e.size });
  }
  if dry_run || hit.is_empty() {
    return Ok(report);
  }
  let rels: Vec<String> =
    report.removed.iter().filter(|r| safe_rel(&r.path)).map(|r| format!("{}/{}/{}", inc.name, r.category, r.path)).collect();
  fs::create_dir_all(&l.meta).map_err(|e| Error::io(&l.meta, "cannot create", &e))?;
  util::write_atomic(&l.pending_removals, |f| {
    let mut w = io::BufWriter::new(f);
    for r in &rels {
      serde_json::to_writer(&mut w, r)?;
      w.write_all(b"\n")?;
    }
    w.flush()
  })?;
  fault_point();
  for p in &hit {
    m.file_catalog.remove(p);
  }
  meta::rewrite_meta(&inc.meta_path(), &m)?;
  fault_point();
  finish_pending(dst, 1)?;
  // Folders left empty inside the increment go too.
  for r in &rels {
    let mut d = dst.join(crate::fs::names::to_path(r));
    while d.pop() && d != inc.dir && d.starts_with(&inc.dir) {
      if crate::fs::longpath::with(&d, |p| fs::remove_dir(p)).is_err() {
        break;
      }
    }
  }
  Ok(report)
}
