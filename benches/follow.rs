//! `dump --follow` keeping up with a busy writer: 10,000 records per
//! second for 5 s appended to a ring (sample records of a few hundred
//! bytes, as a busy monitor writes), followed by the real binary with
//! `dump --follow --json`; reports whether it kept up and the CPU it used
//! (from /proc/<pid>/stat), as a share of one core.
//!
//! Goal: keeps up, under 5 % of a core. Run with `cargo bench --bench follow`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use monitord::diff::Patch;
use monitord::journal::Ring;
use monitord::journal::record::{Body, Change, FORMAT_VERSION, FileChange, Node, Record, Sample};

const RATE: u64 = 10_000;
const SECONDS: u64 = 5;

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let get = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    get(14) + get(15)
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ring_path = dir.path().join("ring.bin");
    let mut ring = Ring::open_or_create(&ring_path, 64 << 20).expect("ring");
    let record = Record {
        version: FORMAT_VERSION,
        epoch: 1,
        pid: 1234,
        body: Body::Sample(Sample {
            files: vec![FileChange::new(
                b"src/main.c".to_vec(),
                Change::Modified,
                None,
                Node::File,
                Patch::compute(b"int a;\nint b;\n", b"int a;\nint c;\n", Duration::from_millis(100)),
            )],
            ..Sample::default()
        }),
    };
    let payload = record.encode();
    ring.append(record.kind() as u16, 0, &payload).expect("append");
    let mut follower = Command::new(env!("CARGO_BIN_EXE_monitord"))
        .args(["dump", "--follow", "--json"])
        .arg(&ring_path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("dump --follow");
    let pid = follower.id();
    let stdout = follower.stdout.take().expect("stdout");
    let counter = std::thread::spawn(move || {
        let mut last = 0u64;
        let mut lines = 0u64;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            lines += 1;
            if let Some(seq) = line.split("\"seq\":").nth(1).and_then(|s| s.split([',', '}']).next()) {
                last = seq.parse().unwrap_or(last);
            }
        }
        (lines, last)
    });
    std::thread::sleep(Duration::from_millis(300));
    let ticks_before = cpu_ticks(pid);
    let start = Instant::now();
    let total = RATE * SECONDS;
    for i in 0..total {
        ring.append(record.kind() as u16, i, &payload).expect("append");
        if i % 100 == 99 {
            let due = Duration::from_micros((i + 1) * 1_000_000 / RATE);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let wall = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let ticks = cpu_ticks(pid) - ticks_before;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = follower.wait();
    let (lines, last) = counter.join().expect("counter");
    let hz = 100.0; // USER_HZ on Linux
    let cpu_s = ticks as f64 / hz;
    let newest = ring.info().next_seq - 1;
    println!(
        "appended {total} records in {:.2} s ({:.0}/s); follower printed {lines} lines, last seq {last} of {newest}",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64()
    );
    println!(
        "follower CPU {cpu_s:.2} s over {:.2} s = {:.1} % of a core (goal < 5 %); kept up: {}",
        wall.as_secs_f64() + 0.3,
        100.0 * cpu_s / (wall.as_secs_f64() + 0.3),
        last == newest
    );
}
