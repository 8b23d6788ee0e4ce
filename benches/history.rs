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
//! `dump --json`; `blame` of `big.txt` ≤ 200 ms; `report` written in
//! ≤ 2 s, a page of ≤ 20 MB that headless Chromium has loaded (parsed,
//! laid out, its script run) in ≤ 1 s, as the page itself measures
//! (`performance.now()` at its load event; skipped without Chromium).
//! `MONITORD_BENCH_KEEP=1` keeps the store and the page (the path is
//! printed last) to look at them.

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
    let mut stats = Stats { utime_ms: 1, stime_ms: 1, rss_kib: 4096, vsz_kib: 8192, threads: 1, fds: 4 };
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
        // Statistics that move, with a rare spike, for the report's charts.
        stats.utime_ms += rng.below(60) as u64;
        stats.rss_kib = 4096 + (s as u64 % 5000) + if s % 7919 == 0 { 50_000 } else { 0 };
        stats.threads = 1 + (s as u64 / 5000) % 4;
        stats.fds = 4 + rng.below(3) as u64;
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

    let page = dir.path().join("report.html");
    let report = timed(&["report", "--store", s, "-o", page.to_str().expect("utf-8 path")]);
    let page_len = std::fs::metadata(&page).map(|m| m.len()).unwrap_or(0);
    println!("report                       {:>8.1?}  (goal ≤ 2 s)", report);
    println!("report page                  {:>8.1} MB  (goal ≤ 20 MB)", page_len as f64 / 1e6);
    match first_render(&page) {
        Some((load_ms, screenshot, blank)) => {
            println!(
                "page loaded in Chromium      {load_ms:>8.1} ms  (goal ≤ 1 s; performance.now() at load)"
            );
            println!(
                "chromium --screenshot        {:>8.1?}  ({:.1?} more than an empty page)",
                screenshot,
                screenshot.saturating_sub(blank)
            );
        }
        None => println!("page loaded in Chromium      skipped: no chromium"),
    }
    if std::env::var_os("MONITORD_BENCH_KEEP").is_some() {
        println!("kept {}", dir.keep().display());
    }
}

/// Open the page in headless Chromium five times: the median of the load
/// time the page records (`data-load-ms`), and the median wall time of a
/// screenshot of it and of an empty page. `None` without Chromium.
fn first_render(page: &Path) -> Option<(f64, Duration, Duration)> {
    let chromium =
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists())?;
    let profile = tempfile::tempdir().expect("temp dir");
    let run = |url: &str, args: &[&str]| {
        let start = Instant::now();
        let out = Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .arg(url)
            .stderr(Stdio::null())
            .output()
            .expect("run chromium");
        (start.elapsed(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let url = format!("file://{}", page.display());
    let empty = page.with_file_name("empty.html");
    std::fs::write(&empty, "<!DOCTYPE html><title>empty</title>").expect("write empty page");
    let empty_url = format!("file://{}", empty.display());
    let shot = page.with_file_name("shot.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    let mut loads = Vec::new();
    let mut shots = Vec::new();
    let mut blanks = Vec::new();
    for _ in 0..5 {
        let (_, dom) = run(&url, &["--dump-dom"]);
        let ms = dom
            .split("data-load-ms=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|v| v.parse().ok());
        loads.push(ms.unwrap_or(f64::NAN));
        shots.push(run(&url, &["--window-size=1280,900", &shot_arg]).0);
        blanks.push(run(&empty_url, &["--window-size=1280,900", &shot_arg]).0);
    }
    loads.sort_by(f64::total_cmp);
    shots.sort();
    blanks.sort();
    Some((loads[2], shots[2], blanks[2]))
}
