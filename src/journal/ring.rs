//! The single writer of ring.bin. See the module doc of [`crate::journal`]
//! for the format, the commit order and the crash story.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{Ordering, fence};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::MmapMut;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::layout::{
    FRAME_ALIGN, FRAME_HEADER, FRAME_MARKER, FrameHeader, HEADER_PAGE, HeaderSlot, KIND_WRAP, MAGIC,
    MIN_CAPACITY, SLOT_OFFSETS, SLOT_SIZE, VERSION, frame_len,
};
use super::reader::{Walker, select_header};
use super::{Error, RingInfo};

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
        if size < min || size % FRAME_ALIGN != 0 || usize::try_from(size).is_err() {
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
        };
        // Fill both slots so that either one alone is a valid header.
        ring.write_header();
        ring.write_header();
        ring.flush()?;
        sync_parent_dir(path).map_err(|source| Error::Sync { path: path.to_owned(), source })?;
        Ok(ring)
    }

    fn open_existing(file: Flock<File>, path: &Path, len: u64) -> Result<Ring, Error> {
        let map = map_file(&file, path)?;
        let (header, _) =
            select_header(&map).map_err(|source| Error::Header { path: path.to_owned(), source })?;
        let data = map.get(PAGE..).unwrap_or(&[]);
        let mut walk = Walker::new(data, &header);
        for _ in walk.by_ref() {}
        let end = walk.end();
        let torn_tail = end.why.expected_seq == end.next_seq
            && matches!(
                end.why.problem,
                super::reader::FrameProblem::BadCrc { seq }
                    | super::reader::FrameProblem::BadLength { seq }
                    if seq == end.next_seq
            );
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
        };
        ring.write_header();
        ring.map.flush_range(0, PAGE).map_err(|source| Error::Sync { path: path.to_owned(), source })?;
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
        let Some(flen) = frame_len(payload.len() as u64)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&l| l <= cap / 2 && u32::try_from(payload.len()).is_ok())
        else {
            return Err(Error::TooLarge {
                path: self.path.clone(),
                len: payload.len(),
                max: self.max_payload(),
            });
        };
        let seq = self.state.next_seq;
        let tail = self.state.tail as usize;
        let wraps = tail + flen > cap;
        let (pos, needed) = if wraps { (0, cap - tail + flen) } else { (tail, flen) };

        // Step 1: drop the oldest records and publish the new head before
        // any byte of them is overwritten.
        let mut dropped = false;
        while cap - self.used() < needed {
            self.drop_oldest()?;
            dropped = true;
        }
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

        // Step 3: payload and padding, then the frame header.
        let mut frame = FrameHeader {
            marker: FRAME_MARKER,
            kind,
            flags: 0,
            payload_len: payload.len() as u32,
            crc: 0,
            seq,
            time_us,
            prev_crc: self.last_crc,
            reserved: 0,
        };
        frame.crc = frame.compute_crc(payload);
        {
            let data = self.data_mut();
            let body = &mut data[pos + HDR..pos + flen];
            let (p, pad) = body.split_at_mut(payload.len());
            p.copy_from_slice(payload);
            pad.fill(0);
            fence(Ordering::Release);
            data[pos..pos + HDR].copy_from_slice(bytemuck::bytes_of(&frame));
        }
        fence(Ordering::Release);

        // Step 4: commit.
        self.last_crc = frame.crc;
        self.state.tail = if pos + flen == cap { 0 } else { (pos + flen) as u64 };
        self.state.next_seq = seq + 1;
        self.state.used_bytes += needed as u64;
        self.write_header();

        // Step 5: ask for write-back of what was touched.
        let mut ok = self.map.flush_async_range(PAGE + pos, flen).is_ok();
        if wraps {
            ok &= self.map.flush_async_range(PAGE + tail, cap - tail).is_ok();
        }
        ok &= self.map.flush_async_range(0, PAGE).is_ok();
        self.async_flush_failed |= !ok;
        Ok(seq)
    }

    /// msync the whole map synchronously (called on clean shutdown).
    pub fn flush(&self) -> Result<(), Error> {
        self.map.flush().map_err(|source| Error::Sync { path: self.path.clone(), source })
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
