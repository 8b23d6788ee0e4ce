//! The watched directory itself changes under the monitor: it is renamed
//! or removed while the target stays inside it, and other filesystems are
//! mounted inside it, before or while the monitor runs. Every backend
//! must keep recording what happens below the directory the target is in.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

/// The marks each run uses: fanotify runs once with inode marks on the
/// tree's directories and once with filesystem marks; other backends once.
fn mark_kinds(backend: &str) -> Vec<Option<&'static str>> {
    if backend == "fanotify" { vec![Some("inode"), Some("filesystem")] } else { vec![None] }
}

/// `fanotify_marks` without the busy directories elsewhere on the disk
/// that happen to be ignored.
pub fn fs_marks(status: &std::collections::BTreeMap<String, String>) -> &str {
    let marks = status["fanotify_marks"].as_str();
    marks.split(", ignore ").next().unwrap_or(marks)
}

/// Start `backend` on `target`, with fanotify's marks forced to `marks`.
fn start(backend: &str, marks: Option<&str>, target: &Target, store: &Path) -> Monitord {
    let env: Vec<(&str, &str)> = marks.map(|m| ("MONITORD_FANOTIFY_MARKS", m)).into_iter().collect();
    Monitord::start_with_env(target, store, 600_000, &["--backend", backend], &env)
}

/// A tree one level below a temp dir, so the tree itself can be renamed.
fn nested() -> (TempDir, PathBuf, TempDir) {
    let parent = TempDir::new("monitord-parent-");
    let tree = parent.path().join("work");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a.txt"), "one\ntwo\n").unwrap();
    fs::write(tree.join("b.txt"), "bee\n").unwrap();
    (parent, tree, TempDir::new("monitord-store-"))
}

fn the_renamed_then_removed_tree_is_still_recorded(backend: &str) {
    for marks in mark_kinds(backend) {
        renamed_then_removed(backend, marks);
    }
}

fn renamed_then_removed(backend: &str, marks: Option<&str>) {
    let (parent, tree, store) = nested();
    fs::create_dir(tree.join("sub")).unwrap();
    fs::write(tree.join("sub/s.txt"), "s\n").unwrap();
    let target = Target::start(&tree);
    let mut m = start(backend, marks, &target, store.path());

    let moved = parent.path().join("moved");
    fs::rename(&tree, &moved).unwrap();
    fs::write(moved.join("a.txt"), "one\nTWO\n").unwrap();
    fs::write(moved.join("new.txt"), "fresh\n").unwrap();
    fs::write(moved.join("sub/s.txt"), "s\nmore\n").unwrap();
    let edited = m.sample();
    let status = m.status();
    assert_eq!(status["cwd"], moved.display().to_string(), "status shows where the tree is now: {status:?}");

    fs::remove_dir_all(&moved).unwrap();
    let removed = m.sample();
    m.stop();

    let records = dump_json(store.path());
    assert_eq!(
        changes(record(&records, edited)),
        [
            ("a.txt".into(), "modified".into()),
            ("new.txt".into(), "created".into()),
            ("sub/s.txt".into(), "modified".into())
        ]
    );
    assert_eq!(
        changes(record(&records, removed)),
        [
            ("a.txt".into(), "deleted".into()),
            ("b.txt".into(), "deleted".into()),
            ("new.txt".into(), "deleted".into()),
            ("sub/s.txt".into(), "deleted".into())
        ]
    );
}

/// A mount made by a test, detached on drop even when the test fails.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: &Path) -> Mounted {
        mount(&["-t", "tmpfs", "-o", "size=4m", "monitord-test"], at)
    }
    fn bind(from: &Path, at: &Path) -> Mounted {
        mount(&["--bind", from.to_str().unwrap()], at)
    }
    fn unmount(mut self) {
        let status = Command::new("umount").arg(&self.0).status().unwrap();
        assert!(status.success(), "umount {} (is it busy?)", self.0.display());
        self.0 = PathBuf::new();
    }
}

fn mount(args: &[&str], at: &Path) -> Mounted {
    let status = Command::new("mount").args(args).arg(at).status().unwrap();
    assert!(status.success(), "mount {args:?} {} (the tests run as root)", at.display());
    Mounted(at.to_path_buf())
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A tree with a tmpfs on `mnt` (over a directory holding `under.txt`)
/// and an empty `bind` directory.
fn tree_with_a_mount() -> (TempDir, PathBuf, TempDir, Mounted) {
    let (parent, tree, store) = nested();
    fs::create_dir(tree.join("mnt")).unwrap();
    fs::write(tree.join("mnt/under.txt"), "under\n").unwrap();
    let tmpfs = Mounted::tmpfs(&tree.join("mnt"));
    fs::write(tree.join("mnt/x.txt"), "x\n").unwrap();
    fs::create_dir(tree.join("mnt/deep")).unwrap();
    fs::write(tree.join("mnt/deep/d.txt"), "d\n").unwrap();
    fs::create_dir(tree.join("bind")).unwrap();
    (parent, tree, store, tmpfs)
}

fn paths(record: &serde_json::Value) -> Vec<&str> {
    record["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect()
}

fn writes_on_a_mount_inside_the_tree_are_recorded(backend: &str) {
    for marks in mark_kinds(backend) {
        let (_parent, tree, store, _tmpfs) = tree_with_a_mount();
        let target = Target::start(&tree);
        let mut m = start(backend, marks, &target, store.path());
        fs::write(tree.join("mnt/x.txt"), "x\nX\n").unwrap();
        fs::write(tree.join("mnt/deep/d.txt"), "d\nD\n").unwrap();
        fs::write(tree.join("mnt/y.txt"), "y\n").unwrap();
        let seq = m.sample();
        let status = m.status();
        m.stop();
        match marks {
            Some("inode") => {
                assert_eq!(status["fanotify_marks"], "inode 4 dirs", "root, bind, mnt, mnt/deep: {status:?}")
            }
            Some(_) => {
                assert_eq!(fs_marks(&status), "filesystem 2", "the tree's and the tmpfs: {status:?}")
            }
            None => assert_eq!(status["fanotify_marks"], "-", "{status:?}"),
        }
        let records = dump_json(store.path());
        assert_eq!(paths(record(&records, 1)), ["a.txt", "b.txt", "mnt/deep/d.txt", "mnt/x.txt"]);
        assert_eq!(
            changes(record(&records, seq)),
            [
                ("mnt/deep/d.txt".into(), "modified".into()),
                ("mnt/x.txt".into(), "modified".into()),
                ("mnt/y.txt".into(), "created".into())
            ],
            "{marks:?}"
        );
    }
}

/// A bind mount of another filesystem made while the monitor runs, then
/// the tmpfs unmounted: the files below it are what is there now.
fn mounts_and_unmounts_while_running_are_followed(backend: &str) {
    for marks in mark_kinds(backend) {
        let (_parent, tree, store, tmpfs) = tree_with_a_mount();
        let elsewhere = TempDir::new("monitord-elsewhere-");
        let other_fs = Mounted::tmpfs(elsewhere.path());
        fs::write(elsewhere.path().join("o.txt"), "o\n").unwrap();
        let target = Target::start(&tree);
        let mut m = start(backend, marks, &target, store.path());

        let bind = Mounted::bind(elsewhere.path(), &tree.join("bind"));
        let mounted = m.sample();
        fs::write(tree.join("bind/o.txt"), "o\nO\n").unwrap();
        fs::write(tree.join("bind/p.txt"), "p\n").unwrap();
        let on_bind = m.sample();
        let status = m.status();
        tmpfs.unmount();
        let unmounted = m.sample();
        fs::write(tree.join("mnt/under.txt"), "under\nagain\n").unwrap();
        let below = m.sample();
        m.stop();
        bind.unmount();
        drop(other_fs);

        if marks == Some("filesystem") {
            assert_eq!(fs_marks(&status), "filesystem 3", "{status:?}");
        }
        let records = dump_json(store.path());
        assert_eq!(
            changes(record(&records, mounted)),
            [("bind/o.txt".into(), "created".into())],
            "{marks:?}"
        );
        assert_eq!(
            changes(record(&records, on_bind)),
            [("bind/o.txt".into(), "modified".into()), ("bind/p.txt".into(), "created".into())],
            "{marks:?}"
        );
        assert_eq!(
            changes(record(&records, unmounted)),
            [
                ("mnt/deep/d.txt".into(), "deleted".into()),
                ("mnt/under.txt".into(), "created".into()),
                ("mnt/x.txt".into(), "deleted".into())
            ],
            "{marks:?}"
        );
        assert_eq!(
            changes(record(&records, below)),
            [("mnt/under.txt".into(), "modified".into())],
            "{marks:?}"
        );
    }
}

on_every_backend!(
    the_renamed_then_removed_tree_is_still_recorded,
    writes_on_a_mount_inside_the_tree_are_recorded
);

// inotify does not follow mounts made or removed while it runs (its
// watches stay on the covered directories): not run on inotify.
mod mounts_and_unmounts_while_running_are_followed {
    #[test]
    fn poll() {
        super::mounts_and_unmounts_while_running_are_followed("poll")
    }
    #[test]
    fn fanotify() {
        if crate::harness::fanotify_available() {
            super::mounts_and_unmounts_while_running_are_followed("fanotify")
        }
    }
}
