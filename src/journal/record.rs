//! Records: what a frame's payload means.
//!
//! A frame's payload is one [`Record`] encoded with postcard (a compact,
//! non-self-describing serde format; see the postcard wire spec). The frame
//! header's `kind` repeats [`Record::kind`] so tools can filter without
//! decoding. Paths and contents are raw bytes: nothing is lost to UTF-8.
//!
//! Every record belongs to an **epoch**: the sequence number of the
//! baseline its file changes apply to. The mirror of an epoch lives in
//! `<store>/mirror/<epoch>/`.
//!
//! Changing any type here changes the on-disk format: bump
//! [`FORMAT_VERSION`] with it. A change that only adds variants at the end
//! of enums keeps older payloads decodable by the new types (version 3
//! added the `mark` record so, and version 2 payloads decode as version 3;
//! version 5 added hunk line kinds so, and version 4 payloads decode with
//! the current types).
//! A change that adds a field to a struct must keep the older layout's
//! types (postcard is not self-describing): [`legacy`] holds them, frozen,
//! and [`Record::decode`] picks the types by the payload's version, which
//! is always its first field.
//!
//! | version | written by | adds |
//! |--:|---|---|
//! | 2 | the first release | |
//! | 3 | | the `mark` record |
//! | 4 | | named writers, file modes, the `mode` change, the `undo` record |
//! | 5 | | long lines as byte splices (`Tag::Splice`, `Tag::Elided`) |

use serde::{Deserialize, Serialize};

use crate::diff::Patch;

pub mod legacy;

/// Version of the payload encoding; stored in every record.
pub const FORMAT_VERSION: u16 = 5;

/// The oldest payload version whose layout is the current one (later
/// versions only added enum variants at the end).
const OLDEST_CURRENT_LAYOUT: u16 = 4;

/// The oldest payload version this monitord reads.
pub const OLDEST_READABLE_VERSION: u16 = 2;

/// The first payload version that records files' modes (older records
/// decode with every mode 0: not known).
pub const MODES_SINCE: u16 = 4;

/// Errors decoding a payload.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a record of this version.
    #[error("undecodable record payload")]
    Payload(#[source] postcard::Error),
    /// The record was written by another format version.
    #[error(
        "record format version {found} is not supported (this monitord reads versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION})"
    )]
    Version {
        /// The version found.
        found: u16,
    },
}

/// The kind of a record, as stored in the frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Kind {
    /// A full listing of the tracked tree (content in the mirror).
    Baseline = 1,
    /// One sampling period's changes.
    Sample = 2,
    /// The monitor switched to another process.
    Pid = 3,
    /// The target process exited.
    Exit = 4,
    /// The target changed its working directory.
    Cwd = 5,
    /// Events were lost and part of the tree was rescanned.
    Rescan = 6,
    /// A point in history named by the user (`mark NAME`).
    Mark = 7,
    /// Changes written to the live tree by `monitord undo`.
    Undo = 8,
}

impl Kind {
    /// The word used in output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Baseline => "baseline",
            Kind::Sample => "sample",
            Kind::Pid => "pid",
            Kind::Exit => "exit",
            Kind::Cwd => "cwd",
            Kind::Rescan => "rescan",
            Kind::Mark => "mark",
            Kind::Undo => "undo",
        }
    }

    /// The kind of a frame-header value, if it is one of ours.
    pub fn from_u16(value: u16) -> Option<Kind> {
        Some(match value {
            1 => Kind::Baseline,
            2 => Kind::Sample,
            3 => Kind::Pid,
            4 => Kind::Exit,
            5 => Kind::Cwd,
            6 => Kind::Rescan,
            7 => Kind::Mark,
            8 => Kind::Undo,
            _ => return None,
        })
    }
}

/// The records of the frames of `kind` among `frames`, decoded (those
/// that do not decode are left out): the frame header names the kind, so
/// nothing else is decoded.
pub fn decode_kind(frames: &[crate::journal::Frame<'_>], kind: Kind) -> Vec<(u64, Record)> {
    frames
        .iter()
        .filter(|f| f.kind == kind as u16)
        .filter_map(|f| Some((f.seq, Record::decode(&f.payload).ok()?)))
        .collect()
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Payload format version ([`FORMAT_VERSION`]).
    pub version: u16,
    /// Sequence number of the baseline whose tree this record changes.
    pub epoch: u64,
    /// PID of the target when the record was taken (0: none).
    pub pid: i32,
    /// What happened.
    pub body: Body,
}

/// The content of a record, by kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// See [`Baseline`].
    Baseline(Baseline),
    /// See [`Sample`].
    Sample(Sample),
    /// The target is now another process.
    Pid {
        /// The PID followed before (0: none).
        old: i32,
        /// The PID followed from now on.
        new: i32,
    },
    /// See [`Exit`].
    Exit(Exit),
    /// The target's working directory changed.
    Cwd {
        /// The old directory, as the kernel named it.
        old: Vec<u8>,
        /// The new directory.
        new: Vec<u8>,
    },
    /// Events were lost (queue overflow, a watch that could not be added):
    /// these directories were compared with the mirror in full.
    Rescan {
        /// Why.
        reason: String,
        /// Directories rescanned, relative to the root ("" is the root).
        paths: Vec<Vec<u8>>,
    },
    /// A point in history named by the user (`mark NAME`); `@NAME` finds
    /// it wherever a point is taken.
    Mark {
        /// The name ([`valid_mark_name`]).
        name: String,
    },
    /// `monitord undo A..B` made the live tree what it was at `from`: the
    /// changes it wrote, and only those.
    Undo {
        /// The point the tree was put back to (A).
        from: u64,
        /// The point the undo started from (B).
        to: u64,
        /// The changes written, as in a sample (no maps, no stats).
        sample: Sample,
    },
}

/// Why a mark name is refused, or `None` when it is valid: one line of
/// printable characters, at most [`MAX_MARK_NAME`] bytes.
pub fn valid_mark_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a mark needs a name")
    } else if name.len() > MAX_MARK_NAME {
        Some("a mark name is at most 64 bytes")
    } else if name.chars().any(char::is_control) {
        Some("a mark name is one line of printable characters")
    } else if name.trim() != name {
        Some("a mark name neither starts nor ends with white space")
    } else {
        None
    }
}

/// The longest mark name, in bytes.
pub const MAX_MARK_NAME: usize = 64;

/// The first record of an epoch: every tracked entry of the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The directory, as the kernel named it.
    pub cwd: Vec<u8>,
    /// Start time of the target (ticks after boot), its identity with the PID.
    pub starttime: u64,
    /// Every tracked file and symlink, sorted by path.
    pub files: Vec<FileEntry>,
    /// Entries left out, and why.
    pub skipped: Vec<Skipped>,
    /// The memory map at the baseline, lines as in `/proc/<pid>/maps`.
    pub maps: Vec<Vec<u8>>,
    /// Process statistics, when recorded.
    pub stats: Option<Stats>,
    /// The event backend recording this epoch (`inotify`, `fanotify`,
    /// `poll`; empty in stores written before it was recorded): whether
    /// its samples can name writers.
    pub backend: String,
}

/// A tracked entry in a baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the root, `/`-separated.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// File or symlink.
    pub node: Node,
    /// Size of the content (for a symlink, of its target string).
    pub size: u64,
    /// [`crate::diff::hash`] of the content.
    pub hash: u64,
    /// Permission bits (`st_mode & 0o7777`); 0 when not recorded (stores
    /// written before modes were; a symlink's).
    pub mode: u32,
}

/// What kind of entry a path is. A symlink's "content" is its target
/// string: it is recorded and restored as a link, never followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Node {
    /// A regular text file.
    File,
    /// A symbolic link.
    Symlink,
}

/// An entry that is not tracked, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Path relative to the root.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// Why an entry is not tracked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkipReason {
    /// Larger than `--max-file-size`.
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
    /// It could not be read (the errno).
    Unreadable {
        /// `errno` of the failed open or read.
        errno: i32,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::TooLarge { size } => write!(f, "too large ({size} bytes)"),
            SkipReason::Unreadable { errno } => {
                write!(f, "unreadable ({})", nix::errno::Errno::from_raw(*errno).desc())
            }
        }
    }
}

/// One period's changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Changed entries, in the order they are applied forwards.
    pub files: Vec<FileChange>,
    /// Entries seen this period but left out.
    pub skipped: Vec<Skipped>,
    /// Mappings added to and removed from the memory map.
    pub maps: MapsDelta,
    /// Process statistics, when recorded.
    pub stats: Option<Stats>,
    /// Who wrote each changed path during the period, when the backend
    /// knows (fanotify); in the order of `files`.
    pub writers: Vec<Writers>,
}

/// The processes that changed one path during a period.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writers {
    /// The path (as in [`FileChange::path`]).
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// The writers' PIDs, sorted.
    pub pids: Vec<i32>,
    /// With `--only-target`: none of them was the target or one of its
    /// descendants. The change is applied (restores stay exact) but marked.
    pub foreign: bool,
    /// Who each PID was when its event was read, in the order of `pids`
    /// (empty in stores written before writers were named).
    pub who: Vec<Writer>,
}

/// A writing process, as named when its event was read: it may have
/// exited since.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writer {
    /// Its PID.
    pub pid: i32,
    /// Its command name (`/proc/<pid>/comm`), when it was still running.
    pub comm: Option<String>,
    /// Its executable (`/proc/<pid>/exe`), when it could be read.
    pub exe: Option<Vec<u8>>,
    /// Its effective user id (the one its writes were checked against),
    /// when it was still running.
    pub uid: Option<u32>,
    /// It was the target or one of its descendants.
    pub target: bool,
}

impl Writer {
    /// `comm[pid]`, as output names a writer (`?[pid]` when its name is
    /// not known).
    pub fn label(&self) -> String {
        format!("{}[{}]", self.comm.as_deref().unwrap_or("?"), self.pid)
    }
}

/// How a path changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Change {
    /// It did not exist before.
    Created,
    /// Its content changed.
    Modified,
    /// It no longer exists (or is no longer text).
    Deleted,
    /// It was moved here from [`FileChange::from`] (and perhaps changed).
    Renamed,
    /// Only its permission bits changed ([`FileChange::old_mode`] →
    /// [`FileChange::mode`]).
    Mode,
}

impl Change {
    /// The word used in output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Modified => "modified",
            Change::Deleted => "deleted",
            Change::Renamed => "renamed",
            Change::Mode => "mode",
        }
    }
}

/// One changed entry with its reversible patch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// Path relative to the root (the new path of a rename).
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// How it changed.
    pub change: Change,
    /// The old path of a rename.
    #[serde(with = "serde_bytes")]
    pub from: Option<Vec<u8>>,
    /// File or symlink.
    pub node: Node,
    /// Old → new content (empty side for created/deleted); applies both ways.
    pub patch: Patch,
    /// Permission bits before, when this change altered or removed them.
    pub old_mode: Option<u32>,
    /// Permission bits after, when this change set or altered them.
    pub mode: Option<u32>,
}

impl FileChange {
    /// A change with no mode recorded.
    pub fn new(path: Vec<u8>, change: Change, from: Option<Vec<u8>>, node: Node, patch: Patch) -> FileChange {
        FileChange { path, change, from, node, patch, old_mode: None, mode: None }
    }
}

/// Mapping lines added and removed, as in `/proc/<pid>/maps`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapsDelta {
    /// Lines present now and not before.
    pub added: Vec<Vec<u8>>,
    /// Lines present before and not now.
    pub removed: Vec<Vec<u8>>,
}

/// Cheap process statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// User CPU time.
    pub utime_ms: u64,
    /// System CPU time.
    pub stime_ms: u64,
    /// Resident set size.
    pub rss_kib: u64,
    /// Virtual size.
    pub vsz_kib: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// How the target ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Exit status, when known (we are its parent).
    pub code: Option<i32>,
    /// Terminating signal, when known.
    pub signal: Option<i32>,
    /// Resource use, when known (we are its parent).
    pub rusage: Option<Rusage>,
}

/// Resource use of an exited child (from `wait4`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rusage {
    /// User CPU time.
    pub utime_ms: u64,
    /// System CPU time.
    pub stime_ms: u64,
    /// Peak RSS.
    pub maxrss_kib: u64,
    /// Block input operations.
    pub inblock: u64,
    /// Block output operations.
    pub oublock: u64,
    /// Voluntary context switches.
    pub nvcsw: u64,
    /// Involuntary context switches.
    pub nivcsw: u64,
}

impl Record {
    /// The frame kind of this record.
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Baseline(_) => Kind::Baseline,
            Body::Sample(_) => Kind::Sample,
            Body::Pid { .. } => Kind::Pid,
            Body::Exit(_) => Kind::Exit,
            Body::Cwd { .. } => Kind::Cwd,
            Body::Rescan { .. } => Kind::Rescan,
            Body::Mark { .. } => Kind::Mark,
            Body::Undo { .. } => Kind::Undo,
        }
    }

    /// The file changes a record makes to the tree: a sample's, or an
    /// undo's (kept as a sample). Every reader of file history goes
    /// through this, so an undo replays as any sample does.
    pub fn changes(&self) -> Option<&Sample> {
        match &self.body {
            Body::Sample(sample) | Body::Undo { sample, .. } => Some(sample),
            _ => None,
        }
    }

    /// Encode as a frame payload.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing into a Vec cannot fail for these types: postcard only
        // fails on unsized sequences and full buffers, neither possible here.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decode a frame payload.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not a record of this version.
    pub fn decode(payload: &[u8]) -> Result<Record, DecodeError> {
        let (version, _) = postcard::take_from_bytes::<u16>(payload).map_err(DecodeError::Payload)?;
        match version {
            OLDEST_CURRENT_LAYOUT..=FORMAT_VERSION => {
                postcard::from_bytes(payload).map_err(DecodeError::Payload)
            }
            OLDEST_READABLE_VERSION..OLDEST_CURRENT_LAYOUT => legacy::decode_v3(payload),
            found => Err(DecodeError::Version { found }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn sample_record() -> Record {
        Record {
            version: FORMAT_VERSION,
            epoch: 1,
            pid: 42,
            body: Body::Sample(Sample {
                files: vec![FileChange::new(
                    b"dir/\xff.txt".to_vec(),
                    Change::Modified,
                    None,
                    Node::File,
                    Patch::compute(b"a\nb\n", b"a\nc\n", Duration::from_millis(100)),
                )],
                skipped: vec![Skipped { path: b"big".to_vec(), reason: SkipReason::TooLarge { size: 9 } }],
                maps: MapsDelta::default(),
                stats: Some(Stats { rss_kib: 10, ..Stats::default() }),
                writers: vec![Writers {
                    path: b"dir/\xff.txt".to_vec(),
                    pids: vec![7, 9],
                    foreign: true,
                    who: vec![
                        Writer {
                            pid: 7,
                            comm: Some("sed".into()),
                            exe: Some(b"/usr/bin/sed".to_vec()),
                            uid: Some(0),
                            target: false,
                        },
                        Writer { pid: 9, ..Writer::default() },
                    ],
                }],
            }),
        }
    }

    #[test]
    fn record_round_trips() {
        let record = sample_record();
        assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        assert_eq!(record.kind(), Kind::Sample);
        assert_eq!(Kind::from_u16(Kind::Sample as u16), Some(Kind::Sample));
    }

    #[test]
    fn other_version_is_refused() {
        let mut record = sample_record();
        record.version = 99;
        assert!(matches!(Record::decode(&record.encode()), Err(DecodeError::Version { found: 99 })));
    }

    #[test]
    fn a_version_4_payload_with_a_patch_decodes_with_the_current_types() {
        // Written by format version 4: a sample changing `f` from
        // "a\nb\n" to "a\nc\n" (version 5 only added hunk line kinds).
        let v4: &[u8] = &[
            4, 1, 84, 1, 1, 1, 102, 1, 0, 0, 222, 243, 135, 147, 149, 254, 144, 154, 41, 208, 172, 177, 175,
            194, 134, 222, 202, 127, 4, 4, 1, 0, 0, 3, 0, 2, 97, 10, 1, 2, 98, 10, 2, 2, 99, 10, 0, 0, 0, 0,
            0, 0, 0,
        ];
        let record = Record::decode(v4).unwrap();
        assert_eq!((record.version, record.epoch, record.pid), (4, 1, 42));
        let sample = record.changes().unwrap();
        let patch = &sample.files[0].patch;
        assert_eq!(sample.files[0].path, b"f");
        assert_eq!(patch.apply_forward(b"a\nb\n").unwrap(), b"a\nc\n");
        assert_eq!(*patch, Patch::compute(b"a\nb\n", b"a\nc\n", Duration::from_secs(1)));
        // Paths and line texts are read as byte strings, in one copy:
        // postcard writes those exactly as the sequences of bytes it wrote
        // before, so the same record encodes to the same bytes.
        assert_eq!(record.encode(), v4);
    }

    #[test]
    fn a_record_with_a_spliced_long_line_round_trips() {
        let old = [vec![b'x'; 10_000], b"\n".to_vec()].concat();
        let mut new = old.clone();
        new[5000] = b'y';
        let patch = Patch::compute(&old, &new, Duration::from_secs(1));
        assert!(patch.hunks[0].lines[0].splice().is_some());
        let mut record = sample_record();
        let Body::Sample(sample) = &mut record.body else { unreachable!() };
        sample.files[0].patch = patch;
        let bytes = record.encode();
        assert!(bytes.len() < 1000, "{} bytes", bytes.len());
        let back = Record::decode(&bytes).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.changes().unwrap().files[0].patch.apply_forward(&old).unwrap(), new);
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Record::decode(&bytes);
        }

        #[test]
        fn truncated_payloads_are_errors(cut in 0usize..64) {
            let bytes = sample_record().encode();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(Record::decode(&bytes[..cut]).is_err());
        }
    }
}
