//! What to record: `--gitignore` (the tree's .gitignore, .ignore and
//! .git/info/exclude, with git's rules) and `--exclude-from FILE`, on
//! every backend; ignore files edited while monitoring.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::harness::*;

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn tree_of(files: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    files.iter().map(|(p, c)| (p.to_string(), c.as_bytes().to_vec())).collect()
}

fn ignored_files_never_reach_the_journal_nor_a_restore(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let t = tree.path();
    write(t, ".gitignore", "*.log\n!keep.log\nbuild/\n/top.txt\n");
    write(t, ".git/info/exclude", "private.txt\n");
    write(t, "a.txt", "a\n");
    write(t, "debug.log", "noise one\n");
    write(t, "keep.log", "kept\n");
    write(t, "top.txt", "ignored at the top\n");
    write(t, "sub/top.txt", "kept below\n");
    write(t, "build/out.txt", "noise two\n");
    write(t, "private.txt", "noise three\n");
    write(t, "sub/.gitignore", "local.txt\n");
    write(t, "sub/local.txt", "noise four\n");
    write(t, "local.txt", "kept at the top\n");
    let target = Target::start(t);
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--gitignore"]);
    write(t, "a.txt", "a\nb\n");
    write(t, "debug.log", "noise five\n");
    write(t, "build/new.txt", "noise six\n");
    write(t, "build/deeper/more.txt", "noise seven\n");
    write(t, "sub/local.txt", "noise eight\n");
    write(t, "other.log", "noise nine\n");
    write(t, "private.txt", "noise ten\n");
    let seq = m.sample();
    let status = m.status();
    m.stop();

    let records = dump_json(store.path());
    let baseline = file_paths(record(&records, 1));
    assert_eq!(
        baseline,
        [".gitignore", "a.txt", "keep.log", "local.txt", "sub/.gitignore", "sub/top.txt"],
        "ignored files are left out of the baseline"
    );
    assert_eq!(changes(record(&records, seq)), [("a.txt".into(), "modified".into())]);
    assert!(records.iter().all(|r| r["kind"] != "rescan"), "no rule changed: {records:#?}");
    let expected = tree_of(&[
        (".gitignore", "*.log\n!keep.log\nbuild/\n/top.txt\n"),
        ("a.txt", "a\nb\n"),
        ("keep.log", "kept\n"),
        ("local.txt", "kept at the top\n"),
        ("sub/.gitignore", "local.txt\n"),
        ("sub/top.txt", "kept below\n"),
    ]);
    assert_eq!(restored(store.path(), seq), expected);
    assert!(!occurs_below(store.path(), b"noise"), "nothing ignored is copied into the store");
    assert_eq!(status["last_files_read"], "1", "an ignored file costs no read: {status:?}");
    assert_eq!(status["gitignore"], "on", "{status:?}");
    assert_eq!(status["ignore_files"], "3", "{status:?}");
    assert_eq!(status["exclude_from"], "-", "{status:?}");
}

fn editing_an_ignore_file_rescans_and_restores_stay_exact(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let t = tree.path();
    write(t, "notes.txt", "notes\n");
    write(t, "cache.tmp", "v1\n");
    write(t, "sub/deep.tmp", "d1\n");
    let target = Target::start(t);
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--gitignore"]);
    let before = m.sample();

    // A new .gitignore leaves the .tmp files out: they stop being tracked.
    write(t, ".gitignore", "*.tmp\n");
    let ignored = m.sample();
    write(t, "cache.tmp", "v2\n");
    write(t, "sub/deep.tmp", "d2\n");
    let unseen = m.sample();
    // The pattern goes: they are tracked again, with their content now.
    write(t, ".gitignore", "# nothing\n");
    let back = m.sample();
    write(t, "cache.tmp", "v3\n");
    let edited = m.sample();
    let status = m.status();
    m.stop();

    let records = dump_json(store.path());
    let rescan = record(&records, ignored - 1);
    assert_eq!(rescan["kind"], "rescan", "{rescan}");
    assert!(rescan["reason"].as_str().unwrap().contains("ignore rules changed in ."), "{rescan}");
    assert_eq!(
        changes(record(&records, ignored)),
        [
            (".gitignore".into(), "created".into()),
            ("cache.tmp".into(), "deleted".into()),
            ("sub/deep.tmp".into(), "deleted".into())
        ]
    );
    assert!(changes(record(&records, unseen)).is_empty(), "ignored files are not followed");
    assert_eq!(record(&records, back - 1)["kind"], "rescan");
    assert_eq!(
        changes(record(&records, back)),
        [
            (".gitignore".into(), "modified".into()),
            ("cache.tmp".into(), "created".into()),
            ("sub/deep.tmp".into(), "created".into())
        ]
    );
    assert_eq!(changes(record(&records, edited)), [("cache.tmp".into(), "modified".into())]);
    assert_eq!(status["rescans"], "2", "{status:?}");

    assert_eq!(
        restored(store.path(), before),
        tree_of(&[("cache.tmp", "v1\n"), ("notes.txt", "notes\n"), ("sub/deep.tmp", "d1\n")])
    );
    let without = tree_of(&[(".gitignore", "*.tmp\n"), ("notes.txt", "notes\n")]);
    assert_eq!(restored(store.path(), ignored), without);
    assert_eq!(restored(store.path(), unseen), without);
    assert_eq!(
        restored(store.path(), back),
        tree_of(&[
            (".gitignore", "# nothing\n"),
            ("cache.tmp", "v2\n"),
            ("notes.txt", "notes\n"),
            ("sub/deep.tmp", "d2\n")
        ])
    );
    assert_eq!(restored(store.path(), edited)["cache.tmp"], b"v3\n");
}

fn a_nested_ignore_file_created_while_monitoring_applies_only_below_it(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let t = tree.path();
    write(t, "gen.txt", "top\n");
    write(t, "lib/gen.txt", "lib\n");
    write(t, "lib/keep.txt", "keep\n");
    let target = Target::start(t);
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--gitignore"]);
    write(t, "lib/.gitignore", "gen.txt\n");
    let seq = m.sample();
    write(t, "gen.txt", "top 2\n");
    write(t, "lib/gen.txt", "lib 2\n");
    let after = m.sample();
    m.stop();

    let records = dump_json(store.path());
    let rescan = record(&records, seq - 1);
    assert!(rescan["reason"].as_str().unwrap().contains("ignore rules changed in lib"), "{rescan}");
    assert_eq!(rescan["paths"], serde_json::json!(["lib"]), "only the directory it covers: {rescan}");
    assert_eq!(
        changes(record(&records, seq)),
        [("lib/.gitignore".into(), "created".into()), ("lib/gen.txt".into(), "deleted".into())]
    );
    assert_eq!(changes(record(&records, after)), [("gen.txt".into(), "modified".into())]);
    assert_eq!(
        restored(store.path(), after),
        tree_of(&[("gen.txt", "top 2\n"), ("lib/.gitignore", "gen.txt\n"), ("lib/keep.txt", "keep\n")])
    );
}

fn an_ignored_directory_let_in_again_is_watched_and_followed(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let t = tree.path();
    write(t, ".gitignore", "build/\n");
    write(t, "build/x/y/old.txt", "old\n");
    write(t, "src.txt", "src\n");
    let target = Target::start(t);
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--gitignore"]);
    let ignored = m.status();
    write(t, "build/x/y/noise.txt", "noise\n");
    let unseen = m.sample();
    write(t, ".gitignore", "\n");
    let back = m.sample();
    write(t, "build/x/y/new.txt", "new\n");
    let created = m.sample();
    write(t, "build/x/y/new.txt", "newer\n");
    let modified = m.sample();
    let let_in = m.status();
    m.stop();

    if backend == "inotify" {
        assert_eq!(ignored["watches"], "1", "an ignored directory is not watched: {ignored:?}");
        assert_eq!(let_in["watches"], "4", "once let in, it is: {let_in:?}");
    }
    let records = dump_json(store.path());
    assert!(changes(record(&records, unseen)).is_empty());
    assert_eq!(
        changes(record(&records, back)),
        [
            (".gitignore".into(), "modified".into()),
            ("build/x/y/noise.txt".into(), "created".into()),
            ("build/x/y/old.txt".into(), "created".into())
        ]
    );
    assert_eq!(changes(record(&records, created)), [("build/x/y/new.txt".into(), "created".into())]);
    assert_eq!(changes(record(&records, modified)), [("build/x/y/new.txt".into(), "modified".into())]);
    assert_eq!(restored(store.path(), modified)["build/x/y/new.txt"], b"newer\n");
}

fn an_ignore_file_that_leaves_itself_out_still_rules(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let t = tree.path();
    write(t, ".gitignore", ".*\n*.tmp\n");
    write(t, "a.tmp", "a\n");
    write(t, "b.txt", "b\n");
    let target = Target::start(t);
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--gitignore"]);
    write(t, ".gitignore", ".*\n");
    let seq = m.sample();
    m.stop();

    let records = dump_json(store.path());
    assert_eq!(file_paths(record(&records, 1)), ["b.txt"]);
    assert_eq!(record(&records, seq - 1)["kind"], "rescan", "its edit is seen: {records:#?}");
    assert_eq!(changes(record(&records, seq)), [("a.tmp".into(), "created".into())]);
}

fn editing_git_info_exclude_is_seen_though_git_is_excluded(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let t = tree.path();
    write(t, ".git/info/exclude", "# git ls-files --others --exclude-from=.git/info/exclude\n");
    write(t, "key.secret", "k1\n");
    write(t, "plain.txt", "p\n");
    let target = Target::start(t);
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--gitignore"]);
    write(t, ".git/info/exclude", "*.secret\n");
    let seq = m.sample();
    m.stop();

    let records = dump_json(store.path());
    assert_eq!(file_paths(record(&records, 1)), ["key.secret", "plain.txt"]);
    let rescan = record(&records, seq - 1);
    assert!(rescan["reason"].as_str().unwrap().contains("ignore rules changed in ."), "{rescan}");
    assert_eq!(changes(record(&records, seq)), [("key.secret".into(), "deleted".into())]);
    assert_eq!(restored(store.path(), seq), tree_of(&[("plain.txt", "p\n")]));
}

fn exclude_from_leaves_out_its_patterns(backend: &str) {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let elsewhere = TempDir::new("monitord-patterns-");
    let patterns = elsewhere.path().join("patterns");
    fs::write(&patterns, "*.o\n!main.o\ntmp/\n/root.txt\n").unwrap();
    let t = tree.path();
    write(t, "a.c", "int a;\n");
    write(t, "x.o", "noise\n");
    write(t, "main.o", "main\n");
    write(t, "tmp/t.txt", "noise\n");
    write(t, "root.txt", "noise\n");
    write(t, "d/root.txt", "kept\n");
    write(t, ".gitignore", "a.c\n");
    let target = Target::start(t);
    let mut m =
        Monitord::start_on(backend, &target, store.path(), &["--exclude-from", patterns.to_str().unwrap()]);
    write(t, "y.o", "noise\n");
    write(t, "tmp/u.txt", "noise\n");
    write(t, "a.c", "int a, b;\n");
    let seq = m.sample();
    let status = m.status();
    m.stop();

    let records = dump_json(store.path());
    assert_eq!(
        file_paths(record(&records, 1)),
        [".gitignore", "a.c", "d/root.txt", "main.o"],
        "without --gitignore the tree's .gitignore is a file like any other"
    );
    assert_eq!(changes(record(&records, seq)), [("a.c".into(), "modified".into())]);
    assert!(!occurs_below(store.path(), b"noise"));
    assert_eq!(status["gitignore"], "off", "{status:?}");
    assert_eq!(status["exclude_from"], patterns.to_str().unwrap(), "{status:?}");
    assert_eq!(status["ignore_files"], "0", "{status:?}");
}

on_every_backend!(
    ignored_files_never_reach_the_journal_nor_a_restore,
    editing_an_ignore_file_rescans_and_restores_stay_exact,
    a_nested_ignore_file_created_while_monitoring_applies_only_below_it,
    an_ignored_directory_let_in_again_is_watched_and_followed,
    an_ignore_file_that_leaves_itself_out_still_rules,
    editing_git_info_exclude_is_seen_though_git_is_excluded,
    exclude_from_leaves_out_its_patterns,
);

#[test]
fn an_unreadable_exclude_from_is_a_usage_error_that_leaves_nothing() {
    let tree = TempDir::new("monitord-tree-");
    let target = Target::start(tree.path());
    let parent = TempDir::new("monitord-store-");
    let store = parent.path().join("store");
    let missing = parent.path().join("no-such-patterns");
    let ran = monitord(&[
        "-i",
        "--store",
        store.to_str().unwrap(),
        "--exclude-from",
        missing.to_str().unwrap(),
        &target.pid().to_string(),
    ]);
    ran.expect_code(2);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.explain());
    assert!(ran.stderr.contains(missing.to_str().unwrap()), "names the file: {}", ran.stderr);
    assert!(ran.stderr.contains("No such file or directory"), "says why: {}", ran.stderr);
    assert!(!store.exists(), "nothing is left behind");

    let dir = parent.path();
    let ran =
        monitord(&["-i", "--store", store.to_str().unwrap(), "--exclude-from", dir.to_str().unwrap(), "1"]);
    ran.expect_code(2);
    assert!(ran.stderr.contains("Is a directory"), "{}", ran.stderr);
    assert!(!store.exists());

    let bad = parent.path().join("bad-patterns");
    fs::write(&bad, "*.o\n[z-a]\n").unwrap();
    let ran =
        monitord(&["-i", "--store", store.to_str().unwrap(), "--exclude-from", bad.to_str().unwrap(), "1"]);
    ran.expect_code(2);
    assert!(ran.stderr.contains("bad-patterns, line 2"), "names the line: {}", ran.stderr);
    assert!(!store.exists());
}

#[test]
fn inotify_watches_no_directory_made_below_one_left_out_later() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let t = tree.path();
    write(t, "build/old.txt", "old\n");
    let target = Target::start(t);
    let mut m = Monitord::start_on("inotify", &target, store.path(), &["--gitignore"]);
    assert_eq!(m.status()["watches"], "2", "the root and build/");
    write(t, ".gitignore", "build/\n");
    m.sample();
    fs::create_dir_all(t.join("build/new/deeper")).unwrap();
    write(t, "build/new/deeper/f.txt", "noise\n");
    let seq = m.sample();
    let status = m.status();
    m.stop();
    assert_eq!(status["watches"], "2", "nothing below build/ is watched any more: {status:?}");
    assert!(changes(record(&dump_json(store.path()), seq)).is_empty());
}
