//! S9 (RELIABILITY.md §4): the target's PID handed to another process the
//! moment the target exits. `ns_last_pid` set to `pid - 1` makes the next
//! fork get exactly the old PID, so the impostor exists within a
//! millisecond of the exit, long before the next sample. The daemon must
//! record the exit and never follow, read or attribute anything to the
//! impostor, whose cwd is a tree of its own holding a marker.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

fn long() -> bool {
    std::env::var_os("MONITORD_LONG").is_some_and(|v| v == "1")
}

const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

/// Whether this process may steer PID allocation; prints why not.
fn can_steer_pids() -> bool {
    let current = match fs::read_to_string(NS_LAST_PID) {
        Ok(text) => text,
        Err(e) => {
            skip_or_fail(&format!("cannot read {NS_LAST_PID}: {e}"));
            return false;
        }
    };
    // Writing back the value read is harmless and proves the permission.
    match fs::OpenOptions::new()
        .write(true)
        .open(NS_LAST_PID)
        .and_then(|mut f| f.write_all(current.trim().as_bytes()))
    {
        Ok(()) => true,
        Err(e) => {
            skip_or_fail(&format!(
                "cannot write {NS_LAST_PID} (needs CAP_SYS_ADMIN over the PID namespace): {e}"
            ));
            false
        }
    }
}

/// Start `command` so that it gets `pid`, if no other process forks in
/// between: set `ns_last_pid` to `pid - 1` and fork at once. Returns the
/// child whatever PID it got.
fn spawn_with_pid(pid: i32, command: &mut Command) -> std::process::Child {
    let mut f = fs::OpenOptions::new().write(true).open(NS_LAST_PID).expect("open ns_last_pid");
    f.write_all((pid - 1).to_string().as_bytes()).expect("write ns_last_pid");
    command.spawn().expect("spawn the impostor")
}

/// One round: returns false when another process took the PID first (the
/// round does not count), panics on a misattribution.
fn one_reuse(round: usize) -> bool {
    let base = TempDir::new("monitord-s9-");
    let tree = base.path().join("tree");
    let decoy = base.path().join("decoy");
    let store = base.path().join("store");
    fs::create_dir_all(&tree).unwrap();
    fs::create_dir_all(&decoy).unwrap();
    fs::write(tree.join("own.txt"), "the target's file\n").unwrap();
    let marker = format!("IMPOSTOR{:08x}{:08x}", std::process::id(), round);
    fs::write(decoy.join("marker.txt"), format!("{marker}\n")).unwrap();

    let mut target = Target::start(&tree);
    let pid = target.pid();
    // A small ring: the whole store is searched for the marker below.
    let daemon = Daemon::start(pid, &store, 20, &["--ring-size", "256K"]);
    wait_until("the daemon to follow the target", Duration::from_secs(10), || {
        daemon.status().get("pid").is_some_and(|p| *p == pid.to_string())
    });

    // The target dies and is reaped; the impostor is forked right away.
    target.child().kill().unwrap();
    target.child().wait().unwrap();
    let exited = Instant::now();
    let script = format!(
        "i=0; while :; do echo {marker} $i > impostor-$((i % 4)).txt; echo {marker} >> marker.txt; \
         i=$((i + 1)); sleep 0.003; done"
    );
    let mut impostor = spawn_with_pid(
        pid,
        Command::new("sh")
            .args(["-c", &script])
            .current_dir(&decoy)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    let took = exited.elapsed();
    if impostor.id() as i32 != pid {
        let _ = impostor.kill();
        let _ = impostor.wait();
        return false;
    }
    assert!(took < Duration::from_millis(20), "the impostor took the PID {took:?} after the exit");

    // The daemon notices within a few periods; the impostor keeps writing
    // in its tree meanwhile.
    wait_until("the daemon to drop the exited target", Duration::from_secs(10), || {
        daemon.status().get("pid").is_some_and(|p| p == "0")
    });
    std::thread::sleep(Duration::from_millis(100));
    let status = daemon.status();
    assert_eq!(status["pid"], "0", "the daemon follows nobody after the exit, not the impostor: {status:?}");
    let (code, _, err) = daemon.ctl(&["stop"]);
    assert_eq!(code, 0, "stop: {err}");
    daemon.wait_gone(Duration::from_secs(10));
    let _ = impostor.kill();
    let _ = impostor.wait();

    let records = dump_json(&store);
    let exit = records
        .iter()
        .position(|r| r["kind"] == "exit")
        .unwrap_or_else(|| panic!("an exit record for pid {pid}: {records:#?}"));
    assert_eq!(records[exit]["pid"], pid, "the exit record names the target");
    for r in &records[exit + 1..] {
        assert_ne!(r["pid"], pid, "a record after the exit attributed to the impostor: {r:#}");
    }
    let text = |r: &Value| r.to_string();
    for r in &records {
        assert!(!text(r).contains(&marker), "the impostor's content is in record {}: {r:#}", r["seq"]);
        assert!(!text(r).contains("impostor-"), "the impostor's files are in record {}: {r:#}", r["seq"]);
        if let Some(cwd) = r["cwd"].as_str().or(r["new_cwd"].as_str()) {
            assert!(!cwd.contains("decoy"), "a baseline or cwd record of the impostor's tree: {r:#}");
        }
    }
    assert!(!occurs_below(&store, marker.as_bytes()), "the marker is nowhere in the store");
    true
}

/// S9: 20 reuses (100 with `MONITORD_LONG=1`), each within a millisecond
/// or so of the exit: an `exit` record every time, 0 records of the
/// impostor, the marker nowhere in the store.
#[test]
fn s9_pid_reused_at_once_is_not_followed() {
    if !can_steer_pids() {
        return;
    }
    let want = if long() { 100 } else { 20 };
    let (mut done, mut lost) = (0, 0);
    let started = Instant::now();
    while done < want {
        if one_reuse(done) {
            done += 1;
        } else {
            lost += 1;
            assert!(lost <= 3 * want, "another process took the PID {lost} times; the host forks too much");
        }
    }
    eprintln!(
        "S9: {done} PID reuses, 0 misattributed ({lost} rounds lost to other forks) in {:?}",
        started.elapsed()
    );
}
