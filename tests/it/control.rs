//! The control FIFO and `monitord ctl`: every command's effect seen from
//! outside, bad input, concurrent clients, plain writes, and sd_notify.

use std::io::Write;
use std::time::Duration;

use crate::harness::*;

const SECS: Duration = Duration::from_secs(20);

fn sample_times(store: &std::path::Path) -> Vec<i64> {
    dump_json(store)
        .iter()
        .filter(|r| r["kind"] == "sample")
        .map(|r| {
            let time: jiff::Timestamp = r["time"].as_str().unwrap().parse().unwrap();
            time.as_microsecond()
        })
        .collect()
}

fn median_gap_ms(times: &[i64]) -> f64 {
    let mut gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    gaps[gaps.len() / 2] as f64 / 1000.0
}

#[test]
fn each_command_does_what_it_says() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 400, &[]);

    // period: the spacing of sample timestamps follows it.
    let (code, out, _) = daemon.ctl(&["period", "40"]);
    assert_eq!((code, out.as_str()), (0, "period_ms: 40\n"));
    let before = sample_times(store.path()).len();
    wait_until("ten samples at 40 ms", SECS, || sample_times(store.path()).len() >= before + 10);
    let fast = median_gap_ms(&sample_times(store.path())[before..]);
    assert!((30.0..100.0).contains(&fast), "median gap {fast} ms at period 40");

    // pause: no samples; resume: samples again.
    let (code, out, _) = daemon.ctl(&["pause"]);
    assert_eq!((code, out.as_str()), (0, "paused\n"));
    assert_eq!(daemon.status()["paused"], "true");
    let paused_at = sample_times(store.path()).len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sample_times(store.path()).len(), paused_at, "no sample while paused");
    let (code, _, _) = daemon.ctl(&["resume"]);
    assert_eq!(code, 0);
    wait_until("samples after resume", SECS, || sample_times(store.path()).len() > paused_at + 2);

    // diff: a pending change, before any sample records it.
    let (code, _, _) = daemon.ctl(&["period", "600000"]);
    assert_eq!(code, 0);
    std::fs::write(tree.path().join("pending.txt"), "not sampled yet\n").unwrap();
    let (code, out, _) = daemon.ctl(&["diff"]);
    assert_eq!(code, 0);
    assert!(out.contains("created pending.txt") && out.contains("+not sampled yet"), "{out}");
    assert!(!dump_json(store.path()).iter().any(|r| changes(r).iter().any(|(p, _)| p == "pending.txt")));

    // sample: records it now and names the record.
    let (code, out, _) = daemon.ctl(&["sample"]);
    assert_eq!(code, 0);
    let seq: u64 = out.strip_prefix("sampled: ").unwrap().trim().parse().unwrap();
    assert_eq!(changes(record(&dump_json(store.path()), seq)), [("pending.txt".into(), "created".into())]);

    // history k: exactly the last k samples, newest last.
    for i in 0..3 {
        std::fs::write(tree.path().join(format!("h{i}.txt")), "x\n").unwrap();
        assert_eq!(daemon.ctl(&["sample"]).0, 0);
    }
    let (code, out, _) = daemon.ctl(&["history", "3"]);
    assert_eq!(code, 0);
    let headers: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(headers.len(), 3, "{out}");
    for (i, header) in headers.iter().enumerate() {
        assert!(header.contains(" sample "), "{header}");
        assert!(out.contains(&format!("h{i}.txt")), "{out}");
    }
    assert!(out.find("h0.txt") < out.find("h2.txt"), "newest last");

    // help lists every command; status has every promised key.
    let (code, out, _) = daemon.ctl(&["help"]);
    assert_eq!(code, 0);
    for name in ["period", "diff", "history", "pid", "status", "pause", "resume", "sample", "stop", "help"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(name)), "{name} missing from help:\n{out}");
    }
    let status = daemon.status();
    for key in [
        "pid",
        "cwd",
        "backend",
        "period_ms",
        "samples",
        "oldest_seq",
        "newest_seq",
        "ring_used",
        "ring_size",
        "rescans",
        "paused",
    ] {
        assert!(status.contains_key(key), "status lacks {key}: {status:?}");
    }
    assert_eq!(status["backend"], "inotify");

    // stop: the reply arrives, then the daemon is gone.
    let (code, out, _) = daemon.ctl(&["stop"]);
    assert_eq!((code, out.as_str()), (0, "stopping\n"));
    daemon.wait_gone(SECS);
}

#[test]
fn bad_input_gets_an_error_reply_and_changes_nothing() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    let before = daemon.status();
    for bad in
        ["period -5", "period 0", "period 1e99", "pid abc", "history -1", "frobnicate", "period", "stop now"]
    {
        let (code, out, err) = daemon.ctl(&bad.split(' ').collect::<Vec<_>>());
        assert_eq!(code, 1, "{bad}: {out}");
        assert!(err.starts_with("monitord: ") && err.lines().count() == 1, "{bad}: {err}");
    }
    // Raw writes no client would send: an over-long line, non-UTF-8 bytes,
    // an empty line, a reply FIFO that does not exist.
    let ctl_path = store.path().join("ctl");
    let mut fifo = std::fs::OpenOptions::new().write(true).open(&ctl_path).unwrap();
    fifo.write_all(&[b'x'; 5000]).unwrap();
    fifo.write_all(b"\nperiod \xff\xfe\n\n@/nonexistent/reply status\n").unwrap();
    drop(fifo);
    let (code, _, _) = daemon.ctl(&["status"]);
    assert_eq!(code, 0, "still answering");
    let after = daemon.status();
    for key in ["pid", "period_ms", "paused", "samples", "newest_seq"] {
        assert_eq!(before[key], after[key], "{key} changed");
    }
    assert!(daemon.is_alive());
    let log = daemon.log();
    assert!(log.contains("error: "), "plain-write errors are logged:\n{log}");
}

#[test]
fn twenty_concurrent_clients_each_get_their_own_whole_reply() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    let help = daemon.ctl(&["help"]).1;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let store = store.path();
                let help = &help;
                s.spawn(move || {
                    for round in 0..5 {
                        if i % 2 == 0 {
                            let period = 1000 + i * 10 + round;
                            let (code, out, err) = ctl(store, &["period", &period.to_string()]);
                            assert_eq!((code, out), (0, format!("period_ms: {period}\n")), "{err}");
                        } else {
                            let (code, out, err) = ctl(store, &["help"]);
                            assert_eq!((code, &out), (0, help), "{err}");
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
    assert!(daemon.is_alive());
}

#[test]
fn a_plain_write_to_the_fifo_works_without_a_client() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("echo 'period 250' > {}", store.path().join("ctl").display()))
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("the new period", SECS, || daemon.status()["period_ms"] == "250");
    wait_until("the reply in the log", SECS, || daemon.log().contains("period_ms: 250"));
}

use std::process::Command;

#[test]
fn foreground_monitor_tells_systemd_it_is_ready_and_stopping() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let sock_dir = TempDir::new("monitord-notify-");
    let target = Target::start(tree.path());
    let sock_path = sock_dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(SECS)).unwrap();
    let mut child = Command::new(bin())
        .args(["-i", "--period", "600000", "--store", store.path().to_str().unwrap()])
        .arg(target.pid().to_string())
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means the FIFO answers, and no fork happened (N2).
    assert_eq!(read_pid_file(store.path()), Some(child.id() as i32));
    assert_eq!(ctl(store.path(), &["status"]).0, 0);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// Send `command` to the daemon's FIFO with its reply going to `fifo`,
/// which the caller holds open and never reads.
fn request_unread(store: &std::path::Path, fifo: &std::path::Path, command: &str) {
    let mut ctl = std::fs::OpenOptions::new().write(true).open(store.join("ctl")).unwrap();
    ctl.write_all(format!("@{} {command}\n", fifo.display()).as_bytes()).unwrap();
}

#[test]
fn clients_that_never_read_their_reply_stall_no_one() {
    use std::os::unix::fs::OpenOptionsExt;
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let fifos = TempDir::new("monitord-fifos-");
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    // A sample whose diff is far larger than a pipe holds (64 KiB).
    let big: String = (0..4_000).map(|i| format!("line {i} of a large text file\n")).collect();
    std::fs::write(tree.path().join("big.txt"), &big).unwrap();
    assert_eq!(daemon.ctl(&["sample"]).0, 0);
    // Six clients ask for it and never read: each reply FIFO is held open
    // read-write (so the monitor can open it) and left full.
    let mut held = Vec::new();
    let mut ask_without_reading = |round: usize| {
        for i in 0..6 {
            let path = fifos.path().join(format!("reply-{round}-{i}"));
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            let fd = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .unwrap();
            held.push(fd);
            request_unread(store.path(), &path, "history 1");
        }
    };
    ask_without_reading(0);
    let started = std::time::Instant::now();
    let (code, out, err) = daemon.ctl(&["status"]);
    let took = started.elapsed();
    assert_eq!(code, 0, "status answers while six clients do not read: {err}");
    eprintln!("status with six silent clients took {took:?}");
    // Before, each silent client held the listener for 5 s.
    assert!(took < Duration::from_secs(2), "status took {took:?}");
    assert!(out.contains("dropped_replies: "), "status counts dropped replies:\n{out}");
    // Their replies are made and waiting now: another client's status
    // does not queue behind them at all.
    let started = std::time::Instant::now();
    let status = daemon.status();
    let took = started.elapsed();
    eprintln!("status with six replies waiting took {took:?}");
    assert!(status.contains_key("dropped_replies"), "{status:?}");
    assert!(took < Duration::from_secs(1), "status took {took:?}");
    // Within the reply deadline (2 s) each silent client is given up.
    wait_until("six dropped replies", Duration::from_secs(5), || {
        daemon.status().get("dropped_replies").map(String::as_str) == Some("6")
    });
    // Six more, and `stop` while they are still pending.
    ask_without_reading(1);
    let started = std::time::Instant::now();
    let (code, out, err) = daemon.ctl(&["stop"]);
    assert_eq!((code, out.as_str()), (0, "stopping\n"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "stop took {:?}", started.elapsed());
    daemon.wait_gone(Duration::from_secs(5));
}

#[test]
fn an_overlong_line_is_one_error_in_the_log() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    // 1 MB in one line, then a good command on the next.
    let mut line = vec![b'y'; 1 << 20];
    line.extend_from_slice(b"\nperiod 321\n");
    let mut fifo = std::fs::OpenOptions::new().write(true).open(store.path().join("ctl")).unwrap();
    fifo.write_all(&line).unwrap();
    drop(fifo);
    wait_until("the command after the long line", SECS, || daemon.status()["period_ms"] == "321");
    let log = daemon.log();
    let errors = log.lines().filter(|l| l.contains("longer than the limit")).count();
    assert_eq!(errors, 1, "one overlong line, one error:\n{}", &log[..log.len().min(2000)]);
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 300, "the log quotes a bad line in part, not 4 KiB of it: {longest} bytes");
}

#[test]
fn root_talks_to_a_monitor_of_another_user() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    let nogroup = Some(nix::unistd::Gid::from_raw(65534));
    for dir in [tree.path(), store.path()] {
        nix::unistd::chown(dir, nobody, nogroup).unwrap();
    }
    let as_nobody = |command: &str| {
        let mut setpriv = std::process::Command::new("setpriv");
        setpriv.args(["--reuid=65534", "--regid=65534", "--clear-groups", command]);
        setpriv
    };
    let mut target = as_nobody("sleep").arg("100000").current_dir(tree.path()).spawn().unwrap();
    let out = as_nobody(bin())
        .args(["-d", "--period", "600000", "--store"])
        .arg(store.path())
        .arg(target.id().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "monitord -d as nobody: {}", String::from_utf8_lossy(&out.stderr));
    let daemon = Daemon { store: store.path().to_path_buf(), pid: read_pid_file(store.path()).unwrap() };
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid)).unwrap();
    assert!(status.lines().any(|l| l.starts_with("Uid:\t65534\t")), "{status}");
    let started = std::time::Instant::now();
    let (code, out, err) = daemon.ctl(&["--timeout", "3000", "status"]);
    assert_eq!(code, 0, "root gets the reply of nobody's monitor: {err}");
    assert!(out.contains(&format!("pid: {}\n", target.id())), "{out}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(SECS);
    let _ = target.kill();
    let _ = target.wait();
}

#[test]
fn another_user_is_told_why_the_monitor_will_not_answer() {
    use std::os::unix::fs::PermissionsExt;
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    let ctl_as_nobody = || {
        let started = std::time::Instant::now();
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin(), "ctl", "--store"])
            .arg(store.path())
            .arg("status")
            .env("TMPDIR", "/tmp")
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "answered at once: {:?}", started.elapsed());
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The store itself is private to root.
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, err) = ctl_as_nobody();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.to_lowercase().contains("permission denied") && err.lines().count() == 1, "{err}");
    // The store may be entered, but the FIFO is root's.
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, err) = ctl_as_nobody();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("belongs to uid 0: only that user or root may control it"), "{err}");
    assert!(daemon.is_alive());
}
