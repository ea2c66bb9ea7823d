//! Compiled selection rules.
//!
//! The rules arrive already normalized by the TypeScript layer
//! (`js/patterns/`): every pattern is a glob relative to `src`, with `:rec`
//! already turned into a leading `**/` and bare `exclude_files` names turned
//! into `**/name` (`exclude_dirs` stay anchored, as in the original backup.py). This module only compiles them (with `globset`, `*` and `?`
//! never crossing `/`) and answers three questions while the walker runs:
//!
//! * what a directory brings in (`DirCtx`: inside an include / track dir,
//!   inside an excluded subtree),
//! * what role a file gets (`Rules::classify`),
//! * whether anything below a directory can still be selected
//!   (`Rules::descend`), so whole subtrees are skipped.
//!
//! The last one is an over-approximation: a pattern that starts with `**`
//! can match anywhere, so it forces a full walk; an anchored pattern is
//! compared segment by segment with the directory's path.

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// One pattern as the user wrote it and as it was normalized.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pattern {
  /// The config key it came from (`include_dirs`, `exclude_files`…).
  pub key: String,
  /// The text the user wrote.
  pub source: String,
  /// The normalized glob, relative to `src`.
  pub glob: String,
}

/// Which role wins for a file under both an include dir and a track dir.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DirPriority {
  #[default]
  Track,
  Include,
}

/// The normalized rule set handed over by the TypeScript layer.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RuleSpec {
  pub include_dirs: Vec<Pattern>,
  pub track_dirs: Vec<Pattern>,
  pub exclude_dirs: Vec<Pattern>,
  pub include_files: Vec<Pattern>,
  pub track_files: Vec<Pattern>,
  pub exclude_files: Vec<Pattern>,
  #[serde(default)]
  pub directory_priority: DirPriority,
}

/// The role of a selected file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
  /// Mirrored, history kept in increments.
  Tracked,
  /// Mirrored only.
  Mirrored,
}

enum Seg {
  AnyDepth,
  One(GlobMatcher),
}

struct Group {
  set: GlobSet,
  patterns: Vec<Pattern>,
  segs: Vec<Vec<Seg>>,
}

fn build_glob(p: &Pattern) -> Result<Glob, Error> {
  GlobBuilder::new(&p.glob)
    .literal_separator(true)
    .backslash_escape(true)
    .build()
    .map_err(|e| Error::config(format!("{}: pattern {:?} cannot compile: {}", p.key, p.source, e.kind())))
}

impl Group {
  fn new(patterns: &[Pattern]) -> Result<Self, Error> {
    let mut b = GlobSetBuilder::new();
    let mut segs = Vec::with_capacity(patterns.len());
    for p in patterns {
      b.add(build_glob(p)?);
      let mut s = Vec::new();
      for part in p.glob.split('/') {
        if part == "**" {
          s.push(Seg::AnyDepth);
        } else {
          let g = GlobBuilder::new(part)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| Error::config(format!("{}: pattern {:?} cannot compile: {}", p.key, p.source, e.kind())))?;
          s.push(Seg::One(g.compile_matcher()));
        }
      }
      segs.push(s);
    }
    let set = b.build().map_err(|e| Error::config(format!("patterns cannot compile: {e}")))?;
    Ok(Self { set, patterns: patterns.to_vec(), segs })
  }

  fn is_empty(&self) -> bool {
    self.patterns.is_empty()
  }

  fn matches(&self, rel: &str) -> bool {
    !self.is_empty() && self.set.is_match(rel)
  }

  fn first_match(&self, rel: &str) -> Option<&Pattern> {
    if self.is_empty() {
      return None;
    }
    self.set.matches(rel).first().map(|&i| &self.patterns[i])
  }

  /// The first one-segment anchored pattern (a bare name like `cache`)
  /// matching the name `name`: it would match at `src` only.
  fn bare_name_match(&self, name: &str) -> Option<&Pattern> {
    self.segs.iter().position(|s| matches!(s.as_slice(), [Seg::One(g)] if g.is_match(name))).map(|i| &self.patterns[i])
  }

  /// Could some pattern match a path strictly below the directory `dir`?
  fn could_match_below(&self, dir: &[&str]) -> bool {
    self.segs.iter().any(|s| prefix_ok(s, dir))
  }
}

fn prefix_ok(pat: &[Seg], dir: &[&str]) -> bool {
  match (pat.first(), dir.first()) {
    (None, _) => false,
    (Some(Seg::AnyDepth), _) => true,
    (Some(Seg::One(_)), None) => true,
    (Some(Seg::One(g)), Some(d)) => g.is_match(d) && prefix_ok(&pat[1..], &dir[1..]),
  }
}

/// Rules compiled for one walk.
pub struct Rules {
  include_dirs: Group,
  track_dirs: Group,
  exclude_dirs: Group,
  include_files: Group,
  track_files: Group,
  exclude_files: Group,
  priority: DirPriority,
}

/// What the directories above a path contribute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirCtx {
  pub in_include: bool,
  pub in_track: bool,
  pub excluded: bool,
}

impl Rules {
  pub fn compile(spec: &RuleSpec) -> Result<Self, Error> {
    Ok(Self {
      include_dirs: Group::new(&spec.include_dirs)?,
      track_dirs: Group::new(&spec.track_dirs)?,
      exclude_dirs: Group::new(&spec.exclude_dirs)?,
      include_files: Group::new(&spec.include_files)?,
      track_files: Group::new(&spec.track_files)?,
      exclude_files: Group::new(&spec.exclude_files)?,
      priority: spec.directory_priority,
    })
  }

  /// The context of directory `rel` (its path relative to `src`), given its parent's.
  pub fn enter_dir(&self, parent: DirCtx, rel: &str) -> DirCtx {
    DirCtx {
      in_include: parent.in_include || self.include_dirs.matches(rel),
      in_track: parent.in_track || self.track_dirs.matches(rel),
      excluded: parent.excluded || self.exclude_dirs.matches(rel),
    }
  }

  /// Whether a walk must look inside directory `rel` with context `ctx`.
  pub fn descend(&self, ctx: DirCtx, rel: &str) -> bool {
    if !ctx.excluded && (ctx.in_include || ctx.in_track) {
      return true;
    }
    let segs: Vec<&str> = rel.split('/').collect();
    if self.include_files.could_match_below(&segs) || self.track_files.could_match_below(&segs) {
      return true;
    }
    !ctx.excluded && (self.include_dirs.could_match_below(&segs) || self.track_dirs.could_match_below(&segs))
  }

  /// The role of a non-directory entry `rel` inside a directory with context `ctx`.
  pub fn classify(&self, ctx: DirCtx, rel: &str) -> Option<Role> {
    if self.include_files.matches(rel) {
      return Some(Role::Mirrored);
    }
    if self.track_files.matches(rel) {
      return Some(Role::Tracked);
    }
    if ctx.excluded || !(ctx.in_include || ctx.in_track) || self.exclude_files.matches(rel) {
      return None;
    }
    Some(match (ctx.in_include, ctx.in_track, self.priority) {
      (_, true, DirPriority::Track) | (false, true, _) => Role::Tracked,
      _ => Role::Mirrored,
    })
  }

  /// Explains the decision for `rel` (a file unless `is_dir`), rule by rule.
  pub fn explain(&self, rel: &str, is_dir: bool) -> Explanation {
    let segs: Vec<&str> = rel.split('/').collect();
    let mut ctx = DirCtx::default();
    let mut steps = Vec::new();
    let dir_count = if is_dir { segs.len() } else { segs.len() - 1 };
    for i in 0..dir_count {
      let dir = segs[..=i].join("/");
      for (group, what) in
        [(&self.include_dirs, "includes directory"), (&self.track_dirs, "tracks directory"), (&self.exclude_dirs, "excludes directory")]
      {
        if let Some(p) = group.first_match(&dir) {
          steps.push(Step { path: dir.clone(), rule: Some(p.clone()), effect: what.to_string() });
        }
      }
      // Users of other tools expect a bare exclude_dirs name to work at any depth: say why not.
      if i > 0 && self.exclude_dirs.first_match(&dir).is_none() {
        if let Some(p) = self.exclude_dirs.bare_name_match(segs[i]) {
          let bare = p.source.trim_start_matches('/');
          steps.push(Step {
            path: dir.clone(),
            rule: Some(p.clone()),
            effect: format!(
              "does not exclude this directory: exclude_dirs patterns are relative to src (only {:?}); {:?} excludes it at any depth",
              p.glob,
              format!("{bare}:rec")
            ),
          });
        }
      }
      ctx = self.enter_dir(ctx, &dir);
    }
    if is_dir {
      let walked = self.descend(ctx, rel);
      let effect = if ctx.excluded {
        "directory is excluded; only include_files/track_files can select files below it"
      } else if ctx.in_include || ctx.in_track {
        "directory is selected: files below it are backed up unless excluded"
      } else if walked {
        "directory is not selected itself, but a pattern may select something below it"
      } else {
        "directory is not selected and no pattern can select anything below it: it is never walked"
      };
      steps.push(Step { path: rel.to_string(), rule: None, effect: effect.to_string() });
      return Explanation { selected: walked, role: None, steps };
    }
    let role = self.classify(ctx, rel);
    if let Some(p) = self.include_files.first_match(rel) {
      steps.push(Step {
        path: rel.into(),
        rule: Some(p.clone()),
        effect: "file rule: mirrored, not tracked (beats directory rules and exclusions)".into(),
      });
    } else if let Some(p) = self.track_files.first_match(rel) {
      steps.push(Step {
        path: rel.into(),
        rule: Some(p.clone()),
        effect: "file rule: tracked (beats directory rules and exclusions)".into(),
      });
    } else if let Some(p) = self.exclude_files.first_match(rel) {
      if !ctx.excluded && (ctx.in_include || ctx.in_track) {
        steps.push(Step { path: rel.into(), rule: Some(p.clone()), effect: "excludes file".into() });
      }
    }
    let effect = match role {
      Some(Role::Tracked) => "selected: tracked (mirrored, history kept in increments)",
      Some(Role::Mirrored) => "selected: mirrored only (no history)",
      None if ctx.excluded => "not selected: inside an excluded directory",
      None if ctx.in_include || ctx.in_track => "not selected: excluded by exclude_files",
      None => "not selected: no rule selects it (default exclusion)",
    };
    steps.push(Step { path: rel.into(), rule: None, effect: effect.into() });
    if ctx.in_include
      && ctx.in_track
      && role.is_some()
      && self.include_files.first_match(rel).is_none()
      && self.track_files.first_match(rel).is_none()
    {
      steps.push(Step {
        path: rel.into(),
        rule: None,
        effect: format!("under both an include dir and a track dir: directory_priority = {:?} decides", self.priority).to_lowercase(),
      });
    }
    Explanation { selected: role.is_some(), role, steps }
  }
}

/// The include/track patterns (files and dirs) under which none of the
/// selected paths `rels` lies: a pattern that selects nothing is usually a
/// typo or a path given relative to the wrong folder, and must not be silent.
/// Each pattern stops at its first match; folder patterns are tried on the
/// distinct folders of the paths only.
pub fn unmatched<'a, 'r>(spec: &'a RuleSpec, rels: impl Iterator<Item = &'r str> + Clone) -> Vec<&'a Pattern> {
  let mut out = Vec::new();
  let file_pats = spec.include_files.iter().chain(&spec.track_files);
  for p in file_pats {
    let Ok(g) = Group::new(std::slice::from_ref(p)) else { continue };
    if !rels.clone().any(|r| g.matches(r)) {
      out.push(p);
    }
  }
  // Each folder a selected path lies in, checked against the dir patterns
  // not matched yet, until none is left (`**` is done at the first folder):
  // a set of every folder of every path cost tens of ms, serially, per million.
  let mut pending: Vec<(&Pattern, Group)> =
    spec.include_dirs.iter().chain(&spec.track_dirs).filter_map(|p| Group::new(std::slice::from_ref(p)).ok().map(|g| (p, g))).collect();
  let mut last = None;
  for r in rels {
    if pending.is_empty() {
      break;
    }
    let Some(dir) = r.rfind('/').map(|i| &r[..i]) else { continue };
    // Sorted paths come folder by folder: a folder just checked is skipped.
    if last == Some(dir) {
      continue;
    }
    last = Some(dir);
    let mut end = 0;
    loop {
      let d = match dir[end..].find('/') {
        Some(i) => &dir[..end + i],
        None => dir,
      };
      pending.retain(|(_, g)| !g.matches(d));
      if d.len() == dir.len() {
        break;
      }
      end = d.len() + 1;
    }
  }
  out.extend(pending.into_iter().map(|(p, _)| p));
  out
}

/// For each bare `exclude_dirs` name (one segment, no `:rec`) that matches
/// no folder directly in `src` but a folder deeper (a bounded probe): the
/// hint that it is anchored (users of other tools expect any depth).
pub fn exclude_dir_hints(src: &std::path::Path, spec: &RuleSpec) -> Vec<String> {
  let mut hints = Vec::new();
  for p in &spec.exclude_dirs {
    if p.glob.contains('/') || p.source.ends_with(":rec") {
      continue;
    }
    let Ok(g) = build_glob(p) else { continue };
    let m = g.compile_matcher();
    let is_dir = |e: &std::fs::DirEntry| e.file_type().is_ok_and(|t| t.is_dir());
    let Ok(top) = std::fs::read_dir(src) else { continue };
    let top: Vec<std::fs::DirEntry> = top.flatten().filter(is_dir).collect();
    if top.iter().any(|e| m.is_match(e.file_name().to_string_lossy().as_ref())) {
      continue;
    }
    // Breadth first, at most 2000 folders: the nearest example.
    let mut queue: std::collections::VecDeque<(std::path::PathBuf, String)> =
      top.iter().map(|e| (e.path(), e.file_name().to_string_lossy().into_owned())).collect();
    let mut seen = 0;
    'probe: while let Some((dir, rel)) = queue.pop_front() {
      seen += 1;
      if seen > 2000 {
        break;
      }
      let Ok(rd) = std::fs::read_dir(&dir) else { continue };
      for e in rd.flatten().filter(is_dir) {
        let name = e.file_name().to_string_lossy().into_owned();
        let sub = format!("{rel}/{name}");
        if m.is_match(&name) {
          hints.push(format!(
            "{}: {:?} matches no folder directly in src but matches deeper (e.g. {:?}); did you mean {:?}?",
            p.key,
            p.source,
            sub,
            format!("{}:rec", p.source.trim_start_matches('/'))
          ));
          break 'probe;
        }
        queue.push_back((e.path(), sub));
      }
    }
  }
  hints
}

/// One line of an explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
  pub path: String,
  pub rule: Option<Pattern>,
  pub effect: String,
}

/// Why a path is or is not selected.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
  pub selected: bool,
  pub role: Option<Role>,
  pub steps: Vec<Step>,
}

#[cfg(test)]
mod tests {
  use super::*;

  fn pat(key: &str, glob: &str) -> Pattern {
    Pattern { key: key.into(), source: glob.into(), glob: glob.into() }
  }

  #[test]
  fn unmatched_patterns() {
    let spec = RuleSpec {
      include_dirs: vec![pat("include_dirs", "docs"), pat("include_dirs", "Docs")],
      track_files: vec![pat("track_files", "**/*.pdf"), pat("track_files", "**/*.txt")],
      ..Default::default()
    };
    let rels = ["docs/a/b.txt", "x.txt"];
    let names: Vec<&str> = unmatched(&spec, rels.iter().copied()).iter().map(|p| p.source.as_str()).collect();
    assert_eq!(names, ["**/*.pdf", "Docs"]);
  }

  /// Folder patterns are tried on every folder of every path, at any depth,
  /// each folder once however many paths it holds.
  #[test]
  fn unmatched_folder_patterns_at_any_depth() {
    let spec = RuleSpec {
      include_dirs: vec![pat("include_dirs", "docs/a"), pat("include_dirs", "q/s")],
      track_dirs: vec![pat("track_dirs", "q/r/s"), pat("track_dirs", "q/r/s/t.txt")],
      ..Default::default()
    };
    let rels = ["docs/a/b.txt", "docs/a/c.txt", "q/r/s/t.txt", "top.txt"];
    let names: Vec<&str> = unmatched(&spec, rels.iter().copied()).iter().map(|p| p.source.as_str()).collect();
    assert_eq!(names, ["q/s", "q/r/s/t.txt"]);
  }

  #[test]
  fn anchored_prefix_prunes() {
    let spec = RuleSpec { include_files: vec![pat("include_files", "Projects/*/data.json")], ..Default::default() };
    let r = Rules::compile(&spec).unwrap();
    let root = DirCtx::default();
    assert!(r.descend(root, "Projects"));
    assert!(r.descend(root, "Projects/a"));
    assert!(!r.descend(root, "Projects/a/b"));
    assert!(!r.descend(root, "Other"));
    assert_eq!(r.classify(root, "Projects/a/data.json"), Some(Role::Mirrored));
    assert_eq!(r.classify(root, "Projects/a/b/data.json"), None);
  }

  #[test]
  fn star_does_not_cross_slash_and_matches_dotfiles() {
    let spec = RuleSpec { track_files: vec![pat("track_files", "*.txt")], ..Default::default() };
    let r = Rules::compile(&spec).unwrap();
    assert_eq!(r.classify(DirCtx::default(), ".a.txt"), Some(Role::Tracked));
    assert_eq!(r.classify(DirCtx::default(), "d/a.txt"), None);
  }

  #[test]
  fn priority_and_exclusion() {
    let spec = RuleSpec {
      include_dirs: vec![pat("include_dirs", "A")],
      track_dirs: vec![pat("track_dirs", "A/B")],
      exclude_files: vec![pat("exclude_files", "**/*.tmp")],
      ..Default::default()
    };
    let r = Rules::compile(&spec).unwrap();
    let a = r.enter_dir(DirCtx::default(), "A");
    let b = r.enter_dir(a, "A/B");
    assert_eq!(r.classify(b, "A/B/x"), Some(Role::Tracked));
    assert_eq!(r.classify(a, "A/x"), Some(Role::Mirrored));
    assert_eq!(r.classify(a, "A/x.tmp"), None);
    let spec2 = RuleSpec { directory_priority: DirPriority::Include, ..spec };
    let r2 = Rules::compile(&spec2).unwrap();
    assert_eq!(r2.classify(b, "A/B/x"), Some(Role::Mirrored));
  }

  #[test]
  fn bad_glob_names_key() {
    let spec = RuleSpec { exclude_files: vec![pat("exclude_files", "[a")], ..Default::default() };
    let e = Rules::compile(&spec).err().unwrap();
    assert!(e.to_string().contains("exclude_files"), "{e}");
  }
}
