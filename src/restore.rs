//! Rebuilding the tracked tree as it was at a sample: the mirror of the
//! sample's epoch (the tree as of that epoch's newest record) with the
//! reverse patches of every later record of the epoch applied, newest
//! first, each checked against its hashes.
//!
//! Restore holds the store's shared lock while it reads the ring and the
//! mirror, so a live monitor's commit (ring and mirror together) is seen
//! whole or not at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::history::{self, TreeState};
use crate::journal::record::{Body, Change, Node, Record, SkipReason};
use crate::journal::{self, Snapshot};
use crate::mirror::{self, Mirror};
mod file;

pub use file::{FileAt, file_at};

use crate::render::human::sanitize;
use crate::store::{self, LockMode};
use crate::tree::{as_path, is_safe_relative};

/// Errors of restore.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--at` is neither a sequence number nor a time.
    #[error(
        "cannot understand --at {0:?}: give a seq (42, #42), a time (2026-11-27T05:01:23Z, \
         \"2026-11-27 05:01:23\", 05:01) or a relative time (-10min, \"10 min ago\", yesterday, now)"
    )]
    At(String),
    /// The ring could not be read.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// The store lock failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The mirror could not be read.
    #[error(transparent)]
    Mirror(#[from] mirror::Error),
    /// The sequence number has been dropped from the ring.
    #[error("seq {seq} is no longer in the ring (the oldest record is {oldest})")]
    Dropped {
        /// Asked for.
        seq: u64,
        /// Oldest available.
        oldest: u64,
    },
    /// The sequence number has not been recorded.
    #[error("seq {seq} has not been recorded (the newest record is {newest})")]
    NotYet {
        /// Asked for.
        seq: u64,
        /// Newest available.
        newest: u64,
    },
    /// No record at or before the time.
    #[error("{at} is before the oldest record held (#{oldest} at {})", crate::render::rfc3339_us(*.oldest_time_us))]
    TooEarly {
        /// The time asked for.
        at: String,
        /// The oldest record held.
        oldest: u64,
        /// Its time, microseconds since the Unix epoch.
        oldest_time_us: u64,
    },
    /// The ring holds no record at all.
    #[error("the ring holds no records")]
    Empty,
    /// Seq 0 was asked for: records are numbered from 1.
    #[error("there is no seq 0: records are numbered from 1 (the oldest record held is {oldest})")]
    NoSeqZero {
        /// Oldest available.
        oldest: u64,
    },
    /// A record could not be decoded.
    #[error("record {seq} cannot be decoded")]
    Decode {
        /// Its sequence number.
        seq: u64,
        /// Why.
        #[source]
        source: journal::record::DecodeError,
    },
    /// A patch did not apply: the store is damaged.
    #[error("record {seq} does not replay")]
    Replay {
        /// The record.
        seq: u64,
        /// What failed.
        #[source]
        source: history::Error,
    },
    /// The point's record was lost to damage in the ring.
    #[error("seq {seq} is in a damaged stretch of the ring ({damage})")]
    Lost {
        /// Asked for.
        seq: u64,
        /// The first damage found.
        damage: String,
    },
    /// A record the point depends on is damaged.
    #[error(
        "seq {seq} cannot be rebuilt: records {from}..={to} after it are damaged in the ring, \
         and restoring needs every later record of its epoch (points after them can be restored)"
    )]
    DamagedAfter {
        /// Asked for.
        seq: u64,
        /// First missing record.
        from: u64,
        /// Last missing record.
        to: u64,
    },
    /// The mirror does not hold what the journal recorded.
    #[error("the mirror of epoch {epoch} is damaged: {path} {what}")]
    MirrorMismatch {
        /// The epoch.
        epoch: u64,
        /// The path (printable).
        path: String,
        /// What differs.
        what: String,
    },
    /// No record carries the mark.
    #[error("@{name}: no record kept carries that mark (the ring holds seq {oldest}..{newest})")]
    NoMark {
        /// The mark.
        name: String,
        /// Oldest record held.
        oldest: u64,
        /// Newest record held.
        newest: u64,
    },
    /// DEST is not empty.
    #[error("{0} exists and is not an empty directory")]
    DestNotEmpty(PathBuf),
    /// Writing DEST failed.
    #[error("cannot write {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A path in the journal would land outside DEST.
    #[error("unsafe path {0:?} in the journal: refusing to restore it")]
    UnsafePath(String),
}

/// The point to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    /// A sequence number.
    Seq(u64),
    /// The newest record at or before this time.
    Time(jiff::Timestamp),
    /// The newest record written by `mark NAME`.
    Mark(String),
}

impl At {
    /// Parse `--at`: any point [`crate::point::parse`] takes but a mark (a
    /// seq, an RFC 3339 or local time, a relative time), or a time past
    /// what a timestamp holds (later than any record).
    ///
    /// # Errors
    /// [`Error::At`].
    pub fn parse(text: &str) -> Result<At, Error> {
        At::parse_point(text).map_err(|_| Error::At(text.trim().to_string()))
    }

    /// [`At::parse`], with the point parser's own error (for options
    /// other than `--at`).
    ///
    /// # Errors
    /// [`crate::point::ParseError`].
    pub fn parse_point(text: &str) -> Result<At, crate::point::ParseError> {
        let text = text.trim();
        let error = match crate::point::parse_now(text) {
            Ok(crate::point::Point::Seq(seq)) => return Ok(At::Seq(seq)),
            Ok(crate::point::Point::Time(ts)) => return Ok(At::Time(ts)),
            Ok(crate::point::Point::Mark(name)) => return Ok(At::Mark(name)),
            Err(e) => e,
        };
        // A well-formed time past what a timestamp holds (9999-12-31, year
        // 12000): later than any record.
        let year = text.bytes().take_while(u8::is_ascii_digit).count();
        let far = year >= 4
            && text[..year].parse::<u64>().is_ok_and(|y| y >= 9999)
            && Self::time(&format!("2000{}", &text[year..])).is_some();
        if far {
            return Ok(At::Time(jiff::Timestamp::MAX));
        }
        Err(error)
    }

    /// An RFC 3339 time, or a local `YYYY-MM-DD HH:MM:SS[.ffffff]`.
    fn time(text: &str) -> Option<jiff::Timestamp> {
        if let Ok(ts) = text.parse::<jiff::Timestamp>() {
            return Some(ts);
        }
        let civil: jiff::civil::DateTime = text.parse().ok()?;
        Some(civil.to_zoned(jiff::tz::TimeZone::system()).ok()?.timestamp())
    }
}

/// A tree at a point of history.
#[derive(Debug)]
pub struct State {
    /// The record the tree is as of.
    pub seq: u64,
    /// Its time, microseconds since the Unix epoch.
    pub time_us: u64,
    /// The newest record held (so a time after it can be pointed out).
    pub newest: u64,
    /// The epoch `seq` belongs to.
    pub epoch: u64,
    /// The watched directory of the epoch, as its baseline named it (when
    /// the baseline is still held).
    pub cwd: Option<Vec<u8>>,
    /// The tree: every entry whose content at `seq` is known.
    pub tree: TreeState,
    /// The files' permission bits at `seq`, where the journal recorded
    /// them (a store from before modes were recorded has none).
    pub modes: history::Modes,
    /// Entries whose content at `seq` is not known, left out of `tree`.
    pub left_out: Vec<LeftOut>,
    /// Files of `tree` whose mode at `seq` is not known though the store
    /// records modes: the baseline has left the ring and the store's modes
    /// anchor is missing, damaged, or older than the oldest record held (a
    /// crash or a full disk kept it from being renewed). Empty for a store
    /// from before modes.
    pub modes_unknown: Vec<Vec<u8>>,
    /// Damaged stretches of the ring; the tree was rebuilt from intact
    /// records that do not depend on them.
    pub damage: Vec<journal::Damage>,
}

/// An entry that existed at the point but whose content there is not
/// known: the target could not read it when it last changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    /// Its path.
    pub path: Vec<u8>,
    /// The record that found it unreadable.
    pub since: u64,
    /// Why it could not be read.
    pub reason: SkipReason,
}

impl LeftOut {
    /// The one line that says why it is left out of the tree at `seq`.
    pub fn describe(&self, seq: u64) -> String {
        format!(
            "{}: left out: its content at seq {seq} is not known ({} since seq {})",
            sanitize(&self.path),
            self.reason,
            self.since
        )
    }
}

/// The seq `at` names among `frames` (the intact records, oldest first)
/// and its index there.
fn point_index(
    at: At,
    frames: &[journal::Frame<'_>],
    problems: &[journal::Damage],
    info: journal::RingInfo,
) -> Result<(u64, usize), Error> {
    let (oldest, newest) = match (frames.first(), frames.last()) {
        (Some(first), Some(last)) => (first.seq, last.seq),
        _ => (info.next_seq, info.next_seq.saturating_sub(1)),
    };
    let seq = match at {
        At::Seq(0) => return Err(Error::NoSeqZero { oldest }),
        At::Seq(seq) if seq < oldest => return Err(Error::Dropped { seq, oldest }),
        At::Seq(seq) if seq > newest => return Err(Error::NotYet { seq, newest }),
        At::Seq(seq) => seq,
        At::Mark(name) => {
            let marks = crate::point::marks_in(frames);
            *marks.get(&name).ok_or_else(|| Error::NoMark { name: name.clone(), oldest, newest })?
        }
        At::Time(ts) => {
            let limit = ts.as_microsecond();
            let first = frames.first().ok_or(Error::Empty)?;
            frames.iter().rev().find(|f| (f.time_us as i64) <= limit).map(|f| f.seq).ok_or_else(|| {
                Error::TooEarly { at: ts.to_string(), oldest: first.seq, oldest_time_us: first.time_us }
            })?
        }
    };
    match frames.iter().position(|f| f.seq == seq) {
        Some(index) => Ok((seq, index)),
        None => Err(match problems.first() {
            Some(damage) => Error::Lost { seq, damage: damage.to_string() },
            None => Error::Dropped { seq, oldest },
        }),
    }
}

/// The tracked tree as of `at`.
///
/// Everything returned is checked against the journal: the mirror the
/// tree starts from must hold, for every path, the content (by hash) that
/// the journal's records of the epoch say it holds, and every reverse
/// patch checks its own hashes. Damage is an error, never a wrong tree.
///
/// # Errors
/// Any [`Error`]: the point is not in the ring, the records it depends on
/// are damaged, the mirror does not match the journal, or the journal does
/// not replay.
pub fn state_at(store_dir: &Path, at: At) -> Result<State, Error> {
    with_ring(store_dir, |snapshot| state_in(store_dir, &snapshot, at))
}

/// The seq `at` names in the store's ring (an intact record), without
/// rebuilding anything.
///
/// # Errors
/// As [`state_at`] for a point that names no record.
pub fn resolve(store_dir: &Path, at: At) -> Result<u64, Error> {
    with_ring(store_dir, |snapshot| {
        let scan = snapshot.scan();
        Ok(point_index(at, &scan.frames, &scan.problems, snapshot.info())?.0)
    })
}

/// Run `read` on a copy of the store's ring taken under the store's shared
/// lock, held until `read` returns: a live monitor commits the ring and the
/// mirror together under the exclusive lock, so what `read` finds in the
/// mirror matches the copy.
fn with_ring<T>(store_dir: &Path, read: impl FnOnce(Snapshot) -> Result<T, Error>) -> Result<T, Error> {
    let ring = store_dir.join(store::RING_FILE);
    if !ring.exists() {
        // Let the reader name the missing ring in its error.
        Snapshot::read(&ring)?;
    }
    let lock = store::LockFile::open(store_dir)?;
    let _guard = lock.lock(LockMode::Shared)?;
    read(Snapshot::read(&ring)?)
}

/// [`state_at`] on a copy of the ring.
fn state_in(store_dir: &Path, snapshot: &Snapshot, at: At) -> Result<State, Error> {
    let held = epoch_of(snapshot, at)?;
    let mut tree = mirror_tree(store_dir, &held, None)?;
    let records = &held.records;
    for (seq, record) in records[held.at_index + 1..].iter().rev() {
        if let Some(sample) = record.changes() {
            history::apply_reverse(&mut tree, &sample.files)
                .map_err(|source| Error::Replay { seq: *seq, source })?;
        }
    }
    let left_out = unknown_at(&records[..=held.at_index]);
    for entry in &left_out {
        tree.remove(&entry.path);
    }
    let mut modes = crate::modes::at(records, held.at_index, crate::modes::read(store_dir).as_ref());
    modes.retain(|path, _| tree.get(path).is_some_and(|(node, _)| *node == Node::File));
    let records_modes =
        records.get(held.at_index).is_some_and(|(_, r)| r.version >= crate::journal::record::MODES_SINCE);
    let modes_unknown = if records_modes {
        tree.iter()
            .filter(|(path, (node, _))| *node == Node::File && !modes.contains_key(*path))
            .map(|(path, _)| path.clone())
            .collect()
    } else {
        Vec::new()
    };
    let cwd = held.cwd();
    let Held { seq, time_us, newest, epoch, damage, .. } = held;
    Ok(State { seq, time_us, newest, epoch, cwd, tree, modes, left_out, modes_unknown, damage })
}

/// A point and its epoch's records, as the ring holds them.
struct Held {
    seq: u64,
    time_us: u64,
    newest: u64,
    epoch: u64,
    /// The epoch's held records, oldest first.
    records: Vec<(u64, Record)>,
    /// The point's index among them.
    at_index: usize,
    /// No record of a later epoch follows: the mirror may be one record
    /// behind after a crash.
    newest_epoch: bool,
    damage: Vec<journal::Damage>,
}

impl Held {
    /// The watched directory, when the epoch's baseline is held.
    fn cwd(&self) -> Option<Vec<u8>> {
        match self.records.first() {
            Some((_, Record { body: Body::Baseline(baseline), .. })) => Some(baseline.cwd.clone()),
            _ => None,
        }
    }
}

/// The point `at` names and its epoch's records; every record after it in
/// the epoch, and the one right after the epoch, must be held (restoring
/// walks back from the mirror through them).
fn epoch_of(snapshot: &Snapshot, at: At) -> Result<Held, Error> {
    // Every intact record, including those after a damaged stretch.
    let scan = snapshot.scan();
    let frames = scan.frames;
    let (seq, index) = point_index(at, &frames, &scan.problems, snapshot.info())?;
    let newest = frames.last().map_or(seq, |f| f.seq);
    let decode = |frame: &journal::Frame<'_>| {
        Record::decode(&frame.payload).map_err(|source| Error::Decode { seq: frame.seq, source })
    };
    let epoch = decode(&frames[index])?.epoch;
    let mut records = Vec::new();
    for frame in frames[..index].iter().rev() {
        match Record::decode(&frame.payload) {
            Ok(record) if record.epoch == epoch => records.push((frame.seq, record)),
            _ => break,
        }
    }
    records.reverse();
    let at_index = records.len();
    let mut end = index;
    for frame in &frames[index..] {
        let record = decode(frame)?;
        if record.epoch != epoch {
            break;
        }
        records.push((frame.seq, record));
        end += 1;
    }
    let after = frames.get(end).map(|f| f.seq);
    let later_seqs = records[at_index..].iter().map(|(s, _)| *s).chain(after);
    let mut previous = None;
    for next in later_seqs {
        if let Some(prev) = previous
            && next != prev + 1
        {
            return Err(Error::DamagedAfter { seq, from: prev + 1, to: next - 1 });
        }
        previous = Some(next);
    }
    let time_us = frames[index].time_us;
    let newest_epoch = after.is_none();
    Ok(Held { seq, time_us, newest, epoch, records, at_index, newest_epoch, damage: scan.problems })
}

/// The mirror of the point's epoch as of its newest record (rolled
/// forward when a crash left it one record behind), checked against the
/// records: the whole tree, or only `names` (read one by one).
fn mirror_tree(
    store_dir: &Path,
    held: &Held,
    names: Option<&std::collections::BTreeSet<Vec<u8>>>,
) -> Result<TreeState, Error> {
    let mirror = Mirror::open_existing(store_dir, held.epoch)?;
    let mut tree = match names {
        None => mirror.load_all()?,
        Some(names) => {
            let mut tree = TreeState::new();
            for name in names {
                if let Some(entry) = mirror.read(name)? {
                    tree.insert(name.clone(), entry);
                }
            }
            tree
        }
    };
    if held.newest_epoch
        && let Some(sample) = held.records.last().and_then(|(_, r)| r.changes())
    {
        // A crash between committing the last record and updating the
        // mirror leaves the mirror behind it (the next start repairs it).
        let within = |p: &Vec<u8>| names.is_none_or(|n| n.contains(p));
        let files: Vec<_> = sample
            .files
            .iter()
            .filter(|c| within(&c.path) || c.from.as_ref().is_some_and(within))
            .cloned()
            .collect();
        if let Err(never) = history::roll_forward(&mut tree, &files) {
            match never {}
        }
    }
    check_mirror(held.epoch, &tree, &held.records, names)?;
    Ok(tree)
}

/// Two points of one epoch, read together for `undo`: at the later one
/// (B) and the earlier one (A), only the entries the records after A
/// name; every other path is the same at both. The mirror is read for
/// those paths only, each checked against the journal.
#[derive(Debug)]
pub struct Span {
    /// B.
    pub to_seq: u64,
    /// The watched directory (when the epoch's baseline is held).
    pub cwd: Option<Vec<u8>>,
    /// The paths the records after A up to B name, each with its entry at
    /// B (absent: not there at B).
    pub to_changed: TreeState,
    /// The files' modes at B.
    pub to_modes: history::Modes,
    /// Entries whose content at B is not known.
    pub to_left_out: Vec<LeftOut>,
    /// A.
    pub from_seq: u64,
    /// The same paths, each with its entry at A (absent: not there at A).
    pub from_changed: TreeState,
    /// The files' modes at A.
    pub from_modes: history::Modes,
    /// Entries whose content at A is not known.
    pub from_left_out: Vec<LeftOut>,
    /// The paths the records after A up to B name.
    pub touched: std::collections::BTreeSet<Vec<u8>>,
}

/// What [`span_at`] found: the span, or why A and B make none.
#[derive(Debug)]
pub enum Spanned {
    /// A is an earlier record of B's epoch.
    Span(Box<Span>),
    /// A is after B, or in an earlier epoch than B's (which starts at
    /// `epoch`).
    Apart {
        /// A.
        from: u64,
        /// B.
        to: u64,
        /// The first seq of B's epoch.
        epoch: u64,
    },
}

/// A and B read together (see [`Span`]).
///
/// # Errors
/// As [`state_at`].
pub fn span_at(store_dir: &Path, a: At, b: At) -> Result<Spanned, Error> {
    with_ring(store_dir, |snapshot| {
        let held = epoch_of(&snapshot, b)?;
        let scan = snapshot.scan();
        let (from_seq, _) = point_index(a, &scan.frames, &scan.problems, snapshot.info())?;
        let records = &held.records;
        let Some(at_a) = records.iter().position(|(s, _)| *s == from_seq).filter(|&i| i <= held.at_index)
        else {
            return Ok(Spanned::Apart { from: from_seq, to: held.seq, epoch: held.epoch });
        };
        let named = |range: std::ops::RangeFrom<usize>| {
            let mut names = std::collections::BTreeSet::new();
            for (_, record) in &records[range] {
                for change in record.changes().map_or(&[][..], |s| &s.files[..]) {
                    names.insert(change.path.clone());
                    names.extend(change.from.clone());
                }
            }
            names
        };
        let names = named(at_a + 1..);
        let mut tree = mirror_tree(store_dir, &held, Some(&names))?;
        let walk_back = |tree: &mut TreeState, range: std::ops::Range<usize>| -> Result<(), Error> {
            for (seq, record) in records[range].iter().rev() {
                if let Some(sample) = record.changes() {
                    history::apply_reverse(tree, &sample.files)
                        .map_err(|source| Error::Replay { seq: *seq, source })?;
                }
            }
            Ok(())
        };
        walk_back(&mut tree, held.at_index + 1..records.len())?;
        let mut from_changed = tree.clone();
        walk_back(&mut from_changed, at_a + 1..held.at_index + 1)?;
        let to_left_out = unknown_at(&records[..=held.at_index]);
        let from_left_out = unknown_at(&records[..=at_a]);
        for entry in &to_left_out {
            tree.remove(&entry.path);
        }
        for entry in &from_left_out {
            from_changed.remove(&entry.path);
        }
        let anchor = crate::modes::read(store_dir);
        let to_modes = crate::modes::at(records, held.at_index, anchor.as_ref());
        let from_modes = crate::modes::at(records, at_a, anchor.as_ref());
        // Only what the records between A and B name differs.
        let mut touched = std::collections::BTreeSet::new();
        for (_, record) in &records[at_a + 1..=held.at_index] {
            for change in record.changes().map_or(&[][..], |s| &s.files[..]) {
                touched.insert(change.path.clone());
                touched.extend(change.from.clone());
            }
        }
        Ok(Spanned::Span(Box::new(Span {
            to_seq: held.seq,
            cwd: held.cwd(),
            to_changed: tree,
            to_modes,
            to_left_out,
            from_seq,
            from_changed,
            from_modes,
            from_left_out,
            touched,
        })))
    })
}

/// Check `tree`, the mirror of `epoch` as of its newest record, against
/// what the epoch's `records` say: the hash of every path a record names,
/// and (when the baseline is among them) that no other path is there.
fn check_mirror(
    epoch: u64,
    tree: &TreeState,
    records: &[(u64, Record)],
    names: Option<&std::collections::BTreeSet<Vec<u8>>>,
) -> Result<(), Error> {
    /// An entry's kind and hash, or `None` for gone; and the record that
    /// said so.
    type Said = (Option<(Node, u64)>, u64);
    let mut expect: HashMap<&[u8], Said> = HashMap::new();
    let mut complete = false;
    let mut previous: Option<u64> = None;
    for (seq, record) in records {
        if previous.is_some_and(|p| *seq != p + 1) {
            // Records missing in between: what they changed is unknown.
            expect.clear();
            complete = false;
        }
        previous = Some(*seq);
        match &record.body {
            Body::Baseline(baseline) => {
                expect = baseline
                    .files
                    .iter()
                    .map(|f| (f.path.as_slice(), (Some((f.node, f.hash)), *seq)))
                    .collect();
                complete = true;
            }
            Body::Sample(sample) | Body::Undo { sample, .. } => {
                for change in &sample.files {
                    for path in std::iter::once(&change.path).chain(&change.from) {
                        if !is_safe_relative(path) {
                            return Err(Error::UnsafePath(sanitize(&path[..path.len().min(200)])));
                        }
                    }
                    if let Some(from) = &change.from {
                        expect.insert(from, (None, *seq));
                    }
                    let entry =
                        (change.change != Change::Deleted).then_some((change.node, change.patch.new_hash));
                    expect.insert(&change.path, (entry, *seq));
                }
            }
            _ => {}
        }
    }
    let mismatch = |path: &[u8], what: String| Error::MirrorMismatch { epoch, path: sanitize(path), what };
    for (path, (want, seq)) in &expect {
        if names.is_some_and(|n| !n.contains(*path)) {
            continue;
        }
        match (want, tree.get(*path)) {
            (Some((node, hash)), Some((found, content))) => {
                let found_hash = crate::diff::hash(content);
                if found != node || found_hash != *hash {
                    return Err(mismatch(
                        path,
                        format!("holds content with hash {found_hash:016x}, seq {seq} recorded {hash:016x}"),
                    ));
                }
            }
            (Some(_), None) => return Err(mismatch(path, format!("missing, seq {seq} recorded it"))),
            (None, Some(_)) => return Err(mismatch(path, format!("present, seq {seq} recorded it gone"))),
            (None, None) => {}
        }
    }
    if complete && let Some(extra) = tree.keys().find(|p| !expect.contains_key(p.as_slice())) {
        return Err(mismatch(extra, "present, but no record of the epoch names it".to_string()));
    }
    Ok(())
}

/// The entries whose content at the last of `records` is not known: found
/// unreadable by a record, and not read since (a later change of the path
/// is a successful read).
fn unknown_at(records: &[(u64, Record)]) -> Vec<LeftOut> {
    let mut unknown: BTreeMap<&[u8], (u64, &SkipReason)> = BTreeMap::new();
    for (seq, record) in records {
        if let Some(sample) = record.changes() {
            for change in &sample.files {
                unknown.remove(change.path.as_slice());
                if let Some(from) = &change.from {
                    unknown.remove(from.as_slice());
                }
            }
            for skipped in &sample.skipped {
                if matches!(skipped.reason, SkipReason::Unreadable { .. }) {
                    unknown.insert(&skipped.path, (*seq, &skipped.reason));
                }
            }
        }
    }
    unknown
        .into_iter()
        .map(|(path, (since, reason))| LeftOut { path: path.to_vec(), since, reason: reason.clone() })
        .collect()
}

/// Write `tree` into `dest`, which must not exist or be an empty
/// directory. Files are created new (never through an existing link),
/// with their mode from `modes` when it is known (else as the umask has
/// it); symlinks are created last, so none can redirect a later write.
///
/// Every path is checked before anything is written. Directories are made
/// once each; the files are then written by several threads, each taking a
/// run of neighbouring paths: creating files is almost all kernel time,
/// which threads spread over the cores.
///
/// # Errors
/// [`Error::DestNotEmpty`], [`Error::UnsafePath`] or [`Error::Write`].
pub fn write_tree(tree: &TreeState, modes: &history::Modes, dest: &Path) -> Result<(), Error> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::DestNotEmpty(dest.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).create(dest).map_err(write_err(dest))?;
        }
        Err(_) => return Err(Error::DestNotEmpty(dest.to_path_buf())),
    }
    let mut files = Vec::new();
    let mut links = Vec::new();
    let mut parents = BTreeSet::new();
    for (rel, (node, content)) in tree {
        // An entry below another entry (below a symlink, say) would be
        // written through it: a crafted journal could aim it anywhere.
        let below_an_entry = rel.iter().enumerate().any(|(i, &b)| b == b'/' && tree.contains_key(&rel[..i]));
        if !is_safe_relative(rel) || below_an_entry {
            // Enough of the name to recognise it on one line.
            let shown = String::from_utf8_lossy(&rel[..rel.len().min(200)]).into_owned();
            return Err(Error::UnsafePath(shown));
        }
        if let Some(slash) = rel.iter().rposition(|&b| b == b'/') {
            parents.insert(&rel[..slash]);
        }
        match node {
            Node::File => files.push((rel.as_slice(), content.as_slice(), modes.get(rel).copied())),
            Node::Symlink => links.push((rel.as_slice(), content.as_slice())),
        }
    }
    // Sorted, so a directory comes before the ones inside it.
    for parent in parents {
        let path = dest.join(as_path(parent));
        DirBuilder::new().recursive(true).create(&path).map_err(write_err(&path))?;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_WRITERS);
    let per_thread = files.len().div_ceil(threads).max(MIN_FILES_PER_WRITER);
    std::thread::scope(|scope| {
        let writers: Vec<_> =
            files.chunks(per_thread).map(|chunk| scope.spawn(move || write_files(dest, chunk))).collect();
        // Every writer is joined; the first error is the one reported.
        let mut outcome = Ok(());
        for writer in writers {
            let result = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    })?;
    for (rel, target) in links {
        let path = dest.join(as_path(rel));
        std::os::unix::fs::symlink(as_path(target), &path).map_err(write_err(&path))?;
    }
    Ok(())
}

/// The permission bits a restore gives: all but set-user-ID and
/// set-group-ID (and the sticky bit, which means nothing on a file).
pub const RESTORED_MODE_BITS: u32 = 0o777;

/// At most this many threads write files.
const MAX_WRITERS: usize = 8;
/// Fewer files than this are not worth a thread of their own.
const MIN_FILES_PER_WRITER: usize = 512;

fn write_files(dest: &Path, files: &[(&[u8], &[u8], Option<u32>)]) -> Result<(), Error> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    for (rel, content, mode) in files {
        let path = dest.join(as_path(rel));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(write_err(&path))?;
        file.write_all(content).map_err(write_err(&path))?;
        if let Some(mode) = mode {
            // fchmod: exact, whatever the umask; never set-id (the mode
            // came from a tree others may write).
            file.set_permissions(fs::Permissions::from_mode(mode & RESTORED_MODE_BITS))
                .map_err(write_err(&path))?;
        }
    }
    Ok(())
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Write { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_parses_seq_and_times() {
        assert_eq!(At::parse("7").unwrap(), At::Seq(7));
        assert!(matches!(At::parse("2026-11-23T15:40:01.123456Z").unwrap(), At::Time(_)));
        assert!(matches!(At::parse("2026-11-23 15:40:01").unwrap(), At::Time(_)));
        assert!(matches!(At::parse("yesterday").unwrap(), At::Time(_)));
        assert!(matches!(At::parse("10 min ago").unwrap(), At::Time(_)));
        assert_eq!(At::parse("#7").unwrap(), At::Seq(7));
        assert!(At::parse("soon").is_err());
        assert!(At::parse("").is_err());
        assert_eq!(At::parse("9999-12-31T23:59:59Z").unwrap(), At::Time(jiff::Timestamp::MAX));
        assert_eq!(At::parse("12000-01-01 00:00:00").unwrap(), At::Time(jiff::Timestamp::MAX));
        assert!(At::parse("99999-soon").is_err());
        assert!(At::parse("99999").is_ok_and(|at| at == At::Seq(99999)));
    }

    #[test]
    fn write_tree_refuses_escapes_and_non_empty_dest() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = TreeState::new();
        tree.insert(b"../evil".to_vec(), (Node::File, b"x".to_vec()));
        let dest = dir.path().join("out");
        assert!(matches!(write_tree(&tree, &Default::default(), &dest), Err(Error::UnsafePath(_))));
        assert!(!dir.path().join("evil").exists());
        assert!(matches!(
            write_tree(&TreeState::new(), &Default::default(), dir.path()),
            Err(Error::DestNotEmpty(_))
        ));
    }

    #[test]
    fn symlink_cannot_redirect_a_file_write() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut tree = TreeState::new();
        tree.insert(b"a".to_vec(), (Node::Symlink, outside.path().as_os_str().as_encoded_bytes().to_vec()));
        tree.insert(b"a/passwd".to_vec(), (Node::File, b"owned".to_vec()));
        let _ = write_tree(&tree, &Default::default(), &dir.path().join("out"));
        assert!(!outside.path().join("passwd").exists());
    }

    #[test]
    fn a_symlink_below_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut tree = TreeState::new();
        tree.insert(b"a".to_vec(), (Node::Symlink, outside.path().as_os_str().as_encoded_bytes().to_vec()));
        tree.insert(b"a/b".to_vec(), (Node::Symlink, b"/etc/passwd".to_vec()));
        assert!(matches!(
            write_tree(&tree, &Default::default(), &dir.path().join("out")),
            Err(Error::UnsafePath(_))
        ));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written through the link");
    }
}
