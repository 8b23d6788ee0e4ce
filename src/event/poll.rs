//! The poll backend: a stat scan of the whole tree at every sample, for
//! filesystems where inotify and fanotify see nothing or only part of what
//! happens (NFS, where other clients' writes raise no event here; FUSE;
//! some overlay setups).
//!
//! **Its cost grows with the size of the tree, not with what changed**:
//! every sample opens every directory and calls `fstatat(2)` on every
//! entry. Use it only where the event backends cannot work; `status` shows
//! the last scan's duration (`last_scan_us`) and size
//! (`last_scan_entries`) so the price is visible.
//!
//! There is no thread. [`sync`](super::Source::sync), the sample
//! barrier, runs the scan on the sampler's thread: every directory is
//! walked with
//! [`tree::walk`] (strictly beneath the root, excludes and the store
//! pruned, no symlink followed), every entry is examined with
//! `fstatat(AT_SYMLINK_NOFOLLOW)` relative to its directory's fd, and its
//! (file type, device, inode, size, mtime, ctime) tuple, times in
//! nanoseconds, is compared with the previous scan's table:
//!
//! - an entry that appeared, vanished, or whose tuple changed is a
//!   [`Dirty::Path`]; a directory that appeared or vanished (or was
//!   replaced by another directory) is a [`Dirty::Subtree`]; a directory's
//!   own times are ignored, since the entries inside it are compared one
//!   by one;
//! - a directory that cannot be opened or listed is a [`Dirty::Subtree`],
//!   and its previous table is kept, so nothing is lost in silence;
//! - more dirty paths than the queue capacity are dropped for a counted
//!   overflow, which makes the sampler rescan the whole tree in one walk.
//!
//! The first scan, in [`Poll::start`], only fills the table.
//!
//! Timestamps have a granularity: before Linux 6.13 a file's times come
//! from the coarse clock (one jiffy, 1 to 10 ms), so two writes of the same
//! size in the same jiffy leave identical tuples. An entry whose mtime or
//! ctime is not older than `CLOCK_REALTIME_COARSE` read at the start of
//! the scan may still change without its tuple changing, so it is
//! reported again at the next scan (the sampler compares contents by hash,
//! so the repeat costs one read and records nothing). On NFS the times come
//! from the server's clock; a server whose clock runs far behind the
//! client's defeats that guard, and only size, inode and ctime remain.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, SFlag, fstatat};

use super::{Dirty, Error, Options, Shared};
use crate::exclude::Matcher;
use crate::tree;

/// What a scan remembers of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    kind: u32,
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// One entry of the table: its tuple, and whether it may change again
/// without the tuple showing it (see the module doc).
#[derive(Clone, Copy, Debug)]
struct Entry {
    meta: Meta,
    racy: bool,
}

impl Entry {
    fn new(stat: &FileStat, coarse_now: (i64, i64)) -> Entry {
        let meta = Meta {
            kind: stat.st_mode & SFlag::S_IFMT.bits(),
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: stat.st_size,
            mtime: (stat.st_mtime, stat.st_mtime_nsec),
            ctime: (stat.st_ctime, stat.st_ctime_nsec),
        };
        Entry { meta, racy: is_racy(&meta, coarse_now) }
    }

    fn is_dir(&self) -> bool {
        self.meta.kind == SFlag::S_IFDIR.bits()
    }

    fn dirty(&self, path: Vec<u8>) -> Dirty {
        if self.is_dir() { Dirty::Subtree(path) } else { Dirty::Path(path) }
    }
}

/// The table of one directory: entry name → entry.
type DirTable = HashMap<Vec<u8>, Entry>;

/// The poll backend (see the module doc).
pub struct Poll {
    root: OwnedFd,
    excludes: Matcher,
    skip: Option<(u64, u64)>,
    capacity: usize,
    /// Directory path → its entries, as of the last scan.
    table: HashMap<Vec<u8>, DirTable>,
    queue: Vec<Dirty>,
    shared: Arc<Shared>,
}

impl Poll {
    /// Scan the tree below `root` (a directory fd, duplicated here) once
    /// to fill the table. Later changes are found by each
    /// [`sync`](super::Source::sync).
    ///
    /// # Errors
    /// [`Error::Dup`] when the root fd cannot be duplicated.
    pub fn start(root: &OwnedFd, options: Options) -> Result<Poll, Error> {
        let root = root.try_clone().map_err(Error::Dup)?;
        let mut poll = Poll {
            root,
            excludes: options.excludes,
            skip: options.skip,
            capacity: options.capacity,
            table: HashMap::new(),
            queue: Vec::new(),
            shared: Arc::new(Shared::default()),
        };
        // Everything is new to the first scan: nothing to report.
        poll.scan();
        Ok(poll)
    }

    /// Walk the whole tree, compare every entry with the table, replace the
    /// table and return what differs.
    fn scan(&mut self) -> Vec<Dirty> {
        let started = Instant::now();
        let coarse_now = coarse_now();
        let mut old = std::mem::take(&mut self.table);
        let mut new: HashMap<Vec<u8>, DirTable> = HashMap::with_capacity(old.len());
        let mut found = Vec::new();
        let mut failed: Vec<Vec<u8>> = Vec::new();
        let mut entries = 0u64;
        tree::walk(
            self.root.as_fd(),
            b"",
            &|path, is_dir| self.excludes.is_reported(path, is_dir),
            self.skip,
            &mut |rel, dir, listing| {
                // Keys are moved from the old table to the new one: an
                // unchanged entry costs a stat and two lookups, no copy.
                let mut before = old.remove(rel).unwrap_or_default();
                let mut now = DirTable::with_capacity(listing.len());
                for (name, _) in listing {
                    entries += 1;
                    let previous = before.remove_entry(name.as_slice());
                    match fstatat(dir, tree::as_path(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(stat) => {
                            let entry = Entry::new(&stat, coarse_now);
                            let key = match previous {
                                Some((key, old)) => {
                                    compare(rel, name, &old, &entry, &mut found);
                                    key
                                }
                                None => {
                                    found.push(entry.dirty(tree::join(rel, name)));
                                    name.clone()
                                }
                            };
                            now.insert(key, entry);
                        }
                        // Gone since the listing.
                        Err(Errno::ENOENT | Errno::ENOTDIR) => {
                            if let Some((_, old)) = previous {
                                found.push(old.dirty(tree::join(rel, name)));
                            }
                        }
                        Err(_) => {
                            // Unknown state: look at it, and keep what we knew.
                            found.push(Dirty::Path(tree::join(rel, name)));
                            if let Some((key, old)) = previous {
                                now.insert(key, old);
                            }
                        }
                    }
                }
                // Not listed any more: vanished.
                for (name, old) in before {
                    found.push(old.dirty(tree::join(rel, &name)));
                }
                new.insert(rel.to_vec(), now);
            },
            &mut |rel, _errno| failed.push(rel.to_vec()),
        );
        found.extend(failed.iter().cloned().map(Dirty::Subtree));
        // Directories not visited are gone, unless they lie below one that
        // could not be read: what we knew of those is kept for next time.
        for (dir, entries) in old {
            if failed.iter().any(|f| tree::is_within(&dir, f)) {
                new.insert(dir, entries);
            }
        }
        self.table = new;
        self.shared.last_scan_entries.store(entries, Ordering::Relaxed);
        self.shared.last_scan_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        found
    }

    /// Queue what a scan found, within the capacity.
    fn queue(&mut self, found: Vec<Dirty>) {
        self.shared.events.fetch_add(found.len() as u64, Ordering::Relaxed);
        if self.queue.len() + found.len() > self.capacity {
            // The sampler rescans the whole tree on overflow: one walk
            // instead of as many path lookups as there are changes.
            self.queue.clear();
            self.shared.overflow();
        } else {
            self.queue.extend(found);
        }
    }

    /// Entries in the table (for tests and benches).
    pub fn len(&self) -> usize {
        self.table.values().map(HashMap::len).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What changed between two scans of the entry `name` of `dir`.
fn compare(dir: &[u8], name: &[u8], old: &Entry, new: &Entry, found: &mut Vec<Dirty>) {
    let path = || tree::join(dir, name);
    if old.meta.kind != new.meta.kind {
        if old.is_dir() || new.is_dir() {
            found.push(old.dirty(path()));
        }
        found.push(new.dirty(path()));
    } else if new.is_dir() {
        // A directory's times change with its entries, which are compared
        // one by one; only another directory in its place matters.
        if (old.meta.dev, old.meta.ino) != (new.meta.dev, new.meta.ino) {
            found.push(Dirty::Subtree(path()));
        }
    } else if old.meta != new.meta || old.racy {
        found.push(Dirty::Path(path()));
    }
}

/// Whether a write after this scan could leave `meta` as it is: its times
/// are not older than the coarse clock at the scan's start, so a write in
/// the same clock tick would get the same times (see the module doc).
/// Directories are never racy: their own times are not compared.
fn is_racy(meta: &Meta, coarse_now: (i64, i64)) -> bool {
    meta.kind != SFlag::S_IFDIR.bits() && (meta.mtime >= coarse_now || meta.ctime >= coarse_now)
}

/// `CLOCK_REALTIME_COARSE` as (seconds, nanoseconds): the clock file times
/// are taken from (before Linux 6.13's multigrain timestamps, and still
/// their lower bound after).
fn coarse_now() -> (i64, i64) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime(2) writes one timespec to a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc != 0 {
        // Cannot happen for this clock; treat every entry as racy.
        return (i64::MIN, 0);
    }
    (ts.tv_sec, ts.tv_nsec)
}

impl super::Source for Poll {
    fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Scan now: every change whose write returned before this call is
    /// on the queue when it returns. Never times out: the scan takes as
    /// long as the tree needs.
    fn sync(&mut self, _timeout: Duration) -> bool {
        let found = self.scan();
        self.queue(found);
        true
    }

    fn drain(&mut self, into: &mut Vec<super::Event>) {
        into.extend(self.queue.drain(..).map(super::Event::anonymous));
    }

    /// The next scan walks what the rules let in: the entries that appear
    /// to it are new (dirty), those that leave it are gone.
    fn rules(&mut self, rules: &Matcher, _changed: &[Vec<u8>]) {
        self.excludes = rules.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use std::collections::BTreeSet;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    fn root_of(dir: &Path) -> OwnedFd {
        use nix::fcntl::OFlag;
        nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap()
    }

    fn start(dir: &Path, skip: Option<(u64, u64)>, capacity: usize) -> Poll {
        let options = Options {
            excludes: Matcher::new(&[".git", "*.log"], None, false).unwrap(),
            skip,
            capacity,
            target: 0,
        };
        Poll::start(&root_of(dir), options).unwrap()
    }

    /// Let the coarse clock pass the times of what was just written, so
    /// the next scan sees settled entries (see `is_racy`). One jiffy is at
    /// most 10 ms.
    fn settle() {
        std::thread::sleep(Duration::from_millis(25));
    }

    fn changes(poll: &mut Poll) -> BTreeSet<Dirty> {
        assert!(poll.sync(Duration::from_secs(1)));
        let mut events = Vec::new();
        poll.drain(&mut events);
        assert!(events.iter().all(|e| e.writer.is_none()));
        events.into_iter().map(|e| e.dirty).collect()
    }

    fn path(p: &str) -> Dirty {
        Dirty::Path(p.as_bytes().to_vec())
    }

    fn subtree(p: &str) -> Dirty {
        Dirty::Subtree(p.as_bytes().to_vec())
    }

    fn set<const N: usize>(items: [Dirty; N]) -> BTreeSet<Dirty> {
        items.into_iter().collect()
    }

    #[test]
    fn every_change_to_a_file_is_found_and_nothing_else() {
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        fs::write(t.join("a.txt"), "aaaa\n").unwrap();
        fs::write(t.join("b.txt"), "bee\n").unwrap();
        settle();
        let mut poll = start(t, None, 1024);
        assert_eq!(poll.len(), 2);
        assert_eq!(changes(&mut poll), set([]), "the first scan only fills the table");

        fs::write(t.join("new.txt"), "new\n").unwrap();
        settle();
        assert_eq!(changes(&mut poll), set([path("new.txt")]), "created");

        // Same size, same inode: only the times tell.
        fs::write(t.join("a.txt"), "bbbb\n").unwrap();
        settle();
        assert_eq!(changes(&mut poll), set([path("a.txt")]), "modified in place, size kept");

        fs::remove_file(t.join("b.txt")).unwrap();
        settle();
        assert_eq!(changes(&mut poll), set([path("b.txt")]), "deleted");

        fs::rename(t.join("a.txt"), t.join("c.txt")).unwrap();
        settle();
        assert_eq!(changes(&mut poll), set([path("a.txt"), path("c.txt")]), "renamed");

        assert_eq!(changes(&mut poll), set([]), "an idle scan finds nothing");
        let shared = poll.shared();
        assert_eq!(shared.last_scan_entries.load(Ordering::Relaxed), 2);
        assert_eq!(shared.events.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn new_and_removed_directories_are_subtrees() {
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        let mut poll = start(t, None, 1024);
        fs::create_dir_all(t.join("d/e")).unwrap();
        fs::write(t.join("d/f.txt"), "f\n").unwrap();
        fs::write(t.join("d/e/g.txt"), "g\n").unwrap();
        settle();
        assert_eq!(
            changes(&mut poll),
            set([subtree("d"), subtree("d/e"), path("d/f.txt"), path("d/e/g.txt")])
        );
        assert_eq!(poll.len(), 4);
        fs::remove_dir_all(t.join("d")).unwrap();
        settle();
        assert_eq!(changes(&mut poll), set([subtree("d")]));
        assert_eq!(poll.len(), 0, "the tables of removed directories are dropped");
    }

    #[test]
    fn a_changed_file_type_reports_both_sides() {
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        fs::write(t.join("target.txt"), "t\n").unwrap();
        symlink("target.txt", t.join("link")).unwrap();
        fs::create_dir(t.join("was-dir")).unwrap();
        fs::write(t.join("was-file"), "x\n").unwrap();
        settle();
        let mut poll = start(t, None, 1024);
        fs::remove_file(t.join("link")).unwrap();
        fs::write(t.join("link"), "a file where a link was\n").unwrap();
        fs::remove_dir(t.join("was-dir")).unwrap();
        fs::write(t.join("was-dir"), "now a file\n").unwrap();
        fs::remove_file(t.join("was-file")).unwrap();
        fs::create_dir(t.join("was-file")).unwrap();
        settle();
        assert_eq!(
            changes(&mut poll),
            set([path("link"), subtree("was-dir"), path("was-dir"), path("was-file"), subtree("was-file")])
        );
    }

    #[test]
    fn symlinks_are_examined_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "s\n").unwrap();
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        symlink(outside.path(), t.join("dirlink")).unwrap();
        settle();
        let mut poll = start(t, None, 1024);
        assert_eq!(poll.len(), 1, "the link itself, nothing behind it");
        fs::write(outside.path().join("secret"), "changed\n").unwrap();
        fs::write(outside.path().join("more"), "m\n").unwrap();
        settle();
        assert_eq!(changes(&mut poll), set([]), "changes outside the tree are not seen");
    }

    #[test]
    fn excluded_paths_and_the_store_are_left_out() {
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        fs::create_dir_all(t.join(".git")).unwrap();
        fs::write(t.join(".git/HEAD"), "ref\n").unwrap();
        fs::create_dir(t.join("store")).unwrap();
        let store = fs::metadata(t.join("store")).unwrap();
        let skip = {
            use std::os::unix::fs::MetadataExt;
            Some((store.dev(), store.ino()))
        };
        settle();
        let mut poll = start(t, skip, 1024);
        fs::write(t.join(".git/HEAD"), "changed\n").unwrap();
        fs::write(t.join(".git/index"), "new\n").unwrap();
        fs::write(t.join("debug.log"), "noise\n").unwrap();
        fs::write(t.join("store/ring.bin"), "records\n").unwrap();
        fs::write(t.join("keep.txt"), "kept\n").unwrap();
        settle();
        assert_eq!(changes(&mut poll), set([path("keep.txt")]));
    }

    #[test]
    fn too_many_changes_become_a_counted_overflow() {
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        let mut poll = start(t, None, 3);
        for i in 0..5 {
            fs::write(t.join(format!("f{i}")), "x\n").unwrap();
        }
        assert_eq!(changes(&mut poll), set([]), "dropped for a rescan");
        assert!(poll.shared().take_overflow());
        assert_eq!(poll.shared().overflows.load(Ordering::Relaxed), 1);
        assert_eq!(poll.len(), 5, "the table is up to date all the same");
    }

    #[test]
    fn entries_as_new_as_the_clock_are_reported_again() {
        let meta = |mtime: (i64, i64), ctime: (i64, i64), kind: SFlag| Meta {
            kind: kind.bits(),
            dev: 1,
            ino: 2,
            size: 3,
            mtime,
            ctime,
        };
        let now = (100, 500);
        assert!(is_racy(&meta((100, 500), (99, 0), SFlag::S_IFREG), now), "same tick");
        assert!(is_racy(&meta((99, 0), (100, 700), SFlag::S_IFREG), now), "ctime in the tick");
        assert!(!is_racy(&meta((100, 499), (100, 499), SFlag::S_IFREG), now), "settled");
        assert!(!is_racy(&meta((100, 500), (100, 500), SFlag::S_IFDIR), now), "directories never");
        let settled = Entry { meta: meta((1, 0), (1, 0), SFlag::S_IFREG), racy: false };
        let racy = Entry { racy: true, ..settled };
        let mut found = Vec::new();
        compare(b"", b"f", &settled, &settled, &mut found);
        assert!(found.is_empty());
        compare(b"", b"f", &racy, &settled, &mut found);
        assert_eq!(found, [path("f")], "a racy entry is looked at once more");
    }
}
