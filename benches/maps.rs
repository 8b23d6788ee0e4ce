//! Cost of the maps probe on a real process (a Python child that makes its
//! mappings on command, alternating protections so none merge):
//!
//! - (a) a plain read of `/proc/<pid>/maps` with 60,000 mappings: the time
//!   the kernel needs to produce the text, the baseline of the ratios;
//! - (b) `MapsProbe::sample` on that unchanged map: read + one comparison;
//!   and, in memory, parse + diff of the unchanged text, and zero-copy
//!   parse + line diff of a text with one changed line;
//! - (c) re-parsing the text into owned strings and diffing those sets,
//!   the straightforward way;
//! - the probe at T = 10 ms on a process with 1,000 mappings, as a share of
//!   one core.
//!
//! Every case is checked once before it is timed, and a summary with
//! medians and ratios, measured in the same run, is printed at the end.
//! Sample counts are small: the machines have 2 shared cores.
//!
//! Medians on the 2-core development VM (kernel 6.18, load average 6):
//! (a) 78.1 ms; (b) probe 80.2 ms = 1.03x (a), of which the comparison is
//! 0.16 ms (read + compare = 1.002x (a)); one changed line 0.31 ms on top
//! of the read; (c) 347 ms = 2133x the in-memory parse + diff and 4.3x the
//! whole probe. With 1,000 mappings the probe takes 0.55 ms of CPU per
//! sample, 5.5 % of a core at T = 10 ms: the kernel's own text takes
//! 0.52 ms of that, the comparison 1.7 us. The 2 % goal needs a kernel
//! that produces the text faster than this VM's ~0.5 us per mapping
//! (PROCMAP_QUERY, one ioctl per mapping, measured slower still).

use std::collections::HashSet;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use monitord::maps;
use monitord::proc::Target;
use monitord::proc::maps::MapsProbe;
use monitord::proc::probe::{Probe, Recording};

const HELPER: &str = r#"
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
keep = []
sys.stdout.write("ready\n")
sys.stdout.flush()
for line in sys.stdin:
    pages = int(line)
    m = mmap.mmap(-1, pages * 4096)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    for i in range(0, pages, 2):
        libc.mprotect(base + i * 4096, 4096, mmap.PROT_READ)
    keep.append(m)
    sys.stdout.write("ok\n")
    sys.stdout.flush()
"#;

/// A Python process holding about `mappings` mappings; killed on drop.
struct Mapper {
    child: Child,
    _stdin: ChildStdin,
}

impl Mapper {
    fn start(mappings: usize) -> Mapper {
        let mut child = Command::new("python3")
            .args(["-c", HELPER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut reply = String::new();
        stdout.read_line(&mut reply).expect("ready");
        assert_eq!(reply, "ready\n", "the helper started");
        let pid = child.id();
        let existing = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps").lines().count();
        writeln!(stdin, "{}", mappings.saturating_sub(existing)).expect("write");
        stdin.flush().expect("flush");
        reply.clear();
        stdout.read_line(&mut reply).expect("reply");
        assert_eq!(reply, "ok\n", "the helper made its mappings");
        Mapper { child, _stdin: stdin }
    }

    fn target(&self) -> Target {
        Target::open(self.child.id() as i32).expect("open target")
    }
}

impl Drop for Mapper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mapping parsed the straightforward way, every field owned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct OwnedMapping {
    start: u64,
    end: u64,
    perms: String,
    offset: u64,
    dev: String,
    inode: u64,
    path: String,
}

fn parse_owned(text: &[u8]) -> Vec<OwnedMapping> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| {
            let fields: Vec<String> = line.splitn(6, ' ').map(str::to_string).collect();
            let (start, end) = fields.first()?.split_once('-')?;
            Some(OwnedMapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                perms: fields.get(1)?.clone(),
                offset: u64::from_str_radix(fields.get(2)?, 16).ok()?,
                dev: fields.get(3)?.clone(),
                inode: fields.get(4)?.parse().ok()?,
                path: fields.get(5).map(|p| p.trim_start().to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn diff_owned(old: &[OwnedMapping], new: &[OwnedMapping]) -> (usize, usize) {
    let before: HashSet<&OwnedMapping> = old.iter().collect();
    let after: HashSet<&OwnedMapping> = new.iter().collect();
    (after.difference(&before).count(), before.difference(&after).count())
}

fn read_plain(target: &Target, buffer: &mut Vec<u8>) {
    buffer.clear();
    target.read_into("maps", buffer).expect("read maps");
}

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| time(&mut f)).collect();
    times.sort();
    times[runs / 2]
}

fn time(f: &mut impl FnMut()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Medians of `runs` timings of `f` and `g`, taken alternately so drift
/// in machine load hits both alike.
fn medians_interleaved(runs: usize, mut f: impl FnMut(), mut g: impl FnMut()) -> (Duration, Duration) {
    let (mut a, mut b): (Vec<Duration>, Vec<Duration>) =
        (0..runs).map(|_| (time(&mut f), time(&mut g))).unzip();
    a.sort();
    b.sort();
    (a[runs / 2], b[runs / 2])
}

fn large(c: &mut Criterion) {
    let mapper = Mapper::start(60_000);
    let target = mapper.target();
    let mut probe = MapsProbe::new();
    let baseline = probe.baseline(&target).expect("baseline");
    assert!(baseline.len() >= 60_000, "{} mappings", baseline.len());
    assert_eq!(probe.sample(&target).expect("sample"), Default::default(), "an idle map is unchanged");
    let text = probe.current().to_vec();
    let copy = text.clone();
    let mut changed = text.clone();
    let last = changed.len() - 2;
    changed[last] ^= 1;
    let one = maps::diff(&text, &changed);
    assert_eq!((one.added.len(), one.removed.len()), (1, 1), "one changed line");
    let owned = parse_owned(&text);
    assert_eq!(owned.len(), baseline.len(), "the owned parser sees every line");
    assert_eq!(diff_owned(&owned, &parse_owned(&copy)), (0, 0));
    eprintln!("maps: {} mappings, {} bytes of text", baseline.len(), text.len());

    let mut buffer = Vec::with_capacity(text.len() * 2);
    let mut group = c.benchmark_group("maps_60k");
    group.bench_function("a_read", |b| b.iter(|| read_plain(&target, &mut buffer)));
    group.bench_function("b_probe_sample_unchanged", |b| b.iter(|| probe.sample(&target).expect("sample")));
    group.bench_function("b_parse_diff_unchanged_in_memory", |b| {
        b.iter(|| maps::diff(black_box(&text), black_box(&copy)))
    });
    group.bench_function("b_parse_diff_one_changed_in_memory", |b| {
        b.iter(|| maps::diff(black_box(&text), black_box(&changed)))
    });
    group.bench_function("c_owned_reparse_diff_in_memory", |b| {
        b.iter(|| diff_owned(black_box(&owned), &parse_owned(black_box(&copy))))
    });
    group.finish();

    let runs = 21;
    let (read, sample) = medians_interleaved(
        runs,
        || read_plain(&target, &mut buffer),
        || {
            black_box(probe.sample(&target).expect("sample"));
        },
    );
    let unchanged = median(runs, || {
        black_box(maps::diff(&text, &copy));
    });
    let one_changed = median(runs, || {
        black_box(maps::diff(&text, &changed));
    });
    let owned_time = median(runs, || {
        black_box(diff_owned(&owned, &parse_owned(&copy)));
    });
    eprintln!("summary (medians of {runs}), 60,000 mappings:");
    eprintln!("  (a) plain read of maps                 {read:>12.3?}");
    eprintln!(
        "  (b) probe sample, unchanged            {sample:>12.3?}  = {:.3}x (a)",
        sample.as_secs_f64() / read.as_secs_f64()
    );
    eprintln!("      parse+diff unchanged, in memory    {unchanged:>12.3?}");
    eprintln!(
        "      read + parse+diff unchanged        {:>12.3?}  = {:.3}x (a)",
        read + unchanged,
        (read + unchanged).as_secs_f64() / read.as_secs_f64()
    );
    eprintln!(
        "      parse+diff one line changed        {one_changed:>12.3?}  = {:.3}x (a) on top of the read",
        one_changed.as_secs_f64() / read.as_secs_f64()
    );
    eprintln!(
        "  (c) owned re-parse + diff, in memory   {owned_time:>12.3?}  = {:.0}x parse+diff unchanged, {:.1}x probe sample",
        owned_time.as_secs_f64() / unchanged.as_secs_f64(),
        owned_time.as_secs_f64() / sample.as_secs_f64()
    );
}

fn small(c: &mut Criterion) {
    let mapper = Mapper::start(1_000);
    let target = mapper.target();
    let mut probe = MapsProbe::new();
    let baseline = probe.baseline(&target).expect("baseline");
    assert!((1_000..1_100).contains(&baseline.len()), "{} mappings", baseline.len());
    let mut full = Probe::new(Recording::default());
    let _ = full.baseline(Some(&target));
    c.bench_function("maps_1k_probe_sample", |b| b.iter(|| probe.sample(&target).expect("sample")));
    let runs = 101;
    let maps_only = median(runs, || {
        black_box(probe.sample(&target).expect("sample"));
    });
    let with_stats = median(runs, || {
        black_box(full.sample(Some(&target)));
    });
    let text = probe.current().to_vec();
    let copy = text.clone();
    let mut buffer = Vec::with_capacity(text.len() * 2);
    let read = median(runs, || read_plain(&target, &mut buffer));
    let compare = median(runs, || {
        black_box(maps::diff(black_box(&text), black_box(&copy)));
    });
    // CPU time, not wall time: the share of a core does not include time
    // spent waiting for a core on a busy machine.
    let before = thread_cpu_time();
    for _ in 0..runs {
        black_box(probe.sample(&target).expect("sample"));
    }
    let cpu = (thread_cpu_time() - before) / runs as u32;
    let period = Duration::from_millis(10);
    let share = |d: Duration| 100.0 * d.as_secs_f64() / period.as_secs_f64();
    eprintln!("summary (medians of {runs}), {} mappings, T = {period:?}:", baseline.len());
    eprintln!(
        "  maps probe, wall                       {maps_only:>12.3?}  = {:.2} % of one core",
        share(maps_only)
    );
    eprintln!("  maps probe, thread CPU time (mean)     {cpu:>12.3?}  = {:.2} % of one core", share(cpu));
    eprintln!("  plain read of maps, wall               {read:>12.3?}  = {:.2} % of one core", share(read));
    eprintln!(
        "  of which compare (unchanged)           {compare:>12.3?}  = {:.3} % of one core",
        share(compare)
    );
    eprintln!(
        "  maps + stats probe, wall               {with_stats:>12.3?}  = {:.2} % of one core",
        share(with_stats)
    );
}

/// CPU time used by this thread so far (user + system).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime(2) writes one timespec into the valid local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = large, small
}
criterion_main!(benches);
