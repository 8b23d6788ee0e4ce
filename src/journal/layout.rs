//! The on-disk structs of ring.bin, checked at compile time.
//!
//! Both structs are `#[repr(C)]` and [`bytemuck::Pod`], with no implicit
//! padding. They are always read with [`bytemuck::pod_read_unaligned`] from a
//! bounds-checked slice, never cast in place, so a misaligned or short slice
//! can never panic or cause undefined behaviour. See the module doc of
//! [`crate::journal`] for what each field means.

use bytemuck::{Pod, Zeroable};

// ring.bin is little-endian and the structs below are stored in native byte
// order, so this code only builds where the two agree.
const _: () = assert!(cfg!(target_endian = "little"), "ring.bin is little-endian; this build target is not");

/// `magic` of a header slot.
pub const MAGIC: [u8; 8] = *b"MONRING\0";
/// The format version of the rings this code creates: 3, whose frames may
/// be compressed ([`FLAG_ZSTD`]) and may be compact ([`COMPACT_MARKER`]).
pub const VERSION: u32 = 3;
/// The first version whose frames may be compressed.
pub const VERSION_ZSTD: u32 = 2;
/// The first version whose records may be compact frames.
pub const VERSION_COMPACT: u32 = 3;
/// The oldest format version read and appended to: 1, the first
/// release's, whose frames are never compressed (a writer appending to
/// such a ring keeps to that).
pub const OLDEST_VERSION: u32 = 1;
/// Size of the header page in front of the data area.
pub const HEADER_PAGE: u64 = 4096;
/// Offset of header slot `i` (0 or 1) in the header page.
pub const SLOT_OFFSETS: [usize; 2] = [0, 2048];
/// Alignment of every frame in the data area.
pub const FRAME_ALIGN: u64 = 8;
/// `marker` of every frame header: the bytes `MFRM`.
pub const FRAME_MARKER: u32 = u32::from_le_bytes(*b"MFRM");
/// Frame flag: the payload is the record's length (u32) then the record
/// zstd-compressed.
pub const FLAG_ZSTD: u16 = 1;
/// Every frame flag this code reads; a frame with another bit set is
/// refused.
pub const KNOWN_FLAGS: u16 = FLAG_ZSTD;
/// The frame kind reserved for wrap markers.
pub const KIND_WRAP: u16 = u16::MAX;
/// `marker` of a compact frame: the bytes `Mc` (see the module doc of
/// [`crate::journal`]).
pub const COMPACT_MARKER: u16 = u16::from_le_bytes(*b"Mc");
/// Bytes of a compact frame's head: marker, body length, reserved, CRC.
pub const COMPACT_HEAD: usize = 8;
/// The longest body of a compact frame, so that one takes at most 40
/// bytes: a record that needs more is written as a full frame.
pub const COMPACT_MAX_BODY: usize = 32;
/// The longest record a compact frame may be written against: readers
/// keep a copy of the record before the one they read when it is this
/// short, and only then.
pub const COMPACT_BASE_MAX: usize = 1024;
/// At most this many compact frames follow a full frame, so that the
/// writer, which never leaves a compact frame at the head, drops at most
/// this many extra records when it drops the full frame they grew from.
pub const COMPACT_MAX_RUN: u32 = 255;
/// Smallest data area accepted when creating or reading a ring.
pub const MIN_CAPACITY: u64 = 256;

/// One copy of the file header (there are two, see the module doc).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct HeaderSlot {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`], or [`OLDEST_VERSION`] for a ring created by the first
    /// release.
    pub version: u32,
    /// Size of the header page, [`HEADER_PAGE`].
    pub header_size: u32,
    /// Size of the data area in bytes; the file is `header_size + capacity`.
    pub capacity: u64,
    /// Incremented on every header write; the valid slot with the larger
    /// generation is the current one.
    pub generation: u64,
    /// Offset in the data area of the oldest live frame.
    pub head: u64,
    /// Offset in the data area where the next frame goes (a hint).
    pub tail: u64,
    /// Seq of the frame at `head` (== `next_seq` when empty).
    pub oldest_seq: u64,
    /// Seq the next record gets (a hint: the chain is the truth).
    pub next_seq: u64,
    /// Bytes of the data area held by live frames, wrap waste included.
    pub used_bytes: u64,
    /// Records dropped by wrap-around over the ring's life.
    pub dropped_records: u64,
    /// How many times a writer opened the ring.
    pub opens: u64,
    /// Creation time, microseconds since the Unix epoch.
    pub created_us: u64,
    /// Zero.
    pub reserved: u32,
    /// CRC32C of the bytes of this slot before this field.
    pub crc: u32,
}

/// Size of [`HeaderSlot`].
pub const SLOT_SIZE: usize = 104;
const _: () = assert!(size_of::<HeaderSlot>() == SLOT_SIZE);
const _: () = assert!(SLOT_SIZE <= SLOT_OFFSETS[1] - SLOT_OFFSETS[0]);
const _: () = assert!(SLOT_OFFSETS[1] + SLOT_SIZE <= HEADER_PAGE as usize);
/// Offset of [`HeaderSlot::crc`]: the slot CRC covers `[0, SLOT_CRC_AT)`.
pub const SLOT_CRC_AT: usize = 100;
const _: () = assert!(std::mem::offset_of!(HeaderSlot, crc) == SLOT_CRC_AT);

impl HeaderSlot {
    /// The slot's CRC over the bytes before the `crc` field.
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(&bytemuck::bytes_of(self)[..SLOT_CRC_AT])
    }
}

/// The header in front of every frame in the data area.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct FrameHeader {
    /// [`FRAME_MARKER`].
    pub marker: u32,
    /// Record kind from the caller, or [`KIND_WRAP`].
    pub kind: u16,
    /// [`FLAG_ZSTD`] or zero; other bits are reserved.
    pub flags: u16,
    /// Length of the payload that follows this header (0 for a wrap marker).
    pub payload_len: u32,
    /// CRC32C over this header with `crc` set to zero, then the payload.
    pub crc: u32,
    /// Record sequence number (for a wrap marker: the seq it precedes).
    pub seq: u64,
    /// Record time from the caller, microseconds.
    pub time_us: u64,
    /// `crc` of the frame written just before this one (0 if none).
    pub prev_crc: u32,
    /// Zero.
    pub reserved: u32,
}

/// Size of [`FrameHeader`].
pub const FRAME_HEADER: u64 = 40;
const _: () = assert!(size_of::<FrameHeader>() as u64 == FRAME_HEADER);
const _: () = assert!(FRAME_HEADER.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(std::mem::offset_of!(FrameHeader, crc) == 12);

impl FrameHeader {
    /// The frame CRC: this header with `crc` zeroed, then `payload`.
    pub fn compute_crc(&self, payload: &[u8]) -> u32 {
        let mut h = *self;
        h.crc = 0;
        crc32c::crc32c_append(crc32c::crc32c(bytemuck::bytes_of(&h)), payload)
    }
}

/// Bytes a compact frame with a body of `body_len` bytes takes in the data
/// area (its head plus the body padded to [`FRAME_ALIGN`]).
pub const fn compact_len(body_len: usize) -> usize {
    COMPACT_HEAD + body_len.div_ceil(FRAME_ALIGN as usize) * FRAME_ALIGN as usize
}

/// Bytes a frame with `payload_len` bytes of payload takes in the data area
/// (header plus payload padded to [`FRAME_ALIGN`]), or `None` on overflow.
pub fn frame_len(payload_len: u64) -> Option<u64> {
    payload_len
        .checked_add(FRAME_ALIGN - 1)
        .map(|n| n & !(FRAME_ALIGN - 1))
        .and_then(|n| n.checked_add(FRAME_HEADER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_len_rounds_to_eight() {
        assert_eq!(frame_len(0), Some(40));
        assert_eq!(frame_len(1), Some(48));
        assert_eq!(frame_len(8), Some(48));
        assert_eq!(frame_len(9), Some(56));
        assert_eq!(frame_len(u64::MAX), None);
    }

    #[test]
    fn crc_ignores_crc_field() {
        let mut h = FrameHeader {
            marker: FRAME_MARKER,
            kind: 3,
            flags: 0,
            payload_len: 2,
            crc: 0,
            seq: 7,
            time_us: 9,
            prev_crc: 1,
            reserved: 0,
        };
        let a = h.compute_crc(b"hi");
        h.crc = a;
        assert_eq!(h.compute_crc(b"hi"), a);
        assert_ne!(h.compute_crc(b"ho"), a);
    }
}
