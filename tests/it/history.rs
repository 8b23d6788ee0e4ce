//! Looking back at a recorded store from the binary: log, show, verify,
//! and verify on stores damaged on purpose.

use std::path::Path;

use serde_json::json;

use crate::harness::*;

/// A store with a baseline (a.txt), then: b appended to a.txt; c.txt
/// created and a.txt deleted. Returns the monitor's records.
fn recorded(tree: &Path, store: &Path) -> Vec<serde_json::Value> {
    std::fs::write(tree.join("a.txt"), "a\n").unwrap();
    let target = Target::start(tree);
    let mut monitord = Monitord::start(&target, store, &[]);
    std::fs::write(tree.join("a.txt"), "a\nb\n").unwrap();
    assert_eq!(monitord.sample(), 2);
    std::fs::write(tree.join("c.txt"), "c\n").unwrap();
    std::fs::remove_file(tree.join("a.txt")).unwrap();
    assert_eq!(monitord.sample(), 3);
    monitord.stop();
    dump_json(store)
}

fn text(args: &[&str]) -> (i32, String, String) {
    let (code, out, err) = run(args);
    (code, String::from_utf8(out).unwrap(), err)
}

#[test]
fn log_show_and_verify_read_a_recorded_store() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let records = recorded(tree.path(), store.path());
    let s = store.path().to_str().unwrap();

    let (code, out, _) = text(&["log", "--store", s]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), records.len(), "{out}");
    assert!(lines[0].trim_start().starts_with("1 ") && lines[0].contains("baseline"), "{out}");
    assert!(lines[1].contains("sample") && lines[1].contains("1 file +1 -0"), "{out}");
    assert!(lines[2].contains("2 files +1 -2"), "{out}");
    let (code, out, _) = text(&["log", "--json", "--store", s]);
    assert_eq!(code, 0);
    let json: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(json[1]["seq"], 2);
    assert_eq!((json[1]["lines_added"].as_u64(), json[1]["files"].as_u64()), (Some(1), Some(1)));
    assert_eq!(json[1]["time"], records[1]["time"]);

    let (code, out, _) = text(&["show", "--store", s, "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("modified a.txt") && out.contains("\n+b\n"), "{out}");
    let (code, out, _) = text(&["show", "--store", s, "--reverse", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("\n-b\n") && !out.contains("\n+b\n"), "{out}");
    // Net change, one diff per file, both ways.
    let (code, out, _) = text(&["show", "--store", s, "1..3"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("#1..#3: 2 files changed, +1 -1\n"), "{out}");
    assert!(out.contains("deleted a.txt") && out.contains("created c.txt"), "{out}");
    let (code, out, _) = text(&["show", "--store", s, "3..1"]);
    assert_eq!(code, 0);
    assert!(out.contains("created a.txt") && out.contains("deleted c.txt"), "{out}");
    let (code, _, err) = text(&["show", "--store", s, "99"]);
    assert_eq!(code, 1);
    assert!(err.contains("seq 99 is not in the ring"), "{err}");

    let (code, out, _) = text(&["verify", "--store", s]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sound"), "{out}");
}

fn damaged(how: impl FnOnce(&Path)) -> (i32, String) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    recorded(tree.path(), store.path());
    how(store.path());
    let (code, out, _) = text(&["verify", "--store", store.path().to_str().unwrap()]);
    (code, out)
}

#[test]
fn verify_finds_and_names_each_kind_of_damage() {
    // A flipped byte inside the first record's payload.
    let (code, out) = damaged(|store| {
        let ring = store.join("ring.bin");
        let mut bytes = std::fs::read(&ring).unwrap();
        bytes[4096 + 40 + 3] ^= 0x10;
        std::fs::write(&ring, bytes).unwrap();
    });
    assert_eq!(code, 1);
    assert!(out.contains("seq 1: damaged record"), "{out}");

    // A mirror entry that does not match the journal: a byte of c.txt's
    // content in the mirror's log changed.
    let (code, out) = damaged(|store| {
        let log = store.join("mirror/1.log");
        let mut bytes = std::fs::read(&log).unwrap();
        let at = bytes.windows(2).rposition(|w| w == b"c\n").expect("c.txt's content in the log");
        bytes[at] = b'x';
        std::fs::write(&log, bytes).unwrap();
    });
    assert_eq!(code, 1);
    assert!(out.contains("seq 3: c.txt: "), "{out}");

    // A truncated ring.
    let (code, out) = damaged(|store| {
        let ring = std::fs::OpenOptions::new().write(true).open(store.join("ring.bin")).unwrap();
        ring.set_len(4096 + 512).unwrap();
    });
    assert_eq!(code, 1);
    assert!(!out.is_empty() && out.lines().count() == 1, "{out}");

    // A header whose magic is wrong in both copies.
    let (code, out) = damaged(|store| {
        let ring = store.join("ring.bin");
        let mut bytes = std::fs::read(&ring).unwrap();
        let page = &mut bytes[..4096];
        for i in 0..page.len() - 8 {
            if &page[i..i + 8] == b"MONRING\0" {
                page[i] = b'X';
            }
        }
        std::fs::write(&ring, bytes).unwrap();
    });
    assert_eq!(code, 1);
    assert!(out.contains("magic"), "{out}");
}

/// A store of a real run: a.txt edited, renamed to docs/b.txt, edited
/// again; src/x.rs edited; idle samples in between.
fn story(tree: &Path, store: &Path) -> Vec<serde_json::Value> {
    std::fs::write(tree.join("a.txt"), "one\n").unwrap();
    std::fs::create_dir(tree.join("src")).unwrap();
    std::fs::write(tree.join("src/x.rs"), "fn x() {}\n").unwrap();
    let target = Target::start(tree);
    let mut m = Monitord::start(&target, store, &["--record", "files,stats"]);
    std::fs::write(tree.join("a.txt"), "one\nTODO two\n").unwrap();
    m.sample();
    m.sample();
    m.sample();
    std::fs::create_dir(tree.join("docs")).unwrap();
    std::fs::rename(tree.join("a.txt"), tree.join("docs/b.txt")).unwrap();
    m.sample();
    std::fs::write(tree.join("docs/b.txt"), "one\ntwo done\n").unwrap();
    std::fs::write(tree.join("src/x.rs"), "fn x() { todo!() }\n").unwrap();
    m.sample();
    m.sample();
    m.stop();
    dump_json(store)
}

fn log_seqs(out: &str) -> Vec<String> {
    // A record's line starts with its seq (right-aligned); diff lines under
    // it start with a sign or a space followed by text.
    out.lines()
        .filter_map(|l| l.split_whitespace().next().filter(|w| w.starts_with(|c: char| c.is_ascii_digit())))
        .map(str::to_string)
        .collect()
}

#[test]
fn log_collapses_idle_runs_follows_paths_and_digs_with_the_pickaxe() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let records = story(tree.path(), store.path());
    let s = store.path().to_str().unwrap();
    let seq = |i: usize| records[i]["seq"].as_u64().unwrap().to_string();
    // 1 baseline, 2 edit, 3-4 idle, 5 rename, 6 edits, 7.. idle.
    assert_eq!(records.len(), 8, "{records:#?}");

    let out = monitord(&["log", "--store", s]).expect_success().text();
    assert_eq!(log_seqs(&out), ["1", "2", "3..4", "5", "6", "7..8"], "{out}");
    assert!(out.contains("2 samples, no change"), "{out}");
    let out = monitord(&["log", "--all", "--store", s]).expect_success().text();
    assert_eq!(log_seqs(&out).len(), 8, "{out}");
    let out = monitord(&["log", "--json", "--store", s]).expect_success().text();
    let idle: serde_json::Value = serde_json::from_str(out.lines().nth(2).unwrap()).unwrap();
    assert_eq!(idle, serde_json::json!({"kind": "idle", "from": 3, "to": 4, "samples": 2}));
    let second: serde_json::Value = serde_json::from_str(out.lines().nth(1).unwrap()).unwrap();
    assert_eq!(second["changes"], serde_json::json!({"files": 1, "lines_added": 1, "lines_removed": 0}));

    // A file followed back across its rename to the baseline.
    let out = monitord(&["log", "--store", s, "--", "docs/b.txt"]).expect_success().text();
    assert_eq!(log_seqs(&out), ["1", "2", "5", "6"], "{out}");
    let out = monitord(&["log", "-p", "--store", s, "--", "src"]).expect_success().text();
    assert_eq!(log_seqs(&out), ["1", "6"], "{out}");
    assert!(out.contains("+fn x() { todo!() }") && !out.contains("two done"), "only the path's diff: {out}");

    // The pickaxe, as git has it.
    let out = monitord(&["log", "--store", s, "-S", "TODO"]).expect_success().text();
    assert_eq!(log_seqs(&out), ["2", "6"], "{out}");
    let out = monitord(&["log", "--store", s, "-G", "^fn x"]).expect_success().text();
    assert_eq!(log_seqs(&out), ["6"], "{out}");

    // Points.
    let out = monitord(&["log", "--store", s, "--since", "5", "--until", "#6"]).expect_success().text();
    assert_eq!(log_seqs(&out), ["5", "6"], "{out}");
    let time = records[4]["time"].as_str().unwrap();
    let out = monitord(&["log", "--store", s, "--since", time]).expect_success().text();
    assert_eq!(log_seqs(&out), ["5", "6", "7..8"], "{out}");
    let out =
        monitord(&["log", "--store", s, "--since", "10 min ago", "--until", "now"]).expect_success().text();
    assert_eq!(log_seqs(&out).len(), 6, "{out}");
    // The systemd.time(7) form that starts with a minus, as a value.
    let out = monitord(&["log", "--store", s, "--since", "-10min"]).expect_success().text();
    assert_eq!(log_seqs(&out).len(), 6, "{out}");
    // Read as a point (one before the oldest record), not as an option.
    let ran = monitord(&["show", "--store", s, "-1h..now"]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("is before the oldest record held"), "{}", ran.stderr);
    assert_eq!(seq(4), "5");

    // Bad input: usage errors exit 2, points that name nothing exit 1.
    let ran = monitord(&["log", "--store", s, "-G", "(unclosed"]);
    ran.expect_code(2);
    assert!(ran.stderr.contains("unclosed"), "the regex error is quoted: {}", ran.stderr);
    monitord(&["log", "--store", s, "--since", "soonish"]).expect_code(2);
    let ran = monitord(&["log", "--store", s, "--since", "99"]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("after the newest record") && ran.stderr.contains("seq 8"), "{}", ran.stderr);
    let ran = monitord(&["log", "--store", s, "--until", "2099-01-01T00:00:00Z"]);
    ran.expect_code(1);
    monitord(&["log", "--store", s, "-S", "a", "-G", "b"]).expect_code(2);

    // show: points on both ends, and only the given paths.
    let out = monitord(&["show", "--store", s, "6", "--", "src"]).expect_success().text();
    assert!(out.contains("todo!") && !out.contains("two done"), "{out}");
    let out = monitord(&["show", "--store", s, &format!("#1..{time}"), "--", "docs"]).expect_success().text();
    assert!(out.starts_with("#1..#5: 1 files changed"), "{out}");
    assert!(out.contains("docs/b.txt") && !out.contains("src/x.rs"), "{out}");
    // The same as JSON: the record as dump prints it, only those paths; a
    // range as {from, to, files}.
    let out = monitord(&["show", "--json", "--store", s, "6", "--", "src"]).expect_success().text();
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut want = records[5].clone();
    want["files"].as_array_mut().unwrap().retain(|f| f["path"] == "src/x.rs");
    assert_eq!(shown, want);
    let out = monitord(&["show", "--json", "--store", s, "1..6", "--", "docs"]).expect_success().text();
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((shown["from"].as_u64(), shown["to"].as_u64()), (Some(1), Some(6)), "{shown:#}");
    let files = shown["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{shown:#}");
    assert_eq!((&files[0]["path"], &files[0]["change"]), (&json!("docs/b.txt"), &json!("created")));
    assert!(files[0]["forward"].as_str().unwrap().contains("+two done"), "{shown:#}");
    // A point that does not parse is a usage error, as for log --since.
    monitord(&["show", "--store", s, "soonish"]).expect_code(2);
}

#[test]
fn blame_names_the_record_of_each_line_and_the_boundary() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    std::fs::write(tree.path().join("f.txt"), "one\ntwo\n").unwrap();
    std::fs::write(tree.path().join("bin.dat"), [0u8, 1, 2, 255, 0]).unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &["--record", "files"]);
    std::fs::write(tree.path().join("f.txt"), "one\nTWO\nthree\n").unwrap();
    let edited = m.sample();
    std::fs::rename(tree.path().join("f.txt"), tree.path().join("g.txt")).unwrap();
    m.sample();
    std::fs::write(tree.path().join("g.txt"), "zero\none\nTWO\nthree\n").unwrap();
    let prepended = m.sample();
    std::fs::write(tree.path().join("gone.txt"), "x\n").unwrap();
    m.sample();
    std::fs::remove_file(tree.path().join("gone.txt")).unwrap();
    let deleted = m.sample();
    m.stop();
    let s = store.path().to_str().unwrap();

    let out = monitord(&["blame", "--store", s, "g.txt"]).expect_success().text();
    let seqs: Vec<&str> = out.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(seqs, [prepended.to_string(), "^1".into(), edited.to_string(), edited.to_string()], "{out}");
    assert!(out.lines().nth(1).unwrap().ends_with(" one"), "{out}");
    let ran = monitord(&["blame", "--json", "--store", s, "--at", &edited.to_string(), "f.txt"]);
    let json: serde_json::Value = serde_json::from_slice(&ran.expect_success().stdout).unwrap();
    assert_eq!(json["path"], "f.txt");
    assert_eq!(json["at"], edited);
    let lines = json["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!((lines[0]["seq"].as_u64(), lines[0]["boundary"].as_bool()), (Some(1), Some(true)));
    assert_eq!((lines[1]["text"].as_str(), lines[1]["seq"].as_u64()), (Some("TWO"), Some(edited)));
    assert_eq!(lines[1]["line"], 2);

    // Bad input: one line each, exit 1.
    let ran = monitord(&["blame", "--store", s, "gone.txt"]);
    ran.expect_code(1);
    assert!(ran.stderr.contains(&format!("deleted at seq {deleted}")), "{}", ran.stderr);
    let ran = monitord(&["blame", "--store", s, "bin.dat"]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("not a tracked file"), "{}", ran.stderr);
    let ran = monitord(&["blame", "--store", s, "f.txt"]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("renamed away"), "{}", ran.stderr);
    monitord(&["blame", "--store", s, "--at", "99", "g.txt"]).expect_code(1);
}

#[test]
fn a_mark_names_a_point_for_restore_log_and_blame() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    std::fs::write(tree.path().join("a.txt"), "v1\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &["--record", "files"]);
    let s = store.path().to_str().unwrap();
    // Not yet sampled: the mark takes the sample first.
    std::fs::write(tree.path().join("a.txt"), "v2\n").unwrap();
    let ran = monitord(&["mark", "--store", s, "before the test"]);
    let reply = ran.expect_success().text();
    let marked: u64 = reply.trim().strip_prefix("marked: ").unwrap().parse().unwrap();
    std::fs::write(tree.path().join("a.txt"), "v3\n").unwrap();
    m.sample();
    // Bad names change nothing.
    monitord(&["mark", "--store", s, ""]).expect_code(2);
    monitord(&["mark", "--store", s, &"x".repeat(65)]).expect_code(2);
    let ran = monitord(&["ctl", "--store", s, "mark", "a\u{1b}[31m"]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("bad mark name"), "{}", ran.stderr);
    m.stop();

    let records = dump_json(store.path());
    let mark = record(&records, marked);
    assert_eq!((mark["kind"].as_str(), mark["name"].as_str()), (Some("mark"), Some("before the test")));
    assert_eq!(records.iter().filter(|r| r["kind"] == "mark").count(), 1, "bad names wrote nothing");
    let out = monitord(&["restore", "--store", s, "--at", "@before the test", "--path", "a.txt"]);
    assert_eq!(out.expect_success().stdout, b"v2\n");
    let out = monitord(&["log", "--store", s]).expect_success().text();
    assert!(out.contains("@before the test"), "log lists marks: {out}");
    let out = monitord(&["log", "--store", s, "--since", "@before the test"]).expect_success().text();
    assert!(out.lines().next().unwrap().trim_start().starts_with(&marked.to_string()), "{out}");
    let ran = monitord(&["restore", "--store", s, "--at", "@nowhere", "--path", "a.txt"]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("no record kept carries that mark"), "{}", ran.stderr);
    // No monitor: nobody to write it.
    monitord(&["mark", "--store", s, "late"]).expect_code(3);
}
