//! `verify`: check a store end to end and name every problem.
//!
//! 1. The ring: a usable header, and every frame's checksum, length and
//!    sequence number ([`Snapshot::scan`]). A torn last record (the writer
//!    died mid-append) is not damage.
//! 2. Every record decodes.
//! 3. Every epoch's history replays: starting from the epoch's mirror (the
//!    tree as of its newest record), each sample's reverse patches are
//!    applied newest first, each checked against the hashes it carries;
//!    when the epoch's baseline is still in the ring, the tree reached must
//!    equal it, file by file. A mirror file that does not match the journal
//!    is found by one check or the other.
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
    let snapshot = match Snapshot::read(&ring_path) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            report.problems.push(problem(None, None, crate::render::error_chain(&e)));
            return Ok(report);
        }
    };
    let scan = snapshot.scan();
    report.torn_tail = scan.torn_tail;
    for damage in &scan.problems {
        report.problems.push(problem(
            Some(damage.expected_seq),
            None,
            format!("damaged record at offset {}: {}", damage.offset, damage.what),
        ));
    }
    let mut records: Vec<(u64, Record)> = Vec::with_capacity(scan.frames.len());
    for frame in &scan.frames {
        match Record::decode(frame.payload) {
            Ok(record) => records.push((frame.seq, record)),
            Err(e) => report.problems.push(problem(Some(frame.seq), None, format!("cannot be decoded: {e}"))),
        }
    }
    report.records = records.len();
    for group in records.chunk_by(|a, b| a.1.epoch == b.1.epoch) {
        report.epochs += 1;
        check_epoch(store_dir, group, &mut report.problems);
    }
    Ok(report)
}

/// Replay one epoch back from its mirror, and compare with its baseline.
fn check_epoch(store_dir: &Path, records: &[(u64, Record)], problems: &mut Vec<Problem>) {
    let Some((newest, first)) = records.last().map(|(seq, r)| (*seq, r)) else { return };
    let epoch = first.epoch;
    let mut tree: TreeState = match Mirror::open_existing(store_dir, epoch).and_then(|m| m.load_all()) {
        Ok(tree) => tree,
        Err(e) => {
            problems.push(problem(
                Some(newest),
                None,
                format!("the mirror of epoch {epoch} cannot be read: {e}"),
            ));
            return;
        }
    };
    for (seq, record) in records.iter().rev() {
        match &record.body {
            Body::Sample(sample) => {
                if let Err(e) = history::apply_reverse(&mut tree, &sample.files) {
                    problems.push(problem(
                        Some(*seq),
                        Some(e.path),
                        format!("{} (replaying back from mirror/{epoch})", e.what),
                    ));
                    return;
                }
            }
            Body::Baseline(baseline) => {
                compare_with_baseline(*seq, epoch, &tree, baseline, problems);
                return;
            }
            _ => {}
        }
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
