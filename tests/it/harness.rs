//! Test harness: a real target process in a temp tree, the real monitord
//! binary in the foreground driven through stdin, and readers for what it
//! recorded. Every wait has a deadline and says what it waited for.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The monitord binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_monitord")
}

/// The one polling loop every wait goes through: call `probe` every few
/// milliseconds until it returns `Some`, or until `timeout` passes (`None`).
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Poll `cond` until it holds or `timeout` passes; panic naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    if poll(timeout, || cond().then_some(())).is_none() {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// A temp directory kept when MONITORD_KEEP_TEST_DIRS is set.
pub struct TempDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("create temp dir");
        let path = dir.path().to_path_buf();
        TempDir { dir: Some(dir), path }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("MONITORD_KEEP_TEST_DIRS").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// A real process whose cwd is `dir`; killed and reaped on drop.
pub struct Target {
    child: Child,
}

impl Target {
    pub fn start(dir: &Path) -> Target {
        let child = Command::new("sleep").arg("100000").current_dir(dir).spawn().expect("start sleep");
        Target { child }
    }
    /// Start any command as the target (its cwd set by the caller).
    pub fn spawn(command: &mut Command) -> Target {
        let child = command.spawn().unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        Target { child }
    }
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run scenarios on every backend: for each `fn scenario(backend: &str)`
/// named, a module `scenario` with one test per backend (`scenario::poll`
/// …), so a failure names its backend and `cargo test poll` picks one.
/// The list of backends is here and only here.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn inotify() {
                super::$scenario("inotify")
            }
            #[test]
            fn poll() {
                super::$scenario("poll")
            }
            #[test]
            fn fanotify() {
                if $crate::harness::fanotify_available() {
                    super::$scenario("fanotify")
                } else {
                    $crate::harness::skip_or_fail("the kernel refuses fanotify here");
                }
            }
        }
    )*};
}

/// Whether the kernel lets this process use fanotify with a filesystem
/// mark on the temp directory; says so once when it does not, so a skipped
/// scenario is never silent.
pub fn fanotify_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let available = *AVAILABLE.get_or_init(|| {
        let flags = libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_REPORT_DFID_NAME;
        // SAFETY: fanotify_init with flag words; returns a new fd or -1.
        let fd = unsafe { libc::fanotify_init(flags, libc::O_RDONLY as u32) };
        if fd < 0 {
            return false;
        }
        let dir = std::ffi::CString::new(std::env::temp_dir().into_os_string().into_encoded_bytes()).unwrap();
        let mask = libc::FAN_CREATE | libc::FAN_MODIFY | libc::FAN_ONDIR;
        // SAFETY: fanotify_mark on the fd just made, with a NUL-terminated path.
        let rc = unsafe {
            libc::fanotify_mark(
                fd,
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                mask,
                libc::AT_FDCWD,
                dir.as_ptr(),
            )
        };
        // SAFETY: closing the fd this function opened.
        unsafe { libc::close(fd) };
        rc == 0
    });
    if !available {
        eprintln!(
            "SKIPPED: the kernel refuses fanotify here (not root, or no filesystem marks on the temp dir)"
        );
    }
    available
}

/// A scenario that cannot run here: fails under `CI=true` (CI runs as root
/// on a kernel that has everything the suite needs, so a skip there would
/// hide a broken set-up), says SKIPPED and passes elsewhere.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}, and CI=true: every scenario must run in CI");
    }
    eprintln!("SKIPPED: {why}");
}

/// A foreground monitord (`-i`) with stdin and stdout captured.
pub struct Monitord {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    pub store: PathBuf,
}

fn collect(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    into.lock().expect("lock").push(text.trim_end_matches('\n').to_string());
                }
            }
        }
    });
}

impl Monitord {
    /// Start `monitord -i --period 600000 --store STORE [extra] PID` (with
    /// `--ring-size 8M` unless `extra` sets it) and wait for its baseline.
    pub fn start(target: &Target, store: &Path, extra: &[&str]) -> Monitord {
        Self::start_with_period(target, store, 600_000, extra)
    }

    /// [`Monitord::start`] with `--backend BACKEND`.
    pub fn start_on(backend: &str, target: &Target, store: &Path, extra: &[&str]) -> Monitord {
        let args: Vec<&str> = ["--backend", backend].iter().chain(extra).copied().collect();
        Self::start(target, store, &args)
    }

    pub fn start_with_period(target: &Target, store: &Path, period_ms: u64, extra: &[&str]) -> Monitord {
        Self::start_with_env(target, store, period_ms, extra, &[])
    }

    /// [`Monitord::start_with_period`] with variables added to its
    /// environment.
    pub fn start_with_env(
        target: &Target,
        store: &Path,
        period_ms: u64,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Monitord {
        // Every reader copies and scans the whole ring, slowly in a debug
        // build (half a second for the default 64 MiB): a test that does
        // not choose gets a ring no test here fills.
        let ring: &[&str] = if extra.contains(&"--ring-size") { &[] } else { &["--ring-size", "8M"] };
        let mut child = Command::new(bin())
            .envs(env.iter().copied())
            .arg("-i")
            .arg("--period")
            .arg(period_ms.to_string())
            .arg("--store")
            .arg(store)
            .args(ring)
            .args(extra)
            .arg(target.pid().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start monitord");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("stdout"), Arc::clone(&out));
        collect(child.stderr.take().expect("stderr"), Arc::clone(&err));
        let stdin = child.stdin.take();
        let mut monitord = Monitord { child, stdin, out, err, store: store.to_path_buf() };
        monitord.wait_line("the baseline", |l| l.contains(" baseline "));
        monitord
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.out.lock().expect("lock").clone()
    }

    fn describe(&mut self) -> String {
        let status = self.child.try_wait().ok().flatten();
        format!(
            "monitord status {status:?}\nstdout:\n{}\nstderr:\n{}",
            self.out.lock().expect("lock").join("\n"),
            self.err.lock().expect("lock").join("\n")
        )
    }

    /// Poll the monitor's output with `probe` for up to 20 s; panic with
    /// what it printed when nothing comes (or it exits first).
    fn await_output<T>(&mut self, what: &str, mut probe: impl FnMut(&[String]) -> Option<T>) -> T {
        let mut exited = false;
        let found = poll(Duration::from_secs(20), || {
            if let Some(found) = probe(&self.out.lock().expect("lock")) {
                return Some(Some(found));
            }
            exited = matches!(self.child.try_wait(), Ok(Some(_)));
            exited.then_some(None)
        });
        match found.flatten() {
            Some(found) => found,
            None => {
                let why = if exited { "monitord exited" } else { "timed out" };
                let description = self.describe();
                panic!("{why} waiting for {what}\n{description}");
            }
        }
    }

    /// Wait for a stdout line matching `pred`, returning it.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.await_output(what, |lines| lines.iter().find(|l| pred(l)).cloned())
    }

    /// Send one control line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to monitord");
        stdin.flush().expect("flush");
    }

    /// Take a sample now and return its sequence number.
    pub fn sample(&mut self) -> u64 {
        let before = self.out.lock().expect("lock").len();
        self.send("sample");
        self.await_output("the reply to `sample`", |lines| {
            lines[before..]
                .iter()
                .find_map(|l| l.strip_prefix("sampled: ").and_then(|n| n.trim().parse().ok()))
        })
    }

    /// `status` as a map.
    pub fn status(&mut self) -> BTreeMap<String, String> {
        let before = self.out.lock().expect("lock").len();
        self.send("status");
        // Only this reply's lines count: an earlier `status` printed them too.
        let lines = self.await_output("the reply to `status`", |lines| {
            let reply = &lines[before..];
            reply.iter().any(|l| l.starts_with("events: ")).then(|| reply.to_vec())
        });
        lines.iter().filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), v.to_string()))).collect()
    }

    /// Send `stop` and wait for a clean exit.
    pub fn stop(mut self) {
        self.send("stop");
        match poll(Duration::from_secs(20), || self.child.try_wait().ok().flatten()) {
            Some(status) => assert!(status.success(), "monitord exited with {status}\n{}", self.describe()),
            None => panic!("monitord did not stop\n{}", self.describe()),
        }
    }

    /// Kill with a signal and wait.
    pub fn kill(&mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.child.wait().expect("wait monitord")
    }
}

impl Drop for Monitord {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run the binary with `args`; returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(bin()).args(args).output().expect("run monitord");
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// One run of the binary, kept whole so that a failed expectation can say
/// everything about it.
#[derive(Debug)]
pub struct Ran {
    /// The arguments.
    pub args: Vec<String>,
    /// The exit code (-1 for a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
    /// The store the command worked on, if it named one (`--store DIR`).
    store: Option<PathBuf>,
}

/// Run the binary with `args`, keeping the whole result.
pub fn monitord(args: &[&str]) -> Ran {
    let (code, stdout, stderr) = run(args);
    let store = args.iter().position(|a| *a == "--store").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    Ran { args: args.iter().map(|a| a.to_string()).collect(), code, stdout, stderr, store }
}

impl Ran {
    /// Standard output as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panic, explaining the run, unless it exited `code`.
    pub fn expect_code(&self, code: i32) -> &Ran {
        if self.code != code {
            panic!("expected exit {code}, got {}\n{}", self.code, self.explain());
        }
        self
    }

    /// [`Ran::expect_code`] 0.
    pub fn expect_success(&self) -> &Ran {
        self.expect_code(0)
    }

    /// The command, its exit code and stderr, the start of its stdout, and
    /// for a store: its listing and the tail of its log.
    pub fn explain(&self) -> String {
        let mut text = format!(
            "command: monitord {}\nexit: {}\nstderr:\n{}\nstdout (first 2,000 bytes):\n{}\n",
            self.args.join(" "),
            self.code,
            self.stderr,
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(2000)])
        );
        if let Some(store) = &self.store {
            text.push_str(&describe_store(store));
        }
        text
    }
}

/// A store's listing (path and size of every file) and the last lines of
/// its log, for failure messages.
pub fn describe_store(store: &Path) -> String {
    let mut text = format!("store {}:\n", store.display());
    for path in walk_all(store) {
        let size = std::fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
        let rel = path.strip_prefix(store).unwrap_or(&path);
        text.push_str(&format!("  {} ({size} bytes)\n", rel.display()));
    }
    let log = std::fs::read_to_string(store.join("monitord.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    if !tail.is_empty() {
        text.push_str("log (last 20 lines):\n");
        for line in tail.iter().rev() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

/// `dump --json` of a store, parsed.
pub fn dump_json(store: &Path) -> Vec<Value> {
    let ring = store.join("ring.bin");
    let (code, stdout, stderr) = run(&["dump", "--json", ring.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "dump failed: {stderr}");
    String::from_utf8(stdout)
        .expect("JSON is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// The record with `seq`.
pub fn record(records: &[Value], seq: u64) -> &Value {
    records.iter().find(|r| r["seq"] == seq).unwrap_or_else(|| panic!("no record {seq} in {records:#?}"))
}

/// The (path, change) pairs of a sample record, sorted (none for other
/// kinds).
pub fn changes(record: &Value) -> Vec<(String, String)> {
    if record["kind"] != "sample" {
        return Vec::new();
    }
    let mut list: Vec<(String, String)> = record["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("<bytes>").to_string(),
                f["change"].as_str().expect("change").to_string(),
            )
        })
        .collect();
    list.sort();
    list
}

/// Every regular file and symlink below `dir`, as relative path → content
/// (a symlink's content is its target prefixed with "-> ").
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path.strip_prefix(base).expect("prefix").to_string_lossy().into_owned();
            let kind = entry.file_type().expect("type");
            if kind.is_symlink() {
                let target = std::fs::read_link(&path).expect("readlink");
                out.insert(rel, [b"-> ".as_slice(), target.as_os_str().as_encoded_bytes()].concat());
            } else if kind.is_dir() {
                walk(base, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Restore `seq` of `store` into a fresh directory: the run, and what
/// the directory then holds.
fn restore_run(store: &Path, seq: u64) -> (Ran, BTreeMap<String, Vec<u8>>) {
    let dest = TempDir::new("monitord-restore-");
    let out = dest.path().join("tree");
    let ran = monitord(&[
        "restore",
        "--store",
        store.to_str().expect("utf-8"),
        "--at",
        &seq.to_string(),
        out.to_str().expect("utf-8"),
    ]);
    let held = if out.exists() { snapshot(&out) } else { BTreeMap::new() };
    (ran, held)
}

/// Restore `seq` of `store` into a fresh directory and snapshot it; `None`
/// when the restore fails (a file whose content is not yet known, say).
pub fn try_restored(store: &Path, seq: u64) -> Option<BTreeMap<String, Vec<u8>>> {
    let (ran, held) = restore_run(store, seq);
    (ran.code == 0).then_some(held)
}

/// Restore `seq` of `store` into a fresh directory and snapshot it.
pub fn restored(store: &Path, seq: u64) -> BTreeMap<String, Vec<u8>> {
    let (ran, held) = restore_run(store, seq);
    ran.expect_success();
    held
}

/// Whether `needle` occurs in any file below `dir`.
pub fn occurs_below(dir: &Path, needle: &[u8]) -> bool {
    walk_all(dir).iter().any(|p| std::fs::read(p).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle)))
}

fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out
}

/// A daemon started with `monitord -d`; killed with SIGKILL on drop if it
/// is still running.
pub struct Daemon {
    pub store: PathBuf,
    pub pid: i32,
}

impl Daemon {
    /// `monitord -d --period MS --store STORE [extra] PID`; asserts the
    /// launcher exits 0 and the pid file names a live daemon.
    pub fn start(target_pid: i32, store: &Path, period_ms: u64, extra: &[&str]) -> Daemon {
        let out = Command::new(bin())
            .args(["-d", "--period", &period_ms.to_string(), "--store"])
            .arg(store)
            .args(extra)
            .arg(target_pid.to_string())
            .output()
            .expect("run monitord -d");
        assert!(out.status.success(), "monitord -d failed: {}", String::from_utf8_lossy(&out.stderr));
        let pid = read_pid_file(store).expect("a pid file once the launcher has returned");
        Daemon { store: store.to_path_buf(), pid }
    }

    /// `monitord ctl --store STORE ARGS…`: (exit code, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        ctl(&self.store, args)
    }

    /// `ctl status` as a map.
    pub fn status(&self) -> BTreeMap<String, String> {
        let (code, out, err) = self.ctl(&["status"]);
        assert_eq!(code, 0, "status failed: {err}");
        out.lines().filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), v.to_string()))).collect()
    }

    pub fn is_alive(&self) -> bool {
        process_alive(self.pid)
    }

    /// Wait (up to `timeout`) for the daemon to be gone.
    pub fn wait_gone(&self, timeout: Duration) {
        wait_until("the daemon to exit", timeout, || !self.is_alive());
    }

    /// The log's lines so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.store.join("monitord.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.is_alive() {
            // SAFETY: kill(2) on the daemon this test started.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.is_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// `monitord ctl --store STORE ARGS…`: (exit code, stdout, stderr).
pub fn ctl(store: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).arg("ctl").arg("--store").arg(store).args(args).output().expect("run ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The PID in `<store>/monitord.pid`.
pub fn read_pid_file(store: &Path) -> Option<i32> {
    std::fs::read_to_string(store.join("monitord.pid")).ok()?.trim().parse().ok()
}

/// Whether a process still exists: not reaped, and not a zombie whose
/// threads have all exited (a zombie group leader can outlive its other
/// threads, which still hold the fds and their locks).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
            !zombie || threads > 1
        }
        Err(_) => false,
    }
}

/// Field `n` (1-based, as in proc(5)) of `/proc/<pid>/stat`.
pub fn stat_field(pid: i32, n: usize) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let (_, rest) = stat.rsplit_once(") ").expect("stat format");
    rest.split(' ').nth(n - 3).expect("field").to_string()
}

/// Whether another open of `path` can take an exclusive flock now.
pub fn flock_free(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).expect("open for flock");
    // SAFETY: flock on a file this function owns.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// A shell target in `dir` that runs `cd NEW` when it gets SIGUSR1.
pub struct Shell {
    child: Child,
}

impl Shell {
    pub fn start(dir: &Path, on_usr1_cd: &Path) -> Shell {
        let script = format!(
            "trap 'cd {}' USR1; echo ready; while :; do sleep 0.02; done",
            on_usr1_cd.to_str().expect("utf-8 path")
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sh");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
        assert_eq!(line.trim(), "ready");
        Shell { child }
    }
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small recorded store: `a.txt` ("alpha") in `tree`, its baseline and
/// one sample, the monitor stopped. Returns the target, still running.
pub fn record_alpha(tree: &Path, store: &Path) -> Target {
    std::fs::write(tree.join("a.txt"), "alpha\n").expect("write a.txt");
    let target = Target::start(tree);
    let mut m = Monitord::start(&target, store, &[]);
    m.sample();
    m.stop();
    target
}

/// The paths a record's `files` list names (a baseline's tracked files).
pub fn file_paths(record: &Value) -> Vec<&str> {
    record["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("a UTF-8 path"))
        .collect()
}

/// A small tmpfs mounted for the test; unmounted on drop.
pub struct Tmpfs {
    pub dir: TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = TempDir::new("monitord-tmpfs-");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fill the filesystem holding `dir` with one file; returns its path.
pub fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    path
}

/// `chars` characters of hexadecimal noise drawn from `seed`: text that
/// does not compress, for tests that must fill a ring (records of 512
/// bytes or more are stored compressed).
pub fn noise(seed: u64, chars: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::with_capacity(chars + 16);
    while out.len() < chars {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(chars);
    out
}

/// A small deterministic generator for random scenarios: a failure
/// replays exactly from its seed.
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n.max(1) as u64) as usize
    }

    /// One of `items`, if there is any.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}
