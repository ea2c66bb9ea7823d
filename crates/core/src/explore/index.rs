//! The catalog index: a derived SQLite copy of every increment's catalog
//! (and of the mirror state), so that the timeline, a folder at any point
//! in time, one file's history, a search and a diff answer without reading
//! every metadata file.
//!
//! The increments' metadata stays the truth. The index records, per
//! increment, the size, mtime and inode of its metadata file; every use
//! first compares them (one `readdir` of `dst` and one `stat` per
//! increment) and brings the index up to date: increments that appeared
//! are added, those that vanished or whose metadata changed are removed
//! (and re-added), each as one increment's rows. An increment that sorts
//! before an indexed one, a schema version it does not know, or any SQLite
//! error (a damaged file) rebuilds it from scratch into a temp file that
//! replaces it. Whoever cannot write it (a read-only disk) gets the answers
//! of the direct reading ([`crate::explore::catalog`]), which the index
//! reproduces exactly (the tests compare them on random histories).
//!
//! Point in time: the state at increment `k` is, per path, its newest
//! mention in an increment at or before `k` (a deletion means absent), and
//! the untracked files of the mirror for paths no such increment mentions
//! — exactly [`crate::explore::catalog::newest_mentions`] and restore's plan.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use crate::backup::increments::{self, DamagedMeta, EntryRef, Increment};
use crate::backup::meta::CatalogEntry;
use crate::backup::scan::Kind;
use crate::error::{Error, Warning};
use crate::explore::catalog::{self, Found, History, Hit, ListItem, Listing, Matcher, MirrorCopy, SearchFilter, Totals, Version};
use crate::layout::{parse_increment_name, Layout};

/// Bumped whenever the tables change meaning: an index of another version is rebuilt.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE increments(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  time INTEGER NOT NULL,
  name_time INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  meta_size INTEGER NOT NULL,
  meta_mtime INTEGER NOT NULL,
  meta_ino INTEGER NOT NULL,
  item TEXT NOT NULL,
  timestamp TEXT NOT NULL,
  damage TEXT,
  missing INTEGER NOT NULL,
  excl INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE paths(id INTEGER PRIMARY KEY, parent INTEGER NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL UNIQUE);
CREATE TABLE entries(
  path INTEGER NOT NULL,
  inc INTEGER NOT NULL,
  size INTEGER NOT NULL,
  mtime REAL NOT NULL,
  mtime_ns INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  op TEXT NOT NULL,
  sha256 TEXT,
  stored TEXT,
  extra TEXT,
  PRIMARY KEY(path, inc)
) WITHOUT ROWID;
CREATE TABLE mirror(
  path INTEGER PRIMARY KEY,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  tracked INTEGER NOT NULL,
  sha256 TEXT,
  link TEXT
);
";

/// The secondary indexes, created after a build's bulk insert (one sort
/// each instead of a million random inserts).
const SCHEMA_INDEXES: &str = "
CREATE INDEX paths_parent ON paths(parent);
CREATE INDEX entries_inc ON entries(inc);
";

/// Whether the index is switched off (`AXIOMATIC_INDEX=off`): every
/// command then reads the metadata directly, as before the index existed.
pub fn disabled() -> bool {
  std::env::var("AXIOMATIC_INDEX").is_ok_and(|v| v == "off" || v == "0")
}

/// What identifies one version of a file on disk: size, mtime (ns), inode;
/// all -1 when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(i64, i64, i64);

impl Stamp {
  const MISSING: Stamp = Stamp(-1, -1, -1);
  fn of(p: &Path) -> Stamp {
    match fs::metadata(p) {
      Ok(md) => Stamp(md.len() as i64, md.mtime() * 1_000_000_000 + md.mtime_nsec(), md.ino() as i64),
      Err(_) => Stamp::MISSING,
    }
  }
  fn text(self) -> String {
    format!("{} {} {}", self.0, self.1, self.2)
  }
}

/// An increment folder as found on disk, with the stamp of its metadata.
struct OnDisk {
  name: String,
  stamp: Stamp,
}

/// Increment folders of `dst` (what [`increments::list`] finds, without
/// reading any metadata).
fn on_disk(dst: &Path) -> Result<Vec<OnDisk>, Error> {
  let rd = fs::read_dir(dst).map_err(|e| Error::io(dst, "cannot read the backup folder", &e))?;
  let mut out = Vec::new();
  for e in rd {
    let e = e.map_err(|e| Error::io(dst, "cannot read the backup folder", &e))?;
    let Ok(name) = e.file_name().into_string() else { continue };
    if parse_increment_name(&name).is_none() || !e.file_type().is_ok_and(|t| t.is_dir()) {
      continue;
    }
    let stamp = Stamp::of(&e.path().join(crate::layout::meta_file_name(&name)));
    out.push(OnDisk { name, stamp });
  }
  Ok(out)
}

/// The stamp of the mirror state as the index recorded it: `state.jsonl`
/// of ours; a folder of the original backup.py (not adopted yet) has its
/// state rebuilt from `mirror/` on every read, so it is never cached.
fn mirror_stamp(l: &Layout) -> Option<String> {
  if crate::backup::adopt::is_original(l) {
    return None;
  }
  Some(Stamp::of(&l.state).text())
}

fn sql(path: &Path, e: rusqlite::Error) -> Error {
  Error::corrupt(path, format!("catalog index: {e}"))
}

/// One catalog entry as a row.
struct Row {
  path: String,
  size: i64,
  mtime: f64,
  mtime_ns: i64,
  mode: i64,
  kind: i64,
  deleted: bool,
  op: String,
  sha256: Option<String>,
  stored: Option<String>,
  extra: Option<String>,
}

/// The rarely present fields of an entry, kept as JSON text.
#[derive(Serialize, serde::Deserialize, Default)]
struct Extra {
  #[serde(skip_serializing_if = "Option::is_none", default)]
  carried_from: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none", default)]
  inconsistent: Option<bool>,
  #[serde(skip_serializing_if = "Option::is_none", default)]
  link: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none", default)]
  xattrs: Option<std::collections::BTreeMap<String, String>>,
}

impl Row {
  fn from_entry(path: &str, e: &EntryRef) -> Row {
    let c = e.to_owned();
    let extra = if c.carried_from.is_some() || c.inconsistent.is_some() || c.link.is_some() || c.xattrs.is_some() {
      serde_json::to_string(&Extra { carried_from: c.carried_from, inconsistent: c.inconsistent, link: c.link, xattrs: c.xattrs }).ok()
    } else {
      None
    };
    Row {
      path: path.to_string(),
      size: c.size as i64,
      mtime: c.mtime,
      mtime_ns: e.mtime_ns(),
      mode: c.mode as i64,
      kind: kind_num(c.kind),
      deleted: c.category == "deleted",
      op: c.op,
      sha256: c.sha256,
      stored: (c.stored_as != "hardlink").then_some(c.stored_as),
      extra,
    }
  }
}

fn kind_num(k: Kind) -> i64 {
  match k {
    Kind::File => 0,
    Kind::Symlink => 1,
  }
}

fn num_kind(n: i64) -> Kind {
  if n == 1 {
    Kind::Symlink
  } else {
    Kind::File
  }
}

/// The columns of `entries` a [`CatalogEntry`] is rebuilt from, in this order.
const ENTRY_COLS: &str = "e.size, e.mtime, e.mtime_ns, e.mode, e.kind, e.deleted, e.op, e.sha256, e.stored, e.extra";

/// A [`CatalogEntry`] from the row's [`ENTRY_COLS`] starting at column `at`.
fn entry_at(r: &rusqlite::Row, at: usize) -> rusqlite::Result<CatalogEntry> {
  let extra: Option<String> = r.get(at + 9)?;
  let x: Extra = extra.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
  let deleted: bool = r.get(at + 5)?;
  let ns: i64 = r.get(at + 2)?;
  Ok(CatalogEntry {
    size: r.get::<_, i64>(at)? as u64,
    mtime: r.get(at + 1)?,
    mtime_ns: ns.to_string(),
    mode: r.get::<_, i64>(at + 3)? as u32,
    kind: num_kind(r.get(at + 4)?),
    category: if deleted { "deleted".into() } else { "track".into() },
    op: r.get(at + 6)?,
    sha256: r.get(at + 7)?,
    stored_as: r.get::<_, Option<String>>(at + 8)?.unwrap_or_else(|| "hardlink".into()),
    carried_from: x.carried_from,
    inconsistent: x.inconsistent,
    link: x.link,
    xattrs: x.xattrs,
  })
}

/// One increment read for the index: its list line, the time history
/// shows, and its catalog (or why it cannot be read).
struct Read {
  inc: Increment,
  stamp: Stamp,
  item: ListItem,
  timestamp: String,
  rows: Vec<Row>,
  damage: Option<DamagedMeta>,
  missing: bool,
}

fn read_increment(inc: Increment, stamp: Stamp) -> Read {
  let item = catalog::list_item(&inc);
  let mut r = Read { timestamp: catalog::name_iso(&inc), inc, stamp, item, rows: Vec::new(), damage: None, missing: false };
  match increments::read_bytes(&r.inc) {
    Ok(None) => {
      r.missing = true;
      r.damage = Some(DamagedMeta::missing(&r.inc));
    }
    Ok(Some(bytes)) => {
      let mut rows = Vec::new();
      match increments::parse(&r.inc.meta_path(), &bytes, &mut |p: &str, e: EntryRef| rows.push(Row::from_entry(p, &e))) {
        Ok(_) => {
          r.rows = rows;
          if let Ok(Some(h)) = increments::read_head(&r.inc) {
            if !h.timestamp.is_empty() {
              r.timestamp = h.timestamp;
            }
          }
        }
        Err(e) => r.damage = Some(DamagedMeta::from_error(&r.inc, &e)),
      }
    }
    Err(e) => r.damage = Some(DamagedMeta::from_error(&r.inc, &e)),
  }
  r
}

/// Path ids, with every folder on the way (`parent` links a path to its
/// folder; the root folder `""` is id 0).
struct PathIds {
  ids: HashMap<String, i64>,
  next: i64,
  /// Look up misses in the table (false while building a fresh index).
  lookup: bool,
  new: Vec<(i64, i64, String, String)>,
}

impl PathIds {
  fn new(conn: &Connection, lookup: bool) -> rusqlite::Result<Self> {
    let next = conn.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM paths", [], |r| r.get(0))?;
    let mut ids = HashMap::new();
    ids.insert(String::new(), 0);
    Ok(Self { ids, next, lookup, new: Vec::new() })
  }

  fn id(&mut self, conn: &Connection, path: &str) -> rusqlite::Result<i64> {
    if let Some(&id) = self.ids.get(path) {
      return Ok(id);
    }
    if self.lookup {
      let found: Option<i64> = conn.prepare_cached("SELECT id FROM paths WHERE path = ?1")?.query_row([path], |r| r.get(0)).optional()?;
      if let Some(id) = found {
        self.ids.insert(path.to_string(), id);
        return Ok(id);
      }
    }
    let (parent_path, name) = match path.rfind('/') {
      Some(i) => (&path[..i], &path[i + 1..]),
      None => ("", path),
    };
    let parent = self.id(conn, parent_path)?;
    let id = self.next;
    self.next += 1;
    self.ids.insert(path.to_string(), id);
    self.new.push((id, parent, name.to_string(), path.to_string()));
    Ok(id)
  }

  fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached("INSERT INTO paths(id, parent, name, path) VALUES (?1, ?2, ?3, ?4)")?;
    for (id, parent, name, path) in self.new.drain(..) {
      st.execute(params![id, parent, name, path])?;
    }
    Ok(())
  }
}

/// An open, up-to-date index of one backup folder.
pub struct Index {
  conn: Connection,
  dst: PathBuf,
  file: PathBuf,
  /// Whether the mirror table holds the state (false for a folder of the
  /// original backup.py, whose state is read from `mirror/` each time).
  mirror_indexed: bool,
}

/// An indexed increment, in order.
#[derive(Debug, Clone)]
struct IncRow {
  id: i64,
  name: String,
  timestamp: String,
  damage: Option<DamagedMeta>,
  missing: bool,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
  conn.busy_timeout(std::time::Duration::from_secs(30))?;
  conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;")
}

impl Index {
  /// Opens the index of `dst`, building it if missing and bringing it up
  /// to date; a damaged or foreign one is rebuilt.
  pub fn open(dst: &Path) -> Result<Index, Error> {
    let l = Layout::new(dst);
    let file = l.index.clone();
    if file.exists() {
      // Damaged, stale beyond an update, or another version: rebuilt below.
      if let Ok(ix) = Self::open_existing(dst, &file) {
        return Ok(ix);
      }
    }
    let _one = one_build();
    // Another thread of this process may have built it while this one waited.
    if file.exists() {
      if let Ok(ix) = Self::open_existing(dst, &file) {
        return Ok(ix);
      }
    }
    Self::build(dst)
  }

  /// The index when it can be used, else None (the caller reads the
  /// metadata directly): switched off, or the folder cannot hold it.
  pub fn try_open(dst: &Path) -> Option<Index> {
    if disabled() {
      return None;
    }
    Self::open(dst).ok()
  }

  /// Whether `e` is an error of the index file itself (SQLite refused it:
  /// damaged), not of the backup (an unknown increment, damaged metadata).
  fn own_error(&self, e: &Error) -> bool {
    e.path.as_deref() == Some(self.file.as_path())
  }
}

/// One build at a time in this process: the requests of `backup serve` (or
/// any concurrent calls) that find no index wait for the one building it
/// and then open it, instead of building it again into the same temp file
/// (named by the process id) and, losing that race, answering without the
/// index. Processes build into their own temp files; the last rename wins.
fn one_build() -> std::sync::MutexGuard<'static, ()> {
  static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
  BUILD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Answers `q` from the index of `dst`: None when the index cannot be used
/// (the caller reads the metadata directly). An error of the index file
/// met while answering (garbage SQLite only notices when it reads that
/// page) rebuilds it and asks again; errors of the backup pass through.
pub fn with<T>(dst: &Path, q: impl Fn(&Index) -> Result<T, Error>) -> Option<Result<T, Error>> {
  let ix = Index::try_open(dst)?;
  match q(&ix) {
    Err(e) if ix.own_error(&e) => {
      drop(ix);
      let ix = Index::rebuild(dst).ok()?;
      match q(&ix) {
        Err(e) if ix.own_error(&e) => None,
        r => Some(r),
      }
    }
    r => Some(r),
  }
}

impl Index {
  fn open_existing(dst: &Path, file: &Path) -> Result<Index, Error> {
    let conn =
      Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(|e| sql(file, e))?;
    configure(&conn).map_err(|e| sql(file, e))?;
    let v: Option<i64> =
      conn.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0)).optional().map_err(|e| sql(file, e))?;
    if v != Some(SCHEMA_VERSION) {
      return Err(Error::corrupt(file, format!("catalog index: schema {v:?}, expected {SCHEMA_VERSION}")));
    }
    let mut ix = Index { conn, dst: dst.to_path_buf(), file: file.to_path_buf(), mirror_indexed: false };
    ix.sync(false)?;
    Ok(ix)
  }

  /// Builds the index from scratch into a temp file and puts it in place.
  pub fn rebuild(dst: &Path) -> Result<Index, Error> {
    let _one = one_build();
    Self::build(dst)
  }

  /// [`Index::rebuild`], with this process's build lock held (see [`one_build`]).
  fn build(dst: &Path) -> Result<Index, Error> {
    let l = Layout::new(dst);
    if !l.meta.is_dir() {
      fs::create_dir_all(&l.meta).map_err(|e| Error::io(&l.meta, "cannot create", &e))?;
    }
    let prefix = format!("{}.tmp", crate::layout::INDEX_FILE);
    // Builds of processes that died (killed mid-build) leave their temp file.
    if let Ok(rd) = fs::read_dir(&l.meta) {
      for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<i32>().ok()) else { continue };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let dead = unsafe { libc::kill(pid, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if dead {
          let _ = fs::remove_file(ent.path());
        }
      }
    }
    let tmp = l.meta.join(format!("{prefix}{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let built = (|| -> Result<(), Error> {
      let conn = Connection::open(&tmp).map_err(|e| sql(&tmp, e))?;
      conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;").map_err(|e| sql(&tmp, e))?;
      conn.execute_batch(SCHEMA).map_err(|e| sql(&tmp, e))?;
      conn.execute("INSERT INTO meta(key, value) VALUES ('schema', ?1)", [SCHEMA_VERSION]).map_err(|e| sql(&tmp, e))?;
      conn.execute("INSERT INTO paths(id, parent, name, path) VALUES (0, -1, '', '')", []).map_err(|e| sql(&tmp, e))?;
      let mut ix = Index { conn, dst: dst.to_path_buf(), file: tmp.clone(), mirror_indexed: false };
      ix.sync(true)?;
      ix.conn.execute_batch(SCHEMA_INDEXES).map_err(|e| sql(&tmp, e))?;
      let ix_conn = ix.conn;
      ix_conn.execute_batch("PRAGMA journal_mode = DELETE;").map_err(|e| sql(&tmp, e))?;
      drop(ix_conn);
      let f = fs::File::open(&tmp).map_err(|e| Error::io(&tmp, "cannot open", &e))?;
      f.sync_all().map_err(|e| Error::io(&tmp, "cannot flush", &e))?;
      fs::rename(&tmp, &l.index).map_err(|e| Error::io(&l.index, "cannot put in place", &e))
    })();
    if let Err(e) = built {
      let _ = fs::remove_file(&tmp);
      return Err(e);
    }
    let conn = Connection::open(&l.index).map_err(|e| sql(&l.index, e))?;
    configure(&conn).map_err(|e| sql(&l.index, e))?;
    let mirror_indexed = mirror_stamp(&l).is_some() && mirror_held(&conn, &l.index)?;
    Ok(Index { conn, dst: dst.to_path_buf(), file: l.index, mirror_indexed })
  }

  /// Brings the index up to date with the increments and the mirror state
  /// on disk. `fresh`: the tables are empty (a build). A quick look first
  /// (no lock); when something changed, the work is done in one
  /// `IMMEDIATE` transaction that looks again, so two readers updating at
  /// once do the work once.
  fn sync(&mut self, fresh: bool) -> Result<(), Error> {
    let f = self.file.clone();
    let l = Layout::new(&self.dst);
    let mstamp = mirror_stamp(&l);
    self.mirror_indexed = mstamp.is_some();
    if !fresh && plan(&self.conn, &self.dst, &f, &mstamp)?.is_none() {
      self.mirror_indexed = mstamp.is_some() && mirror_held(&self.conn, &f)?;
      return Ok(());
    }
    let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| sql(&f, e))?;
    if let Some(p) = plan(&tx, &self.dst, &f, &mstamp)? {
      apply(&tx, &self.dst, &f, fresh, p, &mstamp)?;
    }
    tx.commit().map_err(|e| sql(&f, e))?;
    self.mirror_indexed = mstamp.is_some() && mirror_held(&self.conn, &f)?;
    Ok(())
  }

  /// The indexed increments, oldest first.
  fn incs(&self) -> Result<Vec<IncRow>, Error> {
    let e = |e| sql(&self.file, e);
    let mut st = self.conn.prepare_cached("SELECT id, name, timestamp, damage, missing FROM increments ORDER BY id").map_err(e)?;
    let rows = st
      .query_map([], |r| {
        let damage: Option<String> = r.get(3)?;
        Ok(IncRow {
          id: r.get(0)?,
          name: r.get(1)?,
          timestamp: r.get(2)?,
          damage: damage.and_then(|d| serde_json::from_str(&d).ok()),
          missing: r.get(4)?,
        })
      })
      .map_err(e)?;
    rows.collect::<Result<_, _>>().map_err(e)
  }

  fn inc_obj(&self, name: &str) -> Increment {
    Increment::at(&self.dst, name).unwrap_or_else(|| panic!("indexed increment {name} has an increment name"))
  }

  /// `backup list` (without `--detailed`).
  pub fn list(&self) -> Result<Listing, Error> {
    let e = |e| sql(&self.file, e);
    let mut st = self.conn.prepare_cached("SELECT item FROM increments ORDER BY id").map_err(e)?;
    let items: Vec<ListItem> = st
      .query_map([], |r| r.get::<_, String>(0))
      .map_err(e)?
      .map(|t| t.map_err(e).and_then(|t| serde_json::from_str(&t).map_err(|x| Error::corrupt(&self.file, format!("catalog index: {x}")))))
      .collect::<Result<_, _>>()?;
    let damaged = items.iter().filter_map(|i| i.damaged.clone()).collect();
    Ok(Listing { increments: items, total_disk_bytes: None, mirror_disk_bytes: None, damaged })
  }

  /// The timeline: `list` with each increment's bytes only it holds, as
  /// the catalogs tell it (`exclusiveBytes`; see [`recompute_excl`]).
  pub fn timeline(&self) -> Result<Listing, Error> {
    let e = |e| sql(&self.file, e);
    let mut l = self.list()?;
    let mut st = self.conn.prepare_cached("SELECT excl FROM increments ORDER BY id").map_err(e)?;
    let ex: Vec<i64> = st.query_map([], |r| r.get(0)).map_err(e)?.collect::<Result<_, _>>().map_err(e)?;
    for (item, x) in l.increments.iter_mut().zip(ex) {
      if item.damaged.is_none() {
        item.exclusive_bytes = Some(x as u64);
      }
    }
    Ok(l)
  }

  /// `backup search`, as [`catalog::search`] answers it.
  pub fn search(&self, filter: SearchFilter) -> Result<Found, Error> {
    let e = |e| sql(&self.file, e);
    let mut incs = self.incs()?;
    let limited = filter.last.is_some();
    if let Some(n) = filter.last {
      let skip = incs.len().saturating_sub(n);
      incs.drain(..skip);
    }
    let m = Matcher::new(filter)?;
    let min_id = incs.first().map_or(i64::MAX, |i| i.id);
    let names: HashMap<i64, usize> = incs.iter().enumerate().map(|(k, i)| (i.id, k)).collect();
    let mut per_inc: Vec<Vec<Hit>> = vec![Vec::new(); incs.len()];
    let mut push = |inc: i64, p: &str, entry: CatalogEntry| {
      let Some(&k) = names.get(&inc) else { return };
      let t = entry.mtime_ns.parse().unwrap_or(0);
      if m.matches_values(p, entry.size, t) {
        per_inc[k].push(Hit { increment: incs[k].name.clone(), path: p.to_string(), entry });
      }
    };
    // Two plans: the rows of the searched increments, when they are few
    // (`--last-backups`: a handful of increments' rows beat a query per
    // matching path of the whole history); otherwise each distinct path
    // matched once, then its entries.
    let range_rows: i64 = if limited {
      self.conn.query_row("SELECT COUNT(*) FROM entries WHERE inc >= ?1", [min_id], |r| r.get(0)).map_err(e)?
    } else {
      i64::MAX
    };
    let total_paths: i64 = self.conn.query_row("SELECT COUNT(*) FROM paths", [], |r| r.get(0)).map_err(e)?;
    if range_rows < total_paths / 4 {
      let q = format!("SELECT e.inc, p.path, {ENTRY_COLS} FROM entries e JOIN paths p ON p.id = e.path WHERE e.inc >= ?1");
      let mut st = self.conn.prepare_cached(&q).map_err(e)?;
      let mut rows = st.query([min_id]).map_err(e)?;
      while let Some(r) = rows.next().map_err(e)? {
        let p: rusqlite::types::ValueRef = r.get_ref(1).map_err(e)?;
        let p = p.as_str().unwrap_or("");
        if m.path_matches(p) {
          let inc: i64 = r.get(0).map_err(e)?;
          push(inc, p, entry_at(r, 2).map_err(e)?);
        }
      }
    } else {
      let mut matched: Vec<(i64, String)> = Vec::new();
      {
        let mut st = self.conn.prepare_cached("SELECT id, path FROM paths WHERE id > 0").map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
          let p: rusqlite::types::ValueRef = r.get_ref(1).map_err(e)?;
          let p = p.as_str().unwrap_or("");
          if m.path_matches(p) {
            matched.push((r.get(0).map_err(e)?, p.to_string()));
          }
        }
      }
      let q = format!("SELECT e.inc, {ENTRY_COLS} FROM entries e WHERE e.path = ?1 AND e.inc >= ?2");
      let mut st = self.conn.prepare_cached(&q).map_err(e)?;
      for (pid, p) in &matched {
        let mut rows = st.query(params![pid, min_id]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
          let inc: i64 = r.get(0).map_err(e)?;
          push(inc, p, entry_at(r, 1).map_err(e)?);
        }
      }
    }
    let mut found = Found { increments_searched: 0, skipped: Vec::new(), damaged: Vec::new(), hits: Vec::new(), totals: Totals::default() };
    for (inc, mut h) in incs.iter().zip(per_inc) {
      if let Some(d) = &inc.damage {
        found.skipped.push(inc.name.clone());
        found.damaged.push(d.clone());
        continue;
      }
      h.sort_by(|a, b| a.path.cmp(&b.path));
      found.add(h);
    }
    Ok(found)
  }

  fn path_id(&self, rel: &str) -> Result<Option<i64>, Error> {
    let e = |e| sql(&self.file, e);
    self.conn.prepare_cached("SELECT id FROM paths WHERE path = ?1").map_err(e)?.query_row([rel], |r| r.get(0)).optional().map_err(e)
  }

  /// The mirror's copy of a path (from the state).
  fn mirror_copy(&self, rel: &str) -> Result<Option<MirrorCopy>, Error> {
    let e = |e| sql(&self.file, e);
    let l = Layout::new(&self.dst);
    let present = || increments::safe_rel(rel) && l.mirror.join(crate::fs::names::to_path(rel)).symlink_metadata().is_ok();
    if !self.mirror_indexed {
      return Ok(catalog::read_state_entry(&l, rel)?.map(|s| MirrorCopy {
        size: s.size,
        mtime_ns: s.mtime_ns.to_string(),
        mode: s.mode,
        kind: s.kind,
        tracked: s.tracked,
        sha256: s.sha().map(hex::encode),
        present: present(),
      }));
    }
    let Some(pid) = self.path_id(rel)? else { return Ok(None) };
    let row = self
      .conn
      .prepare_cached("SELECT size, mtime_ns, mode, kind, tracked, sha256 FROM mirror WHERE path = ?1")
      .map_err(e)?
      .query_row([pid], |r| {
        Ok(MirrorCopy {
          size: r.get::<_, i64>(0)? as u64,
          mtime_ns: r.get::<_, i64>(1)?.to_string(),
          mode: r.get::<_, i64>(2)? as u32,
          kind: num_kind(r.get(3)?),
          tracked: r.get(4)?,
          sha256: r.get(5)?,
          present: false,
        })
      })
      .optional()
      .map_err(e)?;
    Ok(row.map(|mut c| {
      c.present = present();
      c
    }))
  }

  /// `backup history PATH`, as [`catalog::history`] answers it.
  pub fn history(&self, rel: &str) -> Result<History, Error> {
    let e = |e| sql(&self.file, e);
    let rel = rel.trim_start_matches("./").trim_end_matches('/');
    let incs = self.incs()?;
    let mut h = History { path: rel.to_string(), versions: Vec::new(), mirror: None, skipped: Vec::new(), damaged: Vec::new() };
    let mut versions: HashMap<i64, CatalogEntry> = HashMap::new();
    if let Some(pid) = self.path_id(rel)? {
      let q = format!("SELECT e.inc, {ENTRY_COLS} FROM entries e WHERE e.path = ?1");
      let mut st = self.conn.prepare_cached(&q).map_err(e)?;
      let rows = st.query_map([pid], |r| Ok((r.get::<_, i64>(0)?, entry_at(r, 1)?))).map_err(e)?;
      for r in rows {
        let (i, en) = r.map_err(e)?;
        versions.insert(i, en);
      }
    }
    for inc in &incs {
      if let Some(d) = &inc.damage {
        h.skipped.push(inc.name.clone());
        h.damaged.push(d.clone());
        continue;
      }
      if let Some(entry) = versions.remove(&inc.id) {
        let dir = self.dst.join(&inc.name);
        let present =
          increments::safe_rel(rel) && dir.join(&entry.category).join(crate::fs::names::to_path(rel)).symlink_metadata().is_ok();
        h.versions.push(Version { increment: inc.name.clone(), timestamp: inc.timestamp.clone(), entry, present });
      }
    }
    h.mirror = self.mirror_copy(rel)?;
    Ok(h)
  }

  /// The position of increment `name`, or a usage error.
  fn position(&self, incs: &[IncRow], name: &str) -> Result<usize, Error> {
    incs
      .iter()
      .position(|i| i.name == name)
      .ok_or_else(|| Error::config(format!("there is no increment {name:?} in {}; see `backup list`", self.dst.display())))
  }

  /// The error for a point in time an increment without readable metadata breaks.
  fn check_upto(&self, incs: &[IncRow]) -> Result<(), Error> {
    for i in incs {
      if i.missing {
        return Err(increments::missing_error(&self.inc_obj(&i.name), "this point in time cannot be reconstructed"));
      }
      if let Some(d) = &i.damage {
        return Err(Error::corrupt(Path::new(&d.file), format!("damaged increment metadata: {}; rebuild it with `{}`", d.problem, d.fix)));
      }
    }
    Ok(())
  }

  /// The newest mention at or before increment `at` of every path `keep`
  /// accepts: (increment name, entry), as [`catalog::newest_mentions`].
  pub fn newest_mentions(&self, at: &str, keep: &(dyn Fn(&str) -> bool + Sync)) -> Result<HashMap<String, (String, CatalogEntry)>, Error> {
    let e = |e| sql(&self.file, e);
    let incs = self.incs()?;
    let k = self.position(&incs, at)?;
    self.check_upto(&incs[..=k])?;
    let names: HashMap<i64, &str> = incs.iter().map(|i| (i.id, i.name.as_str())).collect();
    // In (path, inc) order: the last row of each path is its newest mention.
    let q = "SELECT e.path, e.inc FROM entries e WHERE e.inc <= ?1 ORDER BY e.path, e.inc";
    let mut newest: Vec<(i64, i64)> = Vec::new();
    {
      let mut st = self.conn.prepare_cached(q).map_err(e)?;
      let mut rows = st.query([incs[k].id]).map_err(e)?;
      while let Some(r) = rows.next().map_err(e)? {
        let (p, i): (i64, i64) = (r.get(0).map_err(e)?, r.get(1).map_err(e)?);
        match newest.last_mut() {
          Some(last) if last.0 == p => last.1 = i,
          _ => newest.push((p, i)),
        }
      }
    }
    let mut out = HashMap::new();
    let qp = "SELECT path FROM paths WHERE id = ?1";
    let qe = format!("SELECT {ENTRY_COLS} FROM entries e WHERE e.path = ?1 AND e.inc = ?2");
    let mut sp = self.conn.prepare_cached(qp).map_err(e)?;
    let mut se = self.conn.prepare_cached(&qe).map_err(e)?;
    for (pid, inc) in newest {
      let p: String = sp.query_row([pid], |r| r.get(0)).map_err(e)?;
      if !keep(&p) {
        continue;
      }
      let en = se.query_row(params![pid, inc], |r| entry_at(r, 0)).map_err(e)?;
      out.insert(p, (names[&inc].to_string(), en));
    }
    Ok(out)
  }

  /// The newest entry of path id `pid` at or before increment id `at`.
  fn at_point(&self, pid: i64, at: i64) -> Result<Option<(i64, CatalogEntry)>, Error> {
    let e = |e| sql(&self.file, e);
    let q = format!("SELECT e.inc, {ENTRY_COLS} FROM entries e WHERE e.path = ?1 AND e.inc <= ?2 ORDER BY e.inc DESC LIMIT 1");
    self.conn.prepare_cached(&q).map_err(e)?.query_row(params![pid, at], |r| Ok((r.get(0)?, entry_at(r, 1)?))).optional().map_err(e)
  }

  /// The mirror state's row of path id `pid` (size, mtime_ns, mode, kind, tracked, sha256, link).
  fn mirror_row(&self, pid: i64) -> Result<Option<MirrorRow>, Error> {
    let e = |e| sql(&self.file, e);
    self
      .conn
      .prepare_cached("SELECT size, mtime_ns, mode, kind, tracked, sha256, link FROM mirror WHERE path = ?1")
      .map_err(e)?
      .query_row([pid], |r| {
        Ok(MirrorRow {
          size: r.get::<_, i64>(0)? as u64,
          mtime_ns: r.get(1)?,
          mode: r.get::<_, i64>(2)? as u32,
          kind: num_kind(r.get(3)?),
          tracked: r.get(4)?,
          sha256: r.get(5)?,
          link: r.get(6)?,
        })
      })
      .optional()
      .map_err(e)
  }

  /// The mirror state, from the table or (a folder of the original) read anew.
  fn mirror_state_map(&self) -> Result<Option<HashMap<String, MirrorRow>>, Error> {
    if self.mirror_indexed {
      return Ok(None);
    }
    let l = Layout::new(&self.dst);
    let (state, _) = crate::backup::adopt::read_state(&l, false)?;
    Ok(Some(
      state
        .into_iter()
        .map(|s| {
          let sha256 = s.sha().map(hex::encode);
          (
            s.rel().to_string(),
            MirrorRow {
              size: s.size,
              mtime_ns: s.mtime_ns,
              mode: s.mode,
              kind: s.kind,
              tracked: s.tracked,
              sha256,
              link: s.link().map(str::to_string),
            },
          )
        })
        .collect(),
    ))
  }

  /// What path `pid` (`rel`) is at point `at` (an increment id; None = the
  /// latest state, the mirror): the file, or None when absent.
  fn node(
    &self,
    pid: i64,
    rel: &str,
    at: Option<(i64, &HashMap<i64, String>)>,
    mirror: &Option<HashMap<String, MirrorRow>>,
  ) -> Result<Option<TreeFile>, Error> {
    let from_mirror = mirror_file;
    let mirror_of = |pid: i64| -> Result<Option<MirrorRow>, Error> {
      match mirror {
        Some(map) => Ok(map.get(rel).cloned()),
        None => self.mirror_row(pid),
      }
    };
    match at {
      None => Ok(mirror_of(pid)?.map(from_mirror)),
      Some((k, names)) => match self.at_point(pid, k)? {
        Some((_, en)) if en.category == "deleted" => Ok(None),
        Some((i, en)) => Ok(Some(version_file(names[&i].clone(), en))),
        None => Ok(mirror_of(pid)?.filter(|m| !m.tracked).map(from_mirror)),
      },
    }
  }

  /// Resolves `at` (an increment name or None) to (id, position).
  fn point(&self, incs: &[IncRow], at: Option<&str>) -> Result<Option<i64>, Error> {
    match at {
      None => Ok(None),
      Some(name) => {
        let k = self.position(incs, name)?;
        self.check_upto(&incs[..=k])?;
        Ok(Some(incs[k].id))
      }
    }
  }

  /// The content of folder `path` ("" = the top) at increment `at` (None =
  /// the latest state): its files as restore would restore them, and its
  /// sub-folders that hold at least one file then. Sorted by name.
  pub fn tree(&self, path: &str, at: Option<&str>) -> Result<Tree, Error> {
    let e = |e| sql(&self.file, e);
    let path = path.trim_start_matches("./").trim_matches('/');
    if !self.mirror_indexed {
      // A folder of the original backup.py: its untracked files are known
      // only from `mirror/`, read anew each time.
      return tree_direct(&self.dst, path, at);
    }
    let incs = self.incs()?;
    let k = self.point(&incs, at)?;
    let names: HashMap<i64, String> = incs.iter().map(|i| (i.id, i.name.clone())).collect();
    let at_k = k.map(|k| (k, &names));
    let mirror = self.mirror_state_map()?;
    let mut tree = Tree { path: path.to_string(), at: at.map(str::to_string), entries: Vec::new() };
    let Some(fid) = (if path.is_empty() { Some(0) } else { self.path_id(path)? }) else { return Ok(tree) };
    // Each child with its newest entry at or before the point (none for
    // the latest state) and its mirror row, in one statement.
    let q = format!(
      "SELECT p.id, p.name, p.path, e.inc, {ENTRY_COLS}, m.size, m.mtime_ns, m.mode, m.kind, m.tracked, m.sha256, m.link
       FROM paths p
       LEFT JOIN entries e ON e.path = p.id AND e.inc = (SELECT MAX(x.inc) FROM entries x WHERE x.path = p.id AND x.inc <= ?2)
       LEFT JOIN mirror m ON m.path = p.id
       WHERE p.parent = ?1"
    );
    let mut children: Vec<(i64, String, String, Option<TreeFile>)> = Vec::new();
    {
      let mut st = self.conn.prepare_cached(&q).map_err(e)?;
      let mut rows = st.query(params![fid, k.unwrap_or(-1)]).map_err(e)?;
      while let Some(r) = rows.next().map_err(e)? {
        let inc: Option<i64> = r.get(3).map_err(e)?;
        let mirror_row = || -> rusqlite::Result<Option<MirrorRow>> {
          let size: Option<i64> = r.get(14)?;
          let Some(size) = size else { return Ok(None) };
          Ok(Some(MirrorRow {
            size: size as u64,
            mtime_ns: r.get(15)?,
            mode: r.get::<_, i64>(16)? as u32,
            kind: num_kind(r.get(17)?),
            tracked: r.get(18)?,
            sha256: r.get(19)?,
            link: r.get(20)?,
          }))
        };
        let file = match (k, inc) {
          (None, _) => mirror_row().map_err(e)?.map(mirror_file),
          (Some(_), Some(i)) => {
            let en = entry_at(r, 4).map_err(e)?;
            (en.category != "deleted").then(|| version_file(names[&i].clone(), en))
          }
          (Some(_), None) => mirror_row().map_err(e)?.filter(|m| !m.tracked).map(mirror_file),
        };
        children.push((r.get(0).map_err(e)?, r.get(1).map_err(e)?, r.get(2).map_err(e)?, file));
      }
    }
    let mut has_children: HashSet<i64> = HashSet::new();
    {
      let mut st = self
        .conn
        .prepare_cached("SELECT DISTINCT parent FROM paths WHERE parent IN (SELECT id FROM paths WHERE parent = ?1)")
        .map_err(e)?;
      let rows = st.query_map([fid], |r| r.get::<_, i64>(0)).map_err(e)?;
      for r in rows {
        has_children.insert(r.map_err(e)?);
      }
    }
    for (cid, name, cpath, file) in children {
      if let Some(f) = file {
        tree.entries.push(TreeEntry { name: name.clone(), path: cpath.clone(), dir: false, file: Some(f) });
      }
      if has_children.contains(&cid) && self.folder_exists(&cpath, at_k, &mirror)? {
        tree.entries.push(TreeEntry { name, path: cpath, dir: true, file: None });
      }
    }
    tree.entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.dir.cmp(&b.dir)));
    Ok(tree)
  }

  /// Whether some file lies under folder `path` at the point.
  fn folder_exists(
    &self,
    path: &str,
    at: Option<(i64, &HashMap<i64, String>)>,
    mirror: &Option<HashMap<String, MirrorRow>>,
  ) -> Result<bool, Error> {
    let e = |e| sql(&self.file, e);
    let lo = format!("{path}/");
    let hi = format!("{path}0"); // '0' follows '/' in byte order
    let mut st = self.conn.prepare_cached("SELECT id, path FROM paths WHERE path > ?1 AND path < ?2").map_err(e)?;
    let mut rows = st.query(params![lo, hi]).map_err(e)?;
    while let Some(r) = rows.next().map_err(e)? {
      let (id, p): (i64, String) = (r.get(0).map_err(e)?, r.get(1).map_err(e)?);
      if self.node(id, &p, at, mirror)?.is_some() {
        return Ok(true);
      }
    }
    Ok(false)
  }

  /// The tracked files that differ between increments `from` and `to`
  /// (under `paths`, folder prefixes; empty = all), as [`diff_direct`].
  pub fn diff(&self, from: &str, to: &str, paths: &[String]) -> Result<Diff, Error> {
    let e = |e| sql(&self.file, e);
    let incs = self.incs()?;
    let (a, b) = (self.position(&incs, from)?, self.position(&incs, to)?);
    let (lo, hi) = (a.min(b), a.max(b));
    self.check_upto(&incs[..=hi])?;
    let names: HashMap<i64, String> = incs.iter().map(|i| (i.id, i.name.clone())).collect();
    let keep = keeper(paths);
    // The paths with an entry in (lo, hi], each with its newest entry at
    // or before `from` and at or before `to`, in one statement.
    let cols_a = ENTRY_COLS.replace("e.", "a.");
    let cols_b = ENTRY_COLS.replace("e.", "b.");
    let q = format!(
      "WITH ch AS (SELECT DISTINCT path FROM entries WHERE inc > ?1 AND inc <= ?2)
       SELECT p.path, a.inc, {cols_a}, b.inc, {cols_b}
       FROM ch JOIN paths p ON p.id = ch.path
       LEFT JOIN entries a ON a.path = ch.path AND a.inc = (SELECT MAX(x.inc) FROM entries x WHERE x.path = ch.path AND x.inc <= ?3)
       LEFT JOIN entries b ON b.path = ch.path AND b.inc = (SELECT MAX(x.inc) FROM entries x WHERE x.path = ch.path AND x.inc <= ?4)"
    );
    let mut out = Vec::new();
    {
      let mut st = self.conn.prepare_cached(&q).map_err(e)?;
      let mut rows = st.query(params![incs[lo].id, incs[hi].id, incs[a].id, incs[b].id]).map_err(e)?;
      while let Some(r) = rows.next().map_err(e)? {
        let p: String = r.get(0).map_err(e)?;
        if !keep(&p) {
          continue;
        }
        let side = |at: usize| -> rusqlite::Result<Option<(String, CatalogEntry)>> {
          let inc: Option<i64> = r.get(at)?;
          let Some(inc) = inc else { return Ok(None) };
          let en = entry_at(r, at + 1)?;
          Ok((en.category != "deleted").then(|| (names[&inc].clone(), en)))
        };
        out.push((p, side(1).map_err(e)?, side(12).map_err(e)?));
      }
    }
    Ok(make_diff(&self.dst, &incs[a].name, &incs[b].name, out))
  }
}

/// Marks a recorded mirror stamp whose state could not be read.
const UNREADABLE: &str = " unreadable";

/// Whether the mirror table holds the state (recorded as readable).
fn mirror_held(conn: &Connection, file: &Path) -> Result<bool, Error> {
  let v: Option<String> =
    conn.query_row("SELECT value FROM meta WHERE key = 'mirror'", [], |r| r.get(0)).optional().map_err(|e| sql(file, e))?;
  Ok(v.is_some_and(|v| !v.is_empty() && !v.ends_with(UNREADABLE)))
}

/// What an update must do: increments to drop (ids), increments to read
/// (as found on disk, with the id they had when their metadata changed),
/// and whether the mirror table must be reloaded.
struct Plan {
  remove: Vec<i64>,
  add: Vec<(OnDisk, Option<i64>)>,
  mirror_fresh: bool,
}

/// Compares the index with the disk; None when it is up to date.
fn plan(conn: &Connection, dst: &Path, file: &Path, mstamp: &Option<String>) -> Result<Option<Plan>, Error> {
  let e = |e| sql(file, e);
  let disk = on_disk(dst)?;
  let mut held: HashMap<String, (i64, Stamp)> = HashMap::new();
  {
    let mut st = conn.prepare_cached("SELECT id, name, meta_size, meta_mtime, meta_ino FROM increments").map_err(e)?;
    let rows =
      st.query_map([], |r| Ok((r.get::<_, String>(1)?, (r.get::<_, i64>(0)?, Stamp(r.get(2)?, r.get(3)?, r.get(4)?))))).map_err(e)?;
    for row in rows {
      let (n, v) = row.map_err(e)?;
      held.insert(n, v);
    }
  }
  let mut remove = Vec::new();
  let mut add = Vec::new();
  let mut seen = HashSet::new();
  for d in disk {
    seen.insert(d.name.clone());
    match held.get(&d.name) {
      Some((_, s)) if *s == d.stamp => {}
      Some((id, _)) => {
        remove.push(*id);
        let id = *id;
        add.push((d, Some(id)));
      }
      None => add.push((d, None)),
    }
  }
  remove.extend(held.iter().filter(|(n, _)| !seen.contains(n.as_str())).map(|(_, (id, _))| *id));
  let held_mirror: Option<String> =
    conn.query_row("SELECT value FROM meta WHERE key = 'mirror'", [], |r| r.get(0)).optional().map_err(e)?;
  let want = mstamp.as_deref().unwrap_or("");
  let mirror_fresh = held_mirror.as_deref().is_some_and(|h| h.strip_suffix(UNREADABLE).unwrap_or(h) == want);
  if remove.is_empty() && add.is_empty() && mirror_fresh {
    return Ok(None);
  }
  Ok(Some(Plan { remove, add, mirror_fresh }))
}

/// The order of increments, as [`increments::list`] sorts them.
type Key = (i64, i64, u32, String);

fn key_of(i: &Increment) -> Key {
  (i.time, i.name_time, parse_increment_name(&i.name).map_or(0, |x| x.1), i.name.clone())
}

/// Carries out a [`Plan`] inside the caller's transaction. Ids are the
/// order of the increments: an increment whose metadata changed keeps its
/// id, a new one gets the next; one that would sort before a kept one is
/// an error (the caller rebuilds).
fn apply(conn: &Connection, dst: &Path, file: &Path, fresh: bool, p: Plan, mstamp: &Option<String>) -> Result<(), Error> {
  let e = |e| sql(file, e);
  let l = Layout::new(dst);
  let removed: HashSet<i64> = p.remove.iter().copied().collect();
  // Kept increments: (key, id).
  let mut order: Vec<(Key, Option<i64>, Option<usize>)> = Vec::new();
  {
    let mut st = conn.prepare_cached("SELECT id, time, name_time, seq, name FROM increments").map_err(e)?;
    let mut rows = st.query([]).map_err(e)?;
    while let Some(r) = rows.next().map_err(e)? {
      let id: i64 = r.get(0).map_err(e)?;
      if !removed.contains(&id) {
        order.push(((r.get(1).map_err(e)?, r.get(2).map_err(e)?, r.get(3).map_err(e)?, r.get(4).map_err(e)?), Some(id), None));
      }
    }
  }
  let mut max_id: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM increments", [], |r| r.get(0)).map_err(e)?;
  let reads: Vec<Read> =
    p.add.par_iter().filter_map(|(d, _)| Increment::at(dst, &d.name).map(|inc| read_increment(inc, d.stamp))).collect();
  let old_ids: HashMap<&str, i64> = p.add.iter().filter_map(|(d, id)| id.map(|i| (d.name.as_str(), i))).collect();
  for (k, r) in reads.iter().enumerate() {
    order.push((key_of(&r.inc), old_ids.get(r.inc.name.as_str()).copied(), Some(k)));
  }
  order.sort_by(|a, b| a.0.cmp(&b.0));
  let mut ids: Vec<i64> = vec![0; reads.len()];
  let mut last = 0i64;
  for (_, id, read) in &order {
    let id = match id {
      Some(id) if *id > last => *id,
      Some(_) => return Err(Error::corrupt(file, "catalog index: the order of the increments changed; rebuilding")),
      None => {
        max_id = max_id.max(last) + 1;
        max_id
      }
    };
    last = id;
    if let Some(k) = read {
      ids[*k] = id;
    }
  }
  for id in &p.remove {
    conn.execute("DELETE FROM entries WHERE inc = ?1", [id]).map_err(e)?;
    conn.execute("DELETE FROM increments WHERE id = ?1", [id]).map_err(e)?;
  }
  // Exclusive bytes by deltas only when one increment is appended (the
  // usual run); anything else recomputes them.
  let one_appended = p.remove.is_empty() && reads.len() == 1 && !fresh;
  let mut pids = PathIds::new(conn, !fresh).map_err(e)?;
  let mut all: Vec<(i64, i64, Row)> = Vec::new();
  for (r, id) in reads.into_iter().zip(ids) {
    let seq = parse_increment_name(&r.inc.name).map_or(0, |x| x.1);
    conn
      .execute(
        "INSERT INTO increments(id, name, time, name_time, seq, meta_size, meta_mtime, meta_ino, item, timestamp, damage, missing)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
          id,
          r.inc.name,
          r.inc.time,
          r.inc.name_time,
          seq,
          r.stamp.0,
          r.stamp.1,
          r.stamp.2,
          serde_json::to_string(&r.item).unwrap_or_default(),
          r.timestamp,
          r.damage.as_ref().and_then(|d| serde_json::to_string(d).ok()),
          r.missing,
        ],
      )
      .map_err(e)?;
    for row in r.rows {
      let pid = pids.id(conn, &row.path).map_err(e)?;
      all.push((pid, id, row));
    }
  }
  pids.flush(conn).map_err(e)?;
  let mut excl_delta: HashMap<i64, i64> = HashMap::new();
  if one_appended {
    let mut prev =
      conn.prepare_cached("SELECT inc, size, deleted FROM entries WHERE path = ?1 AND inc < ?2 ORDER BY inc DESC LIMIT 1").map_err(e)?;
    for (pid, inc, row) in &all {
      let p: Option<(i64, i64, bool)> =
        prev.query_row(params![pid, inc], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional().map_err(e)?;
      match (row.deleted, p) {
        (false, Some((pi, ps, false))) => *excl_delta.entry(pi).or_default() += ps,
        (true, None) | (true, Some((_, _, true))) => *excl_delta.entry(*inc).or_default() += row.size,
        _ => {}
      }
    }
  }
  all.sort_unstable_by_key(|(p, i, _)| (*p, *i));
  {
    let mut st = conn
      .prepare_cached(
        "INSERT OR REPLACE INTO entries(path, inc, size, mtime, mtime_ns, mode, kind, deleted, op, sha256, stored, extra)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
      )
      .map_err(e)?;
    for (pid, inc, r) in &all {
      st.execute(params![pid, inc, r.size, r.mtime, r.mtime_ns, r.mode, r.kind, r.deleted, r.op, r.sha256, r.stored, r.extra])
        .map_err(e)?;
    }
  }
  let added = !all.is_empty();
  drop(all);
  if one_appended {
    for (id, d) in excl_delta {
      conn.execute("UPDATE increments SET excl = excl + ?2 WHERE id = ?1", params![id, d]).map_err(e)?;
    }
  } else if added || !p.remove.is_empty() {
    recompute_excl(conn).map_err(e)?;
  }
  if !p.mirror_fresh {
    conn.execute("DELETE FROM mirror", []).map_err(e)?;
    let mut held = mstamp.clone().unwrap_or_default();
    if mstamp.is_some() {
      // A state that cannot be read is not indexed: mirror questions then
      // read it directly and get its error, while the catalogs stay indexed.
      let state = match crate::backup::adopt::read_state(&l, false) {
        Ok((s, _)) => s,
        Err(_) => {
          held.push_str(UNREADABLE);
          Vec::new()
        }
      };
      let mut pids = PathIds::new(conn, true).map_err(e)?;
      let mut st = conn
        .prepare_cached(
          "INSERT OR REPLACE INTO mirror(path, size, mtime_ns, mode, kind, tracked, sha256, link) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(e)?;
      for s in &state {
        let pid = pids.id(conn, s.rel()).map_err(e)?;
        st.execute(params![pid, s.size as i64, s.mtime_ns, s.mode as i64, kind_num(s.kind), s.tracked, s.sha().map(hex::encode), s.link()])
          .map_err(e)?;
      }
      drop(st);
      pids.flush(conn).map_err(e)?;
    }
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('mirror', ?1)", [held]).map_err(e)?;
  }
  Ok(())
}

/// A file of a tree from the mirror state.
fn mirror_file(m: MirrorRow) -> TreeFile {
  TreeFile {
    size: m.size,
    mtime_ns: m.mtime_ns.to_string(),
    mode: m.mode,
    kind: m.kind,
    sha256: m.sha256,
    from: "mirror".into(),
    untracked: !m.tracked,
    op: None,
    link: m.link,
  }
}

/// A file of a tree from the version increment `inc` holds.
fn version_file(inc: String, en: CatalogEntry) -> TreeFile {
  TreeFile {
    size: en.size,
    mtime_ns: en.mtime_ns,
    mode: en.mode,
    kind: en.kind,
    sha256: en.sha256,
    from: inc,
    untracked: false,
    op: Some(en.op),
    link: en.link,
  }
}

#[derive(Debug, Clone)]
struct MirrorRow {
  size: u64,
  mtime_ns: i64,
  mode: u32,
  kind: Kind,
  tracked: bool,
  sha256: Option<String>,
  link: Option<String>,
}

/// Whether `path` is under one of `paths` (folder prefixes; none = all).
fn keeper(paths: &[String]) -> impl Fn(&str) -> bool + Sync + '_ {
  move |p: &str| paths.is_empty() || paths.iter().any(|w| catalog::prefix_match(p, w.trim_start_matches("./").trim_end_matches('/')))
}

/// The bytes only one increment holds, from the catalogs: a stored version
/// (`track`) is the mirror's inode until the path's next mention; when that
/// mention is a new version, nothing else links it (only this increment
/// holds it); when it is a deletion, that increment's `deleted/` links it
/// too. A deletion's `deleted/` file is held only there when no earlier
/// increment stored that version. Hard-link groups and pruned history can
/// make the real figure differ; `backup list --detailed` counts inodes.
fn recompute_excl(conn: &Connection) -> rusqlite::Result<()> {
  conn.execute("UPDATE increments SET excl = 0", [])?;
  conn.execute(
    "UPDATE increments SET excl = x.bytes FROM (
       SELECT inc, SUM(size) AS bytes FROM (
         SELECT inc, size, deleted,
                LAG(deleted) OVER w AS pd, LEAD(deleted) OVER w AS nd, LEAD(inc) OVER w AS ni, LAG(inc) OVER w AS pi
         FROM entries WINDOW w AS (PARTITION BY path ORDER BY inc))
       WHERE (deleted = 0 AND ni IS NOT NULL AND nd = 0) OR (deleted = 1 AND (pi IS NULL OR pd = 1))
       GROUP BY inc) AS x
     WHERE increments.id = x.inc",
    [],
  )?;
  Ok(())
}

/// One file of a folder at a point in time.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TreeFile {
  pub size: u64,
  pub mtime_ns: String,
  pub mode: u32,
  pub kind: Kind,
  pub sha256: Option<String>,
  /// The increment the version comes from, or `mirror`.
  pub from: String,
  /// Untracked: the mirror's current copy (no history is kept).
  pub untracked: bool,
  /// `new` or `changed` for a version from an increment; null from the mirror.
  pub op: Option<String>,
  /// A hard-link group's later member: the group's first path.
  pub link: Option<String>,
}

/// One name in a folder: a file, a folder (`dir`), or both when a file of
/// a name was replaced by a folder of that name (two entries).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TreeEntry {
  pub name: String,
  pub path: String,
  pub dir: bool,
  #[serde(flatten)]
  pub file: Option<TreeFile>,
}

/// A folder at a point in time.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tree {
  pub path: String,
  /// The increment of the point in time, or null for the latest state.
  pub at: Option<String>,
  pub entries: Vec<TreeEntry>,
}

/// One side of a changed path in a diff.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiffSide {
  /// The increment holding this version.
  pub increment: String,
  pub size: u64,
  pub sha256: Option<String>,
  pub mtime_ns: String,
  pub mode: u32,
  pub kind: Kind,
}

/// A path that differs between the two points.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiffItem {
  pub path: String,
  /// `added`, `removed` or `changed`.
  pub status: String,
  pub from: Option<DiffSide>,
  pub to: Option<DiffSide>,
}

/// `backup diff`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
  pub from: String,
  pub to: String,
  pub added: u64,
  pub removed: u64,
  pub changed: u64,
  /// Bytes of the added files, of the removed ones, and the change in
  /// bytes of the changed ones (to minus from).
  pub added_bytes: u64,
  pub removed_bytes: u64,
  pub changed_bytes: i64,
  /// Sorted by path.
  pub items: Vec<DiffItem>,
}

/// A path's version at one point: (the increment holding it, its entry), or absent.
type Side = Option<(String, CatalogEntry)>;

fn make_diff(_dst: &Path, from: &str, to: &str, rows: Vec<(String, Side, Side)>) -> Diff {
  let side = |(inc, e): (String, CatalogEntry)| DiffSide {
    increment: inc,
    size: e.size,
    sha256: e.sha256,
    mtime_ns: e.mtime_ns,
    mode: e.mode,
    kind: e.kind,
  };
  let mut d = Diff {
    from: from.into(),
    to: to.into(),
    added: 0,
    removed: 0,
    changed: 0,
    added_bytes: 0,
    removed_bytes: 0,
    changed_bytes: 0,
    items: Vec::new(),
  };
  for (path, a, b) in rows {
    let same = match (&a, &b) {
      (Some((ia, ea)), Some((ib, eb))) => ia == ib || ea == eb,
      (None, None) => true,
      _ => false,
    };
    if same {
      continue;
    }
    let status = match (&a, &b) {
      (None, Some((_, e))) => {
        d.added += 1;
        d.added_bytes += e.size;
        "added"
      }
      (Some((_, e)), None) => {
        d.removed += 1;
        d.removed_bytes += e.size;
        "removed"
      }
      (Some((_, x)), Some((_, y))) => {
        d.changed += 1;
        d.changed_bytes += y.size as i64 - x.size as i64;
        "changed"
      }
      (None, None) => unreachable!(),
    };
    d.items.push(DiffItem { path, status: status.into(), from: a.map(side), to: b.map(side) });
  }
  d.items.sort_by(|x, y| x.path.cmp(&y.path));
  d
}

/// `backup diff` without the index: the two points from every catalog, as
/// restore reads them ([`catalog::newest_mentions`]).
pub fn diff_direct(dst: &Path, from: &str, to: &str, paths: &[String]) -> Result<Diff, Error> {
  let incs = increments::list(dst)?;
  let pos = |n: &str| {
    incs
      .iter()
      .position(|i| i.name == n)
      .ok_or_else(|| Error::config(format!("there is no increment {n:?} in {}; see `backup list`", dst.display())))
  };
  let (a, b) = (pos(from)?, pos(to)?);
  let keep = keeper(paths);
  let ma = catalog::newest_mentions(&incs[..=a], &keep)?;
  let mb = catalog::newest_mentions(&incs[..=b], &keep)?;
  let live = |m: &HashMap<String, (usize, CatalogEntry)>, p: &str| {
    m.get(p).filter(|(_, e)| e.category != "deleted").map(|(i, e)| (incs[*i].name.clone(), e.clone()))
  };
  let mut all: Vec<&String> = ma.keys().chain(mb.keys()).collect();
  all.sort();
  all.dedup();
  let rows = all.into_iter().map(|p| (p.clone(), live(&ma, p), live(&mb, p))).collect();
  Ok(make_diff(dst, from, to, rows))
}

/// `backup diff`: through the index when it can be used.
pub fn diff(dst: &Path, from: &str, to: &str, paths: &[String]) -> Result<Diff, Error> {
  with(dst, |ix| ix.diff(from, to, paths)).unwrap_or_else(|| diff_direct(dst, from, to, paths))
}

/// The timeline (see [`Index::timeline`]); without the index, `list`
/// without the exclusive bytes.
pub fn timeline(dst: &Path) -> Result<Listing, Error> {
  with(dst, |ix| ix.timeline()).unwrap_or_else(|| catalog::list_direct(dst, false))
}

/// A folder at a point in time (see [`Index::tree`]); without a usable
/// index, from every catalog.
pub fn tree(dst: &Path, path: &str, at: Option<&str>) -> Result<Tree, Error> {
  with(dst, |ix| ix.tree(path, at)).unwrap_or_else(|| tree_direct(dst, path, at))
}

/// The same answer as [`Index::tree`], from the catalogs and the state
/// (the definition the tests compare the index with).
pub fn tree_direct(dst: &Path, path: &str, at: Option<&str>) -> Result<Tree, Error> {
  let path = path.trim_start_matches("./").trim_matches('/').to_string();
  let l = Layout::new(dst);
  let under = |p: &str| path.is_empty() || p.starts_with(&format!("{path}/"));
  let (state, _) = crate::backup::adopt::read_state(&l, false)?;
  // Every file at the point: path → file.
  let mut files: HashMap<String, TreeFile> = HashMap::new();
  let mirror_file = |s: &crate::backup::state::StateEntry| TreeFile {
    size: s.size,
    mtime_ns: s.mtime_ns.to_string(),
    mode: s.mode,
    kind: s.kind,
    sha256: s.sha().map(hex::encode),
    from: "mirror".into(),
    untracked: !s.tracked,
    op: None,
    link: s.link().map(str::to_string),
  };
  match at {
    None => {
      for s in state.iter().filter(|s| under(s.rel())) {
        files.insert(s.rel().to_string(), mirror_file(s));
      }
    }
    Some(name) => {
      let incs = increments::list(dst)?;
      let Some(k) = incs.iter().position(|i| i.name == name) else {
        return Err(Error::config(format!("there is no increment {name:?} in {}; see `backup list`", dst.display())));
      };
      let m = catalog::newest_mentions(&incs[..=k], &|p: &str| under(p))?;
      for (p, (i, e)) in &m {
        if e.category != "deleted" {
          files.insert(
            p.clone(),
            TreeFile {
              size: e.size,
              mtime_ns: e.mtime_ns.clone(),
              mode: e.mode,
              kind: e.kind,
              sha256: e.sha256.clone(),
              from: incs[*i].name.clone(),
              untracked: false,
              op: Some(e.op.clone()),
              link: e.link.clone(),
            },
          );
        }
      }
      for s in state.iter().filter(|s| !s.tracked && under(s.rel()) && !m.contains_key(s.rel())) {
        files.insert(s.rel().to_string(), mirror_file(s));
      }
    }
  }
  let mut tree = Tree { path: path.clone(), at: at.map(str::to_string), entries: Vec::new() };
  let mut dirs: HashSet<String> = HashSet::new();
  let cut = if path.is_empty() { 0 } else { path.len() + 1 };
  for (p, f) in files {
    let rest = &p[cut..];
    match rest.find('/') {
      None => tree.entries.push(TreeEntry { name: rest.to_string(), path: p.clone(), dir: false, file: Some(f) }),
      Some(i) => {
        dirs.insert(rest[..i].to_string());
      }
    }
  }
  for d in dirs {
    let p = if path.is_empty() { d.clone() } else { format!("{path}/{d}") };
    tree.entries.push(TreeEntry { name: d, path: p, dir: true, file: None });
  }
  tree.entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.dir.cmp(&b.dir)));
  Ok(tree)
}

/// After a command changed the increments or the state (`run`, `prune`,
/// `delete`, `recreate`): brings an existing index up to date. A missing
/// one is left to the first reader (built on first use). Never fails the
/// command: a problem comes back as an `index-not-updated` warning (the
/// next reader sees the index is stale and updates or rebuilds it).
pub fn update(dst: &Path) -> Option<Warning> {
  let l = Layout::new(dst);
  if disabled() || !l.index.exists() {
    return None;
  }
  match Index::open(dst) {
    Ok(_) => None,
    Err(e) => Some(Warning::new(
      format!("{}/{}", crate::layout::META_DIR, crate::layout::INDEX_FILE),
      "index-not-updated",
      format!("{}; the next command that reads the backup rebuilds it", e.message),
    )),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn meta(name: &str, entries: &[(&str, u64, &str)]) -> String {
    let cat: Vec<String> = entries
      .iter()
      .map(|(p, size, cat)| {
        let op = if *cat == "deleted" { "deleted" } else { "changed" };
        format!(r#""{p}": {{"size": {size}, "mtime": 1.5, "mtime_ns": "1500000000", "mode": 420, "kind": "file", "category": "{cat}", "op": "{op}", "sha256": "{size:064}", "stored_as": "hardlink"}}"#)
      })
      .collect();
    format!(
      "{{\n  \"version\": 1,\n  \"backup_name\": \"{name}\",\n  \"timestamp\": \"\",\n  \"origin\": \"run\",\n  \"summary\": {{\"total\": {}}},\n  \"file_catalog\": {{\n    {}\n  }}\n}}\n",
      entries.len(),
      cat.join(",\n    ")
    )
  }

  fn write_inc(dst: &Path, name: &str, entries: &[(&str, u64, &str)]) {
    let d = dst.join(name);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join(format!("{name}.json")), meta(name, entries)).unwrap();
  }

  fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("mirror")).unwrap();
    fs::create_dir_all(t.path().join(".axiomatic")).unwrap();
    crate::backup::state::write(&t.path().join(".axiomatic/state.jsonl"), 0, std::iter::empty()).unwrap();
    write_inc(t.path(), "backup_20260101_000000", &[("a/x", 1, "track"), ("a/y", 2, "track"), ("b", 3, "track")]);
    write_inc(t.path(), "backup_20260102_000000", &[("a/x", 10, "track"), ("b", 3, "deleted")]);
    t
  }

  #[test]
  fn builds_updates_and_answers_as_the_catalogs() {
    let t = setup();
    let dst = t.path();
    let ix = Index::open(dst).unwrap();
    let names = |tr: Tree| tr.entries.iter().map(|e| (e.name.clone(), e.dir)).collect::<Vec<_>>();
    assert_eq!(names(ix.tree("", Some("backup_20260101_000000")).unwrap()), vec![("a".into(), true), ("b".into(), false)]);
    assert_eq!(names(ix.tree("", Some("backup_20260102_000000")).unwrap()), vec![("a".into(), true)]);
    assert_eq!(ix.tree("", Some("backup_20260102_000000")).unwrap(), tree_direct(dst, "", Some("backup_20260102_000000")).unwrap());
    assert_eq!(ix.tree("a", Some("backup_20260101_000000")).unwrap(), tree_direct(dst, "a", Some("backup_20260101_000000")).unwrap());
    let d = ix.diff("backup_20260101_000000", "backup_20260102_000000", &[]).unwrap();
    assert_eq!((d.added, d.removed, d.changed), (0, 1, 1));
    assert_eq!(d, diff_direct(dst, "backup_20260101_000000", "backup_20260102_000000", &[]).unwrap());
    // Exclusive bytes: a/x's first version (1 byte) is replaced: only the first holds it.
    let tl = ix.timeline().unwrap();
    assert_eq!(tl.increments.iter().map(|i| i.exclusive_bytes).collect::<Vec<_>>(), vec![Some(1), Some(0)]);
    drop(ix);
    // An increment added behind its back: added incrementally, deltas kept.
    write_inc(dst, "backup_20260103_000000", &[("a/y", 5, "track"), ("b", 4, "track")]);
    let ix = Index::open(dst).unwrap();
    let tl = ix.timeline().unwrap();
    assert_eq!(tl.increments.iter().map(|i| i.exclusive_bytes).collect::<Vec<_>>(), vec![Some(3), Some(0), Some(0)]);
    let n: i64 = ix.conn.query_row("SELECT COUNT(*) FROM increments", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 3);
    // The same figures from a full recompute.
    recompute_excl(&ix.conn).unwrap();
    assert_eq!(ix.timeline().unwrap().increments.iter().map(|i| i.exclusive_bytes).collect::<Vec<_>>(), vec![Some(3), Some(0), Some(0)]);
    assert_eq!(ix.history("a/y").unwrap().versions.len(), 2);
    drop(ix);
    // Removed behind its back.
    fs::remove_dir_all(dst.join("backup_20260102_000000")).unwrap();
    let ix = Index::open(dst).unwrap();
    assert_eq!(ix.list().unwrap().increments.len(), 2);
    assert_eq!(ix.history("a/x").unwrap().versions.len(), 1);
    drop(ix);
    // An older increment appears: rebuilt (ids are the order).
    write_inc(dst, "backup_20251231_000000", &[("z", 1, "track")]);
    let ix = Index::open(dst).unwrap();
    assert_eq!(ix.list().unwrap().increments[0].name, "backup_20251231_000000");
  }

  /// Both search plans (the searched increments' rows when they are few,
  /// else each matching path's entries) answer as the catalogs do.
  #[test]
  fn search_plans_answer_as_the_catalogs() {
    let t = setup();
    let dst = t.path();
    let many: Vec<(String, u64, &str)> = (0..60).map(|i| (format!("m/f{i}.txt"), i, "track")).collect();
    let many: Vec<(&str, u64, &str)> = many.iter().map(|(p, n, c)| (p.as_str(), *n, *c)).collect();
    write_inc(dst, "backup_20260103_000000", &many);
    write_inc(dst, "backup_20260104_000000", &[("m/f1.txt", 100, "track"), ("a/y", 7, "deleted")]);
    let ix = Index::open(dst).unwrap();
    let as_json = |f: Found| serde_json::to_value(f).unwrap();
    for (masks, last) in [
      (vec![], Some(1)),
      (vec!["*.txt".to_string()], Some(1)),
      (vec!["*1*".to_string()], Some(2)),
      (vec![], None),
      (vec!["*.txt".to_string()], Some(3)),
    ] {
      let filter = SearchFilter { masks, last, ..Default::default() };
      assert_eq!(as_json(ix.search(filter.clone()).unwrap()), as_json(catalog::search_direct(dst, filter.clone()).unwrap()), "{filter:?}");
    }
  }

  #[test]
  fn damaged_or_foreign_index_is_rebuilt() {
    let t = setup();
    let dst = t.path();
    drop(Index::open(dst).unwrap());
    let file = Layout::new(dst).index;
    // A dead build's temp file goes with the next build.
    let dead = dst.join(".axiomatic/index.sqlite.tmp999999999");
    fs::write(&dead, b"half").unwrap();
    fs::write(&file, b"garbage, not a database at all........................................................").unwrap();
    let ix = Index::open(dst).unwrap();
    assert!(!dead.exists());
    assert_eq!(ix.list().unwrap().increments.len(), 2);
    ix.conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema'", []).unwrap();
    drop(ix);
    let ix = Index::open(dst).unwrap();
    let v: i64 = ix.conn.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0)).unwrap();
    assert_eq!(v, SCHEMA_VERSION);
  }

  #[test]
  fn update_leaves_a_missing_index_to_the_first_reader() {
    let t = setup();
    assert!(update(t.path()).is_none());
    assert!(!Layout::new(t.path()).index.exists());
    drop(Index::open(t.path()).unwrap());
    write_inc(t.path(), "backup_20260105_000000", &[("q", 1, "track")]);
    assert!(update(t.path()).is_none());
    let ix = Index::open(t.path()).unwrap();
    assert_eq!(ix.list().unwrap().increments.len(), 3);
  }
}
