//! zstd, as the store uses it: the mirror's pack blocks and log entries,
//! and large record payloads in the ring.
//!
//! Two rules hold everywhere:
//!
//! - bytes are kept compressed only when that makes them strictly smaller
//!   ([`Deflater::shrink`]), so a reader tells stored from compressed by
//!   comparing the stored length with the recorded one (or by a flag);
//! - inflating never produces more than the length the writer recorded
//!   ([`inflate`]): a stream that would inflate to more (a decompression
//!   bomb, or a recorded length that lies) or to fewer bytes, or that is
//!   cut short or damaged, is an error, and memory is never reserved
//!   beyond what the stream actually produced.
//!
//! Every compressed stream carries zstd's content checksum, so damage to
//! it is an error at inflate time even before the caller's own hash check.

use std::io::{self, Read};

/// The zstd level of the ring's records, the log's entries and the
/// pack's index: small, or full of hashes, and written one at a time.
pub const LEVEL: i32 = 1;

/// The zstd level of the mirror pack's blocks, one of zstd's fast levels.
/// The baseline compresses the whole tree and must stay within twice a
/// `tar` of it; measured on the sample bench's text in the pack's 8 KiB
/// blocks, level 3 (zstd's default) keeps 23.6% of the bytes at about
/// 130 MB/s, level 1 24.6% at 170 MB/s, level -5 28.3% at 240 MB/s (and
/// inflates at 600 MB/s instead of 400), still well under what git keeps
/// for the same tree.
pub const FAST_LEVEL: i32 = -5;

/// Why bytes did not inflate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream is damaged or cut short (zstd's own checks).
    #[error("compressed bytes are damaged: {0}")]
    Corrupt(#[source] io::Error),
    /// The stream inflates to more bytes than recorded.
    #[error("compressed bytes inflate to more than the recorded {limit} bytes")]
    TooLong {
        /// The recorded length.
        limit: u64,
    },
    /// The stream ends before the recorded length.
    #[error("compressed bytes inflate to {got} bytes, not the recorded {want}")]
    TooShort {
        /// What came out.
        got: u64,
        /// The recorded length.
        want: u64,
    },
}

/// A reusable zstd compressor (its context is kept between calls, which
/// matters for the many small inputs of a sample).
pub struct Deflater(zstd::bulk::Compressor<'static>);

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Deflater {
    /// A compressor at [`LEVEL`] that writes content checksums.
    ///
    /// # Errors
    /// When zstd cannot allocate its context.
    pub fn new() -> io::Result<Deflater> {
        Deflater::at(LEVEL)
    }

    /// A compressor at [`FAST_LEVEL`], for the bulk of a baseline.
    ///
    /// # Errors
    /// When zstd cannot allocate its context.
    pub fn fast() -> io::Result<Deflater> {
        Deflater::at(FAST_LEVEL)
    }

    fn at(level: i32) -> io::Result<Deflater> {
        let mut inner = zstd::bulk::Compressor::new(level)?;
        inner.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        Ok(Deflater(inner))
    }

    /// `raw` compressed, when that is strictly smaller; `None` when the
    /// bytes are better kept as they are (or zstd failed, which only costs
    /// the space).
    pub fn shrink(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        if raw.is_empty() {
            return None;
        }
        let out = self.0.compress(raw).ok()?;
        (out.len() < raw.len()).then_some(out)
    }
}

/// The length the zstd stream `stored` declares in its frame header, when
/// it declares one (ours always do). Reading it inflates nothing: a reader
/// that only walks records checks this, and a reader that uses a record
/// inflates it with [`inflate`], which checks the whole stream.
pub fn declared_len(stored: &[u8]) -> Option<u64> {
    zstd::zstd_safe::get_frame_content_size(stored).ok().flatten()
}

/// Inflate the single zstd stream `stored` into exactly `raw_len` bytes.
///
/// # Errors
/// [`Error::Corrupt`] when the stream is damaged or cut short,
/// [`Error::TooLong`] when it would inflate past `raw_len`,
/// [`Error::TooShort`] when it ends before.
pub fn inflate(stored: &[u8], raw_len: u64) -> Result<Vec<u8>, Error> {
    // The common case, in one call with this thread's reused context into
    // a buffer of exactly `raw_len` bytes (zstd refuses to write past it):
    // a sample reads a few blocks, and making a context per read cost more
    // than inflating. Only for a length the stored bytes can plausibly
    // give, so that a lying length allocates nothing by itself; any
    // failure is told apart by the bounded stream below.
    let plausible = (stored.len() as u64).saturating_mul(256).saturating_add(1 << 20);
    if raw_len <= plausible
        && let Ok(len) = usize::try_from(raw_len)
    {
        let mut out = Vec::with_capacity(len);
        let done = DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = zstd::bulk::Decompressor::new().ok();
            }
            slot.as_mut().map(|d| d.decompress_to_buffer(stored, &mut out))
        });
        if let Some(Ok(n)) = done
            && n == len
        {
            return Ok(out);
        }
    }
    inflate_stream(stored, raw_len)
}

thread_local! {
    /// This thread's zstd decompression context, made on first use.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// [`inflate`] as a stream: memory grows with what actually comes out,
/// never past `raw_len` (plus one byte, to see that it goes on).
fn inflate_stream(stored: &[u8], raw_len: u64) -> Result<Vec<u8>, Error> {
    let decoder = zstd::stream::read::Decoder::with_buffer(stored).map_err(Error::Corrupt)?.single_frame();
    // Reserve no more than a plausible ratio of what is stored: a lying
    // `raw_len` must not allocate by itself.
    let reserve = raw_len.min((stored.len() as u64).saturating_mul(16).saturating_add(4096));
    let mut out = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
    decoder.take(raw_len.saturating_add(1)).read_to_end(&mut out).map_err(Error::Corrupt)?;
    let got = out.len() as u64;
    if got > raw_len {
        return Err(Error::TooLong { limit: raw_len });
    }
    if got < raw_len {
        return Err(Error::TooShort { got, want: raw_len });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"the quick brown fox\n"[i % 20]).collect()
    }

    #[test]
    fn small_or_random_bytes_are_kept_as_they_are() {
        let mut d = Deflater::new().unwrap();
        assert_eq!(d.shrink(b""), None);
        assert_eq!(d.shrink(b"bee\n"), None);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(d.shrink(&noise), None);
    }

    #[test]
    fn both_levels_round_trip() {
        let raw = text(20_000);
        for mut d in [Deflater::new().unwrap(), Deflater::fast().unwrap()] {
            let packed = d.shrink(&raw).unwrap();
            assert!(packed.len() < raw.len() / 10, "{}", packed.len());
            assert_eq!(inflate(&packed, raw.len() as u64).unwrap(), raw);
        }
    }

    #[test]
    fn a_bomb_or_a_lying_length_is_refused() {
        let mut d = Deflater::new().unwrap();
        let zeros = vec![0u8; 64 << 20];
        let bomb = d.shrink(&zeros).unwrap();
        assert!(bomb.len() < 8 << 10, "{}", bomb.len());
        assert!(matches!(inflate(&bomb, 1 << 20), Err(Error::TooLong { limit }) if limit == 1 << 20));
        assert!(matches!(inflate(&bomb, (64 << 20) + 1), Err(Error::TooShort { .. })));
        assert_eq!(inflate(&bomb, 64 << 20).unwrap().len(), 64 << 20);
    }

    #[test]
    fn every_cut_of_a_stream_is_refused() {
        let mut d = Deflater::new().unwrap();
        let raw = text(5000);
        let packed = d.shrink(&raw).unwrap();
        for cut in 0..packed.len() {
            assert!(inflate(&packed[..cut], raw.len() as u64).is_err(), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(raw in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'\n'), any::<u8>()], 0..4000)) {
            let mut d = Deflater::new().unwrap();
            if let Some(packed) = d.shrink(&raw) {
                prop_assert!(packed.len() < raw.len());
                prop_assert_eq!(inflate(&packed, raw.len() as u64).unwrap(), raw);
            }
        }

        #[test]
        fn flipped_bits_never_inflate_to_other_bytes(at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut d = Deflater::new().unwrap();
            let raw = text(3000);
            let mut packed = d.shrink(&raw).unwrap();
            let i = at.index(packed.len());
            packed[i] ^= 1 << bit;
            if let Ok(out) = inflate(&packed, raw.len() as u64) {
                prop_assert_eq!(out, raw);
            }
        }

        #[test]
        fn hostile_bytes_never_panic_nor_exceed_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            limit in 0u64..10_000,
        ) {
            if let Ok(out) = inflate(&bytes, limit) {
                prop_assert_eq!(out.len() as u64, limit);
            }
        }
    }
}
