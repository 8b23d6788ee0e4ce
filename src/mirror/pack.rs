//! The packed baseline: every entry of an epoch's baseline in one file,
//! `<store>/mirror/<epoch>.pack`, rather than one mirror file each.
//! Creating 100,000 small files costs far more than writing the same bytes
//! once (inode allocation, directory updates), and reading them back for a
//! restore costs one random read each on a cold cache.
//!
//! The pack is written once, while the baseline is taken, and never changed
//! afterwards; the baseline record commits it. Later samples append to the
//! epoch's log, whose entries override the pack's. Compaction writes a
//! whole new pack under another name and renames it into place.
//!
//! Layout of the pack (integers little-endian):
//!
//! ```text
//! offset 0   magic  b"MDPACK\0\x02"              8 bytes
//!        8   contents, back to back               Σ len
//!        I   index, one entry per path:
//!              node u8 (0 file, 1 symlink), path_len u32,
//!              offset u64, len u64, hash u64, path bytes
//!  end - 24  footer: I u64, entries u64, b"MDPACKIX"
//! ```
//!
//! `hash` is [`crate::diff::hash`] of the entry's content, the hash the
//! journal records for it: every read checks it, so a pack damaged on disk
//! is an error naming the entry, never wrong content. Packs of version 1
//! (magic ending in `\x01`) have no `hash` in their index and are read as
//! before.
//!
//! A pack without its footer is one whose baseline never committed; no
//! reader is ever pointed at it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Error, io_err};
use crate::history::TreeState;
use crate::journal::record::Node;
use crate::relpath::is_safe_relative;

const MAGIC: &[u8; 8] = b"MDPACK\0\x02";
/// The first version: no content hashes in the index.
const MAGIC_V1: &[u8; 8] = b"MDPACK\0\x01";
const FOOTER_MAGIC: &[u8; 8] = b"MDPACKIX";
const FOOTER_LEN: u64 = 24;
/// node, path length, offset, length (version 1).
const INDEX_HEAD_V1: usize = 1 + 4 + 8 + 8;
/// node, path length, offset, length, hash.
const INDEX_HEAD: usize = INDEX_HEAD_V1 + 8;

/// Where a packed entry's content is.
#[derive(Clone, Copy, Debug)]
struct Slot {
    node: Node,
    offset: u64,
    len: u64,
    /// The content's hash (none in a version 1 pack).
    hash: Option<u64>,
}

impl Slot {
    /// `content` as read for `rel`, checked against the recorded hash.
    fn check(&self, pack: &Path, rel: &[u8], content: &[u8]) -> Result<(), Error> {
        match self.hash {
            Some(want) if crate::diff::hash(content) != want => Err(Error::EntryDamaged {
                file: pack.to_path_buf(),
                entry: String::from_utf8_lossy(rel).into_owned(),
                what: format!(
                    "its content hashes to {:016x}, the pack recorded {want:016x}",
                    crate::diff::hash(content)
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// A committed pack, for reading.
#[derive(Debug, Default)]
pub struct Pack {
    file: Option<File>,
    path: PathBuf,
    size: u64,
    /// Where the contents end and the index begins.
    contents_end: u64,
    index: HashMap<Vec<u8>, Slot>,
}

/// The path of an epoch's pack, beside its directory.
pub fn path(epoch_dir: &Path) -> PathBuf {
    epoch_dir.with_extension("pack")
}

/// Where a compaction writes the epoch's next pack before renaming it over
/// [`path`].
pub fn staging_path(epoch_dir: &Path) -> PathBuf {
    epoch_dir.with_extension("pack.new")
}

impl Pack {
    /// No pack (an epoch whose baseline is still being written, or one
    /// recorded before packs existed: everything is in its directory).
    pub fn empty(epoch_dir: &Path) -> Pack {
        Pack { path: path(epoch_dir), ..Pack::default() }
    }

    /// The pack of the epoch whose directory is `epoch_dir`, if it has one.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, [`Error::Damaged`] when its
    /// index does not hold together.
    pub fn open(epoch_dir: &Path) -> Result<Pack, Error> {
        let mut pack = Pack::empty(epoch_dir);
        let file = match File::open(&pack.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(pack),
            Err(e) => return Err(Error::Io { op: "open", path: pack.path, source: e }),
        };
        pack.size = file.metadata().map_err(io_err("stat", &pack.path))?.len();
        (pack.index, pack.contents_end) = read_index(&file, pack.size, &pack.path)?;
        pack.file = Some(file);
        Ok(pack)
    }

    /// The packed entry at `rel`.
    ///
    /// # Errors
    /// [`Error::Io`] when the pack cannot be read.
    pub fn get(&self, rel: &[u8]) -> Result<Option<(Node, Vec<u8>)>, Error> {
        let (Some(file), Some(slot)) = (&self.file, self.index.get(rel)) else { return Ok(None) };
        let mut content = vec![0; slot.len as usize];
        file.read_exact_at(&mut content, slot.offset).map_err(io_err("read", &self.path))?;
        slot.check(&self.path, rel, &content)?;
        Ok(Some((slot.node, content)))
    }

    /// Whether the pack holds `rel`.
    pub fn contains(&self, rel: &[u8]) -> bool {
        self.index.contains_key(rel)
    }

    /// The pack's size in bytes (0 when there is none).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Add every packed entry to `all`, reading the contents in one go.
    ///
    /// # Errors
    /// [`Error::Io`] when the pack cannot be read, [`Error::EntryDamaged`]
    /// when an entry does not match its hash.
    pub fn load_into(&self, all: &mut TreeState) -> Result<(), Error> {
        let Some(file) = &self.file else { return Ok(()) };
        let start = MAGIC.len() as u64;
        let mut contents = vec![0; (self.contents_end - start) as usize];
        file.read_exact_at(&mut contents, start).map_err(io_err("read", &self.path))?;
        for (rel, slot) in &self.index {
            let from = (slot.offset - start) as usize;
            let content = &contents[from..from + slot.len as usize];
            slot.check(&self.path, rel, content)?;
            all.insert(rel.clone(), (slot.node, content.to_vec()));
        }
        Ok(())
    }
}

/// The index of the pack in `file` and where its contents end.
fn read_index(file: &File, size: u64, path: &Path) -> Result<(HashMap<Vec<u8>, Slot>, u64), Error> {
    let damaged = |what: &'static str| Error::Damaged { path: path.to_path_buf(), what };
    if size < MAGIC.len() as u64 + FOOTER_LEN {
        return Err(damaged("shorter than its header and footer"));
    }
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0).map_err(io_err("read", path))?;
    let hashed = match &magic {
        m if m == MAGIC => true,
        m if m == MAGIC_V1 => false,
        _ => return Err(damaged("not a mirror pack (bad magic)")),
    };
    let head = if hashed { INDEX_HEAD } else { INDEX_HEAD_V1 };
    let mut footer = [0u8; FOOTER_LEN as usize];
    file.read_exact_at(&mut footer, size - FOOTER_LEN).map_err(io_err("read", path))?;
    let word = |i: usize| u64::from_le_bytes(footer[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    if &footer[16..] != FOOTER_MAGIC {
        return Err(damaged("no footer (its baseline never finished)"));
    }
    let (index_at, count) = (word(0), word(1));
    let index_end = size - FOOTER_LEN;
    if index_at < MAGIC.len() as u64 || index_at > index_end {
        return Err(damaged("index offset out of range"));
    }
    let mut bytes = vec![0; (index_end - index_at) as usize];
    file.read_exact_at(&mut bytes, index_at).map_err(io_err("read", path))?;
    let mut index = HashMap::with_capacity(count.min(bytes.len() as u64 / head as u64) as usize);
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        if rest.len() < head {
            return Err(damaged("index entry cut short"));
        }
        let node = match rest[0] {
            0 => Node::File,
            1 => Node::Symlink,
            _ => return Err(damaged("unknown entry kind")),
        };
        let path_len = u32::from_le_bytes(rest[1..5].try_into().unwrap_or_default()) as usize;
        let offset = u64::from_le_bytes(rest[5..13].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(rest[13..21].try_into().unwrap_or_default());
        let hash = hashed.then(|| u64::from_le_bytes(rest[21..29].try_into().unwrap_or_default()));
        let Some(rel) = rest.get(head..head + path_len) else {
            return Err(damaged("index path cut short"));
        };
        if offset < MAGIC.len() as u64 || offset.checked_add(len).is_none_or(|end| end > index_at) {
            return Err(damaged("entry outside the contents"));
        }
        if !is_safe_relative(rel) {
            return Err(Error::UnsafePath(String::from_utf8_lossy(rel).into_owned()));
        }
        index.insert(rel.to_vec(), Slot { node, offset, len, hash });
        rest = &rest[head + path_len..];
    }
    if index.len() as u64 != count {
        return Err(damaged("index entry count does not match its footer"));
    }
    Ok((index, index_at))
}

/// A pack being written by a baseline.
#[derive(Debug)]
pub struct PackWriter {
    out: BufWriter<File>,
    path: PathBuf,
    offset: u64,
    index: Vec<u8>,
    count: u64,
}

impl PackWriter {
    /// Start a pack at `path` (replacing an unfinished one).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created.
    pub fn create(path: &Path) -> Result<PackWriter, Error> {
        let path = path.to_path_buf();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC).map_err(io_err("write", &path))?;
        Ok(PackWriter { out, path, offset: MAGIC.len() as u64, index: Vec::new(), count: 0 })
    }

    /// Append one entry.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails (a full disk, say).
    pub fn add(&mut self, rel: &[u8], node: Node, content: &[u8]) -> Result<(), Error> {
        crate::failpoint::check("mirror.write")
            .and_then(|()| self.out.write_all(content))
            .map_err(io_err("write", &self.path))?;
        self.index.push(match node {
            Node::File => 0,
            Node::Symlink => 1,
        });
        self.index.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        self.index.extend_from_slice(&self.offset.to_le_bytes());
        self.index.extend_from_slice(&(content.len() as u64).to_le_bytes());
        self.index.extend_from_slice(&crate::diff::hash(content).to_le_bytes());
        self.index.extend_from_slice(rel);
        self.offset += content.len() as u64;
        self.count += 1;
        Ok(())
    }

    /// Write the index and footer; the pack is then ready to be committed.
    ///
    /// # Errors
    /// [`Error::Io`] when a write fails.
    pub fn finish(mut self) -> Result<(), Error> {
        let mut footer = Vec::with_capacity(FOOTER_LEN as usize);
        footer.extend_from_slice(&self.offset.to_le_bytes());
        footer.extend_from_slice(&self.count.to_le_bytes());
        footer.extend_from_slice(FOOTER_MAGIC);
        let index = std::mem::take(&mut self.index);
        self.out.write_all(&index).map_err(io_err("write", &self.path))?;
        self.out.write_all(&footer).map_err(io_err("write", &self.path))?;
        self.out.flush().map_err(io_err("write", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack as the first release wrote it: no hashes in the index.
    fn version_1_pack(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut bytes = MAGIC_V1.to_vec();
        let mut index = Vec::new();
        for (rel, content) in entries {
            index.push(0);
            index.extend_from_slice(&(rel.len() as u32).to_le_bytes());
            index.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            index.extend_from_slice(&(content.len() as u64).to_le_bytes());
            index.extend_from_slice(rel);
            bytes.extend_from_slice(content);
        }
        let index_at = bytes.len() as u64;
        bytes.extend_from_slice(&index);
        bytes.extend_from_slice(&index_at.to_le_bytes());
        bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        bytes.extend_from_slice(FOOTER_MAGIC);
        bytes
    }

    #[test]
    fn a_version_1_pack_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        std::fs::write(path(&epoch), version_1_pack(&[(b"a", b"one\n"), (b"d/b", b"two\n")])).unwrap();
        let pack = Pack::open(&epoch).unwrap();
        assert_eq!(pack.get(b"d/b").unwrap(), Some((Node::File, b"two\n".to_vec())));
        let mut all = TreeState::new();
        pack.load_into(&mut all).unwrap();
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn every_flipped_content_bit_is_an_error_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        let mut writer = PackWriter::create(&path(&epoch)).unwrap();
        writer.add(b"a.txt", Node::File, b"alpha\n").unwrap();
        writer.add(b"b.txt", Node::File, b"beta\n").unwrap();
        writer.finish().unwrap();
        let clean = std::fs::read(path(&epoch)).unwrap();
        let contents = MAGIC.len()..MAGIC.len() + 11;
        for bit in contents.start * 8..contents.end * 8 {
            let mut damaged = clean.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(path(&epoch), &damaged).unwrap();
            let pack = Pack::open(&epoch).unwrap();
            let name: &[u8] = if bit / 8 < MAGIC.len() + 6 { b"a.txt" } else { b"b.txt" };
            match pack.get(name) {
                Err(Error::EntryDamaged { entry, .. }) => assert_eq!(entry.as_bytes(), name),
                other => panic!("bit {bit}: {other:?}"),
            }
            assert!(pack.load_into(&mut TreeState::new()).is_err(), "bit {bit}");
        }
    }
}
