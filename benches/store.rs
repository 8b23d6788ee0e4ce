//! Size of the store: what monitord keeps for a history (the mirror plus
//! the ring's used bytes) against git's `.git` after `git gc` for the same
//! history, built side by side in one run; and what an idle sample and a
//! changed file cost in the ring.
//!
//! Run with `cargo bench --bench store` (as root or any user who can read
//! `/proc/<child>/cwd`). `MONITORD_BENCH_QUICK=1` uses a 10,000-file tree.
//!
//! The tree is the sample bench's: 100,000 text files of 20 lines (~1.4 KB
//! each, ~140 MB) in 1,000 directories. The history is a baseline and 5
//! increments, each appending one line to 10 files; monitord samples after
//! each step, and git commits the same states (`git add -A && git commit`,
//! 6 commits) in a separate `--git-dir`, then `git gc`. Sizes are apparent
//! sizes (the sum of the files' lengths).
//!
//! Then, on the same store: `IDLE` samples with nothing changed (stats
//! recorded, as by default) give the ring bytes of an idle sample and the
//! days of idle history the default 64 MiB ring holds at T = 1 s; and an
//! increment of 10 files with 10 appended lines each gives the ring bytes
//! per changed file and per changed line.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use monitord::exclude::Matcher;
use monitord::journal::{Ring, Snapshot};
use monitord::proc::Target;
use monitord::sampler::{Sampler, Settings};
use monitord::store;

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

/// The CLI's default `--ring-size`.
const RING_SIZE: u64 = 64 << 20;
/// Lines per generated file.
const LINES_PER_FILE: usize = 20;
/// Files appended to per increment.
const K: usize = 10;
/// Increments after the baseline.
const INCREMENTS: usize = 5;
/// Idle samples measured.
const IDLE: usize = 2000;

const WORDS: &[&str] = &[
    "sample",
    "record",
    "mirror",
    "journal",
    "inotify",
    "process",
    "directory",
    "change",
    "patch",
    "baseline",
    "history",
    "restore",
    "period",
    "store",
    "ring",
    "tree",
    "text",
    "line",
    "file",
    "path",
];

/// The followed process: a shell whose cwd is the tree and which makes the
/// writes the bench asks for.
struct Writer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Writer {
    fn spawn(cwd: &Path) -> Writer {
        let mut child = Command::new("sh")
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stdin = child.stdin.take().expect("sh stdin");
        let stdout = BufReader::new(child.stdout.take().expect("sh stdout"));
        let mut writer = Writer { child, stdin, stdout };
        writer.run("");
        writer
    }

    fn run(&mut self, script: &str) {
        writeln!(self.stdin, "{script}\necho done").expect("write to sh");
        self.stdin.flush().expect("flush sh stdin");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from sh");
        assert_eq!(line.trim_end(), "done", "sh did not acknowledge the script");
    }

    /// Append `lines` lines to each of `paths`.
    fn append(&mut self, paths: &[String], tag: usize, lines: usize) {
        let mut script = String::new();
        for path in paths {
            for l in 0..lines {
                let _ = writeln!(script, "printf 'appended line {tag}.{l} of the history\\n' >> {path}");
            }
        }
        self.run(&script);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_tree(root: &Path, files: usize, dirs: usize) -> (Vec<String>, u64) {
    for d in 0..dirs {
        fs::create_dir(root.join(format!("d{d:04}"))).expect("mkdir");
    }
    let mut rng = Rng(0x5eed_0003);
    let mut names = Vec::with_capacity(files);
    let mut bytes = 0;
    let mut content = String::with_capacity(2048);
    for i in 0..files {
        content.clear();
        for line in 0..LINES_PER_FILE {
            let start = content.len();
            let _ = write!(content, "{i:06}:{line:02}");
            while content.len() - start < 62 {
                content.push(' ');
                content.push_str(WORDS[rng.below(WORDS.len())]);
            }
            content.push('\n');
        }
        let rel = format!("d{:04}/f{i:06}.txt", i % dirs);
        fs::write(root.join(&rel), &content).expect("write tree file");
        bytes += content.len() as u64;
        names.push(rel);
    }
    (names, bytes)
}

/// The apparent size of everything under `path`.
fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).expect("read dir").flatten().map(|e| tree_bytes(&e.path())).sum()
}

fn git(git_dir: &Path, tree: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .arg("--work-tree")
        .arg(tree)
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "gc.auto=0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run git");
    assert!(status.success(), "git {args:?} failed");
}

fn ring_used(ring: &Path) -> u64 {
    Snapshot::read(ring).expect("read ring").info().used_bytes
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn main() {
    let quick = std::env::var_os("MONITORD_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let (files, dirs) = if quick { (10_000, 100) } else { (100_000, 1_000) };
    let scratch =
        tempfile::Builder::new().prefix("monitord-bench-store-").tempdir_in("/tmp").expect("scratch");
    let tree = scratch.path().join("tree");
    let store_dir = scratch.path().join("store");
    let git_dir = scratch.path().join("git");
    fs::create_dir(&tree).expect("mkdir tree");
    eprintln!("building a tree of {files} files ...");
    let (names, tree_size) = build_tree(&tree, files, dirs);

    let mut writer = Writer::spawn(&tree);
    store::create(&store_dir).expect("create store");
    let ring_path = store_dir.join(store::RING_FILE);
    let ring = Ring::open_or_create(&ring_path, RING_SIZE).expect("create ring");
    let settings = Settings {
        store: store_dir.clone(),
        max_file_size: 8 << 20,
        matcher: Matcher::new(&[".git"], None, false).expect("excludes"),
        diff_deadline: Duration::from_millis(100),
        queue_capacity: 65_536,
        backend: monitord::event::Backend::Inotify,
        only_target: false,
        record: monitord::proc::probe::Recording { files: true, maps: true, stats: true },
    };
    let target = Target::open(writer.child.id() as i32).expect("open target");
    eprintln!("baseline ...");
    let t0 = Instant::now();
    let (mut sampler, _) = Sampler::start(settings, ring, target).expect("start sampler");
    let baseline_wall = t0.elapsed();
    let t0 = Instant::now();
    git(&git_dir, &tree, &["init", "-q"]);
    git(&git_dir, &tree, &["add", "-A"]);
    git(&git_dir, &tree, &["commit", "-q", "-m", "baseline"]);
    let git_wall = t0.elapsed();

    let mut rng = Rng(0x5eed_0001);
    let mut pick = |n: usize| -> Vec<String> {
        let mut picked: Vec<usize> = Vec::with_capacity(n);
        while picked.len() < n {
            let i = rng.below(names.len());
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        picked.into_iter().map(|i| names[i].clone()).collect()
    };
    sampler.sample().expect("settling sample");
    for tag in 1..=INCREMENTS {
        writer.append(&pick(K), tag, 1);
        sampler.sample().expect("sample");
        git(&git_dir, &tree, &["add", "-A"]);
        git(&git_dir, &tree, &["commit", "-q", "-m", &format!("increment {tag}")]);
    }
    let ring_after_history = sampler.ring_info().used_bytes;
    let mirror = tree_bytes(&store_dir.join(store::MIRROR_DIR));
    eprintln!("git gc ...");
    let t0 = Instant::now();
    git(&git_dir, &tree, &["gc", "-q", "--prune=now"]);
    let gc_wall = t0.elapsed();
    let git_bytes = tree_bytes(&git_dir);
    let store_bytes = mirror + ring_after_history;

    // Idle samples: nothing changes.
    eprintln!("{IDLE} idle samples ...");
    let before = sampler.ring_info().used_bytes;
    for _ in 0..IDLE {
        sampler.sample().expect("idle sample");
    }
    let idle = (sampler.ring_info().used_bytes - before) as f64 / IDLE as f64;
    let days = RING_SIZE as f64 / idle / 86_400.0;

    // One sample of 10 files with 10 appended lines each.
    let before = sampler.ring_info().used_bytes;
    writer.append(&pick(K), INCREMENTS + 1, 10);
    sampler.sample().expect("sample");
    let record = sampler.ring_info().used_bytes - before;
    drop(sampler);
    let ring_used_final = ring_used(&ring_path);

    println!(
        "store size: {files} files, {} of text, a baseline and {INCREMENTS} increments of {K} appended files",
        mb(tree_size)
    );
    println!(
        "   monitord baseline {:.2} s; git init/add/commit {:.2} s, gc {:.2} s",
        baseline_wall.as_secs_f64(),
        git_wall.as_secs_f64(),
        gc_wall.as_secs_f64()
    );
    println!("   {:<36} {:>14}", "monitord mirror", mb(mirror));
    println!("   {:<36} {:>14}", "monitord ring (used bytes)", mb(ring_after_history));
    println!("   {:<36} {:>14}", "monitord store (mirror + ring)", mb(store_bytes));
    println!("   {:<36} {:>14}", "git .git after git gc", mb(git_bytes));
    println!(
        "   ratio store/git: {:.2}; goal <= 1: {}",
        store_bytes as f64 / git_bytes as f64,
        if store_bytes <= git_bytes { "ok" } else { "MISSED" }
    );
    println!("ring cost");
    println!(
        "   idle sample (stats, framing included): {idle:.1} bytes; goal <= 24: {}",
        if idle <= 24.0 { "ok" } else { "MISSED" }
    );
    println!("   idle history in a {} MiB ring at T = 1 s: {days:.1} days; goal >= 30", RING_SIZE >> 20);
    println!(
        "   sample of {K} files x 10 appended lines: {record} bytes = {:.0} bytes per changed file, {:.1} per changed line",
        record as f64 / K as f64,
        record as f64 / (K * 10) as f64
    );
    println!("   ring used at the end: {}", mb(ring_used_final));
}
