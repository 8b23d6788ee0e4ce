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

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use nix::errno::Errno;

use super::thread::{self, Queue, Reader, Threaded};
use super::{Dirty, Error, Event, Options, Source};
use crate::tree::{self, Excludes};

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

/// A mark on a file with several names: its writes, whichever name.
const LINK_MASK: u64 = libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE | libc::FAN_ATTRIB;

/// An ignore mark on a busy directory outside the tree: its children's
/// events and its own.
const IGNORE_MASK: u64 = MASK | libc::FAN_EVENT_ON_CHILD;

/// Events from one directory outside the tree before it is ignored.
const NOISY: u32 = 64;

/// An inode mark on a directory also reports its children's changes.
const INODE_MASK: u64 = MASK | libc::FAN_EVENT_ON_CHILD;

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

const METADATA_LEN: usize = 24;
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
    excludes: Excludes,
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

/// One event, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Raw<'a> {
    mask: u64,
    pid: i32,
    /// The directory's fid: fsid (8 bytes), handle_bytes (4),
    /// handle_type (4), the handle (the cache key).
    fid: Option<&'a [u8]>,
    /// The object's own fid, same layout (`FAN_REPORT_FID`).
    object: Option<&'a [u8]>,
    name: &'a [u8],
}

/// A fid's parts: fsid, handle type, handle.
fn split_fid(fid: &[u8]) -> Option<([u8; 8], i32, &[u8])> {
    let fsid: [u8; 8] = fid.get(..8)?.try_into().ok()?;
    let handle_type = i32::from_ne_bytes(fid.get(12..16)?.try_into().ok()?);
    Some((fsid, handle_type, fid.get(16..)?))
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
            let mut at = 0;
            while let Some((raw, len)) = parse_event(&buf[at..n]) {
                at += len;
                queue.shared.events.fetch_add(1, Ordering::Relaxed);
                self.handle(&raw, queue);
            }
        }
        self.buf = buf;
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
                queue.push(Event { dirty: Dirty::Subtree(dir), pid: None, by_target: false });
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
                let by_target = self.is_target_family(raw.pid);
                queue.push(Event { dirty: Dirty::Path(path), pid: Some(raw.pid), by_target });
            } else {
                self.count_outside(fid, queue);
            }
            return;
        };
        let path = if raw.name.is_empty() || raw.name == b"." { dir } else { tree::join(&dir, raw.name) };
        if self.excludes.is_excluded_anywhere(&path)
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
        let by_target = self.is_target_family(raw.pid);
        queue.push(Event { dirty, pid: Some(raw.pid), by_target });
    }

    /// Put an inode mark on every directory from `start` down (excluded
    /// ones and the store left out). Each directory is marked before it is
    /// listed, so a subdirectory made meanwhile is reported. False when the
    /// marks would pass the limit: the tree then gets filesystem marks.
    fn mark_tree(&mut self, start: &[u8], queue: &Queue) -> bool {
        let mut stack = vec![start.to_vec()];
        while let Some(rel) = stack.pop() {
            if self.marked >= self.limit {
                if self.marks == Marks::Inodes {
                    self.switch_to_filesystems(queue);
                }
                return false;
            }
            let dir = match tree::open_dir(self.root.as_fd(), &rel) {
                Ok(dir) => dir,
                Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
                Err(errno) => {
                    self.unmarked(rel, "open", errno, queue);
                    continue;
                }
            };
            if self.skip.is_some() && tree::dir_identity(dir.as_fd()) == self.skip {
                continue;
            }
            if let Err(errno) = mark(self.group.as_fd(), libc::FAN_MARK_ADD, INODE_MASK, dir.as_fd()) {
                self.unmarked(rel, "fanotify_mark", errno, queue);
                continue;
            }
            self.marked += 1;
            let entries = match tree::list_dir(dir.as_fd()) {
                Ok(entries) => entries,
                Err(errno) => {
                    self.unmarked(rel, "list", errno, queue);
                    continue;
                }
            };
            for (name, is_dir) in entries {
                let child = tree::join(&rel, &name);
                if self.excludes.is_excluded(&child) {
                    continue;
                }
                if is_dir {
                    stack.push(child);
                } else {
                    self.track_link(dir.as_fd(), &rel, &name, queue);
                }
            }
        }
        true
    }

    /// An event in a directory outside the tree, with filesystem marks:
    /// a directory that keeps sending them gets an ignore mark (its
    /// children's events never reach us), unless hard links are known (a
    /// write through a name there may be a write to the tree).
    fn count_outside(&mut self, fid: &[u8], queue: &Queue) {
        if self.marks != Marks::Filesystems || !self.can_ignore || !self.linked.is_empty() {
            return;
        }
        let count = match self.noisy.get_mut(fid) {
            Some(count) => count,
            None => {
                if self.noisy.len() >= CACHE_LIMIT {
                    self.noisy.clear();
                }
                self.noisy.entry(fid.to_vec()).or_insert(0)
            }
        };
        *count += 1;
        if *count != NOISY {
            return;
        }
        let Some(dir) = self.open_fid(fid) else { return };
        // Only what is outside now: the cache's answer may be stale.
        if self.relative(&dir).is_some()
            || fd_path(dir.as_fd()).is_none_or(|path| below(&path, &self.root_path).is_some())
        {
            return;
        }
        match mark(
            self.group.as_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORE_SURV,
            IGNORE_MASK,
            dir.as_fd(),
        ) {
            Ok(()) => {
                self.ignored.push(fid.to_vec());
                self.publish(queue);
            }
            // Before Linux 6.0: no ignore marks on directories' children.
            Err(Errno::EINVAL) => self.can_ignore = false,
            Err(_) => {}
        }
    }

    /// Remove every ignore mark: a directory moved into the tree may have
    /// one (they come back for directories that stay busy).
    fn unignore_all(&mut self, queue: &Queue) {
        if self.ignored.is_empty() {
            return;
        }
        for fid in std::mem::take(&mut self.ignored) {
            if let Some(dir) = self.open_fid(&fid) {
                let _ = mark(
                    self.group.as_fd(),
                    libc::FAN_MARK_REMOVE | libc::FAN_MARK_IGNORE,
                    IGNORE_MASK,
                    dir.as_fd(),
                );
            }
        }
        self.noisy.clear();
        self.publish(queue);
    }

    /// Open the directory `fid` names, on the first mount of its
    /// filesystem that knows it (a real open: `fanotify_mark` takes no
    /// O_PATH fd).
    fn open_fid(&self, fid: &[u8]) -> Option<OwnedFd> {
        use nix::fcntl::OFlag;
        let (fsid, handle_type, handle) = split_fid(fid)?;
        let found = self.mounts.iter().filter(|m| m.fsid == fsid).find_map(|m| match m.id {
            None => open_by_handle(self.root.as_fd(), handle_type, handle),
            Some(_) => {
                let mount = tree::open_dir(self.root.as_fd(), &m.rel).ok()?;
                open_by_handle(mount.as_fd(), handle_type, handle)
            }
        })?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        nix::fcntl::openat(&found, ".", flags, nix::sys::stat::Mode::empty()).ok()
    }

    /// A regular file of the tree with other names, which may lie outside
    /// it: remember its fid and one name inside, and (with inode marks)
    /// mark the file itself, so a write through any name is reported.
    fn track_link(&mut self, dir: BorrowedFd<'_>, rel: &[u8], name: &[u8], queue: &Queue) {
        if self.linked.len() >= CACHE_LIMIT {
            return;
        }
        let Ok(st) =
            nix::sys::stat::fstatat(dir, tree::as_path(name), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            return;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_nlink < 2 {
            return;
        }
        let Some(fid) = file_fid(dir, name) else { return };
        if self.marks == Marks::Inodes && mark_entry(self.group.as_fd(), LINK_MASK, dir, name).is_err() {
            return;
        }
        self.linked.insert(fid, tree::join(rel, name));
        // A name of it may lie in an ignored directory.
        self.unignore_all(queue);
    }

    /// Switch to (or stay with) filesystem marks: one on each filesystem
    /// the tree spans, then the inode marks are flushed. The filesystem
    /// marks are in place first, so no event is missed meanwhile.
    fn switch_to_filesystems(&mut self, queue: &Queue) {
        let rels: Vec<Vec<u8>> = self.mounts.iter().map(|m| m.rel.clone()).collect();
        for rel in rels {
            self.mark_filesystem_at(&rel, queue);
        }
        if self.marks == Marks::Inodes {
            // SAFETY: fanotify_mark on our group; FLUSH without a mark type
            // removes the group's inode marks and reads no path.
            unsafe {
                libc::fanotify_mark(self.group.as_raw_fd(), libc::FAN_MARK_FLUSH, 0, -1, std::ptr::null())
            };
        }
        self.marks = Marks::Filesystems;
        self.marked = 0;
        self.publish(queue);
    }

    /// A filesystem mark on the filesystem of the tree's directory `rel`.
    fn mark_filesystem_at(&mut self, rel: &[u8], queue: &Queue) {
        let marked = tree::open_dir(self.root.as_fd(), rel).and_then(|dir| {
            mark(self.group.as_fd(), libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM, MASK, dir.as_fd())
        });
        if let Err(errno) = marked {
            self.unmarked(rel.to_vec(), "fanotify_mark", errno, queue);
        }
    }

    /// A directory that could not be marked: rescanned every sample, and
    /// tried again at each barrier.
    fn unmarked(&mut self, rel: Vec<u8>, what: &'static str, errno: Errno, queue: &Queue) {
        if errno == Errno::ENOENT {
            return;
        }
        if !self.quiet {
            queue.shared.fault(crate::fault::Fault::MarkDir {
                path: rel.clone(),
                call: what,
                source: errno.into(),
            });
        }
        if let Ok(mut unwatched) = queue.shared.unwatched.lock() {
            unwatched.insert(rel);
        }
    }

    /// Tell `status` which marks are in force.
    fn publish(&self, queue: &Queue) {
        let (text, count) = match self.marks {
            Marks::Inodes => (format!("inode {} dirs", self.marked), self.marked),
            Marks::Filesystems => {
                let mut ids: Vec<[u8; 8]> = self.mounts.iter().map(|m| m.fsid).collect();
                ids.sort_unstable();
                ids.dedup();
                let mut text = format!("filesystem {}", ids.len());
                if !self.ignored.is_empty() {
                    text.push_str(&format!(", ignore {} busy dirs outside", self.ignored.len()));
                }
                (text, ids.len() as u64)
            }
        };
        queue.shared.watches.store(count, Ordering::Relaxed);
        if let Ok(mut marks) = queue.shared.marks.lock() {
            *marks = text;
        }
    }

    /// Compare the mounts below the root with the ones known: each new
    /// one is marked, and every new or gone one is a dirty subtree (what
    /// is there now is compared). At start (`first`) mountinfo is read
    /// whatever its change flag says, and nothing is marked or queued.
    fn follow_mounts(&mut self, queue: &Queue, first: bool) {
        let Some(file) = self.mountinfo.as_mut() else { return };
        if !first {
            let mut fds = [nix::poll::PollFd::new(file.as_fd(), nix::poll::PollFlags::POLLPRI)];
            let changed = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|_| {
                fds[0].revents().is_some_and(|r| {
                    r.intersects(nix::poll::PollFlags::POLLPRI | nix::poll::PollFlags::POLLERR)
                })
            });
            if !changed {
                return;
            }
        }
        let mut text = Vec::new();
        if file.rewind().and_then(|()| file.read_to_end(&mut text)).is_err() {
            return;
        }
        if let Some(path) = fd_path(self.root.as_fd()) {
            self.root_path = path;
        }
        let now: Vec<(u64, Vec<u8>)> = mounts_below(&text, &self.root_path)
            .into_iter()
            .filter(|(_, rel)| !self.excludes.is_excluded_anywhere(rel))
            .collect();
        let gone: Vec<Vec<u8>> = self
            .mounts
            .iter()
            .filter(|m| m.id.is_some_and(|id| !now.iter().any(|(n, _)| *n == id)))
            .map(|m| m.rel.clone())
            .collect();
        self.mounts.retain(|m| m.id.is_none_or(|id| now.iter().any(|(n, _)| *n == id)));
        let mut dirty = gone;
        for (id, rel) in now {
            if self.mounts.iter().any(|m| m.id == Some(id)) {
                continue;
            }
            let Ok(fd) = tree::open_dir(self.root.as_fd(), &rel) else { continue };
            let Ok(fsid) = fsid(fd.as_fd()) else { continue };
            drop(fd);
            self.mounts.push(Mount { id: Some(id), rel: rel.clone(), fsid });
            if !first && self.marks == Marks::Filesystems {
                self.mark_filesystem_at(&rel, queue);
            }
            dirty.push(rel);
        }
        if first || dirty.is_empty() {
            return;
        }
        // Handles now resolve through other mounts.
        self.cache.clear();
        for rel in dirty {
            if self.marks == Marks::Inodes {
                // The new mount's directories, or the ones it uncovered.
                self.mark_tree(&rel, queue);
            }
            queue.push(Event { dirty: Dirty::Subtree(rel), pid: None, by_target: false });
        }
        self.publish(queue);
    }
    /// Follow forks: a child of the family joins it. Called after each
    /// read of the fanotify queue, before its events are classified: a
    /// fork is reported before anything its child writes.
    fn follow_forks(&mut self) {
        let Some(forks) = &self.forks else { return };
        let family = &mut self.family;
        let others = &mut self.others;
        forks.drain(|parent, child| {
            if family.contains(&parent) {
                family.insert(child);
                others.remove(&child);
            }
        });
        if self.family.len() >= CACHE_LIMIT {
            self.family.clear();
            self.family.insert(self.target);
        }
    }

    /// Whether `pid` is the target or one of its descendants: known from
    /// fork events, else from its ancestry in /proc while it runs.
    fn is_target_family(&mut self, pid: i32) -> bool {
        if self.family.contains(&pid) {
            return true;
        }
        if self.others.contains(&pid) {
            return false;
        }
        if crate::proc::is_descendant(pid, self.target) {
            self.family.insert(pid);
            return true;
        }
        if self.others.len() >= CACHE_LIMIT {
            self.others.clear();
        }
        self.others.insert(pid);
        false
    }

    /// The path below the root of the directory `fid` names, if it is
    /// inside the tree: the handle is opened on each mount of its
    /// filesystem in the tree (a bind mount shows a directory of the
    /// root's filesystem under another path).
    fn resolve(&mut self, fid: &[u8]) -> Option<Vec<u8>> {
        if let Some(found) = self.cache.get(fid) {
            return found.clone();
        }
        let (fsid, handle_type, handle) = split_fid(fid)?;
        let mut found = None;
        for i in 0..self.mounts.len() {
            if self.mounts[i].fsid != fsid {
                continue;
            }
            let opened;
            let mount = match self.mounts[i].id {
                None => self.root.as_fd(),
                Some(_) => match tree::open_dir(self.root.as_fd(), &self.mounts[i].rel) {
                    Ok(fd) => {
                        opened = fd;
                        opened.as_fd()
                    }
                    Err(_) => continue,
                },
            };
            let Some(dir) = open_by_handle(mount, handle_type, handle) else { continue };
            found = self.relative(&dir);
            if found.is_some() {
                break;
            }
        }
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(fid.to_vec(), found.clone());
        found
    }

    fn relative(&mut self, dir: &OwnedFd) -> Option<Vec<u8>> {
        let st = nix::sys::stat::fstat(dir).ok()?;
        let id = (st.st_dev, st.st_ino);
        if id == self.root_id {
            // The root itself, wherever it is now, even removed.
            return Some(Vec::new());
        }
        let path = fd_path(dir.as_fd())?;
        let rel = match below(&path, &self.root_path) {
            Some(rel) => rel,
            None => {
                // The root may have been renamed since its path was read:
                // the directory it is, not the path it had, is watched.
                self.root_path = fd_path(self.root.as_fd())?;
                below(&path, &self.root_path)?
            }
        };
        // Confirm that the name leads to this very directory, beneath the
        // root without symlinks (a rename may have raced with readlink).
        let beneath = tree::open_dir(self.root.as_fd(), &rel).ok()?;
        let seen = nix::sys::stat::fstat(&beneath).ok()?;
        if (seen.st_dev, seen.st_ino) != id {
            return None;
        }
        if Some(id) == self.skip {
            self.store_rel = Some(rel);
            return None;
        }
        Some(rel)
    }
}

/// `path` relative to `root` (empty for the root itself), if below it.
fn below(path: &[u8], root: &[u8]) -> Option<Vec<u8>> {
    if path == root {
        return Some(Vec::new());
    }
    let rest = path.strip_prefix(root)?.strip_prefix(b"/")?;
    Some(rest.to_vec())
}

/// Parse the event at the start of `buf`: the event and its length.
fn parse_event(buf: &[u8]) -> Option<(Raw<'_>, usize)> {
    let u16_at = |at: usize| buf.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |at: usize| buf.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let event_len = u32_at(0)? as usize;
    let metadata_len = usize::from(u16_at(6)?);
    if event_len < METADATA_LEN
        || event_len > buf.len()
        || metadata_len < METADATA_LEN
        || metadata_len > event_len
    {
        return None;
    }
    let mask = u64::from_ne_bytes(buf.get(8..16)?.try_into().ok()?);
    let pid = u32_at(20)? as i32;
    let mut raw = Raw { mask, pid, fid: None, object: None, name: b"" };
    let mut at = metadata_len;
    while at + 4 <= event_len {
        let info_type = buf[at];
        let len = usize::from(u16_at(at + 2)?);
        if len < 4 || at + len > event_len {
            break;
        }
        if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME || info_type == libc::FAN_EVENT_INFO_TYPE_DFID {
            // header (4) + fsid (8) + handle_bytes (4) + handle_type (4)
            let record = &buf[at..at + len];
            let handle_bytes =
                record.get(12..16).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))? as usize;
            raw.fid = Some(record.get(4..20 + handle_bytes)?);
            let rest = record.get(20 + handle_bytes..).unwrap_or_default();
            let name_len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
                raw.name = &rest[..name_len];
            }
        } else if info_type == libc::FAN_EVENT_INFO_TYPE_FID {
            let record = &buf[at..at + len];
            let handle_bytes =
                record.get(12..16).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))? as usize;
            raw.object = Some(record.get(4..20 + handle_bytes)?);
        }
        at += len;
    }
    Some((raw, event_len))
}

/// `open_by_handle_at(mount, handle, O_PATH)`.
fn open_by_handle(mount: BorrowedFd<'_>, handle_type: i32, handle: &[u8]) -> Option<OwnedFd> {
    // A `struct file_handle`: handle_bytes, handle_type, then the bytes;
    // built in u32 words for its alignment.
    let mut words = vec![0u32; 2 + handle.len().div_ceil(4)];
    words[0] = u32::try_from(handle.len()).ok()?;
    words[1] = handle_type as u32;
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words[2..]);
    bytes[..handle.len()].copy_from_slice(handle);
    // SAFETY: `words` is a properly aligned, fully initialised file_handle
    // whose handle_bytes matches the bytes that follow; the kernel only
    // reads it. The returned fd is new and owned by nobody else.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            words.as_mut_ptr().cast::<libc::file_handle>(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    // SAFETY: as above.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fanotify_mark(group, flags, mask, dir, NULL)`: a mark on the object
/// `dir` refers to (or its filesystem).
fn mark(group: BorrowedFd<'_>, flags: libc::c_uint, mask: u64, dir: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: fanotify_mark on fds we hold; a null path means "the object
    // `dir` refers to"; the kernel reads nothing else.
    let rc =
        unsafe { libc::fanotify_mark(group.as_raw_fd(), flags, mask, dir.as_raw_fd(), std::ptr::null()) };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// `fanotify_mark` on the entry `name` of `dir`, never through a symlink.
fn mark_entry(group: BorrowedFd<'_>, mask: u64, dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let name = std::ffi::CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: fanotify_mark on fds we hold with a NUL-terminated name
    // relative to `dir`.
    let rc = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_DONT_FOLLOW,
            mask,
            dir.as_raw_fd(),
            name.as_ptr(),
        )
    };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// The fid events give for the entry `name` of `dir`: its filesystem's id,
/// then the `file_handle` of `name_to_handle_at`.
fn file_fid(dir: BorrowedFd<'_>, name: &[u8]) -> Option<Vec<u8>> {
    const MAX_HANDLE: usize = 128;
    let cname = std::ffi::CString::new(name).ok()?;
    // A `struct file_handle` with room for the largest handle, in u32
    // words for its alignment.
    let mut words = vec![0u32; 2 + MAX_HANDLE / 4];
    words[0] = MAX_HANDLE as u32;
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `words` is an aligned file_handle whose handle_bytes says how
    // much room follows; the kernel writes at most that much.
    let rc = unsafe {
        libc::name_to_handle_at(
            dir.as_raw_fd(),
            cname.as_ptr(),
            words.as_mut_ptr().cast::<libc::file_handle>(),
            &mut mount_id,
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    let len = (words[0] as usize).min(MAX_HANDLE);
    let bytes: &[u8] = bytemuck::cast_slice(&words);
    let mut fid = fsid(dir).ok()?.to_vec();
    fid.extend_from_slice(&bytes[..8 + len]);
    Some(fid)
}

/// The id of the filesystem `fd` is on, as fanotify reports it (statfs's
/// `f_fsid`).
fn fsid(fd: BorrowedFd<'_>) -> Result<[u8; 8], Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs fills the statfs it is given, or fails.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(Errno::last());
    }
    // SAFETY: fstatfs returned 0, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    // SAFETY: fsid_t is two C ints, 8 bytes without padding, whatever
    // their names; read as the bytes events carry.
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [u8; 8]>(st.f_fsid) })
}

/// The mounts whose mount point lies strictly below `root`, from the text
/// of /proc/self/mountinfo: (mount ID, mount point below the root).
fn mounts_below(mountinfo: &[u8], root: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for line in mountinfo.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b' ');
        let Some(id) = fields.next().and_then(|f| std::str::from_utf8(f).ok()?.parse().ok()) else {
            continue;
        };
        let Some(point) = fields.nth(3) else { continue };
        let point = unescape(point);
        if let Some(rel) = below(&point, root)
            && !rel.is_empty()
        {
            out.push((id, rel));
        }
    }
    out
}

/// Undo mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// The path `/proc/self/fd/N` names for an fd.
fn fd_path(fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let bytes = link.into_os_string().into_encoded_bytes();
    (!bytes.ends_with(b" (deleted)")).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(mask: u64, pid: i32, handle: &[u8], name: &[u8]) -> Vec<u8> {
        let mut info = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
        info.extend_from_slice(&[7; 8]);
        info.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        info.extend_from_slice(&1i32.to_ne_bytes());
        info.extend_from_slice(handle);
        info.extend_from_slice(name);
        info.push(0);
        while info.len() % 4 != 0 {
            info.push(0);
        }
        let info_len = info.len() as u16;
        info[2..4].copy_from_slice(&info_len.to_ne_bytes());
        let mut out = Vec::new();
        out.extend_from_slice(&((METADATA_LEN + info.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&[3, 0]);
        out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        out.extend_from_slice(&mask.to_ne_bytes());
        out.extend_from_slice(&(-1i32).to_ne_bytes());
        out.extend_from_slice(&pid.to_ne_bytes());
        out.extend_from_slice(&info);
        out
    }

    #[test]
    fn events_parse_with_their_handle_and_name() {
        let mut buf = event(libc::FAN_MODIFY, 42, &[1, 2, 3, 4, 5, 6, 7, 8], b"notes.txt");
        buf.extend(event(libc::FAN_CREATE | libc::FAN_ONDIR, 7, &[9; 12], b"sub"));
        let (first, len) = parse_event(&buf).unwrap();
        assert_eq!((first.mask, first.pid, first.name), (libc::FAN_MODIFY, 42, b"notes.txt".as_slice()));
        let (fsid, handle_type, handle) = split_fid(first.fid.unwrap()).unwrap();
        assert_eq!((fsid, handle_type, handle), ([7; 8], 1, [1, 2, 3, 4, 5, 6, 7, 8].as_slice()));
        let (second, rest) = parse_event(&buf[len..]).unwrap();
        assert_eq!(second.name, b"sub");
        assert_eq!(second.pid, 7);
        assert_eq!(len + rest, buf.len());
        assert!(parse_event(&buf[..len - 1]).is_none() || parse_event(&buf[..len - 1]).unwrap().1 < len);
    }

    #[test]
    fn mount_points_below_the_root_are_found_unescaped() {
        let text = b"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                     40 22 0:50 / /work/tree/mnt rw - tmpfs none rw\n\
                     41 22 0:51 / /work/tree/with\\040space rw - tmpfs none rw\n\
                     42 22 0:52 / /work/treehouse rw - tmpfs none rw\n\
                     43 22 0:53 / /work/tree rw - tmpfs none rw\n";
        let found = mounts_below(text, b"/work/tree");
        assert_eq!(found, [(40, b"mnt".to_vec()), (41, b"with space".to_vec())]);
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut at = 0;
            while let Some((_, len)) = parse_event(&bytes[at..]) {
                prop_assert!(len >= METADATA_LEN);
                at += len;
            }
        }
    }
}
