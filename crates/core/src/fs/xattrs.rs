//! Extended attributes of selected files, POSIX ACLs included: Linux keeps
//! an ACL as the xattr `system.posix_acl_access` (`_default` on folders),
//! so copying that xattr copies the ACL.
//!
//! Kept: `user.*`, the two ACL names, and as root also `security.*`
//! (SELinux labels, file capabilities) and `trusted.*`. Other namespaces
//! (`system.nfs4_acl`, `btrfs.*`…) belong to one file-system type and
//! cannot be set anywhere else; they are left out. A process that is not
//! root cannot set `security.*`/`trusted.*`: such names are counted and
//! reported once per run, not per file. Reading costs one `llistxattr` per
//! file when the file has none (the common case).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use xattr::FileExt;

use crate::error::Warning;
use crate::fs::util;

/// Names and values, sorted by name.
pub type Xattrs = Vec<(String, Vec<u8>)>;

pub const ACL_ACCESS: &str = "system.posix_acl_access";
pub const ACL_DEFAULT: &str = "system.posix_acl_default";

/// Which xattrs a copy reads and sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
  /// The target holds xattrs (`user.*` and the like; false: none of those are copied).
  pub xattrs: bool,
  /// The target holds POSIX ACLs.
  pub acls: bool,
  /// Root: `security.*` and `trusted.*` too.
  pub privileged: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
  Copy,
  /// A namespace of one file-system type: never copied, never reported.
  Foreign,
  NeedsRoot,
  TargetCannot,
}

/// Whether this process is root (may set `security.*`/`trusted.*`).
pub fn is_root() -> bool {
  // SAFETY: geteuid has no preconditions.
  unsafe { libc::geteuid() == 0 }
}

impl Policy {
  /// Everything this process may set, on a target that holds it all
  /// (restore, repair).
  pub fn for_process() -> Self {
    Self { xattrs: true, acls: true, privileged: is_root() }
  }

  fn verdict(&self, name: &[u8]) -> Verdict {
    let acl = name == ACL_ACCESS.as_bytes() || name == ACL_DEFAULT.as_bytes();
    let privileged = name.starts_with(b"security.") || name.starts_with(b"trusted.");
    if !(acl || privileged || name.starts_with(b"user.")) {
      return Verdict::Foreign;
    }
    if privileged && !self.privileged {
      return Verdict::NeedsRoot;
    }
    if (acl && !self.acls) || (!acl && !self.xattrs) {
      return Verdict::TargetCannot;
    }
    Verdict::Copy
  }
}

/// The xattrs of one file, as a policy sees them.
#[derive(Debug, Default)]
pub struct Found {
  /// The ones to copy, sorted by name.
  pub attrs: Xattrs,
  /// Names left out because this process is not root.
  pub need_root: u32,
  /// Names left out because the target cannot hold them.
  pub target_cannot: u32,
}

fn unsupported(e: &io::Error) -> bool {
  matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOSYS))
}

fn collect(names: io::Result<xattr::XAttrs>, policy: &Policy, get: impl Fn(&OsStr) -> io::Result<Option<Vec<u8>>>) -> io::Result<Found> {
  let names = match names {
    Ok(n) => n,
    // The source file system has no xattrs at all.
    Err(e) if unsupported(&e) => return Ok(Found::default()),
    Err(e) => return Err(e),
  };
  let mut f = Found::default();
  for n in names {
    match policy.verdict(n.as_bytes()) {
      Verdict::Foreign => continue,
      Verdict::NeedsRoot => f.need_root += 1,
      Verdict::TargetCannot => f.target_cannot += 1,
      Verdict::Copy => {
        // Names are ASCII namespaces plus bytes; non-UTF-8 ones cannot be recorded in JSON.
        let Ok(s) = n.clone().into_string() else {
          return Err(io::Error::new(io::ErrorKind::InvalidData, format!("xattr name {n:?} is not valid UTF-8")));
        };
        // Gone since the listing: nothing to copy.
        if let Some(v) = get(&n)? {
          f.attrs.push((s, v));
        }
      }
    }
  }
  f.attrs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
  Ok(f)
}

/// The xattrs of `path` (a symlink's own, never its target's).
pub fn read_path(path: &Path, policy: &Policy) -> io::Result<Found> {
  // Through a folder handle when the path is too long for one call.
  crate::fs::longpath::with(path, |p| collect(xattr::list(p), policy, |n| xattr::get(p, n)))
}

/// The xattrs of an open file.
pub fn read_file(f: &File, policy: &Policy) -> io::Result<Found> {
  collect(f.list_xattr(), policy, |n| f.get_xattr(n))
}

/// Sets `attrs` on `path` (not following a symlink); returns the ones that failed.
pub fn write_path(path: &Path, attrs: &Xattrs) -> Vec<(String, io::Error)> {
  attrs.iter().filter_map(|(n, v)| crate::fs::longpath::with(path, |p| xattr::set(p, n, v)).err().map(|e| (n.clone(), e))).collect()
}

/// Sets `attrs` on an open file; returns the ones that failed.
pub fn write_file(f: &File, attrs: &Xattrs) -> Vec<(String, io::Error)> {
  attrs.iter().filter_map(|(n, v)| f.set_xattr(n, v).err().map(|e| (n.clone(), e))).collect()
}

/// A digest of a sorted xattr list (for the mirror state: a changed xattr
/// is a change); `None` when there are none.
pub fn digest(attrs: &Xattrs) -> Option<[u8; 32]> {
  if attrs.is_empty() {
    return None;
  }
  let mut h = util::Hasher::new();
  for (n, v) in attrs {
    h.update(n.as_bytes());
    h.update(&[0]);
    h.update(&(v.len() as u64).to_le_bytes());
    h.update(v);
  }
  Some(h.finish())
}

/// Names and hex values, for the increment catalog.
pub fn to_catalog(attrs: &Xattrs) -> Option<std::collections::BTreeMap<String, String>> {
  (!attrs.is_empty()).then(|| attrs.iter().map(|(n, v)| (n.clone(), hex::encode(v))).collect())
}

/// What the xattr pass over a scan found, for the once-per-run warnings.
#[derive(Debug, Default)]
pub struct ScanNotes {
  /// Files with xattrs the target cannot hold, and the first of them.
  pub target_cannot: (u64, Option<Box<str>>),
  /// Files with `security.*`/`trusted.*` xattrs a non-root run cannot copy.
  pub need_root: (u64, Option<Box<str>>),
  pub warnings: Vec<Warning>,
}

impl ScanNotes {
  pub fn merge(mut self, o: ScanNotes) -> ScanNotes {
    let add = |a: &mut (u64, Option<Box<str>>), b: (u64, Option<Box<str>>)| {
      a.0 += b.0;
      if a.1.is_none() || b.1.as_ref().is_some_and(|p| Some(p) < a.1.as_ref()) {
        a.1 = b.1.or(a.1.take());
      }
    };
    add(&mut self.target_cannot, o.target_cannot);
    add(&mut self.need_root, o.need_root);
    self.warnings.extend(o.warnings);
    self
  }
}

/// The xattrs of a file or symlink at `path` that this process may set, or
/// none when they cannot be read (recovery and rebuilds read the mirror).
pub fn read_quiet(path: &Path) -> Xattrs {
  read_path(path, &Policy::for_process()).map(|f| f.attrs).unwrap_or_default()
}

/// Probes whether the folder `dir` holds xattrs and POSIX ACLs: sets
/// `user.axiomatic-probe` and a minimal ACL on a scratch file. exFAT and
/// many FUSE file systems refuse both.
pub fn probe(dir: &Path) -> (bool, bool) {
  let p = dir.join(".probe-xattr");
  let _ = std::fs::remove_file(&p);
  let Ok(f) = File::create(&p) else { return (false, false) };
  let xattrs = f.set_xattr("user.axiomatic-probe", b"1").is_ok();
  // A minimal access ACL (user::rw-, group::r--, other::r--): version 2, then
  // (tag u16, perm u16, id u32) entries, little-endian.
  let mut acl = 2u32.to_le_bytes().to_vec();
  for (tag, perm) in [(0x01u16, 6u16), (0x04, 4), (0x20, 4)] {
    acl.extend_from_slice(&tag.to_le_bytes());
    acl.extend_from_slice(&perm.to_le_bytes());
    acl.extend_from_slice(&u32::MAX.to_le_bytes());
  }
  let acls = f.set_xattr(ACL_ACCESS, &acl).is_ok();
  drop(f);
  let _ = std::fs::remove_file(&p);
  (xattrs, acls)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn namespaces() {
    let user = Policy { xattrs: true, acls: true, privileged: false };
    assert_eq!(user.verdict(b"user.foo"), Verdict::Copy);
    assert_eq!(user.verdict(ACL_ACCESS.as_bytes()), Verdict::Copy);
    assert_eq!(user.verdict(b"security.capability"), Verdict::NeedsRoot);
    assert_eq!(user.verdict(b"trusted.x"), Verdict::NeedsRoot);
    assert_eq!(user.verdict(b"system.nfs4_acl"), Verdict::Foreign);
    assert_eq!(user.verdict(b"btrfs.compression"), Verdict::Foreign);
    let root_no_acl = Policy { xattrs: true, acls: false, privileged: true };
    assert_eq!(root_no_acl.verdict(b"trusted.x"), Verdict::Copy);
    assert_eq!(root_no_acl.verdict(ACL_ACCESS.as_bytes()), Verdict::TargetCannot);
    let none = Policy { xattrs: false, acls: false, privileged: true };
    assert_eq!(none.verdict(b"user.foo"), Verdict::TargetCannot);
    assert_eq!(none.verdict(ACL_ACCESS.as_bytes()), Verdict::TargetCannot);
    let acls_only = Policy { xattrs: false, acls: true, privileged: true };
    assert_eq!(acls_only.verdict(ACL_ACCESS.as_bytes()), Verdict::Copy);
    assert_eq!(acls_only.verdict(b"user.foo"), Verdict::TargetCannot);
  }

  #[test]
  fn digest_is_order_and_boundary_sensitive() {
    let a = vec![("user.a".to_string(), b"bc".to_vec())];
    let b = vec![("user.ab".to_string(), b"c".to_vec())];
    assert_ne!(digest(&a), digest(&b));
    assert_eq!(digest(&Vec::new()), None);
  }
}
