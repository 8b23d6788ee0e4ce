//! The target's memory map (`/proc/<pid>/maps`, proc(5)): parsing it,
//! diffing one sample's map against the previous one, and rebuilding the
//! map at any recorded sequence number.
//!
//! This module owns the map's text and its history. It does not own the
//! journal (records come from [`crate::journal`]) nor the process handle
//! ([`crate::proc::Target`] pins `/proc/<pid>`, so a recycled PID is never
//! read).
//!
//! # What is stored
//!
//! A map is a set of lines exactly as the kernel printed them. The baseline
//! record carries every line; a sample carries the lines **added** and
//! **removed** since the previous sample ([`MapsDelta`]). A line is the
//! identity of a mapping: a mapping whose range, permissions, offset or
//! backing file changed prints a different line, so it shows up as one
//! line removed and one added. The kernel prints mappings sorted by start address and no two
//! share one, so ordering a set of lines by (start, bytes) gives the
//! kernel's text back byte for byte ([`Map::render`]).
//!
//! # Cost
//!
//! [`MapsProbe`] keeps the raw text of the previous sample. A sample reads
//! the file into a reused buffer and compares the bytes: when nothing
//! changed that is one read and one `memcmp`, with no parsing and no
//! allocation. Only when the bytes differ are the lines diffed (sorted
//! slices of both texts, merged; only changed lines are copied).
//!
//! # The newest map
//!
//! The baseline leaves the ring when it wraps, so the probe also keeps the
//! newest map of the current epoch in `<store>/maps` (an [`Anchor`]: the
//! text and the sequence number it is as of). It is rewritten, atomically
//! (written in `<store>/tmp/`, renamed into place) after the commit, when
//! the epoch starts and whenever the ring has dropped a record newer than
//! the anchor: about once per trip around the ring, so its cost does not
//! follow the sampling rate. A reader rebuilds the map at a sequence
//! number forwards from the baseline while the baseline is held, else
//! from the anchor (backwards to older records, forwards to newer ones).
//! A crash between a commit and the rewrite leaves an older anchor; a
//! reader checks that every record after it is still held, and otherwise
//! says the map cannot be rebuilt, never returning a wrong one.
//!
//! # Kernel notes
//!
//! - The text is produced on the fly, a page or so per `read(2)`; a large
//!   map read while the process changes it may mix the two states (the
//!   kernel takes the mmap lock per read call, not for the whole file). The
//!   next sample sees the settled state, and the recorded deltas stay
//!   consistent with the recorded texts, so replay is unaffected.
//! - The kernel pads the pathname to a column and escapes a newline in it
//!   as `\012` (`seq_file_path`), but does not escape a backslash, so a
//!   name with a literal `\012` reads the same; [`unescape`] undoes the
//!   escape for display only, the stored line keeps the kernel's bytes.
//! - A zombie's map reads as empty: [`MapsProbe`] reports that as
//!   [`Error::Empty`] instead of recording every mapping as removed.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::journal::record::{Body, MapsDelta, Record};
use crate::proc::{self, Target};
use crate::store;

/// Errors reading a map or rebuilding one from the journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/proc/<pid>/maps` could not be read (the process may be gone).
    #[error("cannot read the memory map")]
    Read(#[source] proc::Error),
    /// The map read as empty: the process has exited (a zombie) or is a
    /// kernel thread.
    #[error("process {pid} has no memory map (it has exited)")]
    Empty {
        /// The PID.
        pid: i32,
    },
    /// A delta removes a line that is not in the map: the journal is
    /// damaged (or this is a bug).
    #[error("record {seq} removes a mapping that is not in the map ({line:?}): the journal does not replay")]
    Replay {
        /// The record (0 when not known).
        seq: u64,
        /// The missing line, lossily decoded.
        line: String,
    },
    /// The sequence number is not in the ring.
    #[error("seq {seq} is not in the ring (it holds records {oldest}..{newest})")]
    NotInRing {
        /// Asked for.
        seq: u64,
        /// Oldest record held.
        oldest: u64,
        /// Newest record held.
        newest: u64,
    },
    /// The baseline of the record's epoch has left the ring and no anchor
    /// reaches the record.
    #[error(
        "the baseline of seq {seq} (seq {epoch}) is no longer in the ring and the store's newest map does not reach it"
    )]
    BaselineDropped {
        /// Asked for.
        seq: u64,
        /// The epoch (its baseline's sequence number).
        epoch: u64,
    },
    /// Records between the point and where its map is rebuilt from are
    /// missing (a damaged stretch of the ring).
    #[error("the map at seq {seq} cannot be rebuilt: records {from}..={to} are damaged or missing")]
    Missing {
        /// Asked for.
        seq: u64,
        /// The first record rebuilding needs.
        from: u64,
        /// The last.
        to: u64,
    },
    /// The anchor file could not be written.
    #[error("cannot write the newest map {path}")]
    Anchor {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A line of `/proc/<pid>/maps` that does not have the kernel's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed maps line: bad {0} field")]
pub struct ParseError(pub &'static str);

/// Access bits of a mapping (`rwxp` / `rwxs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perms {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Shared (`s`) rather than private copy-on-write (`p`).
    pub shared: bool,
}

/// What backs a mapping, from its pathname field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing<'a> {
    /// No pathname: an anonymous mapping (heap from `mmap`, thread stacks).
    Anonymous,
    /// A file (pathname starts with `/`), as the kernel escaped it.
    File {
        /// The path without the ` (deleted)` suffix.
        path: &'a [u8],
        /// The file was unlinked or replaced after it was mapped.
        deleted: bool,
    },
    /// Anything else: `[heap]`, `[stack]`, `[vdso]`, `[vvar]`,
    /// `[vsyscall]`, `[anon:name]`, `[stack:tid]`, `anon_inode:…`.
    Special(&'a [u8]),
}

/// One parsed line, borrowing from the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping<'a> {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Access bits.
    pub perms: Perms,
    /// Offset into the file (or the page offset of an anonymous mapping).
    pub offset: u64,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Inode of the file (0 when anonymous).
    pub inode: u64,
    /// The pathname field, padding removed, bytes as the kernel printed them.
    pub pathname: &'a [u8],
}

const DELETED: &[u8] = b" (deleted)";

impl<'a> Mapping<'a> {
    /// What backs the mapping.
    pub fn backing(&self) -> Backing<'a> {
        match self.pathname.first() {
            None => Backing::Anonymous,
            Some(b'/') => match self.pathname.strip_suffix(DELETED) {
                Some(path) => Backing::File { path, deleted: true },
                None => Backing::File { path: self.pathname, deleted: false },
            },
            Some(_) => Backing::Special(self.pathname),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range is empty (never for a kernel line).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Split off the next space-terminated field (one separating space).
fn field<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let (head, tail) = rest.split_at(end);
    *rest = tail.get(1..).unwrap_or(&[]);
    head
}

fn parse_hex(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(acc << 4 | u64::from(digit))
    })
}

fn parse_dec(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Parse one line of `/proc/<pid>/maps` (a trailing newline is allowed).
/// Never panics, whatever the bytes.
///
/// # Errors
/// [`ParseError`] naming the first field that does not have the kernel's
/// format.
pub fn parse_line(line: &[u8]) -> Result<Mapping<'_>, ParseError> {
    let mut rest = line.strip_suffix(b"\n").unwrap_or(line);
    let (start, end) = field(&mut rest)
        .split(|&b| b == b'-')
        .collect::<ArrayPair>()
        .0
        .and_then(|(a, b)| Some((parse_hex(a)?, parse_hex(b)?)))
        .filter(|(a, b)| a <= b)
        .ok_or(ParseError("address"))?;
    let perms = match field(&mut rest) {
        &[r, w, x, s]
            if matches!(r, b'r' | b'-')
                && matches!(w, b'w' | b'-')
                && matches!(x, b'x' | b'-')
                && matches!(s, b's' | b'p') =>
        {
            Perms { read: r == b'r', write: w == b'w', exec: x == b'x', shared: s == b's' }
        }
        _ => return Err(ParseError("permissions")),
    };
    let offset = parse_hex(field(&mut rest)).ok_or(ParseError("offset"))?;
    let (major, minor) = field(&mut rest)
        .split(|&b| b == b':')
        .collect::<ArrayPair>()
        .0
        .and_then(|(a, b)| Some((u32::try_from(parse_hex(a)?).ok()?, u32::try_from(parse_hex(b)?).ok()?)))
        .ok_or(ParseError("device"))?;
    let inode = parse_dec(field(&mut rest)).ok_or(ParseError("inode"))?;
    let pad = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    Ok(Mapping { start, end, perms, offset, major, minor, inode, pathname: &rest[pad..] })
}

/// Collects exactly two items (`None` for any other count).
struct ArrayPair<'a>(Option<(&'a [u8], &'a [u8])>);

impl<'a> FromIterator<&'a [u8]> for ArrayPair<'a> {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> Self {
        let mut iter = iter.into_iter();
        match (iter.next(), iter.next(), iter.next()) {
            (Some(a), Some(b), None) => ArrayPair(Some((a, b))),
            _ => ArrayPair(None),
        }
    }
}

/// The non-empty lines of a maps text, without their newlines.
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n').filter(|line| !line.is_empty())
}

/// Parse every line of a maps text.
pub fn parse(text: &[u8]) -> impl Iterator<Item = Result<Mapping<'_>, ParseError>> {
    lines(text).map(parse_line)
}

/// Undo the kernel's `\012` escape of a newline in a pathname (display
/// only: see the module notes on ambiguity).
pub fn unescape(pathname: &[u8]) -> Cow<'_, [u8]> {
    const ESCAPED: &[u8] = b"\\012";
    if !pathname.windows(ESCAPED.len()).any(|w| w == ESCAPED) {
        return Cow::Borrowed(pathname);
    }
    let mut out = Vec::with_capacity(pathname.len());
    let mut rest = pathname;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix(ESCAPED) {
            out.push(b'\n');
            rest = tail;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    Cow::Owned(out)
}

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

/// The map as of record `seq`, from decoded records in ring order: the
/// baseline of `seq`'s epoch and the deltas of the epoch's samples up to
/// `seq`; or, once that baseline has left the ring, the epoch's `anchor`
/// and the deltas between it and `seq`, undone or applied.
///
/// # Errors
/// [`Error::NotInRing`], [`Error::BaselineDropped`] or [`Error::Replay`].
pub fn map_at(records: &[(u64, Record)], seq: u64, anchor: Option<&Anchor>) -> Result<Map, Error> {
    let oldest = records.first().map_or(0, |r| r.0);
    let newest = records.last().map_or(0, |r| r.0);
    let index =
        records.iter().position(|(s, _)| *s == seq).ok_or(Error::NotInRing { seq, oldest, newest })?;
    let epoch = records[index].1.epoch;
    let deltas = |range: std::ops::RangeInclusive<u64>| {
        records.iter().filter_map(move |(s, record)| match &record.body {
            Body::Sample(sample) if record.epoch == epoch && range.contains(s) => Some((*s, &sample.maps)),
            _ => None,
        })
    };
    // Every record between where the map starts and `seq` must be held.
    let held = |from: u64, to: u64| {
        let count = records.iter().filter(|(s, _)| (from..=to).contains(s)).count() as u64;
        if from <= to && count != to - from + 1 { Err(Error::Missing { seq, from, to }) } else { Ok(()) }
    };
    let with_seq = |s: u64| {
        move |e| match e {
            Error::Replay { line, .. } => Error::Replay { seq: s, line },
            other => other,
        }
    };
    let baseline = records[..=index].iter().rev().find_map(|(s, r)| match &r.body {
        Body::Baseline(b) if *s == epoch => Some(b),
        _ => None,
    });
    // From the baseline when every record up to `seq` is held; otherwise
    // from the anchor (a damaged stretch may lie between the two).
    let usable_anchor = anchor.filter(|a| a.epoch == epoch && a.seq + 1 >= oldest && a.seq <= newest);
    if let Some(baseline) = baseline {
        let from_baseline = held(epoch, seq);
        if from_baseline.is_ok() || usable_anchor.is_none() {
            from_baseline?;
            let mut map = Map::from_lines(&baseline.maps);
            for (s, delta) in deltas(epoch + 1..=seq) {
                map.apply_forward(delta).map_err(with_seq(s))?;
            }
            return Ok(map);
        }
    }
    // Every record between the anchor and `seq` must be held: a stale
    // anchor (a crash before its rewrite) must not yield a wrong map.
    let anchor = usable_anchor.ok_or(Error::BaselineDropped { seq, epoch })?;
    let mut map = anchor.map.clone();
    held(seq.min(anchor.seq + 1), seq.max(anchor.seq))?;
    if seq >= anchor.seq {
        for (s, delta) in deltas(anchor.seq + 1..=seq) {
            map.apply_forward(delta).map_err(with_seq(s))?;
        }
    } else {
        let later: Vec<_> = deltas(seq + 1..=anchor.seq).collect();
        for (s, delta) in later.into_iter().rev() {
            map.apply_reverse(delta).map_err(with_seq(s))?;
        }
    }
    Ok(map)
}

/// The newest map of an epoch, as kept in `<store>/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The epoch the map belongs to.
    pub epoch: u64,
    /// The record the map is as of.
    pub seq: u64,
    /// The map.
    pub map: Map,
}

const ANCHOR_MAGIC: &[u8] = b"monitord maps anchor v1";

/// The anchor file's bytes: a header line `monitord maps anchor v1 EPOCH
/// SEQ`, then the map text as the kernel printed it.
pub fn encode_anchor(epoch: u64, seq: u64, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64);
    out.extend_from_slice(ANCHOR_MAGIC);
    out.extend_from_slice(format!(" {epoch} {seq}\n").as_bytes());
    out.extend_from_slice(text);
    out
}

/// Decode an anchor file; `None` when it is not one. Never panics.
pub fn decode_anchor(bytes: &[u8]) -> Option<Anchor> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(bytes[..newline].strip_prefix(ANCHOR_MAGIC)?).ok()?;
    let mut numbers = header.split_ascii_whitespace().map(str::parse::<u64>);
    let (Some(Ok(epoch)), Some(Ok(seq)), None) = (numbers.next(), numbers.next(), numbers.next()) else {
        return None;
    };
    Some(Anchor { epoch, seq, map: Map::from_text(&bytes[newline + 1..]) })
}

/// Read `<store>/maps`; `None` when it is missing or not an anchor.
pub fn read_anchor(store_dir: &Path) -> Option<Anchor> {
    decode_anchor(&std::fs::read(store_dir.join(store::MAPS_FILE)).ok()?)
}

/// Replace `<store>/maps` atomically: write in `<store>/tmp/`, then rename.
///
/// # Errors
/// [`Error::Anchor`].
pub fn write_anchor(store_dir: &Path, epoch: u64, seq: u64, text: &[u8]) -> Result<(), Error> {
    let path = store_dir.join(store::MAPS_FILE);
    let tmp = store_dir.join(store::TMP_DIR).join(format!("maps.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&encode_anchor(epoch, seq, text))?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Anchor { path: path.clone(), source }
    })
}

/// Reads the target's map each sample and diffs it against the previous
/// one. Holds the previous text and a read buffer, both reused, so an
/// unchanged map costs one read and one comparison.
#[derive(Debug, Default)]
pub struct MapsProbe {
    previous: Vec<u8>,
    buffer: Vec<u8>,
    /// The last [`MapsProbe::sample`] moved `previous` on (the old map is
    /// in `buffer` until the next read).
    moved: bool,
    /// (epoch, seq) of the anchor last written.
    anchored: Option<(u64, u64)>,
}

impl MapsProbe {
    /// A probe with no previous map (the first sample records everything
    /// as added).
    pub fn new() -> MapsProbe {
        MapsProbe::default()
    }

    /// Read the whole map for a baseline, and remember it.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Empty`]; the previous map is kept.
    pub fn baseline(&mut self, target: &Target) -> Result<Vec<Vec<u8>>, Error> {
        self.read(target)?;
        std::mem::swap(&mut self.previous, &mut self.buffer);
        self.moved = false;
        Ok(lines(&self.previous).map(<[u8]>::to_vec).collect())
    }

    /// Read the map and return what changed since the last successful
    /// read.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Empty`]; the previous map is kept, so
    /// the next successful sample carries the whole change.
    pub fn sample(&mut self, target: &Target) -> Result<MapsDelta, Error> {
        self.moved = false;
        self.read(target)?;
        self.take_delta()
    }

    /// Forget the last [`MapsProbe::sample`]: its delta was not recorded,
    /// so the next sample must carry that change again.
    pub fn unsample(&mut self) {
        if std::mem::take(&mut self.moved) {
            std::mem::swap(&mut self.previous, &mut self.buffer);
        }
    }

    /// Diff the buffer against the previous text and make it the previous.
    fn take_delta(&mut self) -> Result<MapsDelta, Error> {
        if self.buffer == self.previous {
            return Ok(MapsDelta::default());
        }
        let delta = diff(&self.previous, &self.buffer);
        std::mem::swap(&mut self.previous, &mut self.buffer);
        self.moved = true;
        Ok(delta)
    }

    /// The text of the last successful read.
    pub fn current(&self) -> &[u8] {
        &self.previous
    }

    /// After record `seq` of `epoch` is committed, rewrite the store's
    /// [`Anchor`] when it is due: at the start of an epoch, and when the
    /// ring (whose oldest record is now `oldest_seq`) has dropped a record
    /// newer than the anchor. Otherwise this costs nothing.
    ///
    /// # Errors
    /// [`Error::Anchor`]; the next call tries again.
    pub fn keep_anchor(
        &mut self,
        store_dir: &Path,
        epoch: u64,
        seq: u64,
        oldest_seq: u64,
    ) -> Result<(), Error> {
        let due = match self.anchored {
            Some((e, s)) => e != epoch || oldest_seq > s + 1,
            None => true,
        };
        if !due || self.previous.is_empty() {
            return Ok(());
        }
        write_anchor(store_dir, epoch, seq, &self.previous)?;
        self.anchored = Some((epoch, seq));
        Ok(())
    }

    fn read(&mut self, target: &Target) -> Result<(), Error> {
        self.buffer.clear();
        // Room for the whole text plus growth, so the kernel fills it in a
        // few large reads and the buffer is not reallocated.
        self.buffer.reserve(self.previous.len() + self.previous.len() / 4 + 64 * 1024);
        target.read_into("maps", &mut self.buffer).map_err(Error::Read)?;
        if self.buffer.is_empty() {
            return Err(Error::Empty { pid: target.pid() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{Baseline, FORMAT_VERSION, Sample};
    use proptest::prelude::*;

    const REAL: &[u8] = b"\
55d4c3a00000-55d4c3a02000 r--p 00000000 fd:01 1835121                    /usr/bin/cat
55d4c5e1e000-55d4c5e3f000 rw-p 00000000 00:00 0                          [heap]
7f3b1c000000-7f3b1c021000 rw-p 00000000 00:00 0 
7f3b2a3d1000-7f3b2a3d3000 rw-s 00000000 00:05 4097                       /memfd:wayland-shm (deleted)
7f3b2a3e0000-7f3b2a3e1000 r--p 00000000 fd:01 123                        /tmp/a file\\012with newline
7ffc8a1e4000-7ffc8a205000 rw-p 00000000 00:00 0                          [stack]
7ffc8a3f4000-7ffc8a3f6000 r-xp 00000000 00:00 0                          [vdso]
7f3b2a3f0000-7f3b2a3f1000 rw-p 00000000 00:00 0                          [anon:my name]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn real_lines_parse_with_every_field() {
        let all: Vec<Mapping<'_>> = parse(REAL).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 9);
        let cat = all[0];
        assert_eq!((cat.start, cat.end, cat.offset, cat.inode), (0x55d4c3a00000, 0x55d4c3a02000, 0, 1835121));
        assert_eq!((cat.major, cat.minor), (0xfd, 1));
        assert_eq!(cat.perms, Perms { read: true, write: false, exec: false, shared: false });
        assert_eq!(cat.backing(), Backing::File { path: b"/usr/bin/cat", deleted: false });
        assert_eq!(all[1].backing(), Backing::Special(b"[heap]"));
        assert_eq!(all[2].backing(), Backing::Anonymous);
        assert_eq!(all[3].backing(), Backing::File { path: b"/memfd:wayland-shm", deleted: true });
        assert!(all[3].perms.shared);
        assert_eq!(&*unescape(all[4].pathname), b"/tmp/a file\nwith newline");
        assert_eq!(all[5].backing(), Backing::Special(b"[stack]"));
        assert_eq!(all[6].backing(), Backing::Special(b"[vdso]"));
        assert_eq!(all[7].pathname, b"[anon:my name]");
        assert_eq!(all[8].end, 0xffffffffff601000);
        assert_eq!(cat.len(), 0x2000);
    }

    #[test]
    fn malformed_lines_name_the_field() {
        for (line, field) in [
            (&b"zz-10 r--p 0 00:00 0"[..], "address"),
            (b"20-10 r--p 0 00:00 0", "address"),
            (b"10-20-30 r--p 0 00:00 0", "address"),
            (b"10-20 rwz 0 00:00 0", "permissions"),
            (b"10-20 r--p 0x1 00:00 0", "offset"),
            (b"10-20 r--p 0 0000 0", "device"),
            (b"10-20 r--p 0 00:00 -1", "inode"),
            (b"10-20 r--p 0 00:00", "inode"),
            (b"", "address"),
        ] {
            assert_eq!(parse_line(line), Err(ParseError(field)), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn own_map_parses_and_an_unchanged_read_is_empty() {
        let me = Target::open(std::process::id() as i32).unwrap();
        let mut probe = MapsProbe::new();
        let baseline = probe.baseline(&me).unwrap();
        assert!(baseline.iter().all(|l| parse_line(l).is_ok()));
        assert!(baseline.iter().any(|l| l.ends_with(b"[stack]")));
        // Compare the retained text with itself: the unchanged path.
        probe.buffer = probe.previous.clone();
        assert_eq!(probe.take_delta().unwrap(), MapsDelta::default());
    }

    #[test]
    fn an_unrecorded_delta_is_carried_by_the_next_sample() {
        let old = b"10-20 r--p 0 00:00 0 /a\n".to_vec();
        let new = b"10-20 r--p 0 00:00 0 /a\n30-40 rw-p 0 00:00 0\n".to_vec();
        let mut probe = MapsProbe { previous: old.clone(), ..MapsProbe::new() };
        probe.buffer = new.clone();
        let first = probe.take_delta().unwrap();
        assert_eq!(first.added, vec![b"30-40 rw-p 0 00:00 0".to_vec()]);
        // The record holding `first` was not written.
        probe.unsample();
        assert_eq!(probe.current(), old.as_slice());
        probe.buffer = new;
        assert_eq!(probe.take_delta().unwrap(), first, "the same change again");
        // Taking back twice, or after no change, changes nothing.
        probe.unsample();
        probe.unsample();
        assert_eq!(probe.current(), old.as_slice());
    }

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

    #[test]
    fn map_at_replays_from_the_epoch_baseline() {
        let record = |epoch, body| Record { version: FORMAT_VERSION, epoch, pid: 1, body };
        let sample = |added: &[&[u8]], removed: &[&[u8]]| {
            Body::Sample(Sample {
                maps: MapsDelta {
                    added: added.iter().map(|l| l.to_vec()).collect(),
                    removed: removed.iter().map(|l| l.to_vec()).collect(),
                },
                ..Sample::default()
            })
        };
        let records = vec![
            (
                1,
                record(
                    1,
                    Body::Baseline(Baseline {
                        maps: vec![b"10-20 r--p 0 00:00 0".to_vec()],
                        ..Baseline::default()
                    }),
                ),
            ),
            (2, record(1, sample(&[b"30-40 r--p 0 00:00 0"], &[]))),
            (3, record(1, sample(&[], &[b"10-20 r--p 0 00:00 0"]))),
        ];
        assert_eq!(map_at(&records, 1, None).unwrap().render(), b"10-20 r--p 0 00:00 0\n");
        assert_eq!(
            map_at(&records, 2, None).unwrap().render(),
            b"10-20 r--p 0 00:00 0\n30-40 r--p 0 00:00 0\n"
        );
        assert_eq!(map_at(&records, 3, None).unwrap().render(), b"30-40 r--p 0 00:00 0\n");
        assert!(matches!(map_at(&records, 9, None), Err(Error::NotInRing { seq: 9, oldest: 1, newest: 3 })));
        assert!(matches!(map_at(&records[1..], 3, None), Err(Error::BaselineDropped { seq: 3, epoch: 1 })));
        let mut bad = records.clone();
        bad.push((4, record(1, sample(&[], &[b"99-aa r--p 0 00:00 0"]))));
        assert!(matches!(map_at(&bad, 4, None), Err(Error::Replay { seq: 4, .. })));

        // The baseline has left the ring: rebuild from the newest map.
        let held = &records[1..];
        let newest = Anchor { epoch: 1, seq: 3, map: Map::from_text(b"30-40 r--p 0 00:00 0\n") };
        assert_eq!(
            map_at(held, 2, Some(&newest)).unwrap().render(),
            b"10-20 r--p 0 00:00 0\n30-40 r--p 0 00:00 0\n",
            "backwards from the anchor"
        );
        assert_eq!(map_at(held, 3, Some(&newest)).unwrap(), newest.map);
        let older = Anchor { seq: 2, map: map_at(&records, 2, None).unwrap(), ..newest.clone() };
        assert_eq!(map_at(held, 3, Some(&older)).unwrap(), newest.map, "forwards from the anchor");
        let stale = Anchor { seq: 1, map: Map::default(), ..newest.clone() };
        assert!(matches!(map_at(&records[2..], 3, Some(&stale)), Err(Error::BaselineDropped { .. })));
        let other_epoch = Anchor { epoch: 7, ..newest.clone() };
        assert!(matches!(map_at(held, 3, Some(&other_epoch)), Err(Error::BaselineDropped { .. })));
    }

    #[test]
    fn anchors_round_trip_and_garbage_is_refused() {
        let text = b"10-20 r--p 0 00:00 0 /a b\n30-40 rw-p 0 00:00 0 \n";
        let anchor = decode_anchor(&encode_anchor(4, 9, text)).unwrap();
        assert_eq!((anchor.epoch, anchor.seq, anchor.map.render()), (4, 9, text.to_vec()));
        for bad in
            [&b""[..], b"monitord maps anchor v1 4\n", b"monitord maps anchor v1 x 9\n", b"something else\n"]
        {
            assert_eq!(decode_anchor(bad), None);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(store::TMP_DIR)).unwrap();
        write_anchor(dir.path(), 4, 9, text).unwrap();
        assert_eq!(read_anchor(dir.path()), Some(anchor));
    }

    /// A line as the kernel prints it (`show_map_vma`): the fields, a
    /// space, padding to column 73, a space, the pathname; an anonymous
    /// mapping ends with the space after the inode.
    fn kernel_line(page: u64, pages: u64, perms: &str, inode: u64, path: &str) -> Vec<u8> {
        let start = 0x7f00_0000_0000 + page * 4096;
        let prefix = format!("{start:08x}-{:08x} {perms} 00000000 fd:01 {inode} ", start + pages * 4096);
        if path.is_empty() { prefix.into_bytes() } else { format!("{prefix:<73} {path}").into_bytes() }
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
        fn garbage_never_panics_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            for m in parse(&bytes).flatten() {
                prop_assert!(m.start <= m.end);
                let _ = m.backing();
            }
            let _ = unescape(&bytes);
            let delta = diff(&bytes, b"10-20 r--p 0 00:00 0\n");
            let mut map = Map::from_text(&bytes);
            prop_assert!(map.apply_forward(&delta).is_ok());
            prop_assert_eq!(map.render(), b"10-20 r--p 0 00:00 0\n".to_vec());
        }

        #[test]
        fn mangled_real_lines_never_panic(cut in 0usize..120, flip in 0usize..120, byte in any::<u8>()) {
            for line in lines(REAL) {
                let mut line = line.to_vec();
                if flip < line.len() {
                    line[flip] = byte;
                }
                line.truncate(cut);
                let _ = parse_line(&line);
            }
        }

        #[test]
        fn kernel_lines_parse_back(page in 0u64..1 << 20, pages in 1u64..100, inode in any::<u64>(), name in "[a-z ()]{0,12}") {
            let path = if name.is_empty() { String::new() } else { format!("/x/{name}") };
            let line = kernel_line(page, pages, "rw-p", inode, &path);
            let m = parse_line(&line).unwrap();
            prop_assert_eq!(m.inode, inode);
            prop_assert_eq!(m.len(), pages * 4096);
            prop_assert_eq!((m.major, m.minor), (0xfd, 1));
            prop_assert_eq!(m.pathname, path.as_bytes());
        }

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
