//! Failures a monitor survives, as data: what failed, on which path, and
//! the error the kernel gave. The parts that meet them (the sampler, the
//! event thread, the control FIFO's listener) report a [`Fault`] and go
//! on; only the monitor turns one into text, for its output and for
//! `status` (`errors`, `last_error`). Paths are kept as the raw bytes the
//! kernel gave, so they are escaped once, where they are shown.
//!
//! Failures that pause recording (the journal or the mirror refusing a
//! write) are not faults: they are the sampler's typed errors, which the
//! monitor retries every period.

use std::io;
use std::time::Duration;

/// A failure survived: nothing is lost, and monitoring goes on around it.
#[derive(Debug)]
pub enum Fault {
    /// Records were committed, but writing them back to the ring file
    /// failed (msync): they stay in memory and are written back later.
    JournalWriteBack(crate::journal::Error),
    /// A file in the tree could not be read for a reason that may pass (an
    /// I/O error): it is read again at every sample until it can be.
    TreeRead {
        /// The file, relative to the root.
        path: Vec<u8>,
        /// Why it could not be read.
        source: io::Error,
    },
    /// A directory could not be watched (`inotify_add_watch`): it is
    /// rescanned at every sample instead.
    WatchDir {
        /// The directory, relative to the root (empty for the root).
        path: Vec<u8>,
        /// Why it could not be watched.
        source: io::Error,
    },
    /// fanotify could not mark a directory: it is rescanned at every
    /// sample instead.
    MarkDir {
        /// The directory, relative to the root (empty for the root).
        path: Vec<u8>,
        /// The call that failed.
        call: &'static str,
        /// Why.
        source: io::Error,
    },
    /// A file with names outside the tree could not be watched: writes
    /// through those names are missed.
    WatchFile {
        /// One of its names in the tree.
        path: Vec<u8>,
        /// Why it could not be watched.
        source: io::Error,
    },
    /// A reply to a `monitord ctl` client was given up.
    ReplyDropped {
        /// The client's reply FIFO.
        to: Vec<u8>,
        /// Why it was given up.
        why: ReplyLoss,
    },
}

/// Why a reply to a `monitord ctl` client was given up.
#[derive(Debug)]
pub enum ReplyLoss {
    /// Writing to the client's FIFO failed.
    Write(io::Error),
    /// The client read nothing of it for this long.
    Unread(Duration),
    /// Too many replies were already waiting to be read.
    TooMany,
}
