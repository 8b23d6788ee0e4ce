//! What a valid frame is: the one set of checks every reader of ring.bin
//! applies to a frame (the chain walk and scan in [`super::reader`], the
//! writer's recovery in [`super::ring`], the follower in
//! [`super::follow`]).
//!
//! A frame is checked in two parts so that a reader holding only some of
//! the bytes (the follower reads a header, then its payload) applies the
//! same rules as one holding the whole data area:
//!
//! 1. [`Head::parse`]: the header's marker, and a payload length that stays
//!    inside the data area;
//! 2. [`Head::check`]: the CRC over header and payload, no flag this code
//!    does not know, no payload on a wrap marker, and the padded frame
//!    inside the data area;
//!
//! then [`payload`] gives the record's bytes: the stored payload itself,
//! or, for a frame flagged [`FLAG_ZSTD`], the stored bytes inflated
//! (bounded by the recorded length, itself at most the data area's size).
//!
//! [`decode`] does all three on a data area in memory. [`Link`] holds the chain
//! rules on top: the expected seq, `prev_crc`, no wrap marker at offset 0.
//!
//! A compact frame (an idle sample, say) holds only what changed from the
//! record before it: [`decode_after`] rebuilds it from that record, its
//! [`Base`], which every reader walking the chain keeps; [`compact_body`]
//! and [`compact_head`] are the writer's side. See the module doc of
//! [`crate::journal`] for the format.

use std::borrow::Cow;

use super::layout::{
    COMPACT_BASE_MAX, COMPACT_HEAD, COMPACT_MARKER, COMPACT_MAX_BODY, FLAG_ZSTD, FRAME_HEADER, FRAME_MARKER,
    FrameHeader, KIND_WRAP, KNOWN_FLAGS, compact_len, frame_len,
};

/// Bytes of a frame header, as a `usize`.
pub(crate) const HEADER_LEN: usize = FRAME_HEADER as usize;

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
    /// Intact, but with a flag bit this code does not know: written by a
    /// newer writer, so refused rather than misread.
    UnknownFlags { seq: u64, flags: u16 },
    /// Intact and flagged compressed, but its stored bytes do not inflate
    /// to the length they record (at most the data area's size).
    BadPayload { seq: u64 },
    /// The walk covered the whole data area.
    Loop,
    /// A compact frame where the record it was written against is not
    /// known (at the start of a walk, or after a long record).
    NoBase,
    /// A compact frame's CRC does not match. Its seq is only implied, so
    /// a compact frame left from an earlier lap cannot be told from one
    /// cut short: neither counts as a torn frame.
    BadCompact,
}

/// A frame header whose marker is right and whose payload fits in the data
/// area; its payload is not checked yet (see [`Head::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    /// The header as read.
    pub header: FrameHeader,
    /// Offset of the frame in the data area.
    pos: usize,
    /// Size of the data area.
    cap: usize,
}

impl Head {
    /// Decode the header in `raw` (at least [`HEADER_LEN`] bytes; more are
    /// ignored) of a frame at offset `pos` of a data area of `cap` bytes.
    ///
    /// Fails with [`FrameProblem::NoMarker`] when `raw` is short or has no
    /// marker, with [`FrameProblem::BadLength`] when the payload would run
    /// past `cap`.
    pub(crate) fn parse(raw: &[u8], pos: usize, cap: usize) -> Result<Head, FrameProblem> {
        let raw = raw.get(..HEADER_LEN).ok_or(FrameProblem::NoMarker)?;
        let header: FrameHeader = bytemuck::pod_read_unaligned(raw);
        if header.marker != FRAME_MARKER {
            return Err(FrameProblem::NoMarker);
        }
        pos.checked_add(HEADER_LEN)
            .and_then(|end| end.checked_add(header.payload_len as usize))
            .filter(|&end| end <= cap)
            .ok_or(FrameProblem::BadLength { seq: header.seq })?;
        Ok(Head { header, pos, cap })
    }

    /// Length of the payload that follows the header.
    pub(crate) fn payload_len(&self) -> usize {
        self.header.payload_len as usize
    }

    /// Check the frame with its `payload` (the [`Head::payload_len`] bytes
    /// after the header): the CRC, no payload on a wrap marker, the padded
    /// frame inside the data area. Returns the bytes the frame takes in the
    /// data area.
    pub(crate) fn check(&self, payload: &[u8]) -> Result<usize, FrameProblem> {
        let seq = self.header.seq;
        if payload.len() != self.payload_len() {
            return Err(FrameProblem::BadLength { seq });
        }
        if self.header.compute_crc(payload) != self.header.crc {
            return Err(FrameProblem::BadCrc { seq });
        }
        if self.header.flags & !KNOWN_FLAGS != 0 {
            return Err(FrameProblem::UnknownFlags { seq, flags: self.header.flags });
        }
        if self.header.kind == KIND_WRAP && (!payload.is_empty() || self.header.flags != 0) {
            return Err(FrameProblem::BadLength { seq });
        }
        frame_len(payload.len() as u64)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&l| self.pos.checked_add(l).is_some_and(|end| end <= self.cap))
            .ok_or(FrameProblem::BadLength { seq })
    }
}

/// The record bytes of a frame that passed [`Head::check`], from its
/// `stored` payload, in a data area of `cap` bytes: `stored` itself, or
/// inflated when the frame is flagged [`FLAG_ZSTD`] (stored bytes: the
/// record's length as a u32, then one zstd stream). A record longer than
/// the data area is refused before anything is inflated.
pub(crate) fn payload<'a>(
    header: &FrameHeader,
    stored: &'a [u8],
    cap: usize,
) -> Result<Cow<'a, [u8]>, FrameProblem> {
    if header.flags & FLAG_ZSTD == 0 {
        return Ok(Cow::Borrowed(stored));
    }
    let bad = FrameProblem::BadPayload { seq: header.seq };
    let (len, stream) = stored.split_first_chunk::<4>().ok_or(bad)?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > cap {
        return Err(bad);
    }
    crate::compress::inflate(stream, len as u64).map(Cow::Owned).map_err(|_| bad)
}

/// The stored payload of a record of `raw` bytes: compressed (and the
/// flags that say so) when it is at least [`COMPRESS_FROM`] bytes long and
/// compressing makes it smaller, else `raw` itself with no flag.
pub(crate) fn store<'a>(raw: &'a [u8], deflater: &mut crate::compress::Deflater) -> (Cow<'a, [u8]>, u16) {
    let Ok(len) = u32::try_from(raw.len()) else { return (Cow::Borrowed(raw), 0) };
    if raw.len() < COMPRESS_FROM {
        return (Cow::Borrowed(raw), 0);
    }
    match deflater.shrink(raw) {
        Some(packed) if packed.len() + 4 < raw.len() => {
            let mut stored = Vec::with_capacity(packed.len() + 4);
            stored.extend_from_slice(&len.to_le_bytes());
            stored.extend_from_slice(&packed);
            (Cow::Owned(stored), FLAG_ZSTD)
        }
        _ => (Cow::Borrowed(raw), 0),
    }
}

/// Records shorter than this are stored as they are: compressing a few
/// hundred bytes saves little and costs a sample's CPU.
pub(crate) const COMPRESS_FROM: usize = 512;

/// A frame that passed its own checks (marker, length, CRC, flags), with
/// its record's bytes.
#[derive(Clone, Debug)]
pub(crate) struct Parsed<'a> {
    pub header: FrameHeader,
    /// The record's bytes (inflated when the frame is compressed).
    pub payload: Cow<'a, [u8]>,
    /// Bytes the frame takes in the data area.
    pub len: usize,
    /// The record's length in bytes, rebuilt or not (without
    /// [`decode_after`]'s `inflate`, a long compressed record and every
    /// compact one are checked but not rebuilt: `payload` is then empty).
    pub record_len: usize,
}

/// Decode and check the frame at `pos` in `data` (the data area).
#[cfg(test)]
pub(crate) fn decode(data: &[u8], pos: usize) -> Result<Parsed<'_>, FrameProblem> {
    decode_full(data, pos, true)
}

/// [`decode`], inflating a compressed record only when `inflate` (or when
/// it is short enough to be the base of a compact frame); otherwise its
/// payload is left empty ([`Parsed::record_len`] says how long it is) once the length its zstd
/// frame declares matches the recorded one. A walk that only finds where
/// the chain ends needs no record's bytes.
fn decode_full(data: &[u8], pos: usize, inflate: bool) -> Result<Parsed<'_>, FrameProblem> {
    let hdr_end = pos.checked_add(HEADER_LEN).ok_or(FrameProblem::NoMarker)?;
    let raw = data.get(pos..hdr_end).ok_or(FrameProblem::NoMarker)?;
    let head = Head::parse(raw, pos, data.len())?;
    let stored = data
        .get(hdr_end..hdr_end + head.payload_len())
        .ok_or(FrameProblem::BadLength { seq: head.header.seq })?;
    let len = head.check(stored)?;
    if !inflate && head.header.flags & FLAG_ZSTD != 0 {
        let declared = stored.split_first_chunk::<4>().and_then(|(len, stream)| {
            let len = u64::from(u32::from_le_bytes(*len));
            (len > COMPACT_BASE_MAX as u64 && len <= data.len() as u64).then_some((len, stream))
        });
        if let Some((want, stream)) = declared {
            if crate::compress::declared_len(stream) != Some(want) {
                return Err(FrameProblem::BadPayload { seq: head.header.seq });
            }
            let record_len =
                usize::try_from(want).map_err(|_| FrameProblem::BadPayload { seq: head.header.seq })?;
            return Ok(Parsed { header: head.header, payload: Cow::Borrowed(&[]), len, record_len });
        }
    }
    let payload = payload(&head.header, stored, data.len())?;
    let record_len = payload.len();
    Ok(Parsed { header: head.header, payload, len, record_len })
}

/// The record before the frame being read: what a compact frame is
/// rebuilt from. Readers keep it only for records of at most
/// [`COMPACT_BASE_MAX`] bytes, as the writer writes compact frames only
/// after those.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Base {
    /// Its seq.
    pub seq: u64,
    /// Its kind.
    pub kind: u16,
    /// Its time.
    pub time_us: u64,
    /// Its record bytes (none when only its length is kept, see
    /// [`Base::keep_len`]).
    pub payload: Vec<u8>,
    /// Its record's length.
    pub len: usize,
}

impl Base {
    /// Make the record `seq` the base of the next frame in `slot`: kept
    /// when it is short enough, forgotten otherwise (its buffer is reused).
    pub(crate) fn keep(slot: &mut Option<Base>, seq: u64, kind: u16, time_us: u64, payload: &[u8]) {
        Base::keep_len(slot, seq, kind, time_us, payload.len());
        if let Some(base) = slot {
            base.payload.extend_from_slice(payload);
        }
    }

    /// [`Base::keep`] for a walk that checks frames without rebuilding
    /// records: only the record's length is kept, which is all a compact
    /// frame's checks need (its CRC does not cover the record it
    /// rebuilds).
    pub(crate) fn keep_len(slot: &mut Option<Base>, seq: u64, kind: u16, time_us: u64, len: usize) {
        if len > COMPACT_BASE_MAX {
            *slot = None;
            return;
        }
        let base = slot.get_or_insert_with(Base::default);
        base.seq = seq;
        base.kind = kind;
        base.time_us = time_us;
        base.payload.clear();
        base.len = len;
    }
}

/// The body length of the compact frame whose first bytes are `raw`, or
/// `None` when `raw` does not start with a compact frame's marker.
pub(crate) fn compact_body_len(raw: &[u8]) -> Option<usize> {
    match raw {
        [a, b, len, ..] if u16::from_le_bytes([*a, *b]) == COMPACT_MARKER => Some(usize::from(*len)),
        _ => None,
    }
}

/// The CRC of a compact frame: the CRC of the frame before it, then its
/// head's first four bytes, then its body.
fn compact_crc(prev_crc: u32, head: &[u8], body: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&prev_crc.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c_append(crc, &head[..4]), body)
}

/// The head of a compact frame with `body`, written after the frame whose
/// CRC is `prev_crc`; its CRC is the last four bytes.
pub(crate) fn compact_head(prev_crc: u32, body: &[u8]) -> [u8; COMPACT_HEAD] {
    let mut head = [0u8; COMPACT_HEAD];
    head[..2].copy_from_slice(&COMPACT_MARKER.to_le_bytes());
    // The writer keeps bodies to COMPACT_MAX_BODY bytes.
    head[2] = u8::try_from(body.len()).unwrap_or(u8::MAX);
    let crc = compact_crc(prev_crc, &head, body);
    head[4..].copy_from_slice(&crc.to_le_bytes());
    head
}

/// Write into `body` what a compact frame holding the record `payload`
/// at `time_us` after `base` carries: the time since the base (zigzag
/// LEB128), how many bytes of the base's record begin and end the new one
/// (LEB128 each), then the bytes in between. False (and `body` is then
/// garbage) when that is longer than [`COMPACT_MAX_BODY`].
pub(crate) fn compact_body(base: &Base, time_us: u64, payload: &[u8], body: &mut Vec<u8>) -> bool {
    let old = &base.payload[..];
    let prefix = old.iter().zip(payload).take_while(|(a, b)| a == b).count();
    let most = old.len().min(payload.len()) - prefix;
    let suffix = old.iter().rev().zip(payload.iter().rev()).take(most).take_while(|(a, b)| a == b).count();
    let middle = &payload[prefix..payload.len() - suffix];
    if middle.len() > COMPACT_MAX_BODY {
        return false;
    }
    body.clear();
    let delta = time_us.wrapping_sub(base.time_us) as i64;
    put_varint(body, ((delta << 1) ^ (delta >> 63)) as u64);
    put_varint(body, prefix as u64);
    put_varint(body, suffix as u64);
    body.extend_from_slice(middle);
    body.len() <= COMPACT_MAX_BODY
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The LEB128 value at the start of `bytes`, and what follows it.
fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        value |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// Decode and check the compact frame at `pos` of a data area of `cap`
/// bytes, given `raw` (its bytes from `pos`, at least the whole frame),
/// the CRC of the frame before it and the record it was written against.
pub(crate) fn decode_compact(
    raw: &[u8],
    pos: usize,
    cap: usize,
    prev_crc: Option<u32>,
    base: Option<&Base>,
    rebuild: bool,
) -> Result<Parsed<'static>, FrameProblem> {
    let body_len = compact_body_len(raw).ok_or(FrameProblem::NoMarker)?;
    let (Some(prev_crc), Some(base)) = (prev_crc, base) else { return Err(FrameProblem::NoBase) };
    let seq = base.seq.saturating_add(1);
    let len = compact_len(body_len);
    if body_len > COMPACT_MAX_BODY || pos.checked_add(len).is_none_or(|end| end > cap) {
        return Err(FrameProblem::BadLength { seq });
    }
    let (head, rest) = raw.split_at_checked(COMPACT_HEAD).ok_or(FrameProblem::BadLength { seq })?;
    let body = rest.get(..body_len).ok_or(FrameProblem::BadLength { seq })?;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if compact_crc(prev_crc, head, body) != crc {
        return Err(FrameProblem::BadCompact);
    }
    if head[3] != 0 {
        return Err(FrameProblem::UnknownFlags { seq, flags: u16::from(head[3]) });
    }
    let bad = FrameProblem::BadPayload { seq };
    let (zigzag, body) = take_varint(body).ok_or(bad)?;
    let (prefix, body) = take_varint(body).ok_or(bad)?;
    let (suffix, middle) = take_varint(body).ok_or(bad)?;
    let (prefix, suffix) =
        (usize::try_from(prefix).map_err(|_| bad)?, usize::try_from(suffix).map_err(|_| bad)?);
    if prefix.checked_add(suffix).is_none_or(|kept| kept > base.len) {
        return Err(bad);
    }
    let record_len = prefix + middle.len() + suffix;
    let payload = if rebuild {
        let old = base.payload.get(..base.len).ok_or(FrameProblem::NoBase)?;
        let mut payload = Vec::with_capacity(record_len);
        payload.extend_from_slice(&old[..prefix]);
        payload.extend_from_slice(middle);
        payload.extend_from_slice(&old[old.len() - suffix..]);
        payload
    } else {
        Vec::new()
    };
    let delta = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
    let header = FrameHeader {
        marker: FRAME_MARKER,
        kind: base.kind,
        flags: 0,
        payload_len: u32::try_from(record_len).map_err(|_| bad)?,
        crc,
        seq,
        time_us: base.time_us.wrapping_add(delta as u64),
        prev_crc,
        reserved: 0,
    };
    Ok(Parsed { header, payload: Cow::Owned(payload), len, record_len })
}

/// Decode and check the frame at `pos` in `data`, full or compact: a
/// compact one is rebuilt from `base`, the record before it, and checked
/// against `prev_crc`, the CRC of the frame before it. Without `inflate`,
/// a long compressed record is checked but not inflated, and a compact one
/// checked but not rebuilt (see [`Parsed::record_len`]).
pub(crate) fn decode_after<'a>(
    data: &'a [u8],
    pos: usize,
    prev_crc: Option<u32>,
    base: Option<&Base>,
    inflate: bool,
) -> Result<Parsed<'a>, FrameProblem> {
    match data.get(pos..) {
        Some(raw) if compact_body_len(raw).is_some() => {
            decode_compact(raw, pos, data.len(), prev_crc, base, inflate)
        }
        _ => decode_full(data, pos, inflate),
    }
}

/// The chain rules: what an intact frame must say to come next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    /// The seq the next record must have.
    pub expected: u64,
    /// The CRC the next frame's `prev_crc` must name (`None` for the first
    /// frame read, whose predecessor is not known).
    pub prev_crc: Option<u32>,
}

impl Link {
    /// A chain that starts with the record `seq`.
    pub(crate) fn start(seq: u64) -> Link {
        Link { expected: seq, prev_crc: None }
    }

    /// Check that the intact frame `header` at offset `pos` follows: its
    /// seq is the expected one (a wrap marker carries the seq it precedes),
    /// its `prev_crc` names the frame before, and a wrap marker is not at
    /// offset 0.
    pub(crate) fn check(&self, header: &FrameHeader, pos: usize) -> Result<(), FrameProblem> {
        let seq = header.seq;
        if seq != self.expected {
            return Err(FrameProblem::WrongSeq { seq });
        }
        if self.expected.checked_add(1).is_none() {
            return Err(FrameProblem::Loop);
        }
        if self.prev_crc.is_some_and(|c| c != header.prev_crc) {
            return Err(FrameProblem::WrongPrev { seq });
        }
        if header.kind == KIND_WRAP && pos == 0 {
            return Err(FrameProblem::WrapAtZero);
        }
        Ok(())
    }

    /// Move past `header`, which passed [`Link::check`]: the next frame
    /// names it, and a record (not a wrap marker) uses up its seq.
    pub(crate) fn advance(&mut self, header: &FrameHeader) {
        self.prev_crc = Some(header.crc);
        if header.kind != KIND_WRAP {
            self.expected = self.expected.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A sealed frame header for `payload`.
    fn sealed(kind: u16, seq: u64, time_us: u64, prev_crc: u32, payload: &[u8]) -> FrameHeader {
        let mut h = FrameHeader {
            marker: FRAME_MARKER,
            kind,
            flags: 0,
            payload_len: payload.len() as u32,
            crc: 0,
            seq,
            time_us,
            prev_crc,
            reserved: 0,
        };
        h.crc = h.compute_crc(payload);
        h
    }

    /// A zeroed data area of `cap` bytes holding `header` and `payload` at
    /// `pos`.
    fn area(cap: usize, pos: usize, header: &FrameHeader, payload: &[u8]) -> Vec<u8> {
        let mut data = vec![0u8; cap];
        data[pos..pos + HEADER_LEN].copy_from_slice(bytemuck::bytes_of(header));
        data[pos + HEADER_LEN..pos + HEADER_LEN + payload.len()].copy_from_slice(payload);
        data
    }

    /// The follower's way: the header bytes, then the payload bytes.
    fn decode_in_two_reads(data: &[u8], pos: usize) -> Result<usize, FrameProblem> {
        let raw = data.get(pos..).ok_or(FrameProblem::NoMarker)?;
        let head = Head::parse(raw, pos, data.len())?;
        let start = pos + HEADER_LEN;
        let stored = &data[start..start + head.payload_len()];
        let len = head.check(stored)?;
        payload(&head.header, stored, data.len())?;
        Ok(len)
    }

    /// Whatever is accepted has a marker, a matching CRC and fits.
    fn assert_sound(data: &[u8], pos: usize) -> Result<(), TestCaseError> {
        let one = decode(data, pos);
        let two = decode_in_two_reads(data, pos);
        prop_assert_eq!(one.as_ref().map(|f| f.len).map_err(|p| *p), two);
        if let Ok(f) = one {
            prop_assert_eq!(f.header.marker, FRAME_MARKER);
            if f.header.flags == 0 {
                prop_assert_eq!(f.header.compute_crc(&f.payload), f.header.crc);
                prop_assert_eq!(f.payload.len(), f.header.payload_len as usize);
            }
            prop_assert!(pos + f.len <= data.len());
            prop_assert!(f.header.kind != KIND_WRAP || f.payload.is_empty());
        }
        Ok(())
    }

    #[test]
    fn problems_are_named() {
        let payload = b"hello";
        let h = sealed(3, 9, 1, 0, payload);
        let data = area(256, 8, &h, payload);
        assert_eq!(decode(&data, 8).map(|f| f.len), Ok(48));
        assert_eq!(decode(&data, 16).map(|f| f.len), Err(FrameProblem::NoMarker));
        assert_eq!(decode(&data, 240).map(|f| f.len), Err(FrameProblem::NoMarker));
        assert_eq!(decode(&data, usize::MAX).map(|f| f.len), Err(FrameProblem::NoMarker));
        let mut bad = data.clone();
        bad[8 + HEADER_LEN] ^= 1;
        assert_eq!(decode(&bad, 8).map(|f| f.len), Err(FrameProblem::BadCrc { seq: 9 }));
        // A payload running past the end of the data area.
        assert_eq!(decode(&data[..50], 8).map(|f| f.len), Err(FrameProblem::BadLength { seq: 9 }));
        // A wrap marker with a good CRC but a payload.
        let w = sealed(KIND_WRAP, 9, 1, 0, payload);
        let data = area(256, 8, &w, payload);
        assert_eq!(decode(&data, 8).map(|f| f.len), Err(FrameProblem::BadLength { seq: 9 }));
    }

    #[test]
    fn chain_rules() {
        let h = sealed(3, 5, 1, 77, b"x");
        let mut link = Link::start(5);
        assert_eq!(link.check(&h, 0), Ok(()));
        link.prev_crc = Some(78);
        assert_eq!(link.check(&h, 0), Err(FrameProblem::WrongPrev { seq: 5 }));
        link.prev_crc = Some(77);
        link.advance(&h);
        assert_eq!(link, Link { expected: 6, prev_crc: Some(h.crc) });
        assert_eq!(link.check(&h, 0), Err(FrameProblem::WrongSeq { seq: 5 }));
        let w = sealed(KIND_WRAP, 6, 1, h.crc, &[]);
        assert_eq!(link.check(&w, 0), Err(FrameProblem::WrapAtZero));
        assert_eq!(link.check(&w, 8), Ok(()));
        link.advance(&w);
        assert_eq!(link, Link { expected: 6, prev_crc: Some(w.crc) });
        let last = sealed(3, u64::MAX, 1, 0, b"");
        assert_eq!(Link::start(u64::MAX).check(&last, 0), Err(FrameProblem::Loop));
    }

    /// A sealed frame whose stored payload is `stored`, with `flags`.
    fn sealed_with(flags: u16, seq: u64, stored: &[u8]) -> FrameHeader {
        let mut h = sealed(3, seq, 1, 0, stored);
        h.flags = flags;
        h.crc = h.compute_crc(stored);
        h
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| format!("{i:05} a line of a listing\n").into_bytes()).collect()
    }

    #[test]
    fn a_large_payload_is_stored_compressed_and_reads_back() {
        let mut deflater = crate::compress::Deflater::new().unwrap();
        let raw = text(200);
        let (stored, flags) = store(&raw, &mut deflater);
        assert_eq!(flags, FLAG_ZSTD);
        assert!(stored.len() < raw.len() / 3, "{} of {}", stored.len(), raw.len());
        let h = sealed_with(flags, 4, &stored);
        let data = area(8192, 16, &h, &stored);
        let f = decode(&data, 16).unwrap();
        assert_eq!(f.payload, &raw[..]);
        assert_eq!(f.len, frame_len(stored.len() as u64).unwrap() as usize);
        // Small or incompressible payloads are stored as they are.
        assert_eq!(
            store(&raw[..COMPRESS_FROM - 1], &mut deflater),
            (Cow::Borrowed(&raw[..COMPRESS_FROM - 1]), 0)
        );
        let noise = crate::journal::ring::tests::payload(7, 4000);
        assert_eq!(store(&noise, &mut deflater).1, 0);
    }

    #[test]
    fn an_unknown_flag_is_refused_not_misread() {
        for flag in 1..16 {
            let bit = 1u16 << flag;
            let h = sealed_with(bit, 5, b"payload");
            let data = area(256, 0, &h, b"payload");
            assert_eq!(
                decode(&data, 0).map(|f| f.len),
                Err(FrameProblem::UnknownFlags { seq: 5, flags: bit }),
                "flag {bit:#x}"
            );
        }
        // A wrap marker never carries a flag.
        let mut w = sealed(KIND_WRAP, 6, 1, 0, &[]);
        w.flags = FLAG_ZSTD;
        w.crc = w.compute_crc(&[]);
        assert_eq!(decode(&area(256, 8, &w, &[]), 8).map(|f| f.len), Err(FrameProblem::BadLength { seq: 6 }));
    }

    #[test]
    fn a_compressed_frame_that_lies_is_refused() {
        let mut deflater = crate::compress::Deflater::new().unwrap();
        let raw = text(200);
        let stream = deflater.shrink(&raw).unwrap();
        let bomb = deflater.shrink(&vec![0u8; 1 << 20]).unwrap();
        let with_len = |len: u32, stream: &[u8]| {
            let mut stored = len.to_le_bytes().to_vec();
            stored.extend_from_slice(stream);
            stored
        };
        let cap = 16 << 10;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("length too short", with_len(raw.len() as u32 - 1, &stream)),
            ("length too long", with_len(raw.len() as u32 + 1, &stream)),
            ("a bomb within the ring's size", with_len(cap as u32 / 2, &bomb)),
            ("a length past the ring", with_len(1 << 20, &bomb)),
            ("a stream cut short", with_len(raw.len() as u32, &stream[..stream.len() - 5])),
            ("no length", vec![1, 2]),
            ("not zstd", with_len(10, b"0123456789")),
        ];
        for (what, stored) in cases {
            let h = sealed_with(FLAG_ZSTD, 8, &stored);
            let data = area(cap, 0, &h, &stored);
            assert_eq!(decode(&data, 0).map(|f| f.len), Err(FrameProblem::BadPayload { seq: 8 }), "{what}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever is stored, compressed or not, reads back as the
        /// record; a flip in the stored bytes is refused.
        #[test]
        fn stored_payloads_round_trip(
            lines in 0usize..120,
            tail in proptest::collection::vec(any::<u8>(), 0..700),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut deflater = crate::compress::Deflater::new().unwrap();
            let mut raw = text(lines);
            raw.extend_from_slice(&tail);
            let (stored, flags) = store(&raw, &mut deflater);
            let h = sealed_with(flags, 9, &stored);
            // A ring takes records of at most half its data area.
            let cap = (frame_len(stored.len() as u64).unwrap() as usize).max(2 * raw.len());
            let data = area(cap, 0, &h, &stored);
            let f = decode(&data, 0).unwrap();
            prop_assert_eq!(&f.payload[..], &raw[..]);
            let mut bad = data.clone();
            let at = flip.index(HEADER_LEN + stored.len());
            bad[at] ^= 1 << bit;
            prop_assert!(decode(&bad, 0).is_err());
        }

        /// Random bytes behind a real marker and the compressed flag.
        #[test]
        fn hostile_compressed_frames_are_never_accepted_unsound(
            stored in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let h = sealed_with(FLAG_ZSTD, 2, &stored);
            let cap = frame_len(stored.len() as u64).unwrap() as usize + 64;
            let data = area(cap, 0, &h, &stored);
            if let Ok(f) = decode(&data, 0) {
                let len = u32::from_le_bytes(stored[..4].try_into().unwrap()) as usize;
                prop_assert_eq!(f.payload.len(), len);
                prop_assert!(len <= cap);
            }
        }

        /// Random bytes at any offset: never a panic, never a frame
        /// whose CRC does not match.
        #[test]
        fn random_bytes_are_never_accepted_unsound(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            pos in 0usize..640,
        ) {
            assert_sound(&data, pos)?;
        }

        /// Random bytes behind a real marker, with a small payload length,
        /// so the length and CRC checks are reached.
        #[test]
        fn hostile_headers_are_never_accepted_unsound(
            mut data in proptest::collection::vec(any::<u8>(), 40..400),
            plen in 0u32..400,
            kind in prop_oneof![Just(KIND_WRAP), any::<u16>()],
            pos in 0usize..64,
        ) {
            let pos = pos.min(data.len() - HEADER_LEN);
            data[pos..pos + 4].copy_from_slice(&FRAME_MARKER.to_le_bytes());
            data[pos + 4..pos + 6].copy_from_slice(&kind.to_le_bytes());
            data[pos + 8..pos + 12].copy_from_slice(&plen.to_le_bytes());
            assert_sound(&data, pos)?;
        }

        /// A valid frame decodes to what was written, both ways; any bit
        /// flip in the bytes its CRC covers is refused.
        #[test]
        fn valid_frames_round_trip_and_flips_are_refused(
            kind in 0u16..KIND_WRAP,
            seq in any::<u64>(),
            time_us in any::<u64>(),
            prev_crc in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            slot in 0usize..8,
            spare in 0usize..4,
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let pos = slot * 8;
            let len = frame_len(payload.len() as u64).unwrap() as usize;
            let cap = pos + len + spare * 8;
            let h = sealed(kind, seq, time_us, prev_crc, &payload);
            let data = area(cap, pos, &h, &payload);
            let f = decode(&data, pos).unwrap();
            prop_assert_eq!(f.header, h);
            prop_assert_eq!(f.payload, &payload[..]);
            prop_assert_eq!(f.len, len);
            prop_assert_eq!(decode_in_two_reads(&data, pos), Ok(len));

            let mut bad = data.clone();
            let at = pos + flip.index(HEADER_LEN + payload.len());
            bad[at] ^= 1 << bit;
            prop_assert!(decode(&bad, pos).is_err(), "flip at {}.{} accepted", at, bit);
            prop_assert!(decode_in_two_reads(&bad, pos).is_err());
            assert_sound(&bad, pos)?;
        }

        /// What a compact frame carries rebuilds the record exactly, for
        /// any base and any record near it; any flip is refused.
        #[test]
        fn compact_frames_round_trip_and_flips_are_refused(
            base_payload in proptest::collection::vec(any::<u8>(), 0..200),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            grow in proptest::collection::vec(any::<u8>(), 0..4),
            time in any::<u64>(),
            delta in any::<i32>(),
            prev_crc in any::<u32>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let base = Base { seq: 41, kind: 2, time_us: time, len: base_payload.len(), payload: base_payload.clone() };
            let mut payload = base_payload;
            if !payload.is_empty() {
                for (at, byte) in &edits {
                    let i = at.index(payload.len());
                    payload[i] = *byte;
                }
            }
            payload.extend_from_slice(&grow);
            let time_us = time.wrapping_add(delta as i64 as u64);
            let mut body = Vec::new();
            if !compact_body(&base, time_us, &payload, &mut body) {
                // Too different: written as a full frame.
                return Ok(());
            }
            let head = compact_head(prev_crc, &body);
            let len = compact_len(body.len());
            let mut data = vec![0u8; len + 16];
            data[..COMPACT_HEAD].copy_from_slice(&head);
            data[COMPACT_HEAD..COMPACT_HEAD + body.len()].copy_from_slice(&body);
            let f = decode_after(&data, 0, Some(prev_crc), Some(&base), true).unwrap();
            prop_assert_eq!(&f.payload[..], &payload[..]);
            prop_assert_eq!((f.header.seq, f.header.kind, f.header.time_us, f.len), (42, 2, time_us, len));
            prop_assert!(len <= 40);
            // Checked without rebuilding, from the base's length alone: the
            // same frame, header and length.
            let mut short = base.clone();
            short.payload.clear();
            let checked = decode_after(&data, 0, Some(prev_crc), Some(&short), false).unwrap();
            prop_assert_eq!((checked.header, checked.len, checked.record_len), (f.header, f.len, payload.len()));
            prop_assert!(checked.payload.is_empty());
            // Another frame before it, or no base: refused.
            prop_assert!(decode_after(&data, 0, Some(prev_crc ^ 1), Some(&base), true).is_err());
            prop_assert_eq!(decode_after(&data, 0, Some(prev_crc), None, true).map(|f| f.len), Err(FrameProblem::NoBase));
            let mut bad = data.clone();
            let at = flip.index(COMPACT_HEAD + body.len());
            bad[at] ^= 1 << bit;
            if let Ok(f) = decode_after(&bad, 0, Some(prev_crc), Some(&base), true) {
                prop_assert!(false, "flip at {}.{} accepted: {:?}", at, bit, f.payload);
            }
        }

        /// Random bytes behind a compact marker, with a base: never a
        /// panic, never a record longer than the base and the body.
        #[test]
        fn hostile_compact_frames_are_never_accepted_unsound(
            mut data in proptest::collection::vec(any::<u8>(), 8..80),
            base_payload in proptest::collection::vec(any::<u8>(), 0..64),
            prev_crc in any::<u32>(),
            body_len in 0u8..=255,
        ) {
            data[..2].copy_from_slice(&COMPACT_MARKER.to_le_bytes());
            data[2] = body_len;
            let base = Base { seq: 9, kind: 2, time_us: 5, len: base_payload.len(), payload: base_payload };
            if let Ok(f) = decode_after(&data, 0, Some(prev_crc), Some(&base), true) {
                prop_assert!(f.payload.len() <= base.payload.len() + COMPACT_MAX_BODY);
                prop_assert!(f.len <= data.len());
            }
        }
    }
}
