//! Event sources: the event thread turns kernel notifications into dirty
//! paths on a bounded, lock-free queue, which the sampler drains once per
//! period. The sampler never learns which backend runs.
//!
//! Overflow is data, not an error: when the kernel queue overflows, our
//! queue is full, or a directory cannot be watched, the affected
//! directories are marked for a rescan against the mirror. Nothing is
//! silently lost.
//!
//! Backends: [`Inotify`] (the default; one watch per directory) and
//! [`Poll`] (a stat scan of the whole tree every sample, for filesystems
//! that send no notifications; its cost grows with the tree).

mod fanotify;
mod inotify;
mod poll;
mod thread;

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use fanotify::Fanotify;
pub use inotify::Inotify;
pub use poll::Poll;

use crate::exclude::Matcher;
use crate::fault::Fault;

/// Which kernel interface finds changes (`--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// inotify(7): one watch per directory.
    Inotify,
    /// fanotify(7): marks on the tree's directories, or its filesystems when big (needs CAP_SYS_ADMIN); knows who wrote.
    Fanotify,
    /// A stat scan of the tree every sample (for NFS, FUSE); cost grows with the tree.
    Poll,
}

impl Backend {
    /// The name `status` and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Inotify => "inotify",
            Backend::Fanotify => "fanotify",
            Backend::Poll => "poll",
        }
    }
}

/// A dirty path and, when the backend knows it, the process that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What to compare with the mirror.
    pub dirty: Dirty,
    /// The process whose action caused the event, named when the event
    /// was read (fanotify only).
    pub writer: Option<std::sync::Arc<crate::journal::record::Writer>>,
}

impl Event {
    /// An event whose writer the backend cannot know.
    pub fn anonymous(dirty: Dirty) -> Event {
        Event { dirty, writer: None }
    }
}

/// What every backend needs to know about the tree.
#[derive(Clone, Debug)]
pub struct Options {
    /// Paths left out: what is neither watched nor reported. The tree's
    /// ignore files change while it is watched: the sampler hands the
    /// backend each new set of rules ([`Source::rules`]).
    pub excludes: Matcher,
    /// A directory (device, inode) never to enter: the store.
    pub skip: Option<(u64, u64)>,
    /// Capacity of the dirty-path queue.
    pub capacity: usize,
    /// The followed process, to tell its writes from others'.
    pub target: i32,
}

/// An event source, as the sampler sees it.
pub trait Source: Send {
    /// The sample barrier: once this returns true, every change whose
    /// write returned before the call is on the queue. False when the
    /// barrier timed out (the sampler then rescans to be safe).
    fn sync(&mut self, timeout: Duration) -> bool;
    /// Move every queued event into `into`.
    fn drain(&mut self, into: &mut Vec<Event>);
    /// The files whose writes through names outside the tree this backend
    /// must report (as [`Dirty::Inode`]), replacing the previous list.
    /// Nothing to do for a backend that sees those writes anyway (poll).
    fn watch_files(&mut self, _files: &[Linked]) {}
    /// Leave out what `rules` leave out from now on. Below each directory
    /// of `changed` (whose rules changed), watch what they let in, then
    /// report the directory as a dirty subtree, for what changed there
    /// before its watches were in place (poll, whose next scan finds
    /// those entries new, needs neither). Directories they now leave out
    /// may stay watched: their events are dropped.
    fn rules(&mut self, rules: &Matcher, changed: &[Vec<u8>]);
    /// Counters and flags shared with the backend.
    fn shared(&self) -> &Arc<Shared>;
}

/// Start `backend` on the tree below `root` (a directory fd). Everything
/// is watched when this returns, so a baseline taken afterwards misses
/// nothing.
///
/// # Errors
/// [`Error`] when the backend cannot start.
pub fn start(backend: Backend, root: &OwnedFd, options: Options) -> Result<Box<dyn Source>, Error> {
    match backend {
        Backend::Inotify => Inotify::start(root, options.excludes, options.skip, options.capacity),
        Backend::Fanotify => Fanotify::start(root, options),
        Backend::Poll => Ok(Box::new(Poll::start(root, options)?)),
    }
}

/// Errors starting an event source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused to create the notification instance.
    #[error("cannot start inotify (see fs.inotify.max_user_instances)")]
    Init(#[source] nix::Error),
    /// The event thread could not be started.
    #[error("cannot start the event thread")]
    Thread(#[source] std::io::Error),
    /// The kernel or the filesystem refused fanotify.
    #[error("{}", fanotify_message(what, *errno))]
    Fanotify {
        /// The call that failed.
        what: &'static str,
        /// Its errno.
        errno: nix::errno::Errno,
    },
    /// The tree's directory fd could not be duplicated.
    #[error("cannot duplicate the watched directory's fd")]
    Dup(#[source] std::io::Error),
}

fn fanotify_message(what: &str, errno: nix::errno::Errno) -> String {
    use nix::errno::Errno;
    match (what, errno) {
        (_, Errno::EPERM) => {
            "the fanotify backend needs CAP_SYS_ADMIN (run as root): use --backend inotify".to_string()
        }
        ("fanotify_mark", Errno::EXDEV | Errno::EINVAL | Errno::ENODEV | Errno::EOPNOTSUPP) => format!(
            "the filesystem of the working directory does not support fanotify's directory events ({errno}): use --backend inotify or poll"
        ),
        _ => format!("cannot start fanotify: {what} failed: {errno}: use --backend inotify"),
    }
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
    /// Every name the sampler tracks for the file (device, inode): it was
    /// changed through a name the backend cannot place (outside the tree).
    Inode(u64, u64),
}

/// A file with more links than the names the sampler tracks for it: a
/// write through one of its other names, outside the tree, raises no event
/// on the tree's directories (see [`Source::watch_files`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linked {
    /// One of its names in the tree.
    pub path: Vec<u8>,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
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
    /// The fanotify marks in force (`inode N dirs`, `filesystem N`);
    /// empty for the other backends.
    pub marks: Mutex<String>,
    /// Duration of the last scan, in microseconds (poll backend).
    pub last_scan_us: AtomicU64,
    /// Entries examined by the last scan (poll backend).
    pub last_scan_entries: AtomicU64,
    /// Failures the event thread survived (a directory it could not
    /// watch), not yet taken by the sampler.
    pub faults: Mutex<Vec<Fault>>,
}

/// How many faults [`Shared`] keeps until the sampler takes them.
const MAX_FAULTS: usize = 64;

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

    /// Report a failure the event thread survived (the oldest are
    /// dropped past a few dozen: the sampler takes them every sample).
    pub fn fault(&self, fault: Fault) {
        let mut faults = match self.faults.lock() {
            Ok(faults) => faults,
            Err(poisoned) => poisoned.into_inner(),
        };
        if faults.len() >= MAX_FAULTS {
            faults.remove(0);
        }
        faults.push(fault);
    }

    /// Take the failures reported since the last call.
    pub fn take_faults(&self) -> Vec<Fault> {
        match self.faults.lock() {
            Ok(mut faults) => std::mem::take(&mut *faults),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// Directories without a watch, to rescan.
    pub fn unwatched(&self) -> Vec<Vec<u8>> {
        match self.unwatched.lock() {
            Ok(set) => set.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }
}
