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

#[test]
fn run_then_recover_is_idempotent() {
  let t = tempfile::tempdir().unwrap();
  let src = t.path().join("src");
  let dst = t.path().join("dst");
  write(&src, "p/a.txt", "a");
  write(&src, "p/b.txt", "b");
  let opts = Options {
    src: src.clone(),
    dst: dst.clone(),
    rules: RuleSpec { track_dirs: vec![pat("track_dirs", "p")], ..Default::default() },
    workers: 2,
    mtime_tolerance_ns: None,
    preserved_dirs: vec![],
    dry_run: false,
    list_changes: false,
    skip_inconsistent: false,
    safety: Default::default(),
  };
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
