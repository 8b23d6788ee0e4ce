//! The inotify backend (inotify(7)).
//!
//! One watch per directory of the tree, added through
//! `/proc/self/fd/<dirfd>` of a directory opened strictly beneath the root
//! (without `IN_DONT_FOLLOW`: the magic link must be followed to the
//! directory it stands for),
//! so a watch never lands on something a symlink points to. Limits:
//! `fs.inotify.max_user_watches` (a directory that cannot be watched is
//! rescanned every sample instead) and `fs.inotify.max_queued_events`
//! (`IN_Q_OVERFLOW` means a rescan of the whole tree).
//!
//! Kernel quirks handled here:
//! - files created in a new directory before its watch exists are not
//!   reported: every new directory is reported as a dirty subtree, which
//!   the sampler scans after the watch is in place;
//! - a moved directory keeps its watch descriptor but our path for it is
//!   stale: both ends of a directory move are treated as subtree changes,
//!   and the watches below the old name are dropped and added again;
//! - the sample barrier: events for writes that returned before a sample
//!   began are already in the kernel queue, so [`Inotify::sync`] makes the
//!   thread read the queue dry before the sampler drains.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify as Kernel, WatchDescriptor};

use super::{Dirty, Error, Shared};
use crate::tree::{self, Excludes};

enum Request {
    Sync(Sender<()>),
    Stop,
}

/// The running inotify event thread.
pub struct Inotify {
    thread: Option<JoinHandle<()>>,
    wake: Arc<EventFd>,
    requests: Sender<Request>,
    dirty: Receiver<Dirty>,
    shared: Arc<Shared>,
}

struct Worker {
    kernel: Kernel,
    root: OwnedFd,
    excludes: Excludes,
    skip: Option<(u64, u64)>,
    paths: HashMap<WatchDescriptor, Vec<u8>>,
    out: Sender<Dirty>,
    shared: Arc<Shared>,
}

const MASK: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_ONLYDIR)
    .union(AddWatchFlags::from_bits_retain(libc::IN_EXCL_UNLINK));

impl Inotify {
    /// Watch every directory below `root` (a directory fd, duplicated
    /// here) and start the event thread. Watches are in place when this
    /// returns, so a baseline taken afterwards misses nothing.
    ///
    /// # Errors
    /// [`Error::Init`] when inotify cannot be created, [`Error::Thread`]
    /// when the thread cannot start.
    pub fn start(
        root: &OwnedFd,
        excludes: Excludes,
        skip: Option<(u64, u64)>,
        capacity: usize,
    ) -> Result<Inotify, Error> {
        let kernel = Kernel::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(Error::Init)?;
        let wake = Arc::new(
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(Error::Init)?,
        );
        let (out, dirty) = bounded(capacity);
        let (requests, request_rx) = bounded(64);
        let shared = Arc::new(Shared::default());
        let root = root.try_clone().map_err(Error::Thread)?;
        let mut worker =
            Worker { kernel, root, excludes, skip, paths: HashMap::new(), out, shared: Arc::clone(&shared) };
        worker.watch_tree(b"");
        let thread_wake = Arc::clone(&wake);
        let thread = std::thread::Builder::new()
            .name("monitord-events".into())
            .spawn(move || worker.run(&thread_wake, &request_rx))
            .map_err(Error::Thread)?;
        Ok(Inotify { thread: Some(thread), wake, requests, dirty, shared })
    }
}

impl super::Source for Inotify {
    fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Return once every event queued in the kernel before this call has
    /// been read and put on the queue.
    fn sync(&mut self, timeout: Duration) -> bool {
        let (tx, rx) = bounded(1);
        if self.requests.send(Request::Sync(tx)).is_err() {
            return false;
        }
        let _ = self.wake.write(1);
        rx.recv_timeout(timeout).is_ok()
    }

    fn drain(&mut self, into: &mut Vec<super::Event>) {
        into.extend(self.dirty.try_iter().map(|dirty| super::Event { dirty, pid: None }));
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Stop);
        let _ = self.wake.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Worker {
    fn run(&mut self, wake: &EventFd, requests: &Receiver<Request>) {
        loop {
            let (inotify_ready, wake_ready) = {
                let mut fds = [
                    PollFd::new(self.kernel.as_fd(), PollFlags::POLLIN),
                    PollFd::new(wake.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(_) => return,
                }
                let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), ready(&fds[1]))
            };
            if inotify_ready || wake_ready {
                self.read_all();
            }
            if wake_ready {
                let _ = wake.read();
                for request in requests.try_iter() {
                    match request {
                        Request::Sync(reply) => {
                            let _ = reply.send(());
                        }
                        Request::Stop => return,
                    }
                }
            }
        }
    }

    /// Read the kernel queue until it is empty.
    fn read_all(&mut self) {
        loop {
            match self.kernel.read_events() {
                Ok(events) if events.is_empty() => return,
                Ok(events) => {
                    self.shared.events.fetch_add(events.len() as u64, Ordering::Relaxed);
                    for event in events {
                        self.handle(event.wd, event.mask, event.name.map(|n| n.into_encoded_bytes()));
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    }

    fn handle(&mut self, wd: WatchDescriptor, mask: AddWatchFlags, name: Option<Vec<u8>>) {
        if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            self.shared.overflow();
            return;
        }
        if mask.contains(AddWatchFlags::IN_IGNORED) {
            self.paths.remove(&wd);
            self.shared.watches.store(self.paths.len() as u64, Ordering::Relaxed);
            return;
        }
        let Some(dir) = self.paths.get(&wd).cloned() else { return };
        let Some(name) = name else {
            // IN_DELETE_SELF / IN_MOVE_SELF: the parent's events cover a
            // subdirectory; for the root itself, compare everything.
            if dir.is_empty() && mask.intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
            {
                self.push(Dirty::Subtree(Vec::new()));
            }
            return;
        };
        let path = tree::join(&dir, &name);
        if self.excludes.is_excluded(&path) {
            return;
        }
        if mask.contains(AddWatchFlags::IN_ISDIR) {
            if mask.intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM) {
                self.unwatch_tree(&path);
            }
            if mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO) {
                self.watch_tree(&path);
            }
            if mask.intersects(
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_FROM,
            ) {
                self.push(Dirty::Subtree(path));
            }
            return;
        }
        self.push(Dirty::Path(path));
    }

    fn push(&self, dirty: Dirty) {
        match self.out.try_send(dirty) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.shared.overflow(),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Add watches to `start` and every directory below it.
    fn watch_tree(&mut self, start: &[u8]) {
        let mut added = Vec::new();
        let failed = std::cell::RefCell::new(Vec::new());
        let kernel = &self.kernel;
        tree::walk(
            self.root.as_fd(),
            start,
            &self.excludes,
            self.skip,
            &mut |rel, dir, _| {
                let proc_path = format!("/proc/self/fd/{}", dir.as_raw_fd());
                match kernel.add_watch(proc_path.as_str(), MASK) {
                    Ok(wd) => added.push((wd, rel.to_vec())),
                    Err(errno) => failed.borrow_mut().push((rel.to_vec(), errno)),
                }
            },
            &mut |rel, errno| {
                if errno != Errno::ENOENT && errno != Errno::ENOTDIR {
                    failed.borrow_mut().push((rel.to_vec(), errno));
                }
            },
        );
        for (wd, rel) in added {
            self.paths.insert(wd, rel);
        }
        let failed = failed.into_inner();
        if !failed.is_empty() {
            let mut unwatched = match self.shared.unwatched.lock() {
                Ok(set) => set,
                Err(poisoned) => poisoned.into_inner(),
            };
            for (rel, _) in failed {
                unwatched.insert(rel);
            }
        }
        self.shared.watches.store(self.paths.len() as u64, Ordering::Relaxed);
    }

    /// Drop the watches of `start` and every directory below it.
    fn unwatch_tree(&mut self, start: &[u8]) {
        let gone: Vec<WatchDescriptor> =
            self.paths.iter().filter(|(_, p)| tree::is_within(p, start)).map(|(wd, _)| *wd).collect();
        for wd in gone {
            let _ = self.kernel.rm_watch(wd);
            self.paths.remove(&wd);
        }
        if let Ok(mut unwatched) = self.shared.unwatched.lock() {
            unwatched.retain(|p| !tree::is_within(p, start));
        }
        self.shared.watches.store(self.paths.len() as u64, Ordering::Relaxed);
    }
}
