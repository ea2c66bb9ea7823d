//! The verified SHA3-512 of a report, remembered so `verify --incremental`
//! does not hash a 300 MB report again when the report did not change.
//!
//! Why keyed on (size, mtime_ns, ctime_ns, inode, device): any write to the
//! file changes its ctime, and ctime cannot be set back by a user (only by
//! moving the system clock): so a byte changed in place, with size and mtime
//! restored, still changes the key. A replaced file has another inode. An
//! entry is trusted only when all five parts match.
//!
//! Why in the user's cache dir (`$XDG_CACHE_HOME/axiomatic-backup/verified/`,
//! else `~/.cache/…`), never beside the report: whoever can alter a report in
//! its folder could also write a matching entry beside it, and the original
//! service's checker reads every file name of a group folder (an extra file
//! there is not harmless). The folder is made `0700`; an entry not owned by
//! us, or writable by others, is ignored. Any failure (no home, read-only
//! cache, a damaged entry) means "no cache": the digest is computed, as
//! without one; verify never fails because of the cache.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The identity of a report file's current content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Key {
  pub size: u64,
  pub mtime_ns: i64,
  pub ctime_ns: i64,
  pub ino: u64,
  pub dev: u64,
}

impl Key {
  pub fn of(md: &fs::Metadata) -> Key {
    Key {
      size: md.len(),
      mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
      ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
      ino: md.ino(),
      dev: md.dev(),
    }
  }
}

#[derive(Serialize, Deserialize)]
struct Entry {
  key: Key,
  digest: String,
  /// For a person looking at the cache; not part of the key.
  path: String,
}

/// Where entries live; `None`: no cache.
#[derive(Debug, Clone)]
pub struct DigestCache {
  dir: PathBuf,
}

impl DigestCache {
  /// The user's cache (`$XDG_CACHE_HOME` or `$HOME/.cache`), or `None`.
  pub fn user() -> Option<DigestCache> {
    let base = std::env::var_os("XDG_CACHE_HOME")
      .filter(|v| Path::new(v).is_absolute())
      .map(PathBuf::from)
      .or_else(|| std::env::var_os("HOME").filter(|v| Path::new(v).is_absolute()).map(|h| Path::new(&h).join(".cache")))?;
    Some(DigestCache { dir: base.join("axiomatic-backup").join("verified") })
  }

  /// A cache in `dir` (tests).
  pub fn at(dir: &Path) -> DigestCache {
    DigestCache { dir: dir.to_path_buf() }
  }

  /// One entry per report inode: a report rewritten in place keeps its
  /// entry's name, and the key decides.
  fn entry_path(&self, key: &Key) -> PathBuf {
    self.dir.join(format!("{:016x}-{:x}.json", key.dev, key.ino))
  }

  /// The digest verified earlier for exactly this key.
  pub fn lookup(&self, key: &Key) -> Option<String> {
    let p = self.entry_path(key);
    let f = fs::File::open(&p).ok()?;
    let md = f.metadata().ok()?;
    // Only our own entry, that nobody else could have written.
    if md.uid() != unsafe { libc::geteuid() } || md.mode() & 0o022 != 0 || !md.is_file() || md.len() > 4096 {
      return None;
    }
    let e: Entry = serde_json::from_reader(f).ok()?;
    (e.key == *key && e.digest.len() == 128 && e.digest.bytes().all(|c| c.is_ascii_hexdigit())).then_some(e.digest)
  }

  /// Remembers `digest` for `key`; failures are ignored (temp + rename, so
  /// a reader never sees half an entry).
  pub fn store(&self, key: &Key, digest: &str, report: &Path) {
    let _ = (|| -> std::io::Result<()> {
      fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
      let p = self.entry_path(key);
      let tmp = self.dir.join(format!(".tmp-{}-{:x}", std::process::id(), key.ino));
      let body = serde_json::to_vec(&Entry { key: *key, digest: digest.to_string(), path: report.to_string_lossy().into_owned() })?;
      let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
      f.write_all(&body)?;
      drop(f);
      fs::rename(&tmp, &p).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
      })
    })();
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn an_entry_is_used_only_when_every_key_part_matches() {
    let t = tempfile::tempdir().unwrap();
    let c = DigestCache::at(&t.path().join("c"));
    let k = Key { size: 10, mtime_ns: 1, ctime_ns: 2, ino: 3, dev: 4 };
    let d = "ab".repeat(64);
    assert_eq!(c.lookup(&k), None);
    c.store(&k, &d, Path::new("/r.json"));
    assert_eq!(c.lookup(&k), Some(d.clone()));
    for other in [Key { size: 11, ..k }, Key { mtime_ns: 9, ..k }, Key { ctime_ns: 9, ..k }, Key { ino: 9, ..k }, Key { dev: 9, ..k }] {
      assert_eq!(c.lookup(&other), None, "{other:?}");
    }
    // Writable by others: ignored.
    let p = c.entry_path(&k);
    fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    assert_eq!(c.lookup(&k), None);
    // A cache that cannot be written is no cache, not an error.
    let ro = DigestCache::at(Path::new("/proc/no-such/dir"));
    ro.store(&k, &d, Path::new("/r.json"));
    assert_eq!(ro.lookup(&k), None);
  }
}
