//! The marks: an inode mark on each directory of the tree, or a
//! filesystem mark on each filesystem it spans, and the switch from the
//! first to the second; ignore marks on busy directories outside the tree;
//! the directories that could not be marked; what `status` shows; and the
//! mounts below the root, followed through /proc/self/mountinfo.

use std::io::{Read, Seek};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;

use nix::errno::Errno;

use super::decode::{below, fd_path, fsid};
use super::{CACHE_LIMIT, MASK, Marks, Mount, Worker};
use crate::event::thread::Queue;
use crate::event::{Dirty, Event};
use crate::tree;

/// An ignore mark on a busy directory outside the tree: its children's
/// events and its own.
const IGNORE_MASK: u64 = MASK | libc::FAN_EVENT_ON_CHILD;

/// Events from one directory outside the tree before it is ignored.
const NOISY: u32 = 64;

/// An inode mark on a directory also reports its children's changes.
const INODE_MASK: u64 = MASK | libc::FAN_EVENT_ON_CHILD;

impl Worker {
    /// Put an inode mark on every directory from `start` down (excluded
    /// ones and the store left out). Each directory is marked before it is
    /// listed, so a subdirectory made meanwhile is reported. False when the
    /// marks would pass the limit: the tree then gets filesystem marks.
    pub(super) fn mark_tree(&mut self, start: &[u8], queue: &Queue) -> bool {
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
                if self.excludes.is_excluded(&child, is_dir) {
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
    pub(super) fn count_outside(&mut self, fid: &[u8], queue: &Queue) {
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
    pub(super) fn unignore_all(&mut self, queue: &Queue) {
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

    /// Switch to (or stay with) filesystem marks: one on each filesystem
    /// the tree spans, then the inode marks are flushed. The filesystem
    /// marks are in place first, so no event is missed meanwhile.
    pub(super) fn switch_to_filesystems(&mut self, queue: &Queue) {
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
    pub(super) fn mark_filesystem_at(&mut self, rel: &[u8], queue: &Queue) {
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
    pub(super) fn publish(&self, queue: &Queue) {
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
    pub(super) fn follow_mounts(&mut self, queue: &Queue, first: bool) {
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
            .filter(|(_, rel)| !self.excludes.is_excluded_anywhere(rel, true))
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
            queue.push(Event::anonymous(Dirty::Subtree(rel)));
        }
        self.publish(queue);
    }
}

/// `fanotify_mark(group, flags, mask, dir, NULL)`: a mark on the object
/// `dir` refers to (or its filesystem).
pub(super) fn mark(
    group: BorrowedFd<'_>,
    flags: libc::c_uint,
    mask: u64,
    dir: BorrowedFd<'_>,
) -> Result<(), Errno> {
    // SAFETY: fanotify_mark on fds we hold; a null path means "the object
    // `dir` refers to"; the kernel reads nothing else.
    let rc =
        unsafe { libc::fanotify_mark(group.as_raw_fd(), flags, mask, dir.as_raw_fd(), std::ptr::null()) };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// `fanotify_mark` on the entry `name` of `dir`, never through a symlink.
pub(super) fn mark_entry(
    group: BorrowedFd<'_>,
    mask: u64,
    dir: BorrowedFd<'_>,
    name: &[u8],
) -> Result<(), Errno> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
