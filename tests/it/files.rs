//! Every kind of change to the tree, checked in the `--json` dump, on
//! every backend.

use std::fs;
use std::os::unix::fs::symlink;

use crate::harness::*;

fn setup() -> (TempDir, TempDir, Target) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("a.txt"), "one\ntwo\nthree\n").unwrap();
    fs::write(tree.path().join("b.txt"), "bee\n").unwrap();
    let target = Target::start(tree.path());
    (tree, store, target)
}

fn edit_append_create_delete_are_recorded(backend: &str) {
    let (tree, store, target) = setup();
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    let t = tree.path();

    fs::write(t.join("a.txt"), "one\nTWO\nthree\n").unwrap();
    let edit = m.sample();
    let mut f = fs::OpenOptions::new().append(true).open(t.join("b.txt")).unwrap();
    std::io::Write::write_all(&mut f, b"more\n").unwrap();
    drop(f);
    let append = m.sample();
    fs::write(t.join("new.txt"), "fresh\n").unwrap();
    let create = m.sample();
    fs::remove_file(t.join("b.txt")).unwrap();
    let delete = m.sample();
    let nothing = m.sample();
    m.stop();

    let records = dump_json(store.path());
    assert_eq!(record(&records, 1)["kind"], "baseline");
    let baseline: Vec<&str> = file_paths(record(&records, 1));
    assert_eq!(baseline, ["a.txt", "b.txt"]);
    assert_eq!(changes(record(&records, edit)), [("a.txt".into(), "modified".into())]);
    let forward = record(&records, edit)["files"][0]["forward"].as_str().unwrap();
    assert!(forward.contains("-two\n+TWO\n"), "{forward}");
    let reverse = record(&records, edit)["files"][0]["reverse"].as_str().unwrap();
    assert!(reverse.contains("-TWO\n+two\n"), "{reverse}");
    assert_eq!(changes(record(&records, append)), [("b.txt".into(), "modified".into())]);
    assert_eq!(changes(record(&records, create)), [("new.txt".into(), "created".into())]);
    assert_eq!(changes(record(&records, delete)), [("b.txt".into(), "deleted".into())]);
    assert_eq!(record(&records, nothing)["kind"], "sample");
    assert!(changes(record(&records, nothing)).is_empty(), "an idle sample records nothing");
}

fn renames_are_recorded_as_renames(backend: &str) {
    let (tree, store, target) = setup();
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    let t = tree.path();

    fs::rename(t.join("a.txt"), t.join("c.txt")).unwrap();
    let plain = m.sample();
    fs::create_dir(t.join("sub")).unwrap();
    fs::rename(t.join("b.txt"), t.join("sub/b.txt")).unwrap();
    let into_new_dir = m.sample();
    m.stop();

    let records = dump_json(store.path());
    let r = record(&records, plain);
    assert_eq!(changes(r), [("c.txt".into(), "renamed".into())]);
    assert_eq!(r["files"][0]["from"], "a.txt");
    let r = record(&records, into_new_dir);
    assert_eq!(changes(r), [("sub/b.txt".into(), "renamed".into())]);
    assert_eq!(r["files"][0]["from"], "b.txt");
}

fn write_temp_then_rename_is_one_modification(backend: &str) {
    let (tree, store, target) = setup();
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    let t = tree.path();
    fs::write(t.join(".a.txt.swp"), "one\ntwo\nthree\nfour\n").unwrap();
    fs::rename(t.join(".a.txt.swp"), t.join("a.txt")).unwrap();
    let seq = m.sample();
    m.stop();
    let records = dump_json(store.path());
    assert_eq!(changes(record(&records, seq)), [("a.txt".into(), "modified".into())]);
}

fn files_in_a_fresh_directory_tree_are_not_missed(backend: &str) {
    let (tree, store, target) = setup();
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    let t = tree.path();
    let deep = t.join("x/y/z");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("deep.txt"), "deep\n").unwrap();
    fs::write(t.join("x/top.txt"), "top\n").unwrap();
    let seq = m.sample();
    // Files created in a directory whose watch was just added are seen too.
    fs::write(deep.join("later.txt"), "later\n").unwrap();
    let later = m.sample();
    let status = m.status();
    m.stop();
    let records = dump_json(store.path());
    assert_eq!(
        changes(record(&records, seq)),
        [("x/top.txt".into(), "created".into()), ("x/y/z/deep.txt".into(), "created".into())]
    );
    assert_eq!(changes(record(&records, later)), [("x/y/z/later.txt".into(), "created".into())]);
    if backend == "inotify" {
        assert_eq!(status["watches"], "4", "root, x, x/y and x/y/z are watched: {status:?}");
        assert_eq!(status["last_files_read"], "1", "only the dirty file is read: {status:?}");
    }
    if backend == "poll" {
        // a.txt b.txt x x/top.txt x/y x/y/z x/y/z/deep.txt x/y/z/later.txt
        assert_eq!(status["last_scan_entries"], "8", "the scan saw the whole tree: {status:?}");
        assert!(status["last_scan_us"].parse::<u64>().unwrap() > 0, "{status:?}");
        // The new file, and the files written in the clock tick of the
        // previous scan, which are looked at once more.
        let read: u64 = status["last_files_read"].parse().unwrap();
        assert!((1..=3).contains(&read), "only dirty files are read: {status:?}");
    }
}

fn binary_files_are_not_recorded(backend: &str) {
    let (tree, store, target) = setup();
    fs::write(tree.path().join("blob.bin"), b"\x00\x01\x02binary\x00").unwrap();
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    fs::write(tree.path().join("blob.bin"), b"\x00\x01\x02changed\x00").unwrap();
    fs::write(tree.path().join("new.bin"), b"\x7fELF\x02\x01\x01\x00\x00\x00").unwrap();
    let seq = m.sample();
    m.stop();
    let records = dump_json(store.path());
    assert!(changes(record(&records, seq)).is_empty(), "{:?}", record(&records, seq));
    assert!(!occurs_below(store.path(), b"binary"));
}

fn latin1_file_is_recorded_and_restored_byte_exact(backend: &str) {
    let (tree, store, target) = setup();
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    let latin1: &[u8] = b"caf\xe9 cr\xe8me\nna\xefve\n";
    fs::write(tree.path().join("latin1.txt"), latin1).unwrap();
    let created = m.sample();
    fs::write(tree.path().join("latin1.txt"), b"caf\xe9\n").unwrap();
    let modified = m.sample();
    m.stop();
    let records = dump_json(store.path());
    let file = &record(&records, created)["files"][0];
    assert_eq!(file["change"], "created");
    assert!(file["forward"]["bytes"].is_string(), "non-UTF-8 diff is base64: {file}");
    assert_eq!(restored(store.path(), created)["latin1.txt"], latin1);
    assert_eq!(restored(store.path(), modified)["latin1.txt"], b"caf\xe9\n");
}

fn symlinks_are_recorded_as_links_never_followed(backend: &str) {
    let (tree, store, target) = setup();
    let outside = TempDir::new("monitord-outside-");
    let secret = b"TOP-SECRET-CONTENT-1234";
    fs::write(outside.path().join("secret.txt"), secret).unwrap();
    fs::create_dir(outside.path().join("dir")).unwrap();
    fs::write(outside.path().join("dir/inner.txt"), secret).unwrap();
    symlink(outside.path().join("secret.txt"), tree.path().join("at-start")).unwrap();
    let mut m = Monitord::start_on(backend, &target, store.path(), &[]);
    symlink(outside.path().join("secret.txt"), tree.path().join("link")).unwrap();
    symlink(outside.path().join("dir"), tree.path().join("dirlink")).unwrap();
    let seq = m.sample();
    m.stop();
    let records = dump_json(store.path());
    let files = &record(&records, seq)["files"];
    let link = files.as_array().unwrap().iter().find(|f| f["path"] == "link").expect("link recorded");
    assert_eq!(link["node"], "symlink");
    assert!(
        !occurs_below(store.path(), secret),
        "the link target's content must appear nowhere in the store"
    );
    let tree_now = restored(store.path(), seq);
    let target = format!("-> {}", outside.path().join("secret.txt").display());
    assert_eq!(tree_now["link"], target.as_bytes());
    assert!(!tree_now.contains_key("dirlink/inner.txt"));
}

fn excluded_paths_and_a_store_inside_the_tree_are_left_out(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    fs::create_dir_all(tree.path().join(".git")).unwrap();
    fs::write(tree.path().join(".git/HEAD"), "ref\n").unwrap();
    fs::write(tree.path().join("keep.txt"), "keep\n").unwrap();
    let target = Target::start(tree.path());
    let store = tree.path().join(".monitord-store");
    let mut m = Monitord::start_on(backend, &target, &store, &["--exclude", ".git", "--exclude", "*.log"]);
    fs::write(tree.path().join(".git/HEAD"), "changed\n").unwrap();
    fs::write(tree.path().join("debug.log"), "noise\n").unwrap();
    fs::write(tree.path().join("keep.txt"), "kept\n").unwrap();
    let seq = m.sample();
    let again = m.sample();
    m.stop();
    let records = dump_json(&store);
    let baseline: Vec<&str> = file_paths(record(&records, 1));
    assert_eq!(baseline, ["keep.txt"]);
    assert_eq!(changes(record(&records, seq)), [("keep.txt".into(), "modified".into())]);
    assert!(changes(record(&records, again)).is_empty(), "the monitor's own writes are never recorded");
}

fn large_files_are_listed_as_skipped(backend: &str) {
    let (tree, store, target) = setup();
    fs::write(tree.path().join("big.txt"), "x\n".repeat(2048)).unwrap();
    let m = Monitord::start_on(backend, &target, store.path(), &["--max-file-size", "1K"]);
    m.stop();
    let records = dump_json(store.path());
    let skipped = &record(&records, 1)["skipped"];
    assert_eq!(skipped[0]["path"], "big.txt", "{skipped}");
    assert!(skipped[0]["reason"].as_str().unwrap().contains("too large"));
    assert!(!occurs_below(store.path(), &"x\n".repeat(600).into_bytes()));
}

fn a_full_queue_becomes_a_counted_rescan_and_loses_nothing(backend: &str) {
    let (tree, store, target) = setup();
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--queue-capacity", "4"]);
    for i in 0..50 {
        fs::write(tree.path().join(format!("burst{i:02}.txt")), format!("{i}\n")).unwrap();
    }
    let seq = m.sample();
    let status = m.status();
    m.stop();
    let records = dump_json(store.path());
    let created = changes(record(&records, seq));
    assert_eq!(created.len(), 50, "every file of the burst is recorded: {created:?}");
    assert!(created.iter().all(|(_, change)| change == "created"));
    let rescan = record(&records, seq - 1);
    assert_eq!(rescan["kind"], "rescan", "the lost events are a record of their own");
    assert!(rescan["reason"].as_str().unwrap().contains("overflow"), "{rescan}");
    assert_eq!(status["rescans"], "1", "{status:?}");
    assert!(status["overflows"].parse::<u64>().unwrap() >= 1, "{status:?}");
}

on_every_backend!(
    edit_append_create_delete_are_recorded,
    renames_are_recorded_as_renames,
    write_temp_then_rename_is_one_modification,
    files_in_a_fresh_directory_tree_are_not_missed,
    binary_files_are_not_recorded,
    latin1_file_is_recorded_and_restored_byte_exact,
    symlinks_are_recorded_as_links_never_followed,
    excluded_paths_and_a_store_inside_the_tree_are_left_out,
    large_files_are_listed_as_skipped,
    a_full_queue_becomes_a_counted_rescan_and_loses_nothing,
);
