//! A random history, on every backend: files created, edited in the
//! middle, appended to, emptied, deleted, renamed (over others too),
//! chmodded, replaced by symlinks; very long lines edited in place;
//! directories made, renamed and removed; samples that changed nothing.
//! Every sample then restores to the tree exactly as it was (contents,
//! modes, link targets), the store verifies, and `undo` walks the live
//! tree back through the same points to the baseline, one random range at
//! a time, matching each.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::*;
use crate::undo::{Live, live};

/// A few lines of words; sometimes without the last newline, sometimes
/// with CRLF endings.
fn text(rng: &mut Lcg, tag: usize) -> Vec<u8> {
    let ending = if rng.below(5) == 0 { "\r\n" } else { "\n" };
    let mut out = String::new();
    for line in 0..rng.below(12) {
        let words = ["alpha", "beta", "gamma", "delta", "", "  indented", "tab\there"];
        out.push_str(&format!("{tag} {line} {}{ending}", words[rng.below(words.len())]));
    }
    if rng.below(6) == 0 {
        out.push_str("no newline at the end");
    }
    out.into_bytes()
}

/// The regular files, symlinks and directories below `dir`, each list
/// sorted.
fn entries(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>) {
    let (mut files, mut links, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                links.push(path);
            } else if meta.is_dir() {
                dirs.push(path.clone());
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    links.sort();
    dirs.sort();
    (files, links, dirs)
}

/// One random change to the tree.
fn change(t: &Path, rng: &mut Lcg, n: usize) {
    let (files, links, mut dirs) = entries(t);
    // The tree itself goes last: `dirs[..dirs.len() - 1]` are the others.
    dirs.push(t.to_path_buf());
    let dir = rng.pick(&dirs).unwrap().clone();
    let fresh = dir.join(format!("f{n}.txt"));
    match rng.below(13) {
        0 | 1 => fs::write(&fresh, text(rng, n)).unwrap(),
        2 if !files.is_empty() => {
            // An edit in the middle: one line replaced.
            let path = rng.pick(&files).unwrap();
            let content = fs::read(path).unwrap();
            let mut lines: Vec<&[u8]> = content.split_inclusive(|&b| b == b'\n').collect();
            let replacement = format!("edited {n}\n");
            if lines.is_empty() {
                lines.push(replacement.as_bytes());
            } else {
                let at = rng.below(lines.len());
                lines[at] = replacement.as_bytes();
            }
            fs::write(path, lines.concat()).unwrap();
        }
        3 if !files.is_empty() => {
            let path = rng.pick(&files).unwrap();
            let mut content = fs::read(path).unwrap();
            content.extend_from_slice(&text(rng, n));
            fs::write(path, content).unwrap();
        }
        4 if !files.is_empty() => fs::write(rng.pick(&files).unwrap(), b"").unwrap(),
        5 if !files.is_empty() => fs::remove_file(rng.pick(&files).unwrap()).unwrap(),
        6 if !files.is_empty() => {
            // A rename, over another file now and then.
            let from = rng.pick(&files).unwrap();
            let to = if rng.below(3) == 0 { rng.pick(&files).unwrap().clone() } else { fresh };
            fs::rename(from, to).unwrap();
        }
        7 if !files.is_empty() => {
            let mode = [0o644, 0o755, 0o600, 0o640][rng.below(4)];
            fs::set_permissions(rng.pick(&files).unwrap(), fs::Permissions::from_mode(mode)).unwrap();
        }
        8 => {
            // A link to a file or to nowhere; or an existing link retargeted.
            let target = match rng.pick(&files) {
                Some(file) if rng.below(3) > 0 => file.file_name().unwrap().to_string_lossy().into_owned(),
                _ => format!("../nowhere-{n}"),
            };
            let at = match rng.pick(&links) {
                Some(link) if rng.below(2) == 0 => {
                    fs::remove_file(link).unwrap();
                    link.clone()
                }
                _ => dir.join(format!("l{n}")),
            };
            std::os::unix::fs::symlink(target, at).unwrap();
        }
        9 => {
            // A very long line, then one byte of it changed in place.
            let long = dir.join(format!("long{n}.txt"));
            let line: String = (0..900).map(|i| format!("{:07}", i * 7 + n)).collect();
            fs::write(&long, format!("head\n{line}\ntail\n")).unwrap();
            if let Some(old) =
                files.iter().find(|f| f.file_name().unwrap().to_string_lossy().starts_with("long"))
            {
                let mut content = fs::read(old).unwrap();
                let at = content.len() / 2;
                // Emptied since, it may have no middle.
                if let Some(byte) = content.get_mut(at) {
                    *byte = b'x';
                    fs::write(old, content).unwrap();
                }
            }
        }
        10 => {
            let sub = dir.join(format!("d{n}"));
            fs::create_dir(&sub).unwrap();
            fs::write(sub.join("inside.txt"), text(rng, n)).unwrap();
        }
        11 if dirs.len() > 1 => {
            // A directory renamed, with what it holds.
            let from = rng.pick(&dirs[..dirs.len() - 1]).unwrap();
            fs::rename(from, t.join(format!("moved{n}"))).unwrap();
        }
        12 if dirs.len() > 1 && rng.below(3) == 0 => {
            let gone = rng.pick(&dirs[..dirs.len() - 1]).unwrap();
            fs::remove_dir_all(gone).unwrap();
        }
        _ => fs::write(&fresh, text(rng, n)).unwrap(),
    }
}

/// A recorded random history: the tree, the store, the running monitor
/// (and its target), the state after each sample, and the generator.
struct History {
    tree: TempDir,
    store: TempDir,
    _target: Target,
    m: Monitord,
    states: Vec<(u64, Live)>,
    rng: Lcg,
    seed: u64,
}

/// Record `samples` samples of random changes on `backend` with a ring of
/// `ring` bytes. `MONITORD_SWEEP_SEED=N` tries another history.
fn record_history(backend: &str, samples: usize, ring: &str) -> History {
    let seed: u64 = std::env::var("MONITORD_SWEEP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(17);
    let tree = TempDir::new("monitord-tree-");
    let t = tree.path();
    fs::create_dir(t.join("src")).unwrap();
    fs::write(t.join("README.md"), "# sweep\n").unwrap();
    fs::write(t.join("src/main.rs"), "fn main() {}\n").unwrap();
    let store = TempDir::new("monitord-store-");
    let target = Target::start(t);
    let mut m = Monitord::start_on(backend, &target, store.path(), &["--ring-size", ring]);
    let mut states = vec![(1, live(t))];
    let mut rng = Lcg(backend.len() as u64 * 1_000_003 + seed);
    let mut n = 0;
    for _ in 0..samples {
        // One sample in six changes nothing: idle points are restored and
        // undone to as well.
        for _ in 0..[0, 1, 1, 2, 3, 4][rng.below(6)] {
            n += 1;
            change(t, &mut rng, n);
        }
        let seq = m.sample();
        states.push((seq, live(t)));
    }
    History { tree, store, _target: target, m, states, rng, seed }
}

/// Restore `seq` of `store` and compare it with `want`.
fn restores_to(store: &Path, seq: u64, want: &Live, what: &str) {
    let dest = TempDir::new("monitord-restore-");
    let out = dest.path().join("tree");
    let s = store.to_str().unwrap();
    monitord(&["restore", "--store", s, "--at", &seq.to_string(), out.to_str().unwrap()]).expect_success();
    assert_eq!(&live(&out), want, "restore --at {seq} ({what})");
}

fn a_random_history_restores_and_undoes_exactly(backend: &str) {
    // `MONITORD_LONG=1` runs a longer history. A small ring: every reader
    // copies and scans the whole of it, which a debug build does slowly;
    // this one still never wraps.
    let (samples, ring) = if std::env::var_os("MONITORD_LONG").is_some() { (200, "16M") } else { (30, "4M") };
    let History { tree, store, _target, mut m, states, mut rng, seed } =
        record_history(backend, samples, ring);
    let t = tree.path();
    let s = store.path().to_str().unwrap();
    assert_eq!(dump_json(store.path())[0]["seq"], 1, "the ring did not wrap");

    for (seq, want) in &states {
        restores_to(store.path(), *seq, want, &format!("a sample on {backend}, seed {seed}"));
        // blame gives the file's lines as of that point, each from a record
        // no newer than it.
        let texts: Vec<(&String, &Vec<u8>)> =
            want.0.iter().filter(|(path, _)| want.1.contains_key(*path)).collect();
        let Some((path, content)) = rng.pick(&texts) else { continue };
        let out = monitord(&["blame", "--store", s, "--at", &seq.to_string(), "--json", path.as_str()])
            .expect_success()
            .text();
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        let lines = out["lines"].as_array().unwrap();
        let joined: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
        let joined = joined.join("\n");
        assert!(
            content.as_slice() == joined.as_bytes() || content.as_slice() == format!("{joined}\n").as_bytes(),
            "blame {path} --at {seq} on {backend}, seed {seed}: {out:#}"
        );
        assert!(lines.iter().all(|l| l["seq"].as_u64().unwrap() <= *seq), "blame {path} --at {seq}: {out:#}");
    }

    // Back to the baseline through random points: each undo starts where
    // the live tree is (the previous point) and must leave it exactly as
    // it was at the point it names. The first ones go through the running
    // monitor, which records each as an undo (the next sample then finds
    // nothing to record); the rest are applied without a monitor.
    assert_eq!(&live(t), &states.last().unwrap().1, "the live tree is the newest sample");
    let mut at = states.len() - 1;
    let mut newest = states[at].0;
    let mut after_undo = Vec::new();
    while at > states.len() / 2 {
        let to = rng.below(at);
        let point = states[to].0.to_string();
        let before = live(t);
        monitord(&["undo", "--store", s, "--dry-run", &point]).expect_success();
        assert_eq!(live(t), before, "undo --dry-run {point} writes nothing (seed {seed})");
        monitord(&["undo", "--store", s, &point]).expect_success();
        assert_eq!(&live(t), &states[to].1, "undo to {point} through the monitor on {backend}, seed {seed}");
        newest = m.sample();
        after_undo.push((newest, to));
        at = to;
    }
    m.stop();
    let records = dump_json(store.path());
    for &(seq, to) in &after_undo {
        restores_to(store.path(), seq, &states[to].1, &format!("after an undo on {backend}, seed {seed}"));
        let files = record(&records, seq)["files"].as_array().map(Vec::len);
        assert_eq!(files, Some(0), "the sample after an undo records nothing more (seq {seq}, seed {seed})");
    }
    let undos = records.iter().filter(|r| r["kind"] == "undo").count();
    assert_eq!(undos, after_undo.len(), "one undo record per undo through the monitor");
    while at > 0 {
        let to = if at == 1 { 0 } else { rng.below(at) };
        let range = format!("{}..{}", states[to].0, newest);
        monitord(&["undo", "--store", s, &range]).expect_success();
        assert_eq!(&live(t), &states[to].1, "undo {range} on {backend}, seed {seed}");
        newest = states[to].0;
        at = to;
    }
    monitord(&["verify", "--store", s]).expect_success();
}

/// The same on a ring so small that it wraps past the baseline: every
/// sample it still holds restores exactly (modes then come from the
/// store's anchor), the ones it dropped are refused, and undo (which
/// needs the baseline to know the watched directory) is refused whole.
fn a_random_history_on_a_ring_that_wraps_restores_what_it_holds(backend: &str) {
    let History { tree, store, _target, m, states, rng: _, seed } = record_history(backend, 250, "96K");
    m.stop();
    let t = tree.path();
    let s = store.path().to_str().unwrap();
    let oldest = dump_json(store.path())[0]["seq"].as_u64().unwrap();
    assert!(oldest > 1, "the ring wrapped past the baseline (oldest held: {oldest})");
    for (seq, want) in &states {
        if *seq >= oldest {
            restores_to(store.path(), *seq, want, &format!("a held sample on {backend}, seed {seed}"));
        } else {
            let dest = TempDir::new("monitord-restore-");
            let out = dest.path().join("tree");
            monitord(&["restore", "--store", s, "--at", &seq.to_string(), out.to_str().unwrap()])
                .expect_code(1);
        }
    }
    monitord(&["verify", "--store", s]).expect_success();
    // undo needs the watched directory, which only a baseline names.
    let newest = states.last().unwrap().0;
    let ran = monitord(&["undo", "--store", s, &format!("{oldest}..{newest}")]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("its baseline is no longer in the ring"), "{}", ran.explain());
    assert_eq!(&live(t), &states.last().unwrap().1, "a refused undo writes nothing");
}

on_every_backend!(
    a_random_history_restores_and_undoes_exactly,
    a_random_history_on_a_ring_that_wraps_restores_what_it_holds
);
