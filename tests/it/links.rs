//! Hard links and entries that trade places: a change made through one
//! name of a file is a change of every name it has in the tree, and
//! entries exchanged with `renameat2(RENAME_EXCHANGE)` are recorded under
//! the names they have now, on every backend. Each sample restores
//! to the tree as it was, and the store verifies.

use std::fs;
use std::path::Path;

use crate::harness::*;

/// Exchange two paths atomically (`renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap();
    let b = std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap();
    // SAFETY: renameat2(2) with two NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE)
    };
    assert_eq!(rc, 0, "renameat2 RENAME_EXCHANGE: {}", std::io::Error::last_os_error());
}

/// A monitor on `backend` over `tree`, and the states recorded so far.
struct Run {
    tree: TempDir,
    store: TempDir,
    _target: Target,
    m: Monitord,
    states: Vec<(u64, std::collections::BTreeMap<String, Vec<u8>>)>,
}

impl Run {
    fn start(backend: &str, tree: TempDir) -> Run {
        let store = TempDir::new("monitord-store-");
        let target = Target::start(tree.path());
        let m = Monitord::start_on(backend, &target, store.path(), &[]);
        let states = vec![(1, snapshot(tree.path()))];
        Run { tree, store, _target: target, m, states }
    }

    fn t(&self) -> &Path {
        self.tree.path()
    }

    /// Take a sample and remember the tree as it is now.
    fn sample(&mut self) -> u64 {
        let seq = self.m.sample();
        self.states.push((seq, snapshot(self.tree.path())));
        seq
    }

    /// Stop the monitor; every sample restores to the tree as it was and
    /// the store verifies. Returns the dumped records.
    fn check(self) -> Vec<serde_json::Value> {
        self.m.stop();
        for (seq, expected) in &self.states {
            assert_eq!(&restored(self.store.path(), *seq), expected, "restore --at {seq}");
        }
        let (code, out, err) = run(&["verify", "--store", self.store.path().to_str().unwrap()]);
        assert_eq!(code, 0, "verify: {}{err}", String::from_utf8_lossy(&out));
        dump_json(self.store.path())
    }
}

fn pair(path: &str, change: &str) -> (String, String) {
    (path.to_string(), change.to_string())
}

fn an_edit_through_one_link_changes_every_name_in_the_tree(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let t = tree.path();
    fs::create_dir_all(t.join("d1")).unwrap();
    fs::create_dir_all(t.join("d2")).unwrap();
    fs::write(t.join("d1/a.txt"), "one\n").unwrap();
    fs::hard_link(t.join("d1/a.txt"), t.join("d2/b.txt")).unwrap();
    fs::write(t.join("c.txt"), "see\n").unwrap();
    fs::create_dir(t.join("more")).unwrap();
    for i in 0..100 {
        fs::write(t.join(format!("more/{i}.txt")), format!("{i}\n")).unwrap();
    }
    let mut r = Run::start(backend, tree);
    let t = r.t().to_path_buf();
    // Poll reads again what was written in the clock tick of its last
    // scan (see its module doc): the event backends only.
    let read_two = |r: &mut Run, what: &str| {
        if backend != "poll" {
            assert_eq!(r.m.status()["last_files_read"], "2", "{what}");
        }
    };

    fs::write(t.join("d1/a.txt"), "one\ntwo\n").unwrap();
    let through_a = r.sample();
    read_two(&mut r, "the two names of the file, nothing else");
    fs::write(t.join("d2/b.txt"), "one\ntwo\nthree\n").unwrap();
    let through_b = r.sample();
    // A new link to a file that had one name, then an edit through it.
    fs::hard_link(t.join("c.txt"), t.join("d1/c2.txt")).unwrap();
    r.sample();
    read_two(&mut r, "the new name and the one it links to");
    fs::write(t.join("d1/c2.txt"), "see\nsaw\n").unwrap();
    let through_new_link = r.sample();
    // A renamed link keeps sharing the edits.
    fs::rename(t.join("d2/b.txt"), t.join("d2/renamed.txt")).unwrap();
    r.sample();
    fs::write(t.join("d1/a.txt"), "after the rename\n").unwrap();
    let after_rename = r.sample();
    // A deleted name leaves the others recorded.
    fs::remove_file(t.join("d1/a.txt")).unwrap();
    r.sample();
    fs::write(t.join("d2/renamed.txt"), "alone now\n").unwrap();
    r.sample();
    // Three names, one of them in a directory created after the start.
    fs::create_dir(t.join("d3")).unwrap();
    fs::hard_link(t.join("c.txt"), t.join("d3/c3.txt")).unwrap();
    fs::write(t.join("d3/c3.txt"), "three names\n").unwrap();
    let three = r.sample();
    fs::write(t.join("c.txt"), "through the first name\n").unwrap();
    r.sample();

    let records = r.check();
    let both = [pair("d1/a.txt", "modified"), pair("d2/b.txt", "modified")];
    assert_eq!(changes(record(&records, through_a)), both);
    assert_eq!(changes(record(&records, through_b)), both);
    assert_eq!(
        changes(record(&records, through_new_link)),
        [pair("c.txt", "modified"), pair("d1/c2.txt", "modified")]
    );
    assert_eq!(
        changes(record(&records, after_rename)),
        [pair("d1/a.txt", "modified"), pair("d2/renamed.txt", "modified")]
    );
    assert_eq!(
        changes(record(&records, three)),
        [pair("c.txt", "modified"), pair("d1/c2.txt", "modified"), pair("d3/c3.txt", "created")]
    );
}

fn an_edit_through_a_link_outside_the_tree_is_recorded(backend: &str) {
    let outside = TempDir::new("monitord-outside-");
    let o = outside.path();
    let tree = TempDir::new("monitord-tree-");
    fs::write(o.join("x"), "x1\n").unwrap();
    fs::hard_link(o.join("x"), tree.path().join("in.txt")).unwrap();
    fs::write(tree.path().join("plain.txt"), "plain\n").unwrap();
    let mut r = Run::start(backend, tree);
    let t = r.t().to_path_buf();

    fs::write(o.join("x"), "x1\nx2\n").unwrap();
    let first = r.sample();
    fs::write(o.join("x"), "x1\nx2\nx3\n").unwrap();
    let again = r.sample();
    // A link made after the start, from outside into the tree.
    fs::write(o.join("y"), "y1\n").unwrap();
    fs::hard_link(o.join("y"), t.join("y.txt")).unwrap();
    r.sample();
    fs::write(o.join("y"), "y1\ny2\n").unwrap();
    let new_link = r.sample();
    // The outside name goes: the file has one name, still followed.
    fs::remove_file(o.join("x")).unwrap();
    r.sample();
    fs::write(t.join("in.txt"), "only here\n").unwrap();
    r.sample();
    // Linked again from outside while it has a watch of its own: the
    // watch is kept while a name outside the tree remains.
    fs::write(o.join("y"), "y1\ny2\ny3\n").unwrap();
    fs::hard_link(t.join("y.txt"), o.join("y2")).unwrap();
    fs::remove_file(o.join("y")).unwrap();
    r.sample();
    fs::write(o.join("y2"), "through the second outside name\n").unwrap();
    let relinked = r.sample();

    let records = r.check();
    for seq in [first, again] {
        assert_eq!(changes(record(&records, seq)), [pair("in.txt", "modified")], "seq {seq}");
    }
    for seq in [new_link, relinked] {
        assert_eq!(changes(record(&records, seq)), [pair("y.txt", "modified")], "seq {seq}");
    }
}

fn exchanged_directories_are_recorded_under_their_new_names(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let t = tree.path();
    fs::create_dir_all(t.join("A/sub")).unwrap();
    fs::create_dir_all(t.join("B")).unwrap();
    fs::create_dir_all(t.join("x/C")).unwrap();
    fs::create_dir_all(t.join("y/D/deep")).unwrap();
    fs::write(t.join("A/f1.txt"), "a one\n").unwrap();
    fs::write(t.join("A/sub/g.txt"), "a sub\n").unwrap();
    fs::write(t.join("A/same.txt"), "same name in A\n").unwrap();
    fs::write(t.join("B/f2.txt"), "b two\n").unwrap();
    fs::write(t.join("B/same.txt"), "same name in B\n").unwrap();
    fs::write(t.join("x/C/c.txt"), "c\n").unwrap();
    fs::write(t.join("y/D/deep/d.txt"), "d\n").unwrap();
    let outside = TempDir::new("monitord-outside-");
    let o = outside.path();
    fs::create_dir_all(o.join("Z/zz")).unwrap();
    fs::write(o.join("Z/z.txt"), "z\n").unwrap();
    fs::write(o.join("Z/zz/deeper.txt"), "deeper\n").unwrap();
    let mut r = Run::start(backend, tree);
    let t = r.t().to_path_buf();

    exchange(&t.join("A"), &t.join("B"));
    let swap = r.sample();
    fs::write(t.join("A/f2.txt"), "b two\nedited as A/f2\n").unwrap();
    fs::write(t.join("B/sub/g.txt"), "a sub\nedited as B/sub/g\n").unwrap();
    fs::write(t.join("B/f1.txt"), "a one\nedited as B/f1\n").unwrap();
    let edits = r.sample();
    fs::write(t.join("A/new.txt"), "new in A\n").unwrap();
    fs::create_dir(t.join("B/sub/more")).unwrap();
    fs::write(t.join("B/sub/more/m.txt"), "more\n").unwrap();
    r.sample();
    // Swapped back, and edited, within one period.
    exchange(&t.join("A"), &t.join("B"));
    fs::write(t.join("A/sub/g.txt"), "home again\n").unwrap();
    fs::write(t.join("B/f2.txt"), "home again too\n").unwrap();
    r.sample();
    // Directories in different parents, one of them nested deeper.
    exchange(&t.join("x/C"), &t.join("y/D"));
    r.sample();
    fs::write(t.join("x/C/deep/d.txt"), "d\nedited\n").unwrap();
    fs::write(t.join("y/D/c.txt"), "c\nedited\n").unwrap();
    let nested = r.sample();
    // Twice in one period: back where they were.
    exchange(&t.join("A"), &t.join("B"));
    exchange(&t.join("A"), &t.join("B"));
    fs::write(t.join("A/f1.txt"), "still A\n").unwrap();
    r.sample();
    // With a directory outside the tree: one leaves as the other comes.
    exchange(&t.join("B"), &o.join("Z"));
    fs::write(t.join("B/z.txt"), "z\nedited in the tree\n").unwrap();
    r.sample();
    fs::write(o.join("Z/f2.txt"), "edited outside the tree\n").unwrap();
    fs::write(t.join("B/zz/deeper.txt"), "deeper\nedited\n").unwrap();
    let after_outside = r.sample();

    let records = r.check();
    let swapped = changes(record(&records, swap));
    for (path, change) in &swapped {
        assert!(
            ["renamed", "modified"].contains(&change.as_str()),
            "{path} {change}: a swap moves files, it creates or deletes none: {swapped:?}"
        );
    }
    assert!(swapped.contains(&pair("B/f1.txt", "renamed")), "{swapped:?}");
    assert!(swapped.contains(&pair("B/sub/g.txt", "renamed")), "{swapped:?}");
    assert!(swapped.contains(&pair("A/f2.txt", "renamed")), "{swapped:?}");
    assert_eq!(
        changes(record(&records, edits)),
        [pair("A/f2.txt", "modified"), pair("B/f1.txt", "modified"), pair("B/sub/g.txt", "modified")]
    );
    assert_eq!(
        changes(record(&records, nested)),
        [pair("x/C/deep/d.txt", "modified"), pair("y/D/c.txt", "modified")]
    );
    assert_eq!(changes(record(&records, after_outside)), [pair("B/zz/deeper.txt", "modified")]);
}

fn a_file_and_a_directory_exchanged_are_followed(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let t = tree.path();
    fs::create_dir_all(t.join("dir/inner")).unwrap();
    fs::write(t.join("dir/in.txt"), "in the dir\n").unwrap();
    fs::write(t.join("dir/inner/deep.txt"), "deep\n").unwrap();
    fs::write(t.join("file.txt"), "a file\n").unwrap();
    let mut r = Run::start(backend, tree);
    let t = r.t().to_path_buf();

    exchange(&t.join("dir"), &t.join("file.txt"));
    r.sample();
    fs::write(t.join("file.txt/in.txt"), "in the dir\nnow under file.txt\n").unwrap();
    fs::write(t.join("dir"), "a file\nnow named dir\n").unwrap();
    let edits = r.sample();
    exchange(&t.join("dir"), &t.join("file.txt"));
    fs::write(t.join("dir/inner/deep.txt"), "deep\nhome\n").unwrap();
    r.sample();

    let records = r.check();
    assert_eq!(
        changes(record(&records, edits)),
        [pair("dir", "modified"), pair("file.txt/in.txt", "modified")]
    );
}

fn two_files_exchanged_are_followed(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let t = tree.path();
    fs::create_dir(t.join("sub")).unwrap();
    fs::write(t.join("one.txt"), "first\n").unwrap();
    fs::write(t.join("sub/two.txt"), "second\n").unwrap();
    fs::hard_link(t.join("one.txt"), t.join("link.txt")).unwrap();
    let mut r = Run::start(backend, tree);
    let t = r.t().to_path_buf();

    exchange(&t.join("one.txt"), &t.join("sub/two.txt"));
    let swap = r.sample();
    fs::write(t.join("one.txt"), "second\nedited as one\n").unwrap();
    fs::write(t.join("sub/two.txt"), "first\nedited as two\n").unwrap();
    let edits = r.sample();
    // The name linked to one.txt's file now shares sub/two.txt's edits.
    fs::write(t.join("link.txt"), "first\nedited as link\n").unwrap();
    let through_link = r.sample();
    exchange(&t.join("one.txt"), &t.join("sub/two.txt"));
    exchange(&t.join("one.txt"), &t.join("sub/two.txt"));
    r.sample();

    let records = r.check();
    assert_eq!(
        changes(record(&records, swap)),
        [pair("one.txt", "modified"), pair("sub/two.txt", "modified")]
    );
    assert_eq!(
        changes(record(&records, edits)),
        [pair("link.txt", "modified"), pair("one.txt", "modified"), pair("sub/two.txt", "modified")]
    );
    assert_eq!(
        changes(record(&records, through_link)),
        [pair("link.txt", "modified"), pair("sub/two.txt", "modified")]
    );
}

fn directories_moved_out_and_in_are_let_go_and_followed(backend: &str) {
    let outside = TempDir::new("monitord-outside-");
    let o = outside.path();
    let tree = TempDir::new("monitord-tree-");
    let t = tree.path();
    fs::create_dir_all(t.join("leaving/deep")).unwrap();
    fs::write(t.join("leaving/deep/l.txt"), "leaving\n").unwrap();
    fs::create_dir_all(o.join("coming/sub")).unwrap();
    fs::write(o.join("coming/sub/c.txt"), "coming\n").unwrap();
    let mut r = Run::start(backend, tree);
    let t = r.t().to_path_buf();

    fs::rename(t.join("leaving"), o.join("leaving")).unwrap();
    fs::rename(o.join("coming"), t.join("coming")).unwrap();
    r.sample();
    fs::write(o.join("leaving/deep/l.txt"), "not in the tree any more\n").unwrap();
    fs::write(o.join("leaving/deep/new.txt"), "nor this\n").unwrap();
    fs::write(t.join("coming/sub/c.txt"), "coming\nin the tree now\n").unwrap();
    let edits = r.sample();
    let status = r.m.status();
    let records = r.check();
    assert_eq!(changes(record(&records, edits)), [pair("coming/sub/c.txt", "modified")]);
    if backend == "inotify" {
        assert_eq!(status["watches"], "3", "., coming and coming/sub: {status:?}");
    }
}

fn repeated_exchanges_never_lose_track(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let t = tree.path();
    let dirs = ["A", "B", "C", "A/in", "B/in", "C/in"];
    for dir in dirs {
        fs::create_dir_all(t.join(dir)).unwrap();
        fs::write(t.join(dir).join("own.txt"), format!("{dir}\n")).unwrap();
    }
    let mut r = Run::start(backend, tree);
    let t = r.t().to_path_buf();
    // Each exchange keeps the shape: three directories with one inside.
    let pairs = [("A", "B"), ("B/in", "C/in"), ("A", "C"), ("A/in", "B/in"), ("C", "B"), ("C/in", "A/in")];
    for round in 0..24 {
        let (a, b) = pairs[round % pairs.len()];
        exchange(&t.join(a), &t.join(b));
        if round % 3 == 0 {
            // Twice in one period.
            let (c, d) = pairs[(round + 1) % pairs.len()];
            exchange(&t.join(c), &t.join(d));
        }
        for dir in dirs {
            let file = t.join(dir).join("own.txt");
            let mut content = fs::read(&file).unwrap();
            content.extend_from_slice(format!("round {round} as {dir}\n").as_bytes());
            fs::write(&file, content).unwrap();
        }
        r.sample();
    }
    let status = r.m.status();
    r.check();
    if backend == "inotify" {
        assert_eq!(status["watches"], "7", "the root and six directories: {status:?}");
    }
}

fn links_made_moved_and_removed_at_random_keep_every_name_right(backend: &str) {
    let outside = TempDir::new("monitord-outside-");
    let o = outside.path().to_path_buf();
    let tree = TempDir::new("monitord-tree-");
    for dir in ["d1", "d2", "d3"] {
        fs::create_dir(tree.path().join(dir)).unwrap();
    }
    fs::write(tree.path().join("d1/first.txt"), "first\n").unwrap();
    let mut r = Run::start(backend, tree);
    let t = r.t().to_path_buf();
    // fanotify drops writes through names outside the tree (see the
    // backend's module doc): it gets none.
    let through_outside = backend != "fanotify";
    let mut rng = Lcg(7);
    let mut next = 0;
    let names = |dir: &Path| {
        let mut files: Vec<std::path::PathBuf> = walkdir(dir).into_iter().filter(|p| p.is_file()).collect();
        files.sort();
        files
    };
    for round in 0..60 {
        for _ in 0..3 {
            let inside = names(&t);
            let outside_names = names(&o);
            next += 1;
            let fresh = t.join(["d1", "d2", "d3"][rng.below(3)]).join(format!("n{next}.txt"));
            match rng.below(6) {
                0 if !inside.is_empty() => {
                    let from = &inside[rng.below(inside.len())];
                    fs::hard_link(from, &fresh).unwrap();
                }
                1 if inside.len() > 1 => fs::remove_file(&inside[rng.below(inside.len())]).unwrap(),
                2 if !inside.is_empty() => fs::rename(&inside[rng.below(inside.len())], &fresh).unwrap(),
                3 if through_outside => {
                    let name = o.join(format!("o{next}"));
                    fs::write(&name, format!("outside {next}\n")).unwrap();
                    fs::hard_link(&name, &fresh).unwrap();
                }
                4 if through_outside && !outside_names.is_empty() => {
                    let name = &outside_names[rng.below(outside_names.len())];
                    let mut content = fs::read(name).unwrap();
                    content
                        .extend_from_slice(format!("round {round} through {}\n", name.display()).as_bytes());
                    fs::write(name, content).unwrap();
                }
                _ if !inside.is_empty() => {
                    let name = &inside[rng.below(inside.len())];
                    let mut content = fs::read(name).unwrap();
                    content.extend_from_slice(format!("round {round}\n").as_bytes());
                    fs::write(name, content).unwrap();
                }
                _ => fs::write(&fresh, format!("new {next}\n")).unwrap(),
            }
        }
        r.sample();
    }
    r.check();
}

/// Every path below `dir` (files and directories).
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

on_every_backend!(
    links_made_moved_and_removed_at_random_keep_every_name_right,
    repeated_exchanges_never_lose_track,
    an_edit_through_one_link_changes_every_name_in_the_tree,
    directories_moved_out_and_in_are_let_go_and_followed,
    exchanged_directories_are_recorded_under_their_new_names,
    a_file_and_a_directory_exchanged_are_followed,
    two_files_exchanged_are_followed,
);

on_every_backend!(an_edit_through_a_link_outside_the_tree_is_recorded);
