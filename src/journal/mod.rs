//! ring.bin: the mmap'd ring-buffer journal.
//!
//! One writer ([`Ring`]) appends records into a fixed-size file; when it is
//! full the oldest records are dropped. Readers ([`Snapshot`]) copy the file
//! and follow the chain of checksummed frames. This doc is the format
//! specification; the tests quote it, so change both together.
//!
//! # File layout
//!
//! All integers are **little-endian**. The file is a 4096-byte header page
//! followed by the data area:
//!
//! ```text
//! offset 0      header slot A (104 bytes)
//! offset 2048   header slot B (104 bytes)
//! offset 4096   data area, `capacity` bytes (file size = 4096 + capacity)
//! ```
//!
//! The rest of the header page is zero. `capacity` is a multiple of 8 and at
//! least 256. The file never changes size after creation.
//!
//! ## Header slot ([`layout::HeaderSlot`], 104 bytes)
//!
//! | off | type | field | meaning |
//! |----:|------|-------|---------|
//! | 0 | `[u8; 8]` | magic | `b"MONRING\0"` |
//! | 8 | u32 | version | 3 (1 for rings created by the first release, 2 before compact frames) |
//! | 12 | u32 | header_size | 4096 |
//! | 16 | u64 | capacity | data area size in bytes |
//! | 24 | u64 | generation | +1 on every header write |
//! | 32 | u64 | head | data offset of the oldest live frame |
//! | 40 | u64 | tail | data offset where the next frame goes (hint) |
//! | 48 | u64 | oldest_seq | seq of the record at `head` (== `next_seq` when empty) |
//! | 56 | u64 | next_seq | seq the next record gets (hint); the first record is 1 |
//! | 64 | u64 | used_bytes | bytes held by live frames, wrap waste included |
//! | 72 | u64 | dropped_records | records dropped by wrap-around, ever |
//! | 80 | u64 | opens | times a writer opened the ring (1 after creation) |
//! | 88 | u64 | created_us | creation time, µs since the Unix epoch |
//! | 96 | u32 | reserved | 0 |
//! | 100 | u32 | crc | CRC32C (Castagnoli) of bytes 0..100 of this slot |
//!
//! There are two slots so that a header write cut short (a crash in the
//! middle of the ~100 byte store) never leaves the ring without a header.
//! The writer writes generation `g` to slot `g % 2`, so the two slots hold
//! the two latest header states. A reader uses the slot whose magic and CRC
//! are good, whose version is 1 to 3, whose fields are consistent (head and tail
//! below capacity and 8-aligned, `1 <= oldest_seq <= next_seq`,
//! `used_bytes <= capacity`) and whose `capacity` matches the file size;
//! if both qualify, the larger generation wins. No usable slot means the
//! file is not a usable ring ([`HeaderError`]).
//!
//! The header is a *hint* written after each commit. Readers trust only
//! `head` and `oldest_seq` (where the chain starts); everything else is
//! found by following the chain.
//!
//! ## Frame ([`layout::FrameHeader`], 40 bytes + payload)
//!
//! Every frame starts at a data offset that is a multiple of 8:
//!
//! | off | type | field | meaning |
//! |----:|------|-------|---------|
//! | 0 | u32 | marker | `b"MFRM"` |
//! | 4 | u16 | kind | the caller's kind; `0xFFFF` = wrap marker |
//! | 6 | u16 | flags | bit 0 (`FLAG_ZSTD`): the payload is compressed; other bits 0 |
//! | 8 | u32 | payload_len | payload bytes that follow the header |
//! | 12 | u32 | crc | CRC32C of the 40-byte header with `crc` = 0, then the payload |
//! | 16 | u64 | seq | record sequence number |
//! | 24 | u64 | time_us | the caller's time, µs |
//! | 32 | u32 | prev_crc | `crc` of the frame written just before (0 if none) |
//! | 36 | u32 | reserved | 0 |
//!
//! The payload follows, padded with zeros to a multiple of 8; the padding is
//! not covered by the CRC. `payload_len` and the CRC are those of the
//! bytes stored.
//!
//! ### Compressed payloads
//!
//! A record of at least 512 bytes (a baseline's listing, a big patch) is
//! stored compressed when that is smaller: the frame has `FLAG_ZSTD` set
//! and its payload is the record's length (u32) followed by one zstd
//! stream of the record. Readers inflate it in the one frame decoder, to
//! exactly that length and never more; a length beyond the data area's
//! size, or a stream that does not inflate to it (cut short, damaged, a
//! bomb), ends the chain like a bad frame. A frame with a flag bit this
//! version does not know is refused, never misread.
//!
//! The first release's reader ignored `flags`, so it would misread a
//! compressed frame: rings that may hold one are version 2, which that
//! reader refuses by name. Version 1 rings (every `flags` 0) still read,
//! and a writer opening one appends to it in version 1: never compressed. A frame never straddles the end of the data area.
//! `prev_crc` chains each frame to the one before it, so an intact but stale
//! frame that happens to carry the expected seq is still refused.
//!
//! The biggest record is the one whose frame takes at most `capacity / 2`
//! bytes ([`Ring::max_payload`]); bigger ones are refused with
//! [`Error::TooLarge`], so one record can never wipe the whole history.
//!
//! ### Compact frames
//!
//! Most records of an idle process are the record before them with a
//! later time and a counter or two moved (CPU time, RSS). In a version 3
//! ring such a record is a *compact frame*, at most 40 bytes and usually
//! 16, holding only what changed:
//!
//! | off | type | field | meaning |
//! |----:|------|-------|---------|
//! | 0 | u16 | marker | `b"Mc"` |
//! | 2 | u8 | body_len | bytes of body that follow the head, at most 32 |
//! | 3 | u8 | reserved | 0 (anything else is refused) |
//! | 4 | u32 | crc | CRC32C of the `crc` of the frame written just before (u32), then bytes 0..4, then the body |
//! | 8 | | body | zigzag LEB128 of `time_us` minus the previous record's; LEB128 `prefix`; LEB128 `suffix`; the middle bytes |
//!
//! padded with zeros to a multiple of 8. The record it stands for has the
//! previous record's kind, the next seq, that time, and the payload
//! `previous[..prefix] + middle + previous[len - suffix..]`. A compact
//! frame is only written after a record of at most 1024 bytes of the same
//! kind, never as the first record after a writer opens the ring, never
//! more than 255 in a row, and never left at `head`: when the writer drops
//! the oldest record, it also drops the compact frames that follow it
//! (`head` always names a full frame). Its CRC starts from the CRC of the
//! frame before it, so it chains as `prev_crc` does; since its seq is only
//! implied, a compact frame that fails its CRC ends the chain but is never
//! reported as a torn frame (a stale one from an earlier lap and a cut one
//! look the same). A reader keeps the previous record (when it is at most
//! 1024 bytes) to rebuild the next; the scan after a break rebuilds
//! compact frames after each intact full frame it finds, so damage costs
//! at most the run of compact frames that grew from the damaged record.
//! Version 1 and 2 rings are appended to without compact frames.
//!
//! ## Wrap-around
//!
//! If a frame does not fit between `tail` and the end of the data area, or
//! fewer than 40 bytes are left there (where readers wrap), the writer
//! writes a *wrap marker* at `tail` when at least 40 bytes are left
//! (kind `0xFFFF`, no payload, `seq` = the seq of the record it precedes, its
//! own CRC and `prev_crc`), and puts the frame at offset 0. The bytes from
//! `tail` to the end are wrap waste, counted in `used_bytes`. A reader at an
//! offset with fewer than 40 bytes left, or at a valid wrap marker with the
//! expected seq, continues at offset 0.
//!
//! Before the writer puts a frame over `[tail, tail + len)` (plus the wrap
//! waste), it drops oldest frames from `head` until that much is free:
//! `head` moves past each dropped frame (to 0 past wrap waste or a wrap
//! marker), `oldest_seq` and `dropped_records` count the dropped records.
//!
//! ## Committing a record (what is written last)
//!
//! 1. If records must be dropped: write the header with the new `head`,
//!    `oldest_seq`, `dropped_records` (old `tail` and `next_seq`). From now
//!    on readers start after the bytes about to be overwritten.
//! 2. If wrapping: write the wrap marker at `tail`.
//! 3. Write the payload and its padding, then the 40-byte frame header.
//! 4. Commit: write the header with the new `tail`, `next_seq`, `used_bytes`.
//! 5. `flush_async_range` (MS_ASYNC) of the frame bytes and the header page.
//!
//! Each step is separated by a release fence so the stores reach the shared
//! page cache in this order.
//!
//! ## Reading: the chain
//!
//! A reader starts at the chosen header's `head`, expecting `oldest_seq`,
//! and accepts a frame only if its marker is right, its length stays inside
//! the data area, its CRC matches, its seq is exactly the expected one and
//! its `prev_crc` is the CRC of the frame before (not checked for the first
//! frame). It stops at the first frame that fails, and after walking
//! `capacity` bytes at most (loop guard). The header's `tail` and
//! `next_seq` are never trusted.
//!
//! Consequences:
//! - a torn or bad-CRC frame is treated **as if it never existed**, and so
//!   is everything after it on the chain ([`Snapshot::frames`]);
//!   [`Snapshot::scan`] reports such a break in the middle as damage and
//!   still returns the intact records after it;
//! - a stale frame left from before a wrap has a lower seq than the
//!   expected one (seqs only grow), so the chain stops there and it is never
//!   returned; old bytes after the newest frame end the chain;
//! - a torn frame at the very end of the chain (the writer died mid-append)
//!   is not damage: [`Scan::torn_tail`].
//!
//! ## Crash story (kill -9 at each step)
//!
//! Stores into a `MAP_SHARED` mapping are in the page cache the moment they
//! are made, so a killed process loses nothing it stored. At each step:
//!
//! - during a header write: that slot fails its CRC; the other slot holds
//!   the previous header state, which is still a valid chain start (step 1
//!   happens before any byte of a live frame is overwritten);
//! - after step 1, during 2 or 3: the header already points past the bytes
//!   being overwritten; the new frame is partial and fails its CRC (or still
//!   has the stale header of an older frame), so the chain ends at the
//!   previous record;
//! - after step 3, before or during step 4: the new frame is complete and
//!   valid, so it is on the chain even though the header's `next_seq` is
//!   one behind; readers follow the chain, so the record counts as
//!   committed.
//!
//! On open, the writer validates the header, walks the chain to find its
//! true end (a torn last frame is discarded and later overwritten),
//! continues `tail`/`next_seq` from there, and increments `opens`. If the
//! chain ends before the header's `next_seq - 1` (damage, not a torn tail),
//! the writer still continues from the chain's end; [`Ring::recovery`]
//! reports it.
//!
//! ## Durability
//!
//! - After every append: `flush_async_range` (MS_ASYNC, ~0.2 µs; on Linux
//!   this only marks the range, the kernel writes it back within about
//!   30 s).
//! - [`Ring::flush`] (clean shutdown) and `Drop`: `msync(MS_SYNC)` of the
//!   whole map.
//!
//! A `kill -9` of the writer loses no committed record. A power loss or
//! kernel crash may lose the records appended since the last
//! [`Ring::flush`], and because the kernel writes pages back in any order it
//! may also leave a header that points at overwritten frames; the CRC, seq
//! and `prev_crc` checks still keep every returned record intact, and
//! [`Snapshot::scan`] finds the intact records after any break.
//!
//! The file is created with mode 0600 and allocated in full with
//! `posix_fallocate`, so a full disk is an error at creation rather than a
//! SIGBUS later. The writer holds an exclusive `flock` on the file for its
//! whole life; readers take no lock.

use std::io;
use std::path::PathBuf;

pub mod follow;
mod frame;
pub mod layout;
mod reader;
pub mod record;
mod ring;

pub use reader::{Damage, Frame, HeaderStamp, Scan, Snapshot};
pub use ring::{Recovery, Ring};

/// The ring's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingInfo {
    /// Size of the data area in bytes.
    pub capacity_bytes: u64,
    /// Bytes held by live records (frame headers, padding and wrap waste
    /// included).
    pub used_bytes: u64,
    /// Seq of the oldest live record (== `next_seq` when empty).
    pub oldest_seq: u64,
    /// Seq the next append gets (the first record ever is seq 1).
    pub next_seq: u64,
    /// Records dropped by wrap-around over the ring's life.
    pub dropped_records: u64,
    /// How many times a writer opened this ring (1 after creation).
    pub opens: u64,
}

/// Why a file's header is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The file is shorter than the header page.
    #[error("file is {file_len} bytes, shorter than the 4096-byte header page")]
    Short {
        /// Length of the file.
        file_len: u64,
    },
    /// Neither slot starts with the magic.
    #[error("not a ring file (bad magic)")]
    Magic,
    /// A slot has the magic but no slot has a good checksum.
    #[error("no header copy has a good checksum")]
    Checksum,
    /// A slot with a good checksum has another format version.
    #[error("unsupported format version {found}")]
    Version {
        /// The version found.
        found: u32,
    },
    /// A slot with a good checksum has impossible fields.
    #[error("header fields are inconsistent")]
    Inconsistent,
    /// The header's capacity does not match the file's size.
    #[error("header says the data area is {capacity} bytes but the file is {file_len} bytes")]
    Size {
        /// Capacity from the header.
        capacity: u64,
        /// Length of the file.
        file_len: u64,
    },
}

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ring file could not be opened or created.
    #[error("cannot open ring {}", path.display())]
    Open {
        /// The ring file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another writer holds the ring's lock.
    #[error("ring {} is locked by another writer", path.display())]
    Locked {
        /// The ring file.
        path: PathBuf,
    },
    /// Taking the lock failed for another reason than contention.
    #[error("cannot lock ring {}", path.display())]
    Lock {
        /// The ring file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The requested size cannot hold a ring.
    #[error(
        "invalid size {size} bytes for ring {}: need a multiple of 8, at least {min}",
        path.display()
    )]
    BadSize {
        /// The ring file.
        path: PathBuf,
        /// The size asked for.
        size: u64,
        /// The smallest size accepted.
        min: u64,
    },
    /// Allocating the file's blocks failed (for example ENOSPC).
    #[error("cannot allocate {size} bytes for ring {}", path.display())]
    Allocate {
        /// The ring file.
        path: PathBuf,
        /// The size asked for.
        size: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Mapping the file failed.
    #[error("cannot map ring {}", path.display())]
    Map {
        /// The ring file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The path is not a regular file: opening a FIFO would wait for a
    /// writer, and a device never ends.
    #[error("{} is not a regular file ({kind}), so not a ring", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is, in words ("a FIFO", "a directory", ...).
        kind: &'static str,
    },
    /// Reading the file failed.
    #[error("cannot read ring {}", path.display())]
    Read {
        /// The ring file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing a record failed; the ring is unchanged. A record's bytes go
    /// to the shared mapping, which reports no errno (a failing disk shows
    /// at msync), so this is what an injected fault
    /// ([`crate::failpoint`], `ring.append`) returns.
    #[error("cannot write a record to ring {}", path.display())]
    Write {
        /// The ring file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// msync or fsync failed.
    #[error("cannot sync ring {}", path.display())]
    Sync {
        /// The ring file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file's header is not usable.
    #[error("ring {} has no usable header", path.display())]
    Header {
        /// The ring file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: HeaderError,
    },
    /// A file image given to [`Snapshot::from_bytes`] has no usable header.
    #[error("ring image has no usable header")]
    Image {
        /// What is wrong with it.
        #[source]
        source: HeaderError,
    },
    /// The record cannot fit in the ring.
    #[error(
        "record of {len} bytes is too large for ring {} (at most {max} bytes)",
        path.display()
    )]
    TooLarge {
        /// The ring file.
        path: PathBuf,
        /// The payload length.
        len: usize,
        /// The largest payload this ring takes.
        max: usize,
    },
    /// The kind is reserved for the ring's own frames.
    #[error("record kind {kind:#06x} is reserved in ring {}", path.display())]
    ReservedKind {
        /// The ring file.
        path: PathBuf,
        /// The kind given.
        kind: u16,
    },
    /// An internal invariant broke.
    #[error("ring {} broke an internal invariant ({what}); this is a bug", path.display())]
    Internal {
        /// The ring file.
        path: PathBuf,
        /// The invariant.
        what: String,
    },
}
