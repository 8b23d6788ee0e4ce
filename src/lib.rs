//! monitord: follow one process by PID and keep a replayable history of the
//! text files in its working directory and of its memory map, with cheap
//! process statistics per sample.
//!
//! # Architecture
//!
//! ```text
//!   kernel ──inotify fd──▶ [event thread] ──Dirty paths──▶ bounded queue
//!                              ▲  sync (barrier) / overflow flag  │
//!                              │                                  ▼
//!   stdin ──▶ [stdin thread] ──┐                  [sampler loop (main thread)]
//!   signalfd ─▶ [signal thread]┴──Msg channel──▶  owns ring.bin (mmap) and
//!                                                 the mirror; one record per tick
//! ```
//!
//! - The event thread ([`event`]) owns the inotify fd and the watch table.
//!   With `--backend poll` there is no event thread: the barrier itself
//!   scans the tree on the sampler's thread ([`event::Poll`]), and the cost
//!   of a sample grows with the tree.
//! - The sampler ([`sampler`]) owns the ring writer ([`journal::Ring`]) and
//!   the mirror ([`mirror`]); it is the only writer of both.
//! - Control lines are parsed by [`control`] and answered by [`monitor`].
//! - A failure that monitoring survives (a file it cannot read, a
//!   directory it cannot watch, a reply given up) is reported as a
//!   [`fault::Fault`] by whichever part met it; only [`monitor`] turns it
//!   into text, for its output and `status`.
//! - Each baseline and sample also asks one [`proc::probe::Probe`] for the
//!   memory map ([`proc::maps`] reads it: full at a baseline, added/removed
//!   lines at a sample; [`maps`] parses, diffs and rebuilds it) and the
//!   statistics ([`proc::stats`]), read through the pinned `/proc/<pid>`
//!   directory.
//! - The writes and reads a monitor must survive a failure of carry named
//!   fault injection points ([`failpoint`]), compiled in for the tests only.
//! - Readers ([`restore`], [`verify`], [`replay`]) copy the ring with plain
//!   reads, safe while the sampler writes; [`replay`] moves an in-memory
//!   tree one record at a time with the same patches restore applies.
//!
//! # The life of one change
//!
//! A write by the target queues an inotify event; the event thread turns it
//! into a dirty path; at the next tick the sampler runs the barrier (every
//! event queued before the tick is on the queue), drains the queue, reads
//! each dirty path strictly beneath the root ([`tree`]), diffs it against
//! the mirror ([`diff`]), appends one record ([`journal::record`]) and then
//! updates the mirror.
//!
//! # Invariants
//!
//! - The mirror of the current epoch equals the tree as of the newest
//!   committed record (repaired at start-up after a crash between the two).
//! - Restore walks reverse patches back from the mirror, so dropping the
//!   oldest records never breaks the newest state.
//! - Every frame carries its sequence number and a CRC: a torn or stale
//!   frame is never returned.
//!
//! # Where each promise of the specification is kept
//!
//! | promise | module |
//! |---|---|
//! | nothing recorded is lost; crashes lose at most the record being written | [`journal`] |
//! | the ring is bounded; the newest state is always restorable | [`journal`], [`restore`] |
//! | only text files; large files listed, not copied | [`text`], [`tree`] |
//! | the map at any sample can be rebuilt | [`maps`] |
//! | never outside the tree | [`tree`], [`restore`] |
//! | cost follows the change | [`sampler`], [`event`] |
//! | bad input gets a clear error | [`control`], [`cmd`] |

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(clippy::unwrap_used)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod blame;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod control;
pub mod credentials;
pub mod daemon;
pub mod diff;
pub mod event;
pub mod failpoint;
pub mod fault;
pub mod history;
pub mod journal;
pub mod launch;
pub mod log;
pub mod maps;
pub mod mirror;
pub mod monitor;
pub mod notify;
pub mod point;
pub mod proc;
pub mod query;
pub mod relpath;
pub mod render;
pub mod replay;
pub mod restore;
pub mod sampler;
pub mod signals;
pub mod store;
pub mod text;
pub mod tree;
pub mod verify;
