//! Leaks over a long run (RELIABILITY L1, L3, L5 in small): many samples,
//! PID switches and control commands leave the daemon with exactly the fds
//! and threads it had, inotify watches equal to the tree's directories, and
//! a bounded RSS. `MONITORD_LONG=1` runs the full counts.

use std::time::Duration;

use crate::harness::*;

/// What each of `pid`'s fds points at, sorted.
fn fd_targets(pid: i32) -> Vec<String> {
    let mut links: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|link| link.display().to_string())
        .collect();
    links.sort();
    links
}

/// `pid`'s fds once they hold still, as [`fd_targets`] gives them: `ctl`
/// returns as soon as the reply is read, a moment before the monitor
/// closes its end of the reply FIFO, and a loaded machine can stretch that
/// moment. With `expected`, waits (up to 5 s) for that many fds: an fd that
/// is only passing through is gone by then, a leaked one is still counted.
fn settled_fds(pid: i32, expected: Option<usize>) -> Vec<String> {
    let started = std::time::Instant::now();
    let mut last = fd_targets(pid);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = fd_targets(pid);
        let replying = now.iter().any(|link| link.contains("/monitord-ctl-"));
        let settled = match expected {
            Some(n) => now.len() == n,
            None => now == last && !replying,
        };
        if settled || started.elapsed() > Duration::from_secs(5) {
            return now;
        }
        last = now;
    }
}

fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

fn rss_anon_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn pid_switches_and_commands_leak_no_fd_thread_or_watch() {
    let long = std::env::var_os("MONITORD_LONG").is_some();
    let (switches, commands) = if long { (100, 1000) } else { (20, 200) };
    let trees = [TempDir::new("monitord-tree-"), TempDir::new("monitord-tree-")];
    for (i, tree) in trees.iter().enumerate() {
        for d in 0..=i {
            std::fs::create_dir_all(tree.path().join(format!("d{d}/e"))).unwrap();
        }
        std::fs::write(tree.path().join("f.txt"), "x\n").unwrap();
    }
    let targets = [Target::start(trees[0].path()), Target::start(trees[1].path())];
    let store = TempDir::new("monitord-store-");
    let daemon = Daemon::start(targets[0].pid(), store.path(), 5, &["--ring-size", "1M"]);
    let d = daemon.pid;
    // Warm up (allocator arenas of the per-target threads reach their
    // working size after a few switches), then measure.
    for t in [1, 0].repeat(10) {
        assert_eq!(daemon.ctl(&["pid", &targets[t].pid().to_string()]).0, 0);
    }
    // Measured while paused: a sample in flight holds files open.
    assert_eq!(daemon.ctl(&["pause"]).0, 0);
    let (fds_before, threads_before, rss_before) = (settled_fds(d, None), threads(d), rss_anon_kib(d));
    assert_eq!(daemon.ctl(&["resume"]).0, 0);
    for i in 0..switches {
        let t = (i + 1) % 2;
        std::fs::write(trees[t].path().join("f.txt"), format!("{i}\n")).unwrap();
        let (code, _, err) = daemon.ctl(&["pid", &targets[t].pid().to_string()]);
        assert_eq!(code, 0, "switch {i}: {err}");
        for _ in 0..commands / switches {
            let (code, _, _) = daemon.ctl(&["status"]);
            assert_eq!(code, 0);
        }
    }
    // Back on the first target, as when measuring.
    if switches % 2 == 1 {
        assert_eq!(daemon.ctl(&["pid", &targets[0].pid().to_string()]).0, 0);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(daemon.ctl(&["pause"]).0, 0);
    let status = daemon.status();
    let fds_after = settled_fds(d, Some(fds_before.len()));
    assert_eq!(
        fds_after.len(),
        fds_before.len(),
        "open fds after {switches} switches and {commands} commands: before {fds_before:?}, after {fds_after:?}"
    );
    assert_eq!(threads(d), threads_before, "threads");
    assert_eq!(status["watches"], "3", "one watch per directory of the current tree (., d0, d0/e)");
    let grown = rss_anon_kib(d).saturating_sub(rss_before);
    eprintln!(
        "soak: {switches} switches, {commands} commands, {} samples: fds {}, threads {threads_before}, anon RSS +{grown} KiB",
        status["samples"],
        fds_before.len()
    );
    assert!(grown <= 2048, "anonymous RSS grew by {grown} KiB");
    let samples: u64 = status["samples"].parse().unwrap();
    assert!(samples > 0);
    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(Duration::from_secs(20));
    let (code, out, _) = run(&["verify", "--store", store.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
}

/// The `anon_inode:inotify` fds `pid` holds.
fn inotify_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|link| link.as_os_str() == "anon_inode:inotify")
        .count()
}

/// RELIABILITY L3: more PID switches than `max_user_instances` (128 by
/// default) allows inotify instances: no EMFILE, and one instance at the
/// end, as at the start.
#[test]
fn more_pid_switches_than_inotify_instances_keep_one_instance() {
    const SWITCHES: usize = 200;
    let trees = [TempDir::new("monitord-tree-"), TempDir::new("monitord-tree-")];
    for tree in &trees {
        std::fs::create_dir_all(tree.path().join("sub")).unwrap();
        std::fs::write(tree.path().join("f.txt"), "x\n").unwrap();
    }
    let targets = [Target::start(trees[0].path()), Target::start(trees[1].path())];
    let store = TempDir::new("monitord-store-");
    let daemon = Daemon::start(targets[0].pid(), store.path(), 1000, &["--ring-size", "1M"]);
    let d = daemon.pid;
    assert_eq!(inotify_fds(d), 1, "one inotify instance at the start");
    for i in 0..SWITCHES {
        let (code, _, err) = daemon.ctl(&["pid", &targets[(i + 1) % 2].pid().to_string()]);
        assert_eq!(code, 0, "switch {i}: {err}");
    }
    let status = daemon.status();
    assert_eq!(status["pid"], targets[0].pid().to_string(), "back on the first target");
    assert_eq!(inotify_fds(d), 1, "one inotify instance after {SWITCHES} switches");
    assert_eq!(status["watches"], "2", "one watch per directory of the current tree (., sub)");
    eprintln!("L3: {SWITCHES} PID switches, 1 inotify instance before and after");
    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(Duration::from_secs(20));
}
