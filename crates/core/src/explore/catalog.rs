//! Read-only views of a backup folder: the list of increments (with the
//! space each really holds), search across catalogs, the history of one
//! file, and the state of every path at a point in time.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use serde::Serialize;

use crate::backup::increments::{self, DamagedMeta, EntryRef, Increment};
use crate::backup::meta::CatalogEntry;
use crate::backup::state::StateEntry;
use crate::error::Error;
use crate::fs::walk::{self, Dir, Visitor, WalkError};
use crate::layout::iso;
use crate::layout::Layout;

/// One line of `backup list`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListItem {
  pub name: String,
  /// ISO 8601 UTC: the metadata's timestamp, or the time in the name.
  pub timestamp: String,
  /// `run`, `recovered`, `recreated`, `original` (made by the original
  /// backup.py), or null without metadata.
  pub origin: Option<String>,
  pub has_metadata: bool,
  /// The metadata could not be read (the message says why).
  pub metadata_error: Option<String>,
  /// The same, with the file and the command that rebuilds it.
  pub damaged: Option<DamagedMeta>,
  pub new: u64,
  pub changed: u64,
  pub deleted: u64,
  pub carried: u64,
  /// Only for increments of the original backup.py, which does not tell new
  /// from changed (`new` and `changed` are 0 then): the stored versions.
  #[serde(skip_serializing_if = "Option::is_none", default)]
  pub new_or_changed: Option<u64>,
  pub files: u64,
  /// Sum of the sizes of the catalog's entries.
  pub bytes: u64,
  /// With `detailed`: bytes of the inodes only this increment holds (what
  /// deleting it would free), each inode counted once.
  pub exclusive_bytes: Option<u64>,
  /// With `detailed`: bytes on disk of everything it links to.
  pub disk_bytes: Option<u64>,
}

/// `backup list`: every increment (oldest first) and, with `detailed`,
/// the space use of the whole folder.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
  pub increments: Vec<ListItem>,
  /// With `detailed`: bytes on disk of the mirror and all increments, each inode once.
  pub total_disk_bytes: Option<u64>,
  /// With `detailed`: bytes on disk of the mirror's inodes.
  pub mirror_disk_bytes: Option<u64>,
  /// Increments whose metadata is missing or damaged (a quick check: head
  /// and end of each file).
  pub damaged: Vec<DamagedMeta>,
}

pub(crate) fn name_iso(inc: &Increment) -> String {
  iso(std::time::UNIX_EPOCH + std::time::Duration::from_secs(inc.name_time.max(0) as u64))
}

pub(crate) fn list_item(inc: &Increment) -> ListItem {
  let mut item = ListItem {
    name: inc.name.clone(),
    timestamp: name_iso(inc),
    origin: None,
    has_metadata: false,
    metadata_error: None,
    damaged: None,
    new: 0,
    changed: 0,
    deleted: 0,
    carried: 0,
    new_or_changed: None,
    files: 0,
    bytes: 0,
    exclusive_bytes: None,
    disk_bytes: None,
  };
  if let Some(d) = increments::damage(inc, true) {
    item.has_metadata = inc.meta_path().exists();
    item.metadata_error = Some(d.problem.clone());
    item.damaged = Some(d);
    return item;
  }
  match increments::read_head(inc) {
    Ok(None) => {}
    Ok(Some(h)) => {
      item.has_metadata = true;
      if !h.timestamp.is_empty() {
        item.timestamp = h.timestamp;
      }
      item.origin = Some(h.origin);
      item.new = h.summary.new;
      item.changed = h.summary.changed;
      item.deleted = h.summary.deleted;
      item.carried = h.summary.carried;
      item.new_or_changed = h.summary.new_or_changed;
      item.files = h.summary.total;
      match h.summary.bytes {
        Some(b) => item.bytes = b,
        None => match increments::read_bytes(inc).and_then(|b| {
          let mut sum = 0;
          increments::parse(&inc.meta_path(), b.as_deref().unwrap_or(b"{}"), &mut |_: &str, e: EntryRef| sum += e.size).map(|_| sum)
        }) {
          Ok(sum) => item.bytes = sum,
          Err(e) => {
            item.damaged = Some(DamagedMeta::from_error(inc, &e));
            item.metadata_error = Some(e.message);
          }
        },
      }
    }
    Err(e) => {
      item.has_metadata = true;
      item.damaged = Some(DamagedMeta::from_error(inc, &e));
      item.metadata_error = Some(e.message);
    }
  }
  item
}

/// How the folders of a backup use one inode.
struct InodeUse {
  /// Size on disk.
  bytes: u64,
  nlink: u64,
  /// The first folder seen linking it (0 = mirror, i + 1 = i-th increment).
  owner: usize,
  /// Links seen in the walk.
  seen: u64,
  /// Linked from more than one folder.
  shared: bool,
}

/// Every non-folder inode under `root`: (device, inode, bytes on disk,
/// link count), from the shared parallel walker. An unreadable entry is
/// left out of the disk usage (it is an estimate).
fn walk_inodes(root: &Path) -> Vec<(u64, u64, u64, u64)> {
  struct Inodes(Vec<(u64, u64, u64, u64)>);
  impl Visitor for Inodes {
    type Ctx = ();
    fn entry(&mut self, _: &Dir<'_, ()>, e: &walk::Entry<'_>) -> Option<()> {
      if e.is_dir() {
        return Some(());
      }
      if let Ok(md) = e.metadata() {
        self.0.push((md.dev(), md.ino(), md.blocks() * 512, md.nlink()));
      }
      None
    }
    fn error(&mut self, _: WalkError) {}
  }
  walk::walk(root, (), || Inodes(Vec::new())).into_iter().flat_map(|v| v.0).collect()
}

/// `backup list [--detailed]`: from the catalog index when it can be used
/// (`--detailed` walks the folders anyway).
pub fn list(dst: &Path, detailed: bool) -> Result<Listing, Error> {
  if !detailed {
    if let Some(r) = crate::explore::index::with(dst, |ix| ix.list()) {
      return r;
    }
  }
  list_direct(dst, detailed)
}

/// `backup list` from the metadata files themselves.
pub fn list_direct(dst: &Path, detailed: bool) -> Result<Listing, Error> {
  let incs = increments::list(dst)?;
  let mut items: Vec<ListItem> = incs.par_iter().map(list_item).collect();
  let damaged = items.iter().filter_map(|i| i.damaged.clone()).collect();
  let mut listing = Listing { increments: Vec::new(), total_disk_bytes: None, mirror_disk_bytes: None, damaged };
  if detailed {
    // Owner 0 is the mirror, i + 1 the i-th increment.
    let mut roots: Vec<PathBuf> = vec![Layout::new(dst).mirror];
    roots.extend(incs.iter().map(|i| i.dir.clone()));
    let walked: Vec<Vec<(u64, u64, u64, u64)>> = roots.par_iter().map(|r| walk_inodes(r)).collect();
    let mut inodes: HashMap<(u64, u64), InodeUse> = HashMap::new();
    for (owner, files) in walked.iter().enumerate() {
      for &(dev, ino, bytes, nlink) in files {
        let e = inodes.entry((dev, ino)).or_insert(InodeUse { bytes, nlink, owner, seen: 0, shared: false });
        e.seen += 1;
        if e.owner != owner {
          e.shared = true;
        }
      }
    }
    let mut excl = vec![0u64; roots.len()];
    let mut disk = vec![0u64; roots.len()];
    let mut seen_by: Vec<std::collections::HashSet<(u64, u64)>> = vec![Default::default(); roots.len()];
    for (owner, files) in walked.iter().enumerate() {
      for &(dev, ino, bytes, _) in files {
        if seen_by[owner].insert((dev, ino)) {
          disk[owner] += bytes;
        }
      }
    }
    let mut total = 0;
    for u in inodes.values() {
      total += u.bytes;
      // Exclusive: every link of the inode is inside this one folder.
      if !u.shared && u.seen >= u.nlink {
        excl[u.owner] += u.bytes;
      }
    }
    listing.total_disk_bytes = Some(total);
    listing.mirror_disk_bytes = Some(disk[0]);
    for (i, item) in items.iter_mut().enumerate() {
      item.exclusive_bytes = Some(excl[i + 1]);
      item.disk_bytes = Some(disk[i + 1]);
    }
  }
  listing.increments = items;
  Ok(listing)
}

/// What `backup search` looks for. Every given filter must match.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
  /// Globs (already normalized: a mask without wildcards is `*M*`); one
  /// of them must match the file name or the relative path. Empty = all.
  pub masks: Vec<String>,
  pub ignore_case: bool,
  pub size_min: Option<u64>,
  pub size_max: Option<u64>,
  /// mtime bounds in ns since the epoch: min inclusive, max exclusive.
  pub mtime_min_ns: Option<i64>,
  pub mtime_max_ns: Option<i64>,
  /// Folder-or-file prefixes of the relative path; one must match.
  pub path_prefixes: Vec<String>,
  /// Globs on the whole relative path (`*` stays within a folder).
  pub path_globs: Vec<String>,
  /// Only the N newest increments.
  pub last: Option<usize>,
}

/// One found file version.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
  pub increment: String,
  pub path: String,
  #[serde(flatten)]
  pub entry: CatalogEntry,
}

/// A search result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Found {
  pub increments_searched: usize,
  /// Increments whose metadata is missing or unreadable (not searched).
  pub skipped: Vec<String>,
  /// The same, with the file, what is wrong and the command that rebuilds it.
  pub damaged: Vec<DamagedMeta>,
  pub hits: Vec<Hit>,
  pub totals: Totals,
}

impl Found {
  /// One searched increment's hits (in path order), counted in the totals.
  pub fn add(&mut self, h: Vec<Hit>) {
    self.increments_searched += 1;
    let t = &mut self.totals;
    t.increments += usize::from(!h.is_empty());
    t.files += h.len();
    t.bytes += h.iter().map(|x| x.entry.size).sum::<u64>();
    t.deleted += h.iter().filter(|x| x.entry.category == "deleted").count();
    t.tracked = t.files - t.deleted;
    self.hits.extend(h);
  }
}

/// What a search found, in numbers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
  /// Increments with at least one hit.
  pub increments: usize,
  pub files: usize,
  pub bytes: u64,
  /// Stored versions (`track`) and deletions among the hits.
  pub tracked: usize,
  pub deleted: usize,
}

fn glob_set(globs: &[String], literal_separator: bool, ignore_case: bool) -> Result<Option<GlobSet>, Error> {
  if globs.is_empty() {
    return Ok(None);
  }
  let mut b = GlobSetBuilder::new();
  for g in globs {
    let glob = GlobBuilder::new(g)
      .literal_separator(literal_separator)
      .case_insensitive(ignore_case)
      .backslash_escape(true)
      .build()
      .map_err(|e| Error::config(format!("invalid pattern {g:?}: {e}")))?;
    b.add(glob);
  }
  b.build().map(Some).map_err(|e| Error::config(format!("invalid patterns: {e}")))
}

/// Whether `path` is `prefix` or lies under it (a folder prefix, not a
/// string prefix: `docs` matches `docs/a`, not `docs2/a`). An empty prefix
/// matches everything.
pub fn prefix_match(path: &str, prefix: &str) -> bool {
  prefix.is_empty() || path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A compiled search filter.
pub struct Matcher {
  masks: Option<GlobSet>,
  paths: Option<GlobSet>,
  f: SearchFilter,
}

impl Matcher {
  pub fn new(f: SearchFilter) -> Result<Self, Error> {
    Ok(Self { masks: glob_set(&f.masks, false, f.ignore_case)?, paths: glob_set(&f.path_globs, true, false)?, f })
  }

  pub fn path_matches(&self, path: &str) -> bool {
    if !self.f.path_prefixes.is_empty() || self.paths.is_some() {
      let by_prefix = self.f.path_prefixes.iter().any(|p| prefix_match(path, p));
      if !by_prefix && !self.paths.as_ref().is_some_and(|g| g.is_match(path)) {
        return false;
      }
    }
    if let Some(m) = &self.masks {
      let name = path.rsplit('/').next().unwrap_or(path);
      if !m.is_match(name) && !m.is_match(path) {
        return false;
      }
    }
    true
  }

  pub fn matches(&self, path: &str, e: &EntryRef) -> bool {
    self.matches_values(path, e.size, e.mtime_ns())
  }

  /// [`Matcher::matches`] on the values themselves (the index keeps no [`EntryRef`]).
  pub fn matches_values(&self, path: &str, size: u64, mtime_ns: i64) -> bool {
    let f = &self.f;
    if f.size_min.is_some_and(|m| size < m) || f.size_max.is_some_and(|m| size > m) {
      return false;
    }
    if f.mtime_min_ns.is_some() || f.mtime_max_ns.is_some() {
      let t = mtime_ns;
      if f.mtime_min_ns.is_some_and(|m| t < m) || f.mtime_max_ns.is_some_and(|m| t >= m) {
        return false;
      }
    }
    self.path_matches(path)
  }
}

/// Reads the catalogs of `incs` in parallel; `each` gets the index of the
/// increment and its entries. Returns the names of increments without
/// readable metadata.
type Reader<'r> = dyn FnMut(&dyn Fn(&str) -> bool, &mut dyn FnMut(&str, EntryRef)) + 'r;

fn for_each_catalog<T: Send>(
  incs: &[Increment],
  each: impl Fn(usize, &Increment, &mut Reader) -> T + Sync,
) -> Vec<Result<Option<T>, Error>> {
  incs
    .par_iter()
    .enumerate()
    .map(|(i, inc)| {
      let Some(bytes) = increments::read_bytes(inc)? else { return Ok(None) };
      let mut err = None;
      let out = each(i, inc, &mut |want, f| {
        if let Err(e) = increments::parse_filtered(&inc.meta_path(), &bytes, want, &mut |p, e| f(p, e)) {
          err = Some(e);
        }
      });
      match err {
        Some(e) => Err(e),
        None => Ok(Some(out)),
      }
    })
    .collect()
}

/// `backup search`: from the catalog index when it can be used.
pub fn search(dst: &Path, filter: SearchFilter) -> Result<Found, Error> {
  if let Some(r) = crate::explore::index::with(dst, |ix| ix.search(filter.clone())) {
    return r;
  }
  search_direct(dst, filter)
}

/// `backup search` reading every catalog.
pub fn search_direct(dst: &Path, filter: SearchFilter) -> Result<Found, Error> {
  let mut incs = increments::list(dst)?;
  if let Some(n) = filter.last {
    let skip = incs.len().saturating_sub(n);
    incs.drain(..skip);
  }
  let m = Matcher::new(filter)?;
  let results = for_each_catalog(&incs, |_, inc, read| {
    let mut hits = Vec::new();
    read(&|p| m.path_matches(p), &mut |p, e| {
      if m.matches(p, &e) {
        hits.push(Hit { increment: inc.name.clone(), path: p.to_string(), entry: e.to_owned() });
      }
    });
    hits.sort_by(|a, b| a.path.cmp(&b.path));
    hits
  });
  let mut found = Found { increments_searched: 0, skipped: Vec::new(), damaged: Vec::new(), hits: Vec::new(), totals: Totals::default() };
  for (inc, r) in incs.iter().zip(results) {
    match r {
      Ok(Some(h)) => {
        found.add(h);
      }
      Ok(None) => {
        found.skipped.push(inc.name.clone());
        found.damaged.push(DamagedMeta::missing(inc));
      }
      Err(e) => {
        found.skipped.push(inc.name.clone());
        found.damaged.push(DamagedMeta::from_error(inc, &e));
      }
    }
  }
  Ok(found)
}

/// One stored version in `backup history`.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
  pub increment: String,
  pub timestamp: String,
  #[serde(flatten)]
  pub entry: CatalogEntry,
  /// Whether the stored file is present in the increment.
  pub present: bool,
}

/// The mirror's copy of a path, from the mirror state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorCopy {
  pub size: u64,
  pub mtime_ns: String,
  pub mode: u32,
  pub kind: crate::backup::scan::Kind,
  pub tracked: bool,
  pub sha256: Option<String>,
  /// Whether `dst/mirror/<path>` exists.
  pub present: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct History {
  pub path: String,
  pub versions: Vec<Version>,
  pub mirror: Option<MirrorCopy>,
  /// Increments whose metadata could not be read.
  pub skipped: Vec<String>,
  /// The same, with the file, what is wrong and the command that rebuilds
  /// it: a version of the path may be in them, unseen.
  pub damaged: Vec<DamagedMeta>,
}

pub(crate) fn read_state_entry(l: &Layout, rel: &str) -> Result<Option<StateEntry>, Error> {
  Ok(crate::backup::adopt::read_state(l, false)?.0.into_iter().find(|e| e.rel() == rel))
}

/// `backup history PATH`: from the catalog index when it can be used.
pub fn history(dst: &Path, rel: &str) -> Result<History, Error> {
  if let Some(r) = crate::explore::index::with(dst, |ix| ix.history(rel)) {
    return r;
  }
  history_direct(dst, rel)
}

/// `backup history PATH` reading every catalog.
pub fn history_direct(dst: &Path, rel: &str) -> Result<History, Error> {
  let rel = rel.trim_start_matches("./").trim_end_matches('/');
  let incs = increments::list(dst)?;
  let results = for_each_catalog(&incs, |_, inc, read| {
    let mut v: Option<CatalogEntry> = None;
    read(&|p| p == rel, &mut |p, e| {
      if p == rel {
        v = Some(e.to_owned());
      }
    });
    v.map(|e| {
      let present = increments::safe_rel(rel) && inc.dir.join(&e.category).join(crate::fs::names::to_path(rel)).symlink_metadata().is_ok();
      (e, present)
    })
  });
  let mut h = History { path: rel.to_string(), versions: Vec::new(), mirror: None, skipped: Vec::new(), damaged: Vec::new() };
  for (inc, r) in incs.iter().zip(results) {
    match r {
      Ok(Some(Some((entry, present)))) => {
        let timestamp = increments::read_head(inc).ok().flatten().map(|h| h.timestamp).filter(|t| !t.is_empty());
        h.versions.push(Version { increment: inc.name.clone(), timestamp: timestamp.unwrap_or_else(|| name_iso(inc)), entry, present });
      }
      Ok(Some(None)) => {}
      Ok(None) => {
        h.skipped.push(inc.name.clone());
        h.damaged.push(DamagedMeta::missing(inc));
      }
      Err(e) => {
        h.skipped.push(inc.name.clone());
        h.damaged.push(DamagedMeta::from_error(inc, &e));
      }
    }
  }
  let l = Layout::new(dst);
  if let Some(s) = read_state_entry(&l, rel)? {
    h.mirror = Some(MirrorCopy {
      size: s.size,
      mtime_ns: s.mtime_ns.to_string(),
      mode: s.mode,
      kind: s.kind,
      tracked: s.tracked,
      sha256: s.sha().map(hex::encode),
      present: increments::safe_rel(rel) && l.mirror.join(crate::fs::names::to_path(rel)).symlink_metadata().is_ok(),
    });
  }
  Ok(h)
}

/// The newest mention of each path in the increments `incs` (all of them
/// are read; later ones win), restricted to `keep(path)`. The value is the
/// index of the increment and the entry.
pub fn newest_mentions(incs: &[Increment], keep: &(dyn Fn(&str) -> bool + Sync)) -> Result<HashMap<String, (usize, CatalogEntry)>, Error> {
  let results = for_each_catalog(incs, |i, _, read| {
    let mut v = Vec::new();
    read(keep, &mut |p, e| {
      if keep(p) {
        v.push((p.to_string(), e.to_owned()));
      }
    });
    (i, v)
  });
  let mut map: HashMap<String, (usize, CatalogEntry)> = HashMap::new();
  for (inc, r) in incs.iter().zip(results) {
    match r? {
      Some((i, v)) => {
        for (p, e) in v {
          map.insert(p, (i, e));
        }
      }
      None => return Err(increments::missing_error(inc, "this point in time cannot be reconstructed")),
    }
  }
  Ok(map)
}
