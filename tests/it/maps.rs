//! The memory map: a real Python process maps and unmaps a file, loads a
//! shared library and creates tens of thousands of mappings on command;
//! each sample records exactly the lines that changed, and `maps --at`
//! gives back, for every sample, the /proc/<pid>/maps read right after it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

use crate::harness::*;

/// The helper: one command per line on stdin, one reply line each, and
/// idle (blocked reading stdin) in between, so its map holds still while
/// the test reads it.
const HELPER: &str = r#"
import ctypes, ctypes.util, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
keep, files = [], {}
def reply(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
reply("ready")
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "map":
        f = open(args[0], "r+b")
        files[args[0]] = (f, mmap.mmap(f.fileno(), 0))
        reply("ok")
    elif cmd == "unmap":
        f, m = files.pop(args[0])
        m.close()
        f.close()
        reply("ok")
    elif cmd == "lib":
        loaded = open("/proc/self/maps").read()
        for name in ["uuid", "sqlite3", "expat", "ncursesw", "crypt", "ffi"]:
            path = ctypes.util.find_library(name)
            if path and path.split(".so")[0] not in loaded:
                keep.append(ctypes.CDLL(path))
                reply("ok " + path.split(".so")[0])
                break
        else:
            reply("error: no shared library left to load")
    elif cmd == "many":
        pages = int(args[0])
        m = mmap.mmap(-1, pages * 4096)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        # Every other page read-only: neighbours differ, so none merge.
        for i in range(0, pages, 2):
            if libc.mprotect(base + i * 4096, 4096, mmap.PROT_READ) != 0:
                reply("error: mprotect failed")
                break
        else:
            keep.append(m)
            reply("ok")
"#;

struct Helper {
    target: Target,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    fn start(cwd: &std::path::Path) -> Helper {
        let mut target = Target::spawn(
            Command::new("python3")
                .args(["-c", HELPER])
                .current_dir(cwd)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        );
        let stdin = target.child().stdin.take().expect("stdin");
        let stdout = BufReader::new(target.child().stdout.take().expect("stdout"));
        let mut helper = Helper { target, stdin, stdout };
        assert_eq!(helper.reply(), "ready");
        helper
    }

    fn reply(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the helper's reply");
        assert!(!line.is_empty(), "the helper exited");
        line.trim_end().to_string()
    }

    /// Run one command; returns the text after "ok".
    fn run(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write to the helper");
        self.stdin.flush().expect("flush");
        let reply = self.reply();
        let Some(rest) = reply.strip_prefix("ok") else { panic!("{command}: {reply}") };
        rest.trim().to_string()
    }

    fn maps(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/maps", self.target.pid())).expect("read maps")
    }
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_string).collect()
}

fn strings(value: &Value) -> BTreeSet<String> {
    value.as_array().expect("array").iter().map(|v| v.as_str().expect("UTF-8 line").to_string()).collect()
}

/// (added, removed) of a sample record.
fn delta(record: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    (strings(&record["maps"]["added"]), strings(&record["maps"]["removed"]))
}

fn maps_at(store: &std::path::Path, seq: u64) -> String {
    let (code, stdout, stderr) =
        run(&["maps", "--store", store.to_str().expect("UTF-8"), "--at", &seq.to_string()]);
    assert_eq!(code, 0, "maps --at {seq}: {stderr}");
    String::from_utf8(stdout).expect("UTF-8 map")
}

#[test]
fn file_and_library_mappings_are_recorded_and_maps_at_every_sample_is_exact() {
    let tree = TempDir::new("monitord-tree-");
    let data = TempDir::new("monitord-data-");
    let store = TempDir::new("monitord-store-");
    let file = data.path().join("mapped.bin");
    std::fs::write(&file, vec![7u8; 3 * 4096]).unwrap();
    let file = file.to_str().unwrap().to_string();
    let mut helper = Helper::start(tree.path());
    let mut m = Monitord::start(&helper.target, store.path(), &[]);
    let mut captured = vec![(1, helper.maps())];

    helper.run(&format!("map {file}"));
    let mapped = m.sample();
    captured.push((mapped, helper.maps()));
    let library = helper.run("lib");
    let loaded = m.sample();
    captured.push((loaded, helper.maps()));
    helper.run(&format!("unmap {file}"));
    let unmapped = m.sample();
    captured.push((unmapped, helper.maps()));
    let idle = m.sample();
    captured.push((idle, helper.maps()));
    m.stop();

    let records = dump_json(store.path());
    assert_eq!(
        strings(&record(&records, 1)["maps"]),
        lines(&captured[0].1),
        "the baseline holds the whole map"
    );
    for pair in captured.windows(2) {
        let ((_, before), (seq, after)) = (&pair[0], &pair[1]);
        let (added, removed) = delta(record(&records, *seq));
        let (before, after) = (lines(before), lines(after));
        assert_eq!(added, &after - &before, "added at seq {seq}");
        assert_eq!(removed, &before - &after, "removed at seq {seq}");
    }
    let with = |set: &BTreeSet<String>, needle: &str| set.iter().filter(|l| l.contains(needle)).count();
    let (added, removed) = delta(record(&records, mapped));
    assert_eq!((with(&added, &file), with(&removed, &file)), (1, 0), "mapping the file adds one line");
    let (added, removed) = delta(record(&records, loaded));
    assert!(with(&added, &library) >= 2, "the library's segments are added: {added:#?}");
    assert_eq!(with(&removed, &library), 0);
    let (added, removed) = delta(record(&records, unmapped));
    assert_eq!((with(&added, &file), with(&removed, &file)), (0, 1), "unmapping removes the line");
    assert_eq!(delta(record(&records, idle)), Default::default(), "an idle process changes nothing");

    for (seq, text) in &captured {
        assert_eq!(&maps_at(store.path(), *seq), text, "maps --at {seq}");
    }
    let stats = &record(&records, idle)["stats"];
    assert_eq!(stats["threads"], 1, "{stats}");
    assert!(stats["rss_kib"].as_u64().unwrap() > 0 && stats["fds"].as_u64().unwrap() >= 3, "{stats}");
}

#[test]
fn tens_of_thousands_of_mappings_are_sampled_exactly() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let mut helper = Helper::start(tree.path());
    helper.run("many 20000");
    let mut m = Monitord::start(&helper.target, store.path(), &[]);
    let mut captured = vec![(1, helper.maps())];
    helper.run("many 20000");
    let grown = m.sample();
    captured.push((grown, helper.maps()));
    let idle = m.sample();
    captured.push((idle, helper.maps()));
    m.stop();

    assert!(captured[1].1.lines().count() > 40_000, "the helper made its mappings");
    let records = dump_json(store.path());
    assert_eq!(strings(&record(&records, 1)["maps"]), lines(&captured[0].1));
    let (added, removed) = delta(record(&records, grown));
    assert_eq!(added, &lines(&captured[1].1) - &lines(&captured[0].1));
    assert_eq!(removed, &lines(&captured[0].1) - &lines(&captured[1].1));
    assert!(added.len() >= 20_000, "{} added", added.len());
    assert_eq!(delta(record(&records, idle)), Default::default());
    for (seq, text) in &captured {
        assert_eq!(&maps_at(store.path(), *seq), text, "maps --at {seq}");
    }
}

#[test]
fn a_sample_after_the_target_died_records_its_exit_not_an_empty_map() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let mut helper = Helper::start(tree.path());
    let mut m = Monitord::start(&helper.target, store.path(), &[]);
    helper.target.child().kill().unwrap();
    helper.target.child().wait().unwrap();
    // The exit is noticed at once (pidfd): a last sample, then the exit.
    m.wait_line("the exit record", |l| l.contains(" exit "));
    m.stop();
    let records = dump_json(store.path());
    assert!(records.iter().any(|r| r["kind"] == "exit"), "{records:#?}");
    let seq = records.iter().rev().find(|r| r["kind"] == "sample").unwrap()["seq"].as_u64().unwrap();
    let sample = records.iter().find(|r| r["kind"] == "sample").expect("a sample");
    assert_eq!(delta(sample), Default::default(), "no mapping is recorded as removed");
    assert!(sample["stats"].is_null());
    let newest = maps_at(store.path(), seq);
    assert_eq!(lines(&newest), strings(&record(&records, 1)["maps"]), "the last map known stays");
}

#[test]
fn record_without_maps_leaves_them_out_and_maps_at_says_so() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    std::fs::write(tree.path().join("a.txt"), "a\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &["--record", "files"]);
    m.sample();
    m.stop();
    let records = dump_json(store.path());
    assert!(records.iter().all(|r| r["stats"].is_null()), "{records:#?}");
    assert!(record(&records, 1)["maps"].is_null());
    let s = store.path().to_str().unwrap();
    let (code, _, stderr) = run(&["maps", "--store", s, "--at", "2"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no memory map was recorded at seq 2"), "{stderr}");
    let (code, _, stderr) = run(&["maps", "--store", s, "--at", "40"]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("seq 40 is not in the ring"), "{stderr}");

    let store = TempDir::new("monitord-store-");
    let m = Monitord::start(&target, store.path(), &["--record", "maps,stats"]);
    m.stop();
    let records = dump_json(store.path());
    assert_eq!(record(&records, 1)["files"], serde_json::json!([]), "files are not recorded");
    assert!(!record(&records, 1)["stats"].is_null());
}

/// The (epoch, seq) line of the store's newest map.
fn anchor_seq(store: &std::path::Path) -> u64 {
    let bytes = std::fs::read(store.join("maps")).expect("the store keeps the newest map");
    let header =
        String::from_utf8_lossy(&bytes[..bytes.iter().position(|&b| b == b'\n').unwrap()]).into_owned();
    header.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn once_the_baseline_has_wrapped_away_maps_at_replays_from_the_newest_map() {
    let tree = TempDir::new("monitord-tree-");
    let data = TempDir::new("monitord-data-");
    let store = TempDir::new("monitord-store-");
    let file = data.path().join("mapped.bin");
    std::fs::write(&file, vec![7u8; 4096]).unwrap();
    let file = file.to_str().unwrap().to_string();
    let mut helper = Helper::start(tree.path());
    let mut m = Monitord::start(&helper.target, store.path(), &["--ring-size", "64K"]);
    let mut edits = 0;
    let mut churn = |m: &mut Monitord| {
        edits += 1;
        let text: String =
            (0..20).map(|l| format!("edit {edits} {}\n", noise(edits * 20 + l, 100))).collect();
        std::fs::write(tree.path().join("log.txt"), text).unwrap();
        m.sample()
    };
    let oldest = |m: &mut Monitord| m.status()["oldest_seq"].parse::<u64>().unwrap();
    // The newest map is kept at the baseline and again once records after
    // it start leaving the ring.
    assert_eq!(anchor_seq(store.path()), 1);
    for _ in 0..200 {
        if anchor_seq(store.path()) > 1 {
            break;
        }
        churn(&mut m);
    }
    assert!(anchor_seq(store.path()) > 1, "the newest map was kept again when records after it were dropped");
    assert!(oldest(&mut m) > 2, "the baseline left the ring");

    let mut captured = Vec::new();
    for _ in 0..3 {
        churn(&mut m);
    }
    helper.run(&format!("map {file}"));
    captured.push((m.sample(), helper.maps()));
    helper.run("lib");
    captured.push((m.sample(), helper.maps()));
    helper.run(&format!("unmap {file}"));
    captured.push((m.sample(), helper.maps()));
    for _ in 0..200 {
        if anchor_seq(store.path()) > captured[2].0 {
            break;
        }
        churn(&mut m);
    }
    let newest_anchor = anchor_seq(store.path());
    assert!(newest_anchor > captured[2].0, "the newest map moved past the map changes");
    let oldest_held = oldest(&mut m);
    assert!(oldest_held <= captured[0].0, "the map changes are still in the ring (oldest {oldest_held})");
    captured.push((churn(&mut m), helper.maps()));
    m.stop();

    // Backwards from the newest map through the recorded changes, and
    // forwards from it for the last sample.
    for (seq, text) in &captured {
        assert_eq!(&maps_at(store.path(), *seq), text, "maps --at {seq}");
    }
    let (code, _, stderr) = run(&["maps", "--store", store.path().to_str().unwrap(), "--at", "1"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("seq 1 is not in the ring"), "{stderr}");
}
