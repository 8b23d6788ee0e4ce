//! The monitor under valgrind's memcheck (RELIABILITY L5): a foreground
//! run that records changes, answers control commands, follows another
//! process and notices its exit, then stops cleanly, must free what it
//! allocated and make no invalid access. Skipped when valgrind is not on
//! PATH.
//!
//! valgrind 3.19 does not know openat2 or pidfd_open and answers ENOSYS,
//! so this run also goes through monitord's fallbacks for both. Leaks of
//! the "possibly lost" kind are not counted: they are the thread
//! bookkeeping of threads still blocked in a read at exit (the usual
//! practice, `--errors-for-leak-kinds=definite,indirect`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

/// The figure after `label` in a valgrind summary line, e.g. the bytes of
/// "definitely lost: 1,024 bytes in 2 blocks".
fn figure(log: &str, label: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains(label))?;
    let after = line.split(label).nth(1)?.trim_start();
    after.split_whitespace().next()?.replace(',', "").parse().ok()
}

#[test]
fn a_monitor_run_under_valgrind_leaks_nothing_and_makes_no_memory_error() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        skip_or_fail("valgrind is not on PATH");
        return;
    }
    let started = Instant::now();
    let tree = TempDir::new("monitord-tree-");
    let other_tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let logs = TempDir::new("monitord-valgrind-");
    let log_path = logs.path().join("memcheck.log");
    std::fs::create_dir(tree.path().join("sub")).unwrap();
    std::fs::write(tree.path().join("a.txt"), "one\ntwo\n").unwrap();
    std::fs::write(tree.path().join("sub/b.txt"), "bee\n").unwrap();
    std::fs::write(other_tree.path().join("c.txt"), "sea\n").unwrap();
    let target = Target::start(tree.path());
    let mut other = Target::start(other_tree.path());

    let mut child = Command::new("valgrind")
        .args(["--leak-check=full", "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99"])
        .arg(format!("--log-file={}", log_path.display()))
        .arg(bin())
        .args(["-i", "--period", "100", "--store", store.path().to_str().unwrap()])
        .arg(target.pid().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start valgrind");
    let mut stdin = child.stdin.take().unwrap();
    let out = Arc::new(Mutex::new(Vec::<String>::new()));
    let into = Arc::clone(&out);
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
    let wait_out = |what: &str, pred: &dyn Fn(&str) -> bool| {
        wait_until(what, Duration::from_secs(30), || out.lock().unwrap().iter().any(|l| pred(l)));
    };
    wait_out("the baseline", &|l| l.contains(" baseline "));

    // Changes, recorded by the period's samples.
    std::fs::write(tree.path().join("a.txt"), "one\ntwo\nthree\n").unwrap();
    std::fs::write(tree.path().join("sub/new.txt"), "new\n").unwrap();
    std::fs::remove_file(tree.path().join("sub/b.txt")).unwrap();
    wait_until("the changes recorded", Duration::from_secs(30), || {
        let files: Vec<_> = dump_json(store.path()).iter().flat_map(changes).collect();
        files.len() >= 3
    });
    // Control commands over the FIFO (monitord ctl runs natively).
    let ctl = |args: &[&str]| {
        let out = Command::new(bin())
            .args(["ctl", "--timeout", "20000", "--store", store.path().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(ctl(&["status"]).contains("backend: inotify"));
    std::fs::write(tree.path().join("a.txt"), "changed again\n").unwrap();
    ctl(&["diff"]);
    ctl(&["sample"]);
    ctl(&["history", "3"]);
    ctl(&["period", "50"]);
    // Follow another process, then see it exit (no pidfd under valgrind).
    assert!(ctl(&["pid", &other.pid().to_string()]).starts_with("pid: "));
    std::fs::write(other_tree.path().join("c.txt"), "sea\nshore\n").unwrap();
    ctl(&["sample"]);
    let _ = other.child().kill();
    let _ = other.child().wait();
    wait_out("the exit noticed", &|l| l.contains("exited; waiting"));

    writeln!(stdin, "stop").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "monitord did not stop under valgrind");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    let errors = figure(&log, "ERROR SUMMARY:");
    // With nothing left on the heap there is no LEAK SUMMARY at all.
    let freed = log.contains("All heap blocks were freed");
    let definitely = if freed { Some(0) } else { figure(&log, "definitely lost:") };
    let indirectly = if freed { Some(0) } else { figure(&log, "indirectly lost:") };
    let possibly = if freed { Some(0) } else { figure(&log, "possibly lost:") };
    eprintln!(
        "L5: memcheck in {:?}: definitely lost {definitely:?} B, indirectly lost {indirectly:?} B, \
         possibly lost {possibly:?} B, errors {errors:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(0), "monitord under valgrind exited with {status}\n{log}");
    assert_eq!(errors, Some(0), "{log}");
    assert_eq!(definitely, Some(0), "{log}");
    assert_eq!(indirectly, Some(0), "{log}");
    let (code, out, err) = run(&["verify", "--store", store.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{}{err}", String::from_utf8_lossy(&out));
    drop(target);
}
