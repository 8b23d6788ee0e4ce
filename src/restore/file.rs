//! One file as of a point, without rebuilding the whole tree: what
//! `blame` needs on a store of any size. Only the records whose payload
//! holds one of the file's names (a record that touches a path carries its
//! bytes) are decoded; the mirror is read for those names only, each
//! checked against the newest record of the epoch that names it, exactly
//! as [`super::state_at`] checks the whole mirror.

use std::collections::BTreeMap;
use std::path::Path;

use super::{At, Error, LeftOut, point_index, unknown_at, with_ring};
use crate::history::{self, TreeState};
use crate::journal::record::{Body, Change, Kind, Node, Record};
use crate::journal::{self, Frame, Snapshot};
use crate::mirror::Mirror;
use crate::render::human::sanitize;

/// One file as of a point.
#[derive(Debug)]
pub struct FileAt {
    /// The record the file is as of.
    pub seq: u64,
    /// Its kind and content there (`None`: not in the tree).
    pub entry: Option<(Node, Vec<u8>)>,
    /// Its content there is not known (see [`super::LeftOut`]).
    pub left_out: Option<LeftOut>,
    /// The records of the point's epoch up to the point that name the file
    /// under any name it had (followed back across renames), oldest first.
    pub history: Vec<(u64, Record)>,
    /// The oldest record of the epoch still held.
    pub epoch_start: u64,
    /// Every held record's time, by seq.
    pub times: BTreeMap<u64, u64>,
    /// Damaged stretches of the ring.
    pub damage: Vec<journal::Damage>,
}

fn holds(payload: &[u8], name: &[u8]) -> bool {
    !name.is_empty() && memchr::memmem::find(payload, name).is_some()
}

/// The epoch a frame's record belongs to, read from its first fields
/// alone (version, epoch).
fn epoch_of(frame: &Frame<'_>) -> Option<u64> {
    postcard::take_from_bytes::<(u16, u64)>(&frame.payload).ok().map(|((_, epoch), _)| epoch)
}

/// The file `path` as of `at`.
///
/// # Errors
/// As [`super::state_at`].
pub fn file_at(store_dir: &Path, at: At, path: &[u8]) -> Result<FileAt, Error> {
    with_ring(store_dir, |snapshot| file_in(store_dir, &snapshot, at, path))
}

/// [`file_at`] on a copy of the ring.
fn file_in(store_dir: &Path, snapshot: &Snapshot, at: At, path: &[u8]) -> Result<FileAt, Error> {
    let scan = snapshot.scan();
    let frames = scan.frames;
    let (seq, index) = point_index(at, &frames, &scan.problems, snapshot.info())?;
    let decode = |frame: &Frame<'_>| {
        Record::decode(&frame.payload).map_err(|source| Error::Decode { seq: frame.seq, source })
    };
    let epoch = decode(&frames[index])?.epoch;
    let lo = frames[..index].iter().rposition(|f| epoch_of(f) != Some(epoch)).map_or(0, |i| i + 1);
    let hi =
        frames[index..].iter().position(|f| epoch_of(f) != Some(epoch)).map_or(frames.len(), |i| index + i);
    // Every later record of the epoch, and the one after it, must be held.
    let mut previous = frames[index].seq;
    for frame in frames[index + 1..].iter().take(hi - index) {
        if frame.seq != previous + 1 {
            return Err(Error::DamagedAfter { seq, from: previous + 1, to: frame.seq - 1 });
        }
        previous = frame.seq;
    }
    // The names the file has from the point to the newest record, and the
    // later records that touch them.
    let mut name = path.to_vec();
    let mut names = vec![name.clone()];
    let mut later = Vec::new();
    for frame in &frames[index + 1..hi] {
        if !names.iter().any(|n| holds(&frame.payload, n)) {
            continue;
        }
        let record = decode(frame)?;
        if let Some(sample) = record.changes() {
            for change in &sample.files {
                if change.from.as_deref() == Some(&name[..]) {
                    name.clone_from(&change.path);
                    names.push(name.clone());
                }
            }
        }
        later.push((frame.seq, record));
    }
    // The mirror's entries for those names, checked against the newest
    // record of the epoch naming each.
    let mirror = Mirror::open_existing(store_dir, epoch)?;
    let mut tree = TreeState::new();
    for name in &names {
        if let Some(entry) = mirror.read(name)? {
            tree.insert(name.clone(), entry);
        }
    }
    let newest_epoch = hi == frames.len();
    if newest_epoch
        && let Some(last) = frames[lo..hi].last()
        && let Ok(Record { body: Body::Sample(sample) | Body::Undo { sample, .. }, .. }) =
            Record::decode(&last.payload)
    {
        let files: Vec<_> =
            sample.files.into_iter().filter(|c| names.iter().any(|n| touches(c, n))).collect();
        if let Err(never) = history::roll_forward(&mut tree, &files) {
            match never {}
        }
    }
    for name in &names {
        check_name(epoch, name, &tree, &frames[lo..hi])?;
    }
    for (seq, record) in later.iter().rev() {
        if let Some(sample) = record.changes() {
            let files: Vec<_> =
                sample.files.iter().filter(|c| names.iter().any(|n| touches(c, n))).cloned().collect();
            history::apply_reverse(&mut tree, &files)
                .map_err(|source| Error::Replay { seq: *seq, source })?;
        }
    }
    // Back from the point: the records that name the file, across renames.
    let mut current = path.to_vec();
    let mut history = Vec::new();
    for frame in frames[lo..=index].iter().rev() {
        if !holds(&frame.payload, &current) {
            continue;
        }
        let record = decode(frame)?;
        if let Some(sample) = record.changes() {
            for change in sample.files.iter().rev() {
                if change.path == current
                    && let Some(from) = &change.from
                {
                    current.clone_from(from);
                }
            }
        }
        history.push((frame.seq, record));
    }
    history.reverse();
    let left_out = unknown_at(&history).into_iter().find(|l| l.path == path);
    let entry = if left_out.is_some() { None } else { tree.remove(path) };
    let times = frames.iter().map(|f| (f.seq, f.time_us)).collect();
    let epoch_start = frames[lo].seq;
    Ok(FileAt { seq, entry, left_out, history, epoch_start, times, damage: scan.problems })
}

fn touches(change: &crate::journal::record::FileChange, name: &[u8]) -> bool {
    change.path == name || change.from.as_deref() == Some(name)
}

/// `tree[name]` must be what the newest record of the epoch naming it
/// says (when one is held): its hash, or its absence.
fn check_name(epoch: u64, name: &[u8], tree: &TreeState, frames: &[Frame<'_>]) -> Result<(), Error> {
    let mismatch = |what: String| Error::MirrorMismatch { epoch, path: sanitize(name), what };
    for frame in frames.iter().rev() {
        if !holds(&frame.payload, name) {
            continue;
        }
        let Ok(record) = Record::decode(&frame.payload) else { continue };
        let said = match &record.body {
            Body::Sample(sample) | Body::Undo { sample, .. } => sample.files.iter().rev().find_map(|c| {
                if c.path == name {
                    Some((c.change != Change::Deleted).then_some((c.node, c.patch.new_hash)))
                } else if c.from.as_deref() == Some(name) {
                    Some(None)
                } else {
                    None
                }
            }),
            Body::Baseline(baseline) => {
                Some(baseline.files.iter().find(|f| f.path == name).map(|f| (f.node, f.hash)))
            }
            _ => None,
        };
        let Some(want) = said else { continue };
        let found = tree.get(name).map(|(node, content)| (*node, crate::diff::hash(content)));
        return match (want, found) {
            (Some(w), Some(f)) if w == f => Ok(()),
            (None, None) => Ok(()),
            (Some((_, hash)), Some((_, found_hash))) => Err(mismatch(format!(
                "holds content with hash {found_hash:016x}, seq {} recorded {hash:016x}",
                frame.seq
            ))),
            (Some(_), None) => Err(mismatch(format!("missing, seq {} recorded it", frame.seq))),
            (None, Some(_)) => Err(mismatch(format!("present, seq {} recorded it gone", frame.seq))),
        };
    }
    // No held record names it: with the epoch's baseline held, it was
    // never in the tree.
    let baseline_held = frames.first().is_some_and(|f| f.kind == Kind::Baseline as u16);
    if baseline_held && tree.contains_key(name) {
        return Err(mismatch("present, but no record of the epoch names it".to_string()));
    }
    Ok(())
}
