//! monitord: follow one process by PID and keep a replayable history of the
//! text files in its working directory and of its memory map, with cheap
//! process statistics per sample.
//!
//! # Architecture
//!
//! The data path reads one way: kernel → [`event`] → [`sampler`] →
//! [`journal`] and [`mirror`] → readers. Nothing below knows what is above.
//!
//! ```text
//!  kernel                threads (each owns the fds on its line)                 store
//!  ──────                ───────────────────────────────────────                 ─────
//!  inotify / fanotify ─▶ [event thread] inotify or fanotify fd, watch/mark table,
//!  proc connector        netlink socket (fanotify's fork watcher)
//!                            │ dirty paths (bounded queue; overflow = rescan)
//!                            ▼
//!                        [main thread: monitor loop + sampler]  ──────────▶  ring.bin (mmap)
//!                            ▲  owns the ring writer, the mirror,            mirror/<epoch>.pack|.log
//!                            │  the pinned /proc/<pid> dir, the root fd      maps, lock
//!  signalfd ──────────▶ [monitord-signals] signalfd ──┐
//!  stdin (-i) ────────▶ [monitord-stdin]              ├── Msg channel ──▶ main thread
//!  <store>/ctl ───────▶ [monitord-ctl] control FIFO,  │
//!                        every reply FIFO (non-blocking, dropped if unread)
//!  pidfd ─────────────▶ [monitord-exit] pidfd of the target ─┘
//!                       [monitord-opener] reads files with the target's
//!                        credentials (root following another user)
//! ```
//!
//! With `--backend poll` there is no event thread: the sample barrier scans
//! the tree on the main thread ([`event::Poll`]), and its cost grows with
//! the tree.
//!
//! The modules, by layer:
//!
//! | layer | modules |
//! |---|---|
//! | edges: the kernel and the process | [`event`] (inotify, fanotify, poll backends), [`proc`] (pinned `/proc/<pid>`, maps probe, stats, forks, child reaper), [`tree`] and [`relpath`] (reading strictly beneath the root), [`exclude`] (what is left out), [`credentials`], [`signals`], [`daemon`], [`notify`], [`launch`] |
//! | core: recording | [`sampler`] (dirty set, classify, epochs, upkeep, hard links), [`diff`], [`text`], [`journal`] (ring, frames, records, reader, follower), [`mirror`], [`compress`], [`maps`], [`fault`], [`clock`], [`failpoint`] |
//! | readers: answers | [`restore`], [`history`], [`point`], [`query`], [`blame`], [`verify`], [`replay`], [`render`], [`report`] |
//! | the program | [`monitor`] (loop, command replies, output, threads), [`control`], [`cmd`], [`cli`], [`store`], [`log`] |
//!
//! - The sampler ([`sampler`]) is the only writer of the ring
//!   ([`journal::Ring`]) and the mirror ([`mirror`]).
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
//! - Readers copy the ring with plain reads, safe while the sampler
//!   writes, and check everything they return against the recorded hashes
//!   and checksums: a damaged stretch is named and skipped, a damaged
//!   mirror is an error, never a wrong answer.

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
//! | a restore equals what was, or says it cannot | [`restore`], [`mirror`], [`journal`] |
//! | only text files; large files listed, not copied | [`text`], [`tree`] |
//! | the map at any sample can be rebuilt | [`maps`] |
//! | never outside the tree | [`tree`], [`restore`], [`undo`] |
//! | an undo writes nothing on a conflict, and never a torn file | [`undo`] |
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
pub mod compress;
pub mod control;
pub mod credentials;
pub mod daemon;
pub mod diff;
pub mod event;
pub mod exclude;
pub mod failpoint;
pub mod fault;
pub mod history;
pub mod journal;
pub mod launch;
pub mod log;
pub mod maps;
pub mod mirror;
pub mod modes;
pub mod monitor;
pub mod notify;
pub mod point;
pub mod proc;
pub mod query;
pub mod relpath;
pub mod render;
pub mod replay;
pub mod report;
pub mod restore;
pub mod sampler;
pub mod signals;
pub mod store;
pub mod text;
pub mod tree;
pub mod undo;
pub mod verify;
