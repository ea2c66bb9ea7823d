//! Copying one scanned entry into place: a regular file read once through
//! a temp file (hashed on the way when it is tracked, its owner, mode,
//! times and xattrs set on the temp file before the rename), a symlink
//! recreated. Read-while-changing is detected and reported, not stored
//! silently. Used by the run, restore and `verify --repair`.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::backup::scan::{Entry, Kind};
use crate::error::Warning;
use crate::fs::util::*;
use crate::fs::xattrs::{Policy, Xattrs};
use crate::progress::Progress;
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

/// Whether the process runs as root (asked once: owners are set only then).
fn is_root() -> bool {
  static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
  // SAFETY: geteuid has no preconditions.
  *ROOT.get_or_init(|| unsafe { libc::geteuid() } == 0)
}

/// Sets the owner of a symlink (as root; best effort).
fn set_owner(path: &Path, uid: u32, gid: u32) {
  if !is_root() {
    return;
  }
  if let Ok(c) = CString::new(path.as_os_str().as_bytes()) {
    // SAFETY: valid C string; failure is ignored (ownership is best effort).
    unsafe {
      libc::lchown(c.as_ptr(), uid, gid);
    }
  }
}

/// Sets the owner of an open file (as root; best effort): through its
/// descriptor, so no path is looked up again.
fn set_owner_fd(f: &File, uid: u32, gid: u32) {
  use std::os::fd::AsRawFd;
  if is_root() {
    // SAFETY: `f` is open; failure is ignored (ownership is best effort).
    unsafe {
      libc::fchown(f.as_raw_fd(), uid, gid);
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
    set_owner(tmp, e.uid, e.gid);
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
  // No hash needed and no holes to keep: the kernel copies (no read into
  // this process and no write back out). What it did not copy (the call
  // is refused here, or the file is shorter than it said) the loop below
  // goes on with, from where it stopped: both offsets have moved by what
  // was copied. A file that grew is found by the check after the read.
  let kernel = !hash && !is_sparse(&before);
  if kernel {
    total = kernel_copy(&input, &out, e.size, progress)?;
  }
  if !kernel || total < e.size {
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
  }
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
  if total >= WRITEBACK_MIN {
    start_writeback(&out);
  }
  // Owner first, then mode: Linux clears setuid/setgid on a chown.
  set_owner_fd(&out, e.uid, e.gid);
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

/// Files from this size on have their writeback started as soon as they
/// are copied, so the disk writes while the run goes on. Smaller ones are
/// left to the kernel's writeback and the `syncfs` at commit, which write
/// them in large batches: one `sync_file_range` per tiny file made a write
/// request of its own for each (100,000 tiny files: ~110,000 write requests
/// to the disk during the run, ~2,000–10,000 without), and a syscall.
/// Durability does not depend on it: the commit's `syncfs` flushes
/// everything before any metadata refers to it.
pub const WRITEBACK_MIN: u64 = 16 * 1024;

/// Whether a file has holes (fewer blocks allocated than its size needs):
/// such a file is copied through the buffer, which keeps zero blocks holes.
fn is_sparse(md: &fs::Metadata) -> bool {
  use std::os::unix::fs::MetadataExt;
  md.blocks().saturating_mul(512) < md.len()
}

/// Copies up to `size` bytes from `input` to `out` in the kernel
/// (`copy_file_range`, Linux), at both files' offsets. Returns what was
/// copied; 0 when the call is not supported here (another file system,
/// an old kernel, a file system that refuses it): the caller then copies
/// through its buffer. Stops at `size`: growth is found by the caller's
/// check of the file after the read.
fn kernel_copy(input: &File, out: &File, size: u64, progress: &Progress) -> io::Result<u64> {
  #[cfg(target_os = "linux")]
  {
    use std::os::fd::AsRawFd;
    let mut total = 0u64;
    while total < size {
      let want = (size - total).min(1 << 30) as usize;
      // SAFETY: both descriptors are open; null offsets mean each file's own offset.
      let n = unsafe { libc::copy_file_range(input.as_raw_fd(), std::ptr::null_mut(), out.as_raw_fd(), std::ptr::null_mut(), want, 0) };
      if n < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
          Some(libc::EINTR) => continue,
          // Not here: the buffer copy takes over from where this stopped.
          Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL | libc::EPERM | libc::EBADF | libc::ETXTBSY) => Ok(total),
          _ => Err(err),
        };
      }
      if n == 0 {
        break;
      }
      total += n as u64;
      progress.bytes_done.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(total)
  }
  #[cfg(not(target_os = "linux"))]
  {
    let _ = (input, out, size, progress);
    Ok(0)
  }
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

#[cfg(test)]
mod tests {
  use super::*;
  use crate::backup::rules::Role;
  use std::os::unix::fs::MetadataExt;

  /// Copies `src` (untracked: through the kernel where it can) to `tmp`
  /// and checks the bytes, mode and mtime arrived.
  fn copy_and_check(src: &Path, tmp: &Path) {
    let md = fs::symlink_metadata(src).unwrap();
    let e = Entry::from_metadata("f", &md, Role::Mirrored).unwrap();
    let progress = Progress::new();
    match copy_entry(src, tmp, &e, false, &progress).unwrap() {
      CopyResult::Done(c) => {
        assert_eq!(c.bytes, md.len());
        assert!(!c.torn && c.stored.is_none() && c.sha256.is_none());
      }
      CopyResult::Changed(m) => panic!("{m}"),
    }
    assert_eq!(fs::read(tmp).unwrap(), fs::read(src).unwrap());
    let out = fs::metadata(tmp).unwrap();
    assert_eq!(out.mode() & 0o7777, md.mode() & 0o7777);
    assert_eq!(mtime_ns(&out), mtime_ns(&md));
    assert_eq!(progress.bytes_done.load(std::sync::atomic::Ordering::Relaxed), md.len());
  }

  #[test]
  fn untracked_files_copy_whole_in_the_kernel_and_across_file_systems() {
    let t = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    for (i, len) in [0usize, 1, 4095, 4096, 100_000, BUF + 17, data.len()].into_iter().enumerate() {
      let src = t.path().join(format!("src-{i}"));
      fs::write(&src, &data[..len]).unwrap();
      fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
      copy_and_check(&src, &t.path().join(format!("tmp-{i}")));
    }
    // Another file system (tmpfs), where copy_file_range may be refused
    // (EXDEV): the buffer copy takes over.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
      let s = tempfile::tempdir_in(shm).unwrap();
      let src = s.path().join("src");
      fs::write(&src, &data[..1_000_000]).unwrap();
      copy_and_check(&src, &t.path().join("tmp-xfs"));
      fs::write(t.path().join("back"), &data[..70_000]).unwrap();
      copy_and_check(&t.path().join("back"), &s.path().join("tmp-back"));
    }
  }

  #[test]
  fn a_file_that_grew_since_the_scan_is_not_taken_as_scanned() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::write(&src, b"0123456789").unwrap();
    let e = Entry::from_metadata("f", &fs::symlink_metadata(&src).unwrap(), Role::Mirrored).unwrap();
    fs::write(&src, b"0123456789 and more").unwrap();
    let tmp = t.path().join("tmp");
    match copy_entry(&src, &tmp, &e, false, &Progress::new()).unwrap() {
      CopyResult::Changed(_) => assert!(!tmp.exists()),
      CopyResult::Done(c) => panic!("copied {} bytes of a file that changed", c.bytes),
    }
  }
}
