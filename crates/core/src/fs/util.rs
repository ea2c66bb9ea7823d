//! Small file-system helpers: atomic writes, copies through a temp file,
//! durability (`syncfs`), file-system detection and the crash-test hook.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::backup::scan::{Entry, Kind};
use crate::error::{Error, Warning};
use crate::fs::xattrs::{Policy, Xattrs};
use crate::progress::Progress;

const BUF: usize = 256 * 1024;

thread_local!(static IO_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; BUF]));

/// Runs `f` with this thread's I/O buffer (256 KiB). A fresh buffer per
/// file would be an mmap/munmap pair each time, which dominates on
/// millions of tiny files. Not reentrant: `f` must not call `with_buf`.
pub fn with_buf<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
  IO_BUF.with(|b| f(&mut b.borrow_mut()))
}

/// Writes `path` atomically: a temp file beside it, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> Result<(), Error> {
  let tmp = path.with_file_name(format!(".{}.tmp-{}", path.file_name().unwrap().to_string_lossy(), std::process::id()));
  let res = (|| {
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    fill(&mut f)?;
    f.sync_all()?;
    drop(f);
    fault_point();
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap())
  })();
  res.map_err(|e| {
    let _ = fs::remove_file(&tmp);
    Error::io(path, "cannot write", &e)
  })
}

/// Removes the temp files that `write_atomic` leaves in `dir` when killed.
pub fn clean_atomic_leftovers(dir: &Path) {
  let Ok(rd) = fs::read_dir(dir) else { return };
  for e in rd.flatten() {
    let name = e.file_name();
    let n = name.to_string_lossy();
    if n.starts_with('.') && n.contains(".tmp-") && e.file_type().is_ok_and(|t| t.is_file()) {
      let _ = fs::remove_file(e.path());
    }
  }
}

/// fsyncs a directory so a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
  File::open(dir)?.sync_all()
}

/// Flushes every dirty page of the file system holding `path` (Linux `syncfs`).
pub fn sync_fs(path: &Path) -> io::Result<()> {
  let f = File::open(path)?;
  #[cfg(target_os = "linux")]
  {
    use std::os::fd::AsRawFd;
    // SAFETY: `f` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
      return Err(io::Error::last_os_error());
    }
    Ok(())
  }
  #[cfg(not(target_os = "linux"))]
  {
    drop(f);
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    Ok(())
  }
}

/// Whether `path` lies on a FAT or exFAT file system (2-second mtimes, no hardlinks).
pub fn is_fat(path: &Path) -> bool {
  #[cfg(target_os = "linux")]
  {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `s` a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
      return false;
    }
    const MSDOS: i64 = 0x4d44;
    const EXFAT: i64 = 0x2011_BAB0;
    let t = s.f_type as i64;
    t == MSDOS || t == EXFAT
  }
  #[cfg(not(target_os = "linux"))]
  {
    let _ = path;
    false
  }
}

/// What the file system of the backup folder can do, found by trying.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct FsCaps {
  pub hardlinks: bool,
  /// How coarse stored mtimes are (0 = exact to the nanosecond as far as we can tell).
  pub mtime_granularity_ns: i64,
  /// Extended attributes (`user.*` at least) can be set.
  pub xattrs: bool,
  /// POSIX ACLs can be set.
  pub acls: bool,
  /// Whether a symlink can be created (exFAT/FAT cannot: `ENOSYS`, `EPERM`).
  pub symlinks: bool,
  /// The most hardlinks one file can have (`pathconf(_PC_LINK_MAX)`), if
  /// the file system says; each increment that stores a version adds one.
  pub link_max: Option<u64>,
  /// The file-system type, from `statfs` (`ext4`, `exfat`, `fuseblk`…).
  pub fs_type: &'static str,
}

impl FsCaps {
  /// What the file-system type of `path` says, without writing anything
  /// (for dry runs; `probe_caps` refines it by trying).
  pub fn from_fs_type(path: &Path) -> Self {
    let fat = is_fat(path);
    Self {
      hardlinks: !fat,
      mtime_granularity_ns: if fat { 2_000_000_000 } else { 0 },
      xattrs: !fat,
      acls: !fat,
      symlinks: !fat,
      link_max: link_max(path),
      fs_type: fs_type_name(path),
    }
  }

  /// What the target cannot do, in words (empty when nothing is limited):
  /// printed once up front by `run` and by `status`.
  pub fn limits(&self) -> Vec<String> {
    let mut v = Vec::new();
    if !self.hardlinks {
      v.push("no hardlinks (each stored version is a full copy)".to_string());
    }
    if !self.symlinks {
      v.push("no symlinks (symlinks cannot be backed up here)".to_string());
    }
    if self.mtime_granularity_ns >= 1_000_000_000 {
      v.push(format!("mtimes to {} s", self.mtime_granularity_ns / 1_000_000_000));
    }
    if let Some(n) = self.link_max.filter(|&n| n < 1000) {
      v.push(format!("at most {n} hardlinks per file (more versions become copies)"));
    }
    v
  }
}

/// The link limit of the file system of `path`, from its type (the
/// documented limits; `pathconf(_PC_LINK_MAX)` answers a default 127 for
/// types glibc does not know, such as tmpfs, so it is not used). None when
/// unknown or practically unlimited. Nothing is created to find it out.
fn link_max(path: &Path) -> Option<u64> {
  match fs_type_name(path) {
    "ext4" => Some(65_000),
    "btrfs" => Some(65_535),
    "ntfs" => Some(1_024),
    "vfat" | "exfat" => Some(1),
    _ => None,
  }
}

/// The name of the file-system type of `path` (the common ones; else `other`).
fn fs_type_name(path: &Path) -> &'static str {
  #[cfg(target_os = "linux")]
  {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return "unknown" };
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `s` a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
      return "unknown";
    }
    match s.f_type as i64 {
      0xEF53 => "ext4",
      0x5846_5342 => "xfs",
      0x9123_683E => "btrfs",
      0x0102_1994 => "tmpfs",
      0x4d44 => "vfat",
      0x2011_BAB0 => "exfat",
      0x6573_5546 => "fuse",
      0x6969 => "nfs",
      0xFF53_4D42 | 0xFE53_4D42 => "cifs",
      0x794C_7630 => "overlay",
      0x2FC1_2FC1 => "zfs",
      0x5346_544E => "ntfs",
      _ => "other",
    }
  }
  #[cfg(not(target_os = "linux"))]
  {
    let _ = path;
    "unknown"
  }
}

/// Whether a symlink can be created in `dir` (a scratch one, removed).
fn probe_symlinks(dir: &Path) -> bool {
  let s = dir.join(".probe-s");
  let _ = fs::remove_file(&s);
  let ok = std::os::unix::fs::symlink(".probe-a", &s).is_ok();
  let _ = fs::remove_file(&s);
  ok
}

/// Whether an I/O error says the file system cannot store a symlink
/// (exFAT through FUSE: `ENOSYS`; FAT: `EPERM`; others: `EOPNOTSUPP`).
pub fn is_symlink_unsupported(e: &io::Error) -> bool {
  matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) | Some(libc::EPERM))
}

/// Records the probe in `dst/.axiomatic/target.json` (for `status`, and
/// for `run` to show what the target cannot do), atomically.
pub fn record_caps(file: &Path, caps: &FsCaps) {
  let v = serde_json::json!({
    "probed": crate::layout::iso(std::time::SystemTime::now()),
    "caps": caps,
    "limits": caps.limits(),
  });
  let _ = write_atomic(file, |f| f.write_all((serde_json::to_string_pretty(&v).expect("serializable") + "\n").as_bytes()));
}

/// Probes `dir` (which must exist and be writable): a hardlink, an odd
/// mtime, an xattr and an ACL on a scratch file. FAT/exFAT (also through
/// FUSE) have no hardlinks, no xattrs and 2-second (or 1-second) mtimes.
pub fn probe_caps(dir: &Path) -> FsCaps {
  let a = dir.join(".probe-a");
  let b = dir.join(".probe-b");
  let _ = fs::remove_file(&a);
  let _ = fs::remove_file(&b);
  let mut caps = FsCaps::from_fs_type(dir);
  if File::create(&a).is_ok() {
    if fs::hard_link(&a, &b).is_err() {
      caps.hardlinks = false;
    }
    let want = filetime::FileTime::from_unix_time(1_000_000_001, 123_456_789);
    if filetime::set_file_mtime(&a, want).is_ok() {
      if let Ok(md) = fs::metadata(&a) {
        let got = mtime_ns(&md);
        let diff = (got - 1_000_000_001_123_456_789i64).abs();
        let g = if diff == 0 {
          0
        } else if diff < 1_000_000_000 && got % 1_000_000_000 != 0 {
          1_000_000
        } else if diff < 1_000_000_000 {
          1_000_000_000
        } else {
          2_000_000_000
        };
        caps.mtime_granularity_ns = caps.mtime_granularity_ns.max(g);
      }
    }
  }
  caps.symlinks = probe_symlinks(dir);
  let _ = fs::remove_file(&a);
  let _ = fs::remove_file(&b);
  (caps.xattrs, caps.acls) = crate::fs::xattrs::probe(dir);
  caps
}

/// The temp name used in the mirror for `final_path`: fixed per path, so a
/// run that was killed can find and remove its leftovers.
pub fn temp_path(final_path: &Path) -> PathBuf {
  let name = final_path.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
  let h = sha256(name);
  final_path.with_file_name(format!(".axb-{}.tmp", hex::encode(&h[..8])))
}

/// Streaming SHA-256 (ring's assembly: about 1.6× the portable `sha2` on
/// CPUs without SHA extensions, where hashing bounds a first backup).
pub struct Hasher(ring::digest::Context);

impl Hasher {
  pub fn new() -> Self {
    Self(ring::digest::Context::new(&ring::digest::SHA256))
  }
  pub fn update(&mut self, data: &[u8]) {
    self.0.update(data);
  }
  pub fn finish(self) -> [u8; 32] {
    self.0.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
  }
}

impl Default for Hasher {
  fn default() -> Self {
    Self::new()
  }
}

/// SHA-256 of a byte string.
pub fn sha256(data: &[u8]) -> [u8; 32] {
  let mut h = Hasher::new();
  h.update(data);
  h.finish()
}

/// Single-core SHA-256 and MD5 speed, MB/s of this thread's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct Sha256Speed {
  /// The CPU has SHA-256 instructions (x86-64 SHA-NI with SSSE3, AArch64 SHA2).
  pub sha_extensions: bool,
  pub sha256_mbs: f64,
  pub md5_mbs: f64,
}

/// Tells, by speed, which SHA-256 kernel ring picked in this binary (ring
/// does not say): SHA-256 and MD5 of one in-memory buffer (`mib` MiB per
/// round), back to back in this thread, medians of `rounds`. With SHA
/// instructions SHA-256 runs 2–3× MD5's speed, in software 0.4–0.6×: a
/// ratio that load on the machine cannot move across 1, as both share the
/// core in the same moments (a test asserts it in the Node addon too).
pub fn sha256_speed(mib: usize, rounds: usize) -> Sha256Speed {
  use md5::Digest;
  fn cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
  }
  let buf: Vec<u8> = (0..1usize << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
  let mb = (mib << 20) as f64 / 1e6;
  let timed = |f: &mut dyn FnMut(&[u8])| {
    let t = cpu_secs();
    for _ in 0..mib {
      f(&buf);
    }
    mb / (cpu_secs() - t).max(1e-9)
  };
  let (mut s, mut m) = (Vec::new(), Vec::new());
  for _ in 0..rounds.max(1) {
    let mut h = Hasher::new();
    s.push(timed(&mut |b| h.update(b)));
    std::hint::black_box(h.finish());
    let mut h = md5::Md5::new();
    m.push(timed(&mut |b| h.update(b)));
    std::hint::black_box(h.finalize());
  }
  let median = |v: &mut Vec<f64>| {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
  };
  #[cfg(target_arch = "x86_64")]
  let sha_extensions = std::arch::is_x86_feature_detected!("sha") && std::arch::is_x86_feature_detected!("ssse3");
  #[cfg(target_arch = "aarch64")]
  let sha_extensions = std::arch::is_aarch64_feature_detected!("sha2");
  #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
  let sha_extensions = false;
  Sha256Speed { sha_extensions, sha256_mbs: median(&mut s), md5_mbs: median(&mut m) }
}

/// What a copy produced.
#[derive(Debug, Default)]
pub struct Copied {
  pub sha256: Option<[u8; 32]>,
  pub bytes: u64,
  /// Set when what was copied is not the entry asked for (only with
  /// `accept_torn`): the source's metadata when the read began, with the
  /// size actually read.
  pub stored: Option<Entry>,
  /// Only with `accept_torn`: the source changed while it was read, so the
  /// copy may mix old and new content.
  pub torn: bool,
  /// The xattrs set on the copy (sorted).
  pub xattrs: Xattrs,
  /// Xattrs that could not be set, with why.
  pub xattr_errors: Vec<(String, io::Error)>,
  /// `security.*`/`trusted.*` xattrs left out because the process is not root.
  pub xattrs_need_root: u32,
}

impl Copied {
  /// One warning for the xattrs that could not be set, if any.
  pub fn xattr_warning(&self, rel: &str) -> Option<Warning> {
    let (first, err) = self.xattr_errors.first()?;
    let names: Vec<&str> = self.xattr_errors.iter().map(|(n, _)| n.as_str()).collect();
    Some(Warning::new(
      rel,
      "xattrs-not-copied",
      format!("extended attributes {} could not be set ({first}: {err}); the file itself was copied", names.join(", ")),
    ))
  }
}

/// Outcome of copying one entry into a temp file.
pub enum CopyResult {
  Done(Copied),
  /// The source changed (size, mtime or kind) while it was read; nothing
  /// is left in the temp file.
  Changed(String),
}

fn is_zero(b: &[u8]) -> bool {
  let (pre, mid, post) = unsafe { b.align_to::<u128>() };
  pre.iter().all(|&x| x == 0) && mid.iter().all(|&x| x == 0) && post.iter().all(|&x| x == 0)
}

fn set_owner(path: &Path, uid: u32, gid: u32, nofollow: bool) {
  // SAFETY: geteuid has no preconditions.
  if unsafe { libc::geteuid() } != 0 {
    return;
  }
  if let Ok(c) = CString::new(path.as_os_str().as_bytes()) {
    // SAFETY: valid C string; failure is ignored (ownership is best effort).
    unsafe {
      if nofollow {
        libc::lchown(c.as_ptr(), uid, gid);
      } else {
        libc::chown(c.as_ptr(), uid, gid);
      }
    }
  }
}

/// Copies the entry `e` found at `src` into the new file `tmp` (which must
/// not be shared with anything), with its owner (as root), mode and mtime,
/// in that order (a chown clears setuid/setgid, so it must come before the
/// chmod); hashes the bytes read when `hash` is set. Zero blocks become holes.
pub fn copy_entry(src: &Path, tmp: &Path, e: &Entry, hash: bool, progress: &Progress) -> io::Result<CopyResult> {
  copy_entry_with(src, tmp, e, hash, Some(&Policy::for_process()), false, progress)
}

/// As [`copy_entry`], with the xattrs (ACLs included) that `xattrs` allows
/// (none with `None`), set after the mode and before the mtime: a chown
/// clears `security.capability`, and setting an ACL rewrites the group
/// bits to its mask, which the source's mode already equals.
///
/// With `accept_torn` (the last attempt of a file that keeps changing),
/// the copy never gives up on a change: a file that differs from `e` when
/// opened is copied as it is then, and one that changes during the read is
/// kept as read (`torn`), so a file that is always being written still gets
/// a copy.
pub fn copy_entry_with(
  src: &Path,
  tmp: &Path,
  e: &Entry,
  hash: bool,
  xattrs: Option<&Policy>,
  accept_torn: bool,
  progress: &Progress,
) -> io::Result<CopyResult> {
  if e.kind == Kind::Symlink {
    let _ = fs::remove_file(tmp);
    let md = fs::symlink_metadata(src)?;
    if !md.file_type().is_symlink() || md.len() != e.size || mtime_ns(&md) != e.mtime_ns {
      return Ok(CopyResult::Changed("the symlink changed while it was read".into()));
    }
    let target = fs::read_link(src)?;
    std::os::unix::fs::symlink(&target, tmp)?;
    set_owner(tmp, e.uid, e.gid, true);
    let mut c = Copied { sha256: hash.then(|| sha256(target.as_os_str().as_bytes())), ..Default::default() };
    if let Some(p) = xattrs {
      let found = crate::fs::xattrs::read_path(src, p)?;
      c.xattr_errors = crate::fs::xattrs::write_path(tmp, &found.attrs);
      c.xattrs_need_root = found.need_root;
      c.xattrs = found.attrs;
      c.xattrs.retain(|(n, _)| !c.xattr_errors.iter().any(|(f, _)| f == n));
    }
    let mt = filetime::FileTime::from_unix_time(e.mtime_ns.div_euclid(1_000_000_000), e.mtime_ns.rem_euclid(1_000_000_000) as u32);
    filetime::set_symlink_file_times(tmp, mt, mt)?;
    return Ok(CopyResult::Done(c));
  }
  let mut input = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(src)?;
  let before = input.metadata()?;
  if !before.is_file() {
    return Ok(CopyResult::Changed("the file changed between the scan and the copy".into()));
  }
  let opened;
  let replaced = before.len() != e.size || mtime_ns(&before) != e.mtime_ns;
  let e = if replaced {
    if !accept_torn {
      return Ok(CopyResult::Changed("the file changed between the scan and the copy".into()));
    }
    opened = Entry::from_metadata(e.rel.clone(), &before, e.role).expect("a regular file");
    &opened
  } else {
    e
  };
  let create = || OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp);
  let mut out = match create() {
    Ok(f) => f,
    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
      // A leftover of a killed run: it is ours (fixed temp name), replace it.
      fs::remove_file(tmp)?;
      create()?
    }
    Err(err) => return Err(err),
  };
  let mut hasher = hash.then(Hasher::new);
  let mut total: u64 = 0;
  let mut pending_hole = false;
  with_buf(|buf| -> io::Result<()> {
    loop {
      let n = match input.read(buf) {
        Ok(0) => break,
        Ok(n) => n,
        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
        Err(err) => return Err(err),
      };
      let chunk = &buf[..n];
      if let Some(h) = hasher.as_mut() {
        h.update(chunk);
      }
      if n == BUF && is_zero(chunk) {
        out.seek(SeekFrom::Current(n as i64))?;
        pending_hole = true;
      } else {
        out.write_all(chunk)?;
        pending_hole = false;
      }
      total += n as u64;
      progress.bytes_done.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
  })?;
  if pending_hole {
    out.set_len(total)?;
  }
  let after = input.metadata()?;
  let torn = total != e.size || after.len() != e.size || mtime_ns(&after) != e.mtime_ns;
  if torn && !accept_torn {
    drop(out);
    let _ = fs::remove_file(tmp);
    return Ok(CopyResult::Changed("the file changed while it was copied".into()));
  }
  start_writeback(&out);
  // Owner first, then mode: Linux clears setuid/setgid on a chown.
  set_owner(tmp, e.uid, e.gid, false);
  out.set_permissions(fs::Permissions::from_mode(e.mode))?;
  let mut c = Copied { sha256: hasher.map(Hasher::finish), bytes: total, ..Default::default() };
  if let Some(p) = xattrs {
    let found = crate::fs::xattrs::read_file(&input, p)?;
    c.xattr_errors = crate::fs::xattrs::write_file(&out, &found.attrs);
    c.xattrs_need_root = found.need_root;
    c.xattrs = found.attrs;
    c.xattrs.retain(|(n, _)| !c.xattr_errors.iter().any(|(f, _)| f == n));
  }
  let mt = filetime::FileTime::from_unix_time(e.mtime_ns.div_euclid(1_000_000_000), e.mtime_ns.rem_euclid(1_000_000_000) as u32);
  filetime::set_file_handle_times(&out, Some(mt), Some(mt))?;
  c.stored = (torn || replaced).then(|| Entry { size: total, ..e.clone() });
  c.torn = torn;
  Ok(CopyResult::Done(c))
}

/// Starts writing a copied file to the disk now, without waiting, so the
/// `syncfs` at commit finds little left to flush (Linux; elsewhere a no-op).
fn start_writeback(f: &File) {
  #[cfg(target_os = "linux")]
  {
    use std::os::fd::AsRawFd;
    // SAFETY: `f` is open; the call only schedules writeback of its pages.
    unsafe {
      libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
  }
  #[cfg(not(target_os = "linux"))]
  let _ = f;
}

/// SHA-256 of a file or of a symlink's target, read without following links.
pub fn sha256_of(path: &Path) -> io::Result<[u8; 32]> {
  let md = fs::symlink_metadata(path)?;
  if md.file_type().is_symlink() {
    return Ok(sha256(fs::read_link(path)?.as_os_str().as_bytes()));
  }
  let mut f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
  let mut h = Hasher::new();
  with_buf(|buf| -> io::Result<()> {
    loop {
      let n = f.read(buf)?;
      if n == 0 {
        break;
      }
      h.update(&buf[..n]);
    }
    Ok(())
  })?;
  Ok(h.finish())
}

/// Copies an existing backup file (used when a hardlink is impossible),
/// with its mode, xattrs (where the target holds them) and mtime.
pub fn copy_plain(from: &Path, to: &Path) -> io::Result<()> {
  let md = fs::symlink_metadata(from)?;
  let attrs = crate::fs::xattrs::read_quiet(from);
  if md.file_type().is_symlink() {
    std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    let _ = crate::fs::xattrs::write_path(to, &attrs);
    let mt = filetime::FileTime::from_last_modification_time(&md);
    return filetime::set_symlink_file_times(to, mt, mt);
  }
  fs::copy(from, to)?;
  let _ = crate::fs::xattrs::write_path(to, &attrs);
  let mt = filetime::FileTime::from_last_modification_time(&md);
  filetime::set_file_mtime(to, mt)
}

pub fn mtime_ns(md: &fs::Metadata) -> i64 {
  md.mtime() * 1_000_000_000 + md.mtime_nsec()
}

/// Same inode?
pub fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
  a.dev() == b.dev() && a.ino() == b.ino()
}

static FAULT_AFTER: OnceLock<Option<u64>> = OnceLock::new();
static FAULT_COUNT: AtomicU64 = AtomicU64::new(0);

/// The crash-test hook: with `AXIOMATIC_FAULT_AFTER_OPS=N` in the environment
/// the process kills itself with SIGKILL at the N-th file-system step of a
/// run (each copy, rename, link, unlink and metadata write is one step).
/// Costs one relaxed atomic load when unset.
pub fn fault_point() {
  let limit = FAULT_AFTER.get_or_init(|| std::env::var("AXIOMATIC_FAULT_AFTER_OPS").ok().and_then(|v| v.parse().ok()));
  if let Some(n) = *limit {
    if FAULT_COUNT.fetch_add(1, Ordering::SeqCst) + 1 >= n {
      // SAFETY: sending a signal to ourselves.
      unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
      }
    }
  }
}
