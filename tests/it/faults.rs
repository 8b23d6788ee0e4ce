//! Fault injection: every failpoint of `monitord::failpoint` (the tests
//! build the binary with the `failpoints` feature) made to fail once in the
//! middle of a run, and on every hit, on a real target.
//!
//! Whatever fails, the monitor says so (its log or terminal, and `status`:
//! `errors`, `last_error`, `recording`), never panics, either keeps running
//! or stops with exit 1 and a one-line reason, and leaves a store that
//! `verify` passes. After a single failure nothing is lost: the change
//! being recorded when it happened, and every later one, end up in the
//! journal while the monitor runs.
//!
//! A "once" fault is `N*off->1*return`: N is how often the point is hit
//! while the monitor starts (the baseline), so the fault lands in the first
//! sample. The tree starts with two files and one directory, and the
//! monitor with no sampling period to speak of: the first changes are
//! made, then a period is set, so the first sample holds them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const SECS: Duration = Duration::from_secs(20);

/// Files copied by the baseline: each is read and written once.
const START_FILES: usize = 2;

/// How the monitor runs: in the foreground, its exit status and stderr
/// are seen; as a daemon, its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Foreground,
    Daemon,
}

/// A monitor started with `FAILPOINTS` on a target in a fresh tree.
struct Run {
    tree: TempDir,
    _store_dir: TempDir,
    store: PathBuf,
    /// Killed on drop, after the monitor.
    _target: Target,
    mode: Mode,
    /// The foreground monitor (None for a daemon).
    child: Option<Child>,
    /// The daemon's PID.
    daemon: Option<i32>,
    out: PathBuf,
    err: PathBuf,
}

/// How a start ended.
enum Start {
    Up(Run),
    /// Start-up failed: exit status, stderr, and the store.
    Failed {
        code: i32,
        stderr: String,
        store: PathBuf,
        _dirs: (TempDir, TempDir),
        _target: Target,
    },
}

impl Run {
    fn start(failpoints: &str, mode: Mode, extra: &[&str]) -> Start {
        let tree = TempDir::new("monitord-fault-tree-");
        std::fs::write(tree.path().join("a.txt"), "one\n").unwrap();
        std::fs::write(tree.path().join("gone.txt"), "gone soon\n").unwrap();
        let store_dir = TempDir::new("monitord-fault-store-");
        let store = store_dir.path().join("s");
        let out = store_dir.path().join("stdout");
        let err = store_dir.path().join("stderr");
        let target = Target::start(tree.path());
        let mut command = Command::new(bin());
        command
            .arg(if mode == Mode::Daemon { "-d" } else { "-i" })
            // A small ring: verify, dump and restore read all of it.
            .args(["--period", "600000", "--ring-size", "256K", "--store"])
            .arg(&store)
            .args(extra)
            .arg(target.pid().to_string())
            .env("FAILPOINTS", failpoints)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let mut child = command.spawn().expect("start monitord");
        let failed = |code: i32, tree, store_dir, target| {
            let stderr = std::fs::read_to_string(&err).unwrap();
            Start::Failed { code, stderr, store: store.clone(), _dirs: (tree, store_dir), _target: target }
        };
        match mode {
            Mode::Daemon => {
                let status = child.wait().unwrap();
                if !status.success() {
                    return failed(status.code().unwrap_or(-1), tree, store_dir, target);
                }
                let daemon = read_pid_file(&store).expect("a pid file once the launcher has returned");
                Start::Up(Run {
                    tree,
                    _store_dir: store_dir,
                    store,
                    _target: target,
                    mode,
                    child: None,
                    daemon: Some(daemon),
                    out,
                    err,
                })
            }
            Mode::Foreground => {
                let mut exited = None;
                wait_until("the baseline or an exit", SECS, || {
                    exited = child.try_wait().unwrap();
                    exited.is_some() || std::fs::read_to_string(&out).unwrap().contains(" baseline ")
                });
                if let Some(status) = exited {
                    return failed(status.code().unwrap_or(-1), tree, store_dir, target);
                }
                Start::Up(Run {
                    tree,
                    _store_dir: store_dir,
                    store,
                    _target: target,
                    mode,
                    child: Some(child),
                    daemon: None,
                    out,
                    err,
                })
            }
        }
    }

    fn up(failpoints: &str, mode: Mode) -> Run {
        match Run::start(failpoints, mode, &[]) {
            Start::Up(run) => run,
            Start::Failed { code, stderr, .. } => {
                panic!("FAILPOINTS={failpoints}: start failed ({code}): {stderr}")
            }
        }
    }

    /// Start sampling every 50 ms (a plain line on the FIFO: no reply,
    /// so `control.reply` is not hit).
    fn go(&self) {
        use std::io::Write;
        let mut fifo = std::fs::OpenOptions::new().write(true).open(self.store.join("ctl")).unwrap();
        fifo.write_all(b"period 50\n").unwrap();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tree.path().join(rel)
    }

    /// The first changes: a modification, a deletion, a new directory with
    /// a file in it (every kind of mirror update, and a new watch).
    fn first_changes(&self) {
        std::fs::write(self.path("a.txt"), "one\ntwo\n").unwrap();
        std::fs::remove_file(self.path("gone.txt")).unwrap();
        std::fs::create_dir(self.path("d")).unwrap();
        std::fs::write(self.path("d/b.txt"), "bee\n").unwrap();
    }

    /// Changes made once the fault has been reported.
    fn later_changes(&self) {
        std::fs::write(self.path("a.txt"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(self.path("d/b.txt"), "bee\nbee\n").unwrap();
        std::fs::write(self.path("c.txt"), "sea\n").unwrap();
    }

    /// `ctl status`, or None when no reply came.
    fn status(&self) -> Option<BTreeMap<String, String>> {
        let (code, out, _) = ctl(&self.store, &["--timeout", "1000", "status"]);
        (code == 0).then(|| parse_status(&out))
    }

    /// `status` as SIGUSR1 writes it to the output (the last one written).
    fn status_by_signal(&self) -> BTreeMap<String, String> {
        let before = self.output().matches("last_error: ").count();
        // SAFETY: kill(2) on the monitor this test started.
        unsafe { libc::kill(self.pid(), libc::SIGUSR1) };
        wait_until("status written on SIGUSR1", SECS, || {
            self.output().matches("last_error: ").count() > before
        });
        let output = self.output();
        let start = output.rfind("\npid: ").expect("a status block");
        parse_status(&output[start + 1..])
    }

    fn pid(&self) -> i32 {
        match (&self.child, self.daemon) {
            (Some(child), _) => child.id() as i32,
            (None, Some(pid)) => pid,
            (None, None) => unreachable!("a run has a monitor"),
        }
    }

    /// What the monitor wrote: the log of a daemon; stdout then stderr in
    /// the foreground.
    fn output(&self) -> String {
        match self.mode {
            Mode::Daemon => std::fs::read_to_string(self.store.join("monitord.log")).unwrap_or_default(),
            Mode::Foreground => {
                let out = std::fs::read_to_string(&self.out).unwrap_or_default();
                out + &std::fs::read_to_string(&self.err).unwrap_or_default()
            }
        }
    }

    fn is_alive(&self) -> bool {
        process_alive(self.pid())
    }

    /// Wait until `status` reports a failure whose text holds `says`.
    fn wait_reported(&self, says: &str) -> BTreeMap<String, String> {
        let mut last = None;
        wait_until(&format!("status naming the failure ({says})"), SECS, || {
            last = self.status();
            last.as_ref()
                .is_some_and(|s| s["errors"].parse::<u64>().unwrap() >= 1 && s["last_error"].contains(says))
        });
        last.unwrap()
    }

    /// Wait until the journal's newest state is the tree as it is now.
    fn wait_recorded(&self, what: &str) {
        let now = snapshot(self.tree.path());
        let deadline = std::time::Instant::now() + SECS;
        loop {
            let newest = dump_json(&self.store).last().and_then(|r| r["seq"].as_u64()).unwrap();
            // A file whose read failed is left out (exit 1) until it is read.
            let seen = try_restored(&self.store, newest);
            if seen.as_ref() == Some(&now) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} never reached the journal: tree {now:?}, journal {seen:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the monitor: `ctl stop` for a daemon (then wait for it to be
    /// gone), SIGTERM in the foreground. Returns the foreground exit code.
    fn stop(mut self) -> (Option<i32>, String, Run) {
        match self.mode {
            Mode::Daemon => {
                let (code, out, err) = ctl(&self.store, &["stop"]);
                assert_eq!((code, out.as_str()), (0, "stopping\n"), "ctl stop: {err}");
                wait_until("the daemon to exit", SECS, || !self.is_alive());
                let output = self.output();
                (None, output, self)
            }
            Mode::Foreground => {
                // SAFETY: kill(2) on the monitor this test started.
                unsafe { libc::kill(self.pid(), libc::SIGTERM) };
                let child = self.child.as_mut().unwrap();
                let mut status = None;
                wait_until("the monitor to exit", SECS, || {
                    status = child.try_wait().unwrap();
                    status.is_some()
                });
                let status = status.unwrap();
                let output = self.output();
                assert!(status.code().is_some(), "killed by a signal: {status}\n{output}");
                (status.code(), output, self)
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = self.daemon
            && process_alive(pid)
        {
            // SAFETY: kill(2) on the daemon this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn parse_status(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), v.to_string()))).collect()
}

fn assert_verifies(store: &Path) {
    let (code, out, err) = run(&["verify", "--store", store.to_str().unwrap()]);
    assert_eq!(code, 0, "verify: {}{err}", String::from_utf8_lossy(&out));
}

fn assert_no_panic(output: &str) {
    assert!(!output.contains("panicked"), "a panic:\n{output}");
}

/// Fail `point` once, in the first sample (after `at_start` hits while
/// the monitor starts), under a daemon: the failure is in the log and in
/// `status`, the changes it hit and every later one are recorded while
/// the daemon runs, and it stops cleanly.
fn once(point: &str, at_start: usize, says: &str) {
    let run = Run::up(&format!("{point}={at_start}*off->1*return"), Mode::Daemon);
    run.first_changes();
    run.go();
    let status = run.wait_reported(says);
    assert_eq!(status["errors"], "1", "{status:?}");
    run.wait_recorded("the changes the fault hit");
    // Restore reads a mirror one record behind correctly (it rolls it
    // forward), so the changes may read back before the retry has caught
    // the mirror up: wait for that too.
    wait_until("recording to resume", SECS, || run.status().is_some_and(|s| s["recording"] == "ok"));
    assert!(run.output().contains(says), "the log says what failed:\n{}", run.output());
    run.later_changes();
    run.wait_recorded("the changes after the fault");
    assert!(run.is_alive());
    let (_, log, run) = run.stop();
    assert_no_panic(&log);
    assert!(log.trim_end().ends_with(" stopped"), "a clean stop:\n{log}");
    assert_verifies(&run.store);
}

/// `point` fails from the start, before the monitor is up: exit 1 with a
/// one-line reason, no daemon and no pid file left, a store that verifies.
fn fails_to_start(point: &str, extra: &[&str], says: &str) {
    for mode in [Mode::Foreground, Mode::Daemon] {
        let started = Run::start(&format!("{point}=return"), mode, extra);
        let (code, stderr, store) = match &started {
            Start::Up(run) => panic!("{mode:?} started with {point} failing:\n{}", run.output()),
            Start::Failed { code, stderr, store, .. } => (*code, stderr, store),
        };
        assert_eq!(code, 1, "{mode:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{mode:?}: one line: {stderr}");
        assert!(stderr.starts_with("monitord: ") && stderr.contains(says), "{mode:?}: {stderr}");
        assert!(!store.join("monitord.pid").exists(), "{mode:?}: a pid file was left");
        let leftovers: Vec<_> = std::fs::read_dir(store)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".new"))
            .collect();
        assert!(leftovers.is_empty(), "{mode:?}: {leftovers:?}");
        assert_verifies(store);
    }
}

/// `point` fails on every hit once the monitor is up: recording pauses,
/// `status` names the failure, the monitor keeps running, and a stop exits
/// 1 saying the last changes were not recorded.
fn stalls(failpoints: &str, says: &str) {
    let run = Run::up(failpoints, Mode::Foreground);
    run.first_changes();
    run.go();
    let status = run.wait_reported(says);
    assert!(status["recording"].starts_with("paused: "), "{status:?}");
    let errors: u64 = status["errors"].parse().unwrap();
    wait_until("more failed attempts", SECS, || {
        run.status().is_some_and(|s| s["errors"].parse::<u64>().unwrap() > errors)
    });
    assert!(run.is_alive());
    let said = run.output().matches(says).count();
    assert_eq!(said, 1, "said once, not at every attempt:\n{}", run.output());
    let (code, output, run) = run.stop();
    assert_no_panic(&output);
    assert_eq!(code, Some(1), "{output}");
    // stderr: the warning when recording paused, then the one-line error.
    let stderr = std::fs::read_to_string(&run.err).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("recording paused") && lines[0].contains(says), "{stderr}");
    assert!(lines[1].contains("the last changes were not recorded") && lines[1].contains(says), "{stderr}");
    assert_verifies(&run.store);
}

/// `point` fails on every hit, yet recording goes on around it: the
/// failure is reported (`check` looks at that status), every change is
/// recorded, a stop exits `exit`.
fn works_around(failpoints: &str, says: &str, check: impl Fn(&BTreeMap<String, String>), exit: i32) -> Run {
    let run = Run::up(failpoints, Mode::Foreground);
    run.first_changes();
    run.go();
    check(&run.wait_reported(says));
    run.wait_recorded("the changes made while failing");
    run.later_changes();
    run.wait_recorded("the later changes");
    let (code, output, run) = run.stop();
    assert_no_panic(&output);
    assert_eq!(code, Some(exit), "{output}");
    assert_verifies(&run.store);
    run
}

#[test]
fn ring_append_once() {
    once("ring.append", 1, "cannot write a record to ring");
}

#[test]
fn ring_append_at_start() {
    fails_to_start("ring.append", &[], "cannot write a record to ring");
}

#[test]
fn ring_append_persistent() {
    stalls("ring.append=1*off->return", "cannot write a record to ring");
}

#[test]
fn ring_msync_once() {
    // The new ring's header and the baseline's write-back.
    once("ring.msync", 2, "cannot sync ring");
}

#[test]
fn ring_msync_at_start() {
    fails_to_start("ring.msync", &[], "cannot sync ring");
}

#[test]
fn ring_msync_persistent() {
    // Records are committed in memory, readers see them; the final msync
    // at the stop fails, and says so.
    let run = works_around("ring.msync=2*off->return", "cannot sync ring", |_| {}, 1);
    let stderr = std::fs::read_to_string(&run.err).unwrap();
    assert!(stderr.starts_with("monitord: cannot sync ring") && stderr.lines().count() == 1, "{stderr}");
}

#[test]
fn mirror_write_once() {
    once("mirror.write", START_FILES, "mirror write failed");
}

#[test]
fn mirror_write_at_start() {
    fails_to_start("mirror.write", &[], "mirror write failed");
}

#[test]
fn mirror_write_persistent() {
    stalls(&format!("mirror.write={START_FILES}*off->return"), "mirror write failed");
}

#[test]
fn mirror_remove_once() {
    once("mirror.remove", 0, "mirror remove failed");
}

#[test]
fn mirror_remove_persistent() {
    stalls("mirror.remove=return", "mirror remove failed");
}

#[test]
fn tree_read_once() {
    once("tree.read", START_FILES, "cannot read a.txt");
}

#[test]
fn tree_read_once_in_the_baseline() {
    // A file the baseline could not read is read again by the next
    // sample, and recorded as created then.
    let run = Run::up("tree.read=1*return", Mode::Foreground);
    run.go();
    run.wait_reported("cannot read ");
    run.wait_recorded("the file the baseline could not read");
    let baseline = &dump_json(&run.store)[0];
    assert_eq!(baseline["skipped"].as_array().map(Vec::len), Some(1), "{baseline}");
    run.first_changes();
    run.wait_recorded("the later changes");
    let (code, output, run) = run.stop();
    assert_eq!(code, Some(0), "{output}");
    assert_verifies(&run.store);
}

#[test]
fn tree_read_persistent() {
    let run = Run::up("tree.read=return", Mode::Foreground);
    run.first_changes();
    run.go();
    let status = run.wait_reported("Input/output error");
    assert_eq!(status["recording"], "ok", "{status:?}");
    let records = dump_json(&run.store);
    assert_eq!(records[0]["skipped"].as_array().map(Vec::len), Some(START_FILES), "{}", records[0]);
    assert!(run.output().contains("reading it again at every sample"), "{}", run.output());
    let (code, output, run) = run.stop();
    assert_no_panic(&output);
    assert_eq!(code, Some(0), "{output}");
    // Nothing could be read, so nothing but the skipped entries is recorded.
    let files: usize = dump_json(&run.store).iter().map(|r| r["files"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(files, 0);
    assert_verifies(&run.store);
}

#[test]
fn events_watch_add_once() {
    // The root's watch at start; the fault hits the new directory `d`.
    once("events.watch_add", 1, "cannot watch directory d");
}

#[test]
fn events_watch_add_persistent() {
    // No directory can be watched: each is rescanned every sample instead.
    let check = |status: &BTreeMap<String, String>| {
        assert_ne!(status["unwatched_dirs"], "0", "{status:?}");
        assert_eq!(status["watches"], "0", "{status:?}");
    };
    works_around("events.watch_add=return", "cannot watch directory .", check, 0);
}

#[test]
fn events_watch_add_fanotify_at_start() {
    if fanotify_available() {
        fails_to_start("events.watch_add", &["--backend", "fanotify"], "fanotify_mark failed");
    }
}

#[test]
fn control_reply_once() {
    let run = Run::up("control.reply=1*return", Mode::Daemon);
    run.go();
    let (code, _, err) = ctl(&run.store, &["--timeout", "500", "status"]);
    assert_eq!(code, 3, "the reply that failed never came: {err}");
    let status = run.wait_reported("cannot write the reply to ");
    assert_eq!(status["errors"], "1");
    assert!(run.output().contains("cannot write the reply to "), "{}", run.output());
    run.first_changes();
    run.wait_recorded("the changes after the fault");
    let (_, log, run) = run.stop();
    assert!(log.trim_end().ends_with(" stopped"), "{log}");
    assert_verifies(&run.store);
}

#[test]
fn control_reply_persistent() {
    let run = Run::up("control.reply=return", Mode::Foreground);
    run.go();
    let (code, _, _) = ctl(&run.store, &["--timeout", "500", "sample"]);
    assert_eq!(code, 3);
    // No reply gets through: SIGUSR1 writes the status to the output.
    let status = run.status_by_signal();
    assert!(status["errors"].parse::<u64>().unwrap() >= 1, "{status:?}");
    assert!(status["last_error"].starts_with("cannot write the reply to "), "{status:?}");
    run.first_changes();
    run.wait_recorded("the changes made while replies fail");
    let (code, output, run) = run.stop();
    assert_no_panic(&output);
    assert_eq!(code, Some(0), "{output}");
    assert_verifies(&run.store);
}

/// Points that no sample of a small tree reaches, each tested elsewhere:
/// `mirror.rename` puts a compacted pack in place once the mirror's log
/// has outgrown 64 MiB (`src/mirror.rs`); `undo.write` holds an undo
/// between two files, where the undo tests kill it (`tests/it/undo.rs`).
const TESTED_BESIDE_THEIR_CODE: [&str; 2] = ["mirror.rename", "undo.write"];

#[test]
fn every_failpoint_is_tested() {
    let source = include_str!("faults.rs");
    for point in monitord::failpoint::POINTS.iter().filter(|p| !TESTED_BESIDE_THEIR_CODE.contains(p)) {
        assert!(source.contains(&format!("\"{point}")), "no scenario for {point}");
    }
}
