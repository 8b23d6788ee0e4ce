//! The mirror: the newest recorded content of every tracked entry, per
//! epoch, under `<store>/mirror/`:
//!
//! - `<epoch>.pack`: the baseline, every entry in one file ([`pack`]);
//! - `<epoch>.log`: every update since, appended ([`log`]); the newest
//!   entry for a path wins over the pack;
//! - `<epoch>/`: a directory laid out like the tree. It marks the epoch,
//!   and in stores written before packs and logs existed it holds the
//!   entries themselves (symlinks stored as symlinks, never followed):
//!   they are still read, below the log and above the pack.
//!
//! Invariant: the mirror of the current epoch equals the tree as of the
//! newest committed record. A sample's record is committed to the ring
//! first and the mirror updated after it, under the store's exclusive
//! lock. A crash between the two leaves the mirror at the state before the
//! last record (an append cut short is dropped by the next scan);
//! [`crate::sampler::repair`] rolls it forward on the next start.
//! A baseline is the other way round: its pack is written first and the
//! baseline record commits it, so a crash leaves an epoch with no record,
//! which start-up removes.
//!
//! When the log has grown past the pack (and past [`COMPACT_AFTER`]), the
//! whole mirror is written into a new pack, renamed over the old one, and
//! the log emptied. A crash between those two steps replays the old log
//! onto the new pack, which gives the same state.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

mod log;
mod pack;

use crate::history::TreeState;
use crate::journal::record::Node;
use crate::relpath::{as_path, is_safe_relative};
use crate::store;

/// Errors of the mirror.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mirror file or directory could not be read or written.
    #[error("mirror {op} failed on {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path in the store.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A pack's index does not hold together.
    #[error("mirror pack {path} is damaged: {what}")]
    Damaged {
        /// The pack.
        path: PathBuf,
        /// What is wrong.
        what: &'static str,
    },
    /// One entry of a pack or log does not match its recorded check.
    #[error("mirror file {file} is damaged at {entry}: {what}")]
    EntryDamaged {
        /// The pack or log.
        file: PathBuf,
        /// The entry's path in the tree (printable).
        entry: String,
        /// What does not match.
        what: String,
    },
    /// A log has a damaged entry with intact entries after it: not a
    /// crash's torn tail, but damage that hides later updates.
    #[error("mirror log {path} is damaged at offset {offset}: intact entries resume at offset {resumes}")]
    LogDamaged {
        /// The log.
        path: PathBuf,
        /// Where its entries stop checking.
        offset: u64,
        /// Where an intact entry follows.
        resumes: u64,
    },
    /// A path from the journal is absolute or climbs out of the tree.
    #[error("unsafe path {0:?} in the journal: refusing to use it")]
    UnsafePath(String),
}

/// The log is folded into a new pack once it is bigger than the pack and
/// than this many bytes.
pub const COMPACT_AFTER: u64 = 64 << 20;

/// One epoch's mirror.
#[derive(Debug)]
pub struct Mirror {
    dir: PathBuf,
    /// The epoch directory holds entries (a store from before packs).
    legacy: bool,
    /// The baseline's entries.
    pack: pack::Pack,
    /// The updates since.
    log: log::Log,
    /// The pack while a baseline writes it.
    writer: Option<pack::PackWriter>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

fn check_path(rel: &[u8]) -> Result<(), Error> {
    if is_safe_relative(rel) {
        Ok(())
    } else {
        Err(Error::UnsafePath(String::from_utf8_lossy(rel).into_owned()))
    }
}

impl Mirror {
    /// A new, empty mirror for `epoch` in `store`, for its baseline to
    /// fill; whatever an uncommitted baseline of the same epoch left
    /// behind is removed first.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created.
    pub fn open(store: &Path, epoch: u64) -> Result<Mirror, Error> {
        remove_epoch(store, epoch)?;
        let dir = epoch_dir(store, epoch);
        DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io_err("mkdir", &dir))?;
        Ok(Mirror {
            pack: pack::Pack::empty(&dir),
            log: log::Log::empty(&dir),
            legacy: false,
            writer: None,
            dir,
        })
    }

    /// The mirror of `epoch`, which must already exist (for readers, and
    /// for the repair after a crash).
    ///
    /// # Errors
    /// [`Error::Io`] when it does not, [`Error::Damaged`] when its pack is.
    pub fn open_existing(store: &Path, epoch: u64) -> Result<Mirror, Error> {
        let dir = epoch_dir(store, epoch);
        let legacy = fs::read_dir(&dir).map_err(io_err("open", &dir))?.next().is_some();
        Ok(Mirror { pack: pack::Pack::open(&dir)?, log: log::Log::open(&dir)?, legacy, writer: None, dir })
    }

    /// The recorded entry at `rel`, if any.
    ///
    /// # Errors
    /// [`Error::Io`] when the mirror cannot be read.
    pub fn read(&self, rel: &[u8]) -> Result<Option<(Node, Vec<u8>)>, Error> {
        check_path(rel)?;
        if let Some(newest) = self.log.get(rel)? {
            return Ok(newest);
        }
        if self.legacy
            && let Some(found) = read_entry(&self.dir.join(as_path(rel)))?
        {
            return Ok(Some(found));
        }
        self.pack.get(rel)
    }

    /// Whether the mirror holds an entry at `rel` (its content unread).
    fn contains(&self, rel: &[u8]) -> bool {
        if let Some(present) = self.log.says(rel) {
            return present;
        }
        if self.legacy && fs::symlink_metadata(self.dir.join(as_path(rel))).is_ok_and(|meta| !meta.is_dir()) {
            return true;
        }
        self.pack.contains(rel)
    }

    /// Record `content` at `rel`: one append to the log.
    ///
    /// # Errors
    /// [`Error::Io`] naming the failing path.
    pub fn put(&mut self, rel: &[u8], node: Node, content: &[u8]) -> Result<(), Error> {
        check_path(rel)?;
        self.log.append(rel, Some((node, content)))?;
        self.compact_if_due()
    }

    /// Forget `rel`.
    ///
    /// # Errors
    /// [`Error::Io`] when the log cannot be written.
    pub fn remove(&mut self, rel: &[u8]) -> Result<(), Error> {
        check_path(rel)?;
        if !self.contains(rel) {
            return Ok(());
        }
        self.log.append(rel, None)?;
        self.compact_if_due()
    }

    /// Add `content` at `rel` to the baseline's pack (whose epoch is not
    /// committed until every entry is written and [`Mirror::finish_baseline`]
    /// has run).
    ///
    /// # Errors
    /// [`Error::Io`] naming the failing path.
    pub fn put_new(&mut self, rel: &[u8], node: Node, content: &[u8]) -> Result<(), Error> {
        check_path(rel)?;
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(pack::PackWriter::create(&pack::path(&self.dir))?),
        };
        writer.add(rel, node, content)
    }

    /// Finish the baseline's pack and start reading from it.
    ///
    /// # Errors
    /// [`Error::Io`] when the pack cannot be written or read back.
    pub fn finish_baseline(&mut self) -> Result<(), Error> {
        if let Some(writer) = self.writer.take() {
            writer.finish()?;
            self.pack = pack::Pack::open(&self.dir)?;
        }
        Ok(())
    }

    /// Every entry of this mirror, by relative path.
    ///
    /// # Errors
    /// [`Error::Io`] when a directory or file cannot be read.
    pub fn load_all(&self) -> Result<TreeState, Error> {
        let mut all = TreeState::new();
        self.pack.load_into(&mut all)?;
        if self.legacy {
            load_directory(&self.dir, &mut all)?;
        }
        self.log.apply_to(&mut all)?;
        Ok(all)
    }

    fn compact_if_due(&mut self) -> Result<(), Error> {
        // A store from before packs keeps its directory: a new pack would
        // sit below the entries there.
        if self.legacy || self.log.len() <= COMPACT_AFTER.max(self.pack.size()) {
            return Ok(());
        }
        self.compact()
    }

    /// Write the whole mirror into a new pack, put it in place of the old
    /// one, then empty the log.
    fn compact(&mut self) -> Result<(), Error> {
        let all = self.load_all()?;
        let fresh = pack::staging_path(&self.dir);
        let mut writer = pack::PackWriter::create(&fresh)?;
        for (rel, (node, content)) in &all {
            writer.add(rel, *node, content)?;
        }
        writer.finish()?;
        let packed = pack::path(&self.dir);
        crate::failpoint::check("mirror.rename")
            .and_then(|()| fs::rename(&fresh, &packed))
            .map_err(io_err("rename", &packed))?;
        self.pack = pack::Pack::open(&self.dir)?;
        self.log.clear()
    }
}

/// Add the entries stored as files below `dir` (a store from before packs).
fn load_directory(dir: &Path, all: &mut TreeState) -> Result<(), Error> {
    let mut stack = vec![(dir.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            let name = entry.file_name().into_encoded_bytes();
            let child_rel = crate::relpath::join(&rel, &name);
            let kind = entry.file_type().map_err(io_err("stat", &dir))?;
            if kind.is_dir() {
                stack.push((entry.path(), child_rel));
            } else if let Some(found) = read_entry(&entry.path())? {
                all.insert(child_rel, found);
            }
        }
    }
    Ok(())
}

fn read_entry(path: &Path) -> Result<Option<(Node, Vec<u8>)>, Error> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Ok(None);
        }
        Err(e) => return Err(Error::Io { op: "stat", path: path.to_path_buf(), source: e }),
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(io_err("readlink", path))?;
        return Ok(Some((Node::Symlink, target.into_os_string().into_encoded_bytes())));
    }
    if meta.is_dir() {
        return Ok(None);
    }
    let content = fs::read(path).map_err(io_err("read", path))?;
    Ok(Some((Node::File, content)))
}

/// The directory of an epoch's mirror.
pub fn epoch_dir(store: &Path, epoch: u64) -> PathBuf {
    store.join(store::MIRROR_DIR).join(epoch.to_string())
}

/// The epochs that have a mirror directory in `store`, oldest first.
pub fn epochs(store: &Path) -> Vec<u64> {
    let mut found: Vec<u64> = fs::read_dir(store.join(store::MIRROR_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

/// Delete an epoch's mirror (its records have all left the ring).
///
/// # Errors
/// [`Error::Io`] when it cannot be removed.
pub fn remove_epoch(store: &Path, epoch: u64) -> Result<(), Error> {
    let dir = epoch_dir(store, epoch);
    for file in [pack::path(&dir), log::path(&dir), pack::staging_path(&dir)] {
        match fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::Io { op: "remove", path: file, source: e });
            }
            _ => {}
        }
    }
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::Io { op: "remove", path: dir, source: e })
        }
        _ => Ok(()),
    }
}

impl crate::history::Entries for Mirror {
    type Error = Error;
    fn get(&self, path: &[u8]) -> Result<Option<crate::history::Entry>, Error> {
        self.read(path)
    }
    fn put(&mut self, path: &[u8], node: Node, content: Vec<u8>) -> Result<(), Error> {
        Mirror::put(self, path, node, &content)
    }
    fn remove(&mut self, path: &[u8]) -> Result<(), Error> {
        Mirror::remove(self, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` bytes that do not compress (the log's size must grow by what
    /// is put), different for each `seed`.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn put_read_remove_round_trip() {
        let store = tempfile::tempdir().unwrap();
        store::create(store.path()).unwrap();
        let mut mirror = Mirror::open(store.path(), 1).unwrap();
        mirror.put(b"a/b/c.txt", Node::File, b"hello\n").unwrap();
        mirror.put(b"link", Node::Symlink, b"/etc/passwd").unwrap();
        assert_eq!(mirror.read(b"a/b/c.txt").unwrap(), Some((Node::File, b"hello\n".to_vec())));
        assert_eq!(mirror.read(b"link").unwrap(), Some((Node::Symlink, b"/etc/passwd".to_vec())));
        let all = mirror.load_all().unwrap();
        assert_eq!(all.len(), 2);
        mirror.remove(b"a/b/c.txt").unwrap();
        assert_eq!(mirror.read(b"a/b/c.txt").unwrap(), None);
        assert!(!epoch_dir(store.path(), 1).join("a").exists(), "empty parents are pruned");
        assert_eq!(epochs(store.path()), vec![1]);
        remove_epoch(store.path(), 1).unwrap();
        assert!(epochs(store.path()).is_empty());
    }

    #[test]
    fn a_store_from_before_packs_is_read_from_its_directory() {
        let store = tempfile::tempdir().unwrap();
        store::create(store.path()).unwrap();
        let dir = epoch_dir(store.path(), 4);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/old.txt"), "old\n").unwrap();
        fs::write(dir.join("stays.txt"), "stays\n").unwrap();
        std::os::unix::fs::symlink("stays.txt", dir.join("link")).unwrap();
        let mut mirror = Mirror::open_existing(store.path(), 4).unwrap();
        assert_eq!(mirror.read(b"sub/old.txt").unwrap(), Some((Node::File, b"old\n".to_vec())));
        assert_eq!(mirror.read(b"link").unwrap(), Some((Node::Symlink, b"stays.txt".to_vec())));
        mirror.put(b"sub/old.txt", Node::File, b"new\n").unwrap();
        mirror.remove(b"link").unwrap();
        let all = Mirror::open_existing(store.path(), 4).unwrap().load_all().unwrap();
        let expect: TreeState = [
            (b"stays.txt".to_vec(), (Node::File, b"stays\n".to_vec())),
            (b"sub/old.txt".to_vec(), (Node::File, b"new\n".to_vec())),
        ]
        .into_iter()
        .collect();
        assert_eq!(all, expect);
    }

    #[test]
    fn the_newest_entry_wins_whatever_it_replaces() {
        let store = tempfile::tempdir().unwrap();
        store::create(store.path()).unwrap();
        let mut mirror = Mirror::open(store.path(), 1).unwrap();
        mirror.put(b"f", Node::File, b"a longer first version\n").unwrap();
        mirror.put(b"f", Node::File, b"short\n").unwrap();
        assert_eq!(mirror.read(b"f").unwrap(), Some((Node::File, b"short\n".to_vec())));
        mirror.put(b"l", Node::Symlink, b"f").unwrap();
        mirror.put(b"l", Node::File, b"now a file").unwrap();
        mirror.remove(b"f").unwrap();
        mirror.put(b"f", Node::Symlink, b"l").unwrap();
        let reopened = Mirror::open_existing(store.path(), 1).unwrap();
        for m in [&mirror, &reopened] {
            assert_eq!(m.read(b"l").unwrap(), Some((Node::File, b"now a file".to_vec())));
            assert_eq!(m.read(b"f").unwrap(), Some((Node::Symlink, b"l".to_vec())));
            assert_eq!(m.load_all().unwrap().len(), 2);
        }
        assert_eq!(fs::read_dir(epoch_dir(store.path(), 1)).unwrap().count(), 0, "nothing per entry");
    }

    #[test]
    fn a_baseline_is_packed_and_later_changes_override_it() {
        let store = tempfile::tempdir().unwrap();
        store::create(store.path()).unwrap();
        let mut mirror = Mirror::open(store.path(), 5).unwrap();
        mirror.put_new(b"a.txt", Node::File, b"a\n").unwrap();
        mirror.put_new(b"d/b.txt", Node::File, b"b\n").unwrap();
        mirror.put_new(b"d/c.txt", Node::File, b"").unwrap();
        mirror.put_new(b"link", Node::Symlink, b"a.txt").unwrap();
        mirror.put_new(b"gone", Node::File, b"soon deleted\n").unwrap();
        mirror.finish_baseline().unwrap();
        let dir = epoch_dir(store.path(), 5);
        assert!(dir.with_extension("pack").is_file());
        assert_eq!(mirror.read(b"d/b.txt").unwrap(), Some((Node::File, b"b\n".to_vec())));
        assert_eq!(mirror.read(b"link").unwrap(), Some((Node::Symlink, b"a.txt".to_vec())));
        assert_eq!(mirror.read(b"d/c.txt").unwrap(), Some((Node::File, Vec::new())));

        mirror.put(b"a.txt", Node::File, b"a, changed\n").unwrap();
        mirror.remove(b"gone").unwrap();
        mirror.put(b"d/b.txt", Node::File, b"b, changed\n").unwrap();
        mirror.remove(b"d/b.txt").unwrap();
        mirror.put(b"new.txt", Node::File, b"new\n").unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "no file per entry");

        let expect: TreeState = [
            (b"a.txt".to_vec(), (Node::File, b"a, changed\n".to_vec())),
            (b"d/c.txt".to_vec(), (Node::File, Vec::new())),
            (b"link".to_vec(), (Node::Symlink, b"a.txt".to_vec())),
            (b"new.txt".to_vec(), (Node::File, b"new\n".to_vec())),
        ]
        .into_iter()
        .collect();
        assert_eq!(mirror.load_all().unwrap(), expect);
        let reopened = Mirror::open_existing(store.path(), 5).unwrap();
        assert_eq!(reopened.load_all().unwrap(), expect);
        assert_eq!(reopened.read(b"gone").unwrap(), None);
        assert_eq!(reopened.read(b"d/b.txt").unwrap(), None);
        drop((mirror, reopened));

        remove_epoch(store.path(), 5).unwrap();
        assert_eq!(fs::read_dir(store.path().join(store::MIRROR_DIR)).unwrap().count(), 0);
    }

    /// Held by the tests that compact: the failpoint one sets is global.
    static COMPACTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_grown_log_is_folded_into_a_new_pack_and_a_crash_in_between_is_harmless() {
        let _one_at_a_time = COMPACTING.lock().unwrap_or_else(|e| e.into_inner());
        let store = tempfile::tempdir().unwrap();
        store::create(store.path()).unwrap();
        let mut mirror = Mirror::open(store.path(), 3).unwrap();
        mirror.put_new(b"keep.txt", Node::File, b"kept\n").unwrap();
        mirror.put_new(b"drop.txt", Node::File, b"dropped\n").unwrap();
        mirror.finish_baseline().unwrap();
        mirror.remove(b"drop.txt").unwrap();
        let dir = epoch_dir(store.path(), 3);
        let log_path = log::path(&dir);
        let big = noise(1 << 20, 1);
        let mut rounds = 0;
        while fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0) + (big.len() as u64) <= COMPACT_AFTER {
            mirror.put(b"big.txt", Node::File, &big).unwrap();
            rounds += 1;
        }
        // The log as it was before the append that folds it, which takes
        // it just past the limit.
        let before = fs::read(&log_path).unwrap();
        let last = noise((COMPACT_AFTER - before.len() as u64) as usize, 2);
        mirror.put(b"big.txt", Node::File, &last).unwrap();
        assert_eq!(rounds, 63, "no fold before the limit");
        assert_eq!(fs::metadata(&log_path).unwrap().len(), 0, "the log is emptied");
        let expect: TreeState = [
            (b"big.txt".to_vec(), (Node::File, last.clone())),
            (b"keep.txt".to_vec(), (Node::File, b"kept\n".to_vec())),
        ]
        .into_iter()
        .collect();
        assert_eq!(mirror.load_all().unwrap(), expect);
        assert_eq!(Mirror::open_existing(store.path(), 3).unwrap().load_all().unwrap(), expect);
        // A crash after the new pack was renamed into place but before the
        // log was emptied: the old log replays onto the new pack, and the
        // repair appends the last entry again.
        fs::write(&log_path, &before).unwrap();
        let mut crashed = Mirror::open_existing(store.path(), 3).unwrap();
        crashed.put(b"big.txt", Node::File, &last).unwrap();
        assert_eq!(crashed.load_all().unwrap(), expect);
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn a_failed_compaction_keeps_the_log_and_is_tried_again() {
        let _one_at_a_time = COMPACTING.lock().unwrap_or_else(|e| e.into_inner());
        let store = tempfile::tempdir().unwrap();
        store::create(store.path()).unwrap();
        let mut mirror = Mirror::open(store.path(), 6).unwrap();
        mirror.put_new(b"a.txt", Node::File, b"a\n").unwrap();
        mirror.finish_baseline().unwrap();
        let big = noise((COMPACT_AFTER / 2) as usize, 3);
        mirror.put(b"big.txt", Node::File, &big).unwrap();
        crate::failpoint::cfg("mirror.rename", "1*return").unwrap();
        let failed = mirror.put(b"big.txt", Node::File, &big);
        assert!(matches!(&failed, Err(Error::Io { op: "rename", .. })), "{failed:?}");
        let log_path = log::path(&epoch_dir(store.path(), 6));
        assert!(fs::metadata(&log_path).unwrap().len() > COMPACT_AFTER, "the log is kept");
        let expect = |m: &Mirror| {
            let all = m.load_all().unwrap();
            assert_eq!(all.len(), 2);
            assert_eq!(all[&b"big.txt".to_vec()].1, big);
        };
        expect(&mirror);
        expect(&Mirror::open_existing(store.path(), 6).unwrap());
        // The next update folds it.
        mirror.put(b"a.txt", Node::File, b"a2\n").unwrap();
        assert_eq!(fs::metadata(&log_path).unwrap().len(), 0);
        expect(&Mirror::open_existing(store.path(), 6).unwrap());
        assert!(!epoch_dir(store.path(), 6).with_extension("pack.new").exists());
    }

    #[test]
    fn a_damaged_pack_is_named() {
        let store = tempfile::tempdir().unwrap();
        store::create(store.path()).unwrap();
        let mut mirror = Mirror::open(store.path(), 2).unwrap();
        mirror.put_new(b"a.txt", Node::File, b"a\n").unwrap();
        mirror.finish_baseline().unwrap();
        let pack = epoch_dir(store.path(), 2).with_extension("pack");
        let good = fs::read(&pack).unwrap();
        for cut in [0, 8, good.len() - 1] {
            fs::write(&pack, &good[..cut]).unwrap();
            assert!(
                matches!(Mirror::open_existing(store.path(), 2), Err(Error::Damaged { .. })),
                "cut at {cut}"
            );
        }
        let mut bad = good.clone();
        let at = bad.len() - 24;
        bad[at] ^= 0x40; // the index offset
        fs::write(&pack, &bad).unwrap();
        assert!(Mirror::open_existing(store.path(), 2).is_err());
        // A new baseline of the same epoch starts clean.
        drop(Mirror::open(store.path(), 2).unwrap());
        assert!(!pack.exists());
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let store = tempfile::tempdir().unwrap();
        store::create(store.path()).unwrap();
        let mut mirror = Mirror::open(store.path(), 1).unwrap();
        assert!(matches!(mirror.put(b"../escape", Node::File, b"x"), Err(Error::UnsafePath(_))));
        assert!(matches!(mirror.read(b"/etc/passwd"), Err(Error::UnsafePath(_))));
    }
}
