//! Backup folders made by the original `backup.py`: `dst/mirror/`,
//! `dst/mirror.json` (`{rel: {size, mtime, tracked}}`) and increments with
//! version-"1.0" metadata, but no `.axiomatic/state.jsonl`. Every command
//! reads such a folder as it is; the first `backup run` adopts it (writes
//! our state from it) without copying anything that did not change.
//!
//! The previous state is what the mirror holds (its files' size, mtime and
//! mode, so a source file the original copied with `shutil.copy2` and that
//! did not change since compares equal), tracked as `mirror.json` says (else
//! as the newest increment mentioning the path says). Mirror files that
//! `mirror.json` does not list (the original leaves files it stopped
//! selecting when no tracked file changed) are in the state too, so the run
//! removes them if the source no longer selects them.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backup::increments::{self, EntryRef};
use crate::backup::state::{self, StateEntry};
use crate::error::{Error, Warning};
use crate::fs::util;
use crate::layout::Layout;

/// The original's mirror state file, beside `mirror/`.
pub const MIRROR_JSON: &str = "mirror.json";

/// One entry of `mirror.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OriginalEntry {
  #[serde(default)]
  pub size: u64,
  #[serde(default)]
  pub mtime: f64,
  #[serde(default)]
  pub tracked: bool,
}

/// Whether `dst` is a folder of the original waiting to be adopted: no
/// state of ours, and a `mirror.json`, or a non-empty `mirror/` in a folder
/// no run of ours has written to (no source record). Our own folder whose
/// state was lost is not one: its state is rebuilt by `backup recreate`.
pub fn is_original(l: &Layout) -> bool {
  !l.state.exists()
    && (l.dst.join(MIRROR_JSON).is_file() || (!l.source.exists() && fs::read_dir(&l.mirror).is_ok_and(|mut d| d.next().is_some())))
}

/// Reads `mirror.json`; `None` if absent.
pub fn read_mirror_json(dst: &Path) -> Result<Option<HashMap<String, OriginalEntry>>, Error> {
  let p = dst.join(MIRROR_JSON);
  let bytes = match fs::read(&p) {
    Ok(b) => b,
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
    Err(e) => return Err(Error::io(&p, "cannot read", &e)),
  };
  serde_json::from_slice(&bytes).map(Some).map_err(|e| {
    Error::corrupt(
      &p,
      format!(
        "not a mirror state of backup.py ({e}); move it aside: the mirror's files and the increments then say what is \
         tracked"
      ),
    )
  })
}

/// The mirror state of an original folder, in memory: one entry per file
/// or symlink of `mirror/`. With `hash`, tracked files are hashed (a run
/// records the hash in the state it writes; readers need none).
pub fn original_state(l: &Layout, hash: bool, warnings: &mut Vec<Warning>) -> Result<Vec<StateEntry>, Error> {
  let listed = read_mirror_json(&l.dst)?.unwrap_or_default();
  // Whether the newest mention of each path stores it (for paths the
  // mirror.json does not list).
  let mut live: HashMap<String, bool> = HashMap::new();
  for inc in increments::list(&l.dst)? {
    if let Ok(Some(b)) = increments::read_bytes(&inc) {
      let _ = increments::parse(&inc.meta_path(), &b, &mut |p: &str, e: EntryRef| {
        live.insert(p.to_string(), !e.is_deleted());
      });
    }
  }
  let files = crate::fs::walk::files(&l.mirror, warnings);
  let out = files
    .par_iter()
    .map(|(p, md)| {
      let tracked = listed.get(p).map_or_else(|| live.get(p).copied().unwrap_or(false), |o| o.tracked);
      // backup.py copies every path on its own: no hard-link groups. Its
      // shutil.copy2 copies xattrs, so the mirror file's are recorded.
      StateEntry::from_mirror(&l.mirror, p, md, tracked, hash && tracked, None)
    })
    .collect();
  Ok(out)
}

/// The mirror state: ours if present, else (a folder of the original) the
/// one built from `mirror/` and `mirror.json`. `adopted` tells which.
pub fn read_state(l: &Layout, hash: bool) -> Result<(Vec<StateEntry>, bool), Error> {
  if is_original(l) {
    let mut w = Vec::new();
    return Ok((original_state(l, hash, &mut w)?, true));
  }
  Ok((state::read(&l.state)?, false))
}

/// Keeps the original's `mirror.json` current where it exists (a folder
/// adopted from `backup.py`), so going back to `backup.py` sees what the
/// mirror holds and does not copy everything again. Never created.
pub fn update_mirror_json<'a>(dst: &Path, entries: impl Iterator<Item = (&'a str, u64, i64, bool)>) -> Result<(), Error> {
  let p = dst.join(MIRROR_JSON);
  if !p.is_file() {
    return Ok(());
  }
  let map: serde_json::Map<String, serde_json::Value> = entries
    .map(|(rel, size, mtime_ns, tracked)| {
      (rel.to_string(), serde_json::json!({ "size": size, "mtime": mtime_ns as f64 / 1e9, "tracked": tracked }))
    })
    .collect();
  util::write_atomic(&p, |f| {
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer_pretty(&mut w, &map)?;
    std::io::Write::flush(&mut w)
  })
}
