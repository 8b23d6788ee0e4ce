//! JSON Lines: one object per record (SPEC §5). Kept apart from the
//! domain types so the wire format is stated in one place.
//!
//! Bytes that are not valid UTF-8 (paths, diffs of Latin-1 files, symlink
//! targets) are written losslessly as an object `{"bytes": "<base64>"}`
//! (standard alphabet, padded) instead of a string; valid UTF-8 is a plain
//! JSON string. Hashes are 16 lower-case hex digits of the xxh3-64 of the
//! content.

mod direct;

use base64::Engine;
use serde_json::{Map, Value, json};

pub use direct::write_sample;

use crate::journal::record::{Body, Node, Record, Sample, Skipped, Writer};

/// A byte string as JSON: a string when it is UTF-8, else `{"bytes": base64}`.
pub fn bytes(value: &[u8]) -> Value {
    match std::str::from_utf8(value) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => json!({ "bytes": base64::engine::general_purpose::STANDARD.encode(value) }),
    }
}

/// Decode what [`bytes`] wrote.
pub fn parse_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(text) => Some(text.as_bytes().to_vec()),
        Value::Object(map) => {
            base64::engine::general_purpose::STANDARD.decode(map.get("bytes")?.as_str()?).ok()
        }
        _ => None,
    }
}

fn hash(value: u64) -> Value {
    Value::String(format!("{value:016x}"))
}

fn node(value: Node) -> &'static str {
    match value {
        Node::File => "file",
        Node::Symlink => "symlink",
    }
}

fn skipped(list: &[Skipped]) -> Value {
    value(direct::List(list, direct::SkippedJson))
}

/// The value of what the direct writer writes: one definition of each
/// object, whichever way it is written.
fn value(of: impl serde::Serialize) -> Value {
    // A `Value` takes every such object (string keys, no failing field).
    serde_json::to_value(of).unwrap_or(Value::Null)
}

/// The JSON object of one record.
pub fn record(seq: u64, time_us: u64, record: &Record) -> Value {
    let mut obj = Map::new();
    obj.insert("seq".into(), json!(seq));
    obj.insert("time".into(), json!(super::rfc3339_us(time_us)));
    obj.insert("kind".into(), json!(record.kind().name()));
    obj.insert("epoch".into(), json!(record.epoch));
    obj.insert("pid".into(), json!(record.pid));
    match &record.body {
        Body::Baseline(b) => {
            obj.insert("cwd".into(), bytes(&b.cwd));
            if !b.backend.is_empty() {
                obj.insert("backend".into(), json!(b.backend));
            }
            let files = b
                .files
                .iter()
                .map(|f| {
                    let mut entry = json!({ "path": bytes(&f.path), "node": node(f.node), "size": f.size, "hash": hash(f.hash) });
                    if f.mode != 0 {
                        entry["mode"] = mode(f.mode);
                    }
                    entry
                })
                .collect();
            obj.insert("files".into(), Value::Array(files));
            obj.insert("skipped".into(), skipped(&b.skipped));
            if !b.maps.is_empty() {
                obj.insert("maps".into(), Value::Array(b.maps.iter().map(|l| bytes(l)).collect()));
            }
            if let Some(stats) = &b.stats {
                obj.insert("stats".into(), json!(stats_value(stats)));
            }
        }
        Body::Sample(s) => {
            return value(direct::SampleJson::new(seq, time_us, record.epoch, record.pid, s));
        }
        Body::Pid { old, new } => {
            obj.insert("old_pid".into(), json!(old));
            obj.insert("new_pid".into(), json!(new));
        }
        Body::Exit(e) => {
            obj.insert("code".into(), json!(e.code));
            obj.insert("signal".into(), json!(e.signal));
            if let Some(r) = &e.rusage {
                obj.insert(
                    "rusage".into(),
                    json!({
                        "utime_ms": r.utime_ms, "stime_ms": r.stime_ms, "maxrss_kib": r.maxrss_kib,
                        "inblock": r.inblock, "oublock": r.oublock, "nvcsw": r.nvcsw, "nivcsw": r.nivcsw,
                    }),
                );
            }
        }
        Body::Cwd { old, new } => {
            obj.insert("old_cwd".into(), bytes(old));
            obj.insert("new_cwd".into(), bytes(new));
        }
        Body::Rescan { reason, paths } => {
            obj.insert("reason".into(), json!(reason));
            obj.insert("paths".into(), Value::Array(paths.iter().map(|p| bytes(p)).collect()));
        }
        Body::Mark { name } => {
            obj.insert("name".into(), json!(name));
        }
        Body::Undo { from, to, sample } => {
            obj.insert("from".into(), json!(from));
            obj.insert("to".into(), json!(to));
            obj.insert("files".into(), files(sample));
        }
    }
    Value::Object(obj)
}

/// Permission bits as four octal digits, as `stat -c %a` pads them.
fn mode(bits: u32) -> Value {
    Value::String(format!("{bits:04o}"))
}

/// The `files` array of a sample: each change with its diffs both ways,
/// its modes when it set them, and who wrote it when known.
pub fn files(s: &Sample) -> Value {
    value(direct::Files(s))
}

/// The writers of a change: named when the store names them, else
/// `[{pid}]` each.
pub fn writers_or_pids(w: &crate::journal::record::Writers) -> Value {
    if w.who.is_empty() {
        Value::Array(w.pids.iter().map(|pid| json!({ "pid": pid })).collect())
    } else {
        writers(&w.who)
    }
}

/// Named writers: `[{pid, comm, exe, uid, target}]`, unknown fields null.
pub fn writers(who: &[Writer]) -> Value {
    value(direct::List(who, direct::WriterJson))
}

fn stats_value(s: &crate::journal::record::Stats) -> Value {
    value(direct::StatsJson(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_bytes_round_trip() {
        for sample in [&b"plain"[..], b"caf\xe9", b"", b"\xff\xfe"] {
            assert_eq!(parse_bytes(&bytes(sample)).unwrap(), sample);
        }
        assert_eq!(bytes(b"caf\xe9"), json!({"bytes": "Y2Fm6Q=="}));
    }
}
