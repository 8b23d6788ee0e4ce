//! What reading a full ring of an idle process costs, now that an idle
//! sample is a compact frame of about 16 bytes: the default 64 MiB ring
//! then holds about four million samples instead of one million, and every
//! reader (`dump --json`, `log`, `log --all`, `report`, `verify`) goes
//! through each of them, as does the writer's open, which walks the chain
//! to find its end.
//!
//! The store holds a baseline of 100 files and then samples of a process
//! that does nothing but tick: its CPU time moves every 7th sample, its
//! RSS every 50th, one sample every second. Each command runs through the
//! release binary, three times; the median is quoted (wall, CPU and peak
//! RSS from wait4), with its cost per record.
//!
//! Run with `cargo bench --bench idle_ring`; `MONITORD_BENCH_IDLE_STORE=DIR`
//! keeps the store in DIR (absent or empty) to profile a reader.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use monitord::diff;
use monitord::journal::Ring;
use monitord::journal::record::{Baseline, Body, FORMAT_VERSION, FileEntry, Node, Record, Sample, Stats};
use monitord::store;

/// The CLI's default `--ring-size`.
const RING_SIZE: u64 = 64 << 20;

/// Runs of each command; the median is quoted.
const RUNS: usize = 3;

fn record(body: Body) -> Record {
    Record { version: FORMAT_VERSION, epoch: 1, pid: 4242, body }
}

/// Fill the store's ring until it has wrapped; returns the records held
/// and the ring's used bytes.
fn fill(store_dir: &Path) -> (u64, u64) {
    let mut ring = Ring::open_or_create(&store_dir.join(store::RING_FILE), RING_SIZE).expect("create ring");
    let files = (0..100)
        .map(|n| {
            let path = format!("src/file{n:03}.rs").into_bytes();
            FileEntry { node: Node::File, size: 400, hash: diff::hash(&path), mode: 0o644, path }
        })
        .collect();
    let baseline = record(Body::Baseline(Baseline {
        cwd: b"/bench".to_vec(),
        files,
        backend: "inotify".into(),
        ..Baseline::default()
    }));
    let mut time_us = 1_700_000_000_000_000u64;
    ring.append(baseline.kind() as u16, time_us, &baseline.encode()).expect("append baseline");
    let mut i = 0u64;
    while ring.info().dropped_records == 0 {
        i += 1;
        time_us += 1_000_000 + (i * 7919) % 2_000;
        let stats = Stats {
            utime_ms: 1_000 + i / 7,
            stime_ms: 500 + i / 11,
            rss_kib: 20_000 + (i / 50) % 64,
            vsz_kib: 90_000,
            threads: 4,
            fds: 12,
        };
        let sample = record(Body::Sample(Sample { stats: Some(stats), ..Sample::default() }));
        ring.append(sample.kind() as u16, time_us, &sample.encode()).expect("append sample");
    }
    ring.flush().expect("flush ring");
    let info = ring.info();
    (info.next_seq - info.oldest_seq, info.used_bytes)
}

/// Wall and CPU time and peak RSS (KiB) of one run of `monitord ARGS`,
/// output discarded.
fn timed(args: &[&str]) -> (Duration, Duration, u64) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_monitord"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run monitord");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, `status` and `usage` are valid, writable.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    let wall = started.elapsed();
    // The child is reaped: tell `Child` not to wait for it again.
    std::mem::forget(child.stdin.take());
    std::mem::forget(child);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    (wall, tv(usage.ru_utime) + tv(usage.ru_stime), usage.ru_maxrss as u64)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let scratch =
        tempfile::Builder::new().prefix("monitord-bench-idle-").tempdir_in("/tmp").expect("scratch");
    // MONITORD_BENCH_IDLE_STORE=DIR (absent or empty) keeps the store
    // there, to profile the readers.
    let store_dir = std::env::var_os("MONITORD_BENCH_IDLE_STORE")
        .map_or_else(|| scratch.path().join("store"), std::path::PathBuf::from);
    store::create(&store_dir).expect("create store");
    eprintln!("filling a {} MiB ring with idle samples ...", RING_SIZE >> 20);
    let (records, used) = fill(&store_dir);
    let s = store_dir.to_str().expect("utf-8 path");
    let ring = store_dir.join(store::RING_FILE);
    let ring = ring.to_str().expect("utf-8 path");
    let report = scratch.path().join("report.html");
    let report = report.to_str().expect("utf-8 path");
    println!(
        "a full {} MiB ring of idle samples: {records} records, {:.1} bytes each ({:.0} days at one sample a second)",
        RING_SIZE >> 20,
        used as f64 / records as f64,
        records as f64 / 86_400.0
    );
    // What a monitor's start pays to find the chain's end (in process).
    let opens: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            drop(Ring::open_or_create(Path::new(ring), RING_SIZE).expect("open ring"));
            started.elapsed()
        })
        .collect();
    println!(
        "   the writer's open (walks the chain to its end): {:.0} ms",
        median(opens).as_secs_f64() * 1e3
    );
    println!("   {:<40} {:>10} {:>10} {:>14} {:>10}", "", "wall", "CPU", "CPU per record", "peak RSS");
    let commands: [(&str, Vec<&str>); 5] = [
        ("dump --json RING", vec!["dump", "--json", ring]),
        ("log (idle runs collapsed)", vec!["log", "--store", s]),
        ("log --all", vec!["log", "--all", "--store", s]),
        ("report -o FILE", vec!["report", "--store", s, "-o", report]),
        ("verify", vec!["verify", "--store", s]),
    ];
    for (name, args) in commands {
        let runs: Vec<(Duration, Duration, u64)> = (0..RUNS).map(|_| timed(&args)).collect();
        let wall = median(runs.iter().map(|r| r.0).collect());
        let cpu = median(runs.iter().map(|r| r.1).collect());
        let mut rss: Vec<u64> = runs.iter().map(|r| r.2).collect();
        rss.sort_unstable();
        println!(
            "   {name:<40} {:>8.2} s {:>8.2} s {:>11.2} us {:>7} MiB",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / records as f64,
            rss[rss.len() / 2] / 1024
        );
    }
}
