//! The watched directory itself changes under the monitor: it is renamed
//! or removed while the target stays inside it, and other filesystems are
//! mounted inside it, before or while the monitor runs. Every backend
//! must keep recording what happens below the directory the target is in.

use std::fs;
use std::path::PathBuf;

use crate::harness::*;

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
    let (parent, tree, store) = nested();
    fs::create_dir(tree.join("sub")).unwrap();
    fs::write(tree.join("sub/s.txt"), "s\n").unwrap();
    let target = Target::start(&tree);
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);

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

on_every_backend!(the_renamed_then_removed_tree_is_still_recorded);
