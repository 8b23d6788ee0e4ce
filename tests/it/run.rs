//! `monitord -- COMMAND`: run a command under monitord from its first
//! instruction, record how it ended, and exit as it did.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

fn kinds(records: &[serde_json::Value]) -> Vec<&str> {
    records.iter().map(|r| r["kind"].as_str().unwrap()).collect()
}

#[test]
fn a_command_is_recorded_from_its_first_write_and_its_status_is_ours() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    // `ctl sample` between the writes makes the two samples certain.
    let script = format!(
        "echo a > x; {} ctl --store {} sample >/dev/null; echo b >> x; echo to-stdout; exit 3",
        bin(),
        store.path().display()
    );
    let out = Command::new(bin())
        .args(["-i", "--period", "600000", "--store", store.path().to_str().unwrap()])
        .args(["--", "sh", "-c", &script])
        .current_dir(tree.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-stdout\n", "the command keeps stdout");
    assert!(String::from_utf8_lossy(&out.stderr).contains(" baseline "), "monitord reports on stderr");
    let records = dump_json(store.path());
    assert_eq!(records[0]["kind"], "baseline");
    assert!(records[0]["files"].as_array().unwrap().is_empty(), "the baseline is taken before x exists");
    let changes: Vec<_> = records.iter().flat_map(changes).collect();
    assert_eq!(
        changes,
        [("x".to_string(), "created".to_string()), ("x".to_string(), "modified".to_string())]
    );
    let exit = records.last().unwrap();
    assert_eq!(exit["kind"], "exit");
    assert_eq!(exit["code"], 3);
    assert!(exit["rusage"]["maxrss_kib"].as_u64().unwrap() > 0, "{exit}");
    assert_eq!(kinds(&records).iter().filter(|k| **k == "exit").count(), 1);
    // --quiet: nothing from monitord at all.
    let store = TempDir::new("monitord-store-");
    let out = Command::new(bin())
        .args(["-i", "--quiet", "--store", store.path().to_str().unwrap(), "--", "true"])
        .current_dir(tree.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_signal_to_monitord_reaches_the_command_and_the_exit_record_names_it() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let mut child = Command::new(bin())
        .args(["-i", "--quiet", "--period", "50", "--store", store.path().to_str().unwrap()])
        .args(["--", "sleep", "100"])
        .current_dir(tree.path())
        .spawn()
        .unwrap();
    wait_until("the baseline", Duration::from_secs(20), || {
        store.path().join("ring.bin").exists() && !dump_json(store.path()).is_empty()
    });
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    let exit = dump_json(store.path()).into_iter().last().unwrap();
    assert_eq!(exit["kind"], "exit");
    assert_eq!(exit["signal"], libc::SIGTERM);
}

#[test]
fn a_daemon_runs_the_command_detached_with_its_output_in_the_store() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let out = Command::new(bin())
        .args(["-d", "--period", "50", "--store", store.path().to_str().unwrap()])
        .args(["--", "sh", "-c", "echo said; echo kept > kept.txt; sleep 0.3"])
        .current_dir(tree.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let daemon = Daemon { store: store.path().to_path_buf(), pid: read_pid_file(store.path()).unwrap() };
    daemon.wait_gone(Duration::from_secs(20));
    assert_eq!(std::fs::read_to_string(store.path().join("command.log")).unwrap(), "said\n");
    let records = dump_json(store.path());
    assert!(records.iter().any(|r| changes(r) == [("kept.txt".to_string(), "created".to_string())]));
    let exit = records.last().unwrap();
    assert_eq!((exit["kind"].as_str(), exit["code"].as_i64()), (Some("exit"), Some(0)));
}

#[test]
fn a_daemons_command_gets_the_users_whole_environment() {
    // The daemon drops LD_*, MALLOC_* and the rest from its own
    // environment; the command it runs is the user's and keeps them.
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let out = Command::new(bin())
        .args(["-d", "--period", "50", "--store", store.path().to_str().unwrap()])
        .args(["--", "sh", "-c", "env; sleep 0.2"])
        .env("LD_MONITORD_PROBE", "for the loader")
        .env("MALLOC_MONITORD_PROBE", "for the allocator")
        .env("MONITORD_PROBE", "anything else")
        .current_dir(tree.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("the daemon to stop after the command", Duration::from_secs(20), || {
        !store.path().join("monitord.pid").exists()
    });
    let env = std::fs::read_to_string(store.path().join("command.log")).unwrap();
    for line in [
        "LD_MONITORD_PROBE=for the loader",
        "MALLOC_MONITORD_PROBE=for the allocator",
        "MONITORD_PROBE=anything else",
        &format!("PATH={}", std::env::var("PATH").unwrap()),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from the command's environment:\n{env}");
    }
}
