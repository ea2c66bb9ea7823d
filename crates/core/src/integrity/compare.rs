//! Comparing the checksum reports of several servers, group by group:
//! files present on some and missing on others, and files whose checksums
//! differ. Paths are relative to each group's root and NFC-normalized, so
//! a macOS (NFD) and a Linux (NFC) copy of the same name agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use crate::error::Error;
use crate::integrity::checksum::{self, Report};

/// One report to compare: which server it comes from, and the file.
#[derive(Debug, Clone)]
pub struct Input {
  pub server: String,
  pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
  pub server: String,
  pub report: String,
  pub start_timestamp: f64,
  pub work_time: f64,
  pub files: u64,
  pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lost {
  pub path: String,
  pub present_on: Vec<String>,
  pub missing_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
  pub path: String,
  pub algorithm: String,
  /// server → hex digest
  pub sums: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResult {
  pub group: String,
  pub servers: Vec<ServerInfo>,
  pub lost_files: Vec<Lost>,
  pub mismatched: Vec<Mismatch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareResult {
  pub groups: Vec<GroupResult>,
}

/// Reads every report (digests checked) and compares them per group.
pub fn compare(inputs: &[Input]) -> Result<CompareResult, Error> {
  let reports: Vec<Result<Report, Error>> = inputs.par_iter().map(|i| checksum::read_report(&i.path, None)).collect();
  let mut by_group: BTreeMap<String, Vec<(&Input, Report)>> = BTreeMap::new();
  for (i, r) in inputs.iter().zip(reports) {
    let r = r?;
    by_group.entry(r.group.clone()).or_default().push((i, r));
  }
  let mut groups = Vec::new();
  for (group, reps) in by_group {
    let servers: Vec<ServerInfo> = reps
      .iter()
      .map(|(i, r)| ServerInfo {
        server: i.server.clone(),
        report: i.path.to_string_lossy().into_owned(),
        start_timestamp: r.start_timestamp,
        work_time: r.work_time,
        files: r.files.len() as u64,
        errors: r.errors.len() as u64,
      })
      .collect();
    // path (NFC) → per report: algorithm → digest
    let mut all: BTreeMap<String, Vec<Option<HashMap<&str, String>>>> = BTreeMap::new();
    // The original service does not list symlinks (`find -type f`): they are
    // compared (by target) only when every report of the group records them.
    let links = reps.iter().all(|(_, r)| r.records_symlinks);
    for (k, (_, r)) in reps.iter().enumerate() {
      for f in r.files.iter() {
        if f.link().is_some() && !links {
          continue;
        }
        let key: String = f.rel().nfc().collect();
        let slot = all.entry(key).or_insert_with(|| vec![None; reps.len()]);
        let sums: HashMap<&str, String> = match f.link() {
          Some(t) => HashMap::from([("symlink", t.to_string())]),
          None => r.algorithms.iter().enumerate().filter_map(|(i, a)| f.sum(i).map(|s| (a.as_str(), s))).collect(),
        };
        slot[k] = Some(sums);
      }
    }
    let mut lost = Vec::new();
    let mut mismatched = Vec::new();
    if reps.len() > 1 {
      for (path, slots) in &all {
        let present: Vec<String> = slots.iter().zip(&reps).filter(|(s, _)| s.is_some()).map(|(_, (i, _))| i.server.clone()).collect();
        if present.len() < reps.len() {
          let missing = slots.iter().zip(&reps).filter(|(s, _)| s.is_none()).map(|(_, (i, _))| i.server.clone()).collect();
          lost.push(Lost { path: path.clone(), present_on: present, missing_on: missing });
        }
        let algos: BTreeSet<&str> = slots.iter().flatten().flat_map(|m| m.keys().copied()).collect();
        for a in algos {
          let vals: Vec<(String, &str)> = slots
            .iter()
            .zip(&reps)
            .filter_map(|(s, (i, _))| s.as_ref().and_then(|m| m.get(a)).map(|v| (i.server.clone(), v.as_str())))
            .collect();
          if vals.len() > 1 && vals.iter().any(|(_, v)| *v != vals[0].1) {
            mismatched.push(Mismatch {
              path: path.clone(),
              algorithm: a.to_string(),
              sums: vals.into_iter().map(|(s, v)| (s, v.to_string())).collect(),
            });
            break;
          }
        }
      }
    }
    groups.push(GroupResult { group, servers, lost_files: lost, mismatched });
  }
  Ok(CompareResult { groups })
}
