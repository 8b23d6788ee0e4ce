//! The journal under a real crash: `kill -9` in the middle of heavy
//! writes loses no committed record.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use monitord::journal::Snapshot;

use crate::harness::*;

#[test]
fn kill_9_during_heavy_writes_loses_no_committed_record() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("seed.txt"), "seed\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start_with_period(&target, store.path(), 10, &["--ring-size", "1M"]);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let dir = tree.path().to_path_buf();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = dir.join(format!("f{}.txt", i % 50));
                fs::write(&name, format!("line {i}\n").repeat((i % 7 + 1) as usize)).unwrap();
                i += 1;
            }
        })
    };
    let ring = store.path().join("ring.bin");
    let mut seen = Vec::new();
    // At least five looks, and on until a few samples are in: on a busy
    // machine the first samples under this load can take a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    for look in 0.. {
        std::thread::sleep(Duration::from_millis(150));
        let snapshot = Snapshot::read(&ring).unwrap();
        seen = snapshot.frames().map(|f| (f.seq, f.time_us, f.payload.to_vec())).collect();
        if (look >= 4 && seen.len() > 5) || Instant::now() > deadline {
            break;
        }
    }
    let status = m.kill(libc::SIGKILL);
    assert!(!status.success());
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(seen.len() > 5, "the monitor recorded samples before the kill");

    let after = Snapshot::read(&ring).unwrap();
    let after: Vec<_> = after.frames().map(|f| (f.seq, f.time_us, f.payload.to_vec())).collect();
    let oldest_after = after.first().map(|f| f.0).unwrap_or(0);
    for record in seen.iter().filter(|r| r.0 >= oldest_after) {
        assert!(after.contains(record), "record {} seen before the kill is intact after it", record.0);
    }
    assert!(after.last().unwrap().0 >= seen.last().unwrap().0);

    // A restart on the same store continues the sequence and dumps whole.
    let mut m = Monitord::start(&target, store.path(), &[]);
    let seq = m.sample();
    m.stop();
    assert!(seq > after.last().unwrap().0);
    let records = dump_json(store.path());
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers are contiguous: {seqs:?}");
    let (code, stdout, _) = run(&["dump", ring.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&stdout).contains("opened 2 times"));
}
