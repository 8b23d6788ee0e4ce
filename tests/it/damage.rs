//! A damaged store never restores wrong content with exit 0: a flipped bit
//! in the mirror's pack or log, or in the middle of the ring, is named on
//! stderr, every reader goes on with what is intact, and a command whose
//! answer is incomplete exits 1. A file whose content was not known at a
//! point (unreadable to the target when it changed) is left out of that
//! point's restore, and said to be.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

/// Flip one bit of `path` at the first occurrence of `needle` (plus
/// `skip` bytes into it). Panics when `needle` is not there.
fn flip_in(path: &Path, needle: &[u8], skip: usize) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{} holds no {:?}", path.display(), String::from_utf8_lossy(needle)));
    bytes[at + skip] ^= 0x04;
    fs::write(path, bytes).unwrap();
}

fn store_str(store: &Path) -> &str {
    store.to_str().unwrap()
}

/// Restore `at` into a fresh directory: (exit code, stderr, what DEST holds).
fn try_restore(store: &Path, at: &str) -> (i32, String, std::collections::BTreeMap<String, Vec<u8>>) {
    let dest = TempDir::new("monitord-dest-");
    let out = dest.path().join("tree");
    let (code, _, stderr) = run(&["restore", "--store", store_str(store), "--at", at, out.to_str().unwrap()]);
    let held = if out.exists() { snapshot(&out) } else { Default::default() };
    (code, stderr, held)
}

/// A tree of three files, recorded with a baseline and two samples that
/// change `b.txt` and then `c.txt` (so the log holds an entry after b's).
fn recorded(backend: &str) -> (TempDir, TempDir, u64) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("a.txt"), "PACKED-ALPHA untouched since the baseline\n").unwrap();
    fs::write(tree.path().join("b.txt"), "bee\n").unwrap();
    fs::write(tree.path().join("c.txt"), "sea\n").unwrap();
    let target = Target::start(tree.path());
    // A small ring: the sweep below reads it a hundred times.
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--ring-size", "256K"]);
    fs::write(tree.path().join("b.txt"), "bee\nLOGGED-BETA second line\n").unwrap();
    m.sample();
    fs::write(tree.path().join("c.txt"), "sea\nLOGGED-GAMMA second line\n").unwrap();
    let last = m.sample();
    m.stop();
    (tree, store, last)
}

fn pack(store: &Path) -> PathBuf {
    store.join("mirror/1.pack")
}

fn log(store: &Path) -> PathBuf {
    store.join("mirror/1.log")
}

fn a_flipped_bit_in_the_pack_is_an_error_naming_the_file(backend: &str) {
    let (_tree, store, last) = recorded(backend);
    flip_in(&pack(store.path()), b"PACKED-ALPHA", 3);
    for at in ["1", &last.to_string()] {
        let (code, stderr, held) = try_restore(store.path(), at);
        assert_eq!(code, 1, "restore --at {at} of a damaged pack: {stderr}");
        assert!(stderr.contains("a.txt"), "the error names the file: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!held.values().any(|c| c.starts_with(b"PACKED")), "no wrong file in DEST: {held:?}");
    }
    let (code, stdout, stderr) =
        run(&["restore", "--store", store_str(store.path()), "--at", "1", "--path", "a.txt"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "nothing wrong printed: {:?}", String::from_utf8_lossy(&stdout));
    let (code, _, stderr) = run(&["show", "--store", store_str(store.path()), &format!("1..{last}")]);
    assert_eq!(code, 1, "show of a damaged mirror: {stderr}");
    assert_eq!(run(&["verify", "--store", store_str(store.path())]).0, 1);
}

fn a_flipped_bit_in_the_log_is_an_error_naming_the_damage(backend: &str) {
    let (_tree, store, last) = recorded(backend);
    flip_in(&log(store.path()), b"LOGGED-BETA", 3);
    for at in ["1", &last.to_string()] {
        let (code, stderr, held) = try_restore(store.path(), at);
        assert_eq!(code, 1, "restore --at {at} of a damaged log: {stderr}");
        assert!(stderr.contains("log") || stderr.contains("b.txt"), "{stderr}");
        assert!(held.is_empty(), "nothing written: {held:?}");
    }
    // A flip in the length of an entry (not its content) too.
    let (_tree, store, last) = recorded(backend);
    let bytes = fs::read(log(store.path())).unwrap();
    let mut damaged = bytes.clone();
    damaged[9] ^= 0x01; // the first entry's content length
    fs::write(log(store.path()), damaged).unwrap();
    let (code, stderr, _) = try_restore(store.path(), &last.to_string());
    assert_eq!(code, 1, "{stderr}");
}

fn a_flipped_bit_in_a_packed_file_is_found_after_its_baseline_wrapped_away(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("keep.txt"), "PACKED-KEEP never changes\n").unwrap();
    fs::write(tree.path().join("log.txt"), "start\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--ring-size", "16K"]);
    let mut last = 0;
    // Lines that do not compress, so that 60 samples fill the ring.
    for i in 0..60 {
        fs::write(tree.path().join("log.txt"), format!("sample {i} {}\n", noise(i, 320))).unwrap();
        last = m.sample();
    }
    m.stop();
    let records = dump_json(store.path());
    assert_ne!(records[0]["kind"], "baseline", "the baseline has wrapped away");
    assert_eq!(try_restore(store.path(), &last.to_string()).0, 0, "intact: restores");
    flip_in(&pack(store.path()), b"PACKED-KEEP", 2);
    let (code, stderr, held) = try_restore(store.path(), &last.to_string());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("keep.txt"), "{stderr}");
    assert!(!held.contains_key("keep.txt"), "{held:?}");
}

on_every_backend!(
    a_flipped_bit_in_the_pack_is_an_error_naming_the_file,
    a_flipped_bit_in_the_log_is_an_error_naming_the_damage,
    a_flipped_bit_in_a_packed_file_is_found_after_its_baseline_wrapped_away,
);

/// The sweep: a bit flipped anywhere in the mirror's pack or log (a stride
/// through every byte) either restores exactly or fails naming the damage.
#[test]
fn every_restore_after_a_mirror_flip_is_exact_or_exit_1() {
    let (tree, store, last) = recorded("inotify");
    let expected = snapshot(tree.path());
    let mut checked = 0;
    for file in [pack(store.path()), log(store.path())] {
        let clean = fs::read(&file).unwrap();
        // About 60 flips a file, spread over every part of it.
        for at in (0..clean.len()).step_by(clean.len().div_ceil(60)) {
            let mut damaged = clean.clone();
            damaged[at] ^= 1 << (at % 8);
            fs::write(&file, &damaged).unwrap();
            let (code, stderr, held) = try_restore(store.path(), &last.to_string());
            match code {
                0 => assert_eq!(held, expected, "{} byte {at}: exit 0 but a different tree", file.display()),
                1 => assert!(
                    !stderr.is_empty() && held.is_empty(),
                    "{} byte {at}: {stderr} {held:?}",
                    file.display()
                ),
                other => panic!("{} byte {at}: exit {other}: {stderr}", file.display()),
            }
            checked += 1;
        }
        fs::write(&file, &clean).unwrap();
    }
    assert!(checked > 50, "{checked} flips");
}

/// A file that becomes unreadable to the target, and then changes, has no
/// known content from that sample on: restore leaves it out and says so.
#[test]
fn a_file_unreadable_when_it_changed_is_left_out_and_named() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let dir = tree.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(dir.join("open.txt"), "open\n").unwrap();
    fs::write(dir.join("closing.txt"), "readable v1\n").unwrap();
    fs::set_permissions(dir.join("closing.txt"), fs::Permissions::from_mode(0o666)).unwrap();
    let mut target = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "100000"])
        .current_dir(dir)
        .spawn()
        .unwrap();
    let daemon = Daemon::start(target.id() as i32, store.path(), 600_000, &[]);
    fs::write(dir.join("closing.txt"), "readable v2\n").unwrap();
    assert_eq!(daemon.ctl(&["sample"]).0, 0);
    let known = dump_json(store.path()).last().unwrap()["seq"].as_u64().unwrap();
    fs::set_permissions(dir.join("closing.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(dir.join("closing.txt"), "SECRET v3 the target cannot read\n").unwrap();
    assert_eq!(daemon.ctl(&["sample"]).0, 0);
    fs::write(dir.join("open.txt"), "open, later\n").unwrap();
    assert_eq!(daemon.ctl(&["sample"]).0, 0);
    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(std::time::Duration::from_secs(20));
    let _ = target.kill();
    let _ = target.wait();
    let records = dump_json(store.path());
    let newest = records.last().unwrap()["seq"].as_u64().unwrap();

    // Before it became unreadable: known, restored.
    let (code, stderr, held) = try_restore(store.path(), &known.to_string());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(held["closing.txt"], b"readable v2\n");
    // After: left out, named, and the rest restored.
    let (code, stderr, held) = try_restore(store.path(), &newest.to_string());
    assert_eq!(code, 1, "an incomplete restore is not a success: {stderr}");
    assert!(!held.contains_key("closing.txt"), "stale content presented as current: {held:?}");
    assert_eq!(held["open.txt"], b"open, later\n");
    assert!(stderr.contains("closing.txt") && stderr.contains("unreadable"), "{stderr}");
    let dest = TempDir::new("monitord-dest-");
    let out = dest.path().join("t");
    let (code, stdout, _) = run(&[
        "restore",
        "--json",
        "--store",
        store_str(store.path()),
        "--at",
        &newest.to_string(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    let summary: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(summary["left_out"][0]["path"], "closing.txt", "{summary}");
    assert_eq!(summary["left_out"][0]["reason"], "unreadable", "{summary}");
    let (code, stdout, stderr) = run(&[
        "restore",
        "--store",
        store_str(store.path()),
        "--at",
        &newest.to_string(),
        "--path",
        "closing.txt",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("unreadable"), "{stderr}");
}

/// Records `n` samples, each changing `f.txt` to a line naming it.
fn many_samples(n: usize) -> (TempDir, TempDir, Vec<u64>) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("f.txt"), "start\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start_on("inotify", &target, store.path(), &["--ring-size", "256K"]);
    let mut seqs = Vec::new();
    for i in 0..n {
        fs::write(tree.path().join("f.txt"), format!("MARK-{i:03} line\n")).unwrap();
        seqs.push(m.sample());
    }
    m.stop();
    (tree, store, seqs)
}

#[test]
fn a_damaged_stretch_mid_ring_is_named_and_skipped_by_every_reader() {
    let (tree, store, seqs) = many_samples(20);
    let ring = store.path().join("ring.bin");
    // Damage sample 10's record: the line it inserts (tag 2, 14 bytes).
    flip_in(&ring, b"\x02\x0eMARK-009", 4);
    let damaged_seq = seqs[9];
    let later = *seqs.last().unwrap();
    let s = store_str(store.path());

    let (code, stdout, stderr) = run(&["dump", "--json", ring.to_str().unwrap()]);
    assert_eq!(code, 1, "dump of a damaged ring is incomplete: {stderr}");
    let seen: Vec<u64> = String::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert!(seen.contains(&later), "records after the damage are printed: {seen:?}");
    assert!(!seen.contains(&damaged_seq));
    assert!(stderr.contains("offset"), "{stderr}");
    assert!(stderr.contains(&damaged_seq.to_string()), "names the seqs: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line for one damaged stretch: {stderr}");

    let (code, stdout, stderr) = run(&["dump", ring.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(String::from_utf8_lossy(&stdout).contains("MARK-019"));

    let (code, stdout, stderr) = run(&["log", "--store", s]);
    assert_eq!(code, 1, "{stderr}");
    assert!(String::from_utf8_lossy(&stdout).contains(&format!("{later:>6}")), "{stderr}");
    assert!(stderr.contains("offset"), "{stderr}");

    let (code, stdout, stderr) = run(&["show", "--store", s, &later.to_string()]);
    assert_eq!(code, 0, "an intact record shows: {stderr}");
    assert!(String::from_utf8_lossy(&stdout).contains("MARK-019"));

    // A point after the damage restores exactly; one before it cannot.
    let (code, stderr, held) = try_restore(store.path(), &later.to_string());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(held, snapshot(tree.path()));
    let (code, stderr, held) = try_restore(store.path(), &seqs[2].to_string());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("damaged"), "{stderr}");
    assert!(held.is_empty());

    // A map is rebuilt from the baseline forwards: before the damage it
    // is exact; after it, it cannot be known and says so.
    let (code, stdout, stderr) = run(&["maps", "--store", s, "--at", &seqs[2].to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.is_empty());
    let (code, stdout, stderr) = run(&["maps", "--store", s, "--at", &later.to_string()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty() && stderr.contains("cannot be rebuilt"), "{stderr}");
}
