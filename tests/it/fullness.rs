//! A store on a filesystem that fills up: recording pauses with a clear
//! message, nothing recorded earlier is damaged, and recording resumes,
//! losing nothing, once space returns.

use std::time::Duration;

use crate::harness::*;

#[test]
fn a_full_store_pauses_recording_and_loses_nothing() {
    let Some(tmpfs) = Tmpfs::mount("2m") else { return };
    let tree = TempDir::new("monitord-tree-");
    let store = tmpfs.dir.path().join("store");
    std::fs::write(tree.path().join("a.txt"), "one\n").unwrap();
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), &store, 600_000, &["--ring-size", "512K", "--record", "files"]);
    let mut states = vec![(1, snapshot(tree.path()))];

    std::fs::write(tree.path().join("a.txt"), "one\ntwo\n").unwrap();
    let (code, out, _) = daemon.ctl(&["sample"]);
    assert_eq!(code, 0);
    states.push((out.trim().strip_prefix("sampled: ").unwrap().parse().unwrap(), snapshot(tree.path())));

    // Fill the disk, then change files: the sample is recorded in the ring
    // (allocated up front) but the mirror cannot follow.
    let filler = fill(tmpfs.dir.path());
    // Content that does not compress, so the mirror needs the space.
    std::fs::write(tree.path().join("b.txt"), noise(7, 64 * 1024)).unwrap();
    std::fs::write(tree.path().join("a.txt"), "one\ntwo\nthree\n").unwrap();
    let (code, _, err) = daemon.ctl(&["sample"]);
    assert_eq!(code, 1, "a sample on a full disk is an error reply");
    assert!(err.contains("recording paused") && err.contains("No space left on device"), "{err}");
    let status = daemon.status();
    assert!(status["recording"].starts_with("paused: "), "{status:?}");
    assert!(daemon.log().contains("recording paused"), "{}", daemon.log());
    assert!(daemon.is_alive(), "a full disk does not stop the monitor");
    let paused_seq: u64 = status["newest_seq"].parse().unwrap();
    states.push((paused_seq, snapshot(tree.path())));

    // Space returns: the next sample catches the mirror up and goes on.
    std::fs::remove_file(filler).unwrap();
    std::fs::write(tree.path().join("c.txt"), "c\n").unwrap();
    let (code, out, err) = daemon.ctl(&["sample"]);
    assert_eq!(code, 0, "{err}");
    states.push((out.trim().strip_prefix("sampled: ").unwrap().parse().unwrap(), snapshot(tree.path())));
    assert_eq!(daemon.status()["recording"], "ok");
    assert!(daemon.log().contains("recording resumed"));

    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(Duration::from_secs(20));
    let (code, out, _) = run(&["verify", "--store", store.to_str().unwrap()]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
    for (seq, expected) in &states {
        assert_eq!(&restored(&store, *seq), expected, "restore --at {seq}");
    }
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0, "no temp file left behind");
}

/// A daemon sampling every `period_ms` on a tree holding `big.txt`, with
/// a 16 KiB ring (records of at most 6 KiB).
fn small_ring(period_ms: u64) -> (TempDir, TempDir, Target, Daemon) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    std::fs::write(tree.path().join("big.txt"), noise(1, 4000)).unwrap();
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), period_ms, &["--ring-size", "16K"]);
    (tree, store, target, daemon)
}

/// A record too large for the ring (at most half of it) pauses recording
/// with a message that names the ring and the remedy, the monitor stays
/// alive and counts it in `status oversize`, and recording resumes once
/// the change that made the record fits again.
#[test]
fn a_record_too_large_for_the_ring_pauses_recording_and_the_monitor_stays() {
    let (tree, store, _target, daemon) = small_ring(600_000);
    let sampled = |out: &str| -> u64 { out.trim().strip_prefix("sampled: ").unwrap().parse().unwrap() };
    let mut states = vec![(1, snapshot(tree.path()))];

    // Rewritten whole with text that does not compress: the record holds
    // both versions, far more than half of a 16 KiB ring.
    std::fs::write(tree.path().join("big.txt"), noise(2, 40_000)).unwrap();
    let (code, _, err) = daemon.ctl(&["sample"]);
    assert_eq!(code, 1, "a sample whose record cannot fit is an error reply");
    assert!(err.contains("too large for ring") && err.contains("--ring-size"), "{err}");
    assert!(daemon.is_alive(), "a record too large for the ring does not stop the monitor");
    let status = daemon.status();
    assert!(status["recording"].starts_with("paused: record of "), "{status:?}");
    assert_eq!(status["oversize"], "1", "{status:?}");
    // Tried again every period: still one pause, not one per try.
    let (code, _, _) = daemon.ctl(&["sample"]);
    assert_eq!(code, 1);
    assert_eq!(daemon.status()["oversize"], "1");

    // A change that fits: recording resumes and nothing is lost.
    std::fs::write(tree.path().join("big.txt"), noise(1, 4000)).unwrap();
    std::fs::write(tree.path().join("small.txt"), "small\n").unwrap();
    let (code, out, err) = daemon.ctl(&["sample"]);
    assert_eq!(code, 0, "{err}");
    states.push((sampled(&out), snapshot(tree.path())));
    assert_eq!(daemon.status()["recording"], "ok");

    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(Duration::from_secs(20));
    monitord(&["verify", "--store", store.path().to_str().unwrap()]).expect_success();
    for (seq, expected) in &states {
        assert_eq!(&restored(store.path(), *seq), expected, "restore --at {seq}");
    }
}

/// Every try reads and diffs the pending change again: while a record is
/// too large for the ring, the periodic tries come less and less often
/// (the wait doubles from the period up to a minute).
#[test]
fn a_record_too_large_for_the_ring_is_tried_less_and_less_often() {
    let (tree, _store, _target, daemon) = small_ring(50);
    std::fs::write(tree.path().join("big.txt"), noise(2, 40_000)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let status = daemon.status();
    assert_eq!(status["oversize"], "1", "{status:?}");
    let tries: u64 = status["errors"].parse().unwrap();
    // At a 50 ms period, 40 tries in 2 s without the back-off; with it,
    // about 6 (0.05, 0.1, 0.2, 0.4, 0.8 s apart).
    assert!((1..=10).contains(&tries), "{tries} tries in 2 s: {status:?}");
    // Stopped while the change is still pending: an error, and the log
    // says why.
    let (code, _, err) = daemon.ctl(&["stop"]);
    assert_eq!(code, 1, "{err}");
    daemon.wait_gone(Duration::from_secs(20));
    assert!(daemon.log().contains("too large for ring"), "{}", daemon.log());
}
