//! `dump --follow`: records as they are committed, gaps when the writer
//! laps a slow reader, and a clean end on a closed pipe or a stopped monitor.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const SECS: Duration = Duration::from_secs(20);

fn follow(store: &std::path::Path, extra: &[&str]) -> std::process::Child {
    Command::new(bin())
        .args(["dump", "--follow", "--json", "--until-stop"])
        .args(extra)
        .arg(store.join("ring.bin"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_follower_started_before_the_writes_sees_every_record_in_order() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    let follower = follow(store.path(), &["--from", "1"]);
    for i in 0..20 {
        std::fs::write(tree.path().join(format!("f{}.txt", i % 3)), format!("{i}\n")).unwrap();
        assert_eq!(daemon.ctl(&["sample"]).0, 0);
    }
    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(SECS);
    let out = follower.wait_with_output().unwrap();
    assert!(out.status.success(), "--until-stop ends with 0 once the monitor stops");
    let seen: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap())
        .collect();
    let recorded: Vec<u64> = dump_json(store.path()).iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seen, recorded);
}

#[test]
fn a_slow_reader_gets_a_gap_and_carries_on() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let daemon =
        Daemon::start(target.pid(), store.path(), 600_000, &["--ring-size", "16K", "--record", "files"]);
    let mut follower = follow(store.path(), &[]);
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(follower.id() as i32, libc::SIGSTOP) };
    for i in 0..80 {
        std::fs::write(
            tree.path().join("big.txt"),
            format!("{i} {}\n{}\n", noise(2 * i, 300), noise(2 * i + 1, 300)),
        )
        .unwrap();
        assert_eq!(daemon.ctl(&["sample"]).0, 0);
    }
    // SAFETY: as above.
    unsafe { libc::kill(follower.id() as i32, libc::SIGCONT) };
    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(SECS);
    let rest: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    assert!(follower.wait().unwrap().success());
    let gap = rest.iter().position(|r| r["kind"] == "gap").expect("a gap line");
    assert_eq!(rest[gap]["from_seq"], first["seq"].as_u64().unwrap() + 1);
    let after: Vec<u64> = rest[gap + 1..].iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(after.len() > 3, "{rest:?}");
    assert_eq!(after[0], rest[gap]["to_seq"].as_u64().unwrap());
    assert!(after.windows(2).all(|w| w[1] == w[0] + 1), "in order after the gap: {after:?}");
    let newest = dump_json(store.path()).last().unwrap()["seq"].as_u64().unwrap();
    assert_eq!(*after.last().unwrap(), newest);
}

#[test]
fn head_ends_a_follower_cleanly() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let _daemon = Daemon::start(target.pid(), store.path(), 20, &[]);
    let ring = store.path().join("ring.bin");
    let script = format!("set -o pipefail; {} dump --follow {} | head -1", bin(), ring.display());
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "dump --follow | head -1 exits 0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_manual_s_file_pipeline_example_works_as_written() {
    let page =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man/extra.roff"))
            .unwrap();
    let documented = "monitord dump \\-\\-follow \\-\\-json \\-\\-max\\-line 102400 /var/lib/monitord/1234/ring.bin >> /var/log/monitord/1234.jsonl";
    assert!(page.contains(documented), "the example is in the manual");
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let logs = TempDir::new("monitord-logs-");
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    // The documented line, with this test's paths and binary.
    let line = documented
        .replace("\\-", "-")
        .replace("monitord ", &format!("{} ", bin()))
        .replace("/var/lib/monitord/1234", store.path().to_str().unwrap())
        .replace("/var/log/monitord", logs.path().to_str().unwrap());
    let mut pipeline = Command::new("sh").args(["-c", &format!("exec {line}")]).spawn().unwrap();
    std::fs::write(tree.path().join("a.txt"), "a\n").unwrap();
    assert_eq!(daemon.ctl(&["sample"]).0, 0);
    let file = logs.path().join("1234.jsonl");
    wait_until("the sample in the log file", SECS, || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("\"a.txt\""))
    });
    pipeline.kill().unwrap();
    pipeline.wait().unwrap();
    for line in std::fs::read_to_string(&file).unwrap().lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert!(value["seq"].is_u64());
    }
}

/// `dump --follow RING`, one line read, then the pipe closed: how long
/// the follower takes to end, and how it ended (`None`: still running
/// after five seconds, then killed).
fn ends_after_one_line(ring: &std::path::Path) -> (Duration, Option<std::process::ExitStatus>) {
    let mut follower =
        Command::new(bin()).args(["dump", "--follow"]).arg(ring).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert!(first.starts_with('#'), "{first}");
    // Let it settle into waiting for records, then go away as head does.
    std::thread::sleep(Duration::from_millis(200));
    drop(lines);
    let closed = std::time::Instant::now();
    while closed.elapsed() < Duration::from_secs(5) {
        if let Some(status) = follower.try_wait().unwrap() {
            return (closed.elapsed(), Some(status));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = follower.kill();
    let _ = follower.wait();
    (closed.elapsed(), None)
}

#[test]
fn a_follower_with_nothing_to_print_ends_when_its_reader_goes() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let ring = store.path().join("ring.bin");
    // An idle monitor at a long period: no record comes for ten minutes.
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    let (took, status) = ends_after_one_line(&ring);
    assert!(status.is_some_and(|s| s.success()), "idle monitor: {status:?} after {took:?}");
    assert!(took < Duration::from_secs(1), "idle monitor: ended {took:?} after the reader went");
    // A stopped store: no record ever comes.
    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(SECS);
    let (took, status) = ends_after_one_line(&ring);
    assert!(status.is_some_and(|s| s.success()), "stopped store: {status:?} after {took:?}");
    assert!(took < Duration::from_secs(1), "stopped store: ended {took:?} after the reader went");
}
