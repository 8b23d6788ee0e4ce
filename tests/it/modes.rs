//! File modes: recorded in baselines, a chmod recorded as a `mode` change,
//! and given back by restore.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};

use crate::harness::*;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every regular file below `dir` and its permission bits.
pub fn modes_below(dir: &Path) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                let rel = entry.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, meta.permissions().mode() & 0o7777);
            }
        }
    }
    out
}

fn restored_modes(store: &Path, seq: u64) -> BTreeMap<String, u32> {
    let dest = TempDir::new("monitord-restored-");
    let out = dest.path().join("out");
    monitord(&[
        "restore",
        "--store",
        store.to_str().unwrap(),
        "--at",
        &seq.to_string(),
        out.to_str().unwrap(),
    ])
    .expect_success();
    modes_below(&out)
}

fn file<'a>(record: &'a Value, path: &str) -> &'a Value {
    record["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} in {record:#}"))
}

fn chmods_are_recorded_and_restored(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let t = tree.path();
    fs::write(t.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    chmod(&t.join("run.sh"), 0o755);
    fs::write(t.join("secret.txt"), "s\n").unwrap();
    chmod(&t.join("secret.txt"), 0o600);
    fs::write(t.join("plain.txt"), "p\n").unwrap();
    chmod(&t.join("plain.txt"), 0o644);
    let target = Target::start(t);
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    let mut states = vec![(1, modes_below(t))];
    chmod(&t.join("run.sh"), 0o644);
    let chmodded = m.sample();
    states.push((chmodded, modes_below(t)));
    fs::write(t.join("plain.txt"), "p2\n").unwrap();
    chmod(&t.join("plain.txt"), 0o640);
    let both = m.sample();
    states.push((both, modes_below(t)));
    fs::write(t.join("new.sh"), "#!/bin/sh\n").unwrap();
    chmod(&t.join("new.sh"), 0o700);
    fs::rename(t.join("secret.txt"), t.join("moved.txt")).unwrap();
    let created = m.sample();
    states.push((created, modes_below(t)));
    m.stop();

    let records = dump_json(store.path());
    let baseline = &records[0];
    assert_eq!(baseline["kind"], "baseline");
    assert_eq!(file(baseline, "run.sh")["mode"], "0755", "{baseline:#}");
    assert_eq!(file(baseline, "secret.txt")["mode"], "0600");
    let change = file(record(&records, chmodded), "run.sh");
    assert_eq!(
        (&change["change"], &change["old_mode"], &change["mode"]),
        (&json!("mode"), &json!("0755"), &json!("0644"))
    );
    let change = file(record(&records, both), "plain.txt");
    assert_eq!(
        (&change["change"], &change["old_mode"], &change["mode"]),
        (&json!("modified"), &json!("0644"), &json!("0640"))
    );
    let change = file(record(&records, created), "new.sh");
    assert_eq!((&change["change"], &change["mode"]), (&json!("created"), &json!("0700")));
    assert!(change["old_mode"].is_null());
    for (seq, want) in &states {
        assert_eq!(&restored_modes(store.path(), *seq), want, "restore --at {seq} on {backend}");
    }
    let out = monitord(&["show", "--store", store.path().to_str().unwrap(), &chmodded.to_string()])
        .expect_success()
        .text();
    assert!(out.contains("mode run.sh mode 0755 -> 0644"), "{out}");
    monitord(&["verify", "--store", store.path().to_str().unwrap()]).expect_success();
}

on_every_backend!(chmods_are_recorded_and_restored);

#[test]
fn modes_are_known_after_the_baseline_left_the_ring() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let t = tree.path();
    fs::write(t.join("run.sh"), "#!/bin/sh\n").unwrap();
    chmod(&t.join("run.sh"), 0o750);
    fs::write(t.join("log.txt"), "start\n").unwrap();
    let target = Target::start(t);
    let mut m = Monitord::start(&target, store.path(), &["--ring-size", "16K"]);
    let mut seqs = Vec::new();
    // The anchor is renewed only once the ring has dropped records past
    // it, so at times it is as of the record just before the oldest held
    // one: restores then must still start from it.
    let mut just_before = 0;
    for i in 0..120 {
        // Lines that do not compress, so the small ring wraps.
        fs::write(t.join("log.txt"), format!("sample {i} {}\n", noise(i, 400))).unwrap();
        if i == 40 {
            chmod(&t.join("log.txt"), 0o600);
        }
        seqs.push((m.sample(), i));
        let anchor = monitord::modes::read(store.path());
        let oldest = dump_json(store.path())[0]["seq"].as_u64().unwrap();
        if let Some(anchor) = anchor.filter(|a| a.seq + 1 == oldest) {
            just_before += 1;
            let modes = restored_modes(store.path(), oldest);
            assert_eq!(modes["run.sh"], 0o750, "at {oldest}, the anchor as of {}", anchor.seq);
        }
    }
    assert!(just_before > 0, "the anchor was never as of the record just before the oldest");
    m.stop();
    let records = dump_json(store.path());
    assert_ne!(records[0]["kind"], "baseline", "the ring wrapped past the baseline");
    let held = records[0]["seq"].as_u64().unwrap();
    for (seq, i) in seqs.iter().filter(|(seq, _)| *seq >= held) {
        let modes = restored_modes(store.path(), *seq);
        assert_eq!(modes["run.sh"], 0o750, "an untouched script keeps its mode at {seq}");
        assert_eq!(modes["log.txt"], if *i >= 40 { 0o600 } else { 0o644 }, "at {seq}");
    }

    // Without the anchor the script's mode is not known: the contents are
    // restored, the mode is said to be unknown, and the exit status is 1.
    fs::remove_file(store.path().join("modes")).unwrap();
    let dest = TempDir::new("monitord-restored-");
    let out = dest.path().join("out");
    let s = store.path().to_str().unwrap();
    let ran =
        monitord(&["restore", "--store", s, "--at", &held.to_string(), "--json", out.to_str().unwrap()]);
    ran.expect_code(1);
    assert!(
        ran.stderr.contains("log.txt and 1 other file: mode at seq") && ran.stderr.contains("not known"),
        "{}",
        ran.explain()
    );
    let summary: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(summary["modes_unknown"], serde_json::json!(["log.txt", "run.sh"]), "{summary}");
    assert_eq!(fs::read(out.join("run.sh")).unwrap(), b"#!/bin/sh\n");
}
