//! Reading ring.bin: header selection, the chain walk, [`Snapshot`] and
//! [`Scan`].
//!
//! Everything here is a pure function of a byte slice. Every length and
//! offset read from the file is checked against the slice before use, so no
//! input can make it panic (see the property tests below).

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::frame::{Base, FrameProblem, Link, Parsed, decode_after};
use super::layout::{
    FRAME_HEADER, FRAME_MARKER, HEADER_PAGE, HeaderSlot, KIND_WRAP, MAGIC, MIN_CAPACITY, OLDEST_VERSION,
    SLOT_OFFSETS, SLOT_SIZE, VERSION,
};
use super::{Error, HeaderError, RingInfo};

/// One committed record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Sequence number (the first record of a ring is 1).
    pub seq: u64,
    /// The time the writer gave, in microseconds.
    pub time_us: u64,
    /// The kind the writer gave.
    pub kind: u16,
    /// The payload, exactly as appended (inflated when the frame stores it
    /// compressed, borrowed from the ring's bytes otherwise).
    pub payload: Cow<'a, [u8]>,
}

/// One problem found by [`Snapshot::scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Offset in the file (header page included) where the problem is.
    pub offset: u64,
    /// The seq the reader expected at that point.
    pub expected_seq: u64,
    /// What is wrong, in lower case.
    pub what: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {} (expected seq {}): {}", self.offset, self.expected_seq, self.what)
    }
}

/// The result of [`Snapshot::scan`]: every intact record and every problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan<'a> {
    /// The committed chain, then any intact records found after a break,
    /// in increasing seq order.
    pub frames: Vec<Frame<'a>>,
    /// Damage, in file order of discovery. Empty for a healthy ring.
    pub problems: Vec<Damage>,
    /// The chain ends in a partly written frame for the next seq: the writer
    /// died mid-append. That frame is ignored; this is not damage.
    pub torn_tail: bool,
}

/// A read-only copy of a ring file.
///
/// The copy is made with ordinary reads, never mmap, so a writer changing the
/// file meanwhile can only make frames fail their checks, never cause
/// undefined behaviour.
#[derive(Clone, Debug)]
pub struct Snapshot {
    bytes: Vec<u8>,
    header: HeaderSlot,
    /// Index of the header slot in use.
    slot: usize,
    chain: ChainEnd,
}

/// How many times [`Snapshot::read`] reads the file when the writer wrapped
/// over the chain while it was being read.
const READ_ATTEMPTS: usize = 5;

impl Snapshot {
    /// Read the file at `path` and decode it.
    ///
    /// If the chain ends before the header's `next_seq - 1` (the writer
    /// wrapped over the oldest records while the file was being read), the
    /// file is read again, up to a few times; the last copy is returned.
    pub fn read(path: &Path) -> Result<Snapshot, Error> {
        check_regular(path)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let bytes =
                std::fs::read(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
            let snap = Snapshot::from_bytes(bytes).map_err(|e| match e {
                Error::Image { source } => Error::Header { path: path.to_owned(), source },
                other => other,
            })?;
            if snap.chain.next_seq >= snap.header.next_seq || attempt >= READ_ATTEMPTS {
                return Ok(snap);
            }
        }
    }

    /// Decode a whole file image. Fails only when no usable header is found
    /// (see [`HeaderError`]); damaged frames are never an error here.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Snapshot, Error> {
        let (header, slot) = select_header(&bytes).map_err(|source| Error::Image { source })?;
        let data = data_area(&bytes);
        let mut walk = Walker::checking(data, &header);
        for _ in walk.by_ref() {}
        let chain = walk.end();
        Ok(Snapshot { bytes, header, slot, chain })
    }

    /// The ring's format version (1: the first release's, 2: frames may
    /// be compressed, 3: records may be compact frames).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The ring's counters as far as this copy shows them.
    ///
    /// `capacity_bytes`, `oldest_seq`, `dropped_records` and `opens` come
    /// from the header; `next_seq` and `used_bytes` from the chain actually
    /// readable (`next_seq` is one past the newest readable record).
    pub fn info(&self) -> RingInfo {
        RingInfo {
            capacity_bytes: self.header.capacity,
            used_bytes: self.chain.used as u64,
            oldest_seq: self.header.oldest_seq,
            next_seq: self.chain.next_seq,
            dropped_records: self.header.dropped_records,
            opens: self.header.opens,
        }
    }

    /// The committed chain, oldest first.
    ///
    /// Starts at the header's head offset and `oldest_seq`, follows frames
    /// whose CRC is good, whose seq is exactly the previous one plus 1 and
    /// whose `prev_crc` names the frame before; stops at the first frame that
    /// fails. Never returns a frame that fails its checksum, nor a stale
    /// frame from before a wrap.
    pub fn frames(&self) -> impl Iterator<Item = Frame<'_>> {
        Walker::new(data_area(&self.bytes), &self.header)
    }

    /// The chain plus a description of every problem, for `verify` and
    /// `dump` of damaged rings.
    ///
    /// A torn frame at the very end of the chain is not damage; it sets
    /// [`Scan::torn_tail`]. After a break, the rest of the data area is
    /// searched for intact frames with a larger seq, which are returned too
    /// (and any gap in seqs is reported).
    pub fn scan(&self) -> Scan<'_> {
        let mut frames = Vec::new();
        let (problems, torn_tail) = self.scan_each(|frame| frames.push(frame));
        Scan { frames, problems, torn_tail }
    }

    /// [`Snapshot::scan`] handing each intact record to `each` as it is
    /// found, in the same order, rather than holding them all (a full
    /// ring's inflated records can be several times its size). Returns
    /// the problems and whether the chain ends in a torn frame.
    pub fn scan_each<'s>(&'s self, mut each: impl FnMut(Frame<'s>)) -> (Vec<Damage>, bool) {
        let data = data_area(&self.bytes);
        let cap = data.len();
        let mut problems = Vec::new();
        let other = 1 - self.slot;
        if let Some(what) = slot_problem(&self.bytes, other) {
            problems.push(Damage {
                offset: SLOT_OFFSETS[other] as u64,
                expected_seq: self.header.oldest_seq,
                what,
            });
        }
        let mut walk = Walker::new(data, &self.header);
        walk.by_ref().for_each(&mut each);
        let end = walk.end();
        let mut found = end.chain_len;
        let file_off = |pos: usize| HEADER_PAGE + pos as u64;

        // Search the bytes after the chain, up to the chain's start, for
        // intact records with a larger seq.
        let mut last = end.next_seq - 1;
        let mut resumed = Vec::new();
        let mut pos = end.stop_pos;
        let mut budget = cap.saturating_sub(end.used);
        // The frame before and the record before, for compact frames that
        // follow a record found after the break.
        let (mut prev_crc, mut base): (Option<u32>, Option<Base>) = (None, None);
        while budget > 0 {
            if cap.saturating_sub(pos) < FRAME_HEADER as usize {
                budget = budget.saturating_sub(cap.saturating_sub(pos));
                pos = 0;
                continue;
            }
            let step = match decode_after(data, pos, prev_crc, base.as_ref(), true) {
                Ok(f) if f.header.kind == KIND_WRAP && f.header.seq == last + 1 && prev_crc.is_some() => {
                    prev_crc = Some(f.header.crc);
                    cap - pos
                }
                Ok(f) if f.header.kind != KIND_WRAP && f.header.seq > last => {
                    let seq = f.header.seq;
                    if seq != last + 1 {
                        resumed.push(Damage {
                            offset: file_off(pos),
                            expected_seq: last + 1,
                            what: format!(
                                "records {}..={} are missing; intact records resume at seq {seq}",
                                last + 1,
                                seq - 1
                            ),
                        });
                    }
                    last = seq;
                    let len = f.len;
                    prev_crc = Some(f.header.crc);
                    Base::keep(&mut base, seq, f.header.kind, f.header.time_us, &f.payload);
                    found += 1;
                    each(f.frame());
                    len
                }
                // Most of a ring not yet written is zeros: go straight to
                // the next place a frame could start.
                Err(FrameProblem::NoMarker) => to_next_marker(data, pos),
                _ => FRAME_ALIGN_USIZE,
            };
            let step = step.min(budget);
            budget -= step;
            pos += step;
        }

        let mut torn_tail = false;
        if !resumed.is_empty() || found > end.chain_len {
            let mut rest = resumed.into_iter().peekable();
            // A break whose records resume later is one stretch: one line.
            let what = match rest.next_if(|r| r.expected_seq == end.next_seq) {
                Some(resume) => {
                    format!("chain breaks ({}): {} (offset {})", end.why, resume.what, resume.offset)
                }
                None => format!("chain breaks: {}", end.why),
            };
            problems.push(Damage { offset: file_off(end.stop_pos), expected_seq: end.next_seq, what });
            problems.extend(rest);
        } else if end.next_seq < self.header.next_seq {
            problems.push(Damage {
                offset: file_off(end.stop_pos),
                expected_seq: end.next_seq,
                what: format!(
                    "chain ends at seq {} but the header says records up to {} were committed: {}",
                    end.next_seq - 1,
                    self.header.next_seq - 1,
                    end.why
                ),
            });
        } else {
            torn_tail = end.why.is_torn_frame();
        }
        (problems, torn_tail)
    }
}

const FRAME_ALIGN_USIZE: usize = super::layout::FRAME_ALIGN as usize;

/// Bytes from `pos` (frame-aligned) to the next frame-aligned offset of
/// `data` that starts with the frame marker, or to the end of `data`.
fn to_next_marker(data: &[u8], pos: usize) -> usize {
    let marker = FRAME_MARKER.to_le_bytes();
    let rest = data.get(pos..).unwrap_or_default();
    rest.chunks_exact(FRAME_ALIGN_USIZE)
        .skip(1)
        .position(|chunk| chunk[..marker.len()] == marker)
        .map_or(rest.len(), |i| (i + 1) * FRAME_ALIGN_USIZE)
        .max(FRAME_ALIGN_USIZE)
}

/// The data area of a file image whose header was validated.
fn data_area(bytes: &[u8]) -> &[u8] {
    bytes.get(HEADER_PAGE as usize..).unwrap_or(&[])
}

/// Decode header slot `i` if its magic and CRC are good.
fn decode_slot(bytes: &[u8], i: usize) -> Option<HeaderSlot> {
    let off = SLOT_OFFSETS[i];
    let raw = bytes.get(off..off + SLOT_SIZE)?;
    let slot: HeaderSlot = bytemuck::pod_read_unaligned(raw);
    (slot.magic == MAGIC && slot.compute_crc() == slot.crc).then_some(slot)
}

/// What is wrong with header slot `i`, or `None` if it is usable.
fn slot_problem(bytes: &[u8], i: usize) -> Option<String> {
    let name = ["a", "b"][i];
    match decode_slot(bytes, i) {
        None => Some(format!("header copy {name} fails its checksum")),
        Some(s) => slot_sane(&s, bytes.len() as u64).err().map(|e| format!("header copy {name}: {e}")),
    }
}

/// Check the fields of a slot whose CRC is good.
fn slot_sane(s: &HeaderSlot, file_len: u64) -> Result<(), HeaderError> {
    if !(OLDEST_VERSION..=VERSION).contains(&s.version) {
        return Err(HeaderError::Version { found: s.version });
    }
    let cap = s.capacity;
    let fields_ok = u64::from(s.header_size) == HEADER_PAGE
        && cap >= MIN_CAPACITY
        && cap.is_multiple_of(super::layout::FRAME_ALIGN)
        && s.head < cap
        && s.tail < cap
        && s.head.is_multiple_of(super::layout::FRAME_ALIGN)
        && s.tail.is_multiple_of(super::layout::FRAME_ALIGN)
        && s.oldest_seq >= 1
        && s.oldest_seq <= s.next_seq
        && s.next_seq < u64::MAX
        && s.used_bytes <= cap;
    if !fields_ok {
        return Err(HeaderError::Inconsistent);
    }
    if HEADER_PAGE.checked_add(cap) != Some(file_len) {
        return Err(HeaderError::Size { capacity: cap, file_len });
    }
    Ok(())
}

/// Pick the header slot to use: the usable one with the larger generation.
/// Returns the slot and its index.
pub(crate) fn select_header(bytes: &[u8]) -> Result<(HeaderSlot, usize), HeaderError> {
    select_header_of(bytes, bytes.len() as u64)
}

/// [`select_header`] from the header page alone (`bytes` holds at least
/// the page) and the file's length.
pub(crate) fn select_header_of(bytes: &[u8], file_len: u64) -> Result<(HeaderSlot, usize), HeaderError> {
    if file_len < HEADER_PAGE || (bytes.len() as u64) < HEADER_PAGE {
        return Err(HeaderError::Short { file_len });
    }
    let mut best: Option<(HeaderSlot, usize)> = None;
    let mut first_err = None;
    let mut any_magic = false;
    for (i, &off) in SLOT_OFFSETS.iter().enumerate() {
        if bytes.get(off..off + MAGIC.len()) == Some(&MAGIC[..]) {
            any_magic = true;
        }
        let Some(s) = decode_slot(bytes, i) else {
            continue;
        };
        match slot_sane(&s, file_len) {
            Ok(()) => {
                if best.is_none_or(|(b, _)| s.generation > b.generation) {
                    best = Some((s, i));
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (best, first_err) {
        (Some(b), _) => Ok(b),
        (None, Some(e)) => Err(e),
        (None, None) if any_magic => Err(HeaderError::Checksum),
        (None, None) => Err(HeaderError::Magic),
    }
}

/// Read the header page and the length of the ring file open as `file`
/// (at `path`, for errors) with plain reads, and pick the header slot to
/// use.
pub(crate) fn read_header(file: &File, path: &Path) -> Result<HeaderSlot, Error> {
    let read_err = |source| Error::Read { path: path.to_owned(), source };
    let mut page = vec![0u8; HEADER_PAGE as usize];
    file.read_exact_at(&mut page, 0).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    select_header_of(&page, len)
        .map(|(h, _)| h)
        .map_err(|source| Error::Header { path: path.to_owned(), source })
}

/// The header slot in use of a ring file, to tell cheaply whether anything
/// was committed: the writer writes a new header (with a larger
/// generation) on every commit and every open, so while two stamps of a
/// file are equal no record was added or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderStamp(HeaderSlot);

impl HeaderStamp {
    /// The stamp of the ring file at `path`, from its header page alone
    /// (the data area is not read).
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read, [`Error::Header`] when
    /// it has no usable header.
    pub fn read(path: &Path) -> Result<HeaderStamp, Error> {
        check_regular(path)?;
        let file = File::open(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        read_header(&file, path).map(HeaderStamp)
    }

    /// Generation of the header slot in use.
    pub fn generation(&self) -> u64 {
        self.0.generation
    }

    /// The seq the next record gets, as the header says.
    pub fn next_seq(&self) -> u64 {
        self.0.next_seq
    }
}

/// Why and where the chain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StopWhy {
    pub problem: FrameProblem,
    pub expected_seq: u64,
}

impl StopWhy {
    /// A partly written frame for the expected seq.
    pub(crate) fn is_torn_frame(&self) -> bool {
        matches!(
            self.problem,
            FrameProblem::BadCrc { seq } | FrameProblem::BadLength { seq } if seq == self.expected_seq
        )
    }
}

impl fmt::Display for StopWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problem {
            FrameProblem::NoMarker => write!(f, "no frame marker"),
            FrameProblem::BadLength { seq } => write!(f, "frame (seq {seq}) has a bad length"),
            FrameProblem::BadCrc { seq } => write!(f, "frame (seq {seq}) fails its checksum"),
            FrameProblem::WrongSeq { seq } => write!(f, "intact frame has seq {seq}"),
            FrameProblem::WrongPrev { seq } => {
                write!(f, "frame seq {seq} does not follow the previous frame")
            }
            FrameProblem::WrapAtZero => write!(f, "wrap marker at offset 0"),
            FrameProblem::UnknownFlags { seq, flags } => write!(
                f,
                "frame (seq {seq}) has flags {flags:#06x} this version does not know (written by a newer monitord?)"
            ),
            FrameProblem::BadPayload { seq } => {
                write!(f, "frame (seq {seq}) has a compressed payload that does not inflate to its length")
            }
            FrameProblem::Loop => write!(f, "chain longer than the ring"),
            FrameProblem::NoBase => write!(f, "compact frame without the record it was written against"),
            FrameProblem::BadCompact => write!(f, "compact frame fails its checksum"),
        }
    }
}

impl<'a> Parsed<'a> {
    fn frame(self) -> Frame<'a> {
        Frame {
            seq: self.header.seq,
            time_us: self.header.time_us,
            kind: self.header.kind,
            payload: self.payload,
        }
    }
}

/// Where a chain walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChainEnd {
    /// Offset just past the last record (the chain start if none): where
    /// the writer continues.
    pub end_pos: usize,
    /// Offset of the frame that stopped the walk.
    pub stop_pos: usize,
    /// One past the last record's seq.
    pub next_seq: u64,
    /// Bytes from the chain start to `end_pos`, wrap waste included.
    pub used: usize,
    /// CRC of the last frame before `end_pos` (0 if none).
    pub last_crc: u32,
    /// Records in the chain.
    pub chain_len: usize,
    /// Why the walk stopped.
    pub why: StopWhy,
}

/// Follows the chain from the header's head; an iterator of records.
pub(crate) struct Walker<'a> {
    data: &'a [u8],
    pos: usize,
    link: Link,
    /// The last record, for a compact frame after it.
    base: Option<Base>,
    /// Give each record's bytes (a walk that only finds the chain's end
    /// leaves long compressed records as they are).
    inflate: bool,
    walked: usize,
    end: ChainEnd,
    done: bool,
}

impl<'a> Walker<'a> {
    /// Start at `header.head` expecting `header.oldest_seq`. The header
    /// must have passed `slot_sane` for `data`.
    pub(crate) fn new(data: &'a [u8], header: &HeaderSlot) -> Walker<'a> {
        let pos = usize::try_from(header.head).unwrap_or(usize::MAX);
        Walker {
            data,
            pos,
            link: Link::start(header.oldest_seq),
            base: None,
            inflate: true,
            walked: 0,
            end: ChainEnd {
                end_pos: pos,
                stop_pos: pos,
                next_seq: header.oldest_seq,
                used: 0,
                last_crc: 0,
                chain_len: 0,
                why: StopWhy { problem: FrameProblem::Loop, expected_seq: header.oldest_seq },
            },
            done: false,
        }
    }

    /// A walk that only finds where the chain ends: every frame is
    /// checked, but long compressed records are not inflated (their
    /// [`Frame::payload`] is empty); readers of the records inflate each
    /// one, and a stream that does not inflate ends their chain there.
    pub(crate) fn checking(data: &'a [u8], header: &HeaderSlot) -> Walker<'a> {
        Walker { inflate: false, ..Walker::new(data, header) }
    }

    /// Where the walk ended (call after the iterator returned `None`).
    pub(crate) fn end(&self) -> ChainEnd {
        self.end
    }

    fn stop(&mut self, problem: FrameProblem) -> Option<Frame<'a>> {
        self.done = true;
        self.end.stop_pos = self.pos;
        self.end.why = StopWhy { problem, expected_seq: self.link.expected };
        None
    }
}

impl<'a> Iterator for Walker<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        let cap = self.data.len();
        loop {
            if self.done {
                return None;
            }
            let remaining = cap.saturating_sub(self.pos);
            if remaining < FRAME_HEADER as usize {
                // Too little room for a frame header: the writer wrapped.
                self.walked += remaining;
                if self.pos == 0 || self.walked > cap {
                    self.pos = self.pos.min(cap);
                    return self.stop(FrameProblem::Loop);
                }
                self.pos = 0;
                continue;
            }
            let f =
                match decode_after(self.data, self.pos, self.link.prev_crc, self.base.as_ref(), self.inflate)
                {
                    Ok(f) => f,
                    Err(p) => return self.stop(p),
                };
            if let Err(p) = self.link.check(&f.header, self.pos) {
                return self.stop(p);
            }
            if f.header.kind == KIND_WRAP {
                self.walked += remaining;
                if self.walked > cap {
                    return self.stop(FrameProblem::Loop);
                }
                self.link.advance(&f.header);
                self.pos = 0;
                continue;
            }
            if self.walked + f.len > cap {
                return self.stop(FrameProblem::Loop);
            }
            self.walked += f.len;
            self.pos += f.len;
            if self.pos == cap {
                self.pos = 0;
            }
            self.link.advance(&f.header);
            self.end.end_pos = self.pos;
            self.end.next_seq = self.link.expected;
            self.end.used = self.walked;
            self.end.last_crc = f.header.crc;
            self.end.chain_len += 1;
            if self.inflate {
                Base::keep(&mut self.base, f.header.seq, f.header.kind, f.header.time_us, &f.payload);
            } else {
                Base::keep_len(&mut self.base, f.header.seq, f.header.kind, f.header.time_us, f.record_len);
            }
            return Some(f.frame());
        }
    }
}

/// Every reader checks this before opening a ring: a FIFO would block the
/// open until a writer comes, a device would be read for ever.
pub(crate) fn check_regular(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a file"
    };
    Err(Error::NotAFile { path: path.to_owned(), kind })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::journal::ring::tests::{Rec, build_image};

    /// Every frame the decoder returns, from `frames()` and from `scan()`,
    /// is a record that was written, unmodified.
    fn assert_only_written(snap: &Snapshot, all: &HashMap<u64, Rec>) -> Vec<Rec> {
        let check = |f: &Frame<'_>| {
            let rec = all.get(&f.seq).expect("a frame with a seq never written");
            assert_eq!(f.kind, rec.kind);
            assert_eq!(f.time_us, rec.time_us);
            assert_eq!(f.payload, &rec.payload[..], "modified payload returned");
        };
        let chain: Vec<Frame<'_>> = snap.frames().collect();
        chain.iter().for_each(check);
        assert!(chain.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        let scan = snap.scan();
        scan.frames.iter().for_each(check);
        assert!(scan.frames.windows(2).all(|w| w[1].seq > w[0].seq));
        assert!(scan.frames.starts_with(&chain));
        chain.iter().map(|f| all[&f.seq].clone()).collect()
    }

    /// Flip every bit of the image of a ring of `cap` bytes after `n`
    /// appends (lengths from `lens`), one at a time, and check what the
    /// reader makes of each: a flip in a byte a live record's CRC covers
    /// loses that record (and reports damage), a flip in a header slot is
    /// reported but loses nothing, any other flip changes nothing. No flip
    /// ever yields a record that was not written. With `stride` > 1 only
    /// every `stride`-th byte (and every byte of the header slots) is swept.
    /// Returns the number of flips and the slowest decode (read plus scan)
    /// of one image.
    fn sweep_every_bit(cap: usize, n: u64, lens: &[usize], stride: usize) -> (usize, std::time::Duration) {
        let (image, all, model) = build_image(cap, n, lens);
        let orig = Snapshot::from_bytes(image.clone()).unwrap();
        let want = assert_only_written(&orig, &all);
        assert_eq!(want, model.records());
        assert!(want.len() >= 4 && orig.info().dropped_records > 0);
        assert!(orig.scan().problems.is_empty());
        let page = HEADER_PAGE as usize;

        // Bytes covered by a CRC that the chain depends on.
        let mut covered = vec![false; image.len()];
        for (rec, start, _, _) in &model.live {
            let s = page + start;
            covered[s..s + FRAME_HEADER as usize + rec.payload.len()].fill(true);
        }
        let data = &image[page..];
        for pos in (0..cap).step_by(8) {
            if let Ok(f) = crate::journal::frame::decode(data, pos)
                && f.header.kind == KIND_WRAP
                && f.header.seq > orig.info().oldest_seq
            {
                covered[page + pos..page + pos + FRAME_HEADER as usize].fill(true);
            }
        }
        let in_slot = |i: usize| SLOT_OFFSETS.iter().any(|&o| (o..o + SLOT_SIZE).contains(&i));

        let check = |f: &Frame<'_>| {
            let rec = all.get(&f.seq).expect("a frame with a seq never written");
            assert_eq!((f.kind, f.time_us), (rec.kind, rec.time_us));
            assert!(f.payload == &rec.payload[..], "modified payload returned for seq {}", f.seq);
        };
        let mut slowest = std::time::Duration::ZERO;
        let mut img = image.clone();
        let mut flips = 0;
        // An odd offset so that the sample does not always hit the same
        // field of the 8-aligned frame headers.
        for byte in (0..image.len()).filter(|&b| b % stride == 5 % stride || in_slot(b)) {
            for bit in 0..8 {
                flips += 1;
                img[byte] ^= 1 << bit;
                let started = std::time::Instant::now();
                let snap = Snapshot::from_bytes(img.clone()).expect("one header slot is intact");
                let chain: Vec<Frame<'_>> = snap.frames().collect();
                let scan = snap.scan();
                slowest = slowest.max(started.elapsed());
                chain.iter().for_each(check);
                scan.frames.iter().for_each(check);
                assert!(chain.windows(2).all(|w| w[1].seq == w[0].seq + 1));
                assert!(scan.frames.windows(2).all(|w| w[1].seq > w[0].seq));
                assert!(scan.frames.starts_with(&chain));
                let same = chain.len() == want.len() && chain.iter().zip(&want).all(|(f, r)| f.seq == r.seq);
                if covered[byte] {
                    assert!(chain.len() < want.len(), "flip at {byte}.{bit} went unnoticed");
                    assert!(!scan.problems.is_empty(), "flip at {byte}.{bit} not reported");
                } else if in_slot(byte) {
                    assert!(same, "flip at {byte}.{bit}");
                    assert!(!scan.problems.is_empty(), "header flip at {byte}.{bit} not reported");
                } else {
                    assert!(same, "flip at {byte}.{bit}");
                    assert!(scan.problems.is_empty(), "flip at {byte}.{bit}: {:?}", scan.problems);
                }
                img[byte] ^= 1 << bit;
            }
        }
        (flips, slowest)
    }

    /// Every bit of an 8 KiB ring image (4 KiB data area, a wrap, a few live
    /// records).
    #[test]
    fn every_single_bit_flip_is_caught() {
        sweep_every_bit(4096, 23, &[300, 0, 517, 64, 900], 1);
    }

    /// J6 (RELIABILITY.md): every single-bit flip of a 64 KiB ring (the
    /// header page included) holding about 300 live records after a wrap:
    /// 0 modified records accepted, 0 panics. All 557,056 flips take about
    /// 5 minutes in a debug build, so they run with `MONITORD_LONG=1`
    /// (tier 3); by default every bit of one byte in 37 plus every bit of
    /// the header slots (about 16,700 flips).
    #[test]
    fn j6_every_bit_of_a_64k_ring() {
        let long = std::env::var_os("MONITORD_LONG").is_some_and(|v| v == "1");
        let started = std::time::Instant::now();
        let stride = if long { 1 } else { 37 };
        let (flips, slowest) = sweep_every_bit(65536, 420, &[300, 0, 517, 64, 180, 120, 40], stride);
        eprintln!("J6: {flips} flips in {:?}, slowest decode {slowest:?}", started.elapsed());
    }

    /// The stamp changes with every commit and every open of a writer, and
    /// only then.
    #[test]
    fn header_stamp_changes_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.bin");
        let mut ring = crate::journal::Ring::open_or_create(&path, 4096 + 4096).unwrap();
        let before = HeaderStamp::read(&path).unwrap();
        assert_eq!(HeaderStamp::read(&path).unwrap(), before);
        assert_eq!(before.next_seq(), 1);
        ring.append(1, 1, b"one").unwrap();
        let after = HeaderStamp::read(&path).unwrap();
        assert_ne!(after, before);
        assert!(after.generation() > before.generation());
        assert_eq!(after.next_seq(), 2);
        assert_eq!(HeaderStamp::read(&path).unwrap(), after);
        drop(ring);
        let _ring = crate::journal::Ring::open_or_create(&path, 0).unwrap();
        let reopened = HeaderStamp::read(&path).unwrap();
        assert_ne!(reopened, after);
        assert_eq!(reopened.next_seq(), 2);

        let missing = dir.path().join("none.bin");
        assert!(matches!(HeaderStamp::read(&missing), Err(Error::Read { .. })));
        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, vec![0u8; 8192]).unwrap();
        assert!(matches!(HeaderStamp::read(&junk), Err(Error::Header { source: HeaderError::Magic, .. })));
    }

    #[test]
    fn unusable_headers_are_errors() {
        let err = |bytes: Vec<u8>| match Snapshot::from_bytes(bytes) {
            Err(Error::Image { source }) => source,
            other => panic!("expected an image error, got {other:?}"),
        };
        assert!(matches!(err(vec![]), HeaderError::Short { file_len: 0 }));
        assert!(matches!(err(vec![0; 9000]), HeaderError::Magic));
        let (image, _, _) = build_image(1024, 5, &[10]);
        assert!(matches!(err(image[..image.len() - 8].to_vec()), HeaderError::Size { capacity: 1024, .. }));
        let mut bad = image.clone();
        bad[20] ^= 1;
        bad[2048 + 20] ^= 1;
        assert!(matches!(err(bad), HeaderError::Checksum));
        let msg = Error::Image { source: HeaderError::Magic }.to_string();
        assert_eq!(msg, "ring image has no usable header");
    }

    #[test]
    fn a_break_in_the_middle_is_damage_and_later_records_are_kept() {
        let (mut image, all, model) = build_image(8192, 30, &[100, 40, 250]);
        let live: Vec<_> = model.live.iter().cloned().collect();
        assert!(live.len() > 10);
        // Damage the payload of a record in the middle.
        let (victim, start, _, _) = &live[5];
        image[HEADER_PAGE as usize + start + FRAME_HEADER as usize] ^= 0xFF;
        let snap = Snapshot::from_bytes(image).unwrap();
        let chain = assert_only_written(&snap, &all);
        assert_eq!(chain.last().map(|r| r.seq), Some(victim.seq - 1));
        let scan = snap.scan();
        assert!(!scan.torn_tail);
        // One stretch, one problem: where it breaks, what is missing, where
        // intact records resume.
        assert_eq!(scan.problems.len(), 1, "{:?}", scan.problems);
        assert_eq!(scan.problems[0].expected_seq, victim.seq);
        assert_eq!(scan.problems[0].offset, HEADER_PAGE + *start as u64, "{}", scan.problems[0]);
        let what = &scan.problems[0].what;
        assert!(
            what.contains("chain breaks") && what.contains("missing") && what.contains("resume"),
            "{what}"
        );
        let seqs: Vec<u64> = scan.frames.iter().map(|f| f.seq).collect();
        let want: Vec<u64> = live.iter().map(|(r, _, _, _)| r.seq).filter(|&s| s != victim.seq).collect();
        assert_eq!(seqs, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
            if let Ok(snap) = Snapshot::from_bytes(bytes) {
                let _ = snap.frames().count();
                let _ = snap.scan();
            }
        }

        /// A real ring's header with random bytes for the data area.
        #[test]
        fn random_data_area_never_panics(
            data in proptest::collection::vec(any::<u8>(), 1024..=1024),
            head in 0u64..128,
        ) {
            let (mut image, _, _) = build_image(1024, 3, &[8]);
            image[HEADER_PAGE as usize..].copy_from_slice(&data);
            for off in SLOT_OFFSETS {
                let mut s: HeaderSlot = bytemuck::pod_read_unaligned(&image[off..off + SLOT_SIZE]);
                s.head = head * 8;
                s.crc = s.compute_crc();
                image[off..off + SLOT_SIZE].copy_from_slice(bytemuck::bytes_of(&s));
            }
            let snap = Snapshot::from_bytes(image).unwrap();
            prop_assert_eq!(snap.frames().count(), 0);
            let _ = snap.scan();
        }

        /// Truncations, random bit flips and byte overwrites of a real
        /// ring: never a panic, never a record that was not written.
        #[test]
        fn damaged_images_return_only_written_records(
            n in 1u64..60,
            lens in proptest::collection::vec(0usize..600, 1..6),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..20),
            smash in proptest::option::of((any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..64))),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let (mut image, all, _) = build_image(2048, n, &lens);
            for (at, bit) in flips {
                let i = at.index(image.len());
                image[i] ^= 1 << bit;
            }
            if let Some((at, junk)) = smash {
                let i = at.index(image.len());
                let end = (i + junk.len()).min(image.len());
                image[i..end].copy_from_slice(&junk[..end - i]);
            }
            if let Some(at) = cut {
                image.truncate(at.index(image.len()));
            }
            if let Ok(snap) = Snapshot::from_bytes(image) {
                assert_only_written(&snap, &all);
            }
        }
    }
}
