//! The target's memory map (`/proc/<pid>/maps`, proc(5)) as data:
//! parsing it, diffing one sample's map against the previous one, and
//! rebuilding the map at any recorded sequence number.
//!
//! This module owns the map's text and its history; its only I/O is the
//! store's newest map (`<store>/maps`). It does not own the journal
//! (records come from [`crate::journal`]) nor reading the live map: that is
//! [`crate::proc::maps::MapsProbe`], through the pinned
//! [`crate::proc::Target`], so a recycled PID is never read.
//!
//! - `parse.rs`: the zero-copy line parser ([`parse_line`], [`Mapping`],
//!   [`unescape`]);
//! - `delta.rs`: the difference of two texts ([`diff()`]) and a whole
//!   [`Map`] rebuilt from deltas;
//! - `history.rs`: the map at a sequence number ([`map_at`]) and the
//!   anchor file ([`Anchor`]).
//!
//! # What is stored
//!
//! A map is a set of lines exactly as the kernel printed them. The baseline
//! record carries every line; a sample carries the lines **added** and
//! **removed** since the previous sample
//! ([`MapsDelta`](crate::journal::record::MapsDelta)). A line is the
//! identity of a mapping: a mapping whose range, permissions, offset or
//! backing file changed prints a different line, so it shows up as one
//! line removed and one added. The kernel prints mappings sorted by start
//! address and no two share one, so ordering a set of lines by (start,
//! bytes) gives the kernel's text back byte for byte ([`Map::render`]).
//!
//! # The newest map
//!
//! The baseline leaves the ring when it wraps, so the probe
//! ([`crate::proc::maps::MapsProbe`]) also keeps the newest map of the
//! current epoch in `<store>/maps` (an [`Anchor`]: the text and the
//! sequence number it is as of). It is rewritten, atomically
//! (written in `<store>/tmp/`, renamed into place) after the commit, when
//! the epoch starts and whenever the ring has dropped a record newer than
//! the anchor: about once per trip around the ring, so its cost does not
//! follow the sampling rate. A reader rebuilds the map at a sequence
//! number forwards from the baseline while the baseline is held, else
//! from the anchor (backwards to older records, forwards to newer ones).
//! A crash between a commit and the rewrite leaves an older anchor; a
//! reader checks that every record after it is still held, and otherwise
//! says the map cannot be rebuilt, never returning a wrong one.

use std::io;
use std::path::PathBuf;

mod delta;
mod history;
mod parse;

pub use delta::{Map, diff, rebuild_backward, rebuild_forward};
pub use history::{Anchor, decode_anchor, encode_anchor, map_at, read_anchor, write_anchor};
pub use parse::{Backing, Mapping, ParseError, Perms, lines, parse, parse_line, unescape};

/// Errors rebuilding a map from the journal or writing the store's newest
/// map.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A delta removes a line that is not in the map: the journal is
    /// damaged (or this is a bug).
    #[error("record {seq} removes a mapping that is not in the map ({line:?}): the journal does not replay")]
    Replay {
        /// The record (0 when not known).
        seq: u64,
        /// The missing line, lossily decoded.
        line: String,
    },
    /// The sequence number is not in the ring.
    #[error("seq {seq} is not in the ring (it holds records {oldest}..{newest})")]
    NotInRing {
        /// Asked for.
        seq: u64,
        /// Oldest record held.
        oldest: u64,
        /// Newest record held.
        newest: u64,
    },
    /// The baseline of the record's epoch has left the ring and no anchor
    /// reaches the record.
    #[error(
        "the baseline of seq {seq} (seq {epoch}) is no longer in the ring and the store's newest map does not reach it"
    )]
    BaselineDropped {
        /// Asked for.
        seq: u64,
        /// The epoch (its baseline's sequence number).
        epoch: u64,
    },
    /// Records between the point and where its map is rebuilt from are
    /// missing (a damaged stretch of the ring).
    #[error("the map at seq {seq} cannot be rebuilt: records {from}..={to} are damaged or missing")]
    Missing {
        /// Asked for.
        seq: u64,
        /// The first record rebuilding needs.
        from: u64,
        /// The last.
        to: u64,
    },
    /// The anchor file could not be written.
    #[error("cannot write the newest map {path}")]
    Anchor {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}
