//! Following a ring as it is written (`dump --follow`): read only what is
//! new, with `pread` on a plain file descriptor (never a mapping), so each
//! poll costs a frame header or two when nothing happened.
//!
//! The follower keeps its own cursor (data offset and the seq expected
//! there) and trusts a frame only when it passes the same checks as in a
//! chain walk (they live in `journal/frame.rs`): marker, length and CRC,
//! the expected seq, and a `prev_crc` that names the frame before it. When
//! the writer has wrapped past the cursor (the header's oldest seq is
//! beyond it), the records in between are gone: the follower reports how
//! many and carries on from the oldest record held.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Error;
use super::frame::{Base, HEADER_LEN, Head, Link, compact_body_len, decode_compact};
use super::layout::{COMPACT_BASE_MAX, HEADER_PAGE, HeaderSlot, KIND_WRAP, compact_len};
use super::reader::read_header;

/// One record read by the follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    /// Sequence number.
    pub seq: u64,
    /// Time, microseconds since the Unix epoch.
    pub time_us: u64,
    /// Record kind.
    pub kind: u16,
    /// The payload.
    pub payload: Vec<u8>,
}

/// What one step of following found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The next record.
    Record(Owned),
    /// The writer wrapped past us: records `from..to` are gone.
    Gap {
        /// First seq lost.
        from: u64,
        /// First seq still held.
        to: u64,
    },
}

/// Where to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The oldest record held.
    Oldest,
    /// The newest record (then everything after it).
    Newest,
    /// This seq (or the oldest held, after a gap, if it was dropped).
    Seq(u64),
}

/// A cursor over a ring file that is being written.
#[derive(Debug)]
pub struct Follower {
    file: File,
    path: PathBuf,
    capacity: usize,
    pos: usize,
    /// The seq expected at `pos` and the CRC the frame there must name.
    link: Link,
    /// The record before `pos`, for a compact frame there.
    base: Option<Base>,
    /// Read-ahead: bytes of the data area from `window_at`.
    window: Vec<u8>,
    window_at: usize,
}

/// How much of the data area one read fetches ahead.
const READ_AHEAD: usize = 256 * 1024;

impl Follower {
    /// Open `path` and position the cursor.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Header`] when the file is not a ring.
    pub fn open(path: &Path, start: Start) -> Result<Follower, Error> {
        super::reader::check_regular(path)?;
        let file = File::open(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let mut follower = Follower {
            file,
            path: path.to_owned(),
            capacity: 0,
            pos: 0,
            link: Link::start(0),
            base: None,
            window: Vec::new(),
            window_at: 0,
        };
        let header = follower.header()?;
        follower.capacity = usize::try_from(header.capacity).unwrap_or(0);
        follower.restart(&header);
        let target = match start {
            Start::Oldest => header.oldest_seq,
            Start::Newest => header.next_seq.saturating_sub(1).max(header.oldest_seq),
            Start::Seq(seq) => seq,
        };
        // Walk frame headers up to the starting seq.
        while follower.link.expected < target {
            match follower.frame(false)? {
                Some(_) => {}
                None => break,
            }
        }
        Ok(follower)
    }

    /// The seq the next record will have.
    pub fn expected(&self) -> u64 {
        self.link.expected
    }

    /// The next step, or `None` when nothing new is committed yet.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Header`] when the file cannot be read.
    pub fn poll(&mut self) -> Result<Option<Step>, Error> {
        if let Some(record) = self.frame(true)? {
            return Ok(Some(Step::Record(record)));
        }
        // Nothing readable at the cursor: either nothing new, or the writer
        // lapped us and the cursor points into newer data.
        let header = self.header()?;
        if header.oldest_seq > self.link.expected {
            let from = self.link.expected;
            self.restart(&header);
            return Ok(Some(Step::Gap { from, to: self.link.expected }));
        }
        Ok(None)
    }

    fn restart(&mut self, header: &HeaderSlot) {
        self.pos = usize::try_from(header.head).unwrap_or(0);
        self.link = Link::start(header.oldest_seq);
        self.base = None;
    }

    fn header(&self) -> Result<HeaderSlot, Error> {
        read_header(&self.file, &self.path)
    }

    fn read_err(&self, source: std::io::Error) -> Error {
        Error::Read { path: self.path.clone(), source }
    }

    /// Read the frame at the cursor if it is the expected one and intact;
    /// advance past it. With `payload` false only the header is checked
    /// (for skipping to a start seq).
    fn frame(&mut self, payload: bool) -> Result<Option<Owned>, Error> {
        // From the read-ahead window first; what fails there is read again
        // from the file before it counts as not committed yet.
        match self.try_frame(payload, false)? {
            Some(found) => Ok(Some(found)),
            None => self.try_frame(payload, true),
        }
    }

    /// `len` bytes of the data area at `pos`, from the window unless
    /// `fresh` (or not covered), else read into it with some read-ahead.
    fn bytes(&mut self, pos: usize, len: usize, fresh: bool) -> Result<&[u8], Error> {
        if len == 0 {
            return Ok(&[]);
        }
        let covered = pos >= self.window_at && pos + len <= self.window_at + self.window.len();
        if fresh || !covered {
            let want = len.max(READ_AHEAD).min(self.capacity.saturating_sub(pos)).max(len);
            self.window.resize(want, 0);
            let at = HEADER_PAGE + pos as u64;
            if let Err(source) = self.file.read_exact_at(&mut self.window, at) {
                self.window.clear();
                return Err(self.read_err(source));
            }
            self.window_at = pos;
        }
        let start = pos - self.window_at;
        Ok(&self.window[start..start + len])
    }

    fn try_frame(&mut self, payload: bool, fresh: bool) -> Result<Option<Owned>, Error> {
        let mut fresh = fresh;
        loop {
            let remaining = self.capacity.saturating_sub(self.pos);
            if remaining < HEADER_LEN {
                if self.pos == 0 {
                    return Ok(None);
                }
                self.pos = 0;
                continue;
            }
            let (pos, cap) = (self.pos, self.capacity);
            let raw = self.bytes(pos, HEADER_LEN, fresh)?;
            // One fresh read per frame is enough.
            fresh = false;
            if let Some(body_len) = compact_body_len(raw) {
                let (prev_crc, base) = (self.link.prev_crc, self.base.take());
                let decoded = self
                    .bytes(pos, compact_len(body_len).min(remaining), false)
                    .map(|raw| decode_compact(raw, pos, cap, prev_crc, base.as_ref(), true));
                self.base = base;
                let Ok(f) = decoded? else { return Ok(None) };
                if self.link.check(&f.header, pos).is_err() {
                    return Ok(None);
                }
                return Ok(Some(self.step(&f.header, f.len, f.payload.into_owned())));
            }
            let head = Head::parse(raw, pos, cap);
            // Checked before the payload is read, so that a poll with nothing
            // new reads one frame header.
            let Ok(head) = head else { return Ok(None) };
            if self.link.check(&head.header, pos).is_err() {
                return Ok(None);
            }
            let body = self.bytes(pos + HEADER_LEN, head.payload_len(), false)?;
            let Ok(len) = head.check(body) else {
                // Being written (or torn by a crash): not committed yet.
                return Ok(None);
            };
            let header = head.header;
            // Skipping to a start seq still reads a short record: the next
            // frame may be compact, written against it.
            let read = payload || body.len() <= COMPACT_BASE_MAX;
            let record = if read {
                // Intact but not inflating: the chain ends here for every
                // reader, as it does for the walk.
                let Ok(record) = super::frame::payload(&header, body, cap) else { return Ok(None) };
                record.into_owned()
            } else {
                Vec::new()
            };
            if header.kind == KIND_WRAP {
                self.link.advance(&header);
                self.pos = 0;
                continue;
            }
            let mut record = self.step(&header, len, record);
            if !read {
                // Not read, so not a base: no compact frame follows it.
                self.base = None;
            }
            if !payload {
                record.payload.clear();
            }
            return Ok(Some(record));
        }
    }

    /// Move past the record `header` (taking `len` bytes) whose payload is
    /// `payload`, keeping it as the base of the next frame.
    fn step(&mut self, header: &super::layout::FrameHeader, len: usize, payload: Vec<u8>) -> Owned {
        self.link.advance(header);
        self.pos += len;
        if self.pos == self.capacity {
            self.pos = 0;
        }
        Base::keep(&mut self.base, header.seq, header.kind, header.time_us, &payload);
        Owned { seq: header.seq, time_us: header.time_us, kind: header.kind, payload }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Ring;

    fn drain(f: &mut Follower) -> Vec<Step> {
        let mut out = Vec::new();
        while let Some(step) = f.poll().unwrap() {
            out.push(step);
        }
        out
    }

    fn seqs(steps: &[Step]) -> Vec<u64> {
        steps.iter().filter_map(|s| if let Step::Record(r) = s { Some(r.seq) } else { None }).collect()
    }

    #[test]
    fn follows_appends_in_order_and_starts_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.bin");
        let mut ring = Ring::open_or_create(&path, 4096 + 64 * 1024).unwrap();
        for i in 1..=5u64 {
            ring.append(1, i, &[i as u8; 100]).unwrap();
        }
        let mut from_oldest = Follower::open(&path, Start::Oldest).unwrap();
        let mut from_newest = Follower::open(&path, Start::Newest).unwrap();
        let mut from_three = Follower::open(&path, Start::Seq(3)).unwrap();
        assert_eq!(seqs(&drain(&mut from_oldest)), [1, 2, 3, 4, 5]);
        assert_eq!(seqs(&drain(&mut from_newest)), [5]);
        assert_eq!(seqs(&drain(&mut from_three)), [3, 4, 5]);
        ring.append(1, 6, b"six").unwrap();
        let steps = drain(&mut from_newest);
        assert_eq!(steps, [Step::Record(Owned { seq: 6, time_us: 6, kind: 1, payload: b"six".to_vec() })]);
        assert!(from_newest.poll().unwrap().is_none());
    }

    #[test]
    fn a_lapped_follower_reports_the_gap_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.bin");
        let mut ring = Ring::open_or_create(&path, 4096 + 4096).unwrap();
        ring.append(1, 1, &[1; 200]).unwrap();
        let mut follower = Follower::open(&path, Start::Oldest).unwrap();
        let mut seen = seqs(&drain(&mut follower));
        // Many wraps while the follower sleeps.
        for i in 2..=200u64 {
            ring.append(1, i, &[i as u8; 200]).unwrap();
        }
        let steps = drain(&mut follower);
        let Step::Gap { from, to } = steps[0] else { panic!("expected a gap first: {steps:?}") };
        assert_eq!(from, 2);
        assert_eq!(to, ring.info().oldest_seq);
        seen.extend(seqs(&steps));
        let held: Vec<u64> = (ring.info().oldest_seq..=200).collect();
        assert_eq!(seen[1..], held[..], "after the gap, exactly the records held");
        // Following across wraps, one record at a time.
        for i in 201..=400u64 {
            ring.append(1, i, &[i as u8; 150]).unwrap();
            assert_eq!(seqs(&drain(&mut follower)), [i]);
        }
    }
}
