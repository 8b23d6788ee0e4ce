//! Backends compared: how long setting up the watch takes as the tree
//! grows (inotify adds a watch per directory, fanotify an inode mark per
//! directory up to 16,384 of them, or with `MONITORD_FANOTIFY_MARKS=filesystem`
//! one mark for the filesystem), and a burst of 100,000 file writes in about 10 s sampled
//! every 100 ms: no change may be lost (an overflow turns into a counted
//! rescan), and the events drained per second are reported.
//!
//! Run with `cargo bench --bench backends` as root (fanotify needs
//! CAP_SYS_ADMIN; without it the fanotify rows say so). The trees live in
//! temp dirs under /tmp. `MONITORD_BENCH_QUICK=1`: smaller trees and burst.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use monitord::event::{self, Backend, Options};
use monitord::exclude::Matcher;
use monitord::journal::Ring;
use monitord::proc::Target;
use monitord::sampler::{Sampler, Settings};

fn build_tree(root: &Path, dirs: usize, files_per_dir: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("d{:03}/e{d:05}", d % 100));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..files_per_dir {
            std::fs::write(dir.join(format!("f{f}.txt")), format!("file {d}/{f}\n")).expect("write");
        }
    }
}

fn open_root(root: &Path) -> OwnedFd {
    std::fs::File::open(root).expect("open root").into()
}

fn options(target: i32) -> Options {
    Options {
        excludes: Matcher::new(&[".git"], None, false).expect("excludes"),
        skip: None,
        capacity: 65_536,
        target,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median set-up time in ms, or why the backend cannot start.
fn setup_ms(backend: Backend, root: &Path) -> Result<f64, String> {
    let fd = open_root(root);
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let source = event::start(backend, &fd, options(0)).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(source);
    }
    Ok(median(times))
}

/// Write `writes` appends spread over the tree's files in about `secs`
/// seconds while sampling every 100 ms; check the newest state against the
/// tree.
fn burst(backend: Backend, root: &Path, dirs: usize, files_per_dir: usize, writes: usize, secs: f64) {
    let store = tempfile::tempdir().expect("store");
    monitord::store::create(store.path()).expect("store layout");
    let mut sleeper = Command::new("sleep").arg("100000").current_dir(root).spawn().expect("sleep");
    let target = Target::open(sleeper.id() as i32).expect("target");
    let ring = Ring::open_or_create(&store.path().join("ring.bin"), 256 << 20).expect("ring");
    let settings = Settings {
        store: store.path().to_path_buf(),
        max_file_size: 8 << 20,
        matcher: Matcher::new(&[".git"], None, false).expect("excludes"),
        diff_deadline: Duration::from_millis(100),
        queue_capacity: 65_536,
        backend,
        only_target: false,
        record: monitord::proc::probe::Recording { files: true, maps: false, stats: false },
    };
    let (mut sampler, _) = match Sampler::start(settings, ring, target) {
        Ok(started) => started,
        Err(e) => {
            println!("{:<9} burst: cannot start: {e}", backend.name());
            let _ = sleeper.kill();
            let _ = sleeper.wait();
            return;
        }
    };
    let script = format!(
        "import time\n\
         start = time.time()\n\
         for i in range({writes}):\n\
         \x20   d = i % {dirs}\n\
         \x20   with open('d%03d/e%05d/f%d.txt' % (d % 100, d, (i // {dirs}) % {files_per_dir}), 'a') as f:\n\
         \x20       f.write('w%d\\n' % i)\n\
         \x20   if i % 1000 == 999:\n\
         \x20       ahead = (i + 1) / {writes} * {secs} - (time.time() - start)\n\
         \x20       if ahead > 0: time.sleep(ahead)\n"
    );
    let events_before =
        sampler.event_shared().map_or(0, |s| s.events.load(std::sync::atomic::Ordering::Relaxed));
    let started = Instant::now();
    let mut writer =
        Command::new("python3").args(["-c", &script]).current_dir(root).spawn().expect("python3");
    let mut samples = 0;
    let mut sample_cpu = Duration::ZERO;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        sampler.sample().expect("sample");
        sample_cpu += t.elapsed();
        samples += 1;
        if writer.try_wait().expect("wait").is_some() {
            break;
        }
    }
    sampler.sample().expect("last sample");
    let elapsed = started.elapsed().as_secs_f64();
    let shared = sampler.event_shared().expect("shared");
    let events = shared.events.load(std::sync::atomic::Ordering::Relaxed) - events_before;
    let overflows = shared.overflows.load(std::sync::atomic::Ordering::Relaxed);
    let rescans = sampler.counters().rescans;
    sampler.flush().expect("flush");
    drop(sampler);
    // No change lost: the newest recorded state equals the tree.
    let newest =
        monitord::journal::Snapshot::read(&store.path().join("ring.bin")).expect("ring").info().next_seq - 1;
    let state = monitord::restore::state_at(store.path(), monitord::restore::At::Seq(newest)).expect("state");
    let mut differ = 0;
    for d in 0..dirs {
        for f in 0..files_per_dir {
            let rel = format!("d{:03}/e{d:05}/f{f}.txt", d % 100);
            let on_disk = std::fs::read(root.join(&rel)).expect("read");
            if state.tree.get(rel.as_bytes()).map(|(_, c)| c) != Some(&on_disk) {
                differ += 1;
            }
        }
    }
    println!(
        "{:<9} burst: {writes} writes in {elapsed:.1} s, {events} events drained ({:.0}/s), {samples} samples \
         ({:.2} ms each), {overflows} overflows, {rescans} rescans, files differing from the journal: {differ}",
        backend.name(),
        events as f64 / elapsed,
        sample_cpu.as_secs_f64() * 1000.0 / samples as f64,
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

fn main() {
    let quick = std::env::var_os("MONITORD_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let (big_dirs, writes, secs) = if quick { (1_000, 10_000, 2.0) } else { (10_000, 100_000, 10.0) };
    let small = tempfile::tempdir().expect("tree");
    build_tree(small.path(), 100, 10);
    let big = tempfile::tempdir().expect("tree");
    let t = Instant::now();
    build_tree(big.path(), big_dirs, 10);
    println!(
        "built {} files in {big_dirs} directories in {:.1} s\n",
        big_dirs * 10,
        t.elapsed().as_secs_f64()
    );

    println!("watch set-up time (median of 3)");
    for backend in [Backend::Inotify, Backend::Fanotify] {
        let small_ms = setup_ms(backend, small.path());
        let big_ms = setup_ms(backend, big.path());
        match (small_ms, big_ms) {
            (Ok(s), Ok(b)) => println!(
                "{:<9} 1,000 files / 100 dirs: {s:>8.2} ms   {} files / {big_dirs} dirs: {b:>8.2} ms   ratio {:.1}x",
                backend.name(),
                big_dirs * 10,
                b / s
            ),
            (Err(e), _) | (_, Err(e)) => println!("{:<9} cannot start: {e}", backend.name()),
        }
    }
    println!();
    for backend in [Backend::Inotify, Backend::Fanotify] {
        burst(backend, big.path(), big_dirs, 10, writes, secs);
    }
}
