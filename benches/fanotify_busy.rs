//! The monitor's CPU while a busy neighbour writes outside the watched
//! tree on the same filesystem: fanotify with a filesystem mark (every
//! write on the disk reaches the monitor, until a busy directory gets an
//! ignore mark), fanotify with inode marks on
//! the tree's directories (the default for trees of up to 16,384
//! directories), and inotify beside them.
//!
//! The real binary runs (`monitord -i`, a 1 s period) on a tree of 100
//! directories and 1,000 files; the neighbour is a Python loop in a
//! sibling temp dir appending at a fixed rate, either to 200 files of
//! one directory (with a directory made and removed every 100 writes) or
//! to a new directory every 50 writes. The monitor's user + system
//! time over the window comes from /proc/PID/stat. Median of the runs.
//!
//! Run with `cargo bench --bench fanotify_busy` as root.
//! `MONITORD_BENCH_QUICK=1`: fewer, shorter runs.
//! `MONITORD_BENCH_BEFORE_BIN=PATH`: one more row for another build of
//! monitord (e.g. one from before inode marks).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// One configuration measured.
struct Case {
    name: &'static str,
    bin: String,
    backend: &'static str,
    marks: Option<&'static str>,
}

fn build_tree(root: &Path) {
    for d in 0..100 {
        let dir = root.join(format!("d{:02}/e{d:03}", d % 10));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..10 {
            std::fs::write(dir.join(format!("f{f}.txt")), format!("file {d}/{f}\n")).expect("write");
        }
    }
}

/// user + system clock ticks of `pid` so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name in parentheses: state is field 3,
    // utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

struct Monitor {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Monitor {
    fn start(case: &Case, store: &Path, target: u32) -> Monitor {
        let mut command = Command::new(&case.bin);
        if let Some(marks) = case.marks {
            command.env("MONITORD_FANOTIFY_MARKS", marks);
        }
        let mut child = command
            .args(["-i", "--period", "1000", "--backend", case.backend, "--store"])
            .arg(store)
            .arg(target.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start monitord");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut monitor = Monitor { child, stdin, lines };
        monitor.wait_for(" baseline ");
        monitor
    }

    fn wait_for(&mut self, needle: &str) -> String {
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(60)).expect("monitord answers");
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// `key` of a `status` reply (its last line is `events`).
    fn status(&mut self, key: &str) -> String {
        writeln!(self.stdin, "status").expect("send status");
        let prefix = format!("{key}: ");
        let mut found = String::new();
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(60)).expect("a status reply");
            if let Some(value) = line.strip_prefix(&prefix) {
                found = value.to_string();
            }
            if line.starts_with("events: ") {
                return found;
            }
        }
    }

    fn stop(mut self) {
        let _ = writeln!(self.stdin, "stop");
        let _ = self.child.wait();
    }
}

/// The neighbour: `rate` appends a second for `secs` seconds, to 200
/// files of one directory, or (`spread`) to a new directory every 50
/// writes, as a build writing its outputs does (too few events per
/// directory for an ignore mark to pay).
fn neighbour(dir: &Path, rate: u32, secs: f64, spread: bool) -> Child {
    let py_spread = if spread { "True" } else { "False" };
    let path = if spread { "'b%06d/n%d.txt' % (i // 50, i % 10)" } else { "'n%03d.txt' % (i % 200)" };
    let script = format!(
        "import os, time\n\
         start = time.time(); i = 0\n\
         while time.time() - start < {secs}:\n\
         \x20   if {py_spread} and i % 50 == 0: os.mkdir('b%06d' % (i // 50))\n\
         \x20   with open({path}, 'a') as f:\n\
         \x20       f.write('line %d\\n' % i)\n\
         \x20   if i % 100 == 99:\n\
         \x20       os.mkdir('tmp%d' % i); os.rmdir('tmp%d' % i)\n\
         \x20   i += 1\n\
         \x20   if i % 200 == 0:\n\
         \x20       ahead = i / {rate} - (time.time() - start)\n\
         \x20       if ahead > 0: time.sleep(ahead)\n\
         print(i)\n"
    );
    Command::new("python3")
        .args(["-c", &script])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3")
}

/// One run: (monitor CPU in % of a core, events the monitor read, writes
/// made by the neighbour).
fn run(case: &Case, tree: &Path, rate: u32, secs: f64, spread: bool) -> (f64, u64, u64) {
    let store = tempfile::tempdir().expect("store");
    let busy = tempfile::tempdir().expect("neighbour dir");
    let mut target = Command::new("sleep").arg("100000").current_dir(tree).spawn().expect("sleep");
    let mut monitor = Monitor::start(case, store.path(), target.id());
    let events_before: u64 = monitor.status("events").parse().unwrap_or(0);
    let ticks_before = cpu_ticks(monitor.child.id());
    let started = Instant::now();
    let writer = neighbour(busy.path(), rate, secs, spread);
    let out = writer.wait_with_output().expect("neighbour");
    let wall = started.elapsed().as_secs_f64();
    let ticks = cpu_ticks(monitor.child.id()) - ticks_before;
    let events = monitor.status("events").parse::<u64>().unwrap_or(0) - events_before;
    monitor.stop();
    let _ = target.kill();
    let _ = target.wait();
    let writes = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (ticks as f64 / ticks_per_second() / wall * 100.0, events, writes)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::var_os("MONITORD_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let (runs, secs, rate) = if quick { (3, 2.0, 20_000) } else { (5, 5.0, 20_000) };
    let tree = tempfile::tempdir().expect("tree");
    build_tree(tree.path());
    let bin = env!("CARGO_BIN_EXE_monitord").to_string();
    let mut cases = vec![
        Case {
            name: "fanotify, filesystem mark",
            bin: bin.clone(),
            backend: "fanotify",
            marks: Some("filesystem"),
        },
        Case { name: "fanotify, inode marks (default)", bin: bin.clone(), backend: "fanotify", marks: None },
        Case { name: "inotify", bin: bin.clone(), backend: "inotify", marks: None },
    ];
    if let Some(before) = std::env::var_os("MONITORD_BENCH_BEFORE_BIN") {
        let before = before.into_string().expect("a UTF-8 path");
        cases.insert(
            0,
            Case { name: "fanotify, before (given binary)", bin: before, backend: "fanotify", marks: None },
        );
    }
    for spread in [false, true] {
        println!(
            "\nmonitor CPU while a neighbour makes {rate} appends/s {} outside a 100-dir, 1,000-file tree on \
             the same filesystem ({runs} runs of {secs} s, median)",
            if spread { "in a new directory every 50" } else { "to 200 files of one directory" }
        );
        measure(&cases, tree.path(), runs, secs, rate, spread);
    }
}

fn measure(cases: &[Case], tree: &Path, runs: usize, secs: f64, rate: u32, spread: bool) {
    for case in cases {
        let mut cpu = Vec::new();
        let mut events = Vec::new();
        let mut writes = Vec::new();
        for _ in 0..runs {
            let (c, e, w) = run(case, tree, rate, secs, spread);
            cpu.push(c);
            events.push(e as f64);
            writes.push(w as f64);
        }
        println!(
            "{:<32} {:>6.1} % of a core   {:>9.0} events read   ({:.0} neighbour writes; runs: {})",
            case.name,
            median(cpu.clone()),
            median(events),
            median(writes),
            cpu.iter().map(|c| format!("{c:.1}")).collect::<Vec<_>>().join(" ")
        );
    }
}
