//! Stores written by earlier releases stay readable by every command: the
//! store in `tests/fixtures/release-1/` was written by the first release,
//! and what that release printed for it is checked in beside it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

use crate::harness::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A writable copy of the fixture's store (readers take its lock).
fn copy_store(name: &str) -> TempDir {
    let copy = TempDir::new("monitord-old-store-");
    let from = fixture(name).join("store");
    for entry in walk(&from) {
        let rel = entry.strip_prefix(&from).unwrap();
        let to = copy.path().join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&entry, &to).unwrap();
    }
    // The directory that marks epoch 1 (git keeps no empty directory).
    fs::create_dir_all(copy.path().join("mirror/1")).unwrap();
    copy
}

/// Every file and symlink below `dir` (symlinks not followed).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

/// Every field of `old` is in `new` with the same value (new fields may
/// be added; none may change or go).
fn assert_extends(old: &Value, new: &Value, at: &str) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (key, value) in o {
                let found = n.get(key).unwrap_or_else(|| panic!("{at}.{key} is gone: {new}"));
                assert_extends(value, found, &format!("{at}.{key}"));
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            assert_eq!(o.len(), n.len(), "{at}: {old} vs {new}");
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                assert_extends(a, b, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(old, new, "{at}"),
    }
}

/// Bytes in the fixture's notation: UTF-8 as is, anything else as
/// `bytes:<base64>`.
fn notation(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => format!("bytes:{}", base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

#[test]
fn a_first_release_store_reads_as_that_release_read_it() {
    let store = copy_store("release-1");
    let s = store.path().to_str().unwrap();
    let ran = monitord(&["verify", "--store", s]);
    ran.expect_success();

    let ring = store.path().join("ring.bin");
    let ran = monitord(&["dump", "--json", ring.to_str().unwrap()]);
    ran.expect_success();
    let old = fs::read_to_string(fixture("release-1/dump.jsonl")).unwrap();
    let new = ran.text();
    assert_eq!(old.lines().count(), new.lines().count());
    for (i, (o, n)) in old.lines().zip(new.lines()).enumerate() {
        let (o, n): (Value, Value) = (serde_json::from_str(o).unwrap(), serde_json::from_str(n).unwrap());
        assert_extends(&o, &n, &format!("record {i}"));
    }

    let trees: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(&fs::read_to_string(fixture("release-1/trees.json")).unwrap()).unwrap();
    assert_eq!(trees.len(), 7);
    for (seq, want) in &trees {
        let dest = TempDir::new("monitord-old-restore-");
        let out = dest.path().join("t");
        monitord(&["restore", "--store", s, "--at", seq, out.to_str().unwrap()]).expect_success();
        // Read names raw: the harness's snapshot is lossy for non-UTF-8 ones.
        let mut got = BTreeMap::new();
        for path in walk(&out) {
            let rel = path.strip_prefix(&out).unwrap().as_os_str().as_encoded_bytes();
            let content = match fs::read_link(&path) {
                Ok(target) => format!("-> {}", target.display()).into_bytes(),
                Err(_) => fs::read(&path).unwrap(),
            };
            got.insert(notation(rel), notation(&content));
        }
        assert_eq!(&got, want, "restore --at {seq}");
    }

    for seq in [1, 7] {
        let ran = monitord(&["maps", "--store", s, "--at", &seq.to_string()]);
        ran.expect_success();
        assert_eq!(ran.text(), fs::read_to_string(fixture(&format!("release-1/maps-{seq}.txt"))).unwrap());
    }
}

/// A store written now is compressed: its pack is format 3, smaller than
/// the text it holds, its ring is version 2 with the baseline's listing
/// stored compressed; every command reads it back exactly and `verify`
/// finds it sound.
#[test]
fn a_new_store_is_compressed_reads_back_and_verifies() {
    let tree = TempDir::new("monitord-tree-");
    let mut text_bytes = 0;
    for i in 0..300 {
        let dir = tree.path().join(format!("d{}", i % 5));
        fs::create_dir_all(&dir).unwrap();
        let text: String =
            (0..30).map(|l| format!("file {i} line {l}: some text a source tree has\n")).collect();
        text_bytes += text.len();
        fs::write(dir.join(format!("f{i}.txt")), text).unwrap();
    }
    let before = snapshot(tree.path());
    let target = Target::start(tree.path());
    let store = TempDir::new("monitord-store-");
    let mut m = Monitord::start_on("inotify", &target, store.path(), &[]);
    let changed = tree.path().join("d3/f8.txt");
    let mut text = fs::read_to_string(&changed).unwrap();
    text.push_str("an appended line\n");
    fs::write(&changed, text).unwrap();
    let last = m.sample();
    m.stop();

    let pack = fs::read(store.path().join("mirror/1.pack")).unwrap();
    assert_eq!(&pack[..8], b"MDPACK\0\x03");
    assert!(pack.len() < text_bytes / 3, "a pack of {} bytes for {text_bytes} bytes of text", pack.len());
    let ring = monitord::journal::Snapshot::read(&store.path().join("ring.bin")).unwrap();
    assert_eq!(ring.version(), 3);
    let records: usize = ring.frames().map(|f| f.payload.len() + 40).sum();
    assert!((ring.info().used_bytes as usize) < records, "the baseline's listing is stored compressed");

    let s = store.path().to_str().unwrap();
    monitord(&["verify", "--store", s]).expect_success();
    let dest = TempDir::new("monitord-dest-");
    let at_baseline = dest.path().join("baseline");
    monitord(&["restore", "--store", s, "--at", "1", at_baseline.to_str().unwrap()]).expect_success();
    assert_eq!(snapshot(&at_baseline), before);
    let now = dest.path().join("now");
    monitord(&["restore", "--store", s, "--at", &last.to_string(), now.to_str().unwrap()]).expect_success();
    assert_eq!(snapshot(&now), snapshot(tree.path()));
}

/// An idle process's samples are compact frames: after the baseline,
/// each costs at most 24 bytes of ring (so the default 64 MiB ring holds
/// more than 30 days of them at one sample a second), and `dump --json`,
/// `log --all` and `verify` still see each sample with its stats.
#[test]
fn idle_samples_cost_at_most_24_bytes_and_each_reads_back_with_its_stats() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("a.txt"), "one\n").unwrap();
    let target = Target::start(tree.path());
    let m = Monitord::start_with_period(&target, store.path(), 5, &[]);
    let ring = store.path().join("ring.bin");
    let look = || {
        let snap = monitord::journal::Snapshot::read(&ring).unwrap();
        (snap.info().next_seq, snap.info().used_bytes)
    };
    let (first_seq, first_used) = look();
    let mut now = look();
    wait_until("300 idle samples", std::time::Duration::from_secs(60), || {
        now = look();
        now.0 >= first_seq + 300
    });
    m.stop();
    let per_sample = (now.1 - first_used) as f64 / (now.0 - first_seq) as f64;
    assert!(per_sample <= 24.0, "{per_sample:.1} bytes per idle sample");
    let days = 64.0 * 1024.0 * 1024.0 / per_sample / 86_400.0;
    assert!(days >= 30.0, "{days:.1} days at T = 1 s");

    let s = store.path().to_str().unwrap();
    let records = dump_json(store.path());
    let samples: Vec<&Value> = records.iter().filter(|r| r["kind"] == "sample").collect();
    assert!(samples.len() >= 300, "{} samples", samples.len());
    for (r, next) in records.iter().zip(records.iter().skip(1)) {
        assert_eq!(next["seq"].as_u64(), r["seq"].as_u64().map(|s| s + 1), "every record, in order");
    }
    for r in &samples {
        assert!(r["stats"]["rss_kib"].as_u64().is_some_and(|kib| kib > 0), "each sample has its stats: {r}");
    }
    let out = monitord(&["log", "--all", "--store", s]).expect_success().text();
    assert!(out.lines().count() >= samples.len(), "log --all lists each sample:\n{out}");
    monitord(&["verify", "--store", s]).expect_success();
}
