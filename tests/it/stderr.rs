//! Errors and warnings on stderr: one line each, with an sd-daemon(3)
//! priority prefix (`<3>` error, `<4>` warning) only when stderr is the
//! journal, that is when `JOURNAL_STREAM` names stderr's device and inode.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

/// What `JOURNAL_STREAM` says in a run.
#[derive(Clone, Copy, Debug)]
enum Journal {
    /// Unset.
    Unset,
    /// Set, naming another stream (as a child whose stderr was redirected
    /// inherits it).
    Elsewhere,
    /// Set to stderr's own device and inode, as systemd sets it.
    Stderr,
}

/// Spawn `command` with stderr on a pipe (and `JOURNAL_STREAM` as asked);
/// its stderr lines are collected as they come.
fn spawn(command: &mut Command, journal: Journal) -> (Child, Arc<Mutex<Vec<String>>>) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    let st = nix::sys::stat::fstat(writer.as_fd()).expect("fstat the pipe");
    command.env_remove("JOURNAL_STREAM");
    match journal {
        Journal::Unset => {}
        Journal::Elsewhere => {
            command.env("JOURNAL_STREAM", "1:2");
        }
        Journal::Stderr => {
            command.env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino));
        }
    }
    let child = command.stderr(Stdio::from(writer)).spawn().expect("start monitord");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            into.lock().expect("lock").push(line);
        }
    });
    (child, lines)
}

#[test]
fn a_foreground_error_has_the_error_prefix_only_when_stderr_is_the_journal() {
    let store = TempDir::new("monitord-store-");
    for (journal, prefix) in [(Journal::Unset, ""), (Journal::Elsewhere, ""), (Journal::Stderr, "<3>")] {
        let mut command = Command::new(bin());
        command.args(["-i", "--store", store.path().to_str().unwrap(), "4194000"]).stdout(Stdio::null());
        let (mut child, lines) = spawn(&mut command, journal);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{journal:?}");
        // The reader thread sees end of file once the child is gone.
        wait_until("stderr to be read", Duration::from_secs(5), || !lines.lock().unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(20));
        let lines = lines.lock().unwrap().clone();
        assert_eq!(lines, [format!("{prefix}monitord: no process with PID 4194000")], "{journal:?}");
    }
}

#[test]
fn a_foreground_warning_has_the_warning_prefix_when_stderr_is_the_journal() {
    // A full store is a warning: recording pauses, monitoring goes on.
    let Some(tmpfs) = Tmpfs::mount("2m") else { return };
    let tree = TempDir::new("monitord-tree-");
    std::fs::write(tree.path().join("a.txt"), "one\n").unwrap();
    let target = Target::start(tree.path());
    for (journal, prefix) in [(Journal::Stderr, "<4>"), (Journal::Unset, "")] {
        let store = tmpfs.dir.path().join(format!("store-{journal:?}"));
        let mut command = Command::new(bin());
        command
            .args(["-i", "--period", "600000", "--ring-size", "256K", "--record", "files", "--store"])
            .arg(&store)
            .arg(target.pid().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let (mut child, lines) = spawn(&mut command, journal);
        // Fill the disk only once the baseline is recorded: a baseline that
        // cannot be stored is a start-up error, not a warning.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains(" baseline ") {
            line.clear();
            assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "no baseline: {:?}", lines.lock().unwrap());
        }
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let filler = fill(tmpfs.dir.path());
        std::fs::write(tree.path().join("b.txt"), "b".repeat(64 * 1024)).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "sample").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let warning = loop {
            if let Some(line) = lines.lock().unwrap().iter().find(|l| l.contains("recording paused")) {
                break line.clone();
            }
            assert!(Instant::now() < deadline, "no warning on stderr: {:?}", lines.lock().unwrap());
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(warning.starts_with(&format!("{prefix}recording paused")), "{journal:?}: {warning}");
        assert!(warning.ends_with("retrying every period"), "{warning}");
        std::fs::remove_file(filler).unwrap();
        writeln!(stdin, "stop").unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{journal:?}: {status}");
        let lines = lines.lock().unwrap().clone();
        assert!(lines.iter().all(|l| l.starts_with(prefix)), "every stderr line is prefixed: {lines:?}");
        std::fs::remove_file(tree.path().join("b.txt")).unwrap();
    }
}
