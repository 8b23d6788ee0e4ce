//! The command-line contract: exit codes, one-line errors, the man page.

use crate::harness::*;

#[test]
fn missing_pid_fails_with_one_line_and_exit_1() {
    let store = TempDir::new("monitord-store-");
    let (code, _, stderr) = run(&["-i", "--store", store.path().to_str().unwrap(), "4194000"]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no process with PID 4194000"), "{stderr}");
}

#[test]
fn zombie_pid_is_refused() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let mut child = std::process::Command::new("true").current_dir(tree.path()).spawn().unwrap();
    let pid = child.id() as i32;
    wait_until("the child to become a zombie", std::time::Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    });
    let (code, _, stderr) = run(&["-i", "--store", store.path().to_str().unwrap(), &pid.to_string()]);
    child.wait().unwrap();
    assert_eq!(code, 1);
    assert!(stderr.contains("zombie"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    for args in
        [&["--period", "0", "1"][..], &["--bogus"], &[], &["-d", "-i", "1"], &["--ring-size", "12Q", "1"]]
    {
        let (code, _, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
}

#[test]
fn dump_of_a_missing_or_garbage_ring_fails_cleanly() {
    let dir = TempDir::new("monitord-ring-");
    let missing = dir.path().join("nope.bin");
    let (code, _, stderr) = run(&["dump", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("monitord: ") && stderr.lines().count() == 1, "{stderr}");
    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, vec![0xa5u8; 10_000]).unwrap();
    let (code, _, stderr) = run(&["dump", "--json", garbage.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.lines().count() == 1, "{stderr}");
}

#[test]
fn sigint_finishes_cleanly_with_exit_0() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &[]);
    let status = m.kill(libc::SIGINT);
    assert!(status.success(), "{status}");
    let status = {
        let mut m = Monitord::start(&target, store.path(), &[]);
        m.kill(libc::SIGTERM)
    };
    assert!(status.success(), "{status}");
    assert_eq!(dump_json(store.path()).iter().filter(|r| r["kind"] == "baseline").count(), 2);
}

#[test]
fn end_of_stdin_does_not_stop_monitoring() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let mut child = std::process::Command::new(bin())
        .args(["-i", "--period", "20", "--store", store.path().to_str().unwrap(), &target.pid().to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the baseline", std::time::Duration::from_secs(20), || {
        store.path().join("ring.bin").exists() && !dump_json(store.path()).is_empty()
    });
    std::fs::write(tree.path().join("late.txt"), "late\n").unwrap();
    wait_until("a sample recording late.txt", std::time::Duration::from_secs(20), || {
        dump_json(store.path()).iter().any(|r| changes(r).iter().any(|(p, _)| p == "late.txt"))
    });
    assert!(child.try_wait().unwrap().is_none(), "still running after stdin closed");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn man_page_is_up_to_date() {
    let generated = monitord::cli::render_man();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man/monitord.1");
    if std::env::var_os("MONITORD_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "man/monitord.1 is out of date: run `MONITORD_BLESS=1 cargo test man_page` and commit it"
    );
}

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "completions {shell}: {err}");
        let script = String::from_utf8(out).expect("a script is text");
        assert!(!script.trim().is_empty(), "completions {shell} printed nothing");
        for word in ["replay", "report", "restore", "store"] {
            assert!(script.contains(word), "completions {shell} does not mention {word}:\n{script}");
        }
    }
    let (code, _, err) = run(&["completions", "powershell-9000"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn dump_of_a_fifo_or_other_non_file_fails_at_once() {
    use std::time::{Duration, Instant};
    let dir = TempDir::new("monitord-ring-");
    let fifo = dir.path().join("ring.bin");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo = fifo.to_str().unwrap();
    let store = dir.path().to_str().unwrap();
    // Every reader of a store's ring.bin, not only dump.
    for args in [
        &["dump", fifo][..],
        &["dump", "--json", fifo],
        &["dump", "--follow", fifo],
        &["dump", "/dev/null"],
        &["log", "--store", store],
        &["restore", "--store", store, "--at", "1", "--path", "a.txt"],
        &["blame", "--store", store, "a.txt"],
    ] {
        let mut child = std::process::Command::new(bin())
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > Duration::from_secs(3) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{args:?} ends with exit 1: {stderr}");
        assert!(stderr.starts_with("monitord: ") && stderr.lines().count() == 1, "{args:?}: {stderr}");
        assert!(stderr.contains("not a regular file"), "{args:?}: {stderr}");
    }
}
