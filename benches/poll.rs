//! The poll backend's per-sample cost, against a plain `find -newer` walk
//! of the same tree.
//!
//! The poll backend has no notifications: every sample is one walk of the
//! whole tree with an `fstatat(2)` per entry, so its cost grows with the
//! tree. The floor for any such scan is what `find . -newer REF` does: the
//! same walk, the same stat per entry. This bench puts the two side by
//! side on one tree, N = 100,000 files in 1,000 directories (100 each),
//! with k = 10 files changed before each sample.
//!
//! Run with `cargo bench --bench poll` (about a minute, most of it
//! creating the tree), or `MONITORD_BENCH_QUICK=1 cargo bench --bench
//! poll` for a 10,000-file smoke run. The tree is created under the
//! temporary directory (`TMPDIR`); the page and dentry caches are warm for
//! both contenders, as they are for a monitor sampling every second.
//!
//! Each round: touch REF, write k files in place, let the coarse clock
//! tick (so neither side sees the changes as "same tick"), then time one
//! poll sample (`sync` + `drain`, in process) and one `find . -newer REF`
//! (a child process; its start-up, about a millisecond, is included), in
//! alternating order. Both must find exactly the k files, checked every
//! round. Medians are reported, and their ratio.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use monitord::event::{self, Backend, Dirty, Options};
use monitord::exclude::Matcher;

const CHANGED: usize = 10;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn open_dir(dir: &Path) -> OwnedFd {
    use nix::fcntl::{OFlag, open};
    open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .expect("open the tree")
}

fn file(d: usize, f: usize) -> String {
    format!("d{d:04}/f{f:03}.txt")
}

/// Let the coarse clock (file times) move past what was just written.
fn tick() {
    std::thread::sleep(Duration::from_millis(25));
}

fn find_newer(tree: &Path, reference: &Path) -> (f64, Vec<String>) {
    let started = Instant::now();
    let out = Command::new("find")
        .arg(".")
        .arg("-newer")
        .arg(reference)
        .current_dir(tree)
        .output()
        .expect("run find");
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(out.status.success(), "find failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut found: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect();
    found.sort();
    (ms, found)
}

fn poll_sample(source: &mut dyn event::Source) -> (f64, Vec<String>) {
    let started = Instant::now();
    assert!(source.sync(Duration::from_secs(60)));
    let mut events = Vec::new();
    source.drain(&mut events);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut found: Vec<String> = events
        .into_iter()
        .map(|e| match e.dirty {
            Dirty::Path(p) => String::from_utf8(p).expect("ASCII names"),
            Dirty::Subtree(p) => panic!("no directory changed, got subtree {p:?}"),
            Dirty::Inode(dev, ino) => panic!("poll reports paths, got inode {dev}:{ino}"),
        })
        .collect();
    found.sort();
    (ms, found)
}

fn main() {
    let quick = std::env::var_os("MONITORD_BENCH_QUICK").is_some();
    let (dirs, per_dir, rounds) = if quick { (100, 100, 5) } else { (1_000, 100, 9) };
    let files = dirs * per_dir;
    let scratch = tempfile::Builder::new().prefix("monitord-bench-poll-").tempdir().expect("temp dir");
    let tree = scratch.path().join("tree");
    let reference = scratch.path().join("REF");

    let started = Instant::now();
    for d in 0..dirs {
        fs::create_dir_all(tree.join(format!("d{d:04}"))).expect("mkdir");
        for f in 0..per_dir {
            fs::write(tree.join(file(d, f)), format!("file {d} {f}\nsecond line\n")).expect("write");
        }
    }
    println!(
        "tree: {files} files in {dirs} directories under {} (created in {:.1} s)",
        scratch.path().display(),
        started.elapsed().as_secs_f64()
    );
    tick();

    let root = open_dir(&tree);
    let options = Options {
        excludes: Matcher::new(&[".git"], None, false).expect("globs"),
        skip: None,
        capacity: 65_536,
        target: 0,
    };
    let started = Instant::now();
    let mut source = event::start(Backend::Poll, &root, options).expect("start the poll backend");
    println!("first scan (fills the table): {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
    let entries = source.shared().last_scan_entries.load(Ordering::Relaxed);
    assert_eq!(entries, (files + dirs) as u64, "the scan sees every file and directory");

    let (idle_ms, idle) = poll_sample(source.as_mut());
    assert!(idle.is_empty(), "an idle scan finds nothing: {idle:?}");
    println!("idle sample (nothing changed): {idle_ms:.1} ms");

    let mut poll_ms = Vec::new();
    let mut find_ms = Vec::new();
    for round in 0..rounds {
        fs::write(&reference, "").expect("touch REF");
        tick();
        let mut expected: Vec<String> = (0..CHANGED)
            .map(|i| {
                // Spread over the tree; other files each round.
                let d = (i * dirs / CHANGED + round) % dirs;
                let f = (round * 7 + i) % per_dir;
                file(d, f)
            })
            .collect();
        for (i, path) in expected.iter().enumerate() {
            fs::write(tree.join(path), format!("round {round} change {i}\n")).expect("change");
        }
        expected.sort();
        tick();
        let (p, f) = if round % 2 == 0 {
            let p = poll_sample(source.as_mut());
            (p, find_newer(&tree, &reference))
        } else {
            let f = find_newer(&tree, &reference);
            (poll_sample(source.as_mut()), f)
        };
        assert_eq!(p.1, expected, "poll finds exactly the changed files (round {round})");
        assert_eq!(f.1, expected, "find -newer finds exactly the changed files (round {round})");
        poll_ms.push(p.0);
        find_ms.push(f.0);
    }
    let scan_us = source.shared().last_scan_us.load(Ordering::Relaxed);
    let (poll, find) = (median(poll_ms.clone()), median(find_ms.clone()));
    println!(
        "\nper sample, N = {files} files in {dirs} directories, k = {CHANGED} changed, {rounds} rounds:"
    );
    println!(
        "  poll backend (sync + drain)   median {poll:>8.1} ms   ({:.0} ns per entry; status last_scan_us {scan_us})",
        poll * 1e6 / entries as f64
    );
    println!("  find . -newer REF             median {find:>8.1} ms");
    println!("  ratio poll / find             {:.2}", poll / find);
    println!(
        "  all poll samples (ms): {:?}",
        poll_ms.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>()
    );
    println!(
        "  all find runs (ms):    {:?}",
        find_ms.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>()
    );
}
