//! Which fanotify marks are in force, and what they cost: a small tree
//! gets an inode mark on each directory, so writes elsewhere on the same
//! filesystem reach neither the kernel queue nor the monitor; a tree past
//! the limit gets filesystem marks, switching while it runs without
//! missing a change.

use std::fs;
use std::path::Path;

use crate::harness::*;

fn start(target: &Target, store: &Path, marks: Option<&str>) -> Monitord {
    let env: Vec<(&str, &str)> = marks.map(|m| ("MONITORD_FANOTIFY_MARKS", m)).into_iter().collect();
    Monitord::start_with_env(target, store, 600_000, &["--backend", "fanotify"], &env)
}

#[test]
fn a_busy_neighbour_on_the_same_filesystem_reaches_only_filesystem_marks() {
    if !fanotify_available() {
        return;
    }
    for marks in [None, Some("filesystem")] {
        let tree = TempDir::new("monitord-tree-");
        fs::create_dir(tree.path().join("sub")).unwrap();
        // A sibling on the same filesystem (both under the temp dir).
        let neighbour = TempDir::new("monitord-neighbour-");
        let store = TempDir::new("monitord-store-");
        let target = Target::start(tree.path());
        let mut m = start(&target, store.path(), marks);
        let before: u64 = m.status()["events"].parse().unwrap();
        for i in 0..2000 {
            fs::write(neighbour.path().join(format!("n{}.txt", i % 50)), format!("{i}\n")).unwrap();
        }
        fs::write(tree.path().join("sub/mine.txt"), "mine\n").unwrap();
        let seq = m.sample();
        let status = m.status();
        m.stop();
        let events = status["events"].parse::<u64>().unwrap() - before;
        if marks.is_none() {
            assert_eq!(status["fanotify_marks"], "inode 2 dirs", "{status:?}");
            assert!(events < 20, "only the tree's events are read: {events}: {status:?}");
        } else {
            // The neighbour's directory is ignored once it is seen busy.
            assert!(status["fanotify_marks"].starts_with("filesystem 1, ignore "), "{status:?}");
            // (Other writers on the machine's disk still count: no bound.)
            let _ = events;
        }
        let records = dump_json(store.path());
        let sample = record(&records, seq);
        assert_eq!(changes(sample), [("sub/mine.txt".into(), "created".into())]);
        let by = sample["files"][0]["by"].as_array().expect("by");
        assert_eq!(by[0].as_i64(), Some(i64::from(std::process::id() as i32)), "{sample}");
    }
}

#[test]
fn a_tree_growing_past_the_limit_switches_to_filesystem_marks() {
    if !fanotify_available() {
        return;
    }
    let tree = TempDir::new("monitord-tree-");
    let t = tree.path();
    fs::create_dir(t.join("sub")).unwrap();
    fs::write(t.join("sub/s.txt"), "s\n").unwrap();
    let store = TempDir::new("monitord-store-");
    let target = Target::start(t);
    let mut m = start(&target, store.path(), Some("4"));
    assert_eq!(m.status()["fanotify_marks"], "inode 2 dirs");
    for d in 0..5 {
        fs::create_dir_all(t.join(format!("d{d}/e"))).unwrap();
        fs::write(t.join(format!("d{d}/e/f.txt")), "f\n").unwrap();
    }
    let grown = m.sample();
    let status = m.status();
    assert_eq!(crate::watched::fs_marks(&status), "filesystem 1", "{status:?}");
    fs::write(t.join("d4/e/f.txt"), "f\nmore\n").unwrap();
    fs::write(t.join("sub/s.txt"), "s\nmore\n").unwrap();
    fs::write(t.join("d0/new.txt"), "new\n").unwrap();
    let after = m.sample();
    m.stop();
    let records = dump_json(store.path());
    let created: Vec<(String, String)> =
        (0..5).map(|d| (format!("d{d}/e/f.txt"), "created".to_string())).collect();
    assert_eq!(changes(record(&records, grown)), created);
    assert_eq!(
        changes(record(&records, after)),
        [
            ("d0/new.txt".into(), "created".into()),
            ("d4/e/f.txt".into(), "modified".into()),
            ("sub/s.txt".into(), "modified".into())
        ]
    );
}

/// A busy directory outside the tree, ignored with filesystem marks, is
/// moved into the tree: what is written in it then is recorded.
#[test]
fn a_busy_directory_moved_into_the_tree_is_no_longer_ignored() {
    if !fanotify_available() {
        return;
    }
    let parent = TempDir::new("monitord-parent-");
    let tree = parent.path().join("tree");
    let busy = parent.path().join("busy");
    fs::create_dir(&tree).unwrap();
    fs::create_dir(&busy).unwrap();
    let store = TempDir::new("monitord-store-");
    let target = Target::start(&tree);
    let mut m = start(&target, store.path(), Some("filesystem"));
    for i in 0..500 {
        fs::write(busy.join(format!("b{}.txt", i % 10)), format!("{i}\n")).unwrap();
    }
    m.sample();
    let status = m.status();
    assert!(status["fanotify_marks"].contains(", ignore "), "{status:?}");
    fs::rename(&busy, tree.join("busy")).unwrap();
    let moved = m.sample();
    fs::write(tree.join("busy/b0.txt"), "changed\n").unwrap();
    fs::write(tree.join("busy/new.txt"), "new\n").unwrap();
    let written = m.sample();
    m.stop();
    let records = dump_json(store.path());
    let created: Vec<(String, String)> =
        (0..10).map(|i| (format!("busy/b{i}.txt"), "created".into())).collect();
    assert_eq!(changes(record(&records, moved)), created);
    assert_eq!(
        changes(record(&records, written)),
        [("busy/b0.txt".into(), "modified".into()), ("busy/new.txt".into(), "created".into())]
    );
}

/// A file with a name inside the tree and one outside, written through
/// the outside one: a link there at start, and one made while running.
#[test]
fn a_write_through_a_hard_link_outside_the_tree_is_recorded() {
    if !fanotify_available() {
        return;
    }
    for marks in ["inode", "filesystem"] {
        let tree = TempDir::new("monitord-tree-");
        let outside = TempDir::new("monitord-outside-");
        fs::write(tree.path().join("linked.txt"), "one\n").unwrap();
        fs::hard_link(tree.path().join("linked.txt"), outside.path().join("other-name.txt")).unwrap();
        let store = TempDir::new("monitord-store-");
        let target = Target::start(tree.path());
        let mut m = start(&target, store.path(), Some(marks));
        fs::write(outside.path().join("fresh.txt"), "fresh\n").unwrap();
        fs::hard_link(outside.path().join("fresh.txt"), tree.path().join("fresh.txt")).unwrap();
        let linked = m.sample();
        fs::write(outside.path().join("other-name.txt"), "one\ntwo\n").unwrap();
        fs::write(outside.path().join("fresh.txt"), "fresh\nagain\n").unwrap();
        let written = m.sample();
        m.stop();
        let records = dump_json(store.path());
        assert_eq!(changes(record(&records, linked)), [("fresh.txt".into(), "created".into())], "{marks}");
        let expected: Vec<(String, String)> = if marks == "inode" {
            vec![("fresh.txt".into(), "modified".into()), ("linked.txt".into(), "modified".into())]
        } else {
            // Filesystem marks from the start (a big tree) come without a
            // walk of the tree: only links made while running are known.
            vec![("fresh.txt".into(), "modified".into())]
        };
        assert_eq!(changes(record(&records, written)), expected, "{marks}");
    }
}
