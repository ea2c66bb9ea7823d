//! End-to-end tests of the core crate on real temp trees.

use std::fs;
use std::path::Path;

use axiomatic_core::backup::engine::{self, Options};
use axiomatic_core::backup::rules::{Pattern, RuleSpec, Rules};
use axiomatic_core::backup::scan::{self, Limits};
use axiomatic_core::layout::Layout;
use axiomatic_core::progress::Progress;

fn pat(key: &str, glob: &str) -> Pattern {
  Pattern { key: key.into(), source: glob.into(), glob: glob.into() }
}

fn write(root: &Path, rel: &str, content: &str) {
  let p = root.join(rel);
  fs::create_dir_all(p.parent().unwrap()).unwrap();
  fs::write(p, content).unwrap();
}

#[test]
fn scan_prunes_directories_that_cannot_contribute() {
  let t = tempfile::tempdir().unwrap();
  write(t.path(), "keep/a.txt", "a");
  for i in 0..20 {
    write(t.path(), &format!("other/d{i}/x/y.txt"), "y");
  }
  write(t.path(), "Projects/p/data.json", "{}");
  write(t.path(), "Projects/p/deeper/data.json", "{}");
  let spec = RuleSpec {
    track_dirs: vec![pat("track_dirs", "keep")],
    include_files: vec![pat("include_files", "Projects/*/data.json")],
    ..Default::default()
  };
  let rules = Rules::compile(&spec).unwrap();
  let progress = Progress::new();
  let res = scan::scan(t.path(), &rules, &progress, Limits::default()).unwrap();
  let paths: Vec<&str> = res.entries.iter().map(|e| &*e.rel).collect();
  assert_eq!(paths, ["Projects/p/data.json", "keep/a.txt"]);
  // root, keep, Projects, Projects/p — never `other` nor `Projects/p/deeper`.
  assert_eq!(res.dirs_read, 4);
}

/// A run of `src` into `dst` that tracks the folder `p`.
fn track_p(src: &Path, dst: &Path) -> Options {
  Options {
    src: src.to_path_buf(),
    dst: dst.to_path_buf(),
    rules: RuleSpec { track_dirs: vec![pat("track_dirs", "p")], ..Default::default() },
    workers: 2,
    mtime_tolerance_ns: None,
    preserved_dirs: vec![],
    dry_run: false,
    list_changes: false,
    skip_inconsistent: false,
    safety: Default::default(),
  }
}

#[test]
fn run_then_recover_is_idempotent() {
  let t = tempfile::tempdir().unwrap();
  let src = t.path().join("src");
  let dst = t.path().join("dst");
  write(&src, "p/a.txt", "a");
  write(&src, "p/b.txt", "b");
  let opts = track_p(&src, &dst);
  let r = engine::run(&opts, &Progress::new()).unwrap();
  assert_eq!((r.new, r.changed, r.deleted), (2, 0, 0));
  let name = r.increment.unwrap();
  assert!(dst.join(&name).join("track/p/a.txt").is_file());
  // With no journal, recovery does nothing.
  assert_eq!(engine::recover(&Layout::new(&dst)).unwrap(), None);
  fs::remove_file(src.join("p/a.txt")).unwrap();
  let r2 = engine::run(&opts, &Progress::new()).unwrap();
  assert_eq!(r2.deleted, 1);
  assert!(dst.join(r2.increment.unwrap()).join("deleted/p/a.txt").is_file());
  assert!(!dst.join("mirror/p/a.txt").exists());
  assert!(dst.join(&name).join("track/p/a.txt").is_file(), "history stays");
}

/// A killed run can leave in its unfinished increment a `track/` file that
/// the mirror does not hold: a new file is written there first and linked
/// into the mirror once complete, and on a target without hard links the
/// increment's copy is made after the mirror's. Recovery must not commit
/// such a file (it may be half written): it removes it, commits nothing
/// for it, and the next run copies the file again.
#[test]
fn recovery_drops_a_stored_file_the_mirror_does_not_hold() {
  use axiomatic_core::backup::meta::{self, JournalHeader, JournalOp, OpKind};
  use axiomatic_core::backup::scan::Kind;
  use std::os::unix::fs::MetadataExt;

  let t = tempfile::tempdir().unwrap();
  let src = t.path().join("src");
  let dst = t.path().join("dst");
  write(&src, "p/a.txt", "a");
  let opts = track_p(&src, &dst);
  let first = engine::run(&opts, &Progress::new()).unwrap().increment.unwrap();
  // The killed run: p/new.txt journaled, half of it written in `track/`, nothing in the mirror.
  let content = "the whole new file, twice as long as what the killed run wrote";
  write(&src, "p/new.txt", content);
  let md = fs::metadata(src.join("p/new.txt")).unwrap();
  let l = Layout::new(&dst);
  let name = "backup_20300101_000000";
  let header =
    JournalHeader { format: "axiomatic-journal".into(), increment: Some(name.into()), started: "2030-01-01T00:00:00Z".into(), ops: 1 };
  let op = JournalOp {
    rel: "p/new.txt".into(),
    op: OpKind::Copy,
    change: None,
    tracked: true,
    kind: Kind::File,
    size: md.len(),
    mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
    mode: md.mode() & 0o7777,
    sha256: None,
    link: None,
  };
  meta::write_journal(&l.journal, &header, std::iter::once(op)).unwrap();
  let stored = l.incomplete_increment(name).join("track/p/new.txt");
  fs::create_dir_all(stored.parent().unwrap()).unwrap();
  fs::write(&stored, &content[..content.len() / 2]).unwrap();

  assert_eq!(engine::recover(&l).unwrap(), None, "nothing done, nothing committed");
  assert!(!stored.exists(), "the half-written file is removed");
  assert!(!dst.join(name).exists() && !l.incomplete_increment(name).exists());
  assert!(!l.journal.exists());
  assert!(fs::read_to_string(&l.state).unwrap().lines().all(|line| !line.contains("p/new.txt")));
  // The next run stores the whole file, once.
  let r = engine::run(&opts, &Progress::new()).unwrap();
  assert_eq!((r.new, r.changed), (1, 0));
  let inc = r.increment.unwrap();
  assert_ne!(inc, first);
  assert_eq!(fs::read_to_string(dst.join(&inc).join("track/p/new.txt")).unwrap(), content);
  assert_eq!(fs::read_to_string(dst.join("mirror/p/new.txt")).unwrap(), content);
}
