//! Speed of the sampler: what one sample costs when a few files change in a
//! large tree, against the walk a polling tool (`find -newer`) would do,
//! what the baseline and an idle monitor cost, and how long
//! `monitord dump --json` takes over a full 64 MiB ring (the release binary
//! cargo builds beside the bench).
//!
//! Run with `cargo bench --bench sample` (as root or any user who can read
//! `/proc/<child>/cwd`). `MONITORD_BENCH_QUICK=1` uses a 10,000-file tree
//! and fewer repetitions, for a smoke run; `MONITORD_BENCH_ONLY=dump` runs
//! the `dump --json` part alone.
//!
//! The target is a real child process (`sh`) whose working directory is
//! the tree; the bench sends it the writes to make (`printf .. >> file`),
//! so the changes come from another process, as they do in use. The trees
//! and the stores live in temporary directories under `/tmp`. A control run
//! then repeats the baseline and the samples with the stores on tmpfs
//! (`/dev/shm`), to tell the sampler's own work from the cost of the
//! store's writes (ring, mirror pack and log) on the tree's filesystem.
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

use monitord::clock;
use monitord::diff::Patch;
use monitord::exclude::Matcher;
use monitord::journal::Ring;
use monitord::journal::record::{Body, Change, FORMAT_VERSION, FileChange, Node, Record, Sample};
use monitord::proc::Target;
use monitord::sampler::{Committed, Sampler, Settings};
use monitord::store;

/// Changed files per sample.
const K: usize = 10;
/// Lines per generated file (about 70 bytes each: ~1.4 KB per file).
const LINES_PER_FILE: usize = 20;
/// The CLI's default `--ring-size`. `Sampler::start` reads the whole ring
/// back (crash repair), so a bigger ring would inflate the baseline.
const RING_SIZE: u64 = 64 << 20;

struct Config {
    quick: bool,
    big_files: usize,
    big_dirs: usize,
    small_files: usize,
    small_dirs: usize,
    sample_reps: usize,
    walk_reps: usize,
    baseline_reps: usize,
    dump_reps: usize,
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
                dump_reps: 3,
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
                dump_reps: 5,
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

/// The type of the filesystem holding `path`, for the report.
fn fs_type(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return "?".into() };
    // SAFETY: `statfs` is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `st` a writable
    // `statfs`, both alive for the call.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut st) } != 0 {
        return "?".into();
    }
    match st.f_type as u64 {
        0xef53 => "ext2/3/4".into(),
        0x0102_1994 => "tmpfs".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683e => "btrfs".into(),
        0x794c_7630 => "overlayfs".into(),
        other => format!("type {other:#x}"),
    }
}

/// Flush dirty pages so that one run's writeback does not land in the
/// next one's timing (the page cache is kept).
fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

// ---------------------------------------------------------------- the tree

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

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
    dir: tempfile::TempDir,
    root: PathBuf,
    files: Vec<String>,
    bytes: u64,
}

fn rel_path(i: usize, dirs: usize) -> String {
    format!("d{:04}/f{:06}.txt", i % dirs, i)
}

/// The text of file `i`: `LINES_PER_FILE` lines of words.
fn file_content(i: usize, rng: &mut Rng, content: &mut String) {
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
        file_content(i, &mut rng, &mut content);
        let rel = rel_path(i, dirs);
        fs::write(root.join(&rel), &content).expect("write tree file");
        bytes += content.len() as u64;
        names.push(rel);
    }
    Tree { dir, root, files: names, bytes }
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

/// A store directory under `parent`, removed on drop.
fn new_store(parent: &Path) -> tempfile::TempDir {
    tempfile::Builder::new().prefix("monitord-bench-store-").tempdir_in(parent).expect("temp store")
}

/// Start a sampler on `writer`'s cwd with a fresh ring in `store_dir`;
/// returns it and the time `Sampler::start` took (the baseline).
fn start_sampler(writer: &Writer, store_dir: &Path) -> (Sampler, Cost) {
    let target = Target::open(writer.pid()).expect("open target");
    store::create(store_dir).expect("create store");
    let ring = Ring::open_or_create(&store_dir.join(store::RING_FILE), RING_SIZE).expect("create ring");
    let settings = Settings {
        store: store_dir.to_path_buf(),
        max_file_size: 8 << 20,
        matcher: Matcher::new(&[".git"], None, false).expect("excludes"),
        diff_deadline: Duration::from_millis(100),
        queue_capacity: 65_536,
        backend: monitord::event::Backend::Inotify,
        only_target: false,
        // The file path alone: the maps and stats probes have their own bench.
        record: monitord::proc::probe::Recording { files: true, maps: false, stats: false },
    };
    let (cpu0, t0) = (self_cpu(), Instant::now());
    let (sampler, baseline) = Sampler::start(settings, ring, target).expect("start sampler");
    let cost = Cost { wall: t0.elapsed(), cpu: self_cpu() - cpu0 };
    assert!(matches!(baseline.last().map(|c| &c.record.body), Some(Body::Baseline(_))), "no baseline record");
    (sampler, cost)
}

/// One monitored tree: the target, the sampler and its stores. Fields
/// drop in order: the sampler stops before its store and tree go.
struct Session {
    sampler: Option<Sampler>,
    writer: Writer,
    /// Every store used on this tree, all kept until the end: on ext4
    /// without a journal, creating a file skips inodes freed in the last
    /// minutes one by one, so deleting a 100,000-file mirror mid-run would
    /// slow every later mirror write.
    stores: Vec<tempfile::TempDir>,
    tree: Tree,
    name: String,
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
    /// A session on `tree`, with its writer started and no sampler yet.
    fn new(name: &str, tree: Tree) -> Session {
        let writer = Writer::spawn(&tree.root);
        Session {
            sampler: None,
            writer,
            stores: Vec::new(),
            tree,
            name: name.into(),
            rng: Rng(0x5eed_0001),
            tag: 0,
        }
    }

    /// Stop the current sampler, if any, and start one with a fresh store
    /// under `store_parent`; returns the baseline's cost.
    fn start(&mut self, store_parent: &Path) -> Cost {
        self.sampler = None;
        let store = new_store(store_parent);
        sync_disks();
        let (sampler, cost) = start_sampler(&self.writer, store.path());
        self.sampler = Some(sampler);
        self.stores.push(store);
        cost
    }

    fn sampler(&mut self) -> &mut Sampler {
        self.sampler.as_mut().expect("a started sampler")
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
        let committed = self.sampler().sample().expect("sample");
        let (wall2, cpu2) = (t1.elapsed(), self_cpu());
        let counters = self.sampler().counters();
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
        self.sampler().sample().expect("settling sample");
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

/// `tar cf - . | cat > /dev/null` in the tree (the `cat` keeps GNU tar
/// from noticing /dev/null and skipping the reads).
fn tar_cost(tree: &Path) -> Cost {
    timed_child(Command::new("sh").arg("-c").arg("tar cf - . | cat > /dev/null").current_dir(tree))
}

/// Check both sessions, warm them up, then take `reps` samples of each,
/// interleaved so that drift on a shared machine hits both alike.
fn interleaved(a: &mut Session, b: &mut Session, reps: usize) -> (Vec<SampleRun>, Vec<SampleRun>) {
    a.check();
    b.check();
    for _ in 0..5 {
        a.change_and_sample();
        b.change_and_sample();
    }
    let (mut a_runs, mut b_runs) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        a_runs.push(a.change_and_sample().0);
        b_runs.push(b.change_and_sample().0);
    }
    for (name, runs) in [(&a.name, &a_runs), (&b.name, &b_runs)] {
        for run in runs {
            assert_eq!(run.files_read, K as u64, "{name}: a timed sample read {} files", run.files_read);
        }
    }
    (a_runs, b_runs)
}

/// Medians of one size's samples: CPU (+events), CPU in `sample()`, wall.
fn sample_medians(runs: &[SampleRun]) -> (Duration, Duration, Duration) {
    let pick = |f: fn(&SampleRun) -> Duration| median(runs.iter().map(f).collect());
    (pick(|r| r.cpu_total), pick(|r| r.cpu_call), pick(|r| r.wall_call))
}

fn print_samples(rows: &[(&str, &[SampleRun])]) {
    println!("   {:<22} {:>16} {:>16} {:>14}", "", "CPU (+events)", "CPU in sample()", "wall sample()");
    for (name, runs) in rows {
        let (t, c, w) = sample_medians(runs);
        println!("   {:<22} {:>16} {:>16} {:>14}", name, ms(t), ms(c), ms(w));
    }
}

// ---------------------------------------------------------------- dump

/// Size of the ring `dump --json` reads: the CLI's default, full.
const DUMP_RING_SIZE: u64 = 64 << 20;

/// Fill a `DUMP_RING_SIZE` ring at `path` past one wrap with sample records
/// such as the sampler writes: `K` modified files each, one line appended
/// or rewritten per file, with its context. Returns the live records.
fn fill_dump_ring(path: &Path) -> u64 {
    let mut rng = Rng(0xd0d0);
    let deadline = Duration::from_millis(100);
    let mut pool = Vec::new();
    let mut old = String::new();
    for i in 0..256 {
        file_content(i, &mut rng, &mut old);
        let new = if i % 2 == 0 {
            format!("{old}appended line {i}\n")
        } else {
            let edited = format!("{i:06}:{:02} edited {}", LINES_PER_FILE / 2, WORDS[rng.below(WORDS.len())]);
            let mut lines: Vec<&str> = old.lines().collect();
            lines[LINES_PER_FILE / 2] = &edited;
            lines.iter().fold(String::new(), |acc, l| acc + l + "\n")
        };
        pool.push(Patch::compute(old.as_bytes(), new.as_bytes(), deadline));
    }
    let mut ring = Ring::open_or_create(path, DUMP_RING_SIZE).expect("create dump ring");
    let mut time_us = clock::now_us();
    while ring.info().dropped_records == 0 {
        let files = (0..K)
            .map(|_| {
                FileChange::new(
                    rel_path(rng.below(100_000), 1_000).into_bytes(),
                    Change::Modified,
                    None,
                    Node::File,
                    pool[rng.below(pool.len())].clone(),
                )
            })
            .collect();
        let body = Body::Sample(Sample { files, ..Sample::default() });
        let record = Record { version: FORMAT_VERSION, epoch: 1, pid: 4242, body };
        time_us += 100_000;
        ring.append(record.kind() as u16, time_us, &record.encode()).expect("append to dump ring");
    }
    ring.flush().expect("flush dump ring");
    let info = ring.info();
    info.next_seq - info.oldest_seq
}

/// What `monitord dump --json` of a full ring costs.
struct DumpCost {
    records: u64,
    json_bytes: usize,
    cost: Cost,
}

impl DumpCost {
    /// Fill a ring in `scratch` and time the release binary dumping it.
    fn measure(cfg: &Config, scratch: &Path) -> DumpCost {
        eprintln!("dump --json of a full {} MiB ring, {} runs ...", DUMP_RING_SIZE >> 20, cfg.dump_reps);
        // MONITORD_BENCH_DUMP_RING=PATH keeps the ring there, to profile.
        let dump_ring = std::env::var_os("MONITORD_BENCH_DUMP_RING")
            .map_or_else(|| scratch.join("ring.bin"), std::path::PathBuf::from);
        let records = fill_dump_ring(&dump_ring);
        sync_disks();
        let monitord = env!("CARGO_BIN_EXE_monitord");
        let dump_cmd = || {
            let mut cmd = Command::new(monitord);
            cmd.arg("dump").arg("--json").arg(&dump_ring);
            cmd
        };
        let json_bytes = dump_cmd().stdout(Stdio::piped()).output().expect("run monitord dump").stdout.len();
        let cost = median_cost(&(0..cfg.dump_reps).map(|_| timed_child(&mut dump_cmd())).collect::<Vec<_>>());
        DumpCost { records, json_bytes, cost }
    }

    fn report(&self, cfg: &Config) {
        println!(
            "5. monitord dump --json of a full {} MiB ring ({} sample records, {:.0} MB of JSON; {} runs)",
            DUMP_RING_SIZE >> 20,
            self.records,
            self.json_bytes as f64 / 1e6,
            cfg.dump_reps
        );
        println!("   {:<34} {:>12} {:>12}", "", "CPU", "wall");
        println!(
            "   {:<34} {:>12} {:>12}",
            "monitord dump --json RING > /dev/null",
            secs(self.cost.cpu),
            secs(self.cost.wall)
        );
        println!(
            "   per record: {:.1} us CPU; goal: < 2 s: {} ({})",
            self.cost.cpu.as_secs_f64() * 1e6 / self.records as f64,
            verdict(self.cost.wall < Duration::from_secs(2)),
            secs(self.cost.wall)
        );
    }
}

// ---------------------------------------------------------------- main

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let cfg = Config::from_env();
    let started = Instant::now();
    if std::env::var("MONITORD_BENCH_ONLY").as_deref() == Ok("dump") {
        let scratch =
            tempfile::Builder::new().prefix("monitord-bench-scratch-").tempdir_in("/tmp").expect("scratch");
        DumpCost::measure(&cfg, scratch.path()).report(&cfg);
        return;
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "monitord sample bench{}: building trees of {} and {} files under /tmp ...",
        if cfg.quick { " (quick)" } else { "" },
        cfg.big_files,
        cfg.small_files
    );
    let tmp = Path::new("/tmp");
    // Scratch space (the `find -newer` reference, the dump ring), removed
    // on drop like the trees and stores, also when an assertion fails.
    let scratch =
        tempfile::Builder::new().prefix("monitord-bench-scratch-").tempdir_in(tmp).expect("scratch");
    let big_tree = build_tree(cfg.big_files, cfg.big_dirs, 0x0b16);
    let small_tree = build_tree(cfg.small_files, cfg.small_dirs, 0x5a11);
    sync_disks();
    let reference_file = scratch.path().join("newer-ref");
    fs::write(&reference_file, b"").expect("reference file");
    let reference_time = fs::metadata(&reference_file).and_then(|m| m.modified()).expect("reference mtime");
    let mut big = Session::new(&format!("N = {}", cfg.big_files), big_tree);
    let mut small = Session::new(&format!("N = {}", cfg.small_files), small_tree);

    // 3. Baseline vs tar (first, on a cold-ish sampler; tar warms the cache).
    eprintln!("baseline of {} files vs tar, {} repetitions ...", cfg.big_files, cfg.baseline_reps);
    tar_cost(&big.tree.root);
    let mut tar_runs = Vec::new();
    let mut baseline_runs = Vec::new();
    for _ in 0..cfg.baseline_reps {
        sync_disks();
        tar_runs.push(tar_cost(&big.tree.root));
        baseline_runs.push(big.start(tmp));
    }
    let tar = median_cost(&tar_runs);
    let baseline = median_cost(&baseline_runs);

    // 1. Per-sample cost, stores in /tmp beside the trees.
    small.start(tmp);
    eprintln!("per-sample cost, k = {K}, {} samples per size ...", cfg.sample_reps);
    let (big_runs, small_runs) = interleaved(&mut big, &mut small, cfg.sample_reps);
    let big_bytes = median(big_runs.iter().map(|r| Duration::from_nanos(r.bytes_read)).collect()).as_nanos();

    // 4. Idle: a sample every 100 ms with nothing changing.
    eprintln!("idle, {} s at one sample per 100 ms ...", cfg.idle.as_secs());
    let period = Duration::from_millis(100);
    let (c0, t0) = (self_cpu(), Instant::now());
    let mut idle_samples = 0;
    let mut idle_walls = Vec::new();
    while t0.elapsed() < cfg.idle {
        let t = Instant::now();
        big.sampler().sample().expect("idle sample");
        idle_walls.push(t.elapsed());
        assert_eq!(big.sampler().counters().files_read, 0, "an idle sample read files");
        idle_samples += 1;
        let next = t0 + period * idle_samples;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let idle_wall = t0.elapsed();
    let idle_cpu = self_cpu() - c0;
    let idle_pct = 100.0 * idle_cpu.as_secs_f64() / idle_wall.as_secs_f64();

    // 2. The polling walk over the same big tree.
    eprintln!("find -newer walk, {} repetitions ...", cfg.walk_reps);
    let mut walk_runs = Vec::new();
    let mut find_runs = Vec::new();
    let mut newer = 0;
    for _ in 0..cfg.walk_reps {
        let (c0, t0) = (self_cpu(), Instant::now());
        newer = walk_newer(&big.tree.root, reference_time);
        walk_runs.push(Cost { wall: t0.elapsed(), cpu: self_cpu() - c0 });
        find_runs.push(timed_child(
            Command::new("find").arg(".").arg("-newer").arg(&reference_file).current_dir(&big.tree.root),
        ));
    }
    let walk = median_cost(&walk_runs);
    let find = median_cost(&find_runs);

    // Control: the same baseline and samples with the stores on tmpfs,
    // which separates the sampler's own work from the cost of creating
    // files on the tree's filesystem.
    let shm = Path::new("/dev/shm");
    let control = shm.is_dir().then(|| {
        eprintln!("control: stores on tmpfs ({}) ...", shm.display());
        let runs: Vec<Cost> = (0..cfg.baseline_reps).map(|_| big.start(shm)).collect();
        small.start(shm);
        let (b, s) = interleaved(&mut big, &mut small, cfg.sample_reps);
        (median_cost(&runs), b, s)
    });
    drop(big.sampler.take());
    drop(small.sampler.take());

    // 5. `monitord dump --json` of a full default-size ring.
    let dump = DumpCost::measure(&cfg, scratch.path());

    // ------------------------------------------------------------ report
    let (bt, bc, bw) = sample_medians(&big_runs);
    let (st, sc, sw) = sample_medians(&small_runs);
    let (n_big, n_small) = (big.name.as_str(), small.name.as_str());

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
    println!("trees and stores in /tmp ({}); the control's stores in /dev/shm", fs_type(tmp));
    println!("all figures are medians; CPU is process CPU time (all threads) from getrusage");
    println!();
    println!(
        "1. one sample, k = {K} files changed ({} samples per size, interleaved; stores in /tmp)",
        cfg.sample_reps
    );
    print_samples(&[(n_big, &big_runs), (n_small, &small_runs)]);
    println!(
        "   {:<22} {:>16.2} {:>16.2} {:>14.2}",
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
    println!("   {:<34} {:>12} {:>12}", "find . -newer REF (child)", ms(find.cpu), ms(find.wall));
    println!("   {:<34} {:>12} {:>12}", format!("one sample, k = {K} (from 1.)"), ms(bt), ms(bw));
    println!(
        "   one sample costs {:.3}x the CPU of find -newer ({:.3}x of the in-process walk); \
         find / sample = {:.0}x CPU, {:.0}x wall",
        ratio(bt, find.cpu),
        ratio(bt, walk.cpu),
        ratio(find.cpu, bt),
        ratio(find.wall, bw)
    );
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
    dump.report(&cfg);
    if let Some((base, b_runs, s_runs)) = &control {
        let (ct, ..) = sample_medians(b_runs);
        let (cs, ..) = sample_medians(s_runs);
        println!();
        println!(
            "control: the same with the stores on {} ({}), not a goal: what the sampler costs when \
             the store's writes are cheap",
            fs_type(shm),
            shm.display()
        );
        print_samples(&[(n_big, b_runs), (n_small, s_runs)]);
        println!("   ratio big/small (CPU +events): {:.2}", ratio(ct, cs));
        println!(
            "   baseline: CPU {}, wall {} = {:.2}x tar",
            secs(base.cpu),
            secs(base.wall),
            ratio(base.wall, tar.wall)
        );
    }
    println!();
    println!(
        "note: the machine is shared ({cores} cores, other builds may run); expect noise of tens of \
         percent on single figures. Total bench time {}.",
        secs(started.elapsed())
    );
    cleanup(vec![big, small], scratch);
}

/// Remove the trees and stores, a few directories at a time: on a
/// filesystem mounted with `discard` every unlink waits for the device, and
/// half a million of them one after the other take minutes.
fn cleanup(sessions: Vec<Session>, scratch: tempfile::TempDir) {
    let t0 = Instant::now();
    let mut dirs = vec![scratch];
    for session in sessions {
        let Session { sampler, writer, stores, tree, .. } = session;
        drop(sampler);
        drop(writer);
        dirs.extend(stores);
        dirs.push(tree.dir);
    }
    eprintln!("removing {} temporary directories ...", dirs.len());
    std::thread::scope(|s| {
        for dir in dirs {
            s.spawn(move || {
                let path = dir.path().to_path_buf();
                if let Err(e) = dir.close() {
                    eprintln!("cannot remove {}: {e}", path.display());
                }
            });
        }
    });
    eprintln!("removed in {}", secs(t0.elapsed()));
}
