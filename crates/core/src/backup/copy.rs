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
