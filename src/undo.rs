//! `undo`: make the live tree what it was at an earlier point.
//!
//! Three steps, each its own function so the CLI (no monitor running) and
//! the monitor (which records the undo as one record) share them:
//!
//! 1. [`plan`]: the net change from B back to A for the chosen paths, from
//!    the journal and the mirror ([`crate::restore::state_at`], so every
//!    content is hash-checked), each path with its version at B and at A.
//!    `--by WHO` keeps the paths only WHO changed between A and B; a path
//!    WHO and others both changed is refused, since their changes cannot be
//!    told apart in a net change.
//! 2. [`check`]: every path against the live tree, before anything is
//!    written. A path as recorded at B is to be undone; one already as at A
//!    is done (a second undo after an interrupted one finishes the job);
//!    anything else is a conflict.
//! 3. [`apply`]: deletions first, then each file written to a temporary
//!    beside it and renamed over its path (never a torn file), with its
//!    recorded mode and its owner kept; directories made as needed and
//!    those left empty removed. Every directory is opened below the root
//!    with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so nothing is
//!    written through a symlink or outside the watched directory; a
//!    symlink planted where a file goes is replaced, never followed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::credentials::Opener;
use crate::diff::{self, Patch};
use crate::journal::Snapshot;
use crate::journal::record::{Change, FileChange, Node, Record};
use crate::query::{Paths, Who};
use crate::relpath::as_path;
use crate::render::human::sanitize;
use crate::restore::{self, At};
use crate::store;
use crate::tree::{self, Observed};

/// Why an undo cannot be planned or applied.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A point, the journal or the mirror could not be read.
    #[error(transparent)]
    Restore(#[from] restore::Error),
    /// The ring could not be read.
    #[error(transparent)]
    Journal(#[from] crate::journal::Error),
    /// A record in the range could not be decoded.
    #[error("record {seq} cannot be decoded: {source}")]
    Decode {
        /// Its seq.
        seq: u64,
        /// Why.
        #[source]
        source: crate::journal::record::DecodeError,
    },
    /// A is after B.
    #[error("#{from} is after #{to}: undo goes back, from B to an earlier A")]
    Backwards {
        /// A.
        from: u64,
        /// B.
        to: u64,
    },
    /// A and B are in different epochs (a restart or a change of
    /// directory in between).
    #[error(
        "#{from} and #{to} lie in different recordings of the tree (a new baseline at #{epoch}): undo back to #{epoch} at most"
    )]
    Epochs {
        /// A.
        from: u64,
        /// B.
        to: u64,
        /// The first seq of B's epoch.
        epoch: u64,
    },
    /// The watched directory is not known (the baseline left the ring).
    #[error("the watched directory of #{seq} is not known (its baseline is no longer in the ring)")]
    NoRoot {
        /// B.
        seq: u64,
    },
    /// A file whose content at a point is not known.
    #[error("{0}")]
    LeftOut(String),
    /// `--by` on a store whose backend cannot know writers.
    #[error("{0}")]
    WritersUnknown(String),
    /// The watched directory cannot be opened.
    #[error("cannot open the watched directory {}: {source}", sanitize(.path))]
    OpenRoot {
        /// Its path.
        path: Vec<u8>,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing a path failed (the files before it are already undone).
    #[error("cannot undo {}: {what}: {errno}", sanitize(.path))]
    Write {
        /// The path.
        path: Vec<u8>,
        /// The step that failed.
        what: &'static str,
        /// Why.
        errno: Errno,
    },
}

/// What to undo.
#[derive(Clone, Debug)]
pub struct Request {
    /// The point the tree goes back to (A).
    pub from: At,
    /// The point it goes back from (B; `None`: the newest record).
    pub to: Option<At>,
    /// Only these paths (empty: all).
    pub paths: Vec<Vec<u8>>,
    /// Only the changes of this writer.
    pub by: Option<Who>,
}

/// An undo as sent to a running monitor (the control command `undo
/// JSON`): the points as typed, the paths as bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Wire {
    /// A, as typed.
    pub from: String,
    /// B, as typed (`None`: the newest record).
    pub to: Option<String>,
    /// Only these paths.
    #[serde(default)]
    pub paths: Vec<Vec<u8>>,
    /// Only this writer's changes, as typed.
    #[serde(default)]
    pub by: Option<String>,
    /// Write over conflicts.
    #[serde(default)]
    pub force: bool,
}

impl Wire {
    /// The request it asks for.
    ///
    /// # Errors
    /// A point or a writer that does not parse, worded for people.
    pub fn request(&self) -> Result<Request, String> {
        let point = |text: &str| At::parse_point(text).map_err(|e| e.to_string());
        Ok(Request {
            from: point(&self.from)?,
            to: self.to.as_deref().map(point).transpose()?,
            paths: self.paths.clone(),
            by: self.by.as_deref().map(Who::parse).transpose()?,
        })
    }
}

/// One version of a path: what it is, its content, its mode when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// File or symlink.
    pub node: Node,
    /// The content (a symlink's target).
    pub content: Vec<u8>,
    /// Permission bits, when recorded.
    pub mode: Option<u32>,
}

/// One path to put back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The path, relative to the watched directory.
    pub path: Vec<u8>,
    /// What it is at B (`None`: absent): what the live tree must hold.
    pub now: Option<Version>,
    /// What it was at A (`None`: absent): what it becomes.
    pub then: Option<Version>,
}

/// The net change from B back to A.
#[derive(Clone, Debug)]
pub struct Plan {
    /// A.
    pub from: u64,
    /// B.
    pub to: u64,
    /// The watched directory.
    pub root: Vec<u8>,
    /// The paths to put back, sorted.
    pub steps: Vec<Step>,
    /// Paths `--by` cannot separate: changed by WHO and by others.
    pub refused: Vec<Conflict>,
}

/// A path that cannot be undone as asked, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The path.
    pub path: Vec<u8>,
    /// Why, for people.
    pub why: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", sanitize(&self.path), self.why)
    }
}

/// Plan the undo of `request` on the store in `store_dir`.
///
/// # Errors
/// [`Error`]: a point names no record, A is after B or in another epoch,
/// a content involved is not known, the store cannot be read.
pub fn plan(store_dir: &Path, request: &Request) -> Result<Plan, Error> {
    let newest = At::Time(jiff::Timestamp::MAX);
    let b = request.to.clone().unwrap_or(newest);
    let paths = Paths::new(request.paths.iter().cloned());
    let (from_seq, to_seq, root, mut steps) = match restore::span_at(store_dir, request.from.clone(), b)? {
        restore::Spanned::Span(span) => span_steps(&span, &paths)?,
        restore::Spanned::Apart { from, to, .. } if from > to => return Err(Error::Backwards { from, to }),
        restore::Spanned::Apart { from, to, epoch } => return Err(Error::Epochs { from, to, epoch }),
    };
    let mut refused = Vec::new();
    if let Some(who) = &request.by {
        let records = writers_between(store_dir, from_seq, to_seq)?;
        let by = writers_by_path(&records, who);
        steps.retain(|step| match by.get(&step.path) {
            Some(Touched { by_who: true, others }) if others.is_empty() => true,
            Some(Touched { by_who: true, others }) => {
                let others: Vec<&str> = others.iter().map(String::as_str).collect();
                refused.push(Conflict {
                    path: step.path.clone(),
                    why: format!(
                        "also changed by {} between #{} and #{}: --by cannot separate their changes",
                        others.join(", "),
                        from_seq,
                        to_seq
                    ),
                });
                false
            }
            _ => false,
        });
    }
    Ok(Plan { from: from_seq, to: to_seq, root, steps, refused })
}

/// A, B, the watched directory and the steps, as [`plan`] wants them.
type Planned = (u64, u64, Vec<u8>, Vec<Step>);

fn version_in(
    tree: &crate::history::TreeState,
    modes: &crate::history::Modes,
    path: &[u8],
) -> Option<Version> {
    tree.get(path).map(|(node, content)| Version {
        node: *node,
        content: content.clone(),
        mode: modes.get(path).copied(),
    })
}

/// The steps from a [`restore::Span`]: only the paths the records between
/// A and B name can differ.
fn span_steps(span: &restore::Span, paths: &Paths) -> Result<Planned, Error> {
    for (seq, left) in [(span.from_seq, &span.from_left_out), (span.to_seq, &span.to_left_out)] {
        if let Some(unknown) = left.iter().find(|l| paths.matches(&l.path)) {
            return Err(Error::LeftOut(unknown.describe(seq)));
        }
    }
    let root = span.cwd.clone().ok_or(Error::NoRoot { seq: span.to_seq })?;
    let mut steps = Vec::new();
    for path in &span.touched {
        if !paths.matches(path) {
            continue;
        }
        let now = version_in(&span.to_changed, &span.to_modes, path);
        let then = version_in(&span.from_changed, &span.from_modes, path);
        if now != then {
            steps.push(Step { path: path.clone(), now, then });
        }
    }
    Ok((span.from_seq, span.to_seq, root, steps))
}

/// Who changed a path between A and B.
#[derive(Debug, Default)]
struct Touched {
    /// WHO changed it.
    by_who: bool,
    /// Others that changed it (`comm[pid]`, or "an unknown writer").
    others: BTreeSet<String>,
}

fn writers_by_path(records: &[(u64, Record)], who: &Who) -> BTreeMap<Vec<u8>, Touched> {
    let mut by: BTreeMap<Vec<u8>, Touched> = BTreeMap::new();
    for (_, record) in records {
        let Some(changes) = record.changes() else { continue };
        for change in &changes.files {
            let writers = changes.writers.iter().find(|w| w.path == change.path);
            for path in std::iter::once(&change.path).chain(&change.from) {
                let touched = by.entry(path.clone()).or_default();
                match writers {
                    Some(w) if who.matches(w) => {
                        touched.by_who = true;
                        for other in w.who.iter().filter(|n| !who.matches_one(n)) {
                            touched.others.insert(other.label());
                        }
                    }
                    Some(w) => {
                        touched.others.extend(crate::render::human::writer_names(w));
                    }
                    None => {
                        touched.others.insert("an unknown writer".to_string());
                    }
                }
            }
        }
    }
    by
}

/// The records after `from` up to `to`, decoded, for `--by`; refused
/// when the store cannot know writers (no baseline of the ring records a
/// backend that names them, and no record names one).
fn writers_between(store_dir: &Path, from: u64, to: u64) -> Result<Vec<(u64, Record)>, Error> {
    let snapshot = Snapshot::read(&store_dir.join(store::RING_FILE))?;
    let scan = snapshot.scan();
    let between = scan
        .frames
        .iter()
        .filter(|f| f.seq > from && f.seq <= to)
        .map(|f| {
            Record::decode(&f.payload)
                .map(|r| (f.seq, r))
                .map_err(|source| Error::Decode { seq: f.seq, source })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let baselines = crate::journal::record::decode_kind(&scan.frames, crate::journal::record::Kind::Baseline);
    let all: Vec<(u64, &Record)> = baselines.iter().chain(&between).map(|(s, r)| (*s, r)).collect();
    if let Some(why) = crate::query::writers_unknown(&all) {
        return Err(Error::WritersUnknown(why));
    }
    Ok(between)
}

/// Open the watched directory of a plan.
///
/// # Errors
/// [`Error::OpenRoot`].
pub fn open_root(plan: &Plan) -> Result<OwnedFd, Error> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    openat(nix::fcntl::AT_FDCWD, as_path(&plan.root), flags, Mode::empty())
        .map_err(|errno| Error::OpenRoot { path: plan.root.clone(), source: errno.into() })
}

/// What a live path is, compared with a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Live {
    /// As recorded at B: to be undone.
    AsRecorded,
    /// Already as at A: nothing to do.
    Done,
    /// Neither: it changed since B.
    Conflict(String),
}

/// The largest live file read to compare with a recorded one.
const MAX_LIVE_READ: u64 = 1 << 30;

/// Compare each step with the live tree below `root`.
pub fn check(plan: &Plan, root: BorrowedFd<'_>) -> Vec<(usize, Live)> {
    plan.steps.iter().enumerate().map(|(i, step)| (i, compare(plan.to, step, root))).collect()
}

fn compare(to: u64, step: &Step, root: BorrowedFd<'_>) -> Live {
    let (seen, inode) = tree::observe_linked(root, &step.path, MAX_LIVE_READ, &Opener::Direct);
    let live = match seen {
        Observed::Absent => {
            // Absent, or only reachable through a symlink: a parent that is
            // not a directory would make the write go astray.
            if step.then.is_some() && parent_blocked(root, &step.path) {
                return Live::Conflict("a directory above it is no longer a directory".into());
            }
            None
        }
        Observed::File(content) => Some(Version { node: Node::File, content, mode: inode.map(|i| i.mode) }),
        Observed::Symlink(target) => Some(Version { node: Node::Symlink, content: target, mode: None }),
        Observed::Dir => return Live::Conflict("is a directory now".into()),
        Observed::Binary => return Live::Conflict("holds binary data now".into()),
        Observed::TooLarge(size) => return Live::Conflict(format!("is {size} bytes now")),
        Observed::Unreadable(errno) => {
            return Live::Conflict(format!("cannot be read ({})", Errno::from_raw(errno).desc()));
        }
        Observed::Special => return Live::Conflict("is a FIFO, socket or device now".into()),
    };
    let same = |want: &Option<Version>| match (want, &live) {
        (None, None) => true,
        (Some(w), Some(l)) => {
            w.node == l.node
                && diff::hash(&w.content) == diff::hash(&l.content)
                && (w.mode.is_none() || l.mode.is_none() || w.mode == l.mode)
        }
        _ => false,
    };
    if same(&step.now) {
        return Live::AsRecorded;
    }
    if same(&step.then) {
        return Live::Done;
    }
    Live::Conflict(match (&step.now, &live) {
        (None, Some(_)) => format!("was created since #{to}"),
        (Some(_), None) => format!("was deleted since #{to}"),
        (Some(w), Some(l)) if w.node != l.node => match l.node {
            Node::Symlink => "is a symlink now".into(),
            Node::File => "is a regular file now, not a symlink".into(),
        },
        (Some(w), Some(l)) if diff::hash(&w.content) == diff::hash(&l.content) => format!(
            "its mode changed since #{to} ({:04o}, recorded {:04o})",
            l.mode.unwrap_or(0),
            w.mode.unwrap_or(0)
        ),
        _ => format!("changed since #{to}"),
    })
}

/// Whether an existing component above `path` is not a plain directory
/// (a symlink, a file).
fn parent_blocked(root: BorrowedFd<'_>, path: &[u8]) -> bool {
    let (parent, _) = tree::split(path);
    match tree::open_dir(root, parent) {
        Ok(_) | Err(Errno::ENOENT) => {
            // A missing directory is made; any existing one above it must be real.
            let mut at = parent;
            loop {
                match tree::open_dir(root, at) {
                    Ok(_) => return false,
                    Err(Errno::ENOENT) if !at.is_empty() => at = tree::split(at).0,
                    Err(_) => return true,
                }
            }
        }
        Err(_) => true,
    }
}

/// The changes an undo makes, in the order they are applied: what the
/// undo record holds.
pub fn changes(plan: &Plan, steps: &[usize]) -> Vec<FileChange> {
    let deadline = Duration::from_secs(1);
    let mut out = Vec::new();
    for &i in steps {
        let step = &plan.steps[i];
        let empty = Vec::new();
        let old = step.now.as_ref().map_or(&empty, |v| &v.content);
        let new = step.then.as_ref().map_or(&empty, |v| &v.content);
        let mut push = |change: Change, node: Node, old: &[u8], new: &[u8]| {
            let mut c =
                FileChange::new(step.path.clone(), change, None, node, Patch::compute(old, new, deadline));
            let (old_mode, new_mode) =
                (step.now.as_ref().and_then(|v| v.mode), step.then.as_ref().and_then(|v| v.mode));
            match change {
                Change::Created => c.mode = new_mode,
                Change::Deleted => c.old_mode = old_mode,
                _ if old_mode != new_mode && old_mode.is_some() && new_mode.is_some() => {
                    (c.old_mode, c.mode) = (old_mode, new_mode)
                }
                _ => {}
            }
            out.push(c);
        };
        match (&step.now, &step.then) {
            (None, Some(v)) => push(Change::Created, v.node, b"", new),
            (Some(v), None) => push(Change::Deleted, v.node, old, b""),
            (Some(a), Some(b)) if a.node != b.node => {
                push(Change::Deleted, a.node, old, b"");
                push(Change::Created, b.node, b"", new);
            }
            (Some(a), Some(_)) if a.content == *new => push(Change::Mode, a.node, old, new),
            (Some(a), Some(_)) => push(Change::Modified, a.node, old, new),
            (None, None) => {}
        }
    }
    out
}

/// Apply the steps `todo` (indexes into the plan) to the live tree below
/// `root`: deletions first, then writes, then empty directories removed.
/// Stops at the first failure: the paths before it are undone, the rest
/// untouched, none torn.
///
/// # Errors
/// [`Error::Write`] naming the path and the step that failed.
pub fn apply(plan: &Plan, root: BorrowedFd<'_>, todo: &[usize]) -> Result<(), Error> {
    let (deletions, writes): (Vec<usize>, Vec<usize>) =
        todo.iter().copied().partition(|&i| plan.steps[i].then.is_none());
    // Deepest first, so a file is gone before its directory is looked at.
    let mut emptied = BTreeSet::new();
    for &i in deletions.iter().rev() {
        let step = &plan.steps[i];
        hit_failpoint(&step.path)?;
        let (parent, name) = tree::split(&step.path);
        let dir =
            tree::open_dir(root, parent).map_err(|errno| write_err(step, "open its directory", errno))?;
        match unlinkat(dir.as_fd(), as_path(name), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(errno) => return Err(write_err(step, "remove it", errno)),
        }
        emptied.insert(parent.to_vec());
    }
    for &i in &writes {
        let step = &plan.steps[i];
        hit_failpoint(&step.path)?;
        write(root, step)?;
    }
    // Directories left empty that hold nothing at A go, deepest first.
    let kept: BTreeSet<&[u8]> =
        plan.steps.iter().filter(|s| s.then.is_some()).flat_map(|s| ancestors(&s.path)).collect();
    let mut candidates: BTreeSet<Vec<u8>> = BTreeSet::new();
    for dir in &emptied {
        candidates.extend(ancestors_and_self(dir).map(<[u8]>::to_vec));
    }
    for dir in candidates.iter().rev() {
        if dir.is_empty() || kept.contains(dir.as_slice()) {
            continue;
        }
        let (parent, name) = tree::split(dir);
        if let Ok(parent_fd) = tree::open_dir(root, parent) {
            // Not empty (or not ours to judge): left as it is.
            let _ = unlinkat(parent_fd.as_fd(), as_path(name), UnlinkatFlags::RemoveDir);
        }
    }
    Ok(())
}

fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter().enumerate().filter(|(_, b)| **b == b'/').map(move |(i, _)| &path[..i])
}

fn ancestors_and_self(dir: &[u8]) -> impl Iterator<Item = &[u8]> {
    ancestors(dir).chain(std::iter::once(dir))
}

fn hit_failpoint(path: &[u8]) -> Result<(), Error> {
    crate::failpoint::check("undo.write").map_err(|e| Error::Write {
        path: path.to_vec(),
        what: "write it",
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })
}

fn write_err(step: &Step, what: &'static str, errno: Errno) -> Error {
    Error::Write { path: step.path.clone(), what, errno }
}

/// The temporary beside `name` an undo writes before renaming it over.
fn temp_name(name: &[u8]) -> Vec<u8> {
    let mut temp = format!(".monitord-undo.{}.", std::process::id()).into_bytes();
    // Within NAME_MAX whatever the name's length.
    temp.extend_from_slice(&name[..name.len().min(200)]);
    temp
}

/// Write one step's version at A over its path.
fn write(root: BorrowedFd<'_>, step: &Step) -> Result<(), Error> {
    let Some(then) = &step.then else { return Ok(()) };
    let (parent, name) = tree::split(&step.path);
    let dir = make_dirs(root, parent).map_err(|errno| write_err(step, "make its directory", errno))?;
    let dir = dir.as_fd();
    // Owner: the file's when there is one, else its directory's.
    let owner = fstatat(dir, as_path(name), AtFlags::AT_SYMLINK_NOFOLLOW)
        .or_else(|_| nix::sys::stat::fstat(dir))
        .ok()
        .map(|st| (st.st_uid, st.st_gid, st.st_mode));
    let temp = temp_name(name);
    let _ = unlinkat(dir, as_path(&temp), UnlinkatFlags::NoRemoveDir);
    let made = match then.node {
        Node::File => write_file(dir, &temp, then, owner),
        Node::Symlink => nix::unistd::symlinkat(as_path(&then.content), dir, as_path(&temp)).and_then(|()| {
            if let Some((uid, gid, _)) = owner.filter(|_| running_as_root()) {
                nix::unistd::fchownat(
                    dir,
                    as_path(&temp),
                    Some(uid.into()),
                    Some(gid.into()),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
            }
            Ok(())
        }),
    };
    let renamed = made.and_then(|()| renameat(dir, as_path(&temp), dir, as_path(name)));
    if let Err(errno) = renamed {
        let _ = unlinkat(dir, as_path(&temp), UnlinkatFlags::NoRemoveDir);
        return Err(write_err(step, "write it", errno));
    }
    Ok(())
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn write_file(
    dir: BorrowedFd<'_>,
    temp: &[u8],
    then: &Version,
    owner: Option<(u32, u32, u32)>,
) -> nix::Result<()> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, as_path(temp), flags, Mode::from_bits_truncate(0o600))?;
    let mut file = std::fs::File::from(fd);
    let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    file.write_all(&then.content).map_err(io)?;
    // The recorded mode, else the mode the path has now (a regular file's),
    // else what a new file gets.
    let live_mode =
        owner.filter(|(_, _, m)| m & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()).map(|(_, _, m)| m);
    let mode = then.mode.or(live_mode).unwrap_or(0o644) & restore::RESTORED_MODE_BITS;
    if let Some((uid, gid, _)) = owner.filter(|_| running_as_root()) {
        nix::unistd::fchown(&file, Some(uid.into()), Some(gid.into()))?;
    }
    nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(mode))?;
    Ok(())
}

/// Open `rel` below `root`, making the directories that are missing (each
/// owned as its parent is, when running as root).
fn make_dirs(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    match tree::open_dir(root, rel) {
        Err(Errno::ENOENT) if !rel.is_empty() => {}
        other => return other,
    }
    let (parent, name) = tree::split(rel);
    let parent_fd = make_dirs(root, parent)?;
    match mkdirat(parent_fd.as_fd(), as_path(name), Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(errno),
    }
    if running_as_root()
        && let Ok(st) = nix::sys::stat::fstat(parent_fd.as_fd())
    {
        let _ = nix::unistd::fchownat(
            parent_fd.as_fd(),
            as_path(name),
            Some(st.st_uid.into()),
            Some(st.st_gid.into()),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        );
    }
    tree::open_dir(root, rel)
}

/// The steps to apply (indexes into the plan, in order) and the
/// conflicts, from [`check`]'s verdicts: the paths as recorded at B (and,
/// with `force`, those in conflict too), and every path that is neither
/// as at B nor as at A (with `--by`'s refusals first, which no `force`
/// writes).
pub fn sort_out(plan: &Plan, verdicts: Vec<(usize, Live)>, force: bool) -> (Vec<usize>, Vec<Conflict>) {
    let mut todo = Vec::new();
    let mut conflicts = plan.refused.clone();
    for (i, live) in verdicts {
        match live {
            Live::AsRecorded => todo.push(i),
            Live::Done => {}
            Live::Conflict(why) => {
                conflicts.push(Conflict { path: plan.steps[i].path.clone(), why });
                if force {
                    todo.push(i);
                }
            }
        }
    }
    (todo, conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(content: &str, mode: u32) -> Option<Version> {
        Some(Version { node: Node::File, content: content.as_bytes().to_vec(), mode: Some(mode) })
    }

    fn plan(steps: Vec<Step>) -> Plan {
        Plan { from: 1, to: 5, root: Vec::new(), steps, refused: Vec::new() }
    }

    fn step(path: &str, now: Option<Version>, then: Option<Version>) -> Step {
        Step { path: path.as_bytes().to_vec(), now, then }
    }

    #[test]
    fn a_plan_applies_and_checks_against_the_live_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path();
        std::fs::write(root_path.join("made"), "new\n").unwrap();
        std::fs::write(root_path.join("edited"), "two\n").unwrap();
        std::fs::create_dir(root_path.join("sub")).unwrap();
        std::fs::write(root_path.join("sub/only"), "x\n").unwrap();
        let p = plan(vec![
            step("made", version("new\n", 0o644), None),
            step("edited", version("two\n", 0o644), version("one\n", 0o755)),
            step("gone", None, version("back\n", 0o600)),
            step("deep/er/file", None, version("d\n", 0o644)),
            step("sub/only", version("x\n", 0o644), None),
        ]);
        let root =
            openat(nix::fcntl::AT_FDCWD, root_path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
                .unwrap();
        let (todo, conflicts) = sort_out(&p, check(&p, root.as_fd()), false);
        assert!(conflicts.is_empty(), "{conflicts:?}");
        assert_eq!(todo, [0, 1, 2, 3, 4]);
        apply(&p, root.as_fd(), &todo).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(root_path.join(p)).unwrap().permissions().mode() & 0o7777;
        assert!(!root_path.join("made").exists());
        assert_eq!(std::fs::read(root_path.join("edited")).unwrap(), b"one\n");
        assert_eq!(mode("edited"), 0o755);
        assert_eq!(std::fs::read(root_path.join("gone")).unwrap(), b"back\n");
        assert_eq!(mode("gone"), 0o600);
        assert_eq!(std::fs::read(root_path.join("deep/er/file")).unwrap(), b"d\n");
        assert!(!root_path.join("sub").exists(), "a directory left empty and absent at A goes");
        let names: Vec<_> = std::fs::read_dir(root_path).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().starts_with(".monitord-undo")), "{names:?}");
        // Applied again: everything is done already.
        let (todo, conflicts) = sort_out(&p, check(&p, root.as_fd()), false);
        assert!(todo.is_empty() && conflicts.is_empty(), "{todo:?} {conflicts:?}");
        // A live edit is a conflict.
        std::fs::write(root_path.join("edited"), "three\n").unwrap();
        let (_, conflicts) = sort_out(&p, check(&p, root.as_fd()), false);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].to_string(), "edited: changed since #5");
    }

    #[test]
    fn changes_record_what_the_undo_did() {
        let p = plan(vec![
            step("a", version("1\n", 0o644), None),
            step("b", None, version("2\n", 0o600)),
            step("c", version("x\n", 0o755), version("x\n", 0o644)),
            step("d", version("x\n", 0o644), version("y\n", 0o644)),
        ]);
        let got: Vec<(Change, Option<u32>, Option<u32>)> =
            changes(&p, &[0, 1, 2, 3]).iter().map(|c| (c.change, c.old_mode, c.mode)).collect();
        assert_eq!(
            got,
            [
                (Change::Deleted, Some(0o644), None),
                (Change::Created, None, Some(0o600)),
                (Change::Mode, Some(0o755), Some(0o644)),
                (Change::Modified, None, None),
            ]
        );
    }
}
