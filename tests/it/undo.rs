//! `monitord undo`: the live tree put back to a point, through a running
//! monitor (recorded as one `undo` record) or without one; conflicts that
//! write nothing; symlinks never followed; an interrupted undo finished by
//! a second one.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::*;
use crate::modes::modes_below;

/// What a user compares: every file's content (a link as `-> target`) and
/// every regular file's mode.
pub type Live = (BTreeMap<String, Vec<u8>>, BTreeMap<String, u32>);

/// The [`Live`] state of the tree at `dir`.
pub fn live(dir: &Path) -> Live {
    (snapshot(dir), modes_below(dir))
}

/// The files of `dir` (one level) and their contents, read while an undo
/// writes: a file renamed away mid-read is left out.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).ok()?))
        })
        .collect()
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with a script, a nested file and two text files, recorded by a
/// monitor; then changed in one sample: an edit, a deletion, a creation
/// in a new directory, a rename into a new directory, a chmod.
/// Returns the live state at the baseline (seq 1) and the sample's seq.
fn changed_tree(tree: &Path, m: &mut Monitord) -> (Live, u64) {
    let before = live(tree);
    fs::write(tree.join("a.txt"), "a, edited\n").unwrap();
    fs::remove_file(tree.join("b.txt")).unwrap();
    fs::create_dir(tree.join("new")).unwrap();
    fs::write(tree.join("new/n.txt"), "n\n").unwrap();
    fs::create_dir(tree.join("moved")).unwrap();
    fs::rename(tree.join("dir/c.txt"), tree.join("moved/c.txt")).unwrap();
    chmod(&tree.join("run.sh"), 0o644);
    let seq = m.sample();
    (before, seq)
}

fn planted(tree: &Path) {
    fs::write(tree.join("a.txt"), "a\n").unwrap();
    fs::write(tree.join("b.txt"), "b\n").unwrap();
    fs::write(tree.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    chmod(&tree.join("run.sh"), 0o755);
    fs::create_dir(tree.join("dir")).unwrap();
    fs::write(tree.join("dir/c.txt"), "c\n").unwrap();
}

fn undo_through_the_monitor_puts_the_tree_back_and_records_it(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    planted(tree.path());
    let target = Target::start(tree.path());
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    let (before, changed) = changed_tree(tree.path(), &mut m);
    let after = live(tree.path());
    let s = store.path().to_str().unwrap();

    let out = monitord(&["undo", "--store", s, "1"]).expect_success().text();
    // The monitor samples first: B is that (idle) sample, the newest.
    let b = changed + 1;
    assert!(out.starts_with(&format!("undone: #{b}..#1, 6 files put back")), "{out}");
    assert_eq!(live(tree.path()), before, "the tree as it was at the baseline, modes included");
    assert!(
        !tree.path().join("new").exists() && !tree.path().join("moved").exists(),
        "emptied directories go"
    );
    // Nothing of the undo is left for the next sample to record.
    let next = m.sample();
    let records = dump_json(store.path());
    let undo = records.iter().find(|r| r["kind"] == "undo").expect("an undo record");
    assert_eq!((undo["from"].as_u64(), undo["to"].as_u64()), (Some(1), Some(b)), "{undo:#}");
    let mut paths: Vec<&str> =
        undo["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["a.txt", "b.txt", "dir/c.txt", "moved/c.txt", "new/n.txt", "run.sh"], "{undo:#}");
    assert_eq!(record(&records, next)["files"].as_array().map(Vec::len), Some(0), "{records:#?}");
    assert_eq!(restored(store.path(), next), before.0, "restore of the newest record equals the live tree");
    monitord(&["verify", "--store", s]).expect_success();

    // Undo of the undo: the later state comes back.
    let undo_seq = undo["seq"].as_u64().unwrap();
    monitord(&["undo", "--store", s, &(undo_seq - 1).to_string()]).expect_success();
    assert_eq!(live(tree.path()), after);
    let newest = m.sample();
    assert_eq!(restored(store.path(), newest), after.0);
    m.stop();
    monitord(&["verify", "--store", s]).expect_success();
}

fn without_a_monitor_undo_applies_itself(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    planted(tree.path());
    let target = Target::start(tree.path());
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    let (before, _) = changed_tree(tree.path(), &mut m);
    m.stop();
    let s = store.path().to_str().unwrap();
    let ran = monitord(&["undo", "--store", s, "1", "--", "a.txt", "run.sh"]);
    ran.expect_success();
    assert!(ran.stderr.contains("next monitor's baseline"), "{}", ran.stderr);
    let now = live(tree.path());
    assert_eq!(now.0["a.txt"], before.0["a.txt"]);
    assert_eq!(now.1["run.sh"], 0o755);
    assert!(!now.0.contains_key("b.txt"), "only the paths asked for: {now:?}");
    // Again: already done, nothing to do.
    let out = monitord(&["undo", "--store", s, "1", "--", "a.txt", "run.sh"]).expect_success().text();
    assert!(out.contains("already as it was"), "{out}");
}

on_every_backend!(
    undo_through_the_monitor_puts_the_tree_back_and_records_it,
    without_a_monitor_undo_applies_itself
);

#[test]
fn conflicts_write_nothing_and_force_never_follows_a_symlink() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let outside = TempDir::new("monitord-outside-");
    planted(tree.path());
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &[]);
    let (before, _) = changed_tree(tree.path(), &mut m);
    m.stop();
    let s = store.path().to_str().unwrap();
    // After B: a live edit, a file replaced by a symlink to a victim
    // outside, a deleted file's path now a directory.
    fs::write(tree.path().join("a.txt"), "edited after the record\n").unwrap();
    fs::write(outside.path().join("victim"), "precious\n").unwrap();
    fs::remove_file(tree.path().join("new/n.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("victim"), tree.path().join("new/n.txt")).unwrap();
    fs::create_dir(tree.path().join("b.txt")).unwrap();
    let untouched = live(tree.path());

    let ran = monitord(&["undo", "--store", s, "1"]);
    ran.expect_code(1);
    for (path, why) in
        [("a.txt", "changed since"), ("new/n.txt", "is a symlink now"), ("b.txt", "is a directory now")]
    {
        assert!(ran.stderr.contains(&format!("conflict: {path}: {why}")), "{path}: {}", ran.stderr);
    }
    assert!(ran.stderr.contains("nothing written: 3 conflicts"), "{}", ran.stderr);
    assert_eq!(live(tree.path()), untouched, "nothing written");
    // The dry run shows the same, and writes nothing either.
    let ran = monitord(&["undo", "--dry-run", "--store", s, "1"]);
    ran.expect_code(1);
    assert!(ran.text().contains("-a, edited") && ran.text().contains("+a\n"), "{}", ran.text());
    let ran = monitord(&["undo", "--dry-run", "--json", "--store", s, "1", "--", "run.sh"]);
    ran.expect_success();
    let json: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(json["files"][0]["change"], "mode", "{json:#}");
    assert_eq!((&json["files"][0]["old_mode"], &json["files"][0]["mode"]), (&"0644".into(), &"0755".into()));
    assert_eq!(live(tree.path()), untouched);

    // --force: the symlink is replaced, its target never written.
    fs::remove_dir(tree.path().join("b.txt")).unwrap();
    let ran = monitord(&["undo", "--force", "--store", s, "1"]);
    ran.expect_success();
    assert!(ran.stderr.contains("forced: new/n.txt: is a symlink now"), "{}", ran.stderr);
    assert_eq!(fs::read(outside.path().join("victim")).unwrap(), b"precious\n");
    assert_eq!(live(tree.path()), before);

    // Bad input.
    monitord(&["undo", "--store", s, "99"]).expect_code(1);
    let ran = monitord(&["undo", "--store", s, "2..1"]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("is after"), "{}", ran.stderr);
    monitord(&["undo", "--json", "--store", s, "1"]).expect_code(2);
    monitord(&["undo", "--store", s, "soonish"]).expect_code(2);
}

#[test]
fn an_undo_killed_between_files_leaves_no_torn_file_and_a_second_one_finishes() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    for i in 0..20 {
        fs::write(tree.path().join(format!("f{i:02}.txt")), format!("old {i}\n").repeat(200)).unwrap();
    }
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &[]);
    let old = live(tree.path());
    for i in 0..20 {
        fs::write(tree.path().join(format!("f{i:02}.txt")), format!("new {i}\n").repeat(300)).unwrap();
    }
    m.sample();
    let new = live(tree.path());
    m.stop();
    let s = store.path().to_str().unwrap();
    // Held at the eleventh file, then killed.
    let mut child = Command::new(bin())
        .args(["undo", "--store", s, "1"])
        .env("FAILPOINTS", "undo.write=10*off->sleep(60000)")
        .spawn()
        .unwrap();
    let halfway = poll(std::time::Duration::from_secs(20), || {
        let now = (contents(tree.path()), ());
        let done = now.0.iter().filter(|(p, c)| old.0.get(*p) == Some(*c)).count();
        (done == 10).then_some(now)
    })
    .expect("ten files put back within 20 s");
    child.kill().unwrap();
    child.wait().unwrap();
    for (path, content) in &halfway.0 {
        assert!(old.0.get(path) == Some(content) || new.0.get(path) == Some(content), "{path} is torn");
    }
    assert_eq!(live(tree.path()).0.len(), 20, "no temporary left: {:?}", live(tree.path()).0.keys());
    assert_eq!(live(tree.path()).0, halfway.0, "nothing written after the kill");
    monitord(&["undo", "--store", s, "1"]).expect_success();
    assert_eq!(live(tree.path()), old);
}

#[test]
fn a_monitor_killed_in_the_middle_of_an_undo_leaves_no_torn_file() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    for i in 0..20 {
        fs::write(tree.path().join(format!("f{i:02}.txt")), format!("old {i}\n").repeat(200)).unwrap();
    }
    let target = Target::start(tree.path());
    let env = [("FAILPOINTS", "undo.write=10*off->sleep(60000)")];
    let mut m = Monitord::start_with_env(&target, store.path(), 600_000, &[], &env);
    let old = live(tree.path());
    for i in 0..20 {
        fs::write(tree.path().join(format!("f{i:02}.txt")), format!("new {i}\n").repeat(300)).unwrap();
    }
    m.sample();
    let new = live(tree.path());
    let s = store.path().to_str().unwrap();
    let mut client = Command::new(bin()).args(["undo", "--store", s, "1"]).spawn().unwrap();
    poll(std::time::Duration::from_secs(20), || {
        let done = contents(tree.path()).iter().filter(|(p, c)| old.0.get(*p) == Some(*c)).count();
        (done == 10).then_some(())
    })
    .expect("ten files put back within 20 s");
    m.kill(libc::SIGKILL);
    let killed = std::time::Instant::now();
    let status = client.wait().unwrap();
    assert_eq!(status.code(), Some(3), "the client reports the monitor's death");
    assert!(killed.elapsed() < std::time::Duration::from_secs(10), "at once, not at its timeout");
    let now = live(tree.path());
    assert_eq!(now.0.len(), 20, "no temporary left: {:?}", now.0.keys());
    for (path, content) in &now.0 {
        assert!(old.0.get(path) == Some(content) || new.0.get(path) == Some(content), "{path} is torn");
    }
    // No monitor now: a second undo finishes the job.
    monitord(&["undo", "--store", s, "1"]).expect_success();
    assert_eq!(live(tree.path()), old);
    monitord(&["verify", "--store", s]).expect_success();
}

#[test]
fn undo_as_root_keeps_each_file_s_owner() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    planted(tree.path());
    let nobody = Some(65534);
    for path in ["", "a.txt", "b.txt", "run.sh", "dir", "dir/c.txt"] {
        std::os::unix::fs::chown(tree.path().join(path), nobody, nobody).unwrap();
    }
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &[]);
    let (before, _) = changed_tree(tree.path(), &mut m);
    m.stop();
    monitord(&["undo", "--store", store.path().to_str().unwrap(), "1"]).expect_success();
    assert_eq!(live(tree.path()), before);
    use std::os::unix::fs::MetadataExt;
    for path in ["a.txt", "b.txt", "run.sh", "dir", "dir/c.txt"] {
        let meta = fs::symlink_metadata(tree.path().join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{path} keeps its owner");
    }
}
