//! The fanotify backend (fanotify(7)): one mark for the whole filesystem
//! that holds the tree, so setting up costs the same for ten files or ten
//! million, and every event says which process caused it.
//!
//! The group reports directory file handles and names
//! (`FAN_REPORT_DFID_NAME`): each event names the directory it happened in
//! (a file handle) and the entry's name. The event thread resolves the
//! handle with `open_by_handle_at` and `/proc/self/fd`, keeps the answer in
//! a cache (cleared whenever a directory is moved or deleted, since that
//! changes paths), and drops events outside the tree, in excluded paths, or
//! caused by monitord itself (its writes to the store).
//!
//! Needs CAP_SYS_ADMIN (a filesystem mark) and CAP_DAC_READ_SEARCH
//! (`open_by_handle_at`). `FAN_Q_OVERFLOW` means a rescan, as with inotify.
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

/// Directory events that change paths below them.
const DIR_CHANGES: u64 = libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO;

const METADATA_LEN: usize = 24;
const CACHE_LIMIT: usize = 65_536;

impl Fanotify {
    /// Mark the filesystem holding `root` and start the event thread.
    ///
    /// # Errors
    /// [`Error::Fanotify`] naming the step and suggesting another backend
    /// when the kernel or the filesystem refuses.
    pub fn start(root: &OwnedFd, options: Options) -> Result<Box<dyn Source>, Error> {
        let flags =
            libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_REPORT_DFID_NAME;
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
        // SAFETY: fanotify_mark on fds we own; a null path means "the object
        // `root` refers to".
        let rc = unsafe {
            libc::fanotify_mark(
                group.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                MASK,
                root.as_raw_fd(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(Error::Fanotify { what: "fanotify_mark", errno: Errno::last() });
        }
        let root_path =
            fd_path(root.as_fd()).ok_or(Error::Fanotify { what: "readlink", errno: Errno::ENOENT })?;
        let root_id =
            tree::dir_identity(root.as_fd()).ok_or(Error::Fanotify { what: "fstat", errno: Errno::EBADF })?;
        let (queue, events) = thread::queue(options.capacity);
        queue.shared.watches.store(1, Ordering::Relaxed);
        let worker = Worker {
            group,
            root: root.try_clone().map_err(Error::Thread)?,
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
        };
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
    excludes: Excludes,
    skip: Option<(u64, u64)>,
    /// The store's path below the root, once an event has shown it.
    store_rel: Option<Vec<u8>>,
    /// Directory handle → its path below the root (`None`: outside).
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
}

/// One event, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Raw<'a> {
    mask: u64,
    pid: i32,
    /// `handle_type` then the handle bytes (the cache key).
    handle: Option<(i32, &'a [u8])>,
    name: &'a [u8],
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
}

impl Worker {
    fn handle(&mut self, raw: &Raw<'_>, queue: &Queue) {
        if raw.mask & libc::FAN_Q_OVERFLOW != 0 {
            queue.shared.overflow();
            return;
        }
        let is_dir = raw.mask & libc::FAN_ONDIR != 0;
        if is_dir && raw.mask & DIR_CHANGES != 0 {
            // Paths below a moved or deleted directory are no longer what
            // the cache says.
            self.cache.clear();
        }
        if raw.pid == self.me {
            return;
        }
        let Some((handle_type, handle)) = raw.handle else { return };
        let Some(dir) = self.resolve(handle_type, handle) else { return };
        let path = if raw.name.is_empty() || raw.name == b"." { dir } else { tree::join(&dir, raw.name) };
        if self.excludes.is_excluded_anywhere(&path)
            || self.store_rel.as_ref().is_some_and(|store| tree::is_within(&path, store))
        {
            return;
        }
        let dirty = match (is_dir, raw.mask & DIR_CHANGES != 0) {
            (true, true) => Dirty::Subtree(path),
            (true, false) => return,
            (false, _) => Dirty::Path(path),
        };
        let by_target = self.is_target_family(raw.pid);
        queue.push(Event { dirty, pid: Some(raw.pid), by_target });
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

    /// The path below the root of the directory `handle` names, if it is
    /// inside the tree.
    fn resolve(&mut self, handle_type: i32, handle: &[u8]) -> Option<Vec<u8>> {
        let mut key = Vec::with_capacity(4 + handle.len());
        key.extend_from_slice(&handle_type.to_ne_bytes());
        key.extend_from_slice(handle);
        if let Some(found) = self.cache.get(&key) {
            return found.clone();
        }
        let dir = open_by_handle(self.root.as_fd(), handle_type, handle)?;
        let found = self.relative(&dir);
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(key, found.clone());
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
    let mut raw = Raw { mask, pid, handle: None, name: b"" };
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
            let handle_type = record.get(16..20).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))?;
            let handle = record.get(20..20 + handle_bytes)?;
            let rest = record.get(20 + handle_bytes..).unwrap_or_default();
            let name_len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            raw.handle = Some((handle_type, handle));
            if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
                raw.name = &rest[..name_len];
            }
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
        assert_eq!(
            first,
            Raw {
                mask: libc::FAN_MODIFY,
                pid: 42,
                handle: Some((1, &[1, 2, 3, 4, 5, 6, 7, 8])),
                name: b"notes.txt"
            }
        );
        let (second, rest) = parse_event(&buf[len..]).unwrap();
        assert_eq!(second.name, b"sub");
        assert_eq!(second.pid, 7);
        assert_eq!(len + rest, buf.len());
        assert!(parse_event(&buf[..len - 1]).is_none() || parse_event(&buf[..len - 1]).unwrap().1 < len);
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
