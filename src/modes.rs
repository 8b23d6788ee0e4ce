//! File modes at a point of history, and the store's newest modes that
//! make them known once the epoch's baseline has left the ring.
//!
//! The baseline lists every file's mode and each change records the modes
//! it set or altered ([`crate::history::modes_forward`]), so the modes at
//! a point follow from the baseline. Once the baseline has been dropped,
//! they follow from the anchor `<store>/modes`: the monitor's modes of
//! every tracked file as of one record, rewritten whenever the ring drops
//! records past it (as `<store>/maps` is for the memory map), and walked
//! forwards or backwards from there. This file owns that file's format,
//! reading and replacing it, and choosing where modes are rebuilt from.

use std::io::{self, Write};
use std::path::Path;

use crate::history::{self, Modes};
use crate::journal::record::{Body, Record};
use crate::store;

/// `<store>/modes`.
pub const MODES_FILE: &str = "modes";

const MAGIC: &[u8] = b"monitord modes anchor v1";

/// The modes of an epoch's files as of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The epoch.
    pub epoch: u64,
    /// The record the modes are as of.
    pub seq: u64,
    /// Every tracked file's mode.
    pub modes: Modes,
}

/// The anchor file's bytes: a header line `monitord modes anchor v1 EPOCH
/// SEQ HASH`, then one `OCTAL PATH` entry per file, each ended by a NUL (a
/// path may hold a newline, never a NUL). HASH is the body's
/// [`crate::diff::hash`] in 16 hex digits: a damaged anchor is refused,
/// never read as wrong modes.
pub fn encode(anchor: &Anchor) -> Vec<u8> {
    let mut body = Vec::with_capacity(anchor.modes.len() * 32);
    for (path, mode) in &anchor.modes {
        body.extend_from_slice(format!("{mode:o} ").as_bytes());
        body.extend_from_slice(path);
        body.push(0);
    }
    let mut out = Vec::with_capacity(body.len() + 80);
    out.extend_from_slice(MAGIC);
    let hash = crate::diff::hash(&body);
    out.extend_from_slice(format!(" {} {} {hash:016x}\n", anchor.epoch, anchor.seq).as_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decode an anchor file; `None` when it is not one. Never panics.
pub fn decode(bytes: &[u8]) -> Option<Anchor> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(bytes[..newline].strip_prefix(MAGIC)?).ok()?;
    let mut fields = header.split_ascii_whitespace();
    let (Some(epoch), Some(seq), Some(hash), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    let (epoch, seq) = (epoch.parse().ok()?, seq.parse().ok()?);
    let body = &bytes[newline + 1..];
    if u64::from_str_radix(hash, 16).ok()? != crate::diff::hash(body) {
        return None;
    }
    let mut modes = Modes::new();
    if !body.is_empty() {
        for entry in body.strip_suffix(b"\0")?.split(|&b| b == 0) {
            let space = entry.iter().position(|&b| b == b' ')?;
            let mode = u32::from_str_radix(std::str::from_utf8(&entry[..space]).ok()?, 8).ok()?;
            let path = &entry[space + 1..];
            if path.is_empty() || mode > 0o7777 {
                return None;
            }
            modes.insert(path.to_vec(), mode);
        }
    }
    Some(Anchor { epoch, seq, modes })
}

/// Read `<store>/modes`; `None` when it is missing or not an anchor.
pub fn read(store_dir: &Path) -> Option<Anchor> {
    decode(&std::fs::read(store_dir.join(MODES_FILE)).ok()?)
}

/// Replace `<store>/modes` atomically: write in `<store>/tmp/`, then rename.
///
/// # Errors
/// The failed write or rename.
pub fn write(store_dir: &Path, anchor: &Anchor) -> io::Result<()> {
    let path = store_dir.join(MODES_FILE);
    let tmp = store_dir.join(store::TMP_DIR).join(format!("modes.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&encode(anchor))?;
        std::fs::rename(&tmp, &path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The files' modes as of `records[at]`, from one epoch's held records
/// (oldest first): from the baseline when it is held, else from `anchor`
/// when it belongs to the epoch and lies among the held records. When
/// neither can say, only the modes the records from the oldest held one
/// to the point set are known.
pub fn at(records: &[(u64, Record)], at: usize, anchor: Option<&Anchor>) -> Modes {
    let changes = |range: std::ops::Range<usize>| {
        records[range].iter().filter_map(|(_, record)| record.changes()).map(|s| &s.files[..])
    };
    let epoch = records.get(at).map(|(_, r)| r.epoch);
    if let Some((_, Record { body: Body::Baseline(baseline), .. })) = records.first() {
        let mut modes: Modes =
            baseline.files.iter().filter(|f| f.mode != 0).map(|f| (f.path.clone(), f.mode)).collect();
        for files in changes(1..at + 1) {
            history::modes_forward(&mut modes, files);
        }
        return modes;
    }
    let first = records.first().map_or(0, |(s, _)| *s);
    let usable = anchor.filter(|a| Some(a.epoch) == epoch && a.seq + 1 >= first);
    // How many of the held records the anchor's modes already include: all
    // up to its own, or none when it is as of the record just before the
    // oldest held one (the writer renews it only once the ring has dropped
    // records past that one).
    let included = usable.and_then(|a| {
        if a.seq + 1 == first {
            Some(0)
        } else {
            records.iter().position(|(s, _)| *s == a.seq).map(|index| index + 1)
        }
    });
    if let (Some(anchor), Some(included)) = (usable, included) {
        let mut modes = anchor.modes.clone();
        if at + 1 >= included {
            for files in changes(included..at + 1) {
                history::modes_forward(&mut modes, files);
            }
        } else {
            let later: Vec<_> = changes(at + 1..included).collect();
            for files in later.into_iter().rev() {
                history::modes_reverse(&mut modes, files);
            }
        }
        return modes;
    }
    let mut modes = Modes::new();
    for files in changes(0..at + 1) {
        history::modes_forward(&mut modes, files);
    }
    modes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Patch;
    use crate::journal::record::{Baseline, Change, FORMAT_VERSION, FileChange, FileEntry, Node, Sample};
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn anchors_round_trip_and_garbage_is_refused() {
        let modes: Modes = [(b"a b\nc".to_vec(), 0o755), (b"\xff".to_vec(), 0o600)].into();
        let anchor = Anchor { epoch: 3, seq: 9, modes };
        assert_eq!(decode(&encode(&anchor)), Some(anchor));
        let empty = Anchor { epoch: 1, seq: 1, modes: Modes::new() };
        assert_eq!(decode(&encode(&empty)), Some(empty));
        for bad in
            [&b""[..], b"monitord modes anchor v1 1\n", b"monitord modes anchor v1 1 2\n9 a\0", b"x 1 2\n"]
        {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut input = b"monitord modes anchor v1 1 2\n".to_vec();
            input.extend_from_slice(&bytes);
            let _ = decode(&input);
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn modes_come_from_the_anchor_once_the_baseline_is_gone() {
        let record = |body| Record { version: FORMAT_VERSION, epoch: 1, pid: 1, body };
        let chmod = |old: u32, new: u32| {
            let mut c = FileChange::new(
                b"f".to_vec(),
                Change::Mode,
                None,
                Node::File,
                Patch::compute(b"x\n", b"x\n", Duration::from_secs(1)),
            );
            (c.old_mode, c.mode) = (Some(old), Some(new));
            record(Body::Sample(Sample { files: vec![c], ..Sample::default() }))
        };
        let entry = FileEntry { path: b"f".to_vec(), node: Node::File, size: 2, hash: 0, mode: 0o644 };
        let all = vec![
            (1, record(Body::Baseline(Baseline { files: vec![entry], ..Baseline::default() }))),
            (2, chmod(0o644, 0o755)),
            (3, chmod(0o755, 0o700)),
            (4, chmod(0o700, 0o600)),
        ];
        let want = [0o644, 0o755, 0o700, 0o600];
        for (i, mode) in want.iter().enumerate() {
            assert_eq!(at(&all, i, None)[&b"f".to_vec()], *mode, "from the baseline at {}", i + 1);
        }
        // The baseline and seq 2 dropped; the anchor as of seq 3.
        let held = &all[2..];
        let anchor = Anchor { epoch: 1, seq: 3, modes: [(b"f".to_vec(), 0o700)].into() };
        assert_eq!(at(held, 0, Some(&anchor))[&b"f".to_vec()], 0o700);
        assert_eq!(at(held, 1, Some(&anchor))[&b"f".to_vec()], 0o600);
        let later = Anchor { epoch: 1, seq: 4, modes: [(b"f".to_vec(), 0o600)].into() };
        assert_eq!(at(held, 0, Some(&later))[&b"f".to_vec()], 0o700, "walked back from the anchor");
        // The anchor as of seq 2, the record just dropped: the writer
        // renews it only once the ring has dropped past it. A file no held
        // record names keeps the anchor's mode at every point.
        let just_dropped =
            Anchor { epoch: 1, seq: 2, modes: [(b"f".to_vec(), 0o755), (b"g".to_vec(), 0o750)].into() };
        for (i, mode) in [0o700, 0o600].iter().enumerate() {
            let modes = at(held, i, Some(&just_dropped));
            assert_eq!(modes.get(b"f".as_slice()), Some(mode), "forwards from the record before the oldest");
            assert_eq!(modes.get(b"g".as_slice()), Some(&0o750), "an untouched file at {}", i + 3);
        }
        let stale = Anchor { epoch: 1, seq: 1, ..just_dropped };
        assert_eq!(at(held, 0, Some(&stale)).get(b"g".as_slice()), None, "a stale anchor is not used");
        let other_epoch = Anchor { epoch: 2, ..later };
        assert_eq!(
            at(held, 0, Some(&other_epoch)).get(b"f".as_slice()),
            Some(&0o700),
            "what the records set"
        );
    }
}
