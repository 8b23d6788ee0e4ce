//! The replay model: a cursor over a store's records and the tracked tree
//! as of that cursor. Drawing lives in [`ui`]; the terminal and its event
//! loop in [`crate::cmd::replay`]. Nothing here touches a terminal, so all of
//! it is tested with records built in memory.
//!
//! The tree is kept in memory and moved one record at a time: stepping
//! forwards applies that record's patches ([`history::apply_forward`]),
//! stepping back applies them in reverse ([`history::apply_reverse`]), so a
//! step costs what the sample changed, not what the tree holds. Only a jump
//! into another epoch (a new baseline) rebuilds the tree from the store
//! ([`Source::state_at`]), and so does a patch that does not apply (the
//! store changed under us), which is then reported, never shown wrong.

pub mod ui;

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::path::{Path, PathBuf};

use crate::history::{self, Modes, TreeState};
use crate::journal::record::{Body, Change, FileChange, Record};
use crate::journal::{self, HeaderStamp, Snapshot};
use crate::render::human;
use crate::restore::{self, At};
use crate::store;

/// Errors of replay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ring could not be read.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// The tree at a record could not be rebuilt.
    #[error(transparent)]
    Restore(#[from] restore::Error),
    /// The store holds no record yet.
    #[error("the store holds no records yet")]
    Empty,
    /// An in-memory source has no tree for this point.
    #[error("no tree for seq {0}")]
    NoTree(u64),
}

/// One record on the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number.
    pub seq: u64,
    /// When it was recorded, µs since the Unix epoch.
    pub time_us: u64,
    /// The record.
    pub record: Record,
}

impl Entry {
    /// Lines added plus lines removed by this record.
    pub fn lines_changed(&self) -> u64 {
        match &self.record.body {
            Body::Sample(s) | Body::Undo { sample: s, .. } => {
                let (added, removed) = human::line_counts(&s.files);
                (added + removed) as u64
            }
            _ => 0,
        }
    }

    /// The target's RSS at this record, when stats were recorded.
    pub fn rss_kib(&self) -> Option<u64> {
        match &self.record.body {
            Body::Sample(s) => s.stats.map(|st| st.rss_kib),
            Body::Baseline(b) => b.stats.map(|st| st.rss_kib),
            _ => None,
        }
    }

    /// The file changes of this record (none unless it is a sample).
    pub fn files(&self) -> &[FileChange] {
        match &self.record.body {
            Body::Sample(s) | Body::Undo { sample: s, .. } => &s.files,
            _ => &[],
        }
    }

    /// The mark's name, for a `mark` record.
    pub fn mark(&self) -> Option<&str> {
        match &self.record.body {
            Body::Mark { name } => Some(name),
            _ => None,
        }
    }
}

/// Where records and trees come from.
pub trait Source {
    /// The records with a seq above `after` (all of them for `None`),
    /// oldest first, and the seq of the oldest record the store still
    /// holds. Undecodable records are left out.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn read(&mut self, after: Option<u64>) -> Result<(u64, Vec<Entry>), Error>;

    /// The tracked tree as of `seq`, built from scratch, and its files'
    /// modes where recorded.
    ///
    /// # Errors
    /// When `seq` is gone or the history does not replay.
    fn state_at(&mut self, seq: u64) -> Result<(TreeState, Modes), Error>;
}

/// A store on disk, read while a monitor may be writing it.
#[derive(Debug)]
pub struct StoreSource {
    dir: PathBuf,
    /// The ring's header stamp and oldest seq at the last full read.
    seen: Option<(HeaderStamp, u64)>,
}

impl StoreSource {
    /// The store in `dir`.
    pub fn new(dir: &Path) -> StoreSource {
        StoreSource { dir: dir.to_path_buf(), seen: None }
    }
}

impl Source for StoreSource {
    fn read(&mut self, after: Option<u64>) -> Result<(u64, Vec<Entry>), Error> {
        // The writer rewrites the header (a new generation) after every
        // commit, so an unchanged header means nothing new: skip copying
        // the whole ring, which a live replay polls twice a second.
        let header = HeaderStamp::read(&self.dir.join(store::RING_FILE)).ok();
        if let (Some(_), Some((seen, oldest)), Some(now)) = (after, &self.seen, &header)
            && seen == now
        {
            return Ok((*oldest, Vec::new()));
        }
        // A plain-read copy: safe while the monitor writes (see Snapshot).
        let snapshot = Snapshot::read(&self.dir.join(store::RING_FILE))?;
        let mut oldest = None;
        let mut entries = Vec::new();
        // Intact records after a damaged stretch are shown too.
        for frame in snapshot.scan().frames {
            oldest.get_or_insert(frame.seq);
            if after.is_some_and(|after| frame.seq <= after) {
                continue;
            }
            if let Ok(record) = Record::decode(&frame.payload) {
                entries.push(Entry { seq: frame.seq, time_us: frame.time_us, record });
            }
        }
        let oldest = oldest.unwrap_or(snapshot.info().next_seq);
        // Keep the header read before the copy: if a commit landed between
        // the two, the next poll sees a different header and reads again.
        self.seen = header.map(|stamp| (stamp, oldest));
        Ok((oldest, entries))
    }

    fn state_at(&mut self, seq: u64) -> Result<(TreeState, Modes), Error> {
        let state = restore::state_at(&self.dir, At::Seq(seq))?;
        Ok((state.tree, state.modes))
    }
}

/// A store held in memory: records and, per epoch, the tree as of the
/// epoch's newest record (what the mirror holds on disk). For tests and
/// benches.
#[derive(Clone, Debug, Default)]
pub struct MemorySource {
    /// The records, oldest first.
    pub entries: Vec<Entry>,
    /// Epoch → the tree as of its newest record.
    pub mirrors: BTreeMap<u64, TreeState>,
}

impl Source for MemorySource {
    fn read(&mut self, after: Option<u64>) -> Result<(u64, Vec<Entry>), Error> {
        let oldest = self.entries.first().map_or(1, |e| e.seq);
        let new = self.entries.iter().filter(|e| after.is_none_or(|a| e.seq > a)).cloned().collect();
        Ok((oldest, new))
    }

    fn state_at(&mut self, seq: u64) -> Result<(TreeState, Modes), Error> {
        let index = self.entries.iter().position(|e| e.seq == seq).ok_or(Error::NoTree(seq))?;
        let epoch = self.entries[index].record.epoch;
        let mut tree = self.mirrors.get(&epoch).cloned().ok_or(Error::NoTree(seq))?;
        let later: Vec<&Entry> =
            self.entries[index + 1..].iter().take_while(|e| e.record.epoch == epoch).collect();
        for entry in later.iter().rev() {
            history::apply_reverse(&mut tree, entry.files()).map_err(|_| Error::NoTree(seq))?;
        }
        Ok((tree, Modes::new()))
    }
}

/// One row of the file tree as drawn: a directory or an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Nesting depth (0 at the root).
    pub depth: usize,
    /// The last path component, lossily printable.
    pub name: String,
    /// The entry's full path; `None` for a directory.
    pub path: Option<Vec<u8>>,
    /// How the entry changed at the cursor's record, if it did.
    pub mark: Option<Change>,
}

/// The cursor over a store and the tree as of it.
pub struct Replay<S: Source> {
    source: S,
    entries: Vec<Entry>,
    cursor: usize,
    tree: TreeState,
    /// The modes of `tree`'s files, where recorded.
    modes: Modes,
    /// Epoch of `tree` (the cursor record's epoch).
    epoch: u64,
    problem: Option<String>,
}

impl<S: Source> Replay<S> {
    /// Read every record of `source` and put the cursor on the oldest.
    ///
    /// # Errors
    /// [`Error::Empty`] when there is no record; any error of the source.
    pub fn open(mut source: S) -> Result<Replay<S>, Error> {
        let (_, entries) = source.read(None)?;
        let first = entries.first().ok_or(Error::Empty)?;
        let (tree, modes) = source.state_at(first.seq)?;
        let epoch = first.record.epoch;
        Ok(Replay { source, entries, cursor: 0, tree, modes, epoch, problem: None })
    }

    /// The records on the timeline, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Index of the cursor in [`Replay::entries`].
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The record at the cursor.
    pub fn current(&self) -> &Entry {
        &self.entries[self.cursor]
    }

    /// The tracked tree as of the cursor.
    pub fn tree(&self) -> &TreeState {
        &self.tree
    }

    /// A file's mode as of the cursor, when recorded.
    pub fn mode_of(&self, path: &[u8]) -> Option<u32> {
        self.modes.get(path).copied()
    }

    /// The last problem met (a tree that could not be rebuilt), if any.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// Whether the cursor is on the newest record.
    pub fn at_end(&self) -> bool {
        self.cursor + 1 == self.entries.len()
    }

    /// Move one record forwards; false at the newest.
    pub fn step_forward(&mut self) -> bool {
        if self.at_end() {
            return false;
        }
        let next = &self.entries[self.cursor + 1];
        // Records lost to damage between the two: rebuild instead.
        let applied = next.seq == self.entries[self.cursor].seq + 1
            && next.record.epoch == self.epoch
            && !matches!(next.record.body, Body::Baseline(_))
            && history::apply_forward(&mut self.tree, next.files()).is_ok();
        if applied {
            history::modes_forward(&mut self.modes, next.files());
        }
        self.cursor += 1;
        if !applied {
            self.reload();
        }
        true
    }

    /// Move one record back; false at the oldest.
    pub fn step_back(&mut self) -> bool {
        if self.cursor == 0 {
            return false;
        }
        let here = &self.entries[self.cursor];
        let before = &self.entries[self.cursor - 1];
        let applied = here.seq == before.seq + 1
            && here.record.epoch == self.epoch
            && before.record.epoch == self.epoch
            && !matches!(here.record.body, Body::Baseline(_))
            && history::apply_reverse(&mut self.tree, here.files()).is_ok();
        if applied {
            history::modes_reverse(&mut self.modes, here.files());
        }
        self.cursor -= 1;
        if !applied {
            self.reload();
        }
        true
    }

    /// Move to `index` (clamped to the timeline), stepping within an epoch
    /// and rebuilding when the target lies in another one.
    pub fn seek(&mut self, index: usize) {
        let index = index.min(self.entries.len() - 1);
        if self.entries[index].record.epoch != self.epoch {
            self.cursor = index;
            self.reload();
            return;
        }
        while self.cursor < index && self.step_forward() {}
        while self.cursor > index && self.step_back() {}
    }

    /// Rebuild the tree at the cursor from the source.
    fn reload(&mut self) {
        let entry = &self.entries[self.cursor];
        self.epoch = entry.record.epoch;
        match self.source.state_at(entry.seq) {
            Ok((tree, modes)) => {
                self.tree = tree;
                self.modes = modes;
                self.problem = None;
            }
            Err(e) => {
                self.tree.clear();
                self.modes.clear();
                self.problem = Some(format!("cannot rebuild the tree at #{}: {e}", entry.seq));
            }
        }
    }

    /// Read records written since the last read. Records the store has
    /// dropped leave the timeline too, unless the cursor is on one of them.
    /// When the cursor was on the newest record it follows the new ones.
    /// Returns how many records were added.
    ///
    /// # Errors
    /// When the store cannot be read; the timeline is then unchanged.
    pub fn refresh(&mut self) -> Result<usize, Error> {
        let follow = self.at_end();
        let last = self.entries.last().map(|e| e.seq);
        let (oldest, new) = self.source.read(last)?;
        let added = new.len();
        self.entries.extend(new);
        let gone = self.entries.iter().take_while(|e| e.seq < oldest).count().min(self.cursor);
        if gone > 0 {
            self.entries.drain(..gone);
            self.cursor -= gone;
        }
        if follow {
            self.seek(self.entries.len() - 1);
        }
        Ok(added)
    }

    /// The change of `path` at the cursor's record (matched by its new or
    /// its old path).
    pub fn change_of(&self, path: &[u8]) -> Option<&FileChange> {
        self.current().files().iter().find(|c| c.path == path || c.from.as_deref() == Some(path))
    }

    /// The unified diff of `path` at the cursor's record, if it changed.
    pub fn diff_of(&self, path: &[u8]) -> Option<Vec<u8>> {
        let change = self.change_of(path)?;
        let (old, new) = human::diff_names(change);
        let mut out = Vec::new();
        change.patch.render_unified(&old, &new, &mut out);
        Some(out)
    }

    /// The content of `path` as of the cursor (a symlink's target).
    pub fn content_of(&self, path: &[u8]) -> Option<&[u8]> {
        self.tree.get(path).map(|(_, content)| content.as_slice())
    }

    /// How each path changed at the cursor's record; the old path of a
    /// rename counts as deleted.
    fn marks(&self) -> BTreeMap<&[u8], Change> {
        let mut marks = BTreeMap::new();
        for change in self.current().files() {
            marks.insert(change.path.as_slice(), change.change);
            if let Some(from) = &change.from {
                marks.insert(from.as_slice(), Change::Deleted);
            }
        }
        marks
    }

    /// Paths the cursor's record deleted or renamed away: listed (marked)
    /// though no longer in the tree. Sorted; as many as the record changed.
    fn gone(&self) -> Vec<&[u8]> {
        let mut gone: Vec<&[u8]> = self.marks().into_keys().filter(|p| !self.tree.contains_key(*p)).collect();
        gone.sort_unstable();
        gone
    }

    /// Whether `path` is listed at the cursor: in the tree, or gone at this
    /// record.
    pub fn listed(&self, path: &[u8]) -> bool {
        self.tree.contains_key(path) || self.gone().contains(&path)
    }

    /// The first listed path.
    pub fn first_listed(&self) -> Option<Vec<u8>> {
        let tree = self.tree.keys().next().map(Vec::as_slice);
        let gone = self.gone().first().copied();
        [tree, gone].into_iter().flatten().min().map(<[u8]>::to_vec)
    }

    /// The listed path just after (`forward`) or just before `path`. Costs
    /// a lookup in the tree, not a walk of it.
    pub fn neighbour(&self, path: &[u8], forward: bool) -> Option<Vec<u8>> {
        let gone = self.gone();
        let found = if forward {
            let tree =
                self.tree.range::<[u8], _>((Excluded(path), Unbounded)).next().map(|(k, _)| k.as_slice());
            let gone = gone.into_iter().find(|g| *g > path);
            [tree, gone].into_iter().flatten().min()
        } else {
            let tree = self
                .tree
                .range::<[u8], _>((Unbounded, Excluded(path)))
                .next_back()
                .map(|(k, _)| k.as_slice());
            let gone = gone.into_iter().rev().find(|g| *g < path);
            [tree, gone].into_iter().flatten().max()
        };
        found.map(<[u8]>::to_vec)
    }

    /// Every listed path, in order. Costs what the tree holds.
    pub fn listed_paths(&self) -> Vec<&[u8]> {
        let mut paths: Vec<&[u8]> = self.tree.keys().map(Vec::as_slice).collect();
        let gone = self.gone();
        if !gone.is_empty() {
            paths.extend(gone);
            paths.sort_unstable();
        }
        paths
    }

    /// The whole file tree as of the cursor, as rows to draw: every entry,
    /// its directories as header rows, and the entries deleted (or renamed
    /// away) at this record, marked. Costs what the tree holds; the screen
    /// uses [`Replay::rows_around`].
    pub fn rows(&self) -> Vec<Row> {
        self.rows_of(&self.listed_paths())
    }

    /// The rows of up to `before` listed paths before `around` (the first
    /// listed path when it is not listed), `around` itself and up to `after`
    /// paths after it, with the directory rows they need. Costs what the
    /// window holds, whatever the size of the tree.
    pub fn rows_around(&self, around: Option<&[u8]>, before: usize, after: usize) -> Vec<Row> {
        let first = self.first_listed();
        let Some(anchor) = around.filter(|p| self.listed(p)).or(first.as_deref()) else {
            return Vec::new();
        };
        let gone = self.gone();
        let mut paths: Vec<&[u8]> = self
            .tree
            .range::<[u8], _>((Unbounded, Excluded(anchor)))
            .rev()
            .take(before)
            .map(|(k, _)| k.as_slice())
            .collect();
        paths.extend(gone.iter().filter(|g| **g < anchor));
        paths.sort_unstable();
        paths.drain(..paths.len().saturating_sub(before));
        let mut later: Vec<&[u8]> = self
            .tree
            .range::<[u8], _>((Included(anchor), Unbounded))
            .take(after + 1)
            .map(|(k, _)| k.as_slice())
            .collect();
        later.extend(gone.iter().filter(|g| **g >= anchor));
        later.sort_unstable();
        later.dedup();
        later.truncate(after.saturating_add(1));
        paths.extend(later);
        self.rows_of(&paths)
    }

    /// Rows for sorted `paths`, with a header row for each directory the
    /// first time it is entered.
    fn rows_of(&self, paths: &[&[u8]]) -> Vec<Row> {
        let marks = self.marks();
        let mut rows = Vec::with_capacity(paths.len());
        let mut open: Vec<&[u8]> = Vec::new();
        for &path in paths {
            let mut parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
            let name = parts.pop().unwrap_or_default();
            let shared = open.iter().zip(&parts).take_while(|(a, b)| a == b).count();
            open.truncate(shared);
            for dir in &parts[shared..] {
                rows.push(Row {
                    depth: open.len(),
                    name: format!("{}/", human::sanitize(dir)),
                    path: None,
                    mark: None,
                });
                open.push(dir);
            }
            rows.push(Row {
                depth: open.len(),
                name: human::sanitize(name),
                path: Some(path.to_vec()),
                mark: marks.get(path).copied(),
            });
        }
        rows
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diff::Patch;
    use crate::journal::record::{Baseline, FORMAT_VERSION, MapsDelta, Node, Sample, Stats};
    use std::time::Duration;

    pub(crate) fn file(content: &str) -> (Node, Vec<u8>) {
        (Node::File, content.as_bytes().to_vec())
    }

    pub(crate) fn change(path: &str, kind: Change, from: Option<&str>, old: &str, new: &str) -> FileChange {
        FileChange::new(
            path.as_bytes().to_vec(),
            kind,
            from.map(|f| f.as_bytes().to_vec()),
            Node::File,
            Patch::compute(old.as_bytes(), new.as_bytes(), Duration::from_secs(1)),
        )
    }

    pub(crate) fn sample(seq: u64, epoch: u64, files: Vec<FileChange>, rss: u64) -> Entry {
        Entry {
            seq,
            time_us: 1_000_000 * seq,
            record: Record {
                version: FORMAT_VERSION,
                epoch,
                pid: 7,
                body: Body::Sample(Sample {
                    files,
                    skipped: Vec::new(),
                    maps: MapsDelta {
                        added: vec![b"7f00-7f10 rw-p 00000000 00:00 0 [heap]".to_vec()],
                        removed: Vec::new(),
                    },
                    stats: Some(Stats { rss_kib: rss, ..Stats::default() }),
                    writers: Vec::new(),
                }),
            },
        }
    }

    pub(crate) fn baseline(seq: u64) -> Entry {
        Entry {
            seq,
            time_us: 1_000_000 * seq,
            record: Record {
                version: FORMAT_VERSION,
                epoch: seq,
                pid: 7,
                body: Body::Baseline(Baseline::default()),
            },
        }
    }

    /// Two epochs: 1 baseline {a.txt, src/b.rs}; 2 modifies a.txt; 3
    /// creates src/c.rs and renames src/b.rs to lib/b.rs; 4 deletes a.txt;
    /// 5 a new baseline {z.txt}; 6 modifies z.txt.
    pub(crate) fn two_epochs() -> MemorySource {
        let entries = vec![
            baseline(1),
            sample(2, 1, vec![change("a.txt", Change::Modified, None, "one\n", "one\ntwo\n")], 100),
            sample(
                3,
                1,
                vec![
                    change("src/c.rs", Change::Created, None, "", "fn c() {}\n"),
                    change("lib/b.rs", Change::Renamed, Some("src/b.rs"), "fn b() {}\n", "fn b() {}\n"),
                ],
                200,
            ),
            sample(4, 1, vec![change("a.txt", Change::Deleted, None, "one\ntwo\n", "")], 150),
            baseline(5),
            sample(6, 5, vec![change("z.txt", Change::Modified, None, "z\n", "zz\n")], 300),
        ];
        let mut mirrors = BTreeMap::new();
        mirrors.insert(
            1,
            TreeState::from([
                (b"lib/b.rs".to_vec(), file("fn b() {}\n")),
                (b"src/c.rs".to_vec(), file("fn c() {}\n")),
            ]),
        );
        mirrors.insert(5, TreeState::from([(b"z.txt".to_vec(), file("zz\n"))]));
        MemorySource { entries, mirrors }
    }

    fn paths(replay: &Replay<MemorySource>) -> Vec<String> {
        replay.tree().keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect()
    }

    #[test]
    fn opens_on_the_oldest_record() {
        let replay = Replay::open(two_epochs()).unwrap();
        assert_eq!(replay.current().seq, 1);
        assert_eq!(paths(&replay), ["a.txt", "src/b.rs"]);
        assert_eq!(replay.content_of(b"a.txt"), Some(&b"one\n"[..]));
    }

    #[test]
    fn a_record_lost_to_damage_is_not_stepped_over() {
        // Record 3 is gone: stepping from 2 to 4 must not leave 3's
        // changes (src/c.rs, the rename) out of the tree.
        let mut source = two_epochs();
        source.entries.remove(2);
        let mut replay = Replay::open(source.clone()).unwrap();
        let mut fresh = source;
        while replay.current().seq < 4 {
            assert!(replay.step_forward());
        }
        assert_eq!(replay.tree(), &fresh.state_at(4).unwrap().0);
        assert!(replay.step_back());
        assert_eq!(replay.current().seq, 2);
        assert_eq!(replay.tree(), &fresh.state_at(2).unwrap_or_default().0);
    }

    #[test]
    fn every_step_matches_a_rebuild_both_ways() {
        let mut replay = Replay::open(two_epochs()).unwrap();
        let mut fresh = two_epochs();
        let n = replay.entries().len();
        for i in 1..n {
            assert!(replay.step_forward());
            assert_eq!(replay.tree(), &fresh.state_at(replay.current().seq).unwrap().0, "forward to {i}");
            assert_eq!(replay.problem(), None);
        }
        assert!(!replay.step_forward());
        for i in (0..n - 1).rev() {
            assert!(replay.step_back());
            assert_eq!(replay.tree(), &fresh.state_at(replay.current().seq).unwrap().0, "back to {i}");
        }
        assert!(!replay.step_back());
        replay.seek(usize::MAX);
        assert_eq!(replay.current().seq, 6);
        assert_eq!(paths(&replay), ["z.txt"]);
        replay.seek(2);
        assert_eq!(paths(&replay), ["a.txt", "lib/b.rs", "src/c.rs"]);
    }

    #[test]
    fn rows_nest_directories_and_mark_changes() {
        let mut replay = Replay::open(two_epochs()).unwrap();
        replay.seek(2);
        let rows: Vec<(usize, String, Option<Change>)> =
            replay.rows().into_iter().map(|r| (r.depth, r.name, r.mark)).collect();
        assert_eq!(
            rows,
            vec![
                (0, "a.txt".into(), None),
                (0, "lib/".into(), None),
                (1, "b.rs".into(), Some(Change::Renamed)),
                (0, "src/".into(), None),
                (1, "b.rs".into(), Some(Change::Deleted)),
                (1, "c.rs".into(), Some(Change::Created)),
            ]
        );
        let diff = String::from_utf8(replay.diff_of(b"src/c.rs").unwrap()).unwrap();
        assert!(diff.contains("+++ b/src/c.rs") && diff.contains("+fn c() {}"), "{diff}");
        assert!(replay.diff_of(b"a.txt").is_none());
    }

    #[test]
    fn windows_and_neighbours_agree_with_the_full_listing() {
        let mut replay = Replay::open(two_epochs()).unwrap();
        for i in 0..replay.entries().len() {
            replay.seek(i);
            let full = replay.rows();
            let files: Vec<Vec<u8>> = full.iter().filter_map(|r| r.path.clone()).collect();
            assert_eq!(replay.first_listed(), files.first().cloned());
            for (k, path) in files.iter().enumerate() {
                assert!(replay.listed(path));
                assert_eq!(replay.neighbour(path, true), files.get(k + 1).cloned());
                assert_eq!(replay.neighbour(path, false), k.checked_sub(1).map(|j| files[j].clone()));
                let window = replay.rows_around(Some(path), 1, 1);
                let in_window: Vec<Vec<u8>> = window.iter().filter_map(|r| r.path.clone()).collect();
                assert_eq!(in_window, files[k.saturating_sub(1)..(k + 2).min(files.len())], "at #{}", i + 1);
                assert!(window.iter().filter(|r| r.path.is_some()).all(|r| full.contains(r)));
            }
        }
    }

    #[test]
    fn refresh_follows_new_records_when_at_the_end() {
        let mut source = two_epochs();
        let tail = source.entries.split_off(4);
        let mut replay = Replay::open(source).unwrap();
        replay.seek(3);
        assert!(replay.at_end());
        replay.source.entries.extend(tail);
        replay.source.mirrors.insert(5, TreeState::from([(b"z.txt".to_vec(), file("zz\n"))]));
        assert_eq!(replay.refresh().unwrap(), 2);
        assert_eq!(replay.current().seq, 6);
        assert_eq!(replay.refresh().unwrap(), 0);
        // Records dropped from the store leave the timeline.
        replay.source.entries.drain(..2);
        replay.refresh().unwrap();
        assert_eq!(replay.entries().first().map(|e| e.seq), Some(3));
        assert_eq!(replay.current().seq, 6);
    }

    #[test]
    fn a_patch_that_does_not_apply_rebuilds_and_reports() {
        let mut source = two_epochs();
        // The mirror of epoch 1 is not what the journal says: no state.
        source.mirrors.insert(1, TreeState::new());
        assert!(Replay::open(source).is_err());
        let mut replay = Replay::open(two_epochs()).unwrap();
        replay.tree.insert(b"a.txt".to_vec(), file("changed behind our back\n"));
        assert!(replay.step_forward());
        assert_eq!(replay.content_of(b"a.txt"), Some(&b"one\ntwo\n"[..]));
        assert_eq!(replay.problem(), None);
    }
}
