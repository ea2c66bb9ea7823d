//! The files of a report, or of a walk, held compactly: every path in one
//! arena, fixed-size records, the digests in one array.
//!
//! Why: `verify` holds a million files of each side at once. As one
//! allocation per path and per digest (plus `Option` padding) a report file
//! cost ≈ 210 bytes and a walked one ≈ 100; here a file is a 40-byte record,
//! its path bytes and its digest bytes (`stride`). The same arrays are what
//! the cache of parsed reports stores (`integrity::digest_cache`), so
//! loading one is a copy, not a parse.

use std::collections::HashMap;

use rayon::prelude::*;

/// One file's fixed part: 40 bytes, no padding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rec {
  /// Where the path starts in the arena.
  pub(crate) off: u32,
  /// The path's length, and the `HAS_*` flags in the top bits.
  pub(crate) len: u32,
  pub(crate) size: u64,
  pub(crate) mtime_ns: i64,
  pub(crate) ctime_ns: i64,
  pub(crate) ino: u64,
}

pub(crate) const HAS_SIZE: u32 = 1 << 31;
pub(crate) const HAS_STAT: u32 = 1 << 30;
pub(crate) const HAS_LINK: u32 = 1 << 29;
pub(crate) const LEN_MASK: u32 = HAS_LINK - 1;

impl Rec {
  pub(crate) fn path_len(&self) -> usize {
    (self.len & LEN_MASK) as usize
  }
}

/// The files of a report or a walk (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Files {
  pub(crate) arena: Vec<u8>,
  pub(crate) recs: Vec<Rec>,
  /// Per file `stride` bytes: per algorithm of `lens`, a length byte (0:
  /// absent) and that many digest bytes.
  pub(crate) sums: Vec<u8>,
  /// The digest length of each algorithm of the layout (0: unknown algorithm).
  pub(crate) lens: Vec<u8>,
  pub(crate) stride: usize,
  /// Files whose digests do not fit the layout (another length, an
  /// unknown algorithm): their own length-prefixed bytes, for every algorithm.
  pub(crate) odd: HashMap<u32, Box<[u8]>>,
  /// Symlink targets (files with `HAS_LINK`).
  pub(crate) links: HashMap<u32, Box<str>>,
  /// The records are in path order (byte order, which is `str` order).
  pub(crate) sorted: bool,
  /// More than 4 GiB of paths: the offsets cannot hold them.
  pub(crate) overflow: bool,
}

/// One file of [`Files`].
#[derive(Clone, Copy)]
pub struct FileRef<'a> {
  t: &'a Files,
  i: u32,
}

impl<'a> FileRef<'a> {
  pub fn rel(&self) -> &'a str {
    self.t.rel(self.i)
  }
  pub fn size(&self) -> Option<u64> {
    let r = &self.t.recs[self.i as usize];
    (r.len & HAS_SIZE != 0).then_some(r.size)
  }
  /// (mtime_ns, ctime_ns, ino)
  pub fn stat(&self) -> Option<(i64, i64, u64)> {
    let r = &self.t.recs[self.i as usize];
    (r.len & HAS_STAT != 0).then_some((r.mtime_ns, r.ctime_ns, r.ino))
  }
  pub fn link(&self) -> Option<&'a str> {
    self.t.links.get(&self.i).map(|s| &**s)
  }
  /// Hex digest of the `k`-th algorithm of the report, if recorded.
  pub fn sum(&self, k: usize) -> Option<String> {
    self.t.sum_raw(self.i, k).map(hex::encode)
  }
}

impl Files {
  pub fn len(&self) -> usize {
    self.recs.len()
  }
  pub fn is_empty(&self) -> bool {
    self.recs.is_empty()
  }
  pub fn get(&self, i: usize) -> FileRef<'_> {
    FileRef { t: self, i: i as u32 }
  }
  pub fn iter(&self) -> impl Iterator<Item = FileRef<'_>> {
    (0..self.recs.len() as u32).map(move |i| FileRef { t: self, i })
  }
  /// The records are in path order.
  pub fn is_sorted(&self) -> bool {
    self.sorted
  }

  pub(crate) fn path_bytes(&self, i: u32) -> &[u8] {
    let r = &self.recs[i as usize];
    &self.arena[r.off as usize..r.off as usize + r.path_len()]
  }

  /// The path of file `i`: the arena holds whole `str`s only (checked
  /// when a cached one is loaded), so this never fails in practice.
  pub(crate) fn rel(&self, i: u32) -> &str {
    std::str::from_utf8(self.path_bytes(i)).unwrap_or("")
  }

  /// Appends `rel` to the arena: its (offset, length).
  fn put_path(&mut self, rel: &[u8]) -> (u32, u32) {
    let off = self.arena.len();
    if off + rel.len() > u32::MAX as usize || rel.len() > LEN_MASK as usize {
      self.overflow = true;
      return (0, 0);
    }
    self.arena.extend_from_slice(rel);
    (off as u32, rel.len() as u32)
  }

  /// Adds a file with only its path; its index.
  pub(crate) fn push(&mut self, rel: &str) -> u32 {
    let (off, len) = self.put_path(rel.as_bytes());
    self.recs.push(Rec { off, len, ..Default::default() });
    self.sums.resize(self.recs.len() * self.stride, 0);
    self.sorted = false;
    (self.recs.len() - 1) as u32
  }

  /// Adds a file the walk found (size, mtime, ctime, inode; a symlink's target).
  pub(crate) fn push_found(&mut self, rel: &str, size: u64, mtime_ns: i64, ctime_ns: i64, ino: u64, link: Option<Box<str>>) {
    let (off, mut len) = self.put_path(rel.as_bytes());
    len |= HAS_SIZE | HAS_STAT;
    if let Some(t) = link {
      len |= HAS_LINK;
      self.links.insert(self.recs.len() as u32, t);
    }
    self.recs.push(Rec { off, len, size, mtime_ns, ctime_ns, ino });
    self.sorted = false;
  }

  pub(crate) fn set_size(&mut self, i: u32, size: u64) {
    let r = &mut self.recs[i as usize];
    r.size = size;
    r.len |= HAS_SIZE;
  }
  pub(crate) fn set_stat(&mut self, i: u32, (m, c, ino): (i64, i64, u64)) {
    let r = &mut self.recs[i as usize];
    (r.mtime_ns, r.ctime_ns, r.ino) = (m, c, ino);
    r.len |= HAS_STAT;
  }
  pub(crate) fn set_link(&mut self, i: u32, target: Box<str>) {
    self.recs[i as usize].len |= HAS_LINK;
    self.links.insert(i, target);
  }

  /// Lays every file's digests out for algorithms of these digest lengths
  /// (once: the first layout stays).
  pub(crate) fn set_layout(&mut self, lens: &[usize]) {
    if self.stride > 0 || !self.lens.is_empty() {
      return;
    }
    self.lens = lens.iter().map(|&n| n.min(255) as u8).collect();
    self.stride = self.lens.iter().map(|&n| n as usize + 1).sum();
    self.sums.resize(self.recs.len() * self.stride, 0);
  }

  /// The raw digest of algorithm `k` of file `i`.
  pub(crate) fn sum_raw(&self, i: u32, k: usize) -> Option<&[u8]> {
    if let Some(row) = self.odd.get(&i) {
      // Each length byte is followed by that many bytes.
      let mut at = 0;
      for j in 0..=k {
        let n = *row.get(at)? as usize;
        if j == k {
          return (n > 0).then(|| row.get(at + 1..at + 1 + n)).flatten();
        }
        at += 1 + n;
      }
      return None;
    }
    // A row of the layout: each slot has its algorithm's room, used or not.
    if k >= self.lens.len() {
      return None;
    }
    let at = i as usize * self.stride + self.lens[..k].iter().map(|&n| n as usize + 1).sum::<usize>();
    let n = *self.sums.get(at)? as usize;
    (n > 0).then(|| self.sums.get(at + 1..at + 1 + n)).flatten()
  }

  /// Stores the hex digest of algorithm `k` (of `algos`) for file `i`:
  /// decoded in place when it fits the layout (the usual case), else the
  /// file's digests go to `odd`. Hex that does not decode is not stored.
  pub(crate) fn put_sum(&mut self, i: u32, k: usize, hexd: &str, algos: usize) {
    let want = hexd.len() / 2;
    if self.stride > 0
      && self.lens.len() == algos
      && self.lens.get(k).map(|&n| n as usize) == Some(want)
      && want > 0
      && hexd.len() & 1 == 0
      && !self.odd.contains_key(&i)
    {
      let at = i as usize * self.stride + self.lens[..k].iter().map(|&n| n as usize + 1).sum::<usize>();
      if crate::fs::util::decode_hex(hexd.as_bytes(), &mut self.sums[at + 1..at + 1 + want]) {
        self.sums[at] = want as u8;
      }
      return;
    }
    let Ok(raw) = hex::decode(hexd) else { return };
    if raw.len() > 255 {
      return;
    }
    let mut parts: Vec<Vec<u8>> = (0..algos).map(|j| self.sum_raw(i, j).map(<[u8]>::to_vec).unwrap_or_default()).collect();
    if k < parts.len() {
      parts[k] = raw;
    }
    let mut d = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
      d.push(p.len() as u8);
      d.extend_from_slice(&p);
    }
    if self.stride > 0 {
      // The row no longer speaks for this file.
      self.sums[i as usize * self.stride..(i as usize + 1) * self.stride].fill(0);
    }
    self.odd.insert(i, d.into_boxed_slice());
  }

  /// Makes every path relative to `root` ([`super::relative_to_root`]):
  /// the result is a suffix of the path (the offset moves), or `.`.
  pub(crate) fn relativize(&mut self, root: &str) {
    for i in 0..self.recs.len() {
      let p = self.rel(i as u32);
      let rel = super::relative_to_root(p, root);
      if rel.len() == p.len() {
        continue;
      }
      let (pp, rp) = (p.as_ptr() as usize, rel.as_ptr() as usize);
      let suffix = rp >= pp && rp + rel.len() == pp + p.len();
      let (skip, owned) = if suffix { (rp - pp, None) } else { (0, Some(rel.to_string())) };
      let r = self.recs[i];
      let flags = r.len & !LEN_MASK;
      match owned {
        None => {
          self.recs[i].off = r.off + skip as u32;
          self.recs[i].len = (r.path_len() - skip) as u32 | flags;
        }
        Some(rel) => {
          let (off, len) = self.put_path(rel.as_bytes());
          self.recs[i].off = off;
          self.recs[i].len = len | flags;
        }
      }
    }
    self.sorted = false;
  }

  /// Puts the records (and digests) in path order, in place (no second
  /// copy of the arrays: a million files are held while this runs).
  pub(crate) fn sort_by_path(&mut self) {
    if self.sorted {
      return;
    }
    let n = self.recs.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.par_sort_unstable_by(|&a, &b| self.path_bytes(a).cmp(self.path_bytes(b)));
    // `order[p]` is the old index of what goes to `p`: follow each cycle.
    if !self.odd.is_empty() || !self.links.is_empty() {
      let mut new_of = vec![0u32; n];
      for (p, &old) in order.iter().enumerate() {
        new_of[old as usize] = p as u32;
      }
      self.odd = std::mem::take(&mut self.odd).into_iter().map(|(k, v)| (new_of[k as usize], v)).collect();
      self.links = std::mem::take(&mut self.links).into_iter().map(|(k, v)| (new_of[k as usize], v)).collect();
    }
    let s = self.stride;
    let mut row = vec![0u8; s];
    let mut done = vec![false; n];
    for start in 0..n {
      if done[start] || order[start] as usize == start {
        done[start] = true;
        continue;
      }
      let rec = self.recs[start];
      row.copy_from_slice(&self.sums[start * s..(start + 1) * s]);
      let mut p = start;
      loop {
        done[p] = true;
        let src = order[p] as usize;
        if src == start {
          self.recs[p] = rec;
          self.sums[p * s..(p + 1) * s].copy_from_slice(&row);
          break;
        }
        self.recs[p] = self.recs[src];
        self.sums.copy_within(src * s..(src + 1) * s, p * s);
        p = src;
      }
    }
    drop((order, done, row));
    self.compact();
    self.sorted = true;
  }

  /// Keeps only the bytes the paths use, in record order (a report's
  /// absolute paths made relative leave their prefixes behind: a third of
  /// the arena), and gives back the arrays' spare capacity.
  fn compact(&mut self) {
    let used: usize = self.recs.iter().map(Rec::path_len).sum();
    if used < self.arena.len() {
      let mut a = Vec::with_capacity(used);
      for r in &mut self.recs {
        let (o, l) = (r.off as usize, r.path_len());
        let at = a.len() as u32;
        a.extend_from_slice(&self.arena[o..o + l]);
        r.off = at;
      }
      self.arena = a;
    }
    self.recs.shrink_to_fit();
    self.sums.shrink_to_fit();
    self.arena.shrink_to_fit();
  }

  /// Appends `other`'s files (a walk's per-thread parts).
  pub(crate) fn append(&mut self, other: Files) {
    debug_assert!(self.stride == 0 && other.stride == 0);
    let base = self.recs.len() as u32;
    let shift = self.arena.len();
    self.recs.reserve_exact(other.recs.len());
    self.arena.reserve_exact(other.arena.len());
    if shift + other.arena.len() > u32::MAX as usize {
      self.overflow = true;
      return;
    }
    self.overflow |= other.overflow;
    self.arena.extend_from_slice(&other.arena);
    self.recs.extend(other.recs.iter().map(|r| Rec { off: r.off + shift as u32, ..*r }));
    self.links.extend(other.links.into_iter().map(|(k, v)| (k + base, v)));
    self.sorted = false;
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_record_is_forty_bytes() {
    assert_eq!(std::mem::size_of::<Rec>(), 40);
  }

  #[test]
  fn digests_in_the_layout_and_out_of_it_sizes_stats_links_and_the_sort() {
    let mut t = Files::default();
    let a = t.push("/r/b");
    t.set_layout(&[32, 16]);
    let b = t.push("/r/a");
    let c = t.push("/r/c");
    let h32 = "ab".repeat(32);
    let h16 = "cd".repeat(16);
    t.put_sum(a, 0, &h32, 2);
    t.put_sum(a, 1, &h16, 2);
    t.put_sum(b, 1, &h16, 2);
    // Another length than the layout's: kept beside it, whole.
    t.put_sum(c, 0, "0102", 2);
    t.put_sum(c, 1, &h16, 2);
    t.put_sum(b, 0, "zz", 2);
    t.set_size(a, 7);
    t.set_stat(b, (1, 2, 3));
    t.set_link(c, "target".into());
    t.relativize("/r");
    t.sort_by_path();
    let names: Vec<&str> = t.iter().map(|f| f.rel()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let (fa, fb, fc) = (t.get(0), t.get(1), t.get(2));
    assert_eq!((fa.sum(0), fa.sum(1).as_deref(), fa.stat(), fa.size()), (None, Some(h16.as_str()), Some((1, 2, 3)), None));
    assert_eq!((fb.sum(0).as_deref(), fb.sum(1).as_deref(), fb.size(), fb.link()), (Some(h32.as_str()), Some(h16.as_str()), Some(7), None));
    assert_eq!((fc.sum(0).as_deref(), fc.sum(1).as_deref(), fc.link()), (Some("0102"), Some(h16.as_str()), Some("target")));
    assert!(t.is_sorted());
  }

  #[test]
  fn the_in_place_sort_follows_every_cycle() {
    let mut t = Files::default();
    t.set_layout(&[1]);
    let names: Vec<String> = (0..500).map(|i| format!("f{:03}", (i * 37) % 500)).collect();
    for n in &names {
      let i = t.push(n);
      t.put_sum(i, 0, &n[1..3], 1);
      t.set_size(i, n[1..].parse().unwrap());
    }
    t.sort_by_path();
    for (k, f) in t.iter().enumerate() {
      assert_eq!(f.rel(), format!("f{k:03}"));
      assert_eq!(f.size(), Some(k as u64));
      assert_eq!(f.sum(0), Some(format!("{k:03}")[..2].to_string()));
    }
  }
}
