//! Entries that trade places (`renameat2(RENAME_EXCHANGE)`) are recorded
//! under the names they have now, on every backend. Each sample restores
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
    let mut r = Run::start(backend, tree);
    let t = r.t().to_path_buf();

    exchange(&t.join("one.txt"), &t.join("sub/two.txt"));
    let swap = r.sample();
    fs::write(t.join("one.txt"), "second\nedited as one\n").unwrap();
    fs::write(t.join("sub/two.txt"), "first\nedited as two\n").unwrap();
    let edits = r.sample();
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
        [pair("one.txt", "modified"), pair("sub/two.txt", "modified")]
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

on_every_backend!(
    directories_moved_out_and_in_are_let_go_and_followed,
    exchanged_directories_are_recorded_under_their_new_names,
    a_file_and_a_directory_exchanged_are_followed,
    two_files_exchanged_are_followed,
);
