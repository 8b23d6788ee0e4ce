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

use crate::journal::record::{Body, Change, Node, Record, Sample, Skipped, Writer};
use crate::render::human::diff_names;

/// A byte string as JSON: a string when it is UTF-8, else `{"bytes": base64}`.
pub fn bytes(value: &[u8]) -> Value {
    match std::str::from_utf8(value) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => json!({ "bytes": base64::engine::general_purpose::STANDARD.encode(value) }),
    }
}

/// [`bytes`] of a buffer the caller gives up: a UTF-8 one becomes the
/// string without a copy (a diff's text can be megabytes).
fn owned_bytes(value: Vec<u8>) -> Value {
    match String::from_utf8(value) {
        Ok(text) => Value::String(text),
        Err(e) => bytes(e.as_bytes()),
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
    Value::Array(
        list.iter().map(|s| json!({ "path": bytes(&s.path), "reason": s.reason.to_string() })).collect(),
    )
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
            obj.insert("files".into(), files(s));
            obj.insert("skipped".into(), skipped(&s.skipped));
            obj.insert(
                "maps".into(),
                json!({
                    "added": s.maps.added.iter().map(|l| bytes(l)).collect::<Vec<_>>(),
                    "removed": s.maps.removed.iter().map(|l| bytes(l)).collect::<Vec<_>>(),
                }),
            );
            if let Some(stats) = &s.stats {
                obj.insert("stats".into(), stats_value(stats));
            }
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
    let files = s
        .files
        .iter()
        .map(|f| {
            let (old, new) = diff_names(f);
            let mut forward = Vec::new();
            f.patch.render_unified(&old, &new, &mut forward);
            let mut reverse = Vec::new();
            f.patch.render_unified_reverse(&new, &old, &mut reverse);
            let mut file = Map::new();
            file.insert("path".into(), bytes(&f.path));
            file.insert("change".into(), json!(f.change.name()));
            if let (Change::Renamed, Some(from)) = (f.change, &f.from) {
                file.insert("from".into(), bytes(from));
            }
            file.insert("node".into(), json!(node(f.node)));
            if let Some(bits) = f.old_mode {
                file.insert("old_mode".into(), mode(bits));
            }
            if let Some(bits) = f.mode {
                file.insert("mode".into(), mode(bits));
            }
            file.insert("old_hash".into(), hash(f.patch.old_hash));
            file.insert("new_hash".into(), hash(f.patch.new_hash));
            file.insert("forward".into(), owned_bytes(forward));
            file.insert("reverse".into(), owned_bytes(reverse));
            if let Some(w) = s.writers.iter().find(|w| w.path == f.path) {
                file.insert("by".into(), json!(w.pids));
                if !w.who.is_empty() {
                    file.insert("writers".into(), writers(&w.who));
                }
                if w.foreign {
                    file.insert("foreign".into(), json!(true));
                }
            }
            Value::Object(file)
        })
        .collect();
    Value::Array(files)
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
    Value::Array(
        who.iter()
            .map(|w| {
                json!({
                    "pid": w.pid,
                    "comm": w.comm,
                    "exe": w.exe.as_deref().map(bytes),
                    "uid": w.uid,
                    "target": w.target,
                })
            })
            .collect(),
    )
}

fn stats_value(s: &crate::journal::record::Stats) -> Value {
    json!({
        "utime_ms": s.utime_ms, "stime_ms": s.stime_ms, "rss_kib": s.rss_kib,
        "vsz_kib": s.vsz_kib, "threads": s.threads, "fds": s.fds,
    })
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
