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
//! Layout of the pack (integers little-endian), format 3:
//!
//! ```text
//! offset 0   magic  b"MDPACK\0\x03"                   8 bytes
//!        8   blocks, back to back: each holds the contents of
//!            consecutive entries (about BLOCK_TARGET bytes of
//!            them, or one bigger entry), zstd-compressed when that
//!            is smaller, as they are otherwise
//!        I   index: raw_len u64, check u64 (XXH3-64 of the raw
//!            index), then the raw index, zstd-compressed when that
//!            is smaller (the index ends where the footer starts).
//!            The raw index is:
//!              blocks u64, then per block:
//!                offset u64, stored u64, raw u64
//!              then per entry:
//!                node u8 (0 file, 1 symlink), path_len u32,
//!                block u32, offset u64 (in the block's raw bytes),
//!                len u64, hash u64, path bytes
//!  end - 24  footer: I u64, entries u64, b"MDPACKIX"
//! ```
//!
//! An empty entry needs no block: its block and offset mean nothing
//! (writers before this was said named the block after the last one).
//!
//! A block whose `stored` length equals its `raw` length is kept as it is;
//! a shorter one is a single zstd stream, inflated to exactly `raw` bytes
//! and never more ([`crate::compress::inflate`]). Reading one entry reads
//! and inflates its block only, so a restore of one path never inflates
//! the pack. Small blocks cost some compression but keep that read cheap:
//! a sample reads the mirror's content of every file it diffs.
//!
//! `hash` is [`crate::diff::hash`] of the entry's content, the hash the
//! journal records for it: every read checks it, so a pack damaged on disk
//! is an error naming the entry, never wrong content.
//!
//! Older formats are still read. Format 2 (magic ending in `\x02`) keeps
//! the contents as they are, back to back from offset 8, and its index is
//! stored as it is, one entry per path:
//! `node u8, path_len u32, offset u64 (in the file), len u64, hash u64,
//! path bytes`. Format 1 (`\x01`) is format 2 without `hash`.
//!
//! A pack without its footer is one whose baseline never committed; no
//! reader is ever pointed at it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Error, io_err};
use crate::compress::{self, Deflater};
use crate::history::TreeState;
use crate::journal::record::Node;
use crate::relpath::is_safe_relative;

const MAGIC: &[u8; 8] = b"MDPACK\0\x03";
/// Contents back to back, as they are, and a hash per entry.
const MAGIC_V2: &[u8; 8] = b"MDPACK\0\x02";
/// The first version: no content hashes in the index.
const MAGIC_V1: &[u8; 8] = b"MDPACK\0\x01";
const FOOTER_MAGIC: &[u8; 8] = b"MDPACKIX";
const FOOTER_LEN: u64 = 24;
/// node, path length, offset, length (version 1).
const INDEX_HEAD_V1: usize = 1 + 4 + 8 + 8;
/// node, path length, offset, length, hash (version 2).
const INDEX_HEAD_V2: usize = INDEX_HEAD_V1 + 8;
/// node, path length, block, offset, length, hash.
const INDEX_HEAD: usize = 1 + 4 + 4 + 8 + 8 + 8;
/// offset, stored, raw.
const BLOCK_HEAD: usize = 8 + 8 + 8;
/// raw_len and check in front of the (compressed) index.
const INDEX_PREFIX: u64 = 16;
/// A block is closed once it holds this many bytes of contents. A sample
/// inflates one block per file it diffs, so this is a trade: on the
/// sample bench's text (zstd level 3), 32 KiB blocks keep 21.5% of the
/// bytes and cost about 40 us to inflate, 8 KiB blocks keep 23.7% at
/// about a quarter of the time.
pub const BLOCK_TARGET: usize = 8 << 10;
/// The longest path an index entry may name (Linux's PATH_MAX).
const PATH_MAX: u64 = 4096;

/// Where a packed entry's content is.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// In the file, as it is (formats 1 and 2).
    Plain { offset: u64 },
    /// At `offset` of the raw bytes of block `block` (format 3).
    Block { block: usize, offset: u64 },
    /// Nowhere: an empty entry needs no block (format 3 packs written
    /// before this was so name a block after the last one for it).
    Empty,
}

/// A packed entry.
#[derive(Clone, Copy, Debug)]
struct Slot {
    node: Node,
    place: Place,
    len: u64,
    /// The content's hash (none in a version 1 pack).
    hash: Option<u64>,
}

/// One block of a format 3 pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    /// Where its stored bytes start in the file.
    offset: u64,
    /// Bytes stored.
    stored: u64,
    /// Bytes of contents it holds.
    raw: u64,
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
    /// Where the contents (or blocks) end and the index begins.
    contents_end: u64,
    index: HashMap<Vec<u8>, Slot>,
    /// The blocks of a format 3 pack (none for older ones).
    blocks: Vec<Block>,
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
        let index = read_index(&file, pack.size, &pack.path)?;
        (pack.index, pack.blocks, pack.contents_end) = index;
        pack.file = Some(file);
        Ok(pack)
    }

    /// The packed entry at `rel`.
    ///
    /// # Errors
    /// [`Error::Io`] when the pack cannot be read, [`Error::EntryDamaged`]
    /// when the entry (or its block) does not check.
    pub fn get(&self, rel: &[u8]) -> Result<Option<(Node, Vec<u8>)>, Error> {
        let (Some(file), Some(slot)) = (&self.file, self.index.get(rel)) else { return Ok(None) };
        let content = match slot.place {
            Place::Plain { offset } => {
                let mut content = vec![0; slot.len as usize];
                file.read_exact_at(&mut content, offset).map_err(io_err("read", &self.path))?;
                content
            }
            Place::Block { block, offset } => {
                let raw = self.read_block(file, self.blocks[block], &[], rel)?;
                raw[offset as usize..(offset + slot.len) as usize].to_vec()
            }
            Place::Empty => Vec::new(),
        };
        slot.check(&self.path, rel, &content)?;
        Ok(Some((slot.node, content)))
    }

    /// The raw bytes of `block`, read from `file` (or from `stored`, the
    /// stored bytes when already read); damage is named after `rel`.
    fn read_block(&self, file: &File, block: Block, stored: &[u8], rel: &[u8]) -> Result<Vec<u8>, Error> {
        let mut owned = Vec::new();
        let stored = if stored.is_empty() && block.stored > 0 {
            owned.resize(block.stored as usize, 0);
            file.read_exact_at(&mut owned, block.offset).map_err(io_err("read", &self.path))?;
            &owned[..]
        } else {
            stored
        };
        if block.stored == block.raw {
            return Ok(if owned.is_empty() { stored.to_vec() } else { owned });
        }
        compress::inflate(stored, block.raw).map_err(|e| Error::EntryDamaged {
            file: self.path.clone(),
            entry: String::from_utf8_lossy(rel).into_owned(),
            what: format!("its block at offset {} does not inflate: {e}", block.offset),
        })
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
        // Inflate each block once, when its first entry needs it.
        let mut raw: Vec<Option<Vec<u8>>> = vec![None; self.blocks.len()];
        for (rel, slot) in &self.index {
            let (block, offset) = match slot.place {
                Place::Block { block, offset } => (block, offset),
                Place::Plain { offset } => {
                    let from = (offset - start) as usize;
                    let content = &contents[from..from + slot.len as usize];
                    slot.check(&self.path, rel, content)?;
                    all.insert(rel.clone(), (slot.node, content.to_vec()));
                    continue;
                }
                Place::Empty => {
                    slot.check(&self.path, rel, &[])?;
                    all.insert(rel.clone(), (slot.node, Vec::new()));
                    continue;
                }
            };
            let bytes = match &mut raw[block] {
                Some(bytes) => bytes,
                empty => {
                    let b = self.blocks[block];
                    let from = (b.offset - start) as usize;
                    let stored = &contents[from..from + b.stored as usize];
                    empty.insert(self.read_block(file, b, stored, rel)?)
                }
            };
            let content = &bytes[offset as usize..(offset + slot.len) as usize];
            slot.check(&self.path, rel, content)?;
            all.insert(rel.clone(), (slot.node, content.to_vec()));
        }
        Ok(())
    }
}

/// A pack's index, its blocks and where its contents end.
type Index = (HashMap<Vec<u8>, Slot>, Vec<Block>, u64);

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// The index of the pack in `file`, its blocks, and where its contents end.
fn read_index(file: &File, size: u64, path: &Path) -> Result<Index, Error> {
    let damaged = |what: &'static str| Error::Damaged { path: path.to_path_buf(), what };
    if size < MAGIC.len() as u64 + FOOTER_LEN {
        return Err(damaged("shorter than its header and footer"));
    }
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0).map_err(io_err("read", path))?;
    let version = match &magic {
        m if m == MAGIC => 3,
        m if m == MAGIC_V2 => 2,
        m if m == MAGIC_V1 => 1,
        _ => return Err(damaged("not a mirror pack (bad magic)")),
    };
    let mut footer = [0u8; FOOTER_LEN as usize];
    file.read_exact_at(&mut footer, size - FOOTER_LEN).map_err(io_err("read", path))?;
    if &footer[16..] != FOOTER_MAGIC {
        return Err(damaged("no footer (its baseline never finished)"));
    }
    let (index_at, count) = (le_u64(&footer, 0), le_u64(&footer, 8));
    let index_end = size - FOOTER_LEN;
    if index_at < MAGIC.len() as u64 || index_at > index_end {
        return Err(damaged("index offset out of range"));
    }
    let mut bytes = vec![0; (index_end - index_at) as usize];
    file.read_exact_at(&mut bytes, index_at).map_err(io_err("read", path))?;
    if version < 3 {
        let index = read_plain_index(&bytes, version, count, index_at, path)?;
        return Ok((index, Vec::new(), index_at));
    }
    if (bytes.len() as u64) < INDEX_PREFIX {
        return Err(damaged("index cut short"));
    }
    let (raw_len, want) = (le_u64(&bytes, 0), le_u64(&bytes, 8));
    let stored = &bytes[INDEX_PREFIX as usize..];
    // Every entry may open its own block: this bounds the raw index.
    let most = count.saturating_mul(INDEX_HEAD as u64 + PATH_MAX + BLOCK_HEAD as u64).saturating_add(8);
    if raw_len > most {
        return Err(damaged("index length out of range"));
    }
    let raw = if stored.len() as u64 == raw_len {
        stored.to_vec()
    } else {
        compress::inflate(stored, raw_len).map_err(|_| damaged("index does not inflate"))?
    };
    if xxhash_rust::xxh3::xxh3_64(&raw) != want {
        return Err(damaged("index fails its check"));
    }
    read_block_index(&raw, count, index_at, path)
}

/// The index of a format 1 or 2 pack.
fn read_plain_index(
    bytes: &[u8],
    version: u8,
    count: u64,
    index_at: u64,
    path: &Path,
) -> Result<HashMap<Vec<u8>, Slot>, Error> {
    let damaged = |what: &'static str| Error::Damaged { path: path.to_path_buf(), what };
    let head = if version == 2 { INDEX_HEAD_V2 } else { INDEX_HEAD_V1 };
    let mut index = HashMap::with_capacity(count.min(bytes.len() as u64 / head as u64) as usize);
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < head {
            return Err(damaged("index entry cut short"));
        }
        let node = node_of(rest[0]).ok_or_else(|| damaged("unknown entry kind"))?;
        let path_len = le_u32(rest, 1) as usize;
        let offset = le_u64(rest, 5);
        let len = le_u64(rest, 13);
        let hash = (version == 2).then(|| le_u64(rest, 21));
        let Some(rel) = rest.get(head..head + path_len) else {
            return Err(damaged("index path cut short"));
        };
        if offset < MAGIC.len() as u64 || offset.checked_add(len).is_none_or(|end| end > index_at) {
            return Err(damaged("entry outside the contents"));
        }
        if !is_safe_relative(rel) {
            return Err(Error::UnsafePath(String::from_utf8_lossy(rel).into_owned()));
        }
        index.insert(rel.to_vec(), Slot { node, place: Place::Plain { offset }, len, hash });
        rest = &rest[head + path_len..];
    }
    if index.len() as u64 != count {
        return Err(damaged("index entry count does not match its footer"));
    }
    Ok(index)
}

fn node_of(byte: u8) -> Option<Node> {
    match byte {
        0 => Some(Node::File),
        1 => Some(Node::Symlink),
        _ => None,
    }
}

/// The raw index of a format 3 pack.
fn read_block_index(raw: &[u8], count: u64, index_at: u64, path: &Path) -> Result<Index, Error> {
    let damaged = |what: &'static str| Error::Damaged { path: path.to_path_buf(), what };
    let nblocks = le_u64(raw, 0);
    let table_end = nblocks
        .checked_mul(BLOCK_HEAD as u64)
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= raw.len() as u64)
        .ok_or_else(|| damaged("block table cut short"))? as usize;
    let mut blocks = Vec::with_capacity(nblocks as usize);
    let mut next = MAGIC.len() as u64;
    for at in (8..table_end).step_by(BLOCK_HEAD) {
        let block = Block { offset: le_u64(raw, at), stored: le_u64(raw, at + 8), raw: le_u64(raw, at + 16) };
        if block.offset != next || block.stored > block.raw {
            return Err(damaged("block table out of order"));
        }
        next = block
            .offset
            .checked_add(block.stored)
            .filter(|&end| end <= index_at)
            .ok_or_else(|| damaged("block outside the contents"))?;
        blocks.push(block);
    }
    if next != index_at {
        return Err(damaged("blocks do not end where the index starts"));
    }
    let mut index = HashMap::with_capacity(count.min(raw.len() as u64 / INDEX_HEAD as u64) as usize);
    let mut rest = &raw[table_end..];
    while !rest.is_empty() {
        if rest.len() < INDEX_HEAD {
            return Err(damaged("index entry cut short"));
        }
        let node = node_of(rest[0]).ok_or_else(|| damaged("unknown entry kind"))?;
        let path_len = le_u32(rest, 1) as usize;
        let block = le_u32(rest, 5) as usize;
        let offset = le_u64(rest, 9);
        let len = le_u64(rest, 17);
        let hash = le_u64(rest, 25);
        let Some(rel) = rest.get(INDEX_HEAD..INDEX_HEAD + path_len) else {
            return Err(damaged("index path cut short"));
        };
        let place = if len == 0 {
            Place::Empty
        } else if blocks.get(block).is_some_and(|b| offset.checked_add(len).is_some_and(|end| end <= b.raw)) {
            Place::Block { block, offset }
        } else {
            return Err(damaged("entry outside its block"));
        };
        if !is_safe_relative(rel) {
            return Err(Error::UnsafePath(String::from_utf8_lossy(rel).into_owned()));
        }
        index.insert(rel.to_vec(), Slot { node, place, len, hash: Some(hash) });
        rest = &rest[INDEX_HEAD + path_len..];
    }
    if index.len() as u64 != count {
        return Err(damaged("index entry count does not match its footer"));
    }
    Ok((index, blocks, index_at))
}

/// A pack being written by a baseline.
///
/// Blocks are compressed and written by a worker thread
/// (`monitord-pack`), so that compressing one block overlaps with reading
/// the files of the next; a bounded channel keeps at most a few blocks in
/// flight.
#[derive(Debug)]
pub struct PackWriter {
    path: PathBuf,
    /// The contents of the block being filled.
    block: Vec<u8>,
    /// Blocks handed to the worker so far.
    sealed: u32,
    /// The index entries (after the block table).
    index: Vec<u8>,
    count: u64,
    worker: Option<Worker>,
}

/// The thread that compresses and writes blocks.
#[derive(Debug)]
struct Worker {
    blocks: std::sync::mpsc::SyncSender<Vec<u8>>,
    thread: std::thread::JoinHandle<Result<Written, Error>>,
}

/// What the worker wrote: the file, its block table, and where the next
/// byte goes.
struct Written {
    out: BufWriter<File>,
    blocks: Vec<Block>,
    offset: u64,
}

impl Worker {
    fn start(out: BufWriter<File>, path: PathBuf) -> Result<Worker, Error> {
        let mut deflater = Deflater::fast().map_err(io_err("compress", &path))?;
        let (blocks, raw) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let at = path.clone();
        let thread = std::thread::Builder::new()
            .name("monitord-pack".into())
            .spawn(move || {
                let mut written = Written { out, blocks: Vec::new(), offset: MAGIC.len() as u64 };
                for block in raw {
                    let packed = deflater.shrink(&block);
                    let stored = packed.as_deref().unwrap_or(&block);
                    written.out.write_all(stored).map_err(io_err("write", &at))?;
                    let b = Block {
                        offset: written.offset,
                        stored: stored.len() as u64,
                        raw: block.len() as u64,
                    };
                    written.offset += b.stored;
                    written.blocks.push(b);
                }
                Ok(written)
            })
            .map_err(io_err("start a thread for", &path))?;
        Ok(Worker { blocks, thread })
    }

    /// Wait for the worker to write every block sent and stop.
    fn finish(self, path: &Path) -> Result<Written, Error> {
        drop(self.blocks);
        match self.thread.join() {
            Ok(done) => done,
            Err(_) => Err(Error::Io {
                op: "compress",
                path: path.to_path_buf(),
                source: io::Error::other("the pack writer thread panicked"),
            }),
        }
    }
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
        let worker = Worker::start(out, path.clone())?;
        Ok(PackWriter {
            path,
            block: Vec::with_capacity(BLOCK_TARGET * 2),
            sealed: 0,
            index: Vec::new(),
            count: 0,
            worker: Some(worker),
        })
    }

    /// Append one entry.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails (a full disk, say).
    pub fn add(&mut self, rel: &[u8], node: Node, content: &[u8]) -> Result<(), Error> {
        crate::failpoint::check("mirror.write").map_err(io_err("write", &self.path))?;
        // A big entry does not share a block: reading a small neighbour
        // must not inflate it.
        if !self.block.is_empty() && self.block.len() + content.len() > 2 * BLOCK_TARGET {
            self.seal_block()?;
        }
        self.index.push(match node {
            Node::File => 0,
            Node::Symlink => 1,
        });
        self.index.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        self.index.extend_from_slice(&self.sealed.to_le_bytes());
        self.index.extend_from_slice(&(self.block.len() as u64).to_le_bytes());
        self.index.extend_from_slice(&(content.len() as u64).to_le_bytes());
        self.index.extend_from_slice(&crate::diff::hash(content).to_le_bytes());
        self.index.extend_from_slice(rel);
        self.block.extend_from_slice(content);
        self.count += 1;
        if self.block.len() >= BLOCK_TARGET {
            self.seal_block()?;
        }
        Ok(())
    }

    /// Hand the block being filled to the worker.
    fn seal_block(&mut self) -> Result<(), Error> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_TARGET * 2));
        let sent = self.worker.as_ref().is_some_and(|w| w.blocks.send(block).is_ok());
        if !sent {
            // The worker stopped: its error says why.
            let failed = match self.worker.take() {
                Some(worker) => worker.finish(&self.path).err(),
                None => None,
            };
            return Err(failed.unwrap_or_else(|| Error::Io {
                op: "write",
                path: self.path.clone(),
                source: io::Error::other("the pack writer thread stopped"),
            }));
        }
        self.sealed += 1;
        Ok(())
    }

    /// Write the last block, the index and the footer; the pack is then
    /// ready to be committed.
    ///
    /// # Errors
    /// [`Error::Io`] when a write fails.
    pub fn finish(mut self) -> Result<(), Error> {
        self.seal_block()?;
        let Some(worker) = self.worker.take() else {
            return Err(Error::Io {
                op: "write",
                path: self.path.clone(),
                source: io::Error::other("the pack writer thread stopped"),
            });
        };
        let Written { mut out, blocks, offset } = worker.finish(&self.path)?;
        let mut deflater = Deflater::new().map_err(io_err("compress", &self.path))?;
        let mut raw = Vec::with_capacity(8 + blocks.len() * BLOCK_HEAD + self.index.len());
        raw.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
        for b in &blocks {
            raw.extend_from_slice(&b.offset.to_le_bytes());
            raw.extend_from_slice(&b.stored.to_le_bytes());
            raw.extend_from_slice(&b.raw.to_le_bytes());
        }
        raw.extend_from_slice(&self.index);
        let packed = deflater.shrink(&raw);
        let stored = packed.as_deref().unwrap_or(&raw);
        let mut region = Vec::with_capacity(INDEX_PREFIX as usize + stored.len() + FOOTER_LEN as usize);
        region.extend_from_slice(&(raw.len() as u64).to_le_bytes());
        region.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&raw).to_le_bytes());
        region.extend_from_slice(stored);
        region.extend_from_slice(&offset.to_le_bytes());
        region.extend_from_slice(&self.count.to_le_bytes());
        region.extend_from_slice(FOOTER_MAGIC);
        out.write_all(&region).map_err(io_err("write", &self.path))?;
        out.flush().map_err(io_err("write", &self.path))
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

    /// A pack as the second format wrote it: contents as they are, a
    /// hash per entry.
    fn version_2_pack(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut bytes = MAGIC_V2.to_vec();
        let mut index = Vec::new();
        for (rel, content) in entries {
            index.push(0);
            index.extend_from_slice(&(rel.len() as u32).to_le_bytes());
            index.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            index.extend_from_slice(&(content.len() as u64).to_le_bytes());
            index.extend_from_slice(&crate::diff::hash(content).to_le_bytes());
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

    /// The text of entry `i`: lines of words, as a source tree has.
    fn text(i: usize) -> Vec<u8> {
        (0..20)
            .flat_map(|l| format!("{i:06}:{l:02} sample record mirror journal {}\n", i * l).into_bytes())
            .collect()
    }

    /// A format 3 pack of `n` text entries (several compressed blocks).
    fn written(epoch: &Path, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut writer = PackWriter::create(&path(epoch)).unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            (0..n).map(|i| (format!("d{}/f{i}.txt", i % 7).into_bytes(), text(i))).collect();
        for (rel, content) in &entries {
            writer.add(rel, Node::File, content).unwrap();
        }
        writer.add(b"link", Node::Symlink, b"d0/f0.txt").unwrap();
        writer.finish().unwrap();
        entries
    }

    #[test]
    fn a_pack_of_blocks_round_trips_and_is_smaller() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        let entries = written(&epoch, 2000);
        let raw: usize = entries.iter().map(|(_, c)| c.len()).sum();
        let pack = Pack::open(&epoch).unwrap();
        assert!(pack.blocks.len() > 10, "{} blocks", pack.blocks.len());
        // Every full block is compressed (the last one may be too small to gain).
        assert!(pack.blocks[..pack.blocks.len() - 1].iter().all(|b| b.stored < b.raw));
        assert!(pack.size() < raw as u64 / 3, "{} bytes for {raw}", pack.size());
        for (rel, content) in &entries {
            assert_eq!(pack.get(rel).unwrap(), Some((Node::File, content.clone())));
        }
        assert_eq!(pack.get(b"link").unwrap(), Some((Node::Symlink, b"d0/f0.txt".to_vec())));
        assert_eq!(pack.get(b"nothing").unwrap(), None);
        let mut all = TreeState::new();
        pack.load_into(&mut all).unwrap();
        assert_eq!(all.len(), entries.len() + 1);
        for (rel, content) in &entries {
            assert_eq!(&all[rel].1, content);
        }
    }

    #[test]
    fn empty_entries_after_a_sealed_block_and_alone_read_back() {
        let dir = tempfile::tempdir().unwrap();
        // A block sealed by the entry before, then empty ones: they name
        // a block that is never written, and need none.
        let epoch = dir.path().join("1");
        let mut writer = PackWriter::create(&path(&epoch)).unwrap();
        writer.add(b"full", Node::File, &vec![b'x'; BLOCK_TARGET]).unwrap();
        writer.add(b"empty", Node::File, b"").unwrap();
        writer.add(b"also-empty", Node::File, b"").unwrap();
        writer.finish().unwrap();
        let pack = Pack::open(&epoch).unwrap();
        assert_eq!(pack.blocks.len(), 1);
        assert_eq!(pack.get(b"empty").unwrap(), Some((Node::File, Vec::new())));
        let mut all = TreeState::new();
        pack.load_into(&mut all).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[&b"also-empty"[..]].1.is_empty());
        // A tree of empty files only: no block at all.
        let epoch = dir.path().join("2");
        let mut writer = PackWriter::create(&path(&epoch)).unwrap();
        writer.add(b"a", Node::File, b"").unwrap();
        writer.finish().unwrap();
        let pack = Pack::open(&epoch).unwrap();
        assert!(pack.blocks.is_empty());
        assert_eq!(pack.get(b"a").unwrap(), Some((Node::File, Vec::new())));
    }

    #[test]
    fn a_big_entry_has_a_block_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        let mut writer = PackWriter::create(&path(&epoch)).unwrap();
        let big: Vec<u8> = (0..5000).flat_map(text).collect();
        writer.add(b"small", Node::File, &text(1)).unwrap();
        writer.add(b"big", Node::File, &big).unwrap();
        writer.add(b"after", Node::File, &text(2)).unwrap();
        writer.add(b"empty", Node::File, b"").unwrap();
        writer.finish().unwrap();
        let pack = Pack::open(&epoch).unwrap();
        assert_eq!(pack.blocks.len(), 3, "{:?}", pack.blocks);
        assert_eq!(pack.get(b"big").unwrap(), Some((Node::File, big)));
        assert_eq!(pack.get(b"after").unwrap(), Some((Node::File, text(2))));
        assert_eq!(pack.get(b"empty").unwrap(), Some((Node::File, Vec::new())));
    }

    /// Replace the index of the format 3 pack `bytes` with `raw` (checked,
    /// stored as it is), as a writer that lies would.
    fn with_index(bytes: &[u8], raw: &[u8], count: u64) -> Vec<u8> {
        let index_at = u64::from_le_bytes(bytes[bytes.len() - 24..bytes.len() - 16].try_into().unwrap());
        let mut out = bytes[..index_at as usize].to_vec();
        out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
        out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(raw).to_le_bytes());
        out.extend_from_slice(raw);
        out.extend_from_slice(&index_at.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(FOOTER_MAGIC);
        out
    }

    #[test]
    fn a_block_that_inflates_past_its_recorded_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        // A bomb: 64 MiB of zeros in a few KiB, said to hold a few KiB.
        let bomb = Deflater::new().unwrap().shrink(&vec![0u8; 64 << 20]).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&bomb);
        let index_at = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 24]);
        bytes[index_at as usize..index_at as usize + 8].copy_from_slice(&index_at.to_le_bytes());
        for (raw_len, entry_len) in [(bomb.len() as u64 + 1000, 100u64), (bomb.len() as u64, 10)] {
            let mut raw = 1u64.to_le_bytes().to_vec();
            raw.extend_from_slice(&8u64.to_le_bytes());
            raw.extend_from_slice(&(bomb.len() as u64).to_le_bytes());
            raw.extend_from_slice(&raw_len.to_le_bytes());
            raw.push(0);
            raw.extend_from_slice(&1u32.to_le_bytes());
            raw.extend_from_slice(&0u32.to_le_bytes());
            raw.extend_from_slice(&0u64.to_le_bytes());
            raw.extend_from_slice(&entry_len.to_le_bytes());
            raw.extend_from_slice(&crate::diff::hash(&vec![0u8; entry_len as usize]).to_le_bytes());
            raw.push(b'z');
            std::fs::write(path(&epoch), with_index(&bytes[..index_at as usize + 24], &raw, 1)).unwrap();
            let pack = Pack::open(&epoch).unwrap();
            match pack.get(b"z") {
                Err(Error::EntryDamaged { entry, .. }) => assert_eq!(entry, "z"),
                other => panic!("block of {raw_len}: {other:?}"),
            }
            assert!(pack.load_into(&mut TreeState::new()).is_err());
        }
    }

    #[test]
    fn a_flip_anywhere_in_a_compressed_pack_is_never_wrong_content() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        let entries = written(&epoch, 300);
        let clean = std::fs::read(path(&epoch)).unwrap();
        let mut refused = 0;
        for at in (0..clean.len()).step_by(clean.len() / 400 + 1) {
            let mut damaged = clean.clone();
            damaged[at] ^= 1 << (at % 8);
            std::fs::write(path(&epoch), &damaged).unwrap();
            let Ok(pack) = Pack::open(&epoch) else {
                refused += 1;
                continue;
            };
            for (rel, content) in entries.iter().step_by(7) {
                match pack.get(rel) {
                    Ok(got) => assert_eq!(got, Some((Node::File, content.clone())), "byte {at}"),
                    Err(Error::EntryDamaged { entry, .. }) => {
                        assert_eq!(entry.as_bytes(), rel.as_slice());
                        refused += 1;
                    }
                    Err(other) => panic!("byte {at}: {other:?}"),
                }
            }
            let mut all = TreeState::new();
            if pack.load_into(&mut all).is_ok() {
                for (rel, content) in &entries {
                    assert_eq!(&all[rel].1, content, "byte {at}");
                }
            }
        }
        assert!(refused > 100, "{refused}");
    }

    #[test]
    fn a_version_2_pack_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = dir.path().join("1");
        std::fs::write(path(&epoch), version_2_pack(&[(b"a", b"one\n"), (b"d/b", b"two\n")])).unwrap();
        let pack = Pack::open(&epoch).unwrap();
        assert_eq!(pack.get(b"d/b").unwrap(), Some((Node::File, b"two\n".to_vec())));
        let mut all = TreeState::new();
        pack.load_into(&mut all).unwrap();
        assert_eq!(all.len(), 2);
        let mut damaged = version_2_pack(&[(b"a", b"one\n")]);
        damaged[MAGIC.len()] ^= 1;
        std::fs::write(path(&epoch), damaged).unwrap();
        assert!(matches!(Pack::open(&epoch).unwrap().get(b"a"), Err(Error::EntryDamaged { .. })));
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Any run of entry sizes, empty ones and ones that seal a block
        /// among them, reads back entry by entry and all at once.
        #[test]
        fn any_entry_sizes_round_trip(
            sizes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(0usize),
                    proptest::strategy::Just(BLOCK_TARGET),
                    0usize..3 * BLOCK_TARGET,
                ],
                0..24,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let epoch = dir.path().join("1");
            let mut writer = PackWriter::create(&path(&epoch)).unwrap();
            let entries: Vec<(Vec<u8>, Vec<u8>)> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (format!("f{i}").into_bytes(), text(i).into_iter().cycle().take(n).collect()))
                .collect();
            for (rel, content) in &entries {
                writer.add(rel, Node::File, content).unwrap();
            }
            writer.finish().unwrap();
            let pack = Pack::open(&epoch).unwrap();
            for (rel, content) in &entries {
                proptest::prop_assert_eq!(pack.get(rel).unwrap(), Some((Node::File, content.clone())));
            }
            let mut all = TreeState::new();
            pack.load_into(&mut all).unwrap();
            proptest::prop_assert_eq!(all.len(), entries.len());
            for (rel, content) in &entries {
                proptest::prop_assert_eq!(&all[rel].1, content);
            }
        }
    }
}
