//! Speed of the sampler: what one sample costs when a few files change in a
//! large tree, against the walk a polling tool (`find -newer`) would do, and
//! what the baseline and an idle monitor cost.
//!
//! Run with `cargo bench --bench sample` (as root or any user who can read
//! `/proc/<child>/cwd`). `MONITORD_BENCH_QUICK=1` uses a 10,000-file tree
//! and fewer repetitions, for a smoke run.
//!
//! The target is a real child process (`sh`) whose working directory is
//! the tree; the bench sends it the writes to make (`printf .. >> file`),
//! so the changes come from another process, as they do in use. The trees
//! and the stores live in temporary directories under `/tmp`.
//!
//! CPU time is the whole process's (`getrusage(RUSAGE_SELF)`), so the
//! inotify event thread's work is counted; a child's CPU (`find`, `tar`)
//! comes from `RUSAGE_CHILDREN`. Every figure printed is a median.
//!
//! This is a plain `main` rather than criterion groups: the quantities are
//! process CPU time and one-off walks of a 140 MB tree, which criterion's
//! wall-clock iteration model does not fit, and the report is one table.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use monitord::journal::Ring;
use monitord::journal::record::{Body, Change};
use monitord::proc::Target;
use monitord::sampler::{Committed, Sampler, Settings};
use monitord::store;
use monitord::tree::Excludes;

/// Changed files per sample.
const K: usize = 10;
/// Lines per generated file (about 70 bytes each: ~1.4 KB per file).
const LINES_PER_FILE: usize = 20;
const RING_SIZE: u64 = 256 << 20;

struct Config {
    quick: bool,
    big_files: usize,
    big_dirs: usize,
    small_files: usize,
    small_dirs: usize,
    sample_reps: usize,
    walk_reps: usize,
    baseline_reps: usize,
    idle: Duration,
}

impl Config {
    fn from_env() -> Config {
        let quick = std::env::var_os("MONITORD_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
        if quick {
            Config {
                quick,
                big_files: 10_000,
                big_dirs: 100,
                small_files: 1_000,
                small_dirs: 10,
                sample_reps: 31,
                walk_reps: 3,
                baseline_reps: 2,
                idle: Duration::from_secs(2),
            }
        } else {
            Config {
                quick,
                big_files: 100_000,
                big_dirs: 1_000,
                small_files: 1_000,
                small_dirs: 10,
                sample_reps: 101,
                walk_reps: 5,
                baseline_reps: 3,
                idle: Duration::from_secs(5),
            }
        }
    }
}

// ---------------------------------------------------------------- measuring

/// CPU time (user + system) of this process, all threads, or of its
/// waited-for children.
fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: `rusage` is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`; `who` is RUSAGE_SELF
    // or RUSAGE_CHILDREN.
    let rc = unsafe { libc::getrusage(who, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn self_cpu() -> Duration {
    cpu_time(libc::RUSAGE_SELF)
}

fn children_cpu() -> Duration {
    cpu_time(libc::RUSAGE_CHILDREN)
}

/// One timed run: wall and CPU time.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    wall: Duration,
    cpu: Duration,
}

fn median(mut xs: Vec<Duration>) -> Duration {
    assert!(!xs.is_empty(), "median of nothing");
    xs.sort();
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2 }
}

fn median_cost(costs: &[Cost]) -> Cost {
    Cost {
        wall: median(costs.iter().map(|c| c.wall).collect()),
        cpu: median(costs.iter().map(|c| c.cpu).collect()),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Flush dirty pages so that one run's writeback does not land in the
/// next one's timing (the page cache is kept).
fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

// ---------------------------------------------------------------- the tree

/// A small deterministic generator (xorshift64*), so that runs are alike.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

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

/// A text tree of `files` files spread over `dirs` directories.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    files: Vec<String>,
    bytes: u64,
}

fn rel_path(i: usize, dirs: usize) -> String {
    format!("d{:04}/f{:06}.txt", i % dirs, i)
}

fn build_tree(files: usize, dirs: usize, seed: u64) -> Tree {
    let dir = tempfile::Builder::new().prefix("monitord-bench-tree-").tempdir_in("/tmp").expect("temp tree");
    let root = dir.path().to_path_buf();
    for d in 0..dirs {
        fs::create_dir(root.join(format!("d{d:04}"))).expect("mkdir");
    }
    let mut rng = Rng(seed | 1);
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
        let rel = rel_path(i, dirs);
        fs::write(root.join(&rel), &content).expect("write tree file");
        bytes += content.len() as u64;
        names.push(rel);
    }
    Tree { _dir: dir, root, files: names, bytes }
}

// ---------------------------------------------------------------- the target

/// The followed process: a shell whose cwd is the tree and which makes the
/// writes the bench asks for. Killed and reaped on drop.
struct Writer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
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
        let mut writer = Writer { child, stdin, stdout, line: String::new() };
        writer.run("");
        writer
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Run `script` in the shell and wait until it has finished.
    fn run(&mut self, script: &str) {
        writeln!(self.stdin, "{script}\necho done").expect("write to sh");
        self.stdin.flush().expect("flush sh stdin");
        self.line.clear();
        self.stdout.read_line(&mut self.line).expect("read from sh");
        assert_eq!(self.line.trim_end(), "done", "sh did not acknowledge the script");
    }

    /// Append one line to each of `paths`.
    fn append(&mut self, paths: &[&str], tag: usize) {
        let mut script = String::new();
        for path in paths {
            let _ = writeln!(script, "printf 'appended line {tag}\\n' >> {path}");
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

// ---------------------------------------------------------------- the sampler

/// A store directory under /tmp, removed on drop.
fn new_store() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("monitord-bench-store-").tempdir_in("/tmp").expect("temp store")
}

/// Start a sampler on `writer`'s cwd with a fresh ring in `store_dir`;
/// returns it and the time `Sampler::start` took (the baseline).
fn start_sampler(writer: &Writer, store_dir: &Path) -> (Sampler, Cost) {
    let target = Target::open(writer.pid()).expect("open target");
    let root = target.open_cwd().expect("open target cwd");
    let cwd = target.cwd_path().expect("target cwd path");
    store::create(store_dir).expect("create store");
    let ring = Ring::open_or_create(&store_dir.join(store::RING_FILE), RING_SIZE).expect("create ring");
    let settings = Settings {
        store: store_dir.to_path_buf(),
        max_file_size: 8 << 20,
        excludes: Excludes::new(&[".git"]).expect("excludes"),
        diff_deadline: Duration::from_millis(100),
        queue_capacity: 65_536,
    };
    let (cpu0, t0) = (self_cpu(), Instant::now());
    let (sampler, baseline) = Sampler::start(settings, ring, target, root, cwd).expect("start sampler");
    let cost = Cost { wall: t0.elapsed(), cpu: self_cpu() - cpu0 };
    assert!(matches!(baseline.last().map(|c| &c.record.body), Some(Body::Baseline(_))), "no baseline record");
    (sampler, cost)
}

/// One monitored tree: the target, the store and the sampler.
struct Session {
    name: String,
    tree: Tree,
    writer: Writer,
    sampler: Sampler,
    _store: tempfile::TempDir,
    rng: Rng,
    tag: usize,
}

/// Per-sample figures of one iteration.
#[derive(Clone, Copy, Debug)]
struct SampleRun {
    /// Process CPU from just before the writes to the end of `sample()`
    /// (includes the event thread handling the writes' events).
    cpu_total: Duration,
    /// Process CPU during the `sample()` call alone.
    cpu_call: Duration,
    /// Wall time of the `sample()` call.
    wall_call: Duration,
    files_read: u64,
    bytes_read: u64,
}

impl Session {
    fn new(name: &str, tree: Tree, writer: Writer, sampler: Sampler, store: tempfile::TempDir) -> Session {
        Session { name: name.into(), tree, writer, sampler, _store: store, rng: Rng(0x5eed_0001), tag: 0 }
    }

    fn pick(&mut self) -> Vec<String> {
        let mut picked: Vec<usize> = Vec::with_capacity(K);
        while picked.len() < K {
            let i = self.rng.below(self.tree.files.len());
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        picked.into_iter().map(|i| self.tree.files[i].clone()).collect()
    }

    /// Append a line to `K` random files, then take one sample.
    fn change_and_sample(&mut self) -> (SampleRun, Vec<Committed>) {
        let paths = self.pick();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        self.tag += 1;
        let cpu0 = self_cpu();
        self.writer.append(&refs, self.tag);
        let (cpu1, t1) = (self_cpu(), Instant::now());
        let committed = self.sampler.sample().expect("sample");
        let (wall2, cpu2) = (t1.elapsed(), self_cpu());
        let counters = self.sampler.counters();
        let run = SampleRun {
            cpu_total: cpu2 - cpu0,
            cpu_call: cpu2 - cpu1,
            wall_call: wall2,
            files_read: counters.files_read,
            bytes_read: counters.bytes_read,
        };
        (run, committed)
    }

    /// The correctness check done once before timing.
    fn check(&mut self) {
        // Let anything left from the baseline settle into one sample first.
        self.sampler.sample().expect("settling sample");
        let (run, committed) = self.change_and_sample();
        let modified: usize = committed
            .iter()
            .map(|c| match &c.record.body {
                Body::Sample(s) => s.files.iter().filter(|f| f.change == Change::Modified).count(),
                Body::Rescan { reason, .. } => panic!("{}: unexpected rescan: {reason}", self.name),
                _ => 0,
            })
            .sum();
        let files: usize = committed
            .iter()
            .map(|c| match &c.record.body {
                Body::Sample(s) => s.files.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(modified, K, "{}: the sample should record {K} modified files", self.name);
        assert_eq!(files, K, "{}: the sample should record nothing but the {K} files", self.name);
        assert_eq!(run.files_read, K as u64, "{}: the sample should read exactly {K} files", self.name);
    }
}

// ---------------------------------------------------------------- the polling walk

/// What `find TREE -newer REF` does: walk every directory, lstat every
/// entry, compare its mtime with the reference. Returns the number of
/// newer files.
fn walk_newer(root: &Path, reference: SystemTime) -> usize {
    let mut newer = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("dir entry");
            // DirEntry::metadata does not follow symlinks (an lstat).
            let meta = entry.metadata().expect("lstat");
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.modified().expect("mtime") > reference {
                newer += 1;
            }
        }
    }
    newer
}

fn timed_child(cmd: &mut Command) -> Cost {
    let (c0, t0) = (children_cpu(), Instant::now());
    let status = cmd.stdout(Stdio::null()).status().expect("run child");
    let cost = Cost { wall: t0.elapsed(), cpu: children_cpu() - c0 };
    assert!(status.success(), "{cmd:?} failed: {status}");
    cost
}

fn tar_cost(tree: &Path) -> Cost {
    let script = format!("tar cf - -C '{}' . | cat > /dev/null", tree.display());
    timed_child(Command::new("sh").arg("-c").arg(script))
}

// ---------------------------------------------------------------- main

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let cfg = Config::from_env();
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "monitord sample bench{}: building trees of {} and {} files under /tmp ...",
        if cfg.quick { " (quick)" } else { "" },
        cfg.big_files,
        cfg.small_files
    );
    let big_tree = build_tree(cfg.big_files, cfg.big_dirs, 0x0b16);
    let small_tree = build_tree(cfg.small_files, cfg.small_dirs, 0x5a11);
    sync_disks();
    let reference_file = big_tree
        .root
        .parent()
        .expect("tree parent")
        .join(format!("{}.newer-ref", big_tree.root.file_name().expect("tree name").to_string_lossy()));
    fs::write(&reference_file, b"").expect("reference file");
    let reference_time = fs::metadata(&reference_file).and_then(|m| m.modified()).expect("reference mtime");

    // 3. Baseline vs tar (first, on a cold-ish sampler; tar warms the cache).
    eprintln!("baseline of {} files vs tar, {} repetitions ...", cfg.big_files, cfg.baseline_reps);
    let big_writer = Writer::spawn(&big_tree.root);
    tar_cost(&big_tree.root);
    let mut tar_runs = Vec::new();
    let mut baseline_runs = Vec::new();
    let mut kept = None;
    for rep in 0..cfg.baseline_reps {
        sync_disks();
        tar_runs.push(tar_cost(&big_tree.root));
        let store_dir = new_store();
        sync_disks();
        let (sampler, cost) = start_sampler(&big_writer, store_dir.path());
        baseline_runs.push(cost);
        if rep + 1 == cfg.baseline_reps {
            kept = Some((sampler, store_dir));
        } else {
            drop(sampler);
            drop(store_dir);
        }
    }
    let (big_sampler, big_store) = kept.expect("at least one baseline");
    let tar = median_cost(&tar_runs);
    let baseline = median_cost(&baseline_runs);

    // 1. Per-sample cost, interleaving the two sizes so drift hits both.
    let small_writer = Writer::spawn(&small_tree.root);
    let small_store = new_store();
    let (small_sampler, _) = start_sampler(&small_writer, small_store.path());
    let big_name = format!("N = {}", cfg.big_files);
    let small_name = format!("N = {}", cfg.small_files);
    let mut big = Session::new(&big_name, big_tree, big_writer, big_sampler, big_store);
    let mut small = Session::new(&small_name, small_tree, small_writer, small_sampler, small_store);
    eprintln!("per-sample cost, k = {K}, {} samples per size ...", cfg.sample_reps);
    big.check();
    small.check();
    for _ in 0..5 {
        big.change_and_sample();
        small.change_and_sample();
    }
    let (mut big_runs, mut small_runs) = (Vec::new(), Vec::new());
    for _ in 0..cfg.sample_reps {
        big_runs.push(big.change_and_sample().0);
        small_runs.push(small.change_and_sample().0);
    }
    for (name, runs) in [(&big.name, &big_runs), (&small.name, &small_runs)] {
        for run in runs {
            assert_eq!(run.files_read, K as u64, "{name}: a timed sample read {} files", run.files_read);
        }
    }

    // 2. The polling walk over the same big tree.
    eprintln!("find -newer walk, {} repetitions ...", cfg.walk_reps);
    let mut walk_runs = Vec::new();
    let mut find_runs = Vec::new();
    let mut newer = 0;
    for _ in 0..cfg.walk_reps {
        let (c0, t0) = (self_cpu(), Instant::now());
        newer = walk_newer(&big.tree.root, reference_time);
        walk_runs.push(Cost { wall: t0.elapsed(), cpu: self_cpu() - c0 });
        find_runs
            .push(timed_child(Command::new("find").arg(&big.tree.root).arg("-newer").arg(&reference_file)));
    }
    let walk = median_cost(&walk_runs);
    let find = median_cost(&find_runs);

    // 4. Idle: a sample every 100 ms with nothing changing.
    eprintln!("idle, {} s at one sample per 100 ms ...", cfg.idle.as_secs());
    let period = Duration::from_millis(100);
    let (c0, t0) = (self_cpu(), Instant::now());
    let mut idle_samples = 0;
    let mut idle_walls = Vec::new();
    while t0.elapsed() < cfg.idle {
        let t = Instant::now();
        big.sampler.sample().expect("idle sample");
        idle_walls.push(t.elapsed());
        assert_eq!(big.sampler.counters().files_read, 0, "an idle sample read files");
        idle_samples += 1;
        let next = t0 + period * idle_samples;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let idle_wall = t0.elapsed();
    let idle_cpu = self_cpu() - c0;
    let idle_pct = 100.0 * idle_cpu.as_secs_f64() / idle_wall.as_secs_f64();

    // ------------------------------------------------------------ report
    let pick = |runs: &[SampleRun], f: fn(&SampleRun) -> Duration| median(runs.iter().map(f).collect());
    let (bt, bc, bw) =
        (pick(&big_runs, |r| r.cpu_total), pick(&big_runs, |r| r.cpu_call), pick(&big_runs, |r| r.wall_call));
    let (st, sc, sw) = (
        pick(&small_runs, |r| r.cpu_total),
        pick(&small_runs, |r| r.cpu_call),
        pick(&small_runs, |r| r.wall_call),
    );
    let big_bytes = median(big_runs.iter().map(|r| Duration::from_nanos(r.bytes_read)).collect()).as_nanos();
    let n_big = big.name.clone();
    let n_small = small.name.clone();

    println!();
    println!("monitord sample bench (inotify){}", if cfg.quick { ", QUICK run" } else { "" });
    println!(
        "trees: {} files in {} dirs ({:.0} MB); {} files in {} dirs ({:.1} MB); {cores} cores",
        cfg.big_files,
        cfg.big_dirs,
        big.tree.bytes as f64 / 1e6,
        cfg.small_files,
        cfg.small_dirs,
        small.tree.bytes as f64 / 1e6
    );
    println!("all figures are medians; CPU is process CPU time (all threads) from getrusage");
    println!();
    println!("1. one sample, k = {K} files changed ({} samples per size, interleaved)", cfg.sample_reps);
    println!("   {:<14} {:>16} {:>16} {:>14}", "", "CPU (+events)", "CPU in sample()", "wall sample()");
    println!("   {:<14} {:>16} {:>16} {:>14}", n_big, ms(bt), ms(bc), ms(bw));
    println!("   {:<14} {:>16} {:>16} {:>14}", n_small, ms(st), ms(sc), ms(sw));
    println!(
        "   {:<14} {:>16.2} {:>16.2} {:>14.2}",
        "ratio big/small",
        ratio(bt, st),
        ratio(bc, sc),
        ratio(bw, sw)
    );
    println!(
        "   files read per sample: {K} (checked), bytes read: {big_bytes} at {n_big}; \
         CPU (+events) counts from before the writes, so includes the event thread"
    );
    println!("   goal: <= 1 ms CPU at {n_big}: {} ({})", verdict(bt <= Duration::from_millis(1)), ms(bt));
    println!("   goal: ratio big/small <= 1.5: {} ({:.2})", verdict(ratio(bt, st) <= 1.5), ratio(bt, st));
    println!();
    println!("2. polling walk of the {n_big} tree ({} repetitions; {newer} files newer)", cfg.walk_reps);
    println!("   {:<34} {:>12} {:>12}", "", "CPU", "wall");
    println!("   {:<34} {:>12} {:>12}", "in-process walk + lstat + mtime", ms(walk.cpu), ms(walk.wall));
    println!("   {:<34} {:>12} {:>12}", "find TREE -newer REF (child)", ms(find.cpu), ms(find.wall));
    println!("   {:<34} {:>12} {:>12}", "one sample, k = 10 (from 1.)", ms(bt), ms(bw));
    println!(
        "   sample is cheaper than the walk by {:.0}x CPU ({:.0}x vs find), {:.0}x wall ({:.0}x vs find)",
        ratio(walk.cpu, bt),
        ratio(find.cpu, bt),
        ratio(walk.wall, bw),
        ratio(find.wall, bw)
    );
    println!("   goal: > 100x cheaper (CPU, in-process walk): {}", verdict(ratio(walk.cpu, bt) > 100.0));
    println!();
    println!("3. baseline of the {n_big} tree ({} repetitions, fresh store each)", cfg.baseline_reps);
    println!("   {:<34} {:>12} {:>12}", "", "CPU", "wall");
    println!(
        "   {:<34} {:>12} {:>12}",
        "Sampler::start (walk, read, mirror)",
        secs(baseline.cpu),
        secs(baseline.wall)
    );
    println!("   {:<34} {:>12} {:>12}", "tar cf - . | cat > /dev/null", secs(tar.cpu), secs(tar.wall));
    println!("   ratio baseline/tar (wall): {:.2}", ratio(baseline.wall, tar.wall));
    println!("   goal: <= 2x tar: {}", verdict(ratio(baseline.wall, tar.wall) <= 2.0));
    println!();
    println!("4. idle at {n_big}: one sample per 100 ms, nothing changing");
    println!(
        "   {idle_samples} samples in {}: CPU {} = {idle_pct:.3} % of one core; one idle sample: {} wall",
        secs(idle_wall),
        ms(idle_cpu),
        ms(median(idle_walls))
    );
    println!("   goal: < 0.5 %: {}", verdict(idle_pct < 0.5));
    println!();
    println!(
        "note: the machine is shared ({cores} cores, other builds may run); expect noise of tens of \
         percent on single figures. Total bench time {}.",
        secs(started.elapsed())
    );
    let _ = fs::remove_file(&reference_file);
}
