//! Event sources: the event thread turns kernel notifications into dirty
//! paths on a bounded, lock-free queue, which the sampler drains once per
//! period. The sampler never learns which backend runs.
//!
//! Overflow is data, not an error: when the kernel queue overflows, our
//! queue is full, or a directory cannot be watched, the affected
//! directories are marked for a rescan against the mirror. Nothing is
//! silently lost.

mod inotify;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use inotify::Inotify;

/// Errors starting an event source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused to create the notification instance.
    #[error("cannot start inotify (see fs.inotify.max_user_instances)")]
    Init(#[source] nix::Error),
    /// The event thread could not be started.
    #[error("cannot start the event thread")]
    Thread(#[source] std::io::Error),
}

/// One dirty path: a file (or symlink) to compare with the mirror, or a
/// directory whose whole subtree must be compared (created, deleted or
/// moved directories).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dirty {
    /// One entry.
    Path(Vec<u8>),
    /// A directory and everything below it.
    Subtree(Vec<u8>),
}

/// Counters and flags the event thread shares with the sampler.
#[derive(Debug, Default)]
pub struct Shared {
    /// Events were lost: the sampler must rescan the whole tree.
    pub overflowed: AtomicBool,
    /// Directories that could not be watched: rescanned every sample.
    pub unwatched: Mutex<BTreeSet<Vec<u8>>>,
    /// Directories currently watched.
    pub watches: AtomicU64,
    /// Kernel events read so far.
    pub events: AtomicU64,
    /// Times the queue or the kernel queue overflowed.
    pub overflows: AtomicU64,
}

impl Shared {
    /// Mark that events were lost.
    pub fn overflow(&self) {
        self.overflowed.store(true, Ordering::Release);
        self.overflows.fetch_add(1, Ordering::Relaxed);
    }

    /// Take (and clear) the overflow flag.
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }

    /// Directories without a watch, to rescan.
    pub fn unwatched(&self) -> Vec<Vec<u8>> {
        match self.unwatched.lock() {
            Ok(set) => set.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }
}
