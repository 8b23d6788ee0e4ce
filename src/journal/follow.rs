//! Following a ring as it is written (`dump --follow`): read only what is
//! new, with `pread` on a plain file descriptor (never a mapping), so each
//! poll costs a frame header or two when nothing happened.
//!
//! The follower keeps its own cursor (data offset and the seq expected
//! there) and trusts a frame only when its marker, seq and CRC check out
//! and its `prev_crc` names the frame before it. When the writer has
//! wrapped past the cursor (the header's oldest seq is beyond it), the
//! records in between are gone: the follower reports how many and carries
//! on from the oldest record held.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Error;
use super::layout::{FRAME_HEADER, FrameHeader, HEADER_PAGE, HeaderSlot, KIND_WRAP, frame_len};
use super::reader::select_header_of;

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
    expected: u64,
    prev_crc: Option<u32>,
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
        let file = File::open(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let mut follower = Follower {
            file,
            path: path.to_owned(),
            capacity: 0,
            pos: 0,
            expected: 0,
            prev_crc: None,
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
        while follower.expected < target {
            match follower.frame(false)? {
                Some(_) => {}
                None => break,
            }
        }
        Ok(follower)
    }

    /// The seq the next record will have.
    pub fn expected(&self) -> u64 {
        self.expected
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
        if header.oldest_seq > self.expected {
            let from = self.expected;
            self.restart(&header);
            return Ok(Some(Step::Gap { from, to: self.expected }));
        }
        Ok(None)
    }

    fn restart(&mut self, header: &HeaderSlot) {
        self.pos = usize::try_from(header.head).unwrap_or(0);
        self.expected = header.oldest_seq;
        self.prev_crc = None;
    }

    fn header(&self) -> Result<HeaderSlot, Error> {
        let mut page = vec![0u8; HEADER_PAGE as usize];
        self.file.read_exact_at(&mut page, 0).map_err(|source| self.read_err(source))?;
        let len = self.file.metadata().map_err(|source| self.read_err(source))?.len();
        select_header_of(&page, len)
            .map(|(h, _)| h)
            .map_err(|source| Error::Header { path: self.path.clone(), source })
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
            if remaining < FRAME_HEADER as usize {
                if self.pos == 0 {
                    return Ok(None);
                }
                self.pos = 0;
                continue;
            }
            let header: FrameHeader =
                bytemuck::pod_read_unaligned(self.bytes(self.pos, FRAME_HEADER as usize, fresh)?);
            // One fresh read per frame is enough.
            fresh = false;
            if header.marker != super::layout::FRAME_MARKER || header.seq != self.expected {
                return Ok(None);
            }
            if self.prev_crc.is_some_and(|c| c != header.prev_crc) {
                return Ok(None);
            }
            let plen = header.payload_len as usize;
            let Some(len) = frame_len(plen as u64).and_then(|l| usize::try_from(l).ok()) else {
                return Ok(None);
            };
            if header.kind == KIND_WRAP {
                if plen != 0 || self.pos == 0 || header.compute_crc(&[]) != header.crc {
                    return Ok(None);
                }
                self.prev_crc = Some(header.crc);
                self.pos = 0;
                continue;
            }
            if self.pos + len > self.capacity {
                return Ok(None);
            }
            let body = self.bytes(self.pos + FRAME_HEADER as usize, plen, false)?;
            if header.compute_crc(body) != header.crc {
                // Being written (or torn by a crash): not committed yet.
                return Ok(None);
            }
            let body = if payload { body.to_vec() } else { Vec::new() };
            self.pos += len;
            if self.pos == self.capacity {
                self.pos = 0;
            }
            self.expected += 1;
            self.prev_crc = Some(header.crc);
            return Ok(Some(Owned {
                seq: header.seq,
                time_us: header.time_us,
                kind: header.kind,
                payload: body,
            }));
        }
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
