//! What only some backends do: fanotify's attribution of each change to
//! the process that made it, `--only-target`, and the errors a backend
//! gives when the kernel refuses it.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::harness::*;

/// Whether this kernel and filesystem let root use fanotify here; says so
/// when not, so a skipped test is never silent.
pub fn fanotify_works(tree: &std::path::Path) -> bool {
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree);
    let out = Command::new(bin())
        .args(["-d", "--backend", "fanotify", "--period", "600000", "--store"])
        .arg(store.path())
        .arg(target.pid().to_string())
        .output()
        .unwrap();
    if !out.status.success() {
        skip_or_fail(&format!(
            "the kernel refuses fanotify here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        return false;
    }
    let _ = ctl(store.path(), &["stop"]);
    true
}

/// A target shell in `dir` that, on SIGUSR1, writes `own.txt` itself and
/// has a child write `child.txt`, then says "done".
struct Writer {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Writer {
    fn start(dir: &std::path::Path) -> Writer {
        let script = "trap 'echo own > own.txt; sh -c \"echo child > child.txt\"; echo done' USR1; \
                      echo ready; while :; do sleep 0.02; done";
        let mut child =
            Command::new("sh").args(["-c", script]).current_dir(dir).stdout(Stdio::piped()).spawn().unwrap();
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        Writer { child, lines }
    }
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn write(&mut self) {
        // SAFETY: kill(2) on the shell this test started.
        unsafe { libc::kill(self.pid(), libc::SIGUSR1) };
        assert_eq!(self.lines.next().unwrap().unwrap(), "done");
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn by(record: &serde_json::Value, path: &str) -> (Vec<i64>, bool) {
    let file = record["files"].as_array().unwrap().iter().find(|f| f["path"] == path).unwrap();
    let pids =
        file["by"].as_array().map(|a| a.iter().map(|p| p.as_i64().unwrap()).collect()).unwrap_or_default();
    (pids, file["foreign"] == true)
}

#[test]
fn fanotify_names_the_writer_of_each_change_and_marks_others_with_only_target() {
    let tree = TempDir::new("monitord-tree-");
    if !fanotify_works(tree.path()) {
        return;
    }
    for only_target in [false, true] {
        let tree = TempDir::new("monitord-tree-");
        let store = TempDir::new("monitord-store-");
        let mut writer = Writer::start(tree.path());
        let mut args = vec!["--backend", "fanotify"];
        if only_target {
            args.push("--only-target");
        }
        let daemon = Daemon::start(writer.pid(), store.path(), 600_000, &args);
        writer.write();
        // Someone else, not descended from the target, gone before the
        // sample is taken (it lingers a moment after writing: a writer
        // that exits before its event is even read cannot be named).
        let script = "open('other.txt', 'w').write('other\\n'); import time; time.sleep(0.3)";
        let other = Command::new("python3").args(["-c", script]).current_dir(tree.path()).status();
        assert!(other.unwrap().success());
        let (code, out, err) = daemon.ctl(&["sample"]);
        assert_eq!(code, 0, "{err}");
        let seq: u64 = out.trim().strip_prefix("sampled: ").unwrap().parse().unwrap();
        let records = dump_json(store.path());
        let sample = record(&records, seq);
        let (own, own_foreign) = by(sample, "own.txt");
        assert_eq!(own, [i64::from(writer.pid())], "the target wrote own.txt");
        let (child, child_foreign) = by(sample, "child.txt");
        assert_eq!(child.len(), 1);
        assert_ne!(child[0], i64::from(writer.pid()), "a child of the target wrote child.txt");
        let (other, other_foreign) = by(sample, "other.txt");
        assert_eq!(other.len(), 1);
        assert_eq!((own_foreign, child_foreign, other_foreign), (false, false, only_target), "{sample:#}");
        // Each writer is named as it was when its event was read.
        let named = |path: &str| {
            let file = sample["files"].as_array().unwrap().iter().find(|f| f["path"] == path).unwrap();
            let writers = file["writers"].as_array().unwrap_or_else(|| panic!("no writers: {file:#}"));
            assert_eq!(writers.len(), 1, "{file:#}");
            writers[0].clone()
        };
        let own_writer = named("own.txt");
        assert_eq!(own_writer["pid"], writer.pid());
        assert_eq!(
            (&own_writer["comm"], &own_writer["target"], &own_writer["uid"]),
            (&json!("sh"), &json!(true), &json!(0))
        );
        assert!(own_writer["exe"].as_str().is_some_and(|exe| exe.starts_with('/')), "{own_writer}");
        assert_eq!(named("child.txt")["target"], true);
        let other_writer = named("other.txt");
        assert_eq!(other_writer["pid"], other[0]);
        assert_eq!(
            (&other_writer["comm"], &other_writer["target"]),
            (&json!("python3"), &json!(false)),
            "{other_writer}"
        );
        let exe = other_writer["exe"].as_str().unwrap_or_default();
        assert!(exe.contains("/python3"), "the exited writer's executable: {other_writer}");
        // Every change is recorded either way: restores stay exact.
        assert_eq!(restored(store.path(), seq).len(), 3);
        let (code, text, _) = run(&["dump", store.path().join("ring.bin").to_str().unwrap()]);
        assert_eq!(code, 0);
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains(&format!("created own.txt (by sh[{}])", writer.pid())), "{text}");
        assert!(text.contains(&format!("created other.txt (by python3[{}]", other[0])), "{text}");
        if only_target {
            assert!(text.contains(", not the target)"), "{text}");
        }
        drop(daemon);
    }
}

#[test]
fn log_by_and_blame_name_who_wrote_and_other_backends_say_they_cannot() {
    let tree = TempDir::new("monitord-tree-");
    if !fanotify_works(tree.path()) {
        return;
    }
    let store = TempDir::new("monitord-store-");
    let mut writer = Writer::start(tree.path());
    let daemon = Daemon::start(writer.pid(), store.path(), 600_000, &["--backend", "fanotify"]);
    writer.write();
    let (code, _, err) = daemon.ctl(&["sample"]);
    assert_eq!(code, 0, "{err}");
    let script = "open('own.txt', 'a').write('appended\\n'); import time; time.sleep(0.3)";
    let other = Command::new("python3").args(["-c", script]).current_dir(tree.path()).spawn().unwrap();
    let other_pid = other.id();
    assert!(other.wait_with_output().unwrap().status.success());
    let (code, out, err) = daemon.ctl(&["sample"]);
    assert_eq!(code, 0, "{err}");
    let foreign_seq = out.trim().strip_prefix("sampled: ").unwrap().to_string();
    drop(daemon);
    let s = store.path().to_str().unwrap();
    let seqs = |args: &[&str]| -> Vec<String> {
        let out = monitord(&[&["log", "--store", s][..], args].concat()).expect_success().text();
        out.lines().map(|l| l.split_whitespace().next().unwrap().to_string()).collect()
    };
    assert_eq!(seqs(&["--by", "foreign"]), std::slice::from_ref(&foreign_seq));
    assert_eq!(seqs(&["--by", "python3"]), std::slice::from_ref(&foreign_seq));
    assert_eq!(seqs(&["--by", &other_pid.to_string()]), std::slice::from_ref(&foreign_seq));
    let own = seqs(&["--by", "target"]);
    assert_eq!(own.len(), 1, "the target's sample only: {own:?}");
    assert_ne!(own[0], foreign_seq);
    assert_eq!(seqs(&["--by", "nobody-of-that-name"]), Vec::<String>::new());
    let out = monitord(&["log", "--store", s, "--by", "foreign", "-p"]).expect_success().text();
    assert!(out.contains(&format!("by python3[{other_pid}]")) && out.contains("+appended"), "{out}");
    assert!(!out.contains("child.txt"), "only the foreign writer's changes: {out}");
    // blame names the writer of each line.
    let out = monitord(&["blame", "--store", s, "own.txt"]).expect_success().text();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains(&format!("(sh[{}] ", writer.pid())) && lines[0].ends_with(" own"), "{out}");
    assert!(
        lines[1].contains(&format!("(python3[{other_pid}] ")) && lines[1].ends_with(" appended"),
        "{out}"
    );
    let out = monitord(&["blame", "--json", "--store", s, "own.txt"]).expect_success().text();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["lines"][1]["writers"][0]["comm"], "python3", "{json:#}");
    assert_eq!(json["lines"][1]["writers"][0]["target"], false, "{json:#}");
    monitord(&["log", "--store", s, "--by", "-1"]).expect_code(2);

    // inotify cannot know writers: --by says so rather than answering nothing.
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &["--backend", "inotify"]);
    std::fs::write(tree.path().join("a.txt"), "a\n").unwrap();
    m.sample();
    m.stop();
    let ran = monitord(&["log", "--store", store.path().to_str().unwrap(), "--by", "target"]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("inotify backend, which cannot know writers"), "{}", ran.stderr);
    assert_eq!(ran.stderr.trim().lines().count(), 1, "{}", ran.stderr);
    let records = dump_json(store.path());
    assert!(
        records
            .iter()
            .all(|r| r["files"].as_array().is_none_or(|f| f.iter().all(|f| f["writers"].is_null())))
    );
}

#[test]
fn undo_by_foreign_reverts_only_what_others_wrote() {
    let tree = TempDir::new("monitord-tree-");
    if !fanotify_works(tree.path()) {
        return;
    }
    let store = TempDir::new("monitord-store-");
    let mut writer = Writer::start(tree.path());
    let daemon = Daemon::start(writer.pid(), store.path(), 600_000, &["--backend", "fanotify"]);
    // The target writes own.txt, its child child.txt; someone else writes
    // other.txt and appends to child.txt.
    writer.write();
    let script = "open('other.txt','w').write('theirs\\n'); open('child.txt','a').write('foreign\\n'); \
                  import time; time.sleep(0.3)";
    assert!(
        Command::new("python3").args(["-c", script]).current_dir(tree.path()).status().unwrap().success()
    );
    let (code, _, err) = daemon.ctl(&["sample"]);
    assert_eq!(code, 0, "{err}");
    let s = store.path().to_str().unwrap();
    let ran = monitord(&["undo", "--by", "foreign", "--store", s, "1"]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("child.txt: also changed by"), "{}", ran.stderr);
    assert!(ran.stderr.contains("--by cannot separate"), "{}", ran.stderr);
    assert!(tree.path().join("other.txt").exists(), "nothing written on a conflict");
    monitord(&["undo", "--by", "foreign", "--store", s, "1", "--", "other.txt", "own.txt"]).expect_success();
    assert!(!tree.path().join("other.txt").exists(), "the foreign file is undone");
    assert_eq!(std::fs::read(tree.path().join("own.txt")).unwrap(), b"own\n", "the target's own file stays");
    let records = dump_json(store.path());
    let undo = records.iter().find(|r| r["kind"] == "undo").expect("recorded by the running monitor");
    assert_eq!(undo["files"].as_array().unwrap().len(), 1, "{undo:#}");
    drop(daemon);
}

#[test]
fn only_target_needs_fanotify_and_fanotify_needs_root() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let target = Target::start(tree.path());
    let (code, _, err) =
        run(&["-d", "--only-target", "--store", store.path().to_str().unwrap(), &target.pid().to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("--only-target needs --backend fanotify"), "{err}");

    // An unprivileged user: its own target, its own store.
    let shared = TempDir::new("monitord-nobody-");
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut sleeper = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "100000"])
        .current_dir(shared.path())
        .spawn()
        .unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin()])
        .args(["-i", "--backend", "fanotify", "--store"])
        .arg(shared.path().join("store"))
        .arg(sleeper.id().to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_SYS_ADMIN") && err.contains("--backend inotify"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
