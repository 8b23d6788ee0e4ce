//! The cost of `--max-line`: records per second of `dump --json` with and
//! without `--max-line 8000` on a full 64 MiB ring, through the real
//! binary (stdout read and counted by the bench, process start included).
//!
//! The ring is written until it has wrapped: samples of one to three small
//! edits with statistics, every 100th a change to 150 files (a JSON line of
//! about 40 KB: split into parts), every 2,000th a file rewritten with
//! 4,000 new lines (a diff too long for 8000 bytes: summarised), and a
//! baseline of 20,000 files (about 2 MB of JSON) every 30,000 samples.
//! Each figure is the median of seven runs, the two commands alternating:
//! wall time, and CPU time (user and system, from wait4), which a busy
//! machine disturbs less.
//!
//! Run with `cargo bench --bench max_line`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use monitord::diff::{self, Patch};
use monitord::journal::Ring;
use monitord::journal::record::{
    Baseline, Body, Change, FORMAT_VERSION, FileChange, FileEntry, MapsDelta, Node, Record, Sample, Stats,
};

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

const BASELINE_FILES: usize = 20_000;

/// Runs of each command; the median is quoted.
const RUNS: usize = 7;

fn record(body: Body) -> Record {
    Record { version: FORMAT_VERSION, epoch: 1, pid: 4242, body }
}

fn baseline() -> Record {
    let files = (0..BASELINE_FILES)
        .map(|n| {
            let path = format!("src/mod{:03}/file{n:05}.rs", n % 100).into_bytes();
            FileEntry { node: Node::File, size: 400 + n as u64, hash: diff::hash(&path), mode: 0o644, path }
        })
        .collect();
    record(Body::Baseline(Baseline { cwd: b"/bench".to_vec(), files, ..Baseline::default() }))
}

/// A change to one small file: one of its 20 lines replaced.
fn small_change(rng: &mut Rng, s: usize) -> FileChange {
    let n = rng.below(BASELINE_FILES);
    let old: String = (0..20).map(|i| format!("let v{i} = f({n}, {i});\n")).collect();
    let at = rng.below(20);
    let new: String =
        (0..20)
            .map(|i| {
                if i == at { format!("edited in sample {s}\n") } else { format!("let v{i} = f({n}, {i});\n") }
            })
            .collect();
    let path = format!("src/mod{:03}/file{n:05}.rs", n % 100).into_bytes();
    FileChange::new(
        path,
        Change::Modified,
        None,
        Node::File,
        Patch::compute(old.as_bytes(), new.as_bytes(), Duration::from_secs(1)),
    )
}

/// Append records until the ring has wrapped; returns how many it holds.
fn fill(ring: &mut Ring) -> u64 {
    let mut rng = Rng(0x6d61_785f_6c69_6e65);
    let stats = Stats { utime_ms: 1, stime_ms: 1, rss_kib: 4096, vsz_kib: 8192, threads: 1, fds: 4 };
    let big_old: String = (0..100).map(|i| format!("old line {i}\n")).collect();
    let big_new: String = (0..4_000).map(|i| format!("new line {i} of the rewritten file\n")).collect();
    let big = Patch::compute(big_old.as_bytes(), big_new.as_bytes(), Duration::from_secs(5));
    let mut time_us = 1_700_000_000_000_000u64;
    let mut s = 0;
    // Until the ring has dropped a few thousand of its oldest records.
    while ring.info().dropped_records < 5_000 {
        time_us += 100_000;
        if s % 30_000 == 0 {
            ring.append(1, time_us, &baseline().encode()).expect("append");
            s += 1;
            continue;
        }
        let mut files: Vec<FileChange> = (0..1 + s % 3).map(|_| small_change(&mut rng, s)).collect();
        if s % 100 == 0 {
            files.extend((0..150).map(|_| small_change(&mut rng, s)));
        }
        if s % 2_000 == 0 {
            files.push(FileChange::new(b"big.txt".to_vec(), Change::Modified, None, Node::File, big.clone()));
        }
        let maps = if s % 10 == 0 {
            MapsDelta {
                added: vec![format!("7f{s:010x}-7f{s:010x} rw-p 00000000 00:00 0").into_bytes()],
                removed: vec![],
            }
        } else {
            MapsDelta::default()
        };
        let sample = Sample { files, maps, stats: Some(stats), ..Sample::default() };
        ring.append(2, time_us, &record(Body::Sample(sample)).encode()).expect("append");
        s += 1;
    }
    let info = ring.info();
    info.next_seq - info.oldest_seq
}

/// What one run took and printed.
struct Run {
    wall: Duration,
    /// User and system CPU time of the process.
    cpu: Duration,
    lines: usize,
    bytes: usize,
    /// The longest line, newline included.
    longest: usize,
}

/// One run of `monitord ARGS`, its output read and counted.
#[allow(clippy::zombie_processes, reason = "the child is reaped by wait4, for its rusage")]
fn run(args: &[&str]) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_monitord"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run monitord");
    let mut out = BufReader::with_capacity(1 << 20, child.stdout.take().expect("stdout"));
    let (mut lines, mut bytes, mut longest) = (0, 0, 0);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = out.read_until(b'\n', &mut line).expect("read stdout");
        if n == 0 {
            break;
        }
        lines += 1;
        bytes += n;
        longest = longest.max(n);
    }
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, not yet reaped, with valid pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "monitord {args:?} failed");
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Run { wall: start.elapsed(), cpu: time(usage.ru_utime) + time(usage.ru_stime), lines, bytes, longest }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ring.bin");
    let built = Instant::now();
    let records = {
        let mut ring = Ring::open_or_create(&path, 64 << 20).expect("ring");
        let records = fill(&mut ring);
        ring.flush().expect("flush");
        records
    };
    println!("ring: 64 MiB, wrapped, {records} records held, built in {:.1?}", built.elapsed());
    let ring = path.to_str().expect("utf-8 path");
    let plain_args = ["dump", "--json", ring];
    let bounded_args = ["dump", "--json", "--max-line", "8000", ring];
    let (mut plain, mut bounded) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        plain.push(run(&plain_args));
        bounded.push(run(&bounded_args));
    }
    let rate = |d: Duration| records as f64 / d.as_secs_f64();
    let mut cpu = Vec::new();
    for (name, runs) in [("dump --json", &plain), ("dump --json --max-line 8000", &bounded)] {
        let wall = median(runs.iter().map(|r| r.wall).collect());
        let time = median(runs.iter().map(|r| r.cpu).collect());
        cpu.push(time);
        let last = &runs[RUNS - 1];
        println!(
            "{name:<28} wall {wall:>6.2?} {:>7.0} records/s, cpu {time:>6.2?} {:>7.0} records/s; {} lines, {} MiB, longest {} bytes",
            rate(wall),
            rate(time),
            last.lines,
            last.bytes >> 20,
            last.longest
        );
    }
    println!(
        "--max-line 8000 costs {:+.1} % of the CPU time",
        (cpu[1].as_secs_f64() / cpu[0].as_secs_f64() - 1.0) * 100.0
    );
}
