//! Asking the history: `log -- PATH`, `log -S` and `blame` on a full ring,
//! timed through the real binary against `dump --json > /dev/null` of the
//! same ring, in the same run.
//!
//! Builds once a store for a 10,000-file tree with 50,000 samples in a
//! 64 MiB ring (`MONITORD_BENCH_SAMPLES` to change the count): each sample
//! edits one line of one or two files; every 50th also edits one line of
//! `big.txt`, a 2,000-line file (so it changes in 1,000 samples), which
//! `blame` then walks back. Every figure is the median of five runs of the
//! command, process start included.
//!
//! Goals: `log -- PATH` ≤ 1 s and ≤ 2× `dump --json`; `log -S` ≤ 2×
//! `dump --json`; `blame` of `big.txt` ≤ 200 ms.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use monitord::diff::{self, Patch};
use monitord::history::TreeState;
use monitord::journal::Ring;
use monitord::journal::record::{
    Baseline, Body, Change, FORMAT_VERSION, FileChange, FileEntry, Node, Record, Sample, Stats,
};
use monitord::mirror::Mirror;

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

const FILES: usize = 10_000;
const BIG_LINES: usize = 2_000;

fn record(body: Body) -> Record {
    Record { version: FORMAT_VERSION, epoch: 1, pid: 4242, body }
}

fn edit_line(old: &[u8], at: usize, text: String) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = old.split_inclusive(|&b| b == b'\n').collect();
    let at = at % lines.len();
    let text = text.into_bytes();
    lines[at] = &text;
    lines.concat()
}

/// Write the store: ring and mirror. Returns how many records it holds.
fn write_store(store: &Path, samples: usize) -> u64 {
    monitord::store::create(store).expect("create store");
    let mut ring = Ring::open_or_create(&store.join("ring.bin"), 64 << 20).expect("ring");
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut tree = TreeState::new();
    for n in 0..FILES {
        let path = format!("src/mod{:03}/file{n:05}.rs", n % 100).into_bytes();
        let content: String = (0..10 + n % 30).map(|i| format!("let v{i} = f({n}, {i});\n")).collect();
        tree.insert(path, (Node::File, content.into_bytes()));
    }
    let big: String = (0..BIG_LINES).map(|i| format!("line {i} of the big file\n")).collect();
    tree.insert(b"big.txt".to_vec(), (Node::File, big.into_bytes()));
    let entries = tree
        .iter()
        .map(|(path, (node, content))| FileEntry {
            path: path.clone(),
            node: *node,
            size: content.len() as u64,
            hash: diff::hash(content),
            mode: 0o644,
        })
        .collect();
    let mut time_us = 1_700_000_000_000_000u64;
    let baseline = Baseline { cwd: b"/bench".to_vec(), files: entries, ..Baseline::default() };
    ring.append(1, time_us, &record(Body::Baseline(baseline)).encode()).expect("append");
    let keys: Vec<Vec<u8>> = tree.keys().cloned().collect();
    let deadline = Duration::from_secs(1);
    let stats = Stats { utime_ms: 1, stime_ms: 1, rss_kib: 4096, vsz_kib: 8192, threads: 1, fds: 4 };
    let mut newest = 1;
    for s in 0..samples {
        time_us += 100_000;
        let mut paths = vec![keys[rng.below(keys.len())].clone()];
        if s % 3 == 0 {
            paths.push(keys[rng.below(keys.len())].clone());
        }
        if s % 50 == 0 {
            paths.push(b"big.txt".to_vec());
        }
        paths.dedup();
        let mut files = Vec::new();
        for path in paths {
            let old = tree[&path].1.clone();
            let text = if s % 97 == 0 { format!("needle {s}\n") } else { format!("edited in sample {s}\n") };
            let new = edit_line(&old, rng.below(1 << 20), text);
            files.push(FileChange::new(
                path.clone(),
                Change::Modified,
                None,
                Node::File,
                Patch::compute(&old, &new, deadline),
            ));
            tree.insert(path, (Node::File, new));
        }
        let sample = Sample { files, stats: Some(stats), ..Sample::default() };
        newest = ring.append(2, time_us, &record(Body::Sample(sample)).encode()).expect("append");
    }
    let mut mirror = Mirror::open(store, 1).expect("mirror");
    for (path, (node, content)) in &tree {
        mirror.put_new(path, *node, content).expect("put");
    }
    mirror.finish_baseline().expect("pack");
    newest
}

/// The median wall time of five runs of `monitord ARGS > /dev/null`.
fn timed(args: &[&str]) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let status = Command::new(env!("CARGO_BIN_EXE_monitord"))
                .args(args)
                .stdout(Stdio::null())
                .status()
                .expect("run monitord");
            let took = start.elapsed();
            assert!(status.success(), "monitord {args:?} failed");
            took
        })
        .collect();
    times.sort();
    times[2]
}

fn main() {
    let samples = std::env::var("MONITORD_BENCH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let built = Instant::now();
    let newest = write_store(&store, samples);
    let ring_len = std::fs::metadata(store.join("ring.bin")).map(|m| m.len()).unwrap_or(0);
    println!(
        "store: {FILES} files, {samples} samples (newest seq {newest}), ring {} MiB, built in {:.1?}",
        ring_len >> 20,
        built.elapsed()
    );
    let s = store.to_str().expect("utf-8 path");
    let ring = store.join("ring.bin");
    let dump = timed(&["dump", "--json", ring.to_str().expect("utf-8 path")]);
    let log_path = timed(&["log", "--store", s, "--", "src/mod042/file00042.rs"]);
    let log_s = timed(&["log", "--store", s, "-S", "needle"]);
    let blame = timed(&["blame", "--store", s, "big.txt"]);
    let ratio = |d: Duration| d.as_secs_f64() / dump.as_secs_f64();
    println!("dump --json > /dev/null      {:>8.1?}", dump);
    println!(
        "log -- PATH                  {:>8.1?}  {:.2}× dump (goal ≤ 1 s and ≤ 2×)",
        log_path,
        ratio(log_path)
    );
    println!("log -S needle                {:>8.1?}  {:.2}× dump (goal ≤ 2×)", log_s, ratio(log_s));
    println!("blame big.txt (2,000 lines)  {:>8.1?}  (goal ≤ 200 ms)", blame);
}
