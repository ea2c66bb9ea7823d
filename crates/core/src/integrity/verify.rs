//! Verifying files against a checksum report, and a backup folder against
//! the SHA-256 its increments and mirror state record.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::backup::increments::{self, safe_rel, DamagedMeta};
use crate::backup::meta::PendingRun;
use crate::error::Error;
use crate::fs::util;
use crate::integrity::checksum::batch::{self, Batch};
use crate::integrity::checksum::{self, Algo, Files, ReadOptions, Report};
use crate::integrity::digest_cache::DigestCache;
use crate::integrity::scrub;
use crate::layout::Layout;
use crate::progress::{Phase, Progress};

/// The verdict on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
  Ok,
  /// Content differs (and size or mtime changed too: an edit).
  Failed,
  /// Content differs while size and mtime are unchanged: bit rot.
  Corrupt,
  Missing,
  /// Present, not in the report.
  New,
  /// Unreadable.
  Error,
  /// `verify --backup`: a version without a recorded hash (metadata of the
  /// original backup.py) whose stored file has another size or mtime than
  /// the metadata says: the original overwrote the mirror file in place, so
  /// this increment holds a later version.
  Overwritten,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
  pub path: String,
  pub status: Status,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResult {
  pub root: String,
  pub algorithms: Vec<String>,
  pub incremental: bool,
  pub digest: Option<String>,
  pub signature_ed25519: Option<String>,
  /// How the Ed25519 signature was checked (see [`SignatureCheck`]).
  pub signature_check: SignatureCheck,
  /// The report's SHA3-512 was not computed again: the cache of verified
  /// digests holds it for this very file (size, mtime, ctime, inode and
  /// device unchanged since it was checked; `incremental` only).
  pub signature_cached: bool,
  /// The report file was not read at all: its parsed form came from the
  /// cache beside the verified digest (same key; `incremental` only).
  pub report_cached: bool,
  pub files: u64,
  /// Files trusted without reading (`incremental`: size, mtime, inode and ctime unchanged).
  pub trusted: u64,
  pub bytes_read: u64,
  pub counts: HashMap<String, u64>,
  /// Every path with its verdict, sorted by path.
  pub results: Vec<Verdict>,
}

/// How a report's Ed25519 signature was checked. Only `pubkey` says who
/// signed: a key embedded in the report proves that nothing changed after
/// signing, but whoever altered the report could have re-signed it with a
/// key of their own and embedded that.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureCheck {
  /// The report carries no Ed25519 signature.
  #[default]
  Unsigned,
  /// Valid for the public key embedded in the report.
  EmbeddedKey,
  /// Signed, but no key embedded and none given: not checked.
  NoKey,
  /// Valid for the key the caller gave (`--pubkey`).
  Pubkey,
}

/// Checks the Ed25519 signature of the report's digest, before any file is
/// read: with `key` the report must be signed by it; without, a signature
/// that is present must at least match the key embedded beside it (a
/// signature that no longer matches means the report was altered after
/// signing, or damaged). Errors are `Corrupt` (exit 2).
pub fn check_signature(rep: &Report, path: &Path, key: Option<&[u8]>) -> Result<SignatureCheck, Error> {
  const WHO: &str = "only `--pubkey` proves who signed a report";
  let bad = |m: String| Error::corrupt(path, m);
  let Some(sig) = rep.signature_ed25519.as_deref() else {
    return match key {
      Some(_) => Err(bad("the report has no Ed25519 signature (made without --sign-key?); refusing it".into())),
      None => Ok(SignatureCheck::Unsigned),
    };
  };
  let sig = hex::decode(sig.trim()).map_err(|_| bad("the report's Ed25519 signature is not hex: it is damaged; refusing it".into()))?;
  let digest = hex::decode(rep.digest.as_deref().unwrap_or("")).map_err(|_| bad("the report has no digest".into()))?;
  let check = |k: &[u8]| ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, k).verify(&digest, &sig).is_ok();
  if let Some(k) = key {
    return if check(k) {
      Ok(SignatureCheck::Pubkey)
    } else {
      Err(bad("the Ed25519 signature does not match this public key: the report was not signed by it, or was altered".into()))
    };
  }
  let Some(pem) = rep.public_key.as_deref() else { return Ok(SignatureCheck::NoKey) };
  let embedded = ed25519_from_pem(pem)
    .ok_or_else(|| bad(format!("the report's embedded public key is not an Ed25519 key (damaged?); refusing it ({WHO})")))?;
  if check(&embedded) {
    Ok(SignatureCheck::EmbeddedKey)
  } else {
    Err(bad(format!(
      "the report's Ed25519 signature does not match the public key embedded in it: the report was altered after it was signed, or damaged; refusing it ({WHO})"
    )))
  }
}

/// The raw 32-byte key of an Ed25519 SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
fn ed25519_from_pem(pem: &str) -> Option<Vec<u8>> {
  // SPKI of an Ed25519 key: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (32 bytes) }.
  const PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
  let body: String = pem.lines().filter(|l| !l.starts_with("-----")).flat_map(|l| l.trim().chars()).collect();
  let der = base64_decode(&body)?;
  (der.len() == 44 && der[..12] == PREFIX).then(|| der[12..].to_vec())
}

/// Standard base64 with padding (PEM bodies); None if anything else is in it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
  let val = |c: u8| -> Option<u32> {
    Some(match c {
      b'A'..=b'Z' => c - b'A',
      b'a'..=b'z' => c - b'a' + 26,
      b'0'..=b'9' => c - b'0' + 52,
      b'+' => 62,
      b'/' => 63,
      _ => return None,
    } as u32)
  };
  let s = s.trim_end_matches('=').as_bytes();
  let mut out = Vec::with_capacity(s.len() * 3 / 4);
  let (mut acc, mut bits) = (0u32, 0u32);
  for &c in s {
    acc = (acc << 6) | val(c)?;
    bits += 6;
    if bits >= 8 {
      bits -= 8;
      out.push((acc >> bits) as u8);
      acc &= (1 << bits) - 1;
    }
  }
  Some(out)
}

/// Reads and checks a report: the digest first (refused on mismatch).
pub fn load(report: &Path, algo_hint: Option<&str>) -> Result<Report, Error> {
  let hint = algo_hint.map(Algo::parse).transpose()?;
  checksum::read_report(report, hint)
}

/// What `backup verify REPORT` is asked.
#[derive(Default, Clone)]
pub struct VerifyOptions<'a> {
  /// The folder to check (default: the report's `root_data`).
  pub root: Option<PathBuf>,
  /// For check-line reports whose digest length is ambiguous.
  pub algo_hint: Option<&'a str>,
  /// The raw Ed25519 key the report must be signed by (`--pubkey`).
  pub pubkey: Option<&'a [u8]>,
  pub incremental: bool,
  pub all: bool,
  pub threads: usize,
  /// Where verified report digests are remembered ([`DigestCache::user`]);
  /// only `incremental` trusts an entry, every verify refreshes it.
  pub cache: Option<DigestCache>,
}

/// What a walk found (sorted by path), and the paths it could not read with why.
type Listing = (Files, Vec<(String, String)>);

/// A walk of the folder to verify, run while the report is still being read.
type Walked = (PathBuf, Result<Listing, Error>);

/// Walks `root` on `pool` (listing and `lstat` only: no file is opened),
/// and sorts what it found by path (on the pool, while the report may
/// still be read).
fn walk_root(root: &Path, pool: &rayon::ThreadPool, progress: &Progress) -> Result<Listing, Error> {
  let md = fs::metadata(root).map_err(|e| Error::io(root, "cannot read the folder to verify", &e))?;
  if !md.is_dir() {
    return Err(Error::config(format!("{} is not a folder", root.display())));
  }
  progress.set_phase(Phase::Scan);
  let (mut found, errors) = pool.install(|| checksum::walk_compact(root, progress));
  if found.overflow {
    return Err(Error::config(format!("{} holds more than 4 GiB of paths; verify it in parts (--root)", root.display())));
  }
  pool.install(|| found.sort_by_path());
  Ok((found, errors))
}

/// With `AXIOMATIC_TIMINGS=1`: the time since `t0` and the memory at the end of a phase.
fn timing(what: &str, t0: std::time::Instant) {
  crate::progress::timing(&format!("verify: {what}"), t0);
}

/// `backup verify REPORT`: reads the report and walks the folder at the same
/// time (the walk starts on the pool as soon as the root is known: `--root`,
/// or the report's `root_data` once parsed, or at once from the cache of
/// parsed reports), then checks the digest and the Ed25519 signature, and
/// only then opens any file. With `incremental` an unchanged report file
/// (size, mtime, ctime, inode, device) is not read at all: its parsed form
/// and verified digest come from the cache (see
/// [`crate::integrity::digest_cache`]); a full verify parses and hashes it.
pub fn verify_report(path: &Path, o: &VerifyOptions, progress: &Progress) -> Result<VerifyResult, Error> {
  let t0 = std::time::Instant::now();
  let hint = o.algo_hint.map(Algo::parse).transpose()?;
  let pool = crate::backup::engine::build_pool(o.threads)?;
  std::thread::scope(|s| {
    let mut walker: Option<std::thread::ScopedJoinHandle<'_, Walked>> = None;
    let pool = &pool;
    let mut start = |root: &str| {
      if walker.is_none() {
        let root = PathBuf::from(root);
        walker = Some(s.spawn(move || {
          let r = walk_root(&root, pool, progress);
          timing("walk and its sort", t0);
          (root, r)
        }));
      }
    };
    if let Some(r) = &o.root {
      start(&r.to_string_lossy());
    }
    let opts = ReadOptions { cache: o.cache.as_ref(), trust_cache: o.incremental, on_root: Some(&mut start) };
    let rep = checksum::read_report_with(path, hint, opts).map(|mut rep| {
      timing(if rep.parsed_cached { "report loaded from the cache" } else { "report parsed" }, t0);
      // The merge needs the report in path order: sorted here, beside the walk.
      pool.install(|| rep.files.sort_by_path());
      if let (Some(c), Some(k), false) = (&o.cache, rep.key, rep.parsed_cached) {
        // `--incremental` found no usable entry: written anew; a full verify keeps one of this key.
        c.store_parsed(&k, &rep, !o.incremental);
        timing("parsed report cached", t0);
      }
      rep
    });
    let walked = walker.map(|w| w.join().expect("the walk panicked"));
    let rep = rep?;
    let check = check_signature(&rep, path, o.pubkey)?;
    let root = o.root.clone().unwrap_or_else(|| PathBuf::from(&rep.root_data));
    // The walk that ran is used when it was of this root (a report naming
    // `root_data` twice, or a cached root that was not the report's, is walked again).
    let (found, walk_errors) = match walked {
      Some((r, res)) if r == root => res?,
      _ => walk_root(&root, pool, progress)?,
    };
    let mut r = verify_walked(&rep, &root, found, walk_errors, o.incremental, o.all, pool, progress)?;
    timing("verified", t0);
    r.signature_check = check;
    Ok(r)
  })
}

/// `backup verify REPORT [--root DIR] [--incremental]` for a report already
/// read. `results` lists every path with `all`, else only the problems (a
/// million `OK` lines are what `sha256sum -c` prints, but rarely what a
/// caller wants).
pub fn verify(rep: &Report, root: &Path, incremental: bool, all: bool, threads: usize, progress: &Progress) -> Result<VerifyResult, Error> {
  let pool = crate::backup::engine::build_pool(threads)?;
  let (found, walk_errors) = walk_root(root, &pool, progress)?;
  verify_walked(rep, root, found, walk_errors, incremental, all, &pool, progress)
}

/// The merge of report and walk, and the hashing of what is not trusted.
#[allow(clippy::too_many_arguments)]
fn verify_walked(
  rep: &Report,
  root: &Path,
  found: Files,
  walk_errors: Vec<(String, String)>,
  incremental: bool,
  all: bool,
  pool: &rayon::ThreadPool,
  progress: &Progress,
) -> Result<VerifyResult, Error> {
  let algos: Vec<Option<Algo>> = rep.algorithms.iter().map(|a| Algo::parse(a).ok()).collect();
  if algos.iter().all(Option::is_none) {
    return Err(Error::corrupt(Path::new(&rep.root_data), format!("the report uses no known algorithm ({:?})", rep.algorithms)));
  }
  // Both sides in path order, merged (no hash maps of a million paths).
  debug_assert!(found.is_sorted());
  let ri: Vec<u32> = if rep.files.is_sorted() {
    Vec::new()
  } else {
    let mut ri: Vec<u32> = (0..rep.files.len() as u32).collect();
    pool.install(|| ri.par_sort_unstable_by(|&a, &b| rep.files.path_bytes(a).cmp(rep.files.path_bytes(b))));
    ri
  };
  let nrep = rep.files.len();
  let at = |i: usize| if ri.is_empty() { i as u32 } else { ri[i] };
  // Check-line reports and the original service's (`find -type f`) cannot list symlinks.
  let no_symlinks = !rep.records_symlinks;
  let mut pairs: Vec<(u32, Option<u32>)> = Vec::with_capacity(nrep);
  let mut new_files: Vec<u32> = Vec::new();
  let (mut i, mut j) = (0, 0);
  let nfound = found.len();
  while i < nrep || j < nfound {
    let want = (i < nrep).then(|| rep.files.path_bytes(at(i)));
    let have = (j < nfound).then(|| found.path_bytes(j as u32));
    match (want, have) {
      (Some(w), Some(h)) if w == h => {
        pairs.push((at(i), Some(j as u32)));
        i += 1;
        j += 1;
      }
      (Some(w), Some(h)) if w < h => {
        pairs.push((at(i), None));
        i += 1;
      }
      (Some(_), None) => {
        pairs.push((at(i), None));
        i += 1;
      }
      _ => {
        // A report that cannot list symlinks does not make them NEW.
        if !(no_symlinks && found.get(j).link().is_some()) {
          new_files.push(j as u32);
        }
        j += 1;
      }
    }
  }
  drop(ri);
  let used: Vec<Algo> = algos.iter().flatten().copied().collect();
  progress.set_phase(Phase::Apply);
  progress.ops_total.store(nrep as u64, Relaxed);
  let read = std::sync::atomic::AtomicU64::new(0);
  let frec = |c: u32| &found.recs[c as usize];
  // `--incremental`: what is unchanged (size, mtime_ns, ctime_ns, inode) is
  // trusted first, in one pass: only the rest is sorted and hashed.
  let mut trusted_ok: Vec<u32> = Vec::new();
  let mut trusted = 0u64;
  if incremental {
    pairs.retain(|&(wi, cur)| {
      let want = rep.files.get(wi as usize);
      let keep = match cur {
        Some(c) if want.link().is_none() => {
          let f = frec(c);
          !(want.stat() == Some((f.mtime_ns, f.ctime_ns, f.ino)) && want.size() == Some(f.size))
        }
        _ => true,
      };
      if !keep {
        trusted += 1;
        if all {
          trusted_ok.push(wi);
        }
      }
      keep
    });
    progress.ops_done.fetch_add(trusted, Relaxed);
  }
  // Largest first, as checksum does.
  pairs.sort_by_key(|(_, f)| std::cmp::Reverse(f.map_or(0, |f| frec(f).size)));
  let oks = std::sync::atomic::AtomicU64::new(if all { 0 } else { trusted });
  // Only problems are kept (unless `all`): a million OKs are a count.
  // One file's verdict (None: an OK that is only counted). `hashed`: its
  // digests when a batch computed them (see below), else read here.
  let check = |wi: u32, cur: Option<u32>, hashed: Option<Result<Vec<String>, String>>| -> Option<(u32, Status, Option<String>)> {
    let want = rep.files.get(wi as usize);
    let out = match cur {
      None => (Status::Missing, None),
      // A recorded symlink is checked by its target text (reports list symlinks in `symlinks` only).
      Some(c) if want.link().is_some() => match found.get(c as usize).link() {
        Some(t) if Some(t) == want.link() => (Status::Ok, None),
        Some(t) => (Status::Failed, Some(format!("symlink target is now {t:?}"))),
        None => (Status::Failed, Some("was a symlink, now a file".into())),
      },
      Some(c) => {
        let cur = frec(c);
        let link = found.get(c as usize).link();
        let same_meta = want.size().is_none_or(|s| s == cur.size) && want.stat().is_none_or(|(m, _, _)| m == cur.mtime_ns);
        let got = match (hashed, link) {
          (Some(got), _) => got,
          (None, Some(t)) => {
            let mut h = checksum::Multi::new(&used);
            h.update(t.as_bytes());
            Ok(h.finish())
          }
          (None, None) => checksum::hash_file(&root.join(found.rel(c)), &used, progress)
            .map(|(d, _)| checksum::digests_hex(&used, &d))
            .map_err(|e| e.to_string()),
        };
        match got {
          Err(e) => (Status::Error, Some(e)),
          Ok(sums) => {
            if link.is_none() {
              read.fetch_add(cur.size, Relaxed);
            }
            let mut k = 0;
            let mut differs = false;
            for (i, a) in algos.iter().enumerate() {
              if a.is_none() {
                continue;
              }
              if want.sum(i).is_some_and(|w| w != sums[k]) {
                differs = true;
              }
              k += 1;
            }
            if !differs {
              (Status::Ok, None)
            } else if same_meta && want.stat().is_some() {
              (Status::Corrupt, Some("content changed while size and mtime did not: bit rot or tampering".into()))
            } else {
              (Status::Failed, None)
            }
          }
        }
      }
    };
    progress.ops_done.fetch_add(1, Relaxed);
    if out.0 == Status::Ok && !all {
      oks.fetch_add(1, Relaxed);
      return None;
    }
    Some((wi, out.0, out.1))
  };
  // Small files (the tail of the largest-first order) are read in batches
  // whose MD5 runs on SIMD lanes, as `checksum` does (`checksum::Batch`);
  // both parts run at once, so no core idles on the last large file.
  let small_from =
    if batch::helps(&used) { pairs.partition_point(|(_, f)| f.is_some_and(|f| !batch::takes(frec(f).size))) } else { pairs.len() };
  let (large, small) = pairs.split_at(small_from);
  let mut outcomes: Vec<(u32, Status, Option<String>)> = pool.install(|| {
    let (mut large, small) = rayon::join(
      || large.par_iter().filter_map(|&(wi, cur)| check(wi, cur, None)).collect::<Vec<_>>(),
      || {
        if small.is_empty() {
          return Vec::new(); // no MD5 in the report: no batches
        }
        small
          .par_chunks(64)
          .map_init(
            || Batch::new(&used).expect("the algorithms hold MD5"),
            |batch, chunk| {
              let mut out = Vec::new();
              for &(wi, cur) in chunk {
                match cur {
                  Some(c) if rep.files.get(wi as usize).link().is_none() && found.get(c as usize).link().is_none() => {
                    if let Some((wi, c)) = batch.add_path((wi, c), &root.join(found.rel(c)), progress) {
                      out.extend(check(wi, Some(c), None));
                    }
                  }
                  _ => out.extend(check(wi, cur, None)),
                }
              }
              batch.finish(|(wi, c), got| out.extend(check(wi, Some(c), Some(got.map(|d| checksum::digests_hex(&used, &d))))));
              out
            },
          )
          .flatten_iter()
          .collect::<Vec<_>>()
      },
    );
    large.extend(small);
    large
  });
  drop(pairs);
  outcomes.extend(trusted_ok.into_iter().map(|wi| (wi, Status::Ok, None)));
  let mut counts: HashMap<String, u64> = HashMap::new();
  let oks = oks.into_inner();
  let name = |s: Status| serde_json::to_value(s).unwrap().as_str().unwrap().to_string();
  let mut verdicts: Vec<Verdict> = Vec::new();
  if oks > 0 {
    counts.insert(name(Status::Ok), oks);
  }
  for (wi, status, detail) in outcomes {
    *counts.entry(name(status)).or_insert(0) += 1;
    verdicts.push(Verdict { path: rep.files.rel(wi).to_string(), status, detail });
  }
  for j in new_files {
    *counts.entry(name(Status::New)).or_insert(0) += 1;
    verdicts.push(Verdict { path: found.rel(j).to_string(), status: Status::New, detail: None });
  }
  for (p, e) in walk_errors {
    *counts.entry(name(Status::Error)).or_insert(0) += 1;
    verdicts.push(Verdict { path: p, status: Status::Error, detail: Some(e) });
  }
  verdicts.sort_by(|a, b| a.path.cmp(&b.path));
  Ok(VerifyResult {
    root: root.to_string_lossy().into_owned(),
    algorithms: rep.algorithms.clone(),
    incremental,
    digest: rep.digest.clone(),
    signature_ed25519: rep.signature_ed25519.clone(),
    signature_check: SignatureCheck::Unsigned,
    signature_cached: rep.digest_cached,
    report_cached: rep.parsed_cached,
    files: rep.files.len() as u64,
    trusted,
    bytes_read: read.into_inner(),
    counts,
    results: verdicts,
  })
}

/// One problem found in a backup folder.
#[derive(Debug, Clone, Serialize)]
pub struct BackupProblem {
  /// `mirror` or the increment name.
  pub location: String,
  pub path: String,
  /// `CORRUPT`, `MISSING`, `ERROR`.
  pub status: Status,
  pub detail: Option<String>,
  /// With repair: `repaired`, or why not.
  pub repair: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupVerifyResult {
  pub increments: u64,
  pub files_checked: u64,
  /// Distinct inodes hashed (hardlinked versions are read once).
  pub inodes_read: u64,
  pub bytes_read: u64,
  /// Untracked mirror files: no hash is recorded for them.
  pub unverifiable: u64,
  /// Versions without a recorded hash (metadata of the original backup.py)
  /// whose stored file has the recorded size and mtime: checked by those
  /// only (an OVERWRITTEN problem otherwise).
  pub size_mtime_only: u64,
  pub problems: Vec<BackupProblem>,
  pub repaired: u64,
  /// Increments whose metadata is missing or damaged: the file, what is
  /// wrong, the command that rebuilds it. Their readable entries were checked.
  pub damaged: Vec<DamagedMeta>,
  /// The mirror state could not be read (the mirror was not checked).
  pub state_error: Option<String>,
  /// An interrupted run the next `backup run` finishes.
  pub pending_run: Option<PendingRun>,
  /// Mirror files that run already replaced or removed: not checked (no
  /// hash is recorded for them yet), never reported as corrupt or missing.
  pub pending: u64,
  /// `--scrub`: what share was chosen and whether it was finished.
  pub scrub: Option<ScrubRun>,
  /// `--increment NAME`: only that increment was checked (not the mirror).
  pub only: Option<String>,
  /// The scrub record could not be read or written (the check itself is
  /// complete; only the "last verified" times were not kept).
  pub scrub_state_error: Option<String>,
}

/// What one scrub chose and did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrubRun {
  /// The share asked for (0 < fraction <= 1).
  pub fraction: f64,
  /// Versions with a recorded hash in the backup.
  pub total: u64,
  /// The least recently verified ones chosen for this scrub.
  pub selected: u64,
  /// Of the chosen, the ones never verified before.
  pub never_verified_before: u64,
  /// Versions never verified after this scrub.
  pub never_verified_after: u64,
  /// Stopped before the end (aborted): what was checked is recorded and the
  /// next scrub starts with what was not.
  pub stopped: bool,
}

/// What `verify --dst` is asked besides the folder.
#[derive(Debug, Clone, Default)]
pub struct BackupVerifyOptions {
  /// `--repair --source SRC`.
  pub source: Option<PathBuf>,
  pub threads: usize,
  /// `--scrub N%`: check only this share (0 < f <= 1) of the versions, the
  /// least recently verified first.
  pub scrub: Option<f64>,
  /// Check only this increment's versions (not the mirror).
  pub only: Option<String>,
  /// "Now" in ms since the epoch (a test's fake clock); default the clock.
  pub now_ms: Option<i64>,
  /// Keep the scrub record (`.axiomatic/scrub.json`) up to date.
  pub record: bool,
}

struct Check {
  location: String,
  rel: String,
  path: PathBuf,
  sha: String,
}

/// `backup verify --backup DST [--repair --source SRC]`: every stored
/// version and tracked mirror file against its recorded SHA-256. Each inode
/// is read once. With `source`, a corrupt mirror file is replaced (temp +
/// rename) from the source when the source still has the recorded hash,
/// and increment versions of that same content that were corrupt are
/// relinked to the repaired copy.
pub fn verify_backup(dst: &Path, source: Option<&Path>, threads: usize, progress: &Progress) -> Result<BackupVerifyResult, Error> {
  let o = BackupVerifyOptions { source: source.map(Path::to_path_buf), threads, record: true, ..Default::default() };
  verify_backup_with(dst, &o, progress)
}

/// The versions checked between two saves of the scrub record: a twentieth
/// of the chosen ones (at least 64), so a killed scrub loses little and a
/// big one writes the record about twenty times.
fn scrub_chunk(selected: usize) -> usize {
  (selected / 20).max(64)
}

/// [`verify_backup`] with every option: `scrub` checks the least recently
/// verified share of the versions (never-verified ones first, then by path)
/// and records each checked version's time after every chunk, so an
/// aborted or killed scrub resumes; `only` checks one increment. A full
/// verify that finds no corruption forgets the corruption remembered; any
/// CORRUPT or MISSING version found is remembered (`integrity::scrub`).
pub fn verify_backup_with(dst: &Path, o: &BackupVerifyOptions, progress: &Progress) -> Result<BackupVerifyResult, Error> {
  let source = o.source.as_deref();
  let threads = o.threads;
  let now = o
    .now_ms
    .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0));
  if let Some(f) = o.scrub {
    if !(f > 0.0 && f <= 1.0) {
      return Err(Error::config(format!("--scrub must be a share from 0% (excluded) to 100%, got {}%", f * 100.0)));
    }
  }
  let l = Layout::new(dst);
  let mut incs = increments::list(dst)?;
  if let Some(name) = &o.only {
    incs.retain(|i| &i.name == name);
    if incs.is_empty() {
      return Err(Error::config(format!("there is no increment {name:?} in {}; see `backup list`", dst.display())));
    }
  }
  let mut checks = Vec::new();
  let mut res = BackupVerifyResult { increments: incs.len() as u64, only: o.only.clone(), ..Default::default() };
  // Damaged metadata is reported, and everything else is still checked
  // (the entries of a cut-short catalog that could be read, too).
  for inc in &incs {
    let bytes = match increments::read_bytes(inc) {
      Ok(Some(b)) => b,
      Ok(None) => {
        res.damaged.push(DamagedMeta::missing(inc));
        continue;
      }
      Err(e) => {
        res.damaged.push(DamagedMeta::from_error(inc, &e));
        continue;
      }
    };
    let parsed = increments::parse(&inc.meta_path(), &bytes, &mut |p: &str, e: increments::EntryRef| {
      if !safe_rel(p) {
        return;
      }
      let path = inc.dir.join(e.folder()).join(crate::fs::names::to_path(p));
      match e.sha256.as_deref() {
        Some(sha) => checks.push(Check { location: inc.name.clone(), rel: p.to_string(), path, sha: sha.to_string() }),
        None => match size_mtime_check(&path, e.size, e.mtime_ns()) {
          None => res.size_mtime_only += 1,
          Some((status, detail)) => {
            res.problems.push(BackupProblem { location: inc.name.clone(), path: p.to_string(), status, detail: Some(detail), repair: None })
          }
        },
      }
    });
    if let Err(e) = parsed {
      res.damaged.push(DamagedMeta::from_error(inc, &e));
    }
  }
  // A run that was interrupted may have replaced or removed mirror files
  // already: those are pending (its journal has no hash for them yet; the
  // next run finishes and records them), not corrupt or missing.
  res.pending_run = PendingRun::read(&l.journal);
  let state = if o.only.is_some() { Ok(Vec::new()) } else { crate::backup::adopt::read_state(&l, false).map(|(st, _)| st) };
  match state {
    Ok(st) => {
      for s in st {
        if let Some(run) = &res.pending_run {
          if safe_rel(s.rel())
            && run.applied(s.rel(), &l.mirror.join(crate::fs::names::to_path(s.rel())), Some((s.size, s.mtime_ns))).is_some()
          {
            res.pending += 1;
            continue;
          }
        }
        match s.sha() {
          Some(h) if safe_rel(s.rel()) => checks.push(Check {
            location: "mirror".into(),
            rel: s.rel().to_string(),
            path: l.mirror.join(crate::fs::names::to_path(s.rel())),
            sha: hex::encode(h),
          }),
          _ => res.unverifiable += 1,
        }
      }
    }
    Err(e) => res.state_error = Some(format!("{}; the mirror was not checked (`backup recreate` rebuilds the state)", e.message)),
  }
  // The scrub record: the order of a scrub, and the times of what is checked (a scrub always keeps it).
  let keep = o.record || o.scrub.is_some();
  let (mut record, record_error) = if keep { scrub::ScrubState::load(dst) } else { Default::default() };
  res.scrub_state_error = record_error;
  let all_keys: Vec<String> = checks.iter().map(|c| scrub::key(&c.location, &c.rel)).collect();
  if o.only.is_none() && res.state_error.is_none() && res.damaged.is_empty() {
    // Versions no longer stored (pruned increments) are forgotten; not while some cannot be listed.
    let live: std::collections::HashSet<&str> = all_keys.iter().map(String::as_str).collect();
    record.verified.retain(|k, _| live.contains(k.as_str()));
  }
  let total = checks.len();
  let mut order: Vec<usize> = (0..total).collect();
  if let Some(f) = o.scrub {
    // Least recently verified first (never verified before everything), then by location and path.
    let last = |i: usize| record.verified.get(&all_keys[i]).copied().unwrap_or(i64::MIN);
    order.sort_by(|&a, &b| (last(a), &checks[a].location, &checks[a].rel).cmp(&(last(b), &checks[b].location, &checks[b].rel)));
    let take = ((total as f64 * f).ceil() as usize).min(total);
    order.truncate(take);
    let never = order.iter().filter(|&&i| !record.verified.contains_key(&all_keys[i])).count();
    res.scrub =
      Some(ScrubRun { fraction: f, total: total as u64, selected: take as u64, never_verified_before: never as u64, ..Default::default() });
  }
  let keys: Vec<String> = order.iter().map(|&i| all_keys[i].clone()).collect();
  let mut checks: Vec<Check> = {
    let mut slots: Vec<Option<Check>> = checks.into_iter().map(Some).collect();
    order.iter().map(|&i| slots[i].take().expect("each chosen once")).collect()
  };
  progress.ops_total.store(checks.len() as u64, Relaxed);
  progress.set_phase(Phase::Apply);
  let pool = crate::backup::engine::build_pool(threads)?;
  // (dev, ino) → sha, so hardlinks are read once.
  let seen: Mutex<HashMap<(u64, u64), String>> = Mutex::new(HashMap::new());
  let bytes = std::sync::atomic::AtomicU64::new(0);
  // A scrub saves the record after every chunk; a full verify once, at the end.
  let chunk = if o.scrub.is_some() { scrub_chunk(checks.len()) } else { checks.len().max(1) };
  let mut outcomes: Vec<Option<(Status, String)>> = Vec::with_capacity(checks.len());
  for (n, part) in checks.chunks(chunk).enumerate() {
    if progress.is_aborted() {
      if let Some(s) = res.scrub.as_mut() {
        s.stopped = true;
      }
      break;
    }
    outcomes.extend(check_chunk(part, &pool, &seen, &bytes, progress));
    if !keep {
      continue;
    }
    for k in &keys[n * chunk..n * chunk + part.len()] {
      record.verified.insert(k.clone(), now);
    }
    if o.scrub.is_some() {
      save_record(dst, &mut record, &all_keys, now, &mut res);
    }
  }
  checks.truncate(outcomes.len());
  res.files_checked = checks.len() as u64;
  res.inodes_read = seen.lock().unwrap().len() as u64;
  res.bytes_read = bytes.into_inner();
  let mut repaired_inodes: HashMap<String, PathBuf> = HashMap::new();
  // Mirror first, so increment versions can be relinked to a repaired copy.
  let mut idx: Vec<usize> = (0..checks.len()).filter(|&i| outcomes[i].is_some()).collect();
  idx.sort_by_key(|&i| checks[i].location != "mirror");
  for i in idx {
    let c = &checks[i];
    let (status, detail) = outcomes[i].clone().unwrap();
    let mut repair = None;
    if let Some(src) = source {
      repair = Some(if c.location == "mirror" {
        match repair_mirror(&l, src, &c.rel, &c.sha) {
          Ok(()) => {
            res.repaired += 1;
            repaired_inodes.insert(format!("{}\0{}", c.rel, c.sha), c.path.clone());
            "repaired from the source".to_string()
          }
          Err(why) => why,
        }
      } else if status == Status::Corrupt || status == Status::Missing {
        match repaired_inodes.get(&format!("{}\0{}", c.rel, c.sha)) {
          Some(good) => match relink(good, &c.path) {
            Ok(()) => {
              res.repaired += 1;
              "relinked to the repaired mirror copy".to_string()
            }
            Err(e) => format!("cannot relink: {e}"),
          },
          None => "cannot be repaired: no intact copy of this version (the source and the mirror hold other content)".to_string(),
        }
      } else {
        "cannot be repaired".to_string()
      });
    }
    res.problems.push(BackupProblem { location: c.location.clone(), path: c.rel.clone(), status, detail: Some(detail), repair });
  }
  res.problems.sort_by(|a, b| (a.location.as_str(), a.path.as_str()).cmp(&(b.location.as_str(), b.path.as_str())));
  if keep {
    let found: Vec<scrub::Remembered> = res
      .problems
      .iter()
      .filter(|p| matches!(p.status, Status::Corrupt | Status::Missing) && !p.repair.as_deref().unwrap_or("").starts_with("re"))
      .map(|p| scrub::Remembered {
        location: p.location.clone(),
        path: p.path.clone(),
        status: if p.status == Status::Corrupt { "CORRUPT" } else { "MISSING" }.into(),
        detail: p.detail.clone(),
        found_ms: now,
      })
      .collect();
    // A full verify is the whole truth: what it did not find is gone (repaired, or pruned).
    let full = o.scrub.is_none() && o.only.is_none() && !progress.is_aborted();
    if full {
      record.corrupt.retain(|r| found.iter().any(|f| f.location == r.location && f.path == r.path));
      if found.is_empty() && res.damaged.is_empty() && res.state_error.is_none() {
        record.last_full_ms = Some(now);
      }
    }
    for f in found {
      record.remember(f);
    }
    record.last_check_ms = Some(now);
    save_record(dst, &mut record, &all_keys, now, &mut res);
    if let Some(s) = res.scrub.as_mut() {
      s.never_verified_after = record.never_verified;
    }
  }
  Ok(res)
}

/// Writes the scrub record with its counts; a failure is reported in the
/// result, never fails the verify (a read-only backup can still be checked).
fn save_record(dst: &Path, record: &mut scrub::ScrubState, all_keys: &[String], now: i64, res: &mut BackupVerifyResult) {
  record.version = 1;
  record.updated_ms = now;
  if res.only.is_none() {
    record.versions = all_keys.len() as u64;
    record.never_verified = all_keys.iter().filter(|k| !record.verified.contains_key(*k)).count() as u64;
  }
  if let Err(e) = record.save(dst) {
    res.scrub_state_error.get_or_insert(e.message);
  }
}

/// Hashes one chunk of versions on the pool: `None` for a version that
/// matches its recorded SHA-256, else its status and why. Each inode is
/// read once (`seen`), across chunks too.
fn check_chunk(
  part: &[Check],
  pool: &rayon::ThreadPool,
  seen: &Mutex<HashMap<(u64, u64), String>>,
  bytes: &std::sync::atomic::AtomicU64,
  progress: &Progress,
) -> Vec<Option<(Status, String)>> {
  pool.install(|| {
    part
      .par_iter()
      .map(|c| {
        progress.ops_done.fetch_add(1, Relaxed);
        let md = match crate::fs::longpath::with(&c.path, |p| fs::symlink_metadata(p)) {
          Ok(m) => m,
          Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some((Status::Missing, "the stored file is missing".into())),
          Err(e) => return Some((Status::Error, e.to_string())),
        };
        let key = (md.dev(), md.ino());
        let cached = seen.lock().unwrap().get(&key).cloned();
        let got = match cached {
          Some(h) => h,
          None => match crate::fs::longpath::with(&c.path, util::sha256_of) {
            Ok(h) => {
              bytes.fetch_add(md.len(), Relaxed);
              progress.bytes_done.fetch_add(md.len(), Relaxed);
              let h = hex::encode(h);
              seen.lock().unwrap().insert(key, h.clone());
              h
            }
            Err(e) => return Some((Status::Error, e.to_string())),
          },
        };
        (got != c.sha).then(|| (Status::Corrupt, format!("SHA-256 is {got}, recorded {}", c.sha)))
      })
      .collect()
  })
}

/// A version without a recorded hash (the original backup.py's metadata)
/// checked by size and mtime, with the original's own 1-second tolerance:
/// `None` if they match. The original overwrote mirror files in place, so
/// an older increment sharing the inode holds later content.
fn size_mtime_check(path: &Path, size: u64, mtime_ns: i64) -> Option<(Status, String)> {
  let md = match crate::fs::longpath::with(path, |p| fs::symlink_metadata(p)) {
    Ok(m) => m,
    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some((Status::Missing, "the stored file is missing".into())),
    Err(e) => return Some((Status::Error, e.to_string())),
  };
  let got = util::mtime_ns(&md);
  if md.len() == size && (got - mtime_ns).abs() <= 1_000_000_000 {
    return None;
  }
  let when = |ns: i64| crate::layout::iso(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64));
  Some((
    Status::Overwritten,
    format!(
      "the stored file is not the version the metadata describes ({} bytes, modified {}; recorded {size} bytes, modified \
       {}) and no hash is recorded: backup.py overwrote this file in place after this increment, so it holds a later \
       version",
      md.len(),
      when(got),
      when(mtime_ns)
    ),
  ))
}

/// Replaces `mirror/<rel>` from `src/<rel>` if the source has `sha` (temp + rename).
fn repair_mirror(l: &Layout, src: &Path, rel: &str, sha: &str) -> Result<(), String> {
  let from = src.join(crate::fs::names::to_path(rel));
  let md = fs::symlink_metadata(&from).map_err(|e| format!("cannot be repaired: the source copy is unavailable ({e})"))?;
  let Some(entry) = crate::backup::scan::Entry::from_metadata(rel, &md, crate::backup::rules::Role::Tracked) else {
    return Err("cannot be repaired: the source is not a file".into());
  };
  let target = l.mirror.join(crate::fs::names::to_path(rel));
  let tmp = util::temp_path(&target);
  match crate::backup::copy::copy_entry(&from, &tmp, &entry, true, &Progress::new()) {
    Ok(crate::backup::copy::CopyResult::Done(c)) if c.sha256.map(hex::encode).as_deref() == Some(sha) => {
      fs::rename(&tmp, &target).map_err(|e| format!("cannot replace the mirror copy: {e}"))
    }
    Ok(crate::backup::copy::CopyResult::Done(_)) => {
      let _ = fs::remove_file(&tmp);
      Err("cannot be repaired: the source now holds different content".into())
    }
    Ok(crate::backup::copy::CopyResult::Changed(m)) => Err(format!("cannot be repaired now: {m}")),
    Err(e) => {
      let _ = fs::remove_file(&tmp);
      Err(format!("cannot be repaired: {e}"))
    }
  }
}

/// Points `path` at the inode of `good` (link to a temp name, rename over).
fn relink(good: &Path, path: &Path) -> std::io::Result<()> {
  let tmp = util::temp_path(path);
  let _ = fs::remove_file(&tmp);
  match fs::hard_link(good, &tmp) {
    Ok(()) => {}
    Err(_) => util::copy_plain(good, &tmp)?,
  }
  fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::io::Write;

  /// A report in the original envelope for `dir` (one file, `a.txt`), as `checksum` writes it.
  fn envelope(dir: &Path) -> String {
    use sha3::Digest;
    let md = fs::symlink_metadata(dir.join("a.txt")).unwrap();
    let body = fs::read(dir.join("a.txt")).unwrap();
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &body));
    let data = serde_json::json!({
      "checksums": { "a.txt": { "sha256": sha } },
      "files": ["a.txt"],
      "root_data": dir.to_str().unwrap(),
      "algorithms": ["sha256"],
      "sizes": { "a.txt": md.len() },
      "stat": { "a.txt": [util::mtime_ns(&md), md.ctime() * 1_000_000_000 + md.ctime_nsec(), md.ino()] },
    })
    .to_string();
    let sig = hex::encode(sha3::Sha3_512::digest(data.as_bytes()));
    serde_json::json!({ "data": data, "signature": sig }).to_string()
  }

  #[test]
  fn incremental_reuses_a_verified_digest_and_rechecks_a_report_changed_in_place() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("data");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("a.txt"), "alpha").unwrap();
    let report = t.path().join("r.json");
    fs::write(&report, envelope(&dir)).unwrap();
    let o = VerifyOptions { incremental: true, threads: 2, cache: Some(DigestCache::at(&t.path().join("cache"))), ..Default::default() };
    let p = Progress::new();
    let first = verify_report(&report, &o, &p).unwrap();
    assert!(!first.signature_cached);
    assert_eq!((first.trusted, first.counts.get("OK").copied()), (1, Some(1)));
    let second = verify_report(&report, &o, &p).unwrap();
    assert!(second.signature_cached, "an unchanged report is not hashed again");
    assert!(second.report_cached, "nor parsed again");
    assert_eq!(second.digest, first.digest);
    // A full verify never trusts the cache.
    assert!(!verify_report(&report, &VerifyOptions { incremental: false, ..o.clone() }, &p).unwrap().signature_cached);
    // One byte changed in place (same size), mtime put back: only the ctime tells.
    std::thread::sleep(std::time::Duration::from_millis(30));
    let md = fs::metadata(&report).unwrap();
    let mut text = fs::read(&report).unwrap();
    let at = text.windows(5).position(|w| w == b"a.txt").unwrap();
    text[at] = b'b';
    fs::OpenOptions::new().write(true).open(&report).unwrap().write_all(&text).unwrap();
    filetime::set_file_mtime(&report, filetime::FileTime::from_last_modification_time(&md)).unwrap();
    let after = fs::metadata(&report).unwrap();
    assert_eq!((after.len(), after.mtime(), after.mtime_nsec(), after.ino()), (md.len(), md.mtime(), md.mtime_nsec(), md.ino()));
    let e = verify_report(&report, &o, &p).unwrap_err();
    assert!(e.message.contains("signature does not match its data"), "{}", e.message);
    // Without any cache (read-only or no home): verified, never an error.
    let none = VerifyOptions { cache: None, ..o.clone() };
    fs::write(&report, envelope(&dir)).unwrap();
    assert!(!verify_report(&report, &none, &p).unwrap().signature_cached);
    let ro = VerifyOptions { cache: Some(DigestCache::at(Path::new("/proc/self/no-such"))), ..o };
    assert!(!verify_report(&report, &ro, &p).unwrap().signature_cached);
    assert!(!verify_report(&report, &ro, &p).unwrap().signature_cached);
  }

  #[test]
  fn the_parsed_report_cache_is_used_only_whole_ours_and_for_the_same_key() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("data");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("a.txt"), "alpha").unwrap();
    let report = t.path().join("r.json");
    fs::write(&report, envelope(&dir)).unwrap();
    fs::write(dir.join("new.txt"), "new").unwrap();
    let cache_dir = t.path().join("cache");
    let o = VerifyOptions { incremental: true, all: true, threads: 2, cache: Some(DigestCache::at(&cache_dir)), ..Default::default() };
    let p = Progress::new();
    let json = |r: &VerifyResult| {
      let mut v = serde_json::to_value(r).unwrap();
      v["signatureCached"] = serde_json::Value::Null;
      v["reportCached"] = serde_json::Value::Null;
      v
    };
    let first = verify_report(&report, &o, &p).unwrap();
    assert!(!first.report_cached);
    let second = verify_report(&report, &o, &p).unwrap();
    assert!(second.report_cached && second.signature_cached);
    assert_eq!(json(&first), json(&second));
    assert_eq!(second.counts.get("NEW"), Some(&1));
    let entry =
      fs::read_dir(&cache_dir).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "report")).unwrap();
    let good = fs::read(&entry).unwrap();
    // Each damage: ignored (the report parsed again, same answer), and the entry written anew.
    let damages: Vec<Box<dyn Fn()>> = vec![
      Box::new(|| {
        let mut b = good.clone();
        let at = b.len() - 3;
        b[at] ^= 1;
        fs::write(&entry, b).unwrap();
      }),
      Box::new(|| fs::write(&entry, &good[..good.len() - 1]).unwrap()),
      Box::new(|| fs::write(&entry, [&good[..], b"x"].concat()).unwrap()),
      Box::new(|| fs::set_permissions(&entry, fs::Permissions::from_mode(0o622)).unwrap()),
      Box::new(|| {
        if unsafe { libc::geteuid() } == 0 {
          std::os::unix::fs::chown(&entry, Some(65534), None).unwrap();
        } else {
          fs::write(&entry, b"AXVRPT01").unwrap();
        }
      }),
    ];
    for (k, damage) in damages.iter().enumerate() {
      fs::write(&entry, &good).unwrap();
      fs::set_permissions(&entry, fs::Permissions::from_mode(0o600)).unwrap();
      assert!(verify_report(&report, &o, &p).unwrap().report_cached, "case {k}: intact");
      damage();
      let r = verify_report(&report, &o, &p).unwrap();
      assert!(!r.report_cached, "case {k}: a damaged or foreign entry is ignored");
      assert_eq!(json(&r), json(&first), "case {k}");
      let md = fs::metadata(&entry).unwrap();
      assert_eq!((md.uid(), md.mode() & 0o777), (unsafe { libc::geteuid() }, 0o600), "case {k}: written anew");
      assert!(verify_report(&report, &o, &p).unwrap().report_cached, "case {k}: rewritten");
    }
    // Another key (the report replaced by a copy: another inode): parsed.
    let copy = t.path().join("r2.json");
    fs::copy(&report, &copy).unwrap();
    fs::rename(&copy, &report).unwrap();
    assert!(!verify_report(&report, &o, &p).unwrap().report_cached);
    // A full verify never uses it.
    assert!(!verify_report(&report, &VerifyOptions { incremental: false, ..o.clone() }, &p).unwrap().report_cached);
  }

  #[test]
  fn embedded_public_key() {
    let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAu66KX5u7aAmOjNFnB2yJ0zUZwrxpv8fWm1XRnpmNdSE=\n-----END PUBLIC KEY-----\n";
    // The same key as JWK `x` (base64url): u66KX5u7aAmOjNFnB2yJ0zUZwrxpv8fWm1XRnpmNdSE.
    let want = hex::decode("bbae8a5f9bbb68098e8cd167076c89d33519c2bc69bfc7d69b55d19e998d7521").unwrap();
    assert_eq!(ed25519_from_pem(pem), Some(want));
    assert_eq!(ed25519_from_pem("-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----"), None);
    assert_eq!(base64_decode("TWFu"), Some(b"Man".to_vec()));
    assert_eq!(base64_decode("TWE="), Some(b"Ma".to_vec()));
  }
}
