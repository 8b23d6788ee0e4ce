//! The JSON of a sample record and of its parts (files, writers,
//! statistics, skipped entries) as [`Serialize`] types, written straight
//! to bytes without building a [`serde_json::Value`] first: samples are
//! nearly every record of a ring, and building a value costs a sorted map
//! and an allocation per key. [`super::record`] makes its values from the
//! same types, so there is one definition of each object. A `Value`'s
//! keys are sorted, so every object here writes its keys in sorted order;
//! a property test holds the two ways together.

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use crate::journal::record::{Change, FileChange, Sample, Skipped, Stats, Writer, Writers};
use crate::render::human::diff_names;

/// Write the JSON object of the sample record `seq` (no newline).
///
/// # Errors
/// What serde_json reports (never, for a `Vec` writer).
pub fn write_sample(
    seq: u64,
    time_us: u64,
    epoch: u64,
    pid: i32,
    sample: &Sample,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    SampleJson::new(seq, time_us, epoch, pid, sample).serialize(&mut serde_json::Serializer::new(out))
}

/// A sample record's object.
pub(super) struct SampleJson<'a> {
    seq: u64,
    time: String,
    epoch: u64,
    pid: i32,
    sample: &'a Sample,
}

impl<'a> SampleJson<'a> {
    /// The record `seq` at `time_us`.
    pub(super) fn new(seq: u64, time_us: u64, epoch: u64, pid: i32, sample: &'a Sample) -> SampleJson<'a> {
        SampleJson { seq, time: crate::render::rfc3339_us(time_us), epoch, pid, sample }
    }
}

impl Serialize for SampleJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sample = self.sample;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("epoch", &self.epoch)?;
        map.serialize_entry("files", &Files(sample))?;
        map.serialize_entry("kind", "sample")?;
        map.serialize_entry("maps", &Maps(sample))?;
        map.serialize_entry("pid", &self.pid)?;
        map.serialize_entry("seq", &self.seq)?;
        map.serialize_entry("skipped", &List(&sample.skipped, SkippedJson))?;
        if let Some(stats) = &sample.stats {
            map.serialize_entry("stats", &StatsJson(stats))?;
        }
        map.serialize_entry("time", &self.time)?;
        map.end()
    }
}

/// A byte string: a JSON string when UTF-8, else `{"bytes": base64}`.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                use base64::Engine;
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("bytes", &base64::engine::general_purpose::STANDARD.encode(self.0))?;
                map.end()
            }
        }
    }
}

/// A list, each item written as `each` wraps it.
pub(super) struct List<'a, T, E>(pub(super) &'a [T], pub(super) fn(&'a T) -> E);

impl<'a, T, E: Serialize> Serialize for List<'a, T, E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&(self.1)(item))?;
        }
        seq.end()
    }
}

struct Maps<'a>(&'a Sample);

impl Serialize for Maps<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("added", &List(&self.0.maps.added, |m| Bytes(m)))?;
        map.serialize_entry("removed", &List(&self.0.maps.removed, |m| Bytes(m)))?;
        map.end()
    }
}

/// An entry left out: `{path, reason}`.
pub(super) struct SkippedJson<'a>(pub(super) &'a Skipped);

impl Serialize for SkippedJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("path", &Bytes(&self.0.path))?;
        map.serialize_entry("reason", &self.0.reason.to_string())?;
        map.end()
    }
}

/// Process statistics.
pub(super) struct StatsJson<'a>(pub(super) &'a Stats);

impl Serialize for StatsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let stats = self.0;
        let mut map = s.serialize_map(Some(6))?;
        map.serialize_entry("fds", &stats.fds)?;
        map.serialize_entry("rss_kib", &stats.rss_kib)?;
        map.serialize_entry("stime_ms", &stats.stime_ms)?;
        map.serialize_entry("threads", &stats.threads)?;
        map.serialize_entry("utime_ms", &stats.utime_ms)?;
        map.serialize_entry("vsz_kib", &stats.vsz_kib)?;
        map.end()
    }
}

/// The `files` array of a sample: each change with its diffs both ways,
/// its modes when it set them, and who wrote it when known.
pub(super) struct Files<'a>(pub(super) &'a Sample);

impl Serialize for Files<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.files.len()))?;
        for file in &self.0.files {
            let writers = self.0.writers.iter().find(|w| w.path == file.path);
            seq.serialize_element(&FileJson { file, writers })?;
        }
        seq.end()
    }
}

struct FileJson<'a> {
    file: &'a FileChange,
    writers: Option<&'a Writers>,
}

/// Sixteen lower-case hex digits, as hashes are written.
fn hex(value: u64) -> String {
    format!("{value:016x}")
}

/// Permission bits as four octal digits.
fn octal(bits: u32) -> String {
    format!("{bits:04o}")
}

impl Serialize for FileJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.file;
        let (old, new) = diff_names(f);
        let mut forward = Vec::new();
        f.patch.render_unified(&old, &new, &mut forward);
        let mut reverse = Vec::new();
        f.patch.render_unified_reverse(&new, &old, &mut reverse);
        let mut map = s.serialize_map(None)?;
        if let Some(w) = self.writers {
            map.serialize_entry("by", &w.pids)?;
        }
        map.serialize_entry("change", f.change.name())?;
        if self.writers.is_some_and(|w| w.foreign) {
            map.serialize_entry("foreign", &true)?;
        }
        map.serialize_entry("forward", &Bytes(&forward))?;
        if let (Change::Renamed, Some(from)) = (f.change, &f.from) {
            map.serialize_entry("from", &Bytes(from))?;
        }
        if let Some(bits) = f.mode {
            map.serialize_entry("mode", &octal(bits))?;
        }
        map.serialize_entry("new_hash", &hex(f.patch.new_hash))?;
        map.serialize_entry("node", super::node(f.node))?;
        map.serialize_entry("old_hash", &hex(f.patch.old_hash))?;
        if let Some(bits) = f.old_mode {
            map.serialize_entry("old_mode", &octal(bits))?;
        }
        map.serialize_entry("path", &Bytes(&f.path))?;
        map.serialize_entry("reverse", &Bytes(&reverse))?;
        if let Some(w) = self.writers.filter(|w| !w.who.is_empty()) {
            map.serialize_entry("writers", &List(&w.who, WriterJson))?;
        }
        map.end()
    }
}

/// A named writer: `{pid, comm, exe, uid, target}`, unknown fields null.
pub(super) struct WriterJson<'a>(pub(super) &'a Writer);

impl Serialize for WriterJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let w = self.0;
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("comm", &w.comm)?;
        map.serialize_entry("exe", &w.exe.as_deref().map(Bytes))?;
        map.serialize_entry("pid", &w.pid)?;
        map.serialize_entry("target", &w.target)?;
        map.serialize_entry("uid", &w.uid)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::diff::Patch;
    use crate::journal::record::{Body, FORMAT_VERSION, MapsDelta, Node, Record, SkipReason};

    /// Bytes drawn from a small alphabet with quotes, escapes, tabs,
    /// Latin-1 and invalid UTF-8 in it.
    fn bytes(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(b"ab/.\t\n\"\\\xe9\xff\x01 ".to_vec()), len)
    }

    fn text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(bytes(0..20), 0..12).prop_map(|lines| {
            lines
                .into_iter()
                .flat_map(|mut l| {
                    l.retain(|&b| b != b'\n');
                    l.push(b'\n');
                    l
                })
                .collect()
        })
    }

    fn file_change() -> impl Strategy<Value = FileChange> {
        (bytes(1..12), text(), text(), 0..5u8, bytes(1..12), any::<bool>()).prop_map(
            |(path, old, new, how, from, symlink)| {
                let (change, old, new, from) = match how {
                    0 => (Change::Created, Vec::new(), new, None),
                    1 => (Change::Deleted, old, Vec::new(), None),
                    2 => (Change::Renamed, old, new, Some(from)),
                    3 => (Change::Mode, old.clone(), old, None),
                    _ => (Change::Modified, old, new, Some(from)),
                };
                let node = if symlink { Node::Symlink } else { Node::File };
                let mut f = FileChange::new(
                    path,
                    change,
                    from,
                    node,
                    Patch::compute(&old, &new, Duration::from_secs(1)),
                );
                if how >= 3 {
                    f.old_mode = Some(0o644);
                    f.mode = Some(0o4755);
                }
                f
            },
        )
    }

    fn writer() -> impl Strategy<Value = Writer> {
        (
            any::<i32>(),
            proptest::option::of("[a-z\"é]{0,6}"),
            proptest::option::of(bytes(0..10)),
            any::<Option<u32>>(),
            any::<bool>(),
        )
            .prop_map(|(pid, comm, exe, uid, target)| Writer { pid, comm, exe, uid, target })
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            proptest::collection::vec(file_change(), 0..5),
            proptest::collection::vec(
                (any::<bool>(), any::<bool>(), proptest::collection::vec(writer(), 0..3)),
                0..5,
            ),
            proptest::collection::vec(bytes(0..30), 0..4),
            proptest::collection::vec(bytes(0..30), 0..4),
            proptest::collection::vec((bytes(1..10), any::<u64>()), 0..3),
            proptest::option::of(any::<(u64, u64, u64, u64, u64, u64)>()),
        )
            .prop_map(|(files, named, added, removed, skipped, stats)| {
                // Writers for some of the files (and one for a path no
                // file has), named or not, foreign or not.
                let mut writers: Vec<Writers> = files
                    .iter()
                    .zip(&named)
                    .filter(|(_, (has, _, _))| *has)
                    .map(|(f, (_, foreign, who))| Writers {
                        path: f.path.clone(),
                        pids: who.iter().map(|w| w.pid).collect(),
                        foreign: *foreign,
                        who: who.clone(),
                    })
                    .collect();
                writers.push(Writers { path: b"elsewhere".to_vec(), pids: vec![1], ..Writers::default() });
                Sample {
                    files,
                    skipped: skipped
                        .into_iter()
                        .enumerate()
                        .map(|(i, (path, size))| Skipped {
                            path,
                            reason: if i % 2 == 0 {
                                SkipReason::TooLarge { size }
                            } else {
                                SkipReason::Unreadable { errno: 13 }
                            },
                        })
                        .collect(),
                    maps: MapsDelta { added, removed },
                    stats: stats.map(|(a, b, c, d, e, f)| Stats {
                        utime_ms: a,
                        stime_ms: b,
                        rss_kib: c,
                        vsz_kib: d,
                        threads: e,
                        fds: f,
                    }),
                    writers,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Written straight or through a `Value`, a sample's JSON is the
        /// same bytes.
        #[test]
        fn a_sample_written_straight_is_the_value_s_json(
            sample in sample(),
            seq in any::<u64>(),
            time_us in 0u64..4_000_000_000_000_000,
            epoch in any::<u64>(),
            pid in any::<i32>(),
        ) {
            let record = Record { version: FORMAT_VERSION, epoch, pid, body: Body::Sample(sample.clone()) };
            let through_value = serde_json::to_vec(&super::super::record(seq, time_us, &record)).unwrap();
            let mut straight = Vec::new();
            write_sample(seq, time_us, epoch, pid, &sample, &mut straight).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&straight), String::from_utf8_lossy(&through_value));
        }
    }
}
