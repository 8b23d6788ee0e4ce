//! Maps as sets of lines: the difference between two maps texts (what a
//! sample records) and a whole [`Map`] rebuilt by applying or undoing those
//! differences.
//!
//! This file owns the comparison and the replay arithmetic, on bytes in
//! memory. Which records to replay, and from where, is `history.rs`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::Error;
use super::parse::{lines, parse_hex};
use crate::journal::record::MapsDelta;

/// The sort key of a line: its start address (garbage sorts last), then
/// its bytes. Kernel text is already in this order.
fn order_key(line: &[u8]) -> u64 {
    let end = line.iter().position(|&b| b == b'-').unwrap_or(line.len());
    parse_hex(&line[..end]).unwrap_or(u64::MAX)
}

/// The mappings added and removed between two maps texts. Equal texts
/// cost one comparison and allocate nothing. Lines are compared as whole
/// lines (a changed field is a removed and an added line); any bytes are
/// accepted, duplicates count as often as they occur.
pub fn diff(old: &[u8], new: &[u8]) -> MapsDelta {
    if old == new {
        return MapsDelta::default();
    }
    // Lines common to both texts cancel out of a multiset difference, so
    // the common head and tail (whole lines) are skipped at memcmp speed
    // and only the changed middle is split into lines and merged.
    let (old, new) = changed_middle(old, new);
    let keyed = |text| lines(text).map(|line| (order_key(line), line)).collect::<Vec<_>>();
    let (mut before, mut after) = (keyed(old), keyed(new));
    // Kernel text is sorted already; the stable sort detects the run in
    // one pass and only garbage pays for real sorting.
    before.sort();
    after.sort();
    let mut delta = MapsDelta::default();
    let (mut i, mut j) = (0, 0);
    while i < before.len() && j < after.len() {
        match before[i].cmp(&after[j]) {
            Ordering::Less => {
                delta.removed.push(before[i].1.to_vec());
                i += 1;
            }
            Ordering::Greater => {
                delta.added.push(after[j].1.to_vec());
                j += 1;
            }
            Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    delta.removed.extend(before[i..].iter().map(|(_, line)| line.to_vec()));
    delta.added.extend(after[j..].iter().map(|(_, line)| line.to_vec()));
    delta
}

/// Length of the common prefix, compared a block at a time (memcmp).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 256;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    i + a[i..n].iter().zip(&b[i..n]).take_while(|(x, y)| x == y).count()
}

/// Length of the common suffix, compared a block at a time.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 256;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[a.len() - i - BLOCK..a.len() - i] == b[b.len() - i - BLOCK..b.len() - i] {
        i += BLOCK;
    }
    i + a[..a.len() - i].iter().rev().zip(b[..b.len() - i].iter().rev()).take_while(|(x, y)| x == y).count()
}

/// The two texts without their common leading and trailing whole lines.
fn changed_middle<'a>(old: &'a [u8], new: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    let common = common_prefix(old, new);
    // Back to the start of the line the texts first differ in.
    let head = old[..common].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (old, new) = (&old[head..], &new[head..]);
    let common = common_suffix(old, new);
    // Forward to just after the first newline of the common tail: what
    // follows starts a line in both texts.
    let tail_start = old.len() - common;
    let tail = match old[tail_start..].iter().position(|&b| b == b'\n') {
        Some(i) => common - i - 1,
        None => 0,
    };
    (&old[..old.len() - tail], &new[..new.len() - tail])
}

/// A whole map at one point of history: a multiset of lines in kernel
/// order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Map {
    lines: BTreeMap<(u64, Vec<u8>), usize>,
}

impl Map {
    /// The map of a set of lines (a baseline's `maps`).
    pub fn from_lines<L: AsRef<[u8]>>(list: impl IntoIterator<Item = L>) -> Map {
        let mut map = Map::default();
        for line in list {
            map.insert(line.as_ref());
        }
        map
    }

    /// The map of a maps text.
    pub fn from_text(text: &[u8]) -> Map {
        Map::from_lines(lines(text))
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.lines.values().sum()
    }

    /// Whether the map has no mappings.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines, in kernel order.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.lines.iter().flat_map(|((_, line), &n)| std::iter::repeat_n(line.as_slice(), n))
    }

    /// The map as `/proc/<pid>/maps` prints it: one line each, newline
    /// terminated.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for line in self.lines() {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out
    }

    fn insert(&mut self, line: &[u8]) {
        *self.lines.entry((order_key(line), line.to_vec())).or_insert(0) += 1;
    }

    fn remove(&mut self, line: &[u8]) -> Result<(), Error> {
        let key = (order_key(line), line.to_vec());
        match self.lines.get_mut(&key) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.lines.remove(&key);
            }
            None => return Err(Error::Replay { seq: 0, line: String::from_utf8_lossy(line).into_owned() }),
        }
        Ok(())
    }

    /// Apply a sample's delta going forwards in time (older → newer).
    ///
    /// # Errors
    /// [`Error::Replay`] when a removed line is not in the map; the map is
    /// then partly changed and should be dropped.
    pub fn apply_forward(&mut self, delta: &MapsDelta) -> Result<(), Error> {
        delta.removed.iter().try_for_each(|line| self.remove(line))?;
        delta.added.iter().for_each(|line| self.insert(line));
        Ok(())
    }

    /// Undo a sample's delta (newer → older).
    ///
    /// # Errors
    /// As [`Map::apply_forward`].
    pub fn apply_reverse(&mut self, delta: &MapsDelta) -> Result<(), Error> {
        delta.added.iter().try_for_each(|line| self.remove(line))?;
        delta.removed.iter().for_each(|line| self.insert(line));
        Ok(())
    }
}

/// Rebuild a map forwards: the baseline's lines, then each delta in
/// recording order.
///
/// # Errors
/// [`Error::Replay`] when the deltas do not fit the baseline.
pub fn rebuild_forward<'a>(
    baseline: &[Vec<u8>],
    deltas: impl IntoIterator<Item = &'a MapsDelta>,
) -> Result<Map, Error> {
    let mut map = Map::from_lines(baseline);
    for delta in deltas {
        map.apply_forward(delta)?;
    }
    Ok(map)
}

/// Rebuild a map backwards: the newest map, then each delta undone,
/// newest first.
///
/// # Errors
/// [`Error::Replay`] when the deltas do not fit the newest map.
pub fn rebuild_backward<'a>(
    newest: Map,
    deltas_newest_first: impl IntoIterator<Item = &'a MapsDelta>,
) -> Result<Map, Error> {
    let mut map = newest;
    for delta in deltas_newest_first {
        map.apply_reverse(delta)?;
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::parse::tests::kernel_line;
    use proptest::prelude::*;

    #[test]
    fn a_changed_field_is_removed_and_added() {
        let old = b"10-20 r--p 0 00:00 0 /a\n30-40 rw-p 0 00:00 0\n";
        let new = b"10-20 r-xp 0 00:00 0 /a\n30-40 rw-p 0 00:00 0\n50-60 rw-p 0 00:00 0\n";
        let delta = diff(old, new);
        assert_eq!(delta.removed, vec![b"10-20 r--p 0 00:00 0 /a".to_vec()]);
        assert_eq!(delta.added, vec![b"10-20 r-xp 0 00:00 0 /a".to_vec(), b"50-60 rw-p 0 00:00 0".to_vec()]);
        assert_eq!(diff(new, new), MapsDelta::default());
    }

    #[test]
    fn one_changed_line_anywhere_in_a_long_map_is_found() {
        let line = |i: u64, perms: &str| {
            kernel_line(i * 2, 1, perms, i, if i.is_multiple_of(3) { "/lib/x.so" } else { "" })
        };
        let old: Vec<u8> = (0..2000).flat_map(|i| [line(i, "r--p"), b"\n".to_vec()].concat()).collect();
        for changed in [0, 1, 7, 500, 1998, 1999] {
            let new: Vec<u8> = (0..2000)
                .flat_map(|i| [line(i, if i == changed { "rw-p" } else { "r--p" }), b"\n".to_vec()].concat())
                .collect();
            let delta = diff(&old, &new);
            assert_eq!(delta.removed, vec![line(changed, "r--p")], "line {changed}");
            assert_eq!(delta.added, vec![line(changed, "rw-p")], "line {changed}");
        }
        let mut longer = old.clone();
        longer.extend_from_slice(&line(5000, "r--p"));
        assert_eq!(diff(&old, &longer).added, vec![line(5000, "r--p")], "a last line without a newline");
        assert_eq!(diff(&longer, &old).removed, vec![line(5000, "r--p")]);
    }

    /// A kernel-like map: non-overlapping ranges at distinct pages.
    fn kernel_map() -> impl Strategy<Value = Vec<u8>> {
        let perms = prop::sample::select(vec!["r--p", "rw-p", "r-xp", "---p", "rw-s"]);
        let path =
            prop::sample::select(vec!["", "[heap]", "/usr/lib/libc.so.6", "/tmp/x (deleted)", "[anon:a b]"]);
        prop::collection::btree_map(0u64..200, (1u64..4, perms, path), 0..30).prop_map(|entries| {
            let mut text = Vec::new();
            let mut next_free = 0;
            for (page, (pages, perms, path)) in entries {
                let page = (page * 4).max(next_free);
                next_free = page + pages;
                text.extend_from_slice(&kernel_line(page, pages, perms, 0, path));
                text.push(b'\n');
            }
            text
        })
    }

    proptest! {
        #[test]
        fn diff_is_the_multiset_difference_of_lines(
            pool in prop::collection::vec(prop::collection::vec(prop::sample::select(b"0a-f :\n x".to_vec()), 0..12), 1..6),
            picks in prop::collection::vec((0usize..6, 0usize..6), 0..20),
        ) {
            let mut old = Vec::new();
            let mut new = Vec::new();
            for (a, b) in picks {
                old.extend_from_slice(&pool[a % pool.len()]);
                new.extend_from_slice(&pool[b % pool.len()]);
            }
            let count = |text: &[u8]| {
                let mut counts = std::collections::BTreeMap::new();
                lines(text).for_each(|l| *counts.entry(l.to_vec()).or_insert(0i64) += 1);
                counts
            };
            let (before, after) = (count(&old), count(&new));
            let delta = diff(&old, &new);
            let mut net = after.clone();
            for (line, n) in &before {
                *net.entry(line.clone()).or_insert(0) -= n;
            }
            for line in &delta.added {
                *net.get_mut(line).expect("an added line is in the new text") -= 1;
            }
            for line in &delta.removed {
                *net.get_mut(line).expect("a removed line is in the old text") += 1;
            }
            prop_assert!(net.values().all(|&n| n == 0), "{:?} -> {:?}: {:?}", String::from_utf8_lossy(&old), String::from_utf8_lossy(&new), delta);
        }

        #[test]
        fn random_map_sequences_round_trip_both_ways(maps in prop::collection::vec(kernel_map(), 1..8)) {
            let deltas: Vec<MapsDelta> = maps.windows(2).map(|w| diff(&w[0], &w[1])).collect();
            let baseline: Vec<Vec<u8>> = lines(&maps[0]).map(<[u8]>::to_vec).collect();
            for (i, text) in maps.iter().enumerate() {
                let forward = rebuild_forward(&baseline, &deltas[..i]).unwrap();
                prop_assert_eq!(&forward.render(), text);
            }
            let newest = Map::from_text(maps.last().unwrap());
            for (i, text) in maps.iter().enumerate() {
                let back = rebuild_backward(newest.clone(), deltas[i..].iter().rev()).unwrap();
                prop_assert_eq!(&back.render(), text);
            }
        }
    }
}
