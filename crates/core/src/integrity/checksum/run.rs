//! A checksum run: the parallel walk of a folder (the shared walker,
//! `fs::walk`) and every file hashed with several algorithms in one read.
//!
//! The walk and the hashing overlap: the walker's visitors hand each file
//! they find to a bounded queue ([`Queue`]) that the hashing threads drain
//! from the first file on, largest first among those found so far (a big
//! file found early does not end up alone at the tail). The report's order
//! (largest first, then by path) is a property of the written list: once
//! the walk has ended, the writer sorts what it found and streams the report
//! in that order while the hashers go on, taking each digest as it comes
//! (`report_write`).

use std::collections::BinaryHeap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use super::algo::{Algo, Multi};
use super::batch::{self, Batch};
use super::report_write::{write_sums, Arrival, Format, Head, Sums, Written};
use super::table::Files;
use crate::error::Error;
use crate::fs::util;
use crate::fs::walk::{self, Dir, WalkError};
use crate::progress::timing;
use crate::progress::{Phase, Progress};

/// One walked entry.
#[derive(Debug, Clone)]
pub struct Found {
  pub rel: Box<str>,
  pub size: u64,
  pub mtime_ns: i64,
  pub ctime_ns: i64,
  pub ino: u64,
  /// A symlink's target (recorded, never followed).
  pub link: Option<Box<str>>,
}

/// What the checksum walk gathers on one pool thread: the files it finds
/// (kept, or handed to the hashers' queue) and the errors.
struct Gather<'a> {
  found: Vec<Found>,
  /// With a queue: the walk id of each of `found` (the hashers answer by id).
  ids: Vec<u32>,
  /// `walk_compact`: the files go here instead of `found`.
  table: Option<Files>,
  queue: Option<(&'a Queue, &'a AtomicU32)>,
  /// The handle of the folder being visited (its relative path), shared
  /// by the files of it in the queue.
  dir: Option<(String, Arc<DirFd>)>,
  errors: Vec<(String, String)>,
  progress: &'a Progress,
}

impl walk::Visitor for Gather<'_> {
  type Ctx = ();

  fn entry(&mut self, dir: &Dir<'_, ()>, e: &walk::Entry<'_>) -> Option<()> {
    // Reports hold UTF-8 paths that `sha256sum -c` and the original checker can open.
    if e.name().to_str().is_none() {
      let lossy = e.name().to_string_lossy();
      let rel = if dir.rel.is_empty() { lossy.into_owned() } else { format!("{}/{lossy}", dir.rel) };
      self.errors.push((rel, "the name is not valid UTF-8; skipped".into()));
      return None;
    }
    if e.is_dir() {
      return Some(());
    }
    let ft = e.file_type();
    if !(ft.is_file() || ft.is_symlink()) {
      return None;
    }
    let md = match e.metadata() {
      Ok(m) => m,
      Err(err) => {
        walk::Visitor::error(self, err);
        return None;
      }
    };
    let link = if ft.is_symlink() {
      crate::fs::longpath::with(&e.path(), |p| fs::read_link(p)).ok().map(|t| t.to_string_lossy().into())
    } else {
      None
    };
    self.progress.files_scanned.fetch_add(1, Relaxed);
    self.progress.bytes_scanned.fetch_add(if link.is_some() { 0 } else { md.len() }, Relaxed);
    // Every name on the way is UTF-8 (checked on the way down), so the path
    // is the one on disk; only a real U+10FF80.. character was escaped.
    let decoded;
    let rel: &str = if crate::fs::names::has_escapes(e.rel()) {
      decoded = String::from_utf8_lossy(&crate::fs::names::decode_bytes(e.rel())).into_owned();
      &decoded
    } else {
      e.rel()
    };
    if let Some(t) = &mut self.table {
      t.push_found(rel, md.len(), util::mtime_ns(&md), md.ctime() * 1_000_000_000 + md.ctime_nsec(), md.ino(), link);
      return None;
    }
    let f = Found {
      rel: rel.into(),
      size: md.len(),
      mtime_ns: util::mtime_ns(&md),
      ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
      ino: md.ino(),
      link,
    };
    match self.queue {
      Some((q, next_id)) => {
        self.progress.ops_total.fetch_add(1, Relaxed);
        self.progress.bytes_total.fetch_add(if f.link.is_some() { 0 } else { f.size }, Relaxed);
        let dir = if f.link.is_some() {
          None
        } else {
          match &self.dir {
            Some((rel, d)) if rel == dir.rel => Some(d.clone()),
            _ => {
              let d = DirFd::open(dir.path).map(Arc::new);
              self.dir = d.clone().map(|d| (dir.rel.to_string(), d));
              d
            }
          }
        };
        let id = next_id.fetch_add(1, Relaxed);
        q.push(f.clone(), id, dir);
        self.found.push(f);
        self.ids.push(id);
      }
      None => self.found.push(f),
    }
    None
  }

  fn error(&mut self, err: WalkError) {
    let rel = if err.rel.is_empty() { ".".to_string() } else { err.rel };
    self.errors.push((rel, err.err.to_string()));
  }
}

/// Walks `root` in parallel (the shared walker, on the current rayon
/// pool): files and symlinks (relative paths), and the errors of what
/// could not be read, each with its path (`.` for the root). The tests'
/// sequential reference; `verify` walks into a compact table
/// ([`walk_compact`]), `checksum` hands files to its hashers.
#[cfg(test)]
pub(crate) fn walk(root: &Path, progress: &Progress) -> (Vec<Found>, Vec<(String, String)>) {
  let parts = walk::walk(root, (), || Gather {
    found: Vec::new(),
    ids: Vec::new(),
    table: None,
    queue: None,
    dir: None,
    errors: Vec::new(),
    progress,
  });
  let mut found = Vec::with_capacity(parts.iter().map(|p| p.found.len()).sum());
  let mut errors = Vec::new();
  for p in parts {
    found.extend(p.found);
    errors.extend(p.errors);
  }
  (found, errors)
}

/// [`walk`] into one compact [`Files`] (`verify`: a million walked files
/// cost 40 bytes each plus their path, not a `Found` and a path allocation).
pub fn walk_compact(root: &Path, progress: &Progress) -> (Files, Vec<(String, String)>) {
  let parts = walk::walk(root, (), || Gather {
    found: Vec::new(),
    ids: Vec::new(),
    table: Some(Files::default()),
    queue: None,
    dir: None,
    errors: Vec::new(),
    progress,
  });
  let mut parts: Vec<Gather> = parts;
  // The largest part is the base (the others are copied onto it and freed one by one).
  parts.sort_by_key(|p| std::cmp::Reverse(p.table.as_ref().map_or(0, Files::len)));
  let mut files = Files::default();
  let mut errors = Vec::new();
  for (k, p) in parts.into_iter().enumerate() {
    let t = p.table.unwrap_or_default();
    if k == 0 {
      files = t;
    } else {
      files.append(t);
    }
    errors.extend(p.errors);
  }
  (files, errors)
}

/// Files from this size on are read in bigger chunks, and BLAKE3 hashes
/// each chunk on every thread of the pool (`update_rayon`): one large file
/// keeps all cores busy. Below it the split costs more than it saves.
const LARGE: u64 = 8 << 20;
/// The chunk of a large file's reads (BLAKE3 gains from 128 KiB a side).
const LARGE_CHUNK: usize = 2 << 20;

/// Hashes one file with every algorithm in one read; fails if the file
/// changed while it was read. Opened through a directory handle when the
/// path is longer than `PATH_MAX` (the walk reaches such files). A large
/// file's BLAKE3 runs on every thread of the current rayon pool.
pub fn hash_file(path: &Path, algos: &[Algo], progress: &Progress) -> io::Result<(Box<[u8]>, fs::Metadata)> {
  let mut f = open_nofollow(path)?;
  let before = f.metadata()?;
  let digest = read_hash(&mut f, u64::MAX, before.len(), algos, progress)?;
  check_unchanged(&f, &before)?;
  Ok((digest, before))
}

/// After the read of a file opened by path: it still has the size and
/// mtime it had when opened.
pub(super) fn check_unchanged(f: &fs::File, before: &fs::Metadata) -> io::Result<()> {
  let after = f.metadata()?;
  if after.len() != before.len() || util::mtime_ns(&after) != util::mtime_ns(before) {
    return Err(io::Error::other("the file changed while it was read"));
  }
  Ok(())
}

/// Hashes a file the walk found, against the walk's `lstat`: the digest
/// is of the size, mtime and inode the report records, or the file is an
/// error ("changed"). One `fstat` after the read, none before, and no
/// read past the size: the `fstat` sees any change.
fn hash_found(root: &Path, found: &Found, dir: Option<&DirFd>, algos: &[Algo], progress: &Progress) -> io::Result<Box<[u8]>> {
  let mut f = open_found(root, found, dir)?;
  let digest = read_hash(&mut f, found.size, found.size, algos, progress)?;
  check_found(&f, found)?;
  Ok(digest)
}

/// Opens a file the walk found: by name in its folder's handle when there
/// is one, else by path; never following a symlink.
fn open_found(root: &Path, found: &Found, dir: Option<&DirFd>) -> io::Result<fs::File> {
  match dir {
    Some(d) => d.open_file(&found.rel[found.rel.rfind('/').map_or(0, |i| i + 1)..]),
    None => open_nofollow(&root.join(&*found.rel)),
  }
}

/// After the read: the open file still has the walk's size, mtime and inode.
fn check_found(f: &fs::File, found: &Found) -> io::Result<()> {
  let after = f.metadata()?;
  if after.len() != found.size || util::mtime_ns(&after) != found.mtime_ns || after.ino() != found.ino {
    return Err(io::Error::other("the file changed while it was read (size, mtime or inode differ from the walk's)"));
  }
  Ok(())
}

/// Open folder handles (`O_PATH`), at most [`DIR_FDS`] at a time.
static LIVE_DIR_FDS: AtomicUsize = AtomicUsize::new(0);
const DIR_FDS: usize = 256;

/// A folder's `O_PATH` handle, so its files are opened by name
/// (`openat`: one lookup, not one per component of the full path; on a
/// machine whose dentry cache holds millions of names each lookup costs).
pub(crate) struct DirFd(std::os::fd::OwnedFd);

impl DirFd {
  /// None when [`DIR_FDS`] are open (their files are opened by path).
  fn open(path: &Path) -> Option<DirFd> {
    if LIVE_DIR_FDS.fetch_add(1, Relaxed) >= DIR_FDS {
      LIVE_DIR_FDS.fetch_sub(1, Relaxed);
      return None;
    }
    let fd = crate::fs::longpath::with(path, |p| OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(p));
    match fd {
      Ok(f) => Some(DirFd(f.into())),
      Err(_) => {
        LIVE_DIR_FDS.fetch_sub(1, Relaxed);
        None
      }
    }
  }

  /// Opens the file `name` of this folder for reading, never following a symlink.
  fn open_file(&self, name: &str) -> io::Result<fs::File> {
    crate::fs::longpath::open_file_at(&self.0, std::ffi::OsStr::new(name))
  }
}

impl Drop for DirFd {
  fn drop(&mut self) {
    LIVE_DIR_FDS.fetch_sub(1, Relaxed);
  }
}

pub(super) fn open_nofollow(path: &Path) -> io::Result<fs::File> {
  crate::fs::longpath::with(path, |p| OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(p))
}

/// Reads `f` to its end, or until `limit` bytes are read, through every
/// algorithm. `size` (the expected size) picks the way: from [`LARGE`] on,
/// 2 MiB chunks and BLAKE3 split over the pool.
fn read_hash(f: &mut fs::File, limit: u64, size: u64, algos: &[Algo], progress: &Progress) -> io::Result<Box<[u8]>> {
  let mut h = Multi::new(algos);
  let split = size >= LARGE && algos.contains(&Algo::Blake3);
  let mut read_all = |buf: &mut [u8]| -> io::Result<()> {
    let mut total = 0u64;
    while total < limit {
      let n = match f.read(buf) {
        Ok(0) => break,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
        Err(e) => return Err(e),
      };
      total += n as u64;
      if split {
        h.update_par(&buf[..n]);
      } else {
        h.update(&buf[..n]);
      }
      progress.bytes_done.fetch_add(n as u64, Relaxed);
    }
    Ok(())
  };
  if split {
    // One allocation per large file: nothing next to its read and hash.
    read_all(&mut vec![0u8; LARGE_CHUNK])?;
  } else {
    util::with_buf(read_all)?;
  }
  Ok(h.finish_raw())
}

/// The walk's hand-over to the hashers: a bounded queue that gives out the
/// largest file found so far (several threads) or the one with the lowest
/// inode (one thread: the usual on-disk order, kinder to spinning disks;
/// the walk runs ahead, so it is mostly the order of the whole tree).
/// Bounded so the walk cannot run arbitrarily far ahead; a full queue
/// makes the walker wait.
pub(crate) struct Queue {
  state: Mutex<QueueState>,
  /// Signalled on push and on close.
  ready: Condvar,
  /// Signalled on pop and when the last hasher leaves.
  room: Condvar,
  cap: usize,
  largest_first: bool,
}

struct QueueState {
  /// (priority, slot in `slots`): the heap gives out the highest.
  heap: BinaryHeap<(u64, u32)>,
  slots: Vec<Option<Queued>>,
  free: Vec<u32>,
  /// Hashers waiting in `pop`, walker threads waiting in `push`: a
  /// condition variable is signalled only when someone waits on it (std's
  /// `notify_one` is a `futex` call each time: two per file otherwise).
  idle_takers: usize,
  idle_pushers: usize,
  /// The walk has ended: nothing more will come.
  closed: bool,
  /// Hashers still taking files; at 0 (all gone, e.g. after a panic) a
  /// push no longer waits, so the walk cannot hang.
  takers: usize,
}

/// A queued file: its walk id and folder handle. The heap orders only
/// `(priority, slot)` pairs (16 bytes, not the whole record: popping sifts
/// through ~16 levels of a full heap, and moving 90-byte records there was
/// a few percent of a run).
type Queued = (Found, u32, Option<Arc<DirFd>>);

impl Queue {
  pub(crate) fn new(cap: usize, takers: usize, largest_first: bool) -> Self {
    Queue {
      state: Mutex::new(QueueState {
        heap: BinaryHeap::new(),
        slots: Vec::new(),
        free: Vec::new(),
        idle_takers: 0,
        idle_pushers: 0,
        closed: false,
        takers,
      }),
      ready: Condvar::new(),
      room: Condvar::new(),
      cap: cap.max(1),
      largest_first,
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
    self.state.lock().unwrap_or_else(|p| p.into_inner())
  }

  /// Adds a found file, waiting while the queue is full.
  pub(crate) fn push(&self, f: Found, id: u32, dir: Option<Arc<DirFd>>) {
    let mut st = self.lock();
    while st.heap.len() >= self.cap && st.takers > 0 {
      st.idle_pushers += 1;
      st = self.room.wait(st).unwrap_or_else(|p| p.into_inner());
      st.idle_pushers -= 1;
    }
    if st.takers == 0 {
      return;
    }
    // Symlinks cost nothing to hash: they rank as empty files.
    let prio = if self.largest_first { f.link.as_ref().map_or(f.size, |_| 0) } else { u64::MAX - f.ino };
    let slot = match st.free.pop() {
      Some(i) => {
        st.slots[i as usize] = Some((f, id, dir));
        i
      }
      None => {
        st.slots.push(Some((f, id, dir)));
        (st.slots.len() - 1) as u32
      }
    };
    st.heap.push((prio, slot));
    let wake = st.idle_takers > 0;
    drop(st);
    if wake {
      self.ready.notify_one();
    }
  }

  /// The next file to hash; None once the walk has ended and all are taken.
  pub(crate) fn pop(&self) -> Option<(Found, u32, Option<Arc<DirFd>>)> {
    self.take(true)
  }

  /// The next file to hash if one is queued now; None otherwise (the walk
  /// may still find more: [`Queue::pop`] tells).
  pub(crate) fn pop_now(&self) -> Option<(Found, u32, Option<Arc<DirFd>>)> {
    self.take(false)
  }

  fn take(&self, wait: bool) -> Option<(Found, u32, Option<Arc<DirFd>>)> {
    let mut st = self.lock();
    loop {
      if let Some((_, slot)) = st.heap.pop() {
        let (f, id, dir) = st.slots[slot as usize].take().expect("a queued slot holds its file");
        st.free.push(slot);
        let wake = st.idle_pushers > 0;
        drop(st);
        if wake {
          self.room.notify_one();
        }
        return Some((f, id, dir));
      }
      if st.closed || !wait {
        return None;
      }
      st.idle_takers += 1;
      st = self.ready.wait(st).unwrap_or_else(|p| p.into_inner());
      st.idle_takers -= 1;
    }
  }

  /// The walk has ended.
  pub(crate) fn close(&self) {
    self.lock().closed = true;
    self.ready.notify_all();
  }

  /// A hasher leaves (also when it unwinds): the last one unblocks the walk.
  fn leave(&self) {
    let mut st = self.lock();
    st.takers -= 1;
    if st.takers == 0 {
      st.heap.clear();
      st.slots.clear();
      st.free.clear();
    }
    drop(st);
    self.room.notify_all();
  }
}

/// Calls [`Queue::leave`] when a hasher ends, however it ends.
struct Leave<'a>(&'a Queue);

impl Drop for Leave<'_> {
  fn drop(&mut self) {
    self.0.leave();
  }
}

/// Digests of symlinks: of the target text (as `sha256sum` of the link
/// would not; recorded so a changed target is seen).
fn hash_bytes(b: &[u8], algos: &[Algo]) -> Box<[u8]> {
  let mut h = Multi::new(algos);
  h.update(b);
  h.finish_raw()
}

/// One hashed file of a report: its digests as raw bytes, concatenated in
/// the order of the run's algorithms.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct Sum {
  pub f: Found,
  pub digest: Box<[u8]>,
}

/// A finished checksum run held whole (in report order): the tests'
/// sequential reference, written by
/// [`write_report`](super::report_write::write_report) through the same
/// writer as a streamed run.
#[cfg(test)]
pub(crate) struct Run {
  pub algos: Vec<Algo>,
  pub root: std::path::PathBuf,
  pub sums: Vec<Sum>,
  pub errors: Vec<(String, String)>,
  pub work_time: f64,
}

/// How many found files may wait for a hasher: enough that the largest
/// of a folder-full is picked first, small next to a million records.
const QUEUE_CAP: usize = 1 << 16;

/// A hasher sends its answers to the writer after this many files, or
/// after [`BATCH_BYTES`] of them, whichever comes first.
const BATCH: usize = 256;
const BATCH_BYTES: u64 = 16 << 20;

/// The report to write: where, and its header fields.
pub struct ReportTo<'a> {
  /// The temp file (finished by [`finish_report`](super::report_write::finish_report)).
  pub tmp: &'a Path,
  pub group: &'a str,
  pub start_timestamp: f64,
  pub format: Format,
}

/// Walks and hashes `root` and streams its report, all at once: the walk
/// (on its own pool) hands each file to the hashers (`threads` of them) as
/// it finds it; once the walk has ended, the writer sorts the files into
/// the report's order (largest first, then by path), writes what the walk
/// alone tells, then each file's digests as they come. With several
/// threads the largest file found so far is hashed first (long ones start
/// early, so the threads finish together); with one thread the lowest inode
/// first (see [`Queue`]). The report is the same whatever order the files
/// were hashed in.
pub fn checksum_report(root: &Path, algos: &[Algo], threads: usize, progress: &Progress, to: &ReportTo) -> Result<Written, Error> {
  checksum_report_with(root, algos, threads, progress, to, &Hooks::default())
}

/// Test hooks of [`checksum_report_with`].
#[derive(Default)]
pub(crate) struct Hooks<'a> {
  /// Called with each file's relative path just before it is opened
  /// (tests change the tree there, mid-run).
  pub before_hash: Option<&'a (dyn Fn(&str) + Sync)>,
  /// The work time to write instead of the measured one (reports compared byte for byte).
  pub work_time: Option<f64>,
}

pub(crate) fn checksum_report_with(
  root: &Path,
  algos: &[Algo],
  threads: usize,
  progress: &Progress,
  to: &ReportTo,
  hooks: &Hooks,
) -> Result<Written, Error> {
  let started = Instant::now();
  to.format.line_algo(algos)?;
  let md = fs::metadata(root).map_err(|e| Error::io(root, "cannot read", &e))?;
  if !md.is_dir() {
    return Err(Error::config(format!("{} is not a folder", root.display())));
  }
  let threads = threads.max(1);
  let walk_pool = crate::backup::engine::build_pool(threads)?;
  let hash_pool = crate::backup::engine::build_pool(threads)?;
  let queue = Queue::new(QUEUE_CAP, threads, threads > 1);
  let next_id = AtomicU32::new(0);
  // Set when the writer fails: the hashers stop taking work.
  let stop = AtomicBool::new(false);
  let (tx, rx) = mpsc::channel::<Vec<Arrival>>();
  let root_text = root.to_string_lossy();
  progress.set_phase(Phase::Scan);
  std::thread::scope(|s| {
    let walker = s.spawn(|| {
      let parts = walk_pool.install(|| {
        walk::walk(root, (), || Gather {
          found: Vec::new(),
          ids: Vec::new(),
          table: None,
          queue: Some((&queue, &next_id)),
          dir: None,
          errors: Vec::new(),
          progress,
        })
      });
      queue.close();
      progress.set_phase(Phase::Apply);
      timing("walk", started);
      parts
    });
    let writer = s.spawn(|| {
      let parts = walker.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
      let mut files = Vec::with_capacity(parts.iter().map(|p| p.found.len()).sum());
      let mut walk_errors = Vec::new();
      for p in parts {
        files.extend(p.found.into_iter().zip(p.ids));
        walk_errors.extend(p.errors);
      }
      // The report's order: largest first, then by path (unique, so the
      // order, and the report, are the same however the work was split).
      // On the walk's pool: its threads are free now, the hashers' are not.
      walk_pool.install(|| files.par_sort_unstable_by(|(a, _), (b, _)| b.size.cmp(&a.size).then_with(|| a.rel.cmp(&b.rel))));
      let mut sums = Sums::streamed(algos, files, rx);
      timing("sort", started);
      let elapsed = || hooks.work_time.unwrap_or_else(|| started.elapsed().as_secs_f64());
      let head = Head {
        root: &root_text,
        group: to.group,
        start_timestamp: to.start_timestamp,
        walk_errors: &walk_errors,
        work_time: &elapsed,
        started,
      };
      let r = write_sums(to.tmp, &mut sums, &head, to.format);
      timing("report", started);
      if r.is_err() {
        stop.store(true, Relaxed);
      }
      r
    });
    // The hashers, one per thread of their pool; a large file's BLAKE3
    // spreads over the same pool (`update_rayon`) when a thread is free.
    hash_pool.scope(|s| {
      for _ in 0..threads {
        let tx = tx.clone();
        let (queue, stop) = (&queue, &stop);
        s.spawn(move |_| {
          let _leave = Leave(queue);
          // Answers go to the writer in batches: one wake-up of it per batch, not per file.
          let mut batch: Vec<Arrival> = Vec::with_capacity(BATCH);
          let mut batch_bytes = 0u64;
          let send = |batch: &mut Vec<Arrival>, batch_bytes: &mut u64, a: Arrival| {
            progress.ops_done.fetch_add(1, Relaxed);
            batch.push(a);
            if batch.len() >= BATCH || *batch_bytes >= BATCH_BYTES {
              // The writer gone (failed) is not the hasher's error.
              let _ = tx.send(std::mem::replace(batch, Vec::with_capacity(BATCH)));
              *batch_bytes = 0;
            }
          };
          // Small files wait here for their MD5, computed for all of them at once.
          let mut small = Batch::new(algos);
          loop {
            let waiting = small.as_ref().is_some_and(|b| !b.is_empty());
            // With small files waiting, do not sleep on the queue: hash them first.
            let Some((f, id, dir)) = (if waiting { queue.pop_now() } else { queue.pop() }) else {
              match small.as_mut() {
                Some(b) if waiting => {
                  b.finish(|id, r| send(&mut batch, &mut batch_bytes, (id, r)));
                  continue;
                }
                _ => break,
              }
            };
            if progress.is_aborted() || stop.load(Relaxed) {
              continue; // drained, so the walk never waits on a full queue
            }
            let r = match &f.link {
              Some(t) => Ok(hash_bytes(t.as_bytes(), algos)),
              None => {
                if let Some(h) = hooks.before_hash {
                  h(&f.rel);
                }
                batch_bytes += f.size;
                match small.as_mut() {
                  Some(b) if batch::takes(f.size) => {
                    b.add(id, open_found(root, &f, dir.as_deref()), f.size, progress, |file| check_found(file, &f));
                    if b.is_full() {
                      b.finish(|id, r| send(&mut batch, &mut batch_bytes, (id, r)));
                    }
                    continue;
                  }
                  _ => hash_found(root, &f, dir.as_deref(), algos, progress).map_err(|e| e.to_string()),
                }
              }
            };
            send(&mut batch, &mut batch_bytes, (id, r));
          }
          if !batch.is_empty() {
            let _ = tx.send(batch);
          }
        });
      }
      drop(tx);
    });
    let written = writer.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    if progress.is_aborted() {
      return Err(Error::aborted());
    }
    written
  })
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::integrity::checksum::report_write::{write_report, Format};

  /// A tree of many small files (many of one size, so the path breaks the
  /// ties), a few large ones (BLAKE3 split over the pool), empty files and
  /// symlinks.
  fn tree(root: &Path) {
    for d in 0..24 {
      let dir = root.join(format!("d{d:02}/sub"));
      fs::create_dir_all(&dir).unwrap();
      for i in 0..60 {
        let n = (d * 60 + i) % 97;
        fs::write(dir.join(format!("f{i:03}.txt")), vec![(d * 7 + i) as u8; n * 31]).unwrap();
      }
    }
    for (i, mb) in [9usize, 17, 9, 33].iter().enumerate() {
      let data: Vec<u8> = (0..mb << 20).map(|k| ((k * 2654435761usize) >> 13) as u8 ^ i as u8).collect();
      fs::write(root.join(format!("d{:02}/big{i}.bin", i * 5)), data).unwrap();
    }
    fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("d00/sub/f000.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("d03/dangling")).unwrap();
  }

  /// What a sequential run would report: the walk, sorted largest first
  /// then by path, each file read whole and hashed chunk by chunk with
  /// [`Multi::update`] (no split), one after the other.
  fn sequential(root: &Path, algos: &[Algo]) -> Run {
    let (mut found, errors) = walk(root, &Progress::new());
    assert!(errors.is_empty(), "{errors:?}");
    found.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.rel.cmp(&b.rel)));
    let sums = found
      .into_iter()
      .map(|f| {
        let mut h = Multi::new(algos);
        match &f.link {
          Some(t) => h.update(t.as_bytes()),
          None => fs::read(root.join(&*f.rel)).unwrap().chunks(100_000).for_each(|c| h.update(c)),
        }
        Sum { digest: h.finish_raw(), f }
      })
      .collect();
    Run { algos: algos.to_vec(), root: root.to_path_buf(), sums, errors, work_time: 0.0 }
  }

  fn report(run: &Run, out: &Path, format: Format) -> Vec<u8> {
    let p = out.join("r");
    write_report(&p, run, "g", 1_700_000_000.0, format).unwrap();
    fs::read(p).unwrap()
  }

  /// The streamed report of `root` (work time 0, as the sequential one's).
  fn streamed(
    root: &Path,
    algos: &[Algo],
    threads: usize,
    progress: &Progress,
    format: Format,
    before_hash: Option<&(dyn Fn(&str) + Sync)>,
  ) -> (Written, Vec<u8>) {
    let out = tempfile::tempdir().unwrap();
    let tmp = out.path().join("r");
    let to = ReportTo { tmp: &tmp, group: "g", start_timestamp: 1_700_000_000.0, format };
    let w = checksum_report_with(root, algos, threads, progress, &to, &Hooks { before_hash, work_time: Some(0.0) }).unwrap();
    (w, fs::read(tmp).unwrap())
  }

  #[test]
  fn the_pipelined_run_writes_the_report_of_a_sorted_sequential_run() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("src");
    tree(&root);
    let out = tempfile::tempdir().unwrap();
    let algos = [Algo::Sha256, Algo::Md5, Algo::Blake3];
    let want = sequential(&root, &algos);
    assert_eq!(want.sums.len(), 24 * 60 + 4 + 1 + 2);
    assert!(want.sums[0].f.rel.ends_with("big3.bin"));
    let want_json = report(&want, out.path(), Format::Json);
    let want_b3 = report(&want, out.path(), Format::B3sum);
    for threads in [1, 2, 4] {
      let progress = Progress::new();
      let (got, got_json) = streamed(&root, &algos, threads, &progress, Format::Json, None);
      assert!(got.errors.is_empty(), "{:?}", got.errors);
      assert_eq!(got.files, want.sums.len());
      assert_eq!(progress.ops_done.load(Relaxed), want.sums.len() as u64);
      assert_eq!(progress.ops_total.load(Relaxed), want.sums.len() as u64);
      assert!(got_json == want_json, "threads {threads}: the JSON report differs from the sequential one");
      let (_, got_b3) = streamed(&root, &algos, threads, &Progress::new(), Format::B3sum, None);
      assert!(got_b3 == want_b3, "threads {threads}: the b3sum lines differ");
    }
  }

  /// Also with MD5: small files then go through a [`Batch`], which must
  /// fail the same files the same way.
  #[test]
  fn a_file_that_vanishes_or_turns_unreadable_mid_run_is_an_error_with_its_path() {
    for algos in [&[Algo::Sha256][..], &[Algo::Sha256, Algo::Md5]] {
      vanish_mid_run(algos);
    }
  }

  fn vanish_mid_run(algos: &[Algo]) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for i in 0..200 {
      fs::write(root.join(format!("keep{i:03}.txt")), format!("{i}")).unwrap();
    }
    fs::create_dir(root.join("sub")).unwrap();
    for name in ["sub/gone.txt", "sub/grown.txt", "sub/now-a-folder.txt", "sub/now-a-symlink.txt"] {
      fs::write(root.join(name), b"there at the walk").unwrap();
    }
    let changed = Mutex::new(Vec::new());
    // Between the walk (which found them) and their hashing. Readable as
    // root too: a folder cannot be read as a file, a symlink is not followed.
    let mid_run = |rel: &str| {
      let p = root.join(rel);
      match rel {
        "sub/gone.txt" => fs::remove_file(&p).unwrap(),
        // Its digest would not be of the size and mtime the report records.
        "sub/grown.txt" => fs::write(&p, b"there at the walk, and more since").unwrap(),
        "sub/now-a-folder.txt" => {
          fs::remove_file(&p).unwrap();
          fs::create_dir(&p).unwrap();
        }
        "sub/now-a-symlink.txt" => {
          fs::remove_file(&p).unwrap();
          std::os::unix::fs::symlink("../keep000.txt", &p).unwrap();
        }
        _ => return,
      }
      changed.lock().unwrap().push(rel.to_string());
    };
    let (r, text) = streamed(root, algos, 2, &Progress::new(), Format::Json, Some(&mid_run));
    assert_eq!(changed.into_inner().unwrap().len(), 4);
    assert_eq!(r.files, 200);
    let errs: Vec<(&str, &str)> = r.errors.iter().map(|(p, e)| (p.as_str(), e.as_str())).collect();
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert_eq!(errs[0].0, "sub/gone.txt");
    assert!(errs[0].1.contains("No such file"), "{errs:?}");
    assert_eq!(errs[1].0, "sub/grown.txt");
    assert!(errs[1].1.contains("changed"), "{errs:?}");
    assert_eq!(errs[2].0, "sub/now-a-folder.txt");
    assert!(errs[2].1.contains("Is a directory"), "{errs:?}");
    assert_eq!(errs[3].0, "sub/now-a-symlink.txt");
    assert!(errs[3].1.contains("symbolic links"), "{errs:?}");
    // The report names them by their full path under `errors`, and only
    // there: listed (in `files`, `sizes`…) before their hashing failed, the
    // report was written again without them; it is the report a sequential
    // run of the tree as it was walked would write.
    let text = String::from_utf8(text).unwrap();
    let env: serde_json::Value = serde_json::from_str(&format!("{text}}}")).unwrap();
    let data: serde_json::Value = serde_json::from_str(env["data"].as_str().unwrap()).unwrap();
    let abs = |rel: &str| format!("{}/{rel}", root.display());
    for (rel, _) in &errs {
      assert!(data["errors"][abs(rel)]["error"].is_string(), "{rel} not in errors");
      for key in ["files", "sizes", "stat", "checksums"] {
        assert!(!data[key].to_string().contains(&abs(rel)), "{rel} in {key}");
      }
    }
    assert_eq!(data["files"].as_array().unwrap().len(), 200);
    assert_eq!(data["checksums"].as_object().unwrap().len(), 200);
  }
}
