//! Reading ring.bin: header selection, the chain walk, [`Snapshot`] and
//! [`Scan`].
//!
//! Everything here is a pure function of a byte slice. Every length and
//! offset read from the file is checked against the slice before use, so no
//! input can make it panic (see the property tests below).

use std::fmt;
use std::path::Path;

use super::layout::{
    FRAME_HEADER, FRAME_MARKER, FrameHeader, HEADER_PAGE, HeaderSlot, KIND_WRAP, MAGIC, MIN_CAPACITY,
    SLOT_OFFSETS, SLOT_SIZE, VERSION, frame_len,
};
use super::{Error, HeaderError, RingInfo};

/// One committed record as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Sequence number (the first record of a ring is 1).
    pub seq: u64,
    /// The time the writer gave, in microseconds.
    pub time_us: u64,
    /// The kind the writer gave.
    pub kind: u16,
    /// The payload, exactly as appended.
    pub payload: &'a [u8],
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
        let mut walk = Walker::new(data, &header);
        for _ in walk.by_ref() {}
        let chain = walk.end();
        Ok(Snapshot { bytes, header, slot, chain })
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
        let mut frames: Vec<Frame<'_>> = walk.by_ref().collect();
        let end = walk.end();
        let file_off = |pos: usize| HEADER_PAGE + pos as u64;

        // Search the bytes after the chain, up to the chain's start, for
        // intact records with a larger seq.
        let mut last = end.next_seq - 1;
        let mut resumed = Vec::new();
        let mut pos = end.stop_pos;
        let mut budget = cap.saturating_sub(end.used);
        while budget > 0 {
            if cap.saturating_sub(pos) < FRAME_HEADER as usize {
                budget = budget.saturating_sub(cap.saturating_sub(pos));
                pos = 0;
                continue;
            }
            let step = match read_frame(data, pos) {
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
                    frames.push(f.frame());
                    f.len
                }
                _ => FRAME_ALIGN_USIZE,
            };
            let step = step.min(budget);
            budget -= step;
            pos += step;
        }

        let mut torn_tail = false;
        if !resumed.is_empty() || frames.len() > end.chain_len {
            problems.push(Damage {
                offset: file_off(end.stop_pos),
                expected_seq: end.next_seq,
                what: format!("chain breaks: {}", end.why),
            });
            problems.extend(resumed);
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
        Scan { frames, problems, torn_tail }
    }
}

const FRAME_ALIGN_USIZE: usize = super::layout::FRAME_ALIGN as usize;

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
    if s.version != VERSION {
        return Err(HeaderError::Version { found: s.version });
    }
    let cap = s.capacity;
    let fields_ok = u64::from(s.header_size) == HEADER_PAGE
        && cap >= MIN_CAPACITY
        && cap % super::layout::FRAME_ALIGN == 0
        && s.head < cap
        && s.tail < cap
        && s.head % super::layout::FRAME_ALIGN == 0
        && s.tail % super::layout::FRAME_ALIGN == 0
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
    let file_len = bytes.len() as u64;
    if file_len < HEADER_PAGE {
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

/// Why a frame at some offset is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameProblem {
    /// No frame marker: never written, or overwritten.
    NoMarker,
    /// The payload length runs past the end of the data area, or a wrap
    /// marker has a payload.
    BadLength { seq: u64 },
    /// The CRC does not match.
    BadCrc { seq: u64 },
    /// Intact, but not the seq that comes next.
    WrongSeq { seq: u64 },
    /// Intact with the right seq, but its `prev_crc` names another frame.
    WrongPrev { seq: u64 },
    /// A wrap marker at offset 0, which would loop.
    WrapAtZero,
    /// The walk covered the whole data area.
    Loop,
}

/// Why and where the chain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StopWhy {
    pub problem: FrameProblem,
    pub expected_seq: u64,
}

impl StopWhy {
    /// A partly written frame for the expected seq.
    fn is_torn_frame(&self) -> bool {
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
            FrameProblem::Loop => write!(f, "chain longer than the ring"),
        }
    }
}

/// A frame that passed its own checks (marker, length, CRC).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Parsed<'a> {
    pub header: FrameHeader,
    pub payload: &'a [u8],
    /// Bytes the frame takes in the data area.
    pub len: usize,
}

impl<'a> Parsed<'a> {
    fn frame(&self) -> Frame<'a> {
        Frame {
            seq: self.header.seq,
            time_us: self.header.time_us,
            kind: self.header.kind,
            payload: self.payload,
        }
    }
}

/// Decode and check the frame at `pos` in `data` (the data area).
pub(crate) fn read_frame(data: &[u8], pos: usize) -> Result<Parsed<'_>, FrameProblem> {
    let hdr_end = pos.checked_add(FRAME_HEADER as usize).ok_or(FrameProblem::NoMarker)?;
    let raw = data.get(pos..hdr_end).ok_or(FrameProblem::NoMarker)?;
    let header: FrameHeader = bytemuck::pod_read_unaligned(raw);
    if header.marker != FRAME_MARKER {
        return Err(FrameProblem::NoMarker);
    }
    let seq = header.seq;
    let plen = header.payload_len as usize;
    let payload = hdr_end
        .checked_add(plen)
        .and_then(|end| data.get(hdr_end..end))
        .ok_or(FrameProblem::BadLength { seq })?;
    if header.compute_crc(payload) != header.crc {
        return Err(FrameProblem::BadCrc { seq });
    }
    if header.kind == KIND_WRAP && plen != 0 {
        return Err(FrameProblem::BadLength { seq });
    }
    // pos and the data area are multiples of 8, so the padded frame fits.
    let len = frame_len(plen as u64)
        .and_then(|l| usize::try_from(l).ok())
        .filter(|&l| pos + l <= data.len())
        .ok_or(FrameProblem::BadLength { seq })?;
    Ok(Parsed { header, payload, len })
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
    expected: u64,
    walked: usize,
    prev_crc: Option<u32>,
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
            expected: header.oldest_seq,
            walked: 0,
            prev_crc: None,
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

    /// Where the walk ended (call after the iterator returned `None`).
    pub(crate) fn end(&self) -> ChainEnd {
        self.end
    }

    fn stop(&mut self, problem: FrameProblem) -> Option<Frame<'a>> {
        self.done = true;
        self.end.stop_pos = self.pos;
        self.end.why = StopWhy { problem, expected_seq: self.expected };
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
            let f = match read_frame(self.data, self.pos) {
                Ok(f) => f,
                Err(p) => return self.stop(p),
            };
            let seq = f.header.seq;
            if seq != self.expected {
                return self.stop(FrameProblem::WrongSeq { seq });
            }
            let Some(next_expected) = self.expected.checked_add(1) else {
                return self.stop(FrameProblem::Loop);
            };
            if self.prev_crc.is_some_and(|c| c != f.header.prev_crc) {
                return self.stop(FrameProblem::WrongPrev { seq });
            }
            if f.header.kind == KIND_WRAP {
                if self.pos == 0 {
                    return self.stop(FrameProblem::WrapAtZero);
                }
                self.walked += remaining;
                if self.walked > cap {
                    return self.stop(FrameProblem::Loop);
                }
                self.prev_crc = Some(f.header.crc);
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
            self.expected = next_expected;
            self.prev_crc = Some(f.header.crc);
            self.end.end_pos = self.pos;
            self.end.next_seq = self.expected;
            self.end.used = self.walked;
            self.end.last_crc = f.header.crc;
            self.end.chain_len += 1;
            return Some(f.frame());
        }
    }
}
