//! The single writer of ring.bin. See the module doc of [`crate::journal`]
//! for the format, the commit order and the crash story.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{Ordering, fence};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::MmapMut;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::frame;
use super::frame::Base;
use super::layout::{
    COMPACT_HEAD, COMPACT_MAX_RUN, FRAME_ALIGN, FRAME_HEADER, FRAME_MARKER, FrameHeader, HEADER_PAGE,
    HeaderSlot, KIND_WRAP, MAGIC, MIN_CAPACITY, SLOT_OFFSETS, SLOT_SIZE, VERSION, VERSION_COMPACT,
    VERSION_ZSTD, compact_len, frame_len,
};
use super::reader::{Walker, select_header};
use super::{Error, RingInfo};
use crate::compress::Deflater;

const HDR: usize = FRAME_HEADER as usize;
const PAGE: usize = HEADER_PAGE as usize;

/// What [`Ring::open_or_create`] found when it opened an existing ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The ring was created by this open.
    pub created: bool,
    /// `next_seq` in the header as found.
    pub header_next_seq: u64,
    /// One past the last record on the chain: where appends continue.
    /// Larger than `header_next_seq` if the writer died between writing a
    /// frame and committing the header; smaller if the chain is damaged.
    pub chain_next_seq: u64,
    /// The chain ended in a partly written frame, which was discarded.
    pub torn_tail: bool,
}

/// The single writer of a ring file.
///
/// Holds an exclusive `flock` on the file and a shared writable mapping of
/// it for as long as it lives. Dropping it syncs the map (errors ignored;
/// call [`Ring::flush`] to see them).
#[derive(Debug)]
pub struct Ring {
    // Field order matters: the map is unmapped before the file (and its
    // lock) is closed.
    map: MmapMut,
    _lock: Flock<File>,
    path: PathBuf,
    /// The current header; `generation` is that of the last slot written.
    state: HeaderSlot,
    /// CRC of the last frame written (the next frame's `prev_crc`).
    last_crc: u32,
    recovery: Recovery,
    async_flush_failed: bool,
    /// The first failed write-back not yet taken (see [`Ring::take_flush_error`]).
    flush_error: Option<Error>,
    /// Compresses large payloads; made on the first one (`None` after
    /// zstd could not make a context: payloads are then stored as they
    /// are).
    deflater: Option<Deflater>,
    /// zstd failed to make a context once: do not try again.
    no_deflater: bool,
    /// The last record appended, when short enough for a compact frame
    /// to be written against it (none after an open: the first record
    /// appended is always a full frame).
    base: Option<Base>,
    /// Compact frames written since the last full frame.
    run: u32,
    /// The body of the compact frame being considered.
    body: Vec<u8>,
}

impl Ring {
    /// Create ring.bin (mode 0600, whole file allocated up front with
    /// `posix_fallocate`, so a full disk is an error now, not SIGBUS later)
    /// or open an existing one.
    ///
    /// Takes an exclusive non-blocking `flock` on the file: a second writer
    /// gets [`Error::Locked`]. An existing ring keeps its own size
    /// (`size_bytes` is then ignored); its header is validated, the true end
    /// of the committed chain is found by walking it (a torn last frame is
    /// discarded) and the header's `opens` is incremented. A file that is
    /// empty or whose header page is all zeros (a creation that died before
    /// its header was written) is created afresh. `size_bytes` is the whole
    /// file: a 4096-byte header page plus the data area; it must be a
    /// multiple of 8 and at least 4096 + 256.
    pub fn open_or_create(path: &Path, size_bytes: u64) -> Result<Ring, Error> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ring::create_fresh(path, size_bytes),
            _ => Ring::open_in_place(path, size_bytes),
        }
    }

    /// Build a new ring beside `path` and rename it into place once both
    /// header slots are written, so a reader never sees a half-made file.
    fn create_fresh(path: &Path, size_bytes: u64) -> Result<Ring, Error> {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(".new");
        let staging = path.with_file_name(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staging)
            .map_err(|source| Error::Open { path: staging.clone(), source })?;
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| Error::Lock { path: staging.clone(), source: io::Error::from(errno) })?;
        let mut ring = Ring::create(file, &staging, size_bytes, 0)?;
        if let Err(source) = std::fs::rename(&staging, path) {
            remove_unfinished(&staging);
            return Err(Error::Open { path: path.to_owned(), source });
        }
        ring.path = path.to_owned();
        sync_parent_dir(path).map_err(|source| Error::Sync { path: path.to_owned(), source })?;
        Ok(ring)
    }

    fn open_in_place(path: &Path, size_bytes: u64) -> Result<Ring, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| Error::Open { path: path.to_owned(), source })?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(Error::Locked { path: path.to_owned() });
            }
            Err((_, errno)) => {
                return Err(Error::Lock { path: path.to_owned(), source: io::Error::from(errno) });
            }
        };
        let len = file.metadata().map_err(|source| Error::Open { path: path.to_owned(), source })?.len();
        if len == 0 || header_page_is_zero(&file, len, path)? {
            Ring::create(file, path, size_bytes, len)
        } else {
            Ring::open_existing(file, path, len)
        }
    }

    fn create(file: Flock<File>, path: &Path, size: u64, len: u64) -> Result<Ring, Error> {
        let min = HEADER_PAGE + MIN_CAPACITY;
        let bad_size = || Error::BadSize { path: path.to_owned(), size, min };
        if size < min || !size.is_multiple_of(FRAME_ALIGN) || usize::try_from(size).is_err() {
            remove_unfinished(path);
            return Err(bad_size());
        }
        let size_off = libc::off_t::try_from(size).map_err(|_| bad_size())?;
        let allocated = (|| {
            if len > size {
                file.set_len(size)?;
            }
            nix::fcntl::posix_fallocate(&*file, 0, size_off)?;
            Ok::<(), io::Error>(())
        })();
        if let Err(source) = allocated {
            remove_unfinished(path);
            return Err(Error::Allocate { path: path.to_owned(), size, source });
        }
        let map = map_file(&file, path)?;
        let created_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let state = HeaderSlot {
            magic: MAGIC,
            version: VERSION,
            header_size: HEADER_PAGE as u32,
            capacity: size - HEADER_PAGE,
            generation: 0,
            head: 0,
            tail: 0,
            oldest_seq: 1,
            next_seq: 1,
            used_bytes: 0,
            dropped_records: 0,
            opens: 1,
            created_us,
            crc: 0,
            reserved: 0,
        };
        let mut ring = Ring {
            map,
            _lock: file,
            path: path.to_owned(),
            state,
            last_crc: 0,
            recovery: Recovery { created: true, header_next_seq: 1, chain_next_seq: 1, torn_tail: false },
            async_flush_failed: false,
            flush_error: None,
            deflater: None,
            no_deflater: false,
            base: None,
            run: 0,
            body: Vec::with_capacity(64),
        };
        // Fill both slots so that either one alone is a valid header.
        ring.write_header();
        ring.write_header();
        let synced = ring.flush().and_then(|()| {
            sync_parent_dir(path).map_err(|source| Error::Sync { path: path.to_owned(), source })
        });
        if let Err(e) = synced {
            // A header that may not be on disk: no ring is left half made.
            remove_unfinished(path);
            return Err(e);
        }
        Ok(ring)
    }

    fn open_existing(file: Flock<File>, path: &Path, len: u64) -> Result<Ring, Error> {
        let map = map_file(&file, path)?;
        let (header, _) =
            select_header(&map).map_err(|source| Error::Header { path: path.to_owned(), source })?;
        let data = map.get(PAGE..).unwrap_or(&[]);
        let mut walk = Walker::checking(data, &header);
        for _ in walk.by_ref() {}
        let end = walk.end();
        let torn_tail = end.why.expected_seq == end.next_seq && end.why.is_torn_frame();
        let recovery = Recovery {
            created: false,
            header_next_seq: header.next_seq,
            chain_next_seq: end.next_seq,
            torn_tail,
        };
        let mut state = header;
        state.tail = end.end_pos as u64;
        state.next_seq = end.next_seq;
        state.used_bytes = end.used as u64;
        state.opens = state.opens.saturating_add(1);
        debug_assert_eq!(HEADER_PAGE + state.capacity, len);
        let mut ring = Ring {
            map,
            _lock: file,
            path: path.to_owned(),
            state,
            last_crc: end.last_crc,
            recovery,
            async_flush_failed: false,
            flush_error: None,
            deflater: None,
            no_deflater: false,
            base: None,
            run: 0,
            body: Vec::with_capacity(64),
        };
        ring.write_header();
        crate::failpoint::check("ring.msync")
            .and_then(|()| ring.map.flush_range(0, PAGE))
            .map_err(|source| Error::Sync { path: path.to_owned(), source })?;
        Ok(ring)
    }

    /// Append one record; returns its sequence number.
    ///
    /// Drops the oldest records as needed. Fails with
    /// [`Error::ReservedKind`] for kind `0xFFFF` and with
    /// [`Error::TooLarge`] for payloads over [`Ring::max_payload`]; the ring
    /// is unchanged then.
    pub fn append(&mut self, kind: u16, time_us: u64, payload: &[u8]) -> Result<u64, Error> {
        if kind == KIND_WRAP {
            return Err(Error::ReservedKind { path: self.path.clone(), kind });
        }
        let cap = self.capacity();
        if frame_len(payload.len() as u64)
            .and_then(|l| usize::try_from(l).ok())
            .is_none_or(|l| l > cap / 2 || u32::try_from(payload.len()).is_err())
        {
            return Err(Error::TooLarge {
                path: self.path.clone(),
                len: payload.len(),
                max: self.max_payload(),
            });
        }
        let seq = self.state.next_seq;
        // A record that differs in a few bytes from the one before (an idle
        // sample: the same stats, a later time) is a compact frame.
        let mut compact = self.state.version >= VERSION_COMPACT
            && self.run < COMPACT_MAX_RUN
            && match &self.base {
                Some(base) if base.kind == kind && base.seq.checked_add(1) == Some(seq) => {
                    frame::compact_body(base, time_us, payload, &mut self.body)
                }
                _ => false,
            };
        let (mut stored, mut flags) = (Cow::Borrowed(payload), 0);
        if !compact {
            (stored, flags) = self.stored(payload);
        }
        // Nothing below can fail with an errno (the writes go to the shared
        // mapping); an injected fault stands for one here, before any byte
        // of the record is written, so the ring is unchanged.
        crate::failpoint::check("ring.append")
            .map_err(|source| Error::Write { path: self.path.clone(), source })?;
        let tail = self.state.tail as usize;
        let mut dropped = false;
        let (pos, needed, flen, wraps) = loop {
            let flen = if compact {
                compact_len(self.body.len())
            } else {
                frame_len(stored.len() as u64).and_then(|l| usize::try_from(l).ok()).ok_or_else(|| {
                    Error::Internal { path: self.path.clone(), what: "stored payload length".into() }
                })?
            };
            // Readers wrap where a full frame header would not fit, so no
            // frame starts there, compact or not.
            let wraps = tail + flen > cap || cap - tail < HDR;
            let (pos, needed) = if wraps { (0, cap - tail + flen) } else { (tail, flen) };

            // Step 1: drop the oldest records and publish the new head before
            // any byte of them is overwritten. A compact frame is never left
            // at the head: readers start there and could not rebuild it.
            while cap - self.used() < needed {
                self.drop_oldest()?;
                dropped = true;
            }
            while self.used() > 0 && self.head_is_compact() {
                self.drop_oldest()?;
                dropped = true;
            }
            if compact && self.state.oldest_seq == seq {
                // Every record before it went: this one is the head.
                compact = false;
                (stored, flags) = self.stored(payload);
                continue;
            }
            break (pos, needed, flen, wraps);
        };
        if dropped {
            self.write_header();
            fence(Ordering::Release);
        }

        // Step 2: wrap marker.
        if wraps && cap - tail >= HDR {
            let mut marker = FrameHeader {
                marker: FRAME_MARKER,
                kind: KIND_WRAP,
                flags: 0,
                payload_len: 0,
                crc: 0,
                seq,
                time_us,
                prev_crc: self.last_crc,
                reserved: 0,
            };
            marker.crc = marker.compute_crc(&[]);
            self.data_mut()[tail..tail + HDR].copy_from_slice(bytemuck::bytes_of(&marker));
            self.last_crc = marker.crc;
        }

        // Step 3: payload (or compact body) and padding, then the frame's
        // header.
        let crc = if compact {
            let head = frame::compact_head(self.last_crc, &self.body);
            let body = std::mem::take(&mut self.body);
            let data = self.data_mut();
            let (b, pad) = data[pos + COMPACT_HEAD..pos + flen].split_at_mut(body.len());
            b.copy_from_slice(&body);
            pad.fill(0);
            fence(Ordering::Release);
            data[pos..pos + COMPACT_HEAD].copy_from_slice(&head);
            self.body = body;
            u32::from_le_bytes([head[4], head[5], head[6], head[7]])
        } else {
            let stored = &stored[..];
            let mut frame = FrameHeader {
                marker: FRAME_MARKER,
                kind,
                flags,
                payload_len: stored.len() as u32,
                crc: 0,
                seq,
                time_us,
                prev_crc: self.last_crc,
                reserved: 0,
            };
            frame.crc = frame.compute_crc(stored);
            let data = self.data_mut();
            let body = &mut data[pos + HDR..pos + flen];
            let (p, pad) = body.split_at_mut(stored.len());
            p.copy_from_slice(stored);
            pad.fill(0);
            fence(Ordering::Release);
            data[pos..pos + HDR].copy_from_slice(bytemuck::bytes_of(&frame));
            frame.crc
        };
        fence(Ordering::Release);

        // Step 4: commit.
        self.last_crc = crc;
        Base::keep(&mut self.base, seq, kind, time_us, payload);
        self.run = if compact { self.run + 1 } else { 0 };
        self.state.tail = if pos + flen == cap { 0 } else { (pos + flen) as u64 };
        self.state.next_seq = seq + 1;
        self.state.used_bytes += needed as u64;
        self.write_header();

        // Step 5: ask for write-back of what was touched. The record is
        // committed whatever this says: a failure is kept for
        // [`Ring::take_flush_error`], and the next msync tries again.
        let wrapped = if wraps { cap - tail } else { 0 };
        let ranges = [(PAGE + pos, flen), (PAGE + tail, wrapped), (0, PAGE)];
        let mut written_back = crate::failpoint::check("ring.msync");
        if written_back.is_ok() {
            for (offset, len) in ranges.into_iter().filter(|&(_, len)| len > 0) {
                if let Err(e) = self.map.flush_async_range(offset, len) {
                    written_back = Err(e);
                }
            }
        }
        if let Err(source) = written_back {
            self.async_flush_failed = true;
            self.flush_error.get_or_insert(Error::Sync { path: self.path.clone(), source });
        }
        Ok(seq)
    }

    /// msync the whole map synchronously (called on clean shutdown).
    ///
    /// # Errors
    /// [`Error::Sync`] when msync fails: records may not be on disk.
    pub fn flush(&self) -> Result<(), Error> {
        crate::failpoint::check("ring.msync")
            .and_then(|()| self.map.flush())
            .map_err(|source| Error::Sync { path: self.path.clone(), source })
    }

    /// The first write-back after an append that failed since the last
    /// call, if any. The records stay committed in the page cache (readers
    /// see them); whether they reach the disk is known at the next
    /// successful msync ([`Ring::flush`]).
    pub fn take_flush_error(&mut self) -> Option<Error> {
        self.flush_error.take()
    }

    /// The ring's counters.
    pub fn info(&self) -> RingInfo {
        RingInfo {
            capacity_bytes: self.state.capacity,
            used_bytes: self.state.used_bytes,
            oldest_seq: self.state.oldest_seq,
            next_seq: self.state.next_seq,
            dropped_records: self.state.dropped_records,
            opens: self.state.opens,
        }
    }

    /// The ring file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The largest payload [`Ring::append`] accepts: its frame (40-byte
    /// header plus payload padded to 8) takes at most half the data area.
    pub fn max_payload(&self) -> usize {
        max_payload_for(self.state.capacity)
    }

    /// What opening the ring found (see [`Recovery`]).
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// An asynchronous flush after some append failed since the ring was
    /// opened. Records are still in the page cache; [`Ring::flush`] tells
    /// whether they reach the disk.
    pub fn async_flush_failed(&self) -> bool {
        self.async_flush_failed
    }

    fn capacity(&self) -> usize {
        // Fits: the whole file was mapped.
        self.state.capacity as usize
    }

    fn used(&self) -> usize {
        self.state.used_bytes as usize
    }

    fn data(&self) -> &[u8] {
        &self.map[PAGE..]
    }

    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.map[PAGE..]
    }

    fn bug(&self, what: String) -> Error {
        Error::Internal { path: self.path.clone(), what }
    }

    /// The bytes a full frame stores for `payload`, and its flags: a large
    /// payload compressed when that is smaller (the frame and its CRC
    /// cover the stored bytes). A first-release ring (version 1) is
    /// appended to as that release wrote it: never compressed.
    fn stored<'p>(&mut self, payload: &'p [u8]) -> (Cow<'p, [u8]>, u16) {
        if self.state.version < VERSION_ZSTD || payload.len() < frame::COMPRESS_FROM {
            return (Cow::Borrowed(payload), 0);
        }
        if self.deflater.is_none() && !self.no_deflater {
            self.deflater = Deflater::new().ok();
            self.no_deflater = self.deflater.is_none();
        }
        match &mut self.deflater {
            Some(deflater) => frame::store(payload, deflater),
            None => (Cow::Borrowed(payload), 0),
        }
    }

    /// The oldest record is a compact frame (past any wrap waste or wrap
    /// marker at `head`).
    fn head_is_compact(&self) -> bool {
        let (cap, data) = (self.capacity(), self.data());
        let mut head = self.state.head as usize;
        if cap.saturating_sub(head) < HDR {
            head = 0;
        } else {
            let h: FrameHeader = bytemuck::pod_read_unaligned(&data[head..head + HDR]);
            if h.marker == FRAME_MARKER && h.kind == KIND_WRAP {
                head = 0;
            }
        }
        frame::compact_body_len(&data[head..]).is_some()
    }

    /// Drop the frame (or wrap waste) at `head`, in memory only.
    fn drop_oldest(&mut self) -> Result<(), Error> {
        let cap = self.capacity();
        let head = self.state.head as usize;
        if self.used() == 0 || head >= cap {
            return Err(self.bug(format!("drop with used {} and head {head}", self.used())));
        }
        let remaining = cap - head;
        let footprint = if remaining < HDR {
            remaining
        } else if let Some(body_len) = frame::compact_body_len(&self.data()[head..]) {
            self.state.oldest_seq += 1;
            self.state.dropped_records += 1;
            Some(compact_len(body_len))
                .filter(|&l| l <= remaining)
                .ok_or_else(|| self.bug(format!("compact frame at head {head} is too long")))?
        } else {
            let h: FrameHeader = bytemuck::pod_read_unaligned(&self.data()[head..head + HDR]);
            if h.marker != FRAME_MARKER {
                return Err(self.bug(format!("no live frame at head {head}")));
            }
            if h.kind == KIND_WRAP {
                remaining
            } else if h.seq != self.state.oldest_seq {
                return Err(self.bug(format!(
                    "frame at head {head} has seq {} instead of {}",
                    h.seq, self.state.oldest_seq
                )));
            } else {
                self.state.oldest_seq += 1;
                self.state.dropped_records += 1;
                frame_len(u64::from(h.payload_len))
                    .and_then(|l| usize::try_from(l).ok())
                    .filter(|&l| l <= remaining)
                    .ok_or_else(|| self.bug(format!("frame at head {head} is too long")))?
            }
        };
        let Some(used) = self.used().checked_sub(footprint) else {
            return Err(self.bug(format!("dropping {footprint} bytes with {} used", self.used())));
        };
        self.state.used_bytes = used as u64;
        self.state.head = if head + footprint == cap { 0 } else { (head + footprint) as u64 };
        Ok(())
    }

    /// Write the current state to the next header slot.
    fn write_header(&mut self) {
        self.state.generation += 1;
        self.state.crc = self.state.compute_crc();
        let off = SLOT_OFFSETS[(self.state.generation % 2) as usize];
        let bytes = bytemuck::bytes_of(&self.state);
        self.map[off..off + SLOT_SIZE].copy_from_slice(bytes);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Errors cannot be reported from here; flush() reports them.
        let _ = self.map.flush();
    }
}

/// The largest payload for a data area of `capacity` bytes.
pub(crate) fn max_payload_for(capacity: u64) -> usize {
    let max_frame = capacity / 2;
    let max = max_frame.saturating_sub(FRAME_HEADER) & !(FRAME_ALIGN - 1);
    usize::try_from(max.min(u64::from(u32::MAX))).unwrap_or(usize::MAX)
}

fn map_file(file: &Flock<File>, path: &Path) -> Result<MmapMut, Error> {
    // SAFETY: the mapping is only valid while nobody truncates or writes the
    // file behind our back. We hold an exclusive flock for the map's whole
    // life (the lock is released only when `Ring` drops the file, after the
    // map), the file is private to the store (mode 0600) and fully allocated,
    // and every other reader uses read(2), not a mapping.
    let map = unsafe { MmapMut::map_mut(&**file) }
        .map_err(|source| Error::Map { path: path.to_owned(), source })?;
    if map.len() < PAGE {
        return Err(Error::Header {
            path: path.to_owned(),
            source: super::HeaderError::Short { file_len: map.len() as u64 },
        });
    }
    Ok(map)
}

/// Whether an existing file's header page is all zeros (never initialised).
fn header_page_is_zero(file: &File, len: u64, path: &Path) -> Result<bool, Error> {
    use std::os::unix::fs::FileExt;
    if len < HEADER_PAGE {
        return Ok(false);
    }
    let mut page = vec![0u8; PAGE];
    file.read_exact_at(&mut page, 0).map_err(|source| Error::Read { path: path.to_owned(), source })?;
    Ok(page.iter().all(|&b| b == 0))
}

/// Remove a file this open created or found unfinished, after a failed
/// creation, so no half-made ring is left behind.
fn remove_unfinished(path: &Path) {
    // Best effort: the error that made creation fail is the one to report.
    let _ = std::fs::remove_file(path);
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;
    use crate::journal::Snapshot;

    /// A record as the test wrote it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) struct Rec {
        pub seq: u64,
        pub kind: u16,
        pub time_us: u64,
        pub payload: Vec<u8>,
    }

    pub(crate) fn recs(snap: &Snapshot) -> Vec<Rec> {
        snap.frames()
            .map(|f| Rec { seq: f.seq, kind: f.kind, time_us: f.time_us, payload: f.payload.to_vec() })
            .collect()
    }

    /// Deterministic payload bytes.
    pub(crate) fn payload(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Where the writer puts frames, modelled by overlap instead of by
    /// `used_bytes`: live records, tail, and the record list. A record
    /// that differs little from the one before is a compact frame, as the
    /// writer decides, and none is left at the head.
    pub(crate) struct Model {
        cap: usize,
        tail: usize,
        /// Live records with their data offset, frame length and whether
        /// the frame is compact.
        pub live: VecDeque<(Rec, usize, usize, bool)>,
        next_seq: u64,
        dropped: u64,
        /// The last record when short enough to be a base.
        base: Option<Base>,
        /// Compact frames since the last full one.
        run: u32,
        /// Compact frames are written (a version 3 ring).
        compact: bool,
    }

    impl Model {
        pub(crate) fn new(cap: usize) -> Model {
            Model {
                cap,
                tail: 0,
                live: VecDeque::new(),
                next_seq: 1,
                dropped: 0,
                base: None,
                run: 0,
                compact: true,
            }
        }

        /// The writer was closed and opened again: it starts with a full
        /// frame.
        pub(crate) fn reopened(&mut self) {
            self.base = None;
            self.run = 0;
        }

        /// The model of a version 2 ring: full frames only.
        pub(crate) fn full_frames(cap: usize) -> Model {
            Model { compact: false, ..Model::new(cap) }
        }

        pub(crate) fn append(&mut self, kind: u16, time_us: u64, payload: &[u8]) -> u64 {
            let seq = self.next_seq;
            let mut body = Vec::new();
            let mut compact = self.compact
                && self.run < COMPACT_MAX_RUN
                && self.base.as_ref().is_some_and(|b| {
                    b.kind == kind && b.seq + 1 == seq && frame::compact_body(b, time_us, payload, &mut body)
                });
            let (pos, flen) = loop {
                let flen = if compact {
                    compact_len(body.len())
                } else {
                    frame_len(payload.len() as u64).unwrap() as usize
                };
                let (pos, regions) = if self.tail + flen > self.cap || self.cap - self.tail < HDR {
                    (0, vec![(self.tail, self.cap), (0, flen)])
                } else {
                    (self.tail, vec![(self.tail, self.tail + flen)])
                };
                let overlaps =
                    |start: usize, len: usize| regions.iter().any(|&(a, b)| start < b && a < start + len);
                let mut keep = VecDeque::new();
                let mut seen_kept = false;
                for (rec, start, len, c) in self.live.drain(..) {
                    if overlaps(start, len) || (!seen_kept && c) {
                        assert!(!seen_kept, "overlapped records are not the oldest");
                        self.dropped += 1;
                    } else {
                        seen_kept = true;
                        keep.push_back((rec, start, len, c));
                    }
                }
                self.live = keep;
                if compact && self.live.is_empty() {
                    compact = false;
                    continue;
                }
                break (pos, flen);
            };
            self.next_seq += 1;
            let rec = Rec { seq, kind, time_us, payload: payload.to_vec() };
            self.live.push_back((rec, pos, flen, compact));
            self.tail = if pos + flen == self.cap { 0 } else { pos + flen };
            Base::keep(&mut self.base, seq, kind, time_us, payload);
            self.run = if compact { self.run + 1 } else { 0 };
            seq
        }

        pub(crate) fn records(&self) -> Vec<Rec> {
            self.live.iter().map(|(r, _, _, _)| r.clone()).collect()
        }

        fn check(&self, ring: &Ring) {
            let snap = Snapshot::read(ring.path()).unwrap();
            let got = recs(&snap);
            assert_eq!(got, self.records());
            let info = ring.info();
            assert_eq!(snap.info(), info);
            assert_eq!(info.next_seq, self.next_seq);
            assert_eq!(info.dropped_records, self.dropped);
            assert_eq!(info.oldest_seq, self.live.front().map_or(self.next_seq, |(r, _, _, _)| r.seq));
            assert_eq!(info.oldest_seq, info.dropped_records + 1);
        }
    }

    /// The file image of a ring of `cap` bytes after `n` appends with
    /// payload lengths from `lens` (cycled), every record written (by seq),
    /// and the model.
    pub(crate) fn build_image(
        cap: usize,
        n: u64,
        lens: &[usize],
    ) -> (Vec<u8>, std::collections::HashMap<u64, Rec>, Model) {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let mut ring = Ring::open_or_create(&path, (PAGE + cap) as u64).unwrap();
        let mut model = Model::new(cap);
        let mut all = std::collections::HashMap::new();
        for i in 0..n {
            let len = lens[i as usize % lens.len()].min(ring.max_payload());
            let p = payload(i ^ 0x55, len);
            let kind = (i % 7) as u16;
            let seq = ring.append(kind, i * 10, &p).unwrap();
            model.append(kind, i * 10, &p);
            all.insert(seq, Rec { seq, kind, time_us: i * 10, payload: p });
        }
        drop(ring);
        (std::fs::read(&path).unwrap(), all, model)
    }

    fn ring_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("ring.bin")
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let mut ring = Ring::open_or_create(&path, 4096 + 65536).unwrap();
        assert!(ring.recovery().created);
        let mut model = Model::new(65536);
        for (i, len) in [0usize, 1, 7, 8, 9, 100, 4095, 4097, 0].into_iter().enumerate() {
            let p = payload(i as u64, len);
            let seq = ring.append(i as u16, 1000 + i as u64, &p).unwrap();
            assert_eq!(seq, model.append(i as u16, 1000 + i as u64, &p));
        }
        model.check(&ring);
        let info = ring.info();
        assert_eq!(info.capacity_bytes, 65536);
        assert_eq!(info.opens, 1);
        assert_eq!(info.oldest_seq, 1);
        assert_eq!(info.next_seq, 10);
        ring.flush().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096 + 65536);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "ring must not be readable by others");
    }

    #[test]
    fn large_records_are_stored_compressed_and_every_reader_inflates_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let mut ring = Ring::open_or_create(&path, 4096 + 65536).unwrap();
        let listing: Vec<u8> = (0..800)
            .flat_map(|i| format!("d{:03}/f{i:05}.txt 0644 {i:016x}\n", i % 7).into_bytes())
            .collect();
        assert!(listing.len() > 20_000 && listing.len() <= ring.max_payload());
        let small = b"a small record".to_vec();
        let noise = payload(3, 2000);
        for p in [&small, &listing, &noise, &listing] {
            ring.append(2, 5, p).unwrap();
        }
        let used = ring.info().used_bytes as usize;
        assert!(used < listing.len() / 2, "{used} bytes of ring for two listings of {}", listing.len());
        let want = vec![small.clone(), listing.clone(), noise.clone(), listing.clone()];
        let snap = Snapshot::read(&path).unwrap();
        let got: Vec<Vec<u8>> = snap.frames().map(|f| f.payload.into_owned()).collect();
        assert_eq!(got, want);
        let scan = snap.scan();
        assert!(scan.problems.is_empty(), "{:?}", scan.problems);
        let mut follower =
            crate::journal::follow::Follower::open(&path, crate::journal::follow::Start::Oldest).unwrap();
        let mut followed = Vec::new();
        while let Some(step) = follower.poll().unwrap() {
            if let crate::journal::follow::Step::Record(r) = step {
                followed.push(r.payload);
            }
        }
        assert_eq!(followed, want);
        // A walk that only finds the chain's end inflates no long record
        // and ends where the reading walk ends.
        let bytes = std::fs::read(&path).unwrap();
        let (header, _) = select_header(&bytes).unwrap();
        let mut checking = Walker::checking(&bytes[PAGE..], &header);
        let lens: Vec<usize> = checking.by_ref().map(|f| f.payload.len()).collect();
        assert_eq!(lens, [small.len(), 0, noise.len(), 0]);
        let mut reading = Walker::new(&bytes[PAGE..], &header);
        for _ in reading.by_ref() {}
        assert_eq!(checking.end(), reading.end());
        // A compressed record whose stream declares another length ends
        // the checking walk too (its CRC resealed, as a writer bug would).
        let mut lying = bytes.clone();
        let at = PAGE + frame_len(small.len() as u64).unwrap() as usize;
        let mut h: FrameHeader = bytemuck::pod_read_unaligned(&lying[at..at + HDR]);
        assert_eq!(h.flags, crate::journal::layout::FLAG_ZSTD);
        let len_at = at + HDR;
        let recorded = u32::from_le_bytes(lying[len_at..len_at + 4].try_into().unwrap());
        lying[len_at..len_at + 4].copy_from_slice(&(recorded + 1).to_le_bytes());
        h.crc = h.compute_crc(&lying[len_at..len_at + h.payload_len as usize]);
        lying[at..at + HDR].copy_from_slice(bytemuck::bytes_of(&h));
        let mut checking = Walker::checking(&lying[PAGE..], &header);
        assert_eq!(checking.by_ref().count(), 1);
        // The writer reopens it and goes on after the compressed records.
        drop(ring);
        let mut ring = Ring::open_or_create(&path, 4096 + 65536).unwrap();
        assert_eq!(ring.append(2, 6, &small).unwrap(), 5);
    }

    /// Rewrite both header slots of the ring at `path` with `version`.
    /// A new version 2 ring of `cap` bytes at `path`: full frames only, as
    /// the tests that cut or model full frames need.
    pub(crate) fn full_frames_ring(path: &Path, cap: usize) -> Ring {
        drop(Ring::open_or_create(path, (PAGE + cap) as u64).unwrap());
        set_version(path, VERSION_ZSTD);
        Ring::open_or_create(path, 0).unwrap()
    }

    fn set_version(path: &Path, version: u32) {
        let mut bytes = std::fs::read(path).unwrap();
        for off in SLOT_OFFSETS {
            let mut slot: HeaderSlot = bytemuck::pod_read_unaligned(&bytes[off..off + SLOT_SIZE]);
            slot.version = version;
            slot.crc = slot.compute_crc();
            bytes[off..off + SLOT_SIZE].copy_from_slice(bytemuck::bytes_of(&slot));
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_first_release_ring_is_appended_to_in_its_own_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let ring = Ring::open_or_create(&path, 4096 + 65536).unwrap();
        drop(ring);
        assert_eq!(Snapshot::read(&path).unwrap().version(), VERSION);
        set_version(&path, 1);
        let mut ring = Ring::open_or_create(&path, 4096 + 65536).unwrap();
        let listing = vec![b'x'; 10_000];
        ring.append(2, 5, &listing).unwrap();
        assert_eq!(ring.info().used_bytes, frame_len(10_000).unwrap(), "stored as it is");
        drop(ring);
        let snap = Snapshot::read(&path).unwrap();
        assert_eq!(snap.version(), 1);
        assert_eq!(snap.frames().map(|f| f.payload.into_owned()).collect::<Vec<_>>(), vec![listing]);
        // A version this code does not know is refused by name.
        set_version(&path, VERSION + 1);
        let err = Snapshot::read(&path).unwrap_err();
        assert!(format!("{:?}", err).contains(&format!("Version {{ found: {} }}", VERSION + 1)), "{err:?}");
    }

    #[test]
    fn empty_ring_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let ring = Ring::open_or_create(&path, 4096 + 1024).unwrap();
        let snap = Snapshot::read(&path).unwrap();
        assert_eq!(snap.frames().count(), 0);
        assert_eq!(snap.info(), ring.info());
        let scan = snap.scan();
        assert!(scan.problems.is_empty() && !scan.torn_tail, "{scan:?}");
    }

    #[test]
    fn wrap_many_times_matches_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let cap = 4096;
        let mut ring = Ring::open_or_create(&path, 4096 + cap as u64).unwrap();
        let mut model = Model::new(cap);
        let mut written = 0;
        for i in 0..3000u64 {
            let len = (payload(i, 1)[0] as usize * 7) % 700;
            let p = payload(i + 77, len);
            let seq = ring.append(3, i, &p).unwrap();
            assert_eq!(seq, model.append(3, i, &p));
            written += frame_len(len as u64).unwrap() as usize;
            if i % 97 == 0 {
                model.check(&ring);
            }
        }
        assert!(written > 100 * cap, "should wrap many times");
        model.check(&ring);
        assert!(ring.info().dropped_records > 2000);
    }

    #[test]
    fn stale_frames_never_return() {
        for compact in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = ring_path(&dir);
            let cap = 2048;
            let mut ring = if compact {
                Ring::open_or_create(&path, 4096 + cap as u64).unwrap()
            } else {
                full_frames_ring(&path, cap)
            };
            // Small frames round the ring a few times; then a big frame that
            // does not fit at the tail wraps, leaving the small frames between
            // the tail and the end intact but dropped.
            let mut i = 0u64;
            while i < 100 || (ring.state.tail as usize) < cap - 600 {
                ring.append(1, i, &payload(i, 8)).unwrap();
                i += 1;
            }
            ring.append(1, i, &payload(i, 900)).unwrap();
            for j in 1..5 {
                ring.append(1, i + j, &payload(i + j, 8)).unwrap();
            }
            let bytes = std::fs::read(&path).unwrap();
            let data = &bytes[PAGE..];
            let info = ring.info();
            // The image does hold intact frames from before the last wraps.
            let stale = if compact {
                let markers =
                    (0..cap).step_by(8).filter(|&p| frame::compact_body_len(&data[p..]).is_some()).count();
                markers.saturating_sub((info.next_seq - info.oldest_seq) as usize)
            } else {
                (0..cap)
                    .step_by(8)
                    .filter_map(|p| super::super::frame::decode(data, p).ok())
                    .filter(|f| f.header.kind != KIND_WRAP && f.header.seq < info.oldest_seq)
                    .count()
            };
            assert!(stale > 0, "test needs stale frames in the image (compact: {compact})");
            let snap = Snapshot::from_bytes(bytes.clone()).unwrap();
            let seqs: Vec<u64> = snap.frames().map(|f| f.seq).collect();
            let want: Vec<u64> = (info.oldest_seq..info.next_seq).collect();
            assert_eq!(seqs, want);
            let scan = snap.scan();
            assert!(scan.problems.is_empty(), "{:?}", scan.problems);
            assert_eq!(scan.frames.len(), want.len());
        }
    }

    #[test]
    fn reopen_keeps_records_and_counts_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let mut model = Model::new(8192);
        {
            let mut ring = Ring::open_or_create(&path, 4096 + 8192).unwrap();
            for i in 0..50u64 {
                let p = payload(i, 300);
                ring.append(2, i, &p).unwrap();
                model.append(2, i, &p);
            }
        }
        // The size argument is ignored for an existing ring.
        let mut ring = Ring::open_or_create(&path, 4096 + 1024 * 1024).unwrap();
        assert_eq!(ring.info().capacity_bytes, 8192);
        assert_eq!(ring.info().opens, 2);
        let rec = ring.recovery();
        assert!(!rec.created && !rec.torn_tail);
        assert_eq!(rec.chain_next_seq, 51);
        assert_eq!(rec.header_next_seq, 51);
        model.check(&ring);
        for i in 50..80u64 {
            let p = payload(i, 200);
            assert_eq!(ring.append(2, i, &p).unwrap(), model.append(2, i, &p));
        }
        model.check(&ring);
        drop(ring);
        let ring = Ring::open_or_create(&path, 0).unwrap();
        assert_eq!(ring.info().opens, 3);
        model.check(&ring);
    }

    #[test]
    fn second_writer_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let first = Ring::open_or_create(&path, 4096 + 4096).unwrap();
        match Ring::open_or_create(&path, 4096 + 4096) {
            Err(Error::Locked { path: p }) => assert_eq!(p, path),
            other => panic!("expected Locked, got {other:?}"),
        }
        // Readers need no lock.
        assert_eq!(Snapshot::read(&path).unwrap().info(), first.info());
        drop(first);
        let second = Ring::open_or_create(&path, 4096 + 4096).unwrap();
        assert_eq!(second.info().opens, 2);
    }

    #[test]
    fn refuses_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        for size in [0, 4096, 4096 + 255, 4096 + 1001] {
            assert!(matches!(Ring::open_or_create(&path, size), Err(Error::BadSize { .. })));
            assert!(!path.exists(), "no half-made ring after a bad size");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no staging file left behind");
        }
        let mut ring = Ring::open_or_create(&path, 4096 + 1024).unwrap();
        assert_eq!(ring.path(), path);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only ring.bin once created");
        assert_eq!(ring.max_payload(), 472);
        assert!(matches!(ring.append(KIND_WRAP, 0, b"x"), Err(Error::ReservedKind { kind: KIND_WRAP, .. })));
        assert!(matches!(ring.append(1, 0, &[0; 473]), Err(Error::TooLarge { len: 473, max: 472, .. })));
        for seq in 1..=3 {
            assert_eq!(ring.append(1, 0, &[seq as u8; 472]).unwrap(), seq);
        }
        assert_eq!(ring.info().oldest_seq, 2);
        let msg = ring.append(1, 0, &[0; 473]).unwrap_err().to_string();
        assert!(msg.contains("too large") && msg.contains("ring.bin"), "{msg}");
        drop(ring);

        // Not a ring: refused, and left alone.
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, vec![b'x'; 9000]).unwrap();
        match Ring::open_or_create(&other, 4096 + 1024) {
            Err(Error::Header { source: crate::journal::HeaderError::Magic, .. }) => {}
            r => panic!("expected bad magic, got {r:?}"),
        }
        assert_eq!(std::fs::read(&other).unwrap(), vec![b'x'; 9000]);

        // A future version is refused.
        let mut bytes = std::fs::read(&path).unwrap();
        for off in SLOT_OFFSETS {
            let mut s: HeaderSlot = bytemuck::pod_read_unaligned(&bytes[off..off + SLOT_SIZE]);
            s.version = VERSION + 1;
            s.crc = s.compute_crc();
            bytes[off..off + SLOT_SIZE].copy_from_slice(bytemuck::bytes_of(&s));
        }
        std::fs::write(&path, &bytes).unwrap();
        match Ring::open_or_create(&path, 0) {
            Err(e @ Error::Header { .. }) => {
                let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
                assert!(chain.contains(&format!("version {}", VERSION + 1)), "{chain}");
            }
            r => panic!("expected version error, got {r:?}"),
        }
    }

    #[test]
    fn unfinished_creation_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        // A creation that died after allocating but before the header.
        std::fs::write(&path, vec![0u8; 4096 + 2048]).unwrap();
        let mut ring = Ring::open_or_create(&path, 4096 + 1024).unwrap();
        assert!(ring.recovery().created);
        assert_eq!(ring.info().capacity_bytes, 1024);
        assert_eq!(ring.append(1, 1, b"a").unwrap(), 1);
    }

    /// Image of a ring after `n` records of ~`len` bytes, plus the image
    /// just before the last one and where that last frame went.
    fn before_and_after(cap: usize, n: u64, len: usize) -> (Vec<u8>, Vec<u8>, Vec<Rec>, usize, Rec) {
        before_and_after_of(6, cap, n, len)
    }

    /// [`before_and_after`] with records of `kind`.
    fn before_and_after_of(
        kind: u16,
        cap: usize,
        n: u64,
        len: usize,
    ) -> (Vec<u8>, Vec<u8>, Vec<Rec>, usize, Rec) {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let mut ring = full_frames_ring(&path, cap);
        let mut model = Model::full_frames(cap);
        for i in 1..n {
            let p = payload(i, len + (i as usize % 3) * 8);
            ring.append(kind, i, &p).unwrap();
            model.append(kind, i, &p);
        }
        let before = std::fs::read(&path).unwrap();
        let earlier = model.records();
        let tail = ring.state.tail as usize;
        let pos = if tail + frame_len(len as u64).unwrap() as usize > cap { 0 } else { tail };
        // Every payload byte differs from what was there before.
        let p: Vec<u8> = (0..len).map(|i| !before[PAGE + pos + HDR + i]).collect();
        ring.append(kind, n, &p).unwrap();
        let after = std::fs::read(&path).unwrap();
        let last = Rec { seq: n, kind, time_us: n, payload: p };
        (before, after, earlier, pos, last)
    }

    /// RELIABILITY J5, a power cut as SQLite's crash tests model one: after
    /// a [`Ring::flush`] (`MS_SYNC`), more records are appended and never
    /// synced; then the power goes. Each 512-byte sector of the file holds
    /// either its synced bytes or its newest ones, independently of the
    /// others. Every such image must read as records that were written
    /// (no garbage accepted), in order, holding every synced record (the
    /// appends after the sync stay inside the data area, so none of them
    /// overwrites a synced record).
    #[test]
    fn j5_power_cut_loses_no_synced_record_and_accepts_no_garbage() {
        const SECTOR: usize = 512;
        const IMAGES: usize = 10_000;
        let started = std::time::Instant::now();
        let mut rng = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut images = 0;
        // (records before the sync, records after it)
        let rounds = [(1, 1), (3, 20), (20, 3), (12, 12), (40, 30)];
        for (round, &(synced, unsynced)) in rounds.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let path = ring_path(&dir);
            let mut ring = Ring::open_or_create(&path, (PAGE + 65536) as u64).unwrap();
            let mut written = std::collections::BTreeMap::new();
            let mut append = |ring: &mut Ring, i: u64| {
                let p = payload(i * 31 + round as u64, 1 + (i as usize * 97) % 700);
                let seq = ring.append(3, i, &p).unwrap();
                written.insert(seq, Rec { seq, kind: 3, time_us: i, payload: p });
            };
            for i in 0..synced {
                append(&mut ring, i);
            }
            ring.flush().unwrap();
            let on_disk = std::fs::read(&path).unwrap();
            for i in synced..synced + unsynced {
                append(&mut ring, i);
            }
            let newest = std::fs::read(&path).unwrap();
            assert_eq!(ring.info().oldest_seq, 1, "no record was dropped: the test needs no wrap");
            let per_round = IMAGES / rounds.len();
            for n in 0..per_round {
                // From all-synced to all-newest, through every mixture.
                let keep_new = (n * 100 / per_round) as u64;
                let mut image = on_disk.clone();
                for (at, sector) in newest.chunks(SECTOR).enumerate() {
                    if next() % 100 < keep_new {
                        image[at * SECTOR..at * SECTOR + sector.len()].copy_from_slice(sector);
                    }
                }
                let snap = Snapshot::from_bytes(image).expect("a usable header survives");
                let got = recs(&snap);
                for (k, rec) in got.iter().enumerate() {
                    assert_eq!(Some(rec), written.get(&rec.seq), "round {round} image {n}: garbage accepted");
                    assert_eq!(rec.seq, k as u64 + 1, "in order, from the first");
                }
                assert!(got.len() >= synced as usize, "round {round} image {n}: a synced record was lost");
                images += 1;
            }
        }
        eprintln!(
            "J5: {images} power-cut images in {:?}, 0 synced records lost, 0 garbage",
            started.elapsed()
        );
    }

    /// The last record (of `kind`, `len` payload bytes, the `n`th in a ring
    /// of `cap` bytes) cut after each of `cuts(frame_len)` bytes, written
    /// header first or payload first, over three fills of what the frame
    /// covers: old bytes (stale records), zeros, random. Every image must
    /// read as exactly the earlier records, plus the last one only when its
    /// bytes are all there, with no damage reported. Returns the number of
    /// images read.
    fn torn_sweep(kind: u16, cap: usize, n: u64, len: usize, cuts: &dyn Fn(usize) -> Vec<usize>) -> usize {
        let (before, after, earlier, pos, last) = before_and_after_of(kind, cap, n, len);
        let flen = frame_len(len as u64).unwrap() as usize;
        let covered = HDR + len;
        let frame = PAGE + pos..PAGE + pos + flen;
        // Records that survive step 1 (drops) of the last append.
        let survivors: Vec<Rec> =
            recs(&Snapshot::from_bytes(after.clone()).unwrap()).into_iter().filter(|r| r.seq < n).collect();
        assert!(earlier.ends_with(&survivors));
        let mut images = 0;
        for fill in 0..3 {
            // Header page after step 1 of the append: new head, old
            // next_seq, in a newer slot. Data: wrap marker (if any) in
            // place, the frame's bytes as before, or zeros, or random.
            let (active_slot, active) = select_header(&after).unwrap();
            let mut s = active_slot;
            s.next_seq = n;
            s.generation += 1;
            s.crc = s.compute_crc();
            let mut img = after.clone();
            let off = SLOT_OFFSETS[1 - active];
            img[off..off + SLOT_SIZE].copy_from_slice(bytemuck::bytes_of(&s));
            match fill {
                0 => img[frame.clone()].copy_from_slice(&before[frame.clone()]),
                1 => img[frame.clone()].fill(0),
                _ => img[frame.clone()].copy_from_slice(&payload(pos as u64, flen)),
            }
            let base = img;
            for b in cuts(flen) {
                for header_first in [true, false] {
                    let mut img = base.clone();
                    let range = if header_first {
                        frame.start..frame.start + b
                    } else {
                        // Payload first, then the header.
                        let body = frame.start + HDR..frame.end;
                        if b <= body.len() {
                            body.start..body.start + b
                        } else {
                            img[body.clone()].copy_from_slice(&after[body]);
                            frame.start..frame.start + (b - (flen - HDR))
                        }
                    };
                    img[range.clone()].copy_from_slice(&after[range]);
                    // Bytes outside the CRC (padding) or equal to the
                    // old ones may make the frame whole before the cut.
                    let whole = frame.start..frame.start + covered;
                    let complete = img[whole.clone()] == after[whole];
                    assert!(complete || b < flen);
                    let snap = Snapshot::from_bytes(img).unwrap();
                    let got = recs(&snap);
                    let mut want = survivors.clone();
                    if complete {
                        want.push(last.clone());
                    }
                    assert!(
                        got == want,
                        "cap {cap} len {len} fill {fill} cut {b}: got seqs {:?}, want {:?}",
                        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
                        want.iter().map(|r| r.seq).collect::<Vec<_>>()
                    );
                    let scan = snap.scan();
                    assert!(scan.problems.is_empty(), "{:?}", scan.problems);
                    images += 1;
                }
            }
        }
        images
    }

    /// The last record cut after every byte, written header first or
    /// payload first, over three fills: old bytes, zeros, random.
    #[test]
    fn torn_last_record_is_ignored_at_every_cut() {
        let every = |flen: usize| (0..=flen).collect::<Vec<_>>();
        for (cap, n, len) in [(4096, 40, 0), (4096, 40, 64), (4096, 9, 1000), (16384, 30, 4095)] {
            torn_sweep(6, cap, n, len, &every);
        }
    }

    /// J1 (RELIABILITY.md) for the sizes the small sweep above leaves out:
    /// a 4097-byte payload cut at every byte; 64 KiB and 1 MiB payloads cut
    /// at every page boundary ±1 and at random points (4,096 of them with
    /// `MONITORD_LONG=1`, tier 3; fewer by default); each size with another
    /// record kind. 0 torn records accepted, 0 panics.
    #[test]
    fn j1_torn_large_records_at_page_boundaries_and_random_cuts() {
        let long = std::env::var_os("MONITORD_LONG").is_some_and(|v| v == "1");
        let started = std::time::Instant::now();
        let every = |flen: usize| (0..=flen).collect::<Vec<_>>();
        // Every `pages`-th page boundary ±1, the header's edges, the end
        // and `random` points.
        let sampled = |pages: usize, random: usize| {
            move |flen: usize| {
                let mut cuts: Vec<usize> = (0..=flen.div_ceil(4096))
                    .step_by(pages)
                    .flat_map(|page| {
                        let at = page * 4096;
                        [at.saturating_sub(1), at, at + 1]
                    })
                    .chain([HDR - 1, HDR, HDR + 1, flen - 1, flen])
                    .chain(
                        payload(flen as u64, random * 4)
                            .chunks(4)
                            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize % (flen + 1)),
                    )
                    .filter(|&b| b <= flen)
                    .collect();
                cuts.sort_unstable();
                cuts.dedup();
                cuts
            }
        };
        let mut images = torn_sweep(1, 16384, 12, 4097, &every);
        eprintln!("J1: 4097 B: {images} images, {:?}", started.elapsed());
        let (pages, random) = if long { (1, 4096) } else { (1, 128) };
        images += torn_sweep(2, 4 * 65536, 9, 65536, &sampled(pages, random));
        eprintln!("J1: + 64 KiB: {images} images, {:?}", started.elapsed());
        let (pages, random) = if long { (1, 4096) } else { (32, 8) };
        images += torn_sweep(3, 2 * 1024 * 1024 + 65536, 3, 1024 * 1024, &sampled(pages, random));
        eprintln!("J1: + 1 MiB: {images} torn images read in {:?}", started.elapsed());
    }

    #[test]
    fn open_recovers_after_torn_append() {
        let (_, after, _, pos, last) = before_and_after(4096, 20, 200);
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        for cut in [1, HDR - 1, HDR, HDR + 100, HDR + 199] {
            let mut img = after.clone();
            // The header still says the last record is not there...
            let snap = Snapshot::from_bytes(after.clone()).unwrap();
            let prior: Vec<Rec> = recs(&snap).into_iter().filter(|r| r.seq < last.seq).collect();
            // ...and its frame is cut after `cut` bytes (rest zero).
            img[PAGE + pos + cut..PAGE + pos + HDR + 200].fill(0);
            std::fs::write(&path, &img).unwrap();
            let mut ring = Ring::open_or_create(&path, 0).unwrap();
            let rec = ring.recovery();
            assert_eq!(rec.chain_next_seq, last.seq, "cut {cut}");
            assert_eq!(rec.torn_tail, cut >= 24, "cut {cut}");
            assert_eq!(ring.info().next_seq, last.seq);
            assert_eq!(ring.append(9, 1, b"next").unwrap(), last.seq);
            let got = recs(&Snapshot::read(&path).unwrap());
            let (newest, older) = got.split_last().unwrap();
            assert_eq!(newest.payload, b"next");
            assert!(prior.ends_with(older), "cut {cut}");
            assert_eq!(older.last().map(|r| r.seq), Some(last.seq - 1));
        }
    }

    /// A record like an idle sample's: the same bytes each time but for a
    /// counter or two that move now and then (CPU time, RSS).
    pub(crate) fn idle_payload(i: u64) -> Vec<u8> {
        let mut p = vec![4, 1, 0xa4, 0x8d, 0x02, 1, 0, 0, 0, 0, 1];
        p.extend_from_slice(&(i / 7).to_le_bytes()[..2]);
        p.extend_from_slice(&[3, 0x80, 0x9c, 0x01]);
        p.extend_from_slice(&(i / 50).to_le_bytes()[..3]);
        p.extend_from_slice(&[0xc8, 0xa2, 0x05, 1, 4, 0]);
        p
    }

    /// Idle records round a small ring many times: each is a compact
    /// frame of at most 24 bytes but for a full one every
    /// `COMPACT_MAX_RUN + 1`, the model says where every frame goes, and
    /// every reader (walk, scan, follower) gives back each record as it
    /// was appended.
    #[test]
    fn idle_records_are_compact_frames_that_every_reader_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let cap = 8192;
        let mut ring = Ring::open_or_create(&path, (PAGE + cap) as u64).unwrap();
        let mut model = Model::new(cap);
        let mut follower =
            super::super::follow::Follower::open(&path, super::super::follow::Start::Oldest).unwrap();
        let mut followed = Vec::new();
        let mut time = 1_000_000u64;
        for i in 0..5_000u64 {
            // A sample period with some jitter, and now and then a record
            // of another kind or a big one in between.
            time += 100_000 + (i * 7919) % 3_000;
            let (kind, p) = match i % 701 {
                300 => (5, payload(i, 60)),
                600 => (2, payload(i, 2_000)),
                _ => (2, idle_payload(i)),
            };
            assert_eq!(ring.append(kind, time, &p).unwrap(), model.append(kind, time, &p));
            if i % 13 == 0 {
                while let Some(step) = follower.poll().unwrap() {
                    followed.push(step);
                }
            }
            if i % 97 == 0 {
                model.check(&ring);
            }
        }
        model.check(&ring);
        let compact: Vec<usize> = model.live.iter().filter(|l| l.3).map(|l| l.2).collect();
        let full = model.live.len() - compact.len();
        assert!(compact.iter().all(|&l| l <= 24), "compact frames of {:?} bytes", compact.iter().max());
        assert!(compact.len() > 40 * full, "{} compact, {full} full", compact.len());
        let per_idle = model
            .live
            .iter()
            .filter(|l| l.0.kind == 2 && l.0.payload.len() < 100)
            .map(|l| l.2)
            .sum::<usize>() as f64
            / model.live.iter().filter(|l| l.0.kind == 2 && l.0.payload.len() < 100).count() as f64;
        assert!(per_idle <= 24.0, "{per_idle:.1} bytes per idle record");
        // The scan agrees with the walk.
        let snap = Snapshot::read(&path).unwrap();
        let scan = snap.scan();
        assert!(scan.problems.is_empty(), "{:?}", scan.problems);
        assert_eq!(scan.frames, snap.frames().collect::<Vec<_>>());
        // The follower saw every record, in order, across gaps.
        while let Some(step) = follower.poll().unwrap() {
            followed.push(step);
        }
        let mut last = 0;
        for step in &followed {
            if let super::super::follow::Step::Record(r) = step {
                assert_eq!(
                    r.payload,
                    if r.kind == 2 && r.payload.len() < 100 {
                        idle_payload(r.seq - 1)
                    } else {
                        r.payload.clone()
                    }
                );
                assert!(r.seq > last);
                last = r.seq;
            }
        }
        assert_eq!(last, 5_000);
        // A follower that starts at a compact frame rebuilds it.
        let newest = ring.info().next_seq - 1;
        let mut late =
            super::super::follow::Follower::open(&path, super::super::follow::Start::Seq(newest - 3))
                .unwrap();
        let got: Vec<_> = std::iter::from_fn(|| late.poll().unwrap()).collect();
        let want: Vec<_> = recs(&snap).into_iter().filter(|r| r.seq >= newest - 3).collect();
        assert_eq!(got.len(), 4);
        for (step, rec) in got.iter().zip(&want) {
            let super::super::follow::Step::Record(r) = step else { panic!("{step:?}") };
            assert_eq!(
                (r.seq, r.kind, r.time_us, &r.payload),
                (rec.seq, rec.kind, rec.time_us, &rec.payload)
            );
        }
    }

    /// A compact frame cut after each of its bytes, written body first (as
    /// the writer does) or head first, over stale bytes or zeros: the
    /// records before it always read, it reads only when whole, and
    /// nothing is damage.
    #[test]
    fn a_torn_compact_frame_is_never_returned() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_path(&dir);
        let cap = 4096;
        let mut ring = Ring::open_or_create(&path, (PAGE + cap) as u64).unwrap();
        let mut time = 0;
        for i in 0..300u64 {
            time += 100_000;
            ring.append(2, time, &idle_payload(i)).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let earlier = recs(&Snapshot::from_bytes(before.clone()).unwrap());
        let pos = ring.state.tail as usize;
        ring.append(2, time + 100_000, &idle_payload(300)).unwrap();
        let after = std::fs::read(&path).unwrap();
        let flen = ring.state.tail as usize - pos;
        assert!(flen <= 24 && frame::compact_body_len(&after[PAGE + pos..]).is_some(), "the last is compact");
        let complete = recs(&Snapshot::from_bytes(after.clone()).unwrap());
        assert_eq!(complete.last().map(|r| r.seq), Some(earlier.last().unwrap().seq + 1));
        for zeros in [false, true] {
            for head_first in [false, true] {
                for cut in 0..flen {
                    let mut image = after.clone();
                    // The header page as before the append (its commit is last).
                    image[..PAGE].copy_from_slice(&before[..PAGE]);
                    let frame = PAGE + pos..PAGE + pos + flen;
                    let order: Vec<usize> = if head_first {
                        frame.clone().collect()
                    } else {
                        (frame.start + COMPACT_HEAD..frame.end)
                            .chain(frame.start..frame.start + COMPACT_HEAD)
                            .collect()
                    };
                    for &at in &order[cut..] {
                        image[at] = if zeros { 0 } else { before[at] };
                    }
                    let snap = Snapshot::from_bytes(image).unwrap();
                    let got = recs(&snap);
                    assert!(
                        got == earlier || got == complete,
                        "cut {cut} head_first {head_first}: {} records",
                        got.len()
                    );
                    let scan = snap.scan();
                    assert!(scan.problems.is_empty(), "cut {cut}: {:?}", scan.problems);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random appends (sizes from 0 to the maximum) round-trip against
        /// the model, across reopens.
        #[test]
        fn random_appends_match_model(
            cap_units in 32usize..600,
            ops in proptest::collection::vec(
                (0u16..3, 0usize..=100, proptest::bool::weighted(0.05), proptest::bool::weighted(0.7)),
                1..400,
            ),
        ) {
            let cap = cap_units * 8;
            let dir = tempfile::tempdir().unwrap();
            let path = ring_path(&dir);
            let mut ring = Ring::open_or_create(&path, (PAGE + cap) as u64).unwrap();
            let max = ring.max_payload();
            let mut model = Model::new(cap);
            for (i, (kind, pct, reopen, idle)) in ops.into_iter().enumerate() {
                let p = if idle { idle_payload(i as u64) } else { payload(i as u64, max * pct / 100) };
                prop_assert_eq!(ring.append(kind, i as u64, &p).unwrap(), model.append(kind, i as u64, &p));
                if reopen {
                    drop(ring);
                    ring = Ring::open_or_create(&path, 0).unwrap();
                    model.reopened();
                }
            }
            model.check(&ring);
            let snap = Snapshot::read(&path).unwrap();
            let scan = snap.scan();
            prop_assert!(scan.problems.is_empty() && !scan.torn_tail, "{:?} torn {}", scan.problems, scan.torn_tail);
        }
    }
}
