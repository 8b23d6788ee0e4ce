//! Restore at every sample equals the tree as it was; replaying reverse
//! patches down to the baseline and forwards again gives the same trees,
//! whichever backend found the changes.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use monitord::history;
use monitord::journal::Snapshot;
use monitord::journal::record::{Body, Record};

use crate::harness::*;

type Tree = BTreeMap<String, Vec<u8>>;
type Step = Box<dyn Fn(&Path)>;

/// A scripted series of edits; returns (seq, tree right after it).
fn record_history(tree: &Path, m: &mut Monitord) -> Vec<(u64, Tree)> {
    let mut states = vec![(1, snapshot(tree))];
    let steps: Vec<Step> = vec![
        Box::new(|t| fs::write(t.join("a.txt"), "alpha\nbeta\ngamma\ndelta\n").unwrap()),
        Box::new(|t| {
            fs::create_dir_all(t.join("src/deep")).unwrap();
            fs::write(t.join("src/deep/lib.rs"), "fn main() {}\n").unwrap();
            fs::write(t.join("notes.md"), "# notes\n").unwrap();
        }),
        Box::new(|t| fs::rename(t.join("notes.md"), t.join("src/notes.md")).unwrap()),
        Box::new(|t| {
            fs::write(t.join("a.txt"), "alpha\ngamma\n").unwrap();
            fs::remove_file(t.join("b.txt")).unwrap();
        }),
        Box::new(|t| {
            fs::write(t.join("noeol.txt"), "no newline at end").unwrap();
            std::os::unix::fs::symlink("a.txt", t.join("link")).unwrap();
        }),
        Box::new(|t| {
            fs::remove_dir_all(t.join("src")).unwrap();
            fs::write(t.join("noeol.txt"), "no newline at end\nnow there is\n").unwrap();
        }),
        Box::new(|t| {
            fs::remove_file(t.join("link")).unwrap();
            fs::write(t.join("link"), "a file where a link was\n").unwrap();
        }),
    ];
    for step in steps {
        step(tree);
        let seq = m.sample();
        states.push((seq, snapshot(tree)));
    }
    states
}

/// `record_history` on a two-file tree, monitored on `backend` and
/// stopped: (tree, store, the state after each sample).
fn recorded_history(backend: &str) -> (TempDir, TempDir, Vec<(u64, Tree)>) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("a.txt"), "alpha\nbeta\n").unwrap();
    fs::write(tree.path().join("b.txt"), "bee\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    let states = record_history(tree.path(), &mut m);
    m.stop();
    (tree, store, states)
}

fn restore_at_every_sample_equals_the_tree_as_it_was(backend: &str) {
    let (_tree, store, states) = recorded_history(backend);
    for (seq, expected) in &states {
        assert_eq!(&restored(store.path(), *seq), expected, "restore --at {seq}");
    }
}

fn reverse_replay_to_the_baseline_and_forward_again_round_trips(backend: &str) {
    let (_tree, store, states) = recorded_history(backend);

    let snapshot = Snapshot::read(&store.path().join("ring.bin")).unwrap();
    let samples: Vec<Record> = snapshot
        .frames()
        .map(|f| Record::decode(&f.payload).unwrap())
        .filter(|r| matches!(r.body, Body::Sample(_)))
        .collect();
    let mirror = monitord::mirror::Mirror::open_existing(store.path(), 1).unwrap();
    let newest = mirror.load_all().unwrap();
    let mut state = newest.clone();
    for record in samples.iter().rev() {
        let Body::Sample(sample) = &record.body else { unreachable!() };
        history::apply_reverse(&mut state, &sample.files).unwrap();
    }
    let as_tree = |s: &history::TreeState| -> Tree {
        s.iter()
            .map(|(p, (node, c))| {
                let content = match node {
                    monitord::journal::record::Node::Symlink => [b"-> ".as_slice(), c].concat(),
                    monitord::journal::record::Node::File => c.clone(),
                };
                (String::from_utf8(p.clone()).unwrap(), content)
            })
            .collect()
    };
    assert_eq!(as_tree(&state), states[0].1, "reverse replay reaches the baseline");
    for record in &samples {
        let Body::Sample(sample) = &record.body else { unreachable!() };
        history::apply_forward(&mut state, &sample.files).unwrap();
    }
    assert_eq!(state, newest, "forward replay reaches the newest state");
}

#[test]
fn restore_refuses_dropped_unknown_and_bad_points() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let _target = record_alpha(tree.path(), store.path());
    let s = store.path().to_str().unwrap();
    let dest = TempDir::new("monitord-dest-");
    let out = dest.path().join("x");
    let (code, _, stderr) = run(&["restore", "--store", s, "--at", "99", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("seq 99 has not been recorded"), "{stderr}");
    let (code, _, stderr) = run(&["restore", "--store", s, "--at", "soon", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("monitord: cannot understand --at"), "{stderr}");
    let (code, _, stderr) = run(&["restore", "--store", s, "--at", "1", dest.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(&["restore", "--store", s, "--at", "1", dest.path().to_str().unwrap()]);
    assert_eq!(code, 1, "a non-empty DEST is refused");
    assert!(stderr.contains("not an empty directory"), "{stderr}");
    let (code, stdout, stderr) = run(&["restore", "--store", s, "--at", "1", "--path", "a.txt"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, b"alpha\n");
}

fn restore_at_a_time_picks_the_newest_sample_at_or_before_it(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("a.txt"), "v1\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    fs::write(tree.path().join("a.txt"), "v2\n").unwrap();
    let seq = m.sample();
    fs::write(tree.path().join("a.txt"), "v3\n").unwrap();
    m.sample();
    m.stop();
    let records = dump_json(store.path());
    let time = record(&records, seq)["time"].as_str().unwrap().to_string();
    let (code, stdout, stderr) =
        run(&["restore", "--store", store.path().to_str().unwrap(), "--at", &time, "--path", "a.txt"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, b"v2\n", "--at takes the JSON time back exactly");
}

fn a_wrapped_ring_restores_what_it_holds_and_refuses_the_rest(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("log.txt"), "start\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--ring-size", "16K"]);
    let mut states = Vec::new();
    for i in 0..60 {
        let text = format!("sample {i} {}\nsample {i} {}\n", noise(2 * i, 200), noise(2 * i + 1, 200));
        fs::write(tree.path().join("log.txt"), text).unwrap();
        let seq = m.sample();
        states.push((seq, snapshot(tree.path())));
    }
    let status = m.status();
    m.stop();
    assert!(status["dropped_records"].parse::<u64>().unwrap() > 0, "the ring wrapped: {status:?}");
    let oldest: u64 = status["oldest_seq"].parse().unwrap();
    assert!(oldest > 1);
    let records = dump_json(store.path());
    // The last sample taken at `stop` may have pushed out one more record.
    let held = records.first().unwrap()["seq"].as_u64().unwrap();
    assert!(
        held >= oldest && held <= oldest + 2,
        "dump starts at the oldest record held: {held} vs {oldest}"
    );
    for (seq, expected) in states.iter().filter(|(seq, _)| *seq >= held) {
        assert_eq!(&restored(store.path(), *seq), expected, "restore --at {seq}");
    }
    let dest = TempDir::new("monitord-dest-");
    let out = dest.path().join("x");
    let (code, _, stderr) =
        run(&["restore", "--store", store.path().to_str().unwrap(), "--at", "1", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("seq 1 is no longer in the ring"), "{stderr}");
}

on_every_backend!(
    restore_at_every_sample_equals_the_tree_as_it_was,
    reverse_replay_to_the_baseline_and_forward_again_round_trips,
    restore_at_a_time_picks_the_newest_sample_at_or_before_it,
    a_wrapped_ring_restores_what_it_holds_and_refuses_the_rest,
);

#[test]
fn points_outside_the_ring_name_its_ends() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let _target = record_alpha(tree.path(), store.path());
    let s = store.path().to_str().unwrap();
    let records = dump_json(store.path());
    let (first, last) = (&records[0], records.last().unwrap());
    let time = |r: &serde_json::Value| r["time"].as_str().unwrap().to_string();
    let seq = |r: &serde_json::Value| r["seq"].as_u64().unwrap();
    assert_eq!(seq(first), 1, "the journal numbers records from 1");
    // Seq 0 never existed: it was not dropped.
    let (code, _, stderr) = run(&["restore", "--store", s, "--at", "0", "--path", "a.txt"]);
    assert_eq!(code, 1);
    assert!(!stderr.contains("no longer"), "{stderr}");
    assert!(stderr.contains("there is no seq 0") && stderr.contains("oldest record held is 1"), "{stderr}");
    // A time far in the future (past what a timestamp holds, too): the
    // newest record is at or before it, and restore says so.
    for future in
        ["9999-12-31T23:59:59Z", "9999-12-31 23:59:59", "12000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"]
    {
        let (code, stdout, stderr) = run(&["restore", "--store", s, "--at", future, "--path", "a.txt"]);
        assert_eq!(code, 0, "{future}: {stderr}");
        assert_eq!(stdout, b"alpha\n", "{future}");
        let says = format!("is after the newest record (#{} at {})", seq(last), time(last));
        assert!(stderr.contains(&says) && stderr.lines().count() == 1, "{future}: {stderr}");
    }
    // A time before the first record: refused, naming the oldest.
    let (code, _, stderr) =
        run(&["restore", "--store", s, "--at", "2000-01-01T00:00:00Z", "--path", "a.txt"]);
    assert_eq!(code, 1);
    let says = format!("is before the oldest record held (#1 at {})", time(first));
    assert!(stderr.contains(&says) && stderr.lines().count() == 1, "{stderr}");
}

#[test]
fn restore_path_takes_any_name_and_prints_a_links_target() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let latin1 = OsStr::from_bytes(b"caf\xe9.txt");
    fs::write(tree.path().join(latin1), "not utf-8 named\n").unwrap();
    fs::write(tree.path().join("a.txt"), "alpha\n").unwrap();
    std::os::unix::fs::symlink("a.txt", tree.path().join("link")).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"/nowhere/\xff"), tree.path().join("odd")).unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &[]);
    let seq = m.sample();
    m.stop();
    let restore = |path: &OsStr| {
        let out = std::process::Command::new(bin())
            .args(["restore", "--store"])
            .arg(store.path())
            .args(["--at", &seq.to_string(), "--path"])
            .arg(path)
            .output()
            .unwrap();
        (out.status.code(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stdout, stderr) = restore(latin1);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, b"not utf-8 named\n");
    let (code, stdout, stderr) = restore(OsStr::new("./caf\u{e9}.txt"));
    assert_eq!(code, Some(1), "another name is another file");
    assert!(stdout.is_empty() && stderr.contains("is not in the tree"), "{stderr}");
    // A symlink prints its target, as readlink does; the full restore
    // makes the same link.
    let (code, stdout, stderr) = restore(OsStr::new("./link"));
    assert_eq!((code, stdout.as_slice()), (Some(0), &b"a.txt\n"[..]), "{stderr}");
    let (code, stdout, stderr) = restore(OsStr::new("odd"));
    assert_eq!((code, stdout.as_slice()), (Some(0), &b"/nowhere/\xff\n"[..]), "{stderr}");
    let dest = TempDir::new("monitord-dest-");
    let out = dest.path().join("x");
    let (code, _, stderr) = run(&[
        "restore",
        "--store",
        store.path().to_str().unwrap(),
        "--at",
        &seq.to_string(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(fs::read_link(out.join("link")).unwrap(), std::path::Path::new("a.txt"));
}

/// One file as of a point (what blame reads) is exactly that file of the
/// whole tree restore rebuilds, for every path at every sample, including
/// paths that are gone, renamed or replaced by a link.
#[test]
fn one_file_at_a_point_matches_the_whole_tree() {
    use monitord::restore::{At, file_at, state_at};
    let (_tree, store, states) = recorded_history("inotify");
    let mut names: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
    for (seq, _) in &states {
        names.extend(state_at(store.path(), At::Seq(*seq)).unwrap().tree.keys().cloned());
    }
    names.insert(b"never-there.txt".to_vec());
    for (seq, _) in &states {
        let whole = state_at(store.path(), At::Seq(*seq)).unwrap().tree;
        for name in &names {
            let one = file_at(store.path(), At::Seq(*seq), name).unwrap();
            assert_eq!(one.entry.as_ref(), whole.get(name), "{} at seq {seq}", String::from_utf8_lossy(name));
        }
    }
    // A damaged mirror is an error here too.
    let log = store.path().join("mirror/1.log");
    let mut bytes = fs::read(&log).unwrap();
    let at = bytes.windows(12).rposition(|w| w == b"alpha\ngamma\n").unwrap();
    bytes[at] ^= 4;
    fs::write(&log, bytes).unwrap();
    let newest = states.last().unwrap().0;
    assert!(file_at(store.path(), At::Seq(newest), b"a.txt").is_err());
}
