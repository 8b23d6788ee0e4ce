//! Record layouts of older format versions, frozen.
//!
//! postcard is not self-describing: a payload decodes only with the types
//! it was written with. Versions 2 and 3 (the first release, and marks)
//! share the layout below; [`decode_v3`] reads it and lifts it into the
//! current types, with the fields those versions did not have left empty
//! (no modes, no named writers). Never change a type here: add a new
//! frozen layout when the current one changes again.

use serde::Deserialize;

use super::{
    Baseline, Body, Change, DecodeError, Exit, FileChange, FileEntry, MapsDelta, Node, Record, Sample,
    Skipped, Stats, Writers,
};
use crate::diff::Patch;

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct RecordV3 {
    version: u16,
    epoch: u64,
    pid: i32,
    body: BodyV3,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
enum BodyV3 {
    Baseline(BaselineV3),
    Sample(SampleV3),
    Pid { old: i32, new: i32 },
    Exit(Exit),
    Cwd { old: Vec<u8>, new: Vec<u8> },
    Rescan { reason: String, paths: Vec<Vec<u8>> },
    Mark { name: String },
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct BaselineV3 {
    cwd: Vec<u8>,
    starttime: u64,
    files: Vec<FileEntryV3>,
    skipped: Vec<Skipped>,
    maps: Vec<Vec<u8>>,
    stats: Option<Stats>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct FileEntryV3 {
    path: Vec<u8>,
    node: Node,
    size: u64,
    hash: u64,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct SampleV3 {
    files: Vec<FileChangeV3>,
    skipped: Vec<Skipped>,
    maps: MapsDelta,
    stats: Option<Stats>,
    writers: Vec<WritersV3>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct WritersV3 {
    path: Vec<u8>,
    pids: Vec<i32>,
    foreign: bool,
}

/// Versions 2 and 3 knew four kinds of change; a later one is not theirs.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
enum ChangeV3 {
    Created,
    Modified,
    Deleted,
    Renamed,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct FileChangeV3 {
    path: Vec<u8>,
    change: ChangeV3,
    from: Option<Vec<u8>>,
    node: Node,
    patch: Patch,
}

/// Decode a version 2 or 3 payload into the current types.
///
/// # Errors
/// [`DecodeError::Payload`] when the bytes are not a record of that layout.
pub(super) fn decode_v3(payload: &[u8]) -> Result<Record, DecodeError> {
    let old: RecordV3 = postcard::from_bytes(payload).map_err(DecodeError::Payload)?;
    let body = match old.body {
        BodyV3::Baseline(b) => Body::Baseline(Baseline {
            cwd: b.cwd,
            starttime: b.starttime,
            files: b
                .files
                .into_iter()
                .map(|f| FileEntry { path: f.path, node: f.node, size: f.size, hash: f.hash, mode: 0 })
                .collect(),
            skipped: b.skipped,
            maps: b.maps,
            stats: b.stats,
            backend: String::new(),
        }),
        BodyV3::Sample(s) => Body::Sample(Sample {
            files: s
                .files
                .into_iter()
                .map(|f| {
                    let change = match f.change {
                        ChangeV3::Created => Change::Created,
                        ChangeV3::Modified => Change::Modified,
                        ChangeV3::Deleted => Change::Deleted,
                        ChangeV3::Renamed => Change::Renamed,
                    };
                    FileChange::new(f.path, change, f.from, f.node, f.patch)
                })
                .collect(),
            skipped: s.skipped,
            maps: s.maps,
            stats: s.stats,
            writers: s
                .writers
                .into_iter()
                .map(|w| Writers { path: w.path, pids: w.pids, foreign: w.foreign, who: Vec::new() })
                .collect(),
        }),
        BodyV3::Pid { old, new } => Body::Pid { old, new },
        BodyV3::Exit(exit) => Body::Exit(exit),
        BodyV3::Cwd { old, new } => Body::Cwd { old, new },
        BodyV3::Rescan { reason, paths } => Body::Rescan { reason, paths },
        BodyV3::Mark { name } => Body::Mark { name },
    };
    Ok(Record { version: old.version, epoch: old.epoch, pid: old.pid, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn v3(body: BodyV3) -> Vec<u8> {
        postcard::to_stdvec(&RecordV3 { version: 3, epoch: 5, pid: 42, body }).unwrap()
    }

    #[test]
    fn a_version_3_sample_reads_as_the_current_types() {
        let patch = Patch::compute(b"a\n", b"b\n", Duration::from_secs(1));
        let bytes = v3(BodyV3::Sample(SampleV3 {
            files: vec![FileChangeV3 {
                path: b"new".to_vec(),
                change: ChangeV3::Renamed,
                from: Some(b"old".to_vec()),
                node: Node::File,
                patch: patch.clone(),
            }],
            skipped: Vec::new(),
            maps: MapsDelta { added: vec![b"m".to_vec()], removed: Vec::new() },
            stats: Some(Stats { rss_kib: 7, ..Stats::default() }),
            writers: vec![WritersV3 { path: b"new".to_vec(), pids: vec![3], foreign: true }],
        }));
        let record = Record::decode(&bytes).unwrap();
        assert_eq!((record.version, record.epoch, record.pid), (3, 5, 42));
        let Body::Sample(sample) = record.body else { panic!("not a sample: {record:?}") };
        assert_eq!(
            sample.files,
            [FileChange::new(b"new".to_vec(), Change::Renamed, Some(b"old".to_vec()), Node::File, patch)]
        );
        assert_eq!(sample.maps.added, [b"m".to_vec()]);
        assert_eq!(sample.stats.map(|s| s.rss_kib), Some(7));
        assert_eq!(
            sample.writers,
            [Writers { path: b"new".to_vec(), pids: vec![3], foreign: true, who: Vec::new() }]
        );
    }

    #[test]
    fn a_version_3_baseline_and_mark_read_without_modes() {
        let entry = FileEntryV3 { path: b"f".to_vec(), node: Node::Symlink, size: 3, hash: 9 };
        let bytes = v3(BodyV3::Baseline(BaselineV3 {
            cwd: b"/w".to_vec(),
            starttime: 1,
            files: vec![entry],
            skipped: Vec::new(),
            maps: Vec::new(),
            stats: None,
        }));
        let Body::Baseline(baseline) = Record::decode(&bytes).unwrap().body else { panic!("not a baseline") };
        assert_eq!(
            baseline.files,
            [FileEntry { path: b"f".to_vec(), node: Node::Symlink, size: 3, hash: 9, mode: 0 }]
        );
        let mark = Record::decode(&v3(BodyV3::Mark { name: "here".into() })).unwrap();
        assert_eq!(mark.body, Body::Mark { name: "here".into() });
    }

    #[test]
    fn a_version_4_payload_is_not_read_as_version_3() {
        let current = Record {
            version: crate::journal::record::FORMAT_VERSION,
            epoch: 1,
            pid: 1,
            body: Body::Undo { from: 1, to: 2, sample: Sample::default() },
        };
        assert_eq!(Record::decode(&current.encode()).unwrap(), current);
        assert!(decode_v3(&current.encode()).is_err(), "the undo record is not a version 3 body");
    }
}
