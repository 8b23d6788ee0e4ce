//! The fanotify backend (fanotify(7)): every event says which process
//! caused it.
//!
//! Which marks: a filesystem mark sees every write on the filesystem,
//! inside the tree or not, and each of those events costs the kernel a
//! file handle and us a read and a lookup: a busy neighbour on the same
//! disk kept the monitor at half a core. So a tree of up to
//! [`INODE_MARK_LIMIT`] directories gets an inode mark on each directory
//! (`FAN_EVENT_ON_CHILD`, like inotify's watches: only the tree's events
//! are queued), and a bigger one a filesystem mark on each filesystem it
//! spans, whose set-up costs the same for ten files or ten million. A tree
//! that grows past the limit while watched switches to filesystem marks
//! (added before the inode marks are flushed, so nothing is missed).
//! With filesystem marks, a directory outside the tree that keeps sending
//! events ([`NOISY`] of them) gets an ignore mark for its children
//! (Linux 6.0), removed again when any directory moves into the tree or a
//! hard link is found (see below); a build writing a new directory every
//! few files still costs (`cargo bench --bench fanotify_busy`). Mount
//! marks cannot report directory events. `MONITORD_FANOTIFY_MARKS=inode|filesystem`
//! forces one kind, and `=N` sets the limit (for tests and benchmarks);
//! `status` shows the marks in force as `fanotify_marks`.
//!
//! The group reports directory file handles and names
//! (`FAN_REPORT_DFID_NAME`): each event names the directory it happened in
//! (a file handle, with its filesystem's id) and the entry's name. The
//! event thread resolves the handle with `open_by_handle_at` on a mount of
//! that filesystem inside the tree and `/proc/self/fd`, keeps the answer
//! in a cache (cleared whenever a directory of the tree is moved or
//! deleted, since that changes paths), and drops events outside the tree,
//! in excluded paths, or caused by monitord itself (its writes to the
//! store). The root is known by its identity, not its path: renamed or
//! removed, it is still the directory watched.
//!
//! A file of the tree with other names outside it (hard links) is written
//! through those too: such files are found as the tree is marked (and as
//! files are made in it), and the group also reports each event's own
//! file handle (`FAN_REPORT_FID`), so a write whose directory lies outside
//! the tree is still known by its file: with inode marks the file itself
//! is marked, a filesystem mark sees it anyway. A tree given filesystem
//! marks at start is not walked, so only links made while it runs are
//! known there.
//!
//! Mounts inside the tree are other filesystems: each is marked too (its
//! filesystem, or its directories), and /proc/self/mountinfo is checked at
//! every sample barrier (a `poll` for its change flag, re-read only when
//! set). A new mount or an unmount makes its directory a dirty subtree:
//! what is there now is compared with the mirror.
//!
//! Needs CAP_SYS_ADMIN (checked with a filesystem mark at start, even when
//! inode marks follow) and CAP_DAC_READ_SEARCH (`open_by_handle_at`).
//! `FAN_Q_OVERFLOW` means a rescan, as with inotify (and, with inode marks,
//! marking the tree again: a lost event may have been a new directory).
//! The sample barrier holds for the same reason as inotify's: fanotify
//! queues an event in the write system call, before it returns.
//!
//! Byte layout read here (uapi/linux/fanotify.h): each event is a
//! `fanotify_event_metadata` (event_len u32, vers u8, reserved u8,
//! metadata_len u16, mask u64, fd i32, pid i32) followed by info records,
//! each a header (info_type u8, pad u8, len u16); a `DFID_NAME` record
//! holds fsid (8 bytes), a `file_handle` (handle_bytes u32, handle_type
//! i32, the handle) and the NUL-terminated name.
//!
//! This file holds the backend's start, the event thread's state and the
//! handling of each event; the rest lies beside it by job: `decode`
//! (reading events, file handles and their paths below the root), `marks`
//! (inode, filesystem and ignore marks, and the mounts below the root),
//! `links` (files of the tree with names outside it) and `writers` (who
//! wrote: the target's family, followed by fork events).

mod decode;
mod links;
mod marks;
mod writers;

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use nix::errno::Errno;

use super::thread::{self, Queue, Reader, Threaded};
use super::{Dirty, Error, Event, Options, Source};
use crate::exclude::Matcher;
use crate::tree;
use decode::{Raw, fd_path, fsid, parse_event};
use marks::mark;

/// The fanotify backend.
pub struct Fanotify;

const MASK: u64 = libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_MODIFY
    | libc::FAN_CLOSE_WRITE
    | libc::FAN_ATTRIB
    | libc::FAN_ONDIR;

/// Directory events that change paths below them.
const DIR_CHANGES: u64 = libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO;

/// Directories marked one by one at most; a bigger tree gets filesystem
/// marks. Marking costs an `openat` and a `fanotify_mark` per directory
/// and a stat per file (for hard links) at start: 0.64 s for 10,000
/// directories and 100,000 files (inotify's watches: 0.40 s; a filesystem
/// mark: 0.5 ms; `cargo bench --bench backends`), and fanotify's per-user
/// mark limit (`fs.fanotify.max_user_marks`) is shared with other
/// programs.
const INODE_MARK_LIMIT: u64 = 16_384;

const CACHE_LIMIT: usize = 65_536;

/// Which marks are in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marks {
    /// One inode mark per directory of the tree.
    Inodes,
    /// One filesystem mark per filesystem the tree spans.
    Filesystems,
}

/// A filesystem the tree spans: the root's own, or one mounted below it.
/// No fd of it is kept open, which would make it busy and unmountable.
struct Mount {
    /// The mount's ID in /proc/self/mountinfo (`None`: the root's).
    id: Option<u64>,
    /// Its mount point below the root.
    rel: Vec<u8>,
    /// The filesystem's id, as events report it.
    fsid: [u8; 8],
}

impl Fanotify {
    /// Mark the tree below `root` (its directories, or the filesystems it
    /// spans) and start the event thread.
    ///
    /// # Errors
    /// [`Error::Fanotify`] naming the step and suggesting another backend
    /// when the kernel or the filesystem refuses.
    pub fn start(root: &OwnedFd, options: Options) -> Result<Box<dyn Source>, Error> {
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK
            | libc::FAN_REPORT_DFID_NAME
            | libc::FAN_REPORT_FID;
        let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint;
        // SAFETY: fanotify_init takes two flag words and returns a new fd or -1.
        let fd = unsafe { libc::fanotify_init(flags, event_flags) };
        if fd < 0 {
            return Err(Error::Fanotify { what: "fanotify_init", errno: Errno::last() });
        }
        // SAFETY: the kernel just returned this fd; nothing else owns it.
        let group = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Err(e) = crate::failpoint::check("events.watch_add") {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
            return Err(Error::Fanotify { what: "fanotify_mark", errno });
        }
        // A filesystem mark first, whatever marks follow: it needs
        // CAP_SYS_ADMIN, which `open_by_handle_at` (CAP_DAC_READ_SEARCH)
        // and the writers' PIDs need too, and it says whether this
        // filesystem reports directory events at all.
        mark(group.as_fd(), libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM, MASK, root.as_fd())
            .map_err(|errno| Error::Fanotify { what: "fanotify_mark", errno })?;
        let root_path =
            fd_path(root.as_fd()).ok_or(Error::Fanotify { what: "readlink", errno: Errno::ENOENT })?;
        let root_id =
            tree::dir_identity(root.as_fd()).ok_or(Error::Fanotify { what: "fstat", errno: Errno::EBADF })?;
        let root_fsid = fsid(root.as_fd()).map_err(|errno| Error::Fanotify { what: "fstatfs", errno })?;
        let (queue, events) = thread::queue(options.capacity);
        let root = root.try_clone().map_err(Error::Dup)?;
        let mut worker = Worker {
            mounts: vec![Mount { id: None, rel: Vec::new(), fsid: root_fsid }],
            group,
            root,
            root_path,
            root_id,
            excludes: options.excludes,
            skip: options.skip,
            store_rel: None,
            cache: HashMap::new(),
            target: options.target,
            family: std::iter::once(options.target).collect(),
            others: std::collections::HashSet::new(),
            named: HashMap::new(),
            batch: 0,
            forks: crate::proc::forks::Forks::open().ok(),
            me: std::process::id() as i32,
            buf: vec![0u8; 256 * 1024],
            marks: Marks::Filesystems,
            linked: HashMap::new(),
            noisy: HashMap::new(),
            ignored: Vec::new(),
            can_ignore: true,
            marked: 0,
            limit: INODE_MARK_LIMIT,
            quiet: false,
            mountinfo: std::fs::File::open("/proc/self/mountinfo").ok(),
        };
        worker.follow_mounts(&queue, true);
        let forced = std::env::var("MONITORD_FANOTIFY_MARKS").unwrap_or_default();
        if forced == "inode" {
            worker.limit = u64::MAX;
        } else if let Ok(limit) = forced.parse() {
            worker.limit = limit;
        }
        if forced == "filesystem" {
            worker.switch_to_filesystems(&queue);
        } else {
            worker.marks = Marks::Inodes;
        }
        // Past the limit, mark_tree switches to filesystem marks itself.
        if worker.marks == Marks::Inodes && worker.mark_tree(b"", &queue) {
            // Only the tree's directories now: the filesystem mark goes.
            let _ = mark(
                worker.group.as_fd(),
                libc::FAN_MARK_REMOVE | libc::FAN_MARK_FILESYSTEM,
                MASK,
                worker.root.as_fd(),
            );
        }
        worker.publish(&queue);
        Ok(Box::new(Threaded::spawn("monitord-fanotify", worker, queue, events)?))
    }
}

struct Worker {
    group: OwnedFd,
    root: OwnedFd,
    /// The root's path when last read (it changes when the root is
    /// renamed; [`Worker::relative`] reads it again then).
    root_path: Vec<u8>,
    /// The root's (device, inode).
    root_id: (u64, u64),
    /// The filesystems the tree spans, the root's first.
    mounts: Vec<Mount>,
    excludes: Matcher,
    skip: Option<(u64, u64)>,
    /// The store's path below the root, once an event has shown it.
    store_rel: Option<Vec<u8>>,
    /// Directory fid (fsid, handle) → its path below the root (`None`:
    /// outside).
    cache: HashMap<Vec<u8>, Option<Vec<u8>>>,
    target: i32,
    /// The target and every descendant seen (by fork events or ancestry).
    family: std::collections::HashSet<i32>,
    /// Other PIDs already checked: not of the family.
    others: std::collections::HashSet<i32>,
    /// Writers already named, by PID (see `writers.rs`).
    named: HashMap<i32, writers::Named>,
    /// Reads of the queue so far: a writer is named once per read.
    batch: u64,
    /// Fork events, so children that exit before their events are read
    /// are still known (None without CAP_NET_ADMIN: ancestry only).
    forks: Option<crate::proc::forks::Forks>,
    me: i32,
    buf: Vec<u8>,
    marks: Marks,
    /// Directories outside the tree (fid) → events seen from them.
    noisy: HashMap<Vec<u8>, u32>,
    /// Directories outside the tree with an ignore mark (fid).
    ignored: Vec<Vec<u8>>,
    /// The kernel takes ignore marks on directories' children (6.0).
    can_ignore: bool,
    /// Files of the tree with other names: their fid → a name inside.
    linked: HashMap<Vec<u8>, Vec<u8>>,
    /// Inode marks placed (directories deleted since still count until
    /// the tree is marked again).
    marked: u64,
    /// Inode marks allowed before switching to filesystem marks.
    limit: u64,
    /// Retrying: a directory that still cannot be marked is not reported
    /// again.
    quiet: bool,
    /// /proc/self/mountinfo, polled for changes at each barrier.
    mountinfo: Option<std::fs::File>,
}

impl Reader for Worker {
    fn fd(&self) -> BorrowedFd<'_> {
        self.group.as_fd()
    }

    fn read_all(&mut self, queue: &Queue) {
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let n = match nix::unistd::read(&self.group, &mut buf) {
                Ok(0) | Err(Errno::EAGAIN) => break,
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            self.follow_forks();
            self.batch += 1;
            let mut at = 0;
            while let Some((raw, len)) = parse_event(&buf[at..n]) {
                at += len;
                queue.shared.events.fetch_add(1, Ordering::Relaxed);
                self.handle(&raw, queue);
            }
        }
        self.buf = buf;
    }

    fn rules(&mut self, rules: Matcher, changed: &[Vec<u8>], queue: &Queue) {
        self.excludes = rules;
        for dir in changed {
            if !dir.is_empty() && self.excludes.is_excluded_anywhere(dir, true) {
                continue;
            }
            // A filesystem mark sees the directories let in already.
            if self.marks == Marks::Inodes {
                self.mark_tree(dir, queue);
            }
            queue.push(Event::anonymous(Dirty::Subtree(dir.clone())));
        }
        self.publish(queue);
    }

    /// At each barrier: follow mounts and unmounts below the root, and
    /// mark again the directories that could not be marked (each then
    /// compared whole).
    fn retry(&mut self, queue: &Queue) {
        self.follow_mounts(queue, false);
        let dirs = queue.shared.unwatched();
        if !dirs.is_empty() {
            if let Ok(mut unwatched) = queue.shared.unwatched.lock() {
                unwatched.clear();
            }
            // Those still failing stay rescanned, without a new report.
            self.quiet = true;
            for dir in dirs {
                match self.marks {
                    Marks::Inodes => {
                        self.mark_tree(&dir, queue);
                    }
                    Marks::Filesystems => self.mark_filesystem_at(&dir, queue),
                }
                queue.push(Event::anonymous(Dirty::Subtree(dir)));
            }
            self.quiet = false;
        }
        self.publish(queue);
    }
}

impl Worker {
    fn handle(&mut self, raw: &Raw<'_>, queue: &Queue) {
        if raw.mask & libc::FAN_Q_OVERFLOW != 0 {
            queue.shared.overflow();
            if self.marks == Marks::Inodes {
                // A lost event may have been a new directory, unmarked.
                self.marked = 0;
                self.mark_tree(b"", queue);
                self.publish(queue);
            }
            return;
        }
        let Some(fid) = raw.fid else { return };
        let is_dir = raw.mask & libc::FAN_ONDIR != 0;
        let changes_paths = is_dir && raw.mask & DIR_CHANGES != 0;
        let dir = self.resolve(fid);
        if changes_paths && dir.is_some() {
            // Paths below a directory of the tree moved or deleted are no
            // longer what the cache says (and a directory moved in from
            // outside is no longer outside, nor to be ignored).
            self.cache.clear();
            if raw.mask & libc::FAN_MOVED_TO != 0 {
                self.unignore_all(queue);
            }
        }
        if raw.pid == self.me {
            return;
        }
        let Some(dir) = dir else {
            // Written through a name outside the tree, to a file that has
            // one inside too: that name is dirty (the sampler dirties its
            // other names).
            let inside = raw.object.and_then(|object| self.linked.get(object)).cloned();
            if let Some(path) = inside.filter(|_| !is_dir) {
                let writer = Some(self.writer(raw.pid));
                queue.push(Event { dirty: Dirty::Path(path), writer });
            } else {
                self.count_outside(fid, queue);
            }
            return;
        };
        let path = if raw.name.is_empty() || raw.name == b"." { dir } else { tree::join(&dir, raw.name) };
        if !self.excludes.is_reported_anywhere(&path, is_dir)
            || self.store_rel.as_ref().is_some_and(|store| tree::is_within(&path, store))
        {
            return;
        }
        let dirty = match (is_dir, changes_paths) {
            (true, true) => {
                if self.marks == Marks::Inodes && raw.mask & (libc::FAN_CREATE | libc::FAN_MOVED_TO) != 0 {
                    self.mark_tree(&path, queue);
                    self.publish(queue);
                }
                Dirty::Subtree(path)
            }
            (true, false) => return,
            (false, _) => {
                if raw.mask & (libc::FAN_CREATE | libc::FAN_MOVED_TO) != 0 {
                    let (parent, name) = tree::split(&path);
                    if let Ok(parent_fd) = tree::open_dir(self.root.as_fd(), parent) {
                        self.track_link(parent_fd.as_fd(), parent, name, queue);
                    }
                }
                Dirty::Path(path)
            }
        };
        let writer = Some(self.writer(raw.pid));
        queue.push(Event { dirty, writer });
    }
}
