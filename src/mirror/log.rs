//! The mirror's change log: every update made after an epoch's baseline,
//! appended to one file, `<store>/mirror/<epoch>.log`. A sample's mirror
//! update is one write at the end of that file, whatever the tree and
//! whatever the filesystem: no file is created, renamed or removed on the
//! sampling path.
//!
//! Each entry (integers little-endian):
//!
//! ```text
//! magic u32 "MDLZ", kind u8 (0 file, 1 symlink, 2 deleted),
//! path_len u32, len u64, stored u64,
//! check u64 (XXH3-64 of everything else), path bytes,
//! content bytes (stored of them; none for a deletion)
//! ```
//!
//! `len` is the content's length; when `stored` is smaller, the stored
//! bytes are the content zstd-compressed (one stream, inflated to exactly
//! `len` bytes and never more), otherwise they are the content as it is.
//! Logs written before compression hold entries with the magic "MDLG" and
//! no `stored` field (the content as it is); they are still read, and a
//! log may hold both kinds.
//!
//! The newest entry for a path wins. The scan stops at the first entry that
//! is cut short or fails its check: that is where a crash interrupted an
//! append, and the next append overwrites it. An intact entry anywhere
//! after that point means the stop was not a torn tail but damage in the
//! middle, which would silently hide every later update: opening such a
//! log is an error ([`Error::LogDamaged`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Error, io_err};
use crate::compress::{self, Deflater};
use crate::history::{Entry, TreeState};
use crate::journal::record::Node;
use crate::relpath::is_safe_relative;

const MAGIC: &[u8; 4] = b"MDLZ";
/// Entries as the first release wrote them: content as it is, no `stored`.
const MAGIC_V1: &[u8; 4] = b"MDLG";
const HEAD: usize = 4 + 1 + 4 + 8 + 8 + 8;
const HEAD_V1: usize = 4 + 1 + 4 + 8 + 8;
const DELETED: u8 = 2;

/// What the log says about a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// Its newest content, `len` bytes, stored as `stored` bytes at
    /// `offset` (compressed when `stored < len`).
    Entry { node: Node, offset: u64, len: u64, stored: u64 },
    /// It was deleted.
    Deleted,
}

/// An epoch's change log, indexed by path.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    /// Read-only until the first append, then read-write.
    file: Option<File>,
    writable: bool,
    /// Bytes of whole, checked entries.
    len: u64,
    index: HashMap<Vec<u8>, Loc>,
    /// Made on the first append.
    deflater: Option<Deflater>,
}

/// The log's path beside the epoch directory.
pub fn path(epoch_dir: &Path) -> PathBuf {
    epoch_dir.with_extension("log")
}

impl Log {
    /// No log yet (a new epoch).
    pub fn empty(epoch_dir: &Path) -> Log {
        Log {
            path: path(epoch_dir),
            file: None,
            writable: false,
            len: 0,
            index: HashMap::new(),
            deflater: None,
        }
    }

    /// The log of the epoch whose directory is `epoch_dir`, scanned.
    ///
    /// # Errors
    /// [`Error::Io`] when it exists but cannot be read,
    /// [`Error::LogDamaged`] when an entry in its middle fails its check.
    pub fn open(epoch_dir: &Path) -> Result<Log, Error> {
        let mut log = Log::empty(epoch_dir);
        let file = match File::open(&log.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(log),
            Err(e) => return Err(Error::Io { op: "open", path: log.path, source: e }),
        };
        let bytes = read_all(&file, &log.path)?;
        log.len = scan(&bytes, |rel, loc| {
            log.index.insert(rel.to_vec(), loc);
        });
        if let Some(resumes) = intact_entry_after(&bytes, log.len as usize) {
            return Err(Error::LogDamaged { path: log.path, offset: log.len, resumes: resumes as u64 });
        }
        log.file = Some(file);
        Ok(log)
    }

    /// `Some(entry)` when the log has the newest word on `rel` (`None`
    /// inside: deleted); `None` when it never mentions it.
    ///
    /// # Errors
    /// [`Error::Io`] when the log cannot be read.
    pub fn get(&self, rel: &[u8]) -> Result<Option<Option<Entry>>, Error> {
        match (self.index.get(rel), &self.file) {
            (None, _) => Ok(None),
            (Some(Loc::Deleted), _) => Ok(Some(None)),
            (Some(&Loc::Entry { node, offset, len, stored }), Some(file)) => {
                let mut bytes = vec![0; stored as usize];
                file.read_exact_at(&mut bytes, offset).map_err(io_err("read", &self.path))?;
                Ok(Some(Some((node, self.content(rel, bytes, len)?))))
            }
            (Some(Loc::Entry { .. }), None) => Ok(None),
        }
    }

    /// The content of `rel` from its `stored` bytes, `len` long.
    fn content(&self, rel: &[u8], stored: Vec<u8>, len: u64) -> Result<Vec<u8>, Error> {
        if stored.len() as u64 == len {
            return Ok(stored);
        }
        compress::inflate(&stored, len).map_err(|e| Error::EntryDamaged {
            file: self.path.clone(),
            entry: String::from_utf8_lossy(rel).into_owned(),
            what: e.to_string(),
        })
    }

    /// What the log says of `rel` without reading its content: `Some(true)`
    /// present, `Some(false)` deleted, `None` never mentioned.
    pub fn says(&self, rel: &[u8]) -> Option<bool> {
        self.index.get(rel).map(|loc| *loc != Loc::Deleted)
    }

    /// Append `rel`'s new entry, or its deletion.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails (a full disk, say); the log is
    /// then as it was.
    pub fn append(&mut self, rel: &[u8], entry: Option<(Node, &[u8])>) -> Result<(), Error> {
        if !self.writable {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&self.path)
                .map_err(io_err("open", &self.path))?;
            self.file = Some(file);
            self.writable = true;
        }
        let (kind, node, content) = match entry {
            Some((Node::File, content)) => (0, Node::File, content),
            Some((Node::Symlink, content)) => (1, Node::Symlink, content),
            None => (DELETED, Node::File, &[][..]),
        };
        let deflater = match &mut self.deflater {
            Some(deflater) => deflater,
            None => self.deflater.insert(Deflater::new().map_err(io_err("compress", &self.path))?),
        };
        let packed = deflater.shrink(content);
        let stored = packed.as_deref().unwrap_or(content);
        let bytes = encode(kind, rel, content.len() as u64, stored);
        let Some(file) = &self.file else { return Ok(()) };
        let (op, point) =
            if kind == DELETED { ("remove", "mirror.remove") } else { ("write", "mirror.write") };
        crate::failpoint::check(point)
            .and_then(|()| file.write_all_at(&bytes, self.len))
            .map_err(io_err(op, &self.path))?;
        let offset = self.len + (HEAD + rel.len()) as u64;
        self.len += bytes.len() as u64;
        let loc = if kind == DELETED {
            Loc::Deleted
        } else {
            Loc::Entry { node, offset, len: content.len() as u64, stored: stored.len() as u64 }
        };
        self.index.insert(rel.to_vec(), loc);
        Ok(())
    }

    /// Bytes of whole entries in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Apply the log's newest word on every path it mentions to `all`.
    ///
    /// # Errors
    /// [`Error::Io`] when the log cannot be read.
    pub fn apply_to(&self, all: &mut TreeState) -> Result<(), Error> {
        let Some(file) = &self.file else { return Ok(()) };
        let mut bytes = vec![0; self.len as usize];
        file.read_exact_at(&mut bytes, 0).map_err(io_err("read", &self.path))?;
        for (rel, loc) in &self.index {
            match *loc {
                Loc::Deleted => {
                    all.remove(rel);
                }
                Loc::Entry { node, offset, len, stored } => {
                    let stored = bytes[offset as usize..(offset + stored) as usize].to_vec();
                    all.insert(rel.clone(), (node, self.content(rel, stored, len)?));
                }
            }
        }
        Ok(())
    }

    /// Empty the log (its entries are now in the pack).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be truncated.
    pub fn clear(&mut self) -> Result<(), Error> {
        if let Some(file) = &self.file {
            file.set_len(0).map_err(io_err("truncate", &self.path))?;
        }
        self.len = 0;
        self.index.clear();
        Ok(())
    }
}

fn read_all(file: &File, path: &Path) -> Result<Vec<u8>, Error> {
    let size = file.metadata().map_err(io_err("stat", path))?.len();
    let mut bytes = vec![0; size as usize];
    file.read_exact_at(&mut bytes, 0).map_err(io_err("read", path))?;
    Ok(bytes)
}

/// The check of an entry: XXH3-64 of its fields and bytes (`stored` is
/// `None` in a first-release entry, which has no such field).
fn check(kind: u8, rel: &[u8], len: u64, stored: Option<u64>, content: &[u8]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&[kind]);
    hasher.update(&(rel.len() as u32).to_le_bytes());
    hasher.update(&len.to_le_bytes());
    if let Some(stored) = stored {
        hasher.update(&stored.to_le_bytes());
    }
    hasher.update(rel);
    hasher.update(content);
    hasher.digest()
}

/// An entry for `rel`, whose content is `len` bytes long and `stored` as
/// these bytes.
fn encode(kind: u8, rel: &[u8], len: u64, stored: &[u8]) -> Vec<u8> {
    let stored_len = stored.len() as u64;
    let mut bytes = Vec::with_capacity(HEAD + rel.len() + stored.len());
    bytes.extend_from_slice(MAGIC);
    bytes.push(kind);
    bytes.extend_from_slice(&(rel.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&stored_len.to_le_bytes());
    bytes.extend_from_slice(&check(kind, rel, len, Some(stored_len), stored).to_le_bytes());
    bytes.extend_from_slice(rel);
    bytes.extend_from_slice(stored);
    bytes
}

/// The offset of the first intact entry that starts after `stop` (where
/// the scan of `bytes` stopped), if there is one.
fn intact_entry_after(bytes: &[u8], stop: usize) -> Option<usize> {
    let mut from = stop + 1;
    while let Some(found) = bytes.get(from..)?.windows(MAGIC.len()).position(|w| w == MAGIC || w == MAGIC_V1)
    {
        let at = from + found;
        if scan(&bytes[at..], |_, _| {}) > 0 {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Walk the whole, checked entries of `bytes`, calling `found` for each in
/// order; returns where they end.
fn scan(bytes: &[u8], mut found: impl FnMut(&[u8], Loc)) -> u64 {
    let mut at = 0usize;
    while let Some(magic) = bytes.get(at..at + MAGIC.len()) {
        let current = magic == MAGIC;
        let head_len = if current { HEAD } else { HEAD_V1 };
        let Some(head) = bytes.get(at..at + head_len) else { break };
        let kind = head[4];
        let path_len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]) as usize;
        let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or_default());
        let len = word(9);
        let (stored, want) = if current { (word(17), word(25)) } else { (len, word(17)) };
        let Ok(stored_usize) = usize::try_from(stored) else { break };
        let Some(end) = (at + head_len).checked_add(path_len).and_then(|e| e.checked_add(stored_usize))
        else {
            break;
        };
        let Some(body) = bytes.get(at + head_len..end) else { break };
        let (rel, content) = body.split_at(path_len);
        if (!current && magic != MAGIC_V1)
            || kind > DELETED
            || stored > len
            || (kind == DELETED && len != 0)
            || check(kind, rel, len, current.then_some(stored), content) != want
            || !is_safe_relative(rel)
        {
            break;
        }
        let offset = (at + head_len + path_len) as u64;
        let loc = match kind {
            DELETED => Loc::Deleted,
            0 => Loc::Entry { node: Node::File, offset, len, stored },
            _ => Loc::Entry { node: Node::Symlink, offset, len, stored },
        };
        found(rel, loc);
        at = end;
    }
    at as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_torn_tail_is_dropped_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        let mut log = Log::empty(&epoch);
        log.append(b"a", Some((Node::File, b"one\n"))).unwrap();
        log.append(b"b", Some((Node::Symlink, b"a"))).unwrap();
        log.append(b"a", Some((Node::File, b"two\n"))).unwrap();
        log.append(b"c", None).unwrap();
        let whole = log.len();
        let bytes = std::fs::read(path(&epoch)).unwrap();
        assert_eq!(bytes.len() as u64, whole);
        // Every cut in the last entry loses that entry only.
        let last_start = whole as usize - (HEAD + 1);
        for cut in last_start..whole as usize {
            std::fs::write(path(&epoch), &bytes[..cut]).unwrap();
            let reopened = Log::open(&epoch).unwrap();
            assert_eq!(reopened.len(), last_start as u64, "cut at {cut}");
            assert_eq!(reopened.get(b"a").unwrap(), Some(Some((Node::File, b"two\n".to_vec()))));
            assert_eq!(reopened.get(b"c").unwrap(), None);
        }
        let mut reopened = Log::open(&epoch).unwrap();
        reopened.append(b"c", Some((Node::File, b"three\n"))).unwrap();
        let again = Log::open(&epoch).unwrap();
        assert_eq!(again.get(b"c").unwrap(), Some(Some((Node::File, b"three\n".to_vec()))));
        assert_eq!(again.get(b"b").unwrap(), Some(Some((Node::Symlink, b"a".to_vec()))));
        let mut all = TreeState::new();
        all.insert(b"c".to_vec(), (Node::File, b"old".to_vec()));
        all.insert(b"z".to_vec(), (Node::File, b"packed".to_vec()));
        again.apply_to(&mut all).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[&b"c".to_vec()].1, b"three\n");
    }

    #[test]
    fn damage_before_an_intact_entry_is_an_error_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        let mut log = Log::empty(&epoch);
        log.append(b"a", Some((Node::File, b"one\n"))).unwrap();
        log.append(b"b", Some((Node::File, b"two\n"))).unwrap();
        let mut bytes = std::fs::read(path(&epoch)).unwrap();
        // Every bit of the first entry.
        for bit in 0..(HEAD + 1 + 4) * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(path(&epoch), &damaged).unwrap();
            match Log::open(&epoch) {
                Err(Error::LogDamaged { offset: 0, resumes, .. }) => {
                    assert_eq!(resumes, (HEAD + 1 + 4) as u64)
                }
                other => panic!("bit {bit}: {other:?}"),
            }
        }
        // Damage in the last entry is a torn tail: dropped.
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(path(&epoch), &bytes).unwrap();
        assert_eq!(Log::open(&epoch).unwrap().len(), (HEAD + 1 + 4) as u64);
    }

    /// An entry as the first release wrote it.
    fn version_1_entry(kind: u8, rel: &[u8], content: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC_V1.to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(content.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&check(kind, rel, content.len() as u64, None, content).to_le_bytes());
        bytes.extend_from_slice(rel);
        bytes.extend_from_slice(content);
        bytes
    }

    fn text(lines: usize) -> Vec<u8> {
        (0..lines).flat_map(|i| format!("line {i} of a text that compresses well\n").into_bytes()).collect()
    }

    #[test]
    fn a_first_release_log_is_read_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        let mut old = version_1_entry(0, b"a", b"one\n");
        old.extend_from_slice(&version_1_entry(DELETED, b"b", b""));
        std::fs::write(path(&epoch), &old).unwrap();
        let mut log = Log::open(&epoch).unwrap();
        assert_eq!(log.len(), old.len() as u64);
        assert_eq!(log.get(b"a").unwrap(), Some(Some((Node::File, b"one\n".to_vec()))));
        assert_eq!(log.get(b"b").unwrap(), Some(None));
        log.append(b"c", Some((Node::File, &text(100)))).unwrap();
        let again = Log::open(&epoch).unwrap();
        assert_eq!(again.get(b"a").unwrap(), Some(Some((Node::File, b"one\n".to_vec()))));
        assert_eq!(again.get(b"c").unwrap(), Some(Some((Node::File, text(100)))));
    }

    #[test]
    fn a_big_entry_is_stored_compressed_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        let mut log = Log::empty(&epoch);
        let big = text(2000);
        log.append(b"big.txt", Some((Node::File, &big))).unwrap();
        assert!(log.len() < big.len() as u64 / 4, "{} bytes for {}", log.len(), big.len());
        let again = Log::open(&epoch).unwrap();
        assert_eq!(again.get(b"big.txt").unwrap(), Some(Some((Node::File, big.clone()))));
        let mut all = TreeState::new();
        again.apply_to(&mut all).unwrap();
        assert_eq!(all[&b"big.txt".to_vec()].1, big);
    }

    #[test]
    fn a_compressed_entry_that_lies_about_its_length_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        let big = text(2000);
        let packed = Deflater::new().unwrap().shrink(&big).unwrap();
        // Checked entries (the check is right) whose length is not what
        // the stream inflates to: too short (a bomb for that length), and
        // too long.
        for len in [packed.len() as u64 + 1, big.len() as u64 - 1, big.len() as u64 + 1] {
            std::fs::write(path(&epoch), encode(0, b"a", len, &packed)).unwrap();
            let log = Log::open(&epoch).unwrap();
            match log.get(b"a") {
                Err(Error::EntryDamaged { entry, .. }) => assert_eq!(entry, "a"),
                other => panic!("length {len}: {other:?}"),
            }
            assert!(log.apply_to(&mut TreeState::new()).is_err());
        }
    }

    proptest! {
        #[test]
        fn compressed_entries_round_trip(
            lines in 0usize..300,
            tail in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let epoch = dir.path().join("1");
            let mut content = text(lines);
            content.extend_from_slice(&tail);
            let mut log = Log::empty(&epoch);
            log.append(b"x", Some((Node::File, &content))).unwrap();
            let again = Log::open(&epoch).unwrap();
            prop_assert_eq!(again.get(b"x").unwrap(), Some(Some((Node::File, content))));
        }

        #[test]
        fn scanning_hostile_bytes_never_panics_and_stays_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let end = scan(&bytes, |_, loc| {
                if let Loc::Entry { offset, stored, len, .. } = loc {
                    assert!(offset + stored <= bytes.len() as u64 && stored <= len);
                }
            });
            prop_assert!(end <= bytes.len() as u64);
        }

        #[test]
        fn a_flipped_bit_ends_the_scan_at_its_entry(flip in 0usize..(2 * (HEAD + 3 + 5) * 8)) {
            let mut bytes = encode(0, b"abc", 5, b"hello");
            bytes.extend_from_slice(&encode(0, b"abc", 5, b"world"));
            bytes[flip / 8] ^= 1 << (flip % 8);
            let mut seen = Vec::new();
            scan(&bytes, |_, loc| seen.push(loc));
            let entry = HEAD + 3 + 5;
            prop_assert_eq!(seen.len(), usize::from(flip / 8 >= entry));
        }
    }
}
