//! `verify`: check a store end to end and name every problem.
//!
//! 1. The ring: a usable header, and every frame's checksum, length and
//!    sequence number ([`Snapshot::scan`]), in either ring version; a
//!    compressed frame that does not inflate to exactly its recorded
//!    length is damage. A torn last record (the writer died mid-append) is
//!    not damage.
//! 2. Every record decodes.
//! 3. Every epoch's history replays: starting from the epoch's mirror (the
//!    tree as of its newest record), each sample's reverse patches are
//!    applied newest first, each checked against the hashes it carries;
//!    when the epoch's baseline is still in the ring, the tree reached must
//!    equal it, file by file. The mirror is read in any of its formats
//!    (packs 1 to 3, log entries compressed or not), every entry inflated
//!    within its recorded length and checked against its hash. A mirror file that does not match the journal
//!    is found by one check or the other. A crash between committing the
//!    newest record and updating the mirror leaves the mirror behind by
//!    that record, partly or wholly (the next start repairs it): the
//!    newest epoch's mirror is rolled forward by its last sample, in
//!    memory, before the replay, so that state is not taken for damage.
//!
//! A store with neither a ring nor a mirror (a monitor that failed to
//! start before its journal existed) holds no record and is sound.
//!
//! The store's shared lock is held throughout, so a live monitor's commits
//! are seen whole.

use std::fmt;
use std::path::Path;

use crate::diff;
use crate::history::{self, TreeState};
use crate::journal::Snapshot;
use crate::journal::record::{Body, Record};
use crate::mirror::Mirror;
use crate::render::human::sanitize;
use crate::store::{self, LockFile, LockMode};

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The record concerned, when there is one.
    pub seq: Option<u64>,
    /// The file concerned, when there is one (printable).
    pub path: Option<String>,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(seq) = self.seq {
            write!(f, "seq {seq}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.what)
    }
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
    /// Intact records read.
    pub records: usize,
    /// Epochs replayed.
    pub epochs: usize,
    /// The last record was torn by a crash and ignored (not damage).
    pub torn_tail: bool,
    /// Files of the newest sample the mirror had not caught up with (a
    /// crash before the mirror was updated; not damage).
    pub mirror_behind: usize,
}

fn problem(seq: Option<u64>, path: Option<String>, what: impl Into<String>) -> Problem {
    Problem { seq, path, what: what.into() }
}

/// Check the store at `store_dir`.
///
/// # Errors
/// [`store::Error`] when the store's lock cannot be taken; everything else
/// is a [`Problem`] in the report.
pub fn verify(store_dir: &Path) -> Result<Report, store::Error> {
    let mut report = Report::default();
    let ring_path = store_dir.join(store::RING_FILE);
    let lock = LockFile::open(store_dir)?;
    let _guard = lock.lock(LockMode::Shared)?;
    if std::fs::symlink_metadata(&ring_path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        && crate::mirror::epochs(store_dir).is_empty()
    {
        // A monitor that failed to start before its journal existed:
        // nothing was recorded, so nothing can be damaged.
        return Ok(report);
    }
    let snapshot = match Snapshot::read(&ring_path) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            report.problems.push(problem(None, None, crate::render::error_chain(&e)));
            return Ok(report);
        }
    };
    // Each record is decoded as the scan finds it. Of a run of idle
    // samples (nothing to replay in them) only the first and the last are
    // kept: a full ring of an idle process holds millions.
    let mut records: Vec<(u64, Record)> = Vec::new();
    let mut run_end: Option<(u64, Record)> = None;
    let mut undecodable = Vec::new();
    let (damage, torn_tail) = snapshot.scan_each(|frame| match Record::decode(&frame.payload) {
        Ok(record) => {
            report.records += 1;
            let idle = crate::query::is_idle(&record);
            let in_run = idle
                && records.last().is_some_and(|(_, r)| crate::query::is_idle(r) && r.epoch == record.epoch);
            if in_run {
                run_end = Some((frame.seq, record));
            } else {
                records.extend(run_end.take());
                records.push((frame.seq, record));
            }
        }
        Err(e) => undecodable.push(problem(Some(frame.seq), None, format!("cannot be decoded: {e}"))),
    });
    drop(snapshot);
    report.torn_tail = torn_tail;
    for damage in &damage {
        report.problems.push(problem(
            Some(damage.expected_seq),
            None,
            format!("damaged record at offset {}: {}", damage.offset, damage.what),
        ));
    }
    report.problems.extend(undecodable);
    records.extend(run_end);
    let groups: Vec<&[(u64, Record)]> = records.chunk_by(|a, b| a.1.epoch == b.1.epoch).collect();
    for (i, group) in groups.iter().enumerate() {
        report.epochs += 1;
        let newest = i + 1 == groups.len();
        report.mirror_behind += check_epoch(store_dir, group, newest, &mut report.problems);
    }
    Ok(report)
}

/// Replay one epoch back from its mirror, and compare with its baseline.
/// Returns how many files of the mirror were behind the epoch's last
/// sample (only looked for in the `newest_epoch`).
fn check_epoch(
    store_dir: &Path,
    records: &[(u64, Record)],
    newest_epoch: bool,
    problems: &mut Vec<Problem>,
) -> usize {
    let Some((newest, first)) = records.last().map(|(seq, r)| (*seq, r)) else { return 0 };
    let epoch = first.epoch;
    check_modes(records, problems);
    let mut tree: TreeState = match Mirror::open_existing(store_dir, epoch).and_then(|m| m.load_all()) {
        Ok(tree) => tree,
        Err(e) => {
            problems.push(problem(
                Some(newest),
                None,
                format!("the mirror of epoch {epoch} cannot be read: {e}"),
            ));
            return 0;
        }
    };
    let behind = match records.last() {
        Some((_, Record { body: Body::Sample(sample) | Body::Undo { sample, .. }, .. })) if newest_epoch => {
            roll_forward(&mut tree, &sample.files)
        }
        _ => 0,
    };
    for (seq, record) in records.iter().rev() {
        match &record.body {
            Body::Sample(sample) | Body::Undo { sample, .. } => {
                if let Err(e) = history::apply_reverse(&mut tree, &sample.files) {
                    problems.push(problem(
                        Some(*seq),
                        Some(e.path),
                        format!("{} (replaying back from mirror/{epoch})", e.what),
                    ));
                    return behind;
                }
            }
            Body::Baseline(baseline) => {
                compare_with_baseline(*seq, epoch, &tree, baseline, problems);
                return behind;
            }
            _ => {}
        }
    }
    behind
}

/// Follow the epoch's modes forwards from its baseline: a change that says
/// what a file's mode was must agree with what the records before it said.
fn check_modes(records: &[(u64, Record)], problems: &mut Vec<Problem>) {
    let mut modes: Option<history::Modes> = None;
    for (seq, record) in records {
        match &record.body {
            Body::Baseline(baseline) => {
                modes = Some(
                    baseline.files.iter().filter(|f| f.mode != 0).map(|f| (f.path.clone(), f.mode)).collect(),
                );
            }
            Body::Sample(sample) | Body::Undo { sample, .. } => {
                let Some(modes) = modes.as_mut() else { continue };
                for change in &sample.files {
                    let before = modes.get(change.from.as_ref().unwrap_or(&change.path));
                    if let (Some(said), Some(known)) = (change.old_mode, before)
                        && said != *known
                    {
                        problems.push(problem(
                            Some(*seq),
                            Some(sanitize(&change.path)),
                            format!("recorded as changed from mode {said:04o}, but the records before leave it {known:04o}"),
                        ));
                    }
                    history::modes_forward(modes, std::slice::from_ref(change));
                }
            }
            _ => {}
        }
    }
}

/// Bring `tree` (a mirror) up to date with its last sample, as start-up
/// repair does ([`history::roll_forward`]). Returns how many changes were
/// completed; one that does not apply is left for the replay to report.
fn roll_forward(tree: &mut TreeState, changes: &[crate::journal::record::FileChange]) -> usize {
    match history::roll_forward(tree, changes) {
        Ok(rolled) => rolled,
        Err(never) => match never {},
    }
}

fn compare_with_baseline(
    seq: u64,
    epoch: u64,
    tree: &TreeState,
    baseline: &crate::journal::record::Baseline,
    problems: &mut Vec<Problem>,
) {
    let mut listed = std::collections::BTreeSet::new();
    for file in &baseline.files {
        listed.insert(file.path.as_slice());
        let path = Some(sanitize(&file.path));
        match tree.get(&file.path) {
            None => problems.push(problem(
                Some(seq),
                path,
                format!("in the baseline but missing from mirror/{epoch} after replay"),
            )),
            Some((node, content)) if *node != file.node || diff::hash(content) != file.hash => {
                problems.push(problem(
                    Some(seq),
                    path,
                    format!(
                        "mirror/{epoch} does not match the journal (hash {:016x}, baseline {:016x})",
                        diff::hash(content),
                        file.hash
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    for path in tree.keys().filter(|p| !listed.contains(p.as_slice())) {
        problems.push(problem(
            Some(seq),
            Some(sanitize(path)),
            format!("in mirror/{epoch} but not in the journal"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Patch;
    use crate::journal::record::{Change, FileChange, Node};
    use std::time::Duration;

    fn change(path: &[u8], kind: Change, old: &[u8], new: &[u8]) -> FileChange {
        let patch = Patch::compute(old, new, Duration::from_millis(100));
        FileChange::new(path.to_vec(), kind, None, Node::File, patch)
    }

    fn state(files: &[(&[u8], &[u8])]) -> TreeState {
        files.iter().map(|(p, c)| (p.to_vec(), (Node::File, c.to_vec()))).collect()
    }

    #[test]
    fn a_mode_change_that_contradicts_the_records_before_is_a_problem() {
        use crate::journal::record::{Baseline, FORMAT_VERSION, FileEntry, Sample};
        let record = |body| Record { version: FORMAT_VERSION, epoch: 1, pid: 1, body };
        let entry = FileEntry {
            path: b"a".to_vec(),
            node: Node::File,
            size: 2,
            hash: diff::hash(b"x\n"),
            mode: 0o644,
        };
        let chmod = |old: u32, new: u32| {
            let mut c = change(b"a", Change::Mode, b"x\n", b"x\n");
            (c.old_mode, c.mode) = (Some(old), Some(new));
            Body::Sample(Sample { files: vec![c], ..Sample::default() })
        };
        let records = vec![
            (1, record(Body::Baseline(Baseline { files: vec![entry], ..Baseline::default() }))),
            (2, record(chmod(0o644, 0o755))),
            (3, record(chmod(0o755, 0o700))),
        ];
        let mut problems = Vec::new();
        check_modes(&records, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let mut bad = records.clone();
        bad[2].1 = record(chmod(0o644, 0o700));
        check_modes(&bad, &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].seq, Some(3));
        assert!(problems[0].what.contains("mode 0644") && problems[0].what.contains("0755"), "{problems:?}");
    }

    #[test]
    fn a_record_that_does_not_decode_is_named_among_idle_runs_read_as_a_stream() {
        use crate::journal::Ring;
        use crate::journal::record::{FORMAT_VERSION, Kind, Sample, Stats};
        let dir = tempfile::tempdir().unwrap();
        let mut ring = Ring::open_or_create(&dir.path().join(store::RING_FILE), 1 << 16).unwrap();
        for i in 0..9u64 {
            let payload = if i == 4 {
                b"not a record".to_vec()
            } else {
                let stats = Some(Stats { utime_ms: i, rss_kib: 100, ..Stats::default() });
                let body = Body::Sample(Sample { stats, ..Sample::default() });
                Record { version: FORMAT_VERSION, epoch: 1, pid: 1, body }.encode()
            };
            ring.append(Kind::Sample as u16, 1_000_000 * (i + 1), &payload).unwrap();
        }
        ring.flush().unwrap();
        drop(ring);
        let report = verify(dir.path()).unwrap();
        assert_eq!(report.records, 8, "{report:?}");
        let undecodable: Vec<&Problem> =
            report.problems.iter().filter(|p| p.what.starts_with("cannot be decoded")).collect();
        assert_eq!(undecodable.len(), 1, "{report:?}");
        assert_eq!(undecodable[0].seq, Some(5), "{report:?}");
        // The samples name no mirror: the epoch is still replayed (and
        // its missing mirror named), once.
        assert_eq!(report.epochs, 1, "{report:?}");
    }

    #[test]
    fn a_mirror_half_way_through_the_last_sample_is_rolled_forward() {
        let changes = vec![
            change(b"a", Change::Modified, b"1\n", b"1\n2\n"),
            change(b"b", Change::Modified, b"x\n", b"y\n"),
            change(b"c", Change::Created, b"", b"new\n"),
            change(b"d", Change::Deleted, b"gone\n", b""),
        ];
        // The crash came after `a` was written and before the rest.
        let mut tree = state(&[(b"a", b"1\n2\n"), (b"b", b"x\n"), (b"d", b"gone\n")]);
        assert_eq!(roll_forward(&mut tree, &changes), 3);
        assert_eq!(tree, state(&[(b"a", b"1\n2\n"), (b"b", b"y\n"), (b"c", b"new\n")]));
        // Up to date: nothing to do.
        assert_eq!(roll_forward(&mut tree, &changes), 0);
    }

    #[test]
    fn a_rename_put_but_not_yet_removed_is_finished() {
        let mut renamed = change(b"new", Change::Renamed, b"same\n", b"same\n");
        renamed.from = Some(b"old".to_vec());
        let changes = vec![renamed];
        let mut tree = state(&[(b"new", b"same\n"), (b"old", b"same\n")]);
        assert_eq!(roll_forward(&mut tree, &changes), 1);
        assert_eq!(tree, state(&[(b"new", b"same\n")]));
        // Not yet put: moved.
        let mut tree = state(&[(b"old", b"same\n")]);
        assert_eq!(roll_forward(&mut tree, &changes), 1);
        assert_eq!(tree, state(&[(b"new", b"same\n")]));
    }

    #[test]
    fn a_mirror_that_matches_neither_side_is_left_for_the_replay() {
        let changes = vec![change(b"b", Change::Modified, b"x\n", b"y\n")];
        let mut tree = state(&[(b"b", b"garbage\n")]);
        assert_eq!(roll_forward(&mut tree, &changes), 0);
        assert_eq!(tree, state(&[(b"b", b"garbage\n")]));
    }
}
