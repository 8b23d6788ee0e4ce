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
//!   stale: both ends of a directory move are treated as subtree changes;
//!   the directories below the new name are watched again, which returns
//!   the watch descriptors they already had and gives each its new path.
//!   The events of a move are read after it happened (and the two
//!   `IN_MOVED_FROM`/`IN_MOVED_TO` pairs of a `RENAME_EXCHANGE` after both
//!   directories are in place), so a path is never taken from an event:
//!   watches below a name that moved away or was deleted are only
//!   suspected, and once the queue is read dry each suspect is kept if its
//!   path still leads to its directory (same device and inode) and
//!   dropped otherwise (moved out of the tree);
//! - a write through a hard link outside the tree raises no event on the
//!   tree's directories: a file with names outside the tree gets a watch
//!   of its own (`IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE`), asked for by
//!   the sampler ([`Source::watch_files`]) and dropped when the file goes
//!   or its outside names do; its events name the inode
//!   ([`Dirty::Inode`]), which the sampler turns into its names. A link
//!   made from outside to a file that had one name raises no event in the
//!   tree at all: the file is watched from its next change seen there;
//! - the sample barrier: events for writes that returned before a sample
//!   began are already in the kernel queue, so [`Source::sync`] makes the
//!   thread read the queue dry before the sampler drains.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify as Kernel, WatchDescriptor};
use nix::sys::stat::{Mode, SFlag, fstat};

use super::thread::{self, Queue, Reader, Threaded};
use super::{Dirty, Error, Event, Linked, Source};
use crate::exclude::Matcher;
use crate::fault::Fault;
use crate::tree;

/// The inotify backend.
pub struct Inotify;

struct Worker {
    kernel: Kernel,
    root: OwnedFd,
    excludes: Matcher,
    skip: Option<(u64, u64)>,
    /// Watched directories.
    dirs: HashMap<WatchDescriptor, Watched>,
    /// Directory watches whose path may be stale (it, or a directory above
    /// it, moved away or was deleted): checked once the queue is read dry.
    suspects: HashSet<WatchDescriptor>,
    /// Watches on files that have names outside the tree, and the inode
    /// each watches.
    files: HashMap<WatchDescriptor, (u64, u64)>,
    /// The same, by inode.
    file_wds: HashMap<(u64, u64), WatchDescriptor>,
}

/// A watched directory: its path below the root and its identity
/// (device, inode), to tell whether the path still leads to it.
struct Watched {
    path: Vec<u8>,
    id: (u64, u64),
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

/// The watch on a file with names outside the tree: its writes, and its
/// link count changing (`IN_ATTRIB`).
const FILE_MASK: AddWatchFlags =
    AddWatchFlags::IN_MODIFY.union(AddWatchFlags::IN_ATTRIB).union(AddWatchFlags::IN_CLOSE_WRITE);

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
        excludes: Matcher,
        skip: Option<(u64, u64)>,
        capacity: usize,
    ) -> Result<Box<dyn Source>, Error> {
        let kernel = Kernel::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(Error::Init)?;
        let (queue, events) = thread::queue(capacity);
        let root = root.try_clone().map_err(Error::Thread)?;
        let mut worker = Worker {
            kernel,
            root,
            excludes,
            skip,
            dirs: HashMap::new(),
            suspects: HashSet::new(),
            files: HashMap::new(),
            file_wds: HashMap::new(),
        };
        worker.watch_tree(b"", &queue, true);
        Ok(Box::new(Threaded::spawn("monitord-events", worker, queue, events)?))
    }
}

impl Reader for Worker {
    fn fd(&self) -> BorrowedFd<'_> {
        self.kernel.as_fd()
    }

    fn read_all(&mut self, queue: &Queue) {
        loop {
            match self.kernel.read_events() {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    queue.shared.events.fetch_add(events.len() as u64, Ordering::Relaxed);
                    for event in events {
                        self.handle(event.wd, event.mask, event.name.map(|n| n.into_encoded_bytes()), queue);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        self.check_suspects(queue);
    }

    /// Watch again the directories that could not be watched. Each one is
    /// then compared whole, for what changed while it had no watch; those
    /// still failing stay rescanned every sample (and are not reported
    /// again).
    fn retry(&mut self, queue: &Queue) {
        let dirs = queue.shared.unwatched();
        if dirs.is_empty() {
            return;
        }
        if let Ok(mut unwatched) = queue.shared.unwatched.lock() {
            unwatched.clear();
        }
        let mut done: Vec<&[u8]> = Vec::new();
        for dir in &dirs {
            if done.iter().any(|d| tree::is_within(dir, d)) {
                continue;
            }
            self.watch_tree(dir, queue, false);
            queue.push(Event::anonymous(Dirty::Subtree(dir.clone())));
            done.push(dir);
        }
    }

    fn rules(&mut self, rules: Matcher, changed: &[Vec<u8>], queue: &Queue) {
        self.excludes = rules;
        for dir in changed {
            if dir.is_empty() || !self.excludes.is_excluded_anywhere(dir, true) {
                self.watch_tree(dir, queue, true);
                queue.push(Event::anonymous(Dirty::Subtree(dir.clone())));
            }
        }
    }

    /// Watch exactly the files in `files` (each by one of its names in the
    /// tree). A new watch is followed by a dirty inode: whatever was
    /// written between the sampler's read and the watch is read then.
    fn watch_files(&mut self, files: &[Linked], queue: &Queue) {
        let wanted: HashSet<(u64, u64)> = files.iter().map(|f| (f.dev, f.ino)).collect();
        let gone: Vec<((u64, u64), WatchDescriptor)> =
            self.file_wds.iter().filter(|(id, _)| !wanted.contains(id)).map(|(id, wd)| (*id, *wd)).collect();
        for (id, wd) in gone {
            let _ = self.kernel.rm_watch(wd);
            self.files.remove(&wd);
            self.file_wds.remove(&id);
        }
        for file in files {
            let id = (file.dev, file.ino);
            if self.file_wds.contains_key(&id) {
                continue;
            }
            match self.watch_file(&file.path, id) {
                Ok(Some(wd)) => {
                    self.files.insert(wd, id);
                    self.file_wds.insert(id, wd);
                    queue.push(Event::anonymous(Dirty::Inode(id.0, id.1)));
                }
                // Gone or replaced since the sampler saw it: the event
                // that did it tells the sampler, which asks again.
                Ok(None) => {}
                Err(errno) => {
                    queue.shared.fault(Fault::WatchFile { path: file.path.clone(), source: errno.into() })
                }
            }
        }
    }
}

impl Worker {
    fn handle(&mut self, wd: WatchDescriptor, mask: AddWatchFlags, name: Option<Vec<u8>>, queue: &Queue) {
        let push = |dirty| queue.push(Event::anonymous(dirty));
        if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            queue.shared.overflow();
            return;
        }
        if let Some(&id) = self.files.get(&wd) {
            if mask.contains(AddWatchFlags::IN_IGNORED) {
                self.files.remove(&wd);
                self.file_wds.remove(&id);
            } else {
                push(Dirty::Inode(id.0, id.1));
            }
            return;
        }
        if mask.contains(AddWatchFlags::IN_IGNORED) {
            self.dirs.remove(&wd);
            self.suspects.remove(&wd);
            queue.shared.watches.store(self.dirs.len() as u64, Ordering::Relaxed);
            return;
        }
        let Some(dir) = self.dirs.get(&wd).map(|w| w.path.clone()) else { return };
        let Some(name) = name else {
            // IN_DELETE_SELF / IN_MOVE_SELF: the parent's events cover a
            // subdirectory; for the root itself, compare everything. A
            // directory that moved (perhaps from a parent without a
            // watch) has its path checked.
            if dir.is_empty() && mask.intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
            {
                push(Dirty::Subtree(Vec::new()));
            } else if mask.contains(AddWatchFlags::IN_MOVE_SELF) {
                self.suspects.insert(wd);
            }
            return;
        };
        let path = tree::join(&dir, &name);
        if !self.excludes.is_reported(&path, mask.contains(AddWatchFlags::IN_ISDIR)) {
            return;
        }
        if mask.contains(AddWatchFlags::IN_ISDIR) {
            if mask.intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM) {
                self.suspect_tree(&path, queue);
            }
            // A directory made below one the rules came to leave out after
            // it was watched is not watched.
            if mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                && !self.excludes.is_excluded_anywhere(&path, true)
            {
                self.watch_tree(&path, queue, true);
            }
            if mask.intersects(
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_FROM,
            ) {
                push(Dirty::Subtree(path));
            }
            return;
        }
        push(Dirty::Path(path));
    }

    /// Add watches to `start` and every directory below it (a directory
    /// watched already keeps its watch descriptor and gets its new path).
    /// A directory that cannot be watched is rescanned every sample
    /// instead, and said so when `report`.
    fn watch_tree(&mut self, start: &[u8], queue: &Queue, report: bool) {
        let mut added = Vec::new();
        let failed = std::cell::RefCell::new(Vec::new());
        let kernel = &self.kernel;
        tree::walk(
            self.root.as_fd(),
            start,
            &|path, is_dir| !self.excludes.is_excluded(path, is_dir),
            self.skip,
            &mut |rel, dir, _| {
                let proc_path = format!("/proc/self/fd/{}", dir.as_raw_fd());
                let watch = match crate::failpoint::check("events.watch_add") {
                    Ok(()) => kernel.add_watch(proc_path.as_str(), MASK),
                    Err(e) => Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
                };
                match watch {
                    Ok(wd) => {
                        let id = tree::dir_identity(dir).unwrap_or_default();
                        added.push((wd, Watched { path: rel.to_vec(), id }))
                    }
                    Err(errno) => failed.borrow_mut().push((rel.to_vec(), errno)),
                }
            },
            &mut |rel, errno| {
                if errno != Errno::ENOENT && errno != Errno::ENOTDIR {
                    failed.borrow_mut().push((rel.to_vec(), errno));
                }
            },
        );
        for (wd, watched) in added {
            self.dirs.insert(wd, watched);
        }
        let failed = failed.into_inner();
        if !failed.is_empty() {
            let mut unwatched = match queue.shared.unwatched.lock() {
                Ok(set) => set,
                Err(poisoned) => poisoned.into_inner(),
            };
            for (rel, errno) in failed {
                if report {
                    queue.shared.fault(Fault::WatchDir { path: rel.clone(), source: errno.into() });
                }
                unwatched.insert(rel);
            }
        }
        queue.shared.watches.store(self.dirs.len() as u64, Ordering::Relaxed);
    }

    /// `start` moved away or was deleted: the watches of it and of every
    /// directory below it may now have stale paths. Those directories
    /// that could not be watched are forgotten (a move within the tree
    /// walks them again under their new name).
    fn suspect_tree(&mut self, start: &[u8], queue: &Queue) {
        let suspects = &mut self.suspects;
        suspects.extend(self.dirs.iter().filter(|(_, w)| tree::is_within(&w.path, start)).map(|(wd, _)| *wd));
        if let Ok(mut unwatched) = queue.shared.unwatched.lock() {
            unwatched.retain(|p| !tree::is_within(p, start));
        }
    }

    /// Keep each suspected watch whose path still leads to its directory;
    /// drop the others (and suspect those below them): they left the tree.
    fn check_suspects(&mut self, queue: &Queue) {
        while !self.suspects.is_empty() {
            let suspects: Vec<WatchDescriptor> = self.suspects.drain().collect();
            for wd in suspects {
                let Some(watched) = self.dirs.get(&wd) else { continue };
                let here = tree::open_dir(self.root.as_fd(), &watched.path)
                    .ok()
                    .and_then(|fd| tree::dir_identity(fd.as_fd()));
                if here == Some(watched.id) {
                    continue;
                }
                let path = watched.path.clone();
                let _ = self.kernel.rm_watch(wd);
                self.dirs.remove(&wd);
                let suspects = &mut self.suspects;
                suspects.extend(
                    self.dirs.iter().filter(|(_, w)| tree::is_within(&w.path, &path)).map(|(wd, _)| *wd),
                );
            }
        }
        queue.shared.watches.store(self.dirs.len() as u64, Ordering::Relaxed);
    }

    /// Watch the regular file at `path` if it is still the inode `id`;
    /// `None` when it is not (any more).
    fn watch_file(&self, path: &[u8], id: (u64, u64)) -> Result<Option<WatchDescriptor>, Errno> {
        let (parent, name) = tree::split(path);
        let Ok(dir) = tree::open_dir(self.root.as_fd(), parent) else { return Ok(None) };
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let Ok(fd) = openat(dir.as_fd(), tree::as_path(name), flags, Mode::empty()) else { return Ok(None) };
        let Ok(stat) = fstat(&fd) else { return Ok(None) };
        let regular = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
        if !regular || (stat.st_dev, stat.st_ino) != id {
            return Ok(None);
        }
        self.kernel.add_watch(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(), FILE_MASK).map(Some)
    }
}
