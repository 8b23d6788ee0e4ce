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

/// Tier 3 (`MONITORD_LONG=1`): the full counts of the plan.
fn long() -> bool {
    std::env::var_os("MONITORD_LONG").is_some_and(|v| v == "1")
}

/// A small xorshift generator: the seed is printed, so a failing run can
/// be replayed with `MONITORD_SEED`.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("MONITORD_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("seed {seed} (MONITORD_SEED={seed} replays it)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A writer churning over 40 files below `dir` (appends, rewrites,
/// renames, deletes, now and then a new directory) until `stop`.
fn churn(dir: std::path::PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut writes = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let n = rng.below(40);
            let name = dir.join(format!("f{n}.txt"));
            // Errors are expected: a file renamed or deleted a moment ago.
            let _ = match rng.below(10) {
                0..=3 => fs::OpenOptions::new().append(true).create(true).open(&name).and_then(|mut f| {
                    std::io::Write::write_all(&mut f, format!("append {writes}\n").as_bytes())
                }),
                4..=6 => fs::write(&name, format!("rewrite {writes}\n").repeat(1 + rng.below(20) as usize)),
                7 => fs::rename(&name, dir.join(format!("f{}.txt", rng.below(40)))),
                8 => fs::remove_file(&name),
                _ => fs::create_dir_all(dir.join(format!("d{}/e{}", rng.below(3), rng.below(3)))).and_then(
                    |()| fs::write(dir.join(format!("d{}/e0/g.txt", rng.below(3))), format!("{writes}\n")),
                ),
            };
            writes += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        writes
    })
}

/// Every record of `before` still in `after`, byte-identical (as JSON
/// objects, by seq), unless it has since been overwritten by the ring's
/// wrap; `after` is contiguous.
fn committed_kept(before: &[serde_json::Value], after: &[serde_json::Value], round: usize) -> usize {
    let seqs: Vec<u64> = after.iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "round {round}: seqs contiguous: {seqs:?}");
    let oldest = seqs.first().copied().unwrap_or(0);
    let mut kept = 0;
    for record in before.iter().filter(|r| r["seq"].as_u64().unwrap() >= oldest) {
        let seq = record["seq"].as_u64().unwrap();
        let now = &after[(seq - oldest) as usize];
        assert_eq!(now, record, "round {round}: record {seq} seen before the kill is changed or gone");
        kept += 1;
    }
    kept
}

/// `monitord verify` on a store no monitor holds.
fn verify(store: &std::path::Path, round: usize) {
    let (code, out, err) = run(&["verify", "--store", store.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "round {round}: verify fails:\n{out}\n{err}");
    assert!(!out.contains("damage"), "round {round}: verify reports damage:\n{out}");
}

/// J3: `kill -9` at a random moment (a few ms to 100 ms after start, one
/// round in ten within the first 10 ms) of a monitor sampling every 5 ms
/// a tree under churn, 200 times (2,000 with `MONITORD_LONG=1`). Before
/// each kill the records are dumped; after each restart every one of them
/// is still there byte-identical, the sequence has no gap, and every
/// restart succeeds. `verify` passes every 20 rounds and at the end.
#[test]
fn j3_kill_9_at_random_during_churn() {
    let rounds = if long() { 2_000 } else { 200 };
    let mut rng = Rng::seeded();
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = churn(tree.path().to_path_buf(), Arc::clone(&stop));
    let started = Instant::now();
    let (mut seen, mut kept, mut restarts) = (Vec::new(), 0, 0);
    for round in 0..rounds {
        let mut m = Monitord::start_with_period(&target, store.path(), 5, &["--ring-size", "128K"]);
        restarts += 1;
        let run_for = if rng.below(10) == 0 { rng.below(10) } else { 2 + rng.below(99) };
        std::thread::sleep(Duration::from_millis(run_for));
        let now = dump_json(store.path());
        kept += committed_kept(&seen, &now, round);
        seen = now;
        assert!(!m.kill(libc::SIGKILL).success());
        if round % 20 == 19 {
            verify(store.path(), round);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    let m = Monitord::start(&target, store.path(), &[]);
    m.stop();
    kept += committed_kept(&seen, &dump_json(store.path()), rounds);
    verify(store.path(), rounds);
    let last = seen.last().map_or(0, |r| r["seq"].as_u64().unwrap());
    eprintln!(
        "J3: {rounds} kills, {restarts} restarts (0 failed), {kept} committed records re-checked intact, \
         newest seq {last}, {writes} writes, in {:?}",
        started.elapsed()
    );
}

/// Check one `dump --json` of the J7 ring against the one before it: every
/// record decodes (dump succeeds), seqs go up by exactly 1, the oldest seq
/// never goes back, and a record in both is the same record. Returns
/// (oldest, newest).
fn no_stale_record(records: &[serde_json::Value], before: &[serde_json::Value], what: &str) -> (u64, u64) {
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{what}: seqs go up by 1: {seqs:?}");
    let (oldest, newest) = (seqs[0], *seqs.last().unwrap());
    if let (Some(b0), Some(bn)) = (before.first(), before.last()) {
        let (b0, bn) = (b0["seq"].as_u64().unwrap(), bn["seq"].as_u64().unwrap());
        assert!(
            oldest >= b0,
            "{what}: the oldest seq went back from {b0} to {oldest} (a stale record returned)"
        );
        assert!(newest >= bn, "{what}: the newest seq went back from {bn} to {newest}");
        for r in before.iter().filter(|r| r["seq"].as_u64().unwrap() >= oldest) {
            let now = &records[(r["seq"].as_u64().unwrap() - oldest) as usize];
            assert_eq!(now, r, "{what}: record {} changed", r["seq"]);
        }
    }
    (oldest, newest)
}

/// J7: a 64 KiB ring wrapped at least 100 times by samples of 64 B–4 KiB
/// files, with 50 `kill -9` at random moments (a monitor restarted after
/// each): after every restart no stale record comes back (seqs contiguous,
/// the oldest never going back, records seen before unchanged), ring.bin
/// keeps its size, and `verify` passes at the end. With
/// `MONITORD_LONG=1`: 1,000 wraps and 500 kills.
#[test]
fn j7_wraps_with_crashes_return_no_stale_record() {
    use monitord::journal::Snapshot;
    const RING: u64 = 64 * 1024;
    let (want_wraps, want_kills) = if long() { (1_000u64, 500usize) } else { (100, 50) };
    let mut rng = Rng::seeded();
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, dir) = (Arc::clone(&stop), tree.path().to_path_buf());
        std::thread::spawn(move || {
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            while !stop.load(Ordering::Relaxed) {
                // Small enough that a sample of all four fits the ring.
                let size = 64 + rng.below(4 * 1024) as usize;
                let line = format!("{:x}\n", rng.next());
                let _ =
                    fs::write(dir.join(format!("w{}.txt", rng.below(4))), line.repeat(size / line.len() + 1));
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let ring = store.path().join("ring.bin");
    let started = Instant::now();
    let (mut bytes, mut newest_counted, mut kills) = (0u64, 0u64, 0usize);
    let mut before: Vec<serde_json::Value> = Vec::new();
    let give_up = started + Duration::from_secs(if long() { 1_800 } else { 120 });
    while kills < want_kills || bytes < want_wraps * RING {
        assert!(
            Instant::now() < give_up,
            "only {} wraps and {kills} kills in {:?}",
            bytes / RING,
            started.elapsed()
        );
        let mut m = Monitord::start_with_period(&target, store.path(), 5, &["--ring-size", "64K"]);
        let records = dump_json(store.path());
        let (_, newest) = no_stale_record(&records, &before, &format!("after restart {kills}"));
        before = records;
        assert_eq!(fs::metadata(&ring).unwrap().len(), RING, "ring.bin keeps its size");
        // Run for a random while, counting the bytes of every record seen
        // (a lower bound on what was written: records may come and go
        // between two looks).
        let run_for = Duration::from_millis(rng.below(300));
        let until = Instant::now() + run_for;
        newest_counted = newest_counted.max(newest);
        loop {
            let snapshot = Snapshot::read(&ring).unwrap();
            let counted = newest_counted;
            for frame in snapshot.frames().filter(|f| f.seq > counted) {
                bytes += frame.payload.len() as u64;
                newest_counted = frame.seq;
            }
            if Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!m.kill(libc::SIGKILL).success());
        kills += 1;
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let m = Monitord::start(&target, store.path(), &[]);
    m.stop();
    let (oldest, newest) = no_stale_record(&dump_json(store.path()), &before, "at the end");
    verify(store.path(), kills);
    eprintln!(
        "J7: {} wraps of a 64 KiB ring ({bytes} bytes of records seen), {kills} kills, records {oldest}..={newest} \
         left, 0 stale, in {:?}",
        bytes / RING,
        started.elapsed()
    );
}
