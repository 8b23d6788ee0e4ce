//! `monitord undo` of 1,000 changed files in a 100,000-file tree, timed
//! through the real binary against `cp -a` of the same 1,000 files into
//! place, in the same run.
//!
//! Builds the tree (`MONITORD_BENCH_FILES`, default 100,000 files of
//! ~1.4 KB in 1,000 directories), records it with a real monitor (a
//! daemon on a `sleep` in the tree), appends a line to 1,000 files and
//! samples, then stops the monitor. Each round puts the changed files
//! back (untimed), then times `monitord undo 1` (no monitor running: it
//! plans from the journal and mirror, checks every file against the live
//! tree and writes each through a temporary and a rename) and `cp -a` of
//! the original 1,000 files over them. Medians of three rounds.
//!
//! Goal: undo ≤ 1 s and ≤ 3× `cp -a`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CHANGED: usize = 1_000;

fn monitord(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_monitord")).args(args).output().expect("run monitord");
    assert!(out.status.success(), "monitord {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn timed(mut run: impl FnMut()) -> Duration {
    let start = Instant::now();
    run();
    start.elapsed()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn copy_into(from: &Path, to: &Path) {
    let status =
        Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).status().expect("cp");
    assert!(status.success());
}

fn main() {
    let files: usize =
        std::env::var("MONITORD_BENCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let base = tempfile::tempdir().expect("temp dir");
    let tree = base.path().join("tree");
    let store = base.path().join("store");
    let (originals, changed) = (base.path().join("originals"), base.path().join("changed"));
    let line = "the quick brown fox jumps over the lazy dog, and again, and again: 0123456789\n";
    let started = Instant::now();
    for i in 0..files {
        let dir = tree.join(format!("d{:03}", i % 1000));
        if i < 1000 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        std::fs::write(dir.join(format!("f{i:06}.txt")), line.repeat(18)).expect("write");
    }
    eprintln!("tree: {files} files in {:.1} s", started.elapsed().as_secs_f64());
    let mut sleeper = Command::new("sleep").arg("100000").current_dir(&tree).spawn().expect("sleep");
    let s = store.to_str().expect("utf-8");
    let started = Instant::now();
    monitord(&["-d", "--store", s, "--period", "600000", &sleeper.id().to_string()]);
    eprintln!("monitor started (baseline) in {:.1} s", started.elapsed().as_secs_f64());
    // Every 100th file changes: 1,000 files spread over the directories.
    let step = (files / CHANGED).max(1);
    let picked: Vec<String> =
        (0..files).step_by(step).take(CHANGED).map(|i| format!("d{:03}/f{i:06}.txt", i % 1000)).collect();
    for rel in &picked {
        let path = tree.join(rel);
        for (copy, content) in [(&originals, std::fs::read(&path).expect("read")), (&changed, Vec::new())] {
            let to = copy.join(rel);
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            if !content.is_empty() {
                std::fs::write(&to, content).expect("copy");
            }
        }
        let mut content = std::fs::read(&path).expect("read");
        content.extend_from_slice(b"one more line\n");
        std::fs::write(&path, &content).expect("append");
        std::fs::write(changed.join(rel), &content).expect("copy");
    }
    monitord(&["ctl", "--store", s, "sample"]);
    monitord(&["ctl", "--store", s, "stop"]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    let (mut undos, mut cps) = (Vec::new(), Vec::new());
    for round in 0..3 {
        if round > 0 {
            copy_into(&changed, &tree);
        }
        undos.push(timed(|| {
            let out = monitord(&["undo", "--store", s, "1"]);
            assert!(out.contains(&format!("{CHANGED} files put back")), "{out}");
        }));
        copy_into(&changed, &tree);
        cps.push(timed(|| copy_into(&originals, &tree)));
    }
    let (undo, cp) = (median(undos), median(cps));
    println!(
        "undo of {CHANGED} files in a {files}-file tree: {:.3} s; cp -a of the same files {:.3} s; ratio {:.2}x (goal <= 1 s, <= 3x)",
        undo.as_secs_f64(),
        cp.as_secs_f64(),
        undo.as_secs_f64() / cp.as_secs_f64()
    );
}
