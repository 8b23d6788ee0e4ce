//! Replay speed: one step must fit in a frame (16 ms) on a big store.
//!
//! Writes a real store (ring.bin and the mirror) for a synthetic tree of
//! 10,000 source-like files (`MONITORD_BENCH_FILES` to change it) and 300
//! samples, each editing a few files and now and then creating, deleting or
//! renaming one. Then:
//!
//! - checks once that stepping to the newest record gives the mirror, and
//!   that stepping back to the oldest gives the baseline tree;
//! - times `Replay::step_forward` and `Replay::step_back` over the whole
//!   history (the model alone);
//! - times a step plus a full redraw of the screen into a 160×50
//!   `TestBackend` (what a key press costs), both ways;
//! - times a poll for new records when there are none (a live replay
//!   polls twice a second);
//! - times opening the store (`Replay::open`: reading the ring and
//!   rebuilding the oldest tree), the one-off cost before the first frame.
//!
//! Prints the median, the 99th percentile and the worst of each. A plain
//! timed run rather than criterion: the quantity is the distribution of
//! single steps over a history, not one repeated call.

use std::path::Path;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use monitord::diff::{self, Patch};
use monitord::history::TreeState;
use monitord::journal::Ring;
use monitord::journal::record::{
    Baseline, Body, Change, FORMAT_VERSION, FileChange, FileEntry, MapsDelta, Node, Record, Sample, Stats,
};
use monitord::mirror::Mirror;
use monitord::replay::ui::App;
use monitord::replay::{Replay, StoreSource};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const SAMPLES: usize = 300;
const STEP_BUDGET: Duration = Duration::from_millis(16);

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

fn source_file(n: usize, lines: usize) -> Vec<u8> {
    (0..lines)
        .map(|i| format!("    let v{i} = step({n}, {i}); // line {i} of file {n}\n"))
        .collect::<String>()
        .into_bytes()
}

fn record(epoch: u64, body: Body) -> Record {
    Record { version: FORMAT_VERSION, epoch, pid: 4242, body }
}

/// Write the store; returns (baseline tree, newest tree).
fn write_store(store: &Path, files: usize) -> (TreeState, TreeState) {
    monitord::store::create(store).expect("create store");
    let mut ring = Ring::open_or_create(&store.join("ring.bin"), 4096 + 256 * 1024 * 1024).expect("ring");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut tree = TreeState::new();
    for n in 0..files {
        let path = format!("src/mod{:03}/file{n:05}.rs", n % 200).into_bytes();
        tree.insert(path, (Node::File, source_file(n, 20 + n % 60)));
    }
    let baseline_tree = tree.clone();
    let mut time_us = 1_700_000_000_000_000u64;
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
    let baseline = Baseline { cwd: b"/bench".to_vec(), files: entries, ..Baseline::default() };
    let epoch = 1;
    let payload = record(epoch, Body::Baseline(baseline)).encode();
    assert_eq!(ring.append(1, time_us, &payload).expect("append"), epoch);
    let deadline = Duration::from_secs(1);
    let mut created = 0;
    for s in 0..SAMPLES {
        time_us += 250_000 + (rng.next() % 500_000);
        let mut changes = Vec::new();
        let keys: Vec<Vec<u8>> = tree.keys().cloned().collect();
        let mut touched = std::collections::BTreeSet::new();
        for _ in 0..1 + rng.below(5) {
            let path = keys[rng.below(keys.len())].clone();
            if !touched.insert(path.clone()) {
                continue;
            }
            let old = tree[&path].1.clone();
            let mut lines: Vec<&[u8]> = old.split_inclusive(|&b| b == b'\n').collect();
            let at = rng.below(lines.len());
            let edit = format!("    edited({s}, {at});\n").into_bytes();
            lines[at] = &edit;
            let new = lines.concat();
            changes.push(FileChange::new(
                path.clone(),
                Change::Modified,
                None,
                Node::File,
                Patch::compute(&old, &new, deadline),
            ));
            tree.insert(path, (Node::File, new));
        }
        match s % 10 {
            3 => {
                created += 1;
                let path = format!("new/created{created}.rs").into_bytes();
                let content = source_file(files + created, 30);
                changes.push(FileChange::new(
                    path.clone(),
                    Change::Created,
                    None,
                    Node::File,
                    Patch::compute(b"", &content, deadline),
                ));
                tree.insert(path, (Node::File, content));
            }
            6 => {
                let path = keys[rng.below(keys.len())].clone();
                if !touched.contains(&path) {
                    let (_, old) = tree.remove(&path).expect("present");
                    changes.push(FileChange::new(
                        path,
                        Change::Deleted,
                        None,
                        Node::File,
                        Patch::compute(&old, b"", deadline),
                    ));
                }
            }
            8 => {
                let from = keys[rng.below(keys.len())].clone();
                if !touched.contains(&from) {
                    let (_, content) = tree.remove(&from).expect("present");
                    let path = format!("moved/{s}.rs").into_bytes();
                    changes.push(FileChange::new(
                        path.clone(),
                        Change::Renamed,
                        Some(from),
                        Node::File,
                        Patch::compute(&content, &content, deadline),
                    ));
                    tree.insert(path, (Node::File, content));
                }
            }
            _ => {}
        }
        let sample = Sample {
            files: changes,
            skipped: Vec::new(),
            maps: MapsDelta::default(),
            stats: Some(Stats { rss_kib: 10_000 + rng.next() % 5_000, ..Stats::default() }),
            writers: Vec::new(),
        };
        ring.append(2, time_us, &record(epoch, Body::Sample(sample)).encode()).expect("append");
    }
    ring.flush().expect("flush");
    let mut mirror = Mirror::open(store, epoch).expect("mirror");
    for (path, (node, content)) in &tree {
        mirror.put_new(path, *node, content).expect("mirror file");
    }
    mirror.finish_baseline().expect("mirror pack");
    (baseline_tree, tree)
}

fn report(what: &str, mut times: Vec<Duration>, budget: bool) {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let median = at(0.5);
    println!(
        "{what:<34} median {:>9.3} ms   p99 {:>9.3} ms   max {:>9.3} ms   ({} steps){}",
        median.as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
        times.len(),
        if budget && median >= STEP_BUDGET { "   OVER THE 16 ms BUDGET" } else { "" }
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing:
    // run in full either way (it takes a few seconds).
    let files: usize =
        std::env::var("MONITORD_BENCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let started = Instant::now();
    let (oldest_tree, newest_tree) = write_store(&store, files);
    println!("store: {files} files, {SAMPLES} samples, written in {:.1} s", started.elapsed().as_secs_f64());

    let mut opens = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let replay = Replay::open(StoreSource::new(&store)).expect("open");
        opens.push(t.elapsed());
        drop(replay);
    }
    let mut replay = Replay::open(StoreSource::new(&store)).expect("open");

    // Correct once before timing.
    assert_eq!(replay.tree(), &oldest_tree, "the oldest tree is the baseline");
    while replay.step_forward() {}
    assert_eq!(replay.tree(), &newest_tree, "stepping forwards ends at the mirror");
    assert_eq!(replay.problem(), None);
    while replay.step_back() {}
    assert_eq!(replay.tree(), &oldest_tree, "stepping back ends at the baseline");

    let mut forward = Vec::new();
    loop {
        let t = Instant::now();
        let stepped = replay.step_forward();
        if !stepped {
            break;
        }
        forward.push(t.elapsed());
    }
    let mut back = Vec::new();
    loop {
        let t = Instant::now();
        let stepped = replay.step_back();
        if !stepped {
            break;
        }
        back.push(t.elapsed());
    }
    assert_eq!(replay.problem(), None);

    let mut app = App::new(replay);
    let mut terminal = Terminal::new(TestBackend::new(160, 50)).expect("terminal");
    let now = Instant::now();
    let mut frame = |app: &mut App<StoreSource>, code: KeyCode| {
        let t = Instant::now();
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE), now);
        terminal.draw(|f| app.draw(f)).expect("draw");
        t.elapsed()
    };
    let screen_forward: Vec<Duration> = (0..SAMPLES).map(|_| frame(&mut app, KeyCode::Right)).collect();
    let screen_back: Vec<Duration> = (0..SAMPLES).map(|_| frame(&mut app, KeyCode::Left)).collect();
    let refresh: Vec<Duration> = (0..50)
        .map(|_| {
            let t = Instant::now();
            app.refresh();
            t.elapsed()
        })
        .collect();
    let redraw: Vec<Duration> = (0..50)
        .map(|_| {
            let t = Instant::now();
            terminal.draw(|f| app.draw(f)).expect("draw");
            t.elapsed()
        })
        .collect();

    report("open (read ring, rebuild oldest)", opens, false);
    report("model step forwards", forward, true);
    report("model step backwards", back, true);
    report("key + redraw, forwards", screen_forward, true);
    report("key + redraw, backwards", screen_back, true);
    report("redraw alone", redraw, true);
    report("poll of an unchanged store", refresh, true);
}
