//! The plan of a run: the scan result merged with the mirror state into the
//! list of operations (copy, link, delete, remove), in path order, and the
//! checks made on it before anything is written: a mass deletion is
//! refused here (a foreign source was refused before the scan). Also the
//! advice derived from the scan (pattern hints, what the target cannot
//! hold). Nothing here touches the backup folder.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::backup::guard;
use crate::backup::meta::{self, JournalOp, OpKind};
use crate::backup::rules::{Role, RuleSpec, Rules};
use crate::backup::scan::{self, Entry};
use crate::backup::state::StateEntry;
use crate::error::Warning;
use crate::fs::util;
use crate::fs::xattrs;
use crate::progress::Progress;

/// One path and the change a run gives it.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
  pub path: String,
  pub role: Role,
  /// `new`, `changed`, `deleted` (tracked, kept in the increment),
  /// `removed` (mirror only), `unchanged`, or `start-tracking`.
  pub change: String,
}

/// One planned operation on one path, borrowing the scan entry and the old
/// state entry it was planned from.
pub struct Op<'a> {
  pub kind: OpKind,
  /// What the scan saw (copies and links).
  pub entry: Option<&'a Entry>,
  /// What the mirror state recorded (all but first copies).
  pub old: Option<&'a StateEntry>,
  pub tracked: bool,
  /// A new version of a file tracked before (else the version is new).
  pub changed: bool,
}

impl<'a> Op<'a> {
  /// The path, from the scan entry or the old state entry.
  pub fn rel(&self) -> &'a str {
    match (self.entry, self.old) {
      (Some(e), _) => &e.rel,
      (None, Some(o)) => o.rel(),
      (None, None) => unreachable!("an op has an entry or a state entry"),
    }
  }

  /// The journal line written before the op is applied.
  pub fn journal(&self) -> JournalOp {
    let (kind, size, mtime_ns, mode) = match (self.entry, self.old) {
      (Some(e), _) => (e.kind, e.size, e.mtime_ns, e.mode),
      (None, Some(o)) => (o.kind, o.size, o.mtime_ns, o.mode),
      (None, None) => unreachable!("an op has an entry or a state entry"),
    };
    JournalOp {
      rel: self.rel().to_string(),
      op: self.kind,
      change: self.kind.stores().then_some(self.change()),
      tracked: self.tracked,
      kind,
      size,
      mtime_ns,
      mode,
      sha256: if self.kind == OpKind::Delete { self.old.and_then(|o| o.sha()).map(hex::encode) } else { None },
      link: self.entry.and_then(|e| e.link()).map(str::to_string),
    }
  }

  /// What a copy or link records: a changed version of a file tracked before, else new.
  pub fn change(&self) -> meta::Change {
    if self.changed {
      meta::Change::Changed
    } else {
      meta::Change::New
    }
  }
}

/// The operations of a run and what the merge found besides them.
pub struct Plan<'a> {
  /// In path order.
  pub ops: Vec<Op<'a>>,
  /// State entries under paths that could not be read: kept as they are.
  pub kept: Vec<&'a StateEntry>,
  /// Tracked files that became untracked: no file operation, only a new state.
  pub roles_changed: bool,
  /// Hard-link groups' first paths (a group is relinked when its first path is copied).
  pub leaders: HashSet<&'a str>,
}

impl Plan<'_> {
  /// Deletions and removals from the mirror.
  pub fn removals(&self) -> u64 {
    self.ops.iter().filter(|o| o.kind.removes()).count() as u64
  }

  /// Operations that put a version into the increment (it needs a name).
  pub fn tracked_ops(&self) -> usize {
    self.ops.iter().filter(|o| o.tracked).count()
  }

  /// Bytes the copies will read (later members of hard-link groups are linked, not copied).
  pub fn copy_bytes(&self) -> u64 {
    self.ops.iter().filter(|o| o.kind == OpKind::Copy).filter_map(|o| o.entry).filter(|e| e.link().is_none()).map(|e| e.size).sum()
  }
}

/// Merges the scan (`entries`) with the mirror state (`old`), both sorted
/// by path: a path only scanned is copied, one only in the state is deleted
/// (tracked) or removed, unless it lies under an `unreadable` folder; one in
/// both is copied when it differs (beyond `tol` for mtimes) or its hard-link
/// group's first path is copied, linked when it became tracked.
pub fn plan<'a>(entries: &'a [Entry], old: &'a [StateEntry], unreadable: &HashSet<&str>, tol: i64) -> Plan<'a> {
  let leaders: HashSet<&str> = entries.iter().filter_map(|e| e.link()).collect();
  let mut recopied: HashSet<&str> = HashSet::new();
  let mut p = Plan { ops: Vec::new(), kept: Vec::new(), roles_changed: false, leaders: HashSet::new() };
  let (mut i, mut j) = (0, 0);
  while i < entries.len() || j < old.len() {
    let ord = match (entries.get(i), old.get(j)) {
      (Some(e), Some(o)) => (*e.rel).cmp(o.rel()),
      (Some(_), None) => Ordering::Less,
      (None, _) => Ordering::Greater,
    };
    match ord {
      Ordering::Less => {
        let e = &entries[i];
        p.ops.push(Op { kind: OpKind::Copy, entry: Some(e), old: None, tracked: e.role == Role::Tracked, changed: false });
        if leaders.contains(&*e.rel) {
          recopied.insert(&e.rel);
        }
        i += 1;
      }
      Ordering::Greater => {
        let o = &old[j];
        if scan::is_unreadable(unreadable, o.rel()) {
          p.kept.push(o);
        } else {
          let kind = if o.tracked { OpKind::Delete } else { OpKind::Remove };
          p.ops.push(Op { kind, entry: None, old: Some(o), tracked: o.tracked, changed: false });
        }
        j += 1;
      }
      Ordering::Equal => {
        let (e, o) = (&entries[i], &old[j]);
        let tracked = e.role == Role::Tracked;
        let regroup = e.link().is_some_and(|l| recopied.contains(l));
        if differs(e, o, tol) || regroup {
          p.ops.push(Op { kind: OpKind::Copy, entry: Some(e), old: Some(o), tracked, changed: o.tracked });
          if leaders.contains(&*e.rel) {
            recopied.insert(&e.rel);
          }
        } else if tracked && !o.tracked {
          p.ops.push(Op { kind: OpKind::Link, entry: Some(e), old: Some(o), tracked, changed: false });
        } else if !tracked && o.tracked {
          p.roles_changed = true;
        }
        i += 1;
        j += 1;
      }
    }
  }
  p.leaders = leaders;
  p
}

/// Why the run must not go on: a foreign source (`source_refused`, found
/// before the scan) or too many removals. Checked before the journal, so a
/// refused run writes nothing (a dry run reports it).
pub fn refusal(source_refused: Option<String>, plan: &Plan, old: usize, safety: &guard::Safety) -> Option<String> {
  source_refused.or_else(|| guard::mass_delete(plan.removals(), old as u64, safety))
}

/// Every selected path with the change the plan gives it (`--dry-run --verbose`).
pub fn changes(entries: &[Entry], plan: &Plan) -> Vec<Change> {
  let mut by_path: BTreeMap<&str, Change> = BTreeMap::new();
  for e in entries {
    by_path.insert(&e.rel, Change { path: e.rel.to_string(), role: e.role, change: "unchanged".into() });
  }
  for o in &plan.kept {
    let role = if o.tracked { Role::Tracked } else { Role::Mirrored };
    by_path.insert(o.rel(), Change { path: o.rel().to_string(), role, change: "unchanged".into() });
  }
  for op in &plan.ops {
    let role = if op.tracked { Role::Tracked } else { Role::Mirrored };
    let change = match op.kind {
      OpKind::Copy if op.old.is_none() || (op.tracked && !op.changed) => "new",
      OpKind::Copy => "changed",
      OpKind::Link => "start-tracking",
      OpKind::Delete => "deleted",
      OpKind::Remove => "removed",
    };
    by_path.insert(op.rel(), Change { path: op.rel().to_string(), role, change: change.into() });
  }
  by_path.into_values().collect()
}

/// Whether the source entry differs from what the mirror holds. An
/// inconsistent copy always differs: it is copied again until a read sees
/// the file hold still.
fn differs(e: &Entry, o: &StateEntry, tol: i64) -> bool {
  o.inconsistent
    || e.kind != o.kind
    || e.size != o.size
    || e.mode != o.mode
    || (e.mtime_ns - o.mtime_ns).abs() > tol
    || e.xattr() != o.xattr()
    || e.link() != o.link()
}

/// The once-per-run warnings about what the target cannot hold (xattrs,
/// ACLs, hard links) or a non-root run cannot set, instead of one per file.
pub fn capability_warnings(dst: &Path, caps: &util::FsCaps, notes: &xattrs::ScanNotes, followers: u64) -> Vec<Warning> {
  let mut out = Vec::new();
  let eg = |p: &Option<Box<str>>| p.as_deref().map(|p| format!(" (e.g. {p:?})")).unwrap_or_default();
  if notes.target_cannot.0 > 0 {
    let (code, what) = match (caps.xattrs, caps.acls) {
      (true, _) => ("target-no-acls", "POSIX ACLs"),
      (false, true) => ("target-no-xattrs", "extended attributes"),
      (false, false) => ("target-no-xattrs", "extended attributes or ACLs"),
    };
    out.push(Warning::new(
      "",
      code,
      format!(
        "{} selected files have {what}{}, but {} cannot hold them (exFAT, some FUSE or network file systems): the files are backed up without them",
        notes.target_cannot.0,
        eg(&notes.target_cannot.1),
        dst.display()
      ),
    ));
  }
  if notes.need_root.0 > 0 {
    out.push(Warning::new(
      "",
      "xattrs-need-root",
      format!(
        "{} selected files have security.* or trusted.* extended attributes{} (SELinux labels, file capabilities) that only root can set: they are backed up without them; run as root to keep them",
        notes.need_root.0,
        eg(&notes.need_root.1)
      ),
    ));
  }
  if followers > 0 && !caps.hardlinks {
    out.push(Warning::new(
      "",
      "target-no-hardlinks",
      format!(
        "{followers} selected files are hard links of other selected files, but {} has no hard links: each is stored as a separate copy",
        dst.display()
      ),
    ));
  }
  out.extend(notes.warnings.iter().cloned());
  out
}

/// For each anchored one-segment include/track file pattern that selected
/// nothing directly in `src`: does it match deeper? (A bounded probe.) The
/// same for bare `exclude_dirs` names (`rules::exclude_dir_hints`). Then
/// every other include/track pattern that selected nothing at all.
pub fn pattern_hints(src: &Path, spec: &RuleSpec, entries: &[Entry]) -> Vec<String> {
  let mut hints = deeper_hints(src, spec, entries);
  for p in crate::backup::rules::unmatched(spec, entries.iter().map(|e| &*e.rel)) {
    if !hints.iter().any(|h| h.starts_with(&format!("{}: {:?} ", p.key, p.source))) {
      hints.push(format!("{}: {:?} selected nothing in src (patterns are relative to src; check the spelling)", p.key, p.source));
    }
  }
  hints
}

/// The anchored one-segment file patterns of [`pattern_hints`] that match deeper.
fn deeper_hints(src: &Path, spec: &RuleSpec, entries: &[Entry]) -> Vec<String> {
  let mut hints = Vec::new();
  for p in spec.include_files.iter().chain(&spec.track_files) {
    if p.glob.contains('/') {
      continue;
    }
    let single = RuleSpec { include_files: vec![p.clone()], ..Default::default() };
    let Ok(r) = Rules::compile(&single) else { continue };
    let at_root = entries.iter().any(|e| !e.rel.contains('/') && r.classify(Default::default(), &e.rel).is_some());
    if at_root {
      continue;
    }
    let deep = crate::backup::rules::Pattern { glob: format!("**/{}", p.glob), ..p.clone() };
    let probe = RuleSpec { include_files: vec![deep], ..Default::default() };
    let Ok(r) = Rules::compile(&probe) else { continue };
    let pr = Progress::new();
    if let Ok(found) = scan::scan(src, &r, &pr, scan::Limits { files: Some(1), dirs: Some(2000) }) {
      if let Some(e) = found.entries.first() {
        hints.push(format!(
          "{}: {:?} matches nothing directly in src but matches deeper (e.g. {:?}); did you mean {:?}?",
          p.key,
          p.source,
          e.rel,
          format!("{}:rec", p.source.trim_end_matches(":rec"))
        ));
      }
    }
  }
  hints.extend(crate::backup::rules::exclude_dir_hints(src, spec));
  hints
}
