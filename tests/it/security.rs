//! A hostile tree and a hostile store (RELIABILITY.md §4): a racer that
//! swaps files and directories for symlinks to a secret outside the tree
//! while the monitor samples (S1–S4), a crafted ring handed to `restore`
//! (S14), and a PID taken over the moment the target exits (S9).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use monitord::diff::Patch;
use monitord::journal::record::{Body, Change, FileChange, Node, Record, Sample};
use monitord::journal::{Ring, Snapshot};

use crate::harness::*;

/// Tier 3 (`MONITORD_LONG=1`): the full counts of the plan.
fn long() -> bool {
    std::env::var_os("MONITORD_LONG").is_some_and(|v| v == "1")
}

/// A 32-byte marker no file of the test writes anywhere else.
fn marker() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let m = format!("SECRET{:08x}{:018x}", std::process::id(), nanos & ((1 << 72) - 1));
    assert_eq!(m.len(), 32);
    m
}

/// `renameat2(RENAME_EXCHANGE)`: swap two names atomically.
fn exchange(a: &Path, b: &Path) -> bool {
    let a = std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap();
    let b = std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap();
    // SAFETY: renameat2 with two NUL-terminated paths; no memory is kept.
    unsafe {
        libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) == 0
    }
}

/// Everything `dump` and `dump --json` print for the store.
fn dump_output(store: &Path) -> Vec<u8> {
    let ring = store.join("ring.bin");
    let ring = ring.to_str().unwrap();
    let (code, mut human, err) = run(&["dump", ring]);
    assert_eq!(code, 0, "dump failed: {err}");
    let (code, json, err) = run(&["dump", "--json", ring]);
    assert_eq!(code, 0, "dump --json failed: {err}");
    human.extend(json);
    human
}

/// S1–S4: a secret outside the tree, reachable from it only through
/// symlinks that a racer swaps in and out as fast as it can while the
/// monitor samples every 10 ms:
/// - S1/S3: `a.txt` is replaced, by rename over it, with an absolute
///   symlink to the secret, then with a fresh file, again and again;
/// - S2: a relative symlink `../outside/secret.txt` and a chain of links
///   ending at it are renamed over `b.txt` the same way;
/// - S4: the directory `d` (holding `f.txt`) is exchanged
///   (`renameat2(RENAME_EXCHANGE)`) with a symlink to a directory outside
///   whose `f.txt` is the secret.
///
/// Figure: 0 bytes of the secret in the store (ring, mirror, everything),
/// in `dump` and `dump --json` output and in a restore of the last sample.
/// At least 35,000 swaps and 3 s of racing per backend, over 100,000 for
/// the three (10⁶ swaps and 60 s each with `MONITORD_LONG=1`).
fn s1_s4_swap_race_leaks_nothing(backend: &str) {
    let (min_swaps, min_time) =
        if long() { (1_000_000, Duration::from_secs(60)) } else { (35_000, Duration::from_secs(3)) };
    let base = TempDir::new("monitord-race-");
    let tree = base.path().join("tree");
    let outside = base.path().join("outside");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::create_dir_all(outside.join("dir")).unwrap();
    let secret = marker();
    fs::write(outside.join("secret.txt"), format!("{secret}\n")).unwrap();
    fs::write(outside.join("dir/f.txt"), format!("{secret}\n")).unwrap();
    fs::write(tree.join("a.txt"), "benign\n").unwrap();
    fs::write(tree.join("b.txt"), "benign\n").unwrap();
    fs::write(tree.join("d/f.txt"), "benign\n").unwrap();
    // S2: a chain of five links inside the tree ending at the secret.
    symlink("../outside/secret.txt", tree.join("chain1")).unwrap();
    for i in 2..=5 {
        symlink(format!("chain{}", i - 1), tree.join(format!("chain{i}"))).unwrap();
    }
    symlink("/", tree.join("rootlink")).unwrap();

    let store = TempDir::new("monitord-store-");
    let target = Target::start(&tree);
    let mut m =
        Monitord::start_with_period(&target, store.path(), 10, &["--backend", backend, "--ring-size", "4M"]);
    let samples_before: u64 = m.status()["samples"].parse().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let racer = {
        let (stop, swaps, tree, outside) =
            (Arc::clone(&stop), Arc::clone(&swaps), tree.clone(), outside.clone());
        std::thread::spawn(move || {
            let abs_secret = outside.join("secret.txt");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // S1/S3: an absolute link over a.txt, then a file again.
                symlink(&abs_secret, tree.join(".l")).unwrap();
                fs::rename(tree.join(".l"), tree.join("a.txt")).unwrap();
                fs::write(tree.join(".f"), format!("benign {i}\n")).unwrap();
                fs::rename(tree.join(".f"), tree.join("a.txt")).unwrap();
                // S2: relative and chained links over b.txt.
                let link = if i.is_multiple_of(2) { "../outside/secret.txt" } else { "chain5" };
                symlink(link, tree.join(".r")).unwrap();
                fs::rename(tree.join(".r"), tree.join("b.txt")).unwrap();
                fs::write(tree.join(".g"), format!("benign {i}\n")).unwrap();
                fs::rename(tree.join(".g"), tree.join("b.txt")).unwrap();
                // S4: the directory d and a link to a directory outside
                // trade places, and back.
                if i == 0 {
                    symlink(outside.join("dir"), tree.join(".d")).unwrap();
                }
                assert!(exchange(&tree.join("d"), &tree.join(".d")), "renameat2 RENAME_EXCHANGE");
                assert!(exchange(&tree.join("d"), &tree.join(".d")), "renameat2 RENAME_EXCHANGE");
                swaps.fetch_add(6, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let started = Instant::now();
    while swaps.load(Ordering::Relaxed) < min_swaps || started.elapsed() < min_time {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();
    let raced = started.elapsed();
    let swaps = swaps.load(Ordering::Relaxed);
    let samples = m.status()["samples"].parse::<u64>().unwrap() - samples_before;
    let last = m.sample();
    m.stop();

    assert!(samples > 10, "the monitor sampled during the race ({samples} samples)");
    let needle = secret.as_bytes();
    assert!(!occurs_below(store.path(), needle), "the secret leaked into the store");
    let dumped = dump_output(store.path());
    assert!(!dumped.windows(needle.len()).any(|w| w == needle), "the secret shows in dump output");
    let restored = restored(store.path(), last);
    assert!(
        restored.values().all(|c| !c.windows(needle.len()).any(|w| w == needle)),
        "restore holds the secret"
    );
    // The links were seen, as links.
    let records = dump_json(store.path());
    let saw_link = records.iter().any(|r| {
        r["files"]
            .as_array()
            .is_some_and(|files| files.iter().any(|f| f["path"] == "a.txt" && f["node"] == "symlink"))
    });
    assert!(saw_link, "a.txt was recorded as a symlink at least once");
    eprintln!(
        "S1-S4 {backend}: {swaps} swaps in {raced:?}, {samples} samples, {} records, 0 bytes of the secret leaked",
        records.len()
    );
}

on_every_backend!(s1_s4_swap_race_leaks_nothing);

/// S14 (and the restore half of S1–S4): a ring whose records name paths
/// outside DEST — `../x`, an absolute path, `a/../../b`, a NUL, a
/// 5,000-byte name, and a rename from `../y` — is refused by `restore`
/// with exit 1 and a message, and nothing is created outside DEST.
#[test]
fn s14_restore_refuses_crafted_ring_paths() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = record_alpha(tree.path(), store.path());

    let work = TempDir::new("monitord-crafted-");
    let abs = work.path().join("abs");
    fs::create_dir(&abs).unwrap();
    let abs_target = abs.join("pwned");
    let ring_path = store.path().join("ring.bin");
    let last = Snapshot::read(&ring_path).unwrap().frames().last().map(|f| f.payload.to_vec()).unwrap();
    let epoch = Record::decode(&last).unwrap().epoch;

    let deleted = |path: &[u8]| {
        FileChange::new(
            path.to_vec(),
            Change::Deleted,
            None,
            Node::File,
            Patch::compute(b"owned\n", b"", Duration::from_secs(1)),
        )
    };
    let mut crafted = vec![
        deleted(b"../x"),
        deleted(abs_target.as_os_str().as_bytes()),
        deleted(b"a/../../b"),
        deleted(b"a\0b"),
        deleted(&[b'n'; 5000]),
        deleted(b"./x"),
    ];
    crafted.push(FileChange::new(
        b"renamed.txt".to_vec(),
        Change::Renamed,
        Some(b"../y".to_vec()),
        Node::File,
        Patch::compute(b"alpha\n", b"alpha\n", Duration::from_secs(1)),
    ));
    for change in crafted {
        let shown = String::from_utf8_lossy(&change.path[..change.path.len().min(40)]).into_owned();
        let seq = {
            let mut ring = Ring::open_or_create(&ring_path, 0).unwrap();
            let record = Record {
                version: monitord::journal::record::FORMAT_VERSION,
                epoch,
                pid: target.pid(),
                body: Body::Sample(Sample { files: vec![change], ..Sample::default() }),
            };
            ring.append(record.kind() as u16, 0, &record.encode()).unwrap()
        };
        let before = snapshot(work.path());
        let dest = work.path().join("out");
        // Restoring the record before the crafted one replays it backwards.
        let (code, _, stderr) = run(&[
            "restore",
            "--store",
            store.path().to_str().unwrap(),
            "--at",
            &(seq - 1).to_string(),
            dest.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "restore of a ring with path {shown:?} must fail; stderr: {stderr}");
        assert!(
            stderr.contains("unsafe path") || stderr.contains("does not replay"),
            "the message names the problem for {shown:?}: {stderr}"
        );
        let _ = fs::remove_dir_all(&dest);
        assert_eq!(snapshot(work.path()), before, "nothing written outside DEST for {shown:?}");
        assert!(!abs_target.exists() && !work.path().join("x").exists() && !work.path().join("b").exists());
        assert!(!store.path().join("x").exists() && !store.path().join("y").exists());
    }
}

/// A directory and a symlink trading places in one period (the S4 racer's
/// single step, without the race) is recorded as two renames and restores
/// exactly. The failure the racer found needs a sample that sees the two
/// halves of an exchange at different moments; the race test above is the
/// one that reproduces it.
fn directory_and_link_exchange_is_recorded(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let outside = TempDir::new("monitord-outside-");
    fs::create_dir(tree.path().join("d")).unwrap();
    fs::write(tree.path().join("d/f.txt"), "inside\n").unwrap();
    symlink(outside.path(), tree.path().join(".d")).unwrap();
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    assert!(exchange(&tree.path().join("d"), &tree.path().join(".d")));
    let seq = m.sample();
    assert!(exchange(&tree.path().join("d"), &tree.path().join(".d")));
    let back = m.sample();
    m.stop();
    let records = dump_json(store.path());
    let renamed = changes(record(&records, seq));
    assert_eq!(
        renamed,
        [(".d/f.txt".to_string(), "renamed".to_string()), ("d".to_string(), "renamed".to_string())]
    );
    assert_eq!(restored(store.path(), back), snapshot(tree.path()));
}

on_every_backend!(directory_and_link_exchange_is_recorded);
