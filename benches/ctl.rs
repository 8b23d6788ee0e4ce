//! The control path's speed: a `status` round trip through the FIFO, and
//! how much a stream of control requests delays the sampler's ticks.
//!
//! Goals: a `ctl status` round trip under 5 ms; the control path never
//! delays a sample by more than 1 ms.
//!
//! Run with `cargo bench --bench ctl`. It starts a real target (`sleep`)
//! and the real daemon (`monitord -d`, the bench profile's binary) on a
//! temp store, then:
//!
//! 1. times 1,000 `status` requests made in-process with the client the
//!    `ctl` subcommand uses, and 50 runs of the `monitord ctl status`
//!    command as a user would type it (process start included);
//! 2. records 3 s of samples at T = 10 ms with no control traffic, then
//!    3 s while another thread sends `status` requests back to back, and
//!    compares how late each tick was (gap between consecutive samples
//!    minus T) in the two runs.
//!
//! A plain `main`: the quantities are latency percentiles over a live
//! daemon, which criterion's iteration model does not fit.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use monitord::control::client;
use monitord::journal::Snapshot;
use monitord::journal::record::Kind;

const PERIOD_MS: u64 = 10;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut values: Vec<f64>, unit: &str) -> f64 {
    values.sort_by(f64::total_cmp);
    let median = percentile(&values, 0.5);
    println!(
        "{name:<44} n={:<5} median {median:>8.3} {unit}  p99 {:>8.3} {unit}  max {:>8.3} {unit}",
        values.len(),
        percentile(&values, 0.99),
        values[values.len() - 1]
    );
    median
}

/// Sample times (µs) with seq in `from..`.
fn sample_times(ring: &Path, from: u64) -> Vec<u64> {
    let snapshot = Snapshot::read(ring).expect("read ring");
    snapshot.frames().filter(|f| f.seq >= from && f.kind == Kind::Sample as u16).map(|f| f.time_us).collect()
}

/// Lateness of each tick in ms: gap between samples minus the period.
fn lateness(times: &[u64]) -> Vec<f64> {
    times.windows(2).map(|w| (w[1] - w[0]) as f64 / 1000.0 - PERIOD_MS as f64).collect()
}

fn newest_seq(ring: &Path) -> u64 {
    Snapshot::read(ring).expect("read ring").info().next_seq
}

fn main() {
    let tree = tempfile::tempdir().expect("temp tree");
    let store = tempfile::tempdir().expect("temp store");
    let mut target = Command::new("sleep").arg("100000").current_dir(tree.path()).spawn().expect("sleep");
    let binary = env!("CARGO_BIN_EXE_monitord");
    let status = Command::new(binary)
        .args(["-d", "--period", &PERIOD_MS.to_string(), "--store"])
        .arg(store.path())
        .arg(target.id().to_string())
        .status()
        .expect("start monitord -d");
    assert!(status.success(), "monitord -d failed");
    let ctl = store.path().join("ctl");
    let ring = store.path().join("ring.bin");
    let timeout = Duration::from_secs(5);

    println!("ctl round trip (daemon sampling every {PERIOD_MS} ms, idle tree)");
    for _ in 0..50 {
        client::request(&ctl, "status", timeout).expect("warm-up");
    }
    let in_process: Vec<f64> = (0..1000)
        .map(|_| {
            let t = Instant::now();
            let reply = client::request(&ctl, "status", timeout).expect("status");
            assert!(reply.ok);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let rt = summary("status round trip, in-process client", in_process, "ms");
    let command: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(binary).arg("ctl").arg("--store").arg(store.path()).arg("status").output();
            assert!(out.expect("ctl").status.success());
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let cmd = summary("`monitord ctl status`, process included", command, "ms");

    println!("\ntick lateness at T = {PERIOD_MS} ms (gap between samples minus T), 3 s each");
    let from = newest_seq(&ring);
    std::thread::sleep(Duration::from_secs(3));
    let quiet = lateness(&sample_times(&ring, from));
    let quiet_p99 = {
        let mut q = quiet.clone();
        q.sort_by(f64::total_cmp);
        percentile(&q, 0.99)
    };
    summary("no control traffic", quiet, "ms");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let spammer = {
        let (stop, sent, ctl) = (Arc::clone(&stop), Arc::clone(&sent), ctl.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if client::request(&ctl, "status", timeout).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let from = newest_seq(&ring);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    spammer.join().expect("spammer");
    let busy = lateness(&sample_times(&ring, from));
    let busy_p99 = {
        let mut b = busy.clone();
        b.sort_by(f64::total_cmp);
        percentile(&b, 0.99)
    };
    summary(&format!("status back to back ({} requests)", sent.load(Ordering::Relaxed)), busy, "ms");

    println!("\ngoals");
    println!("  round trip {rt:.3} ms (median, in-process) / {cmd:.3} ms (command): goal < 5 ms");
    println!(
        "  extra tick delay under control traffic (p99 busy - p99 quiet): {:.3} ms: goal < 1 ms",
        busy_p99 - quiet_p99
    );

    let _ = client::request(&ctl, "stop", timeout);
    let _ = target.kill();
    let _ = target.wait();
}
