//! `monitord show [--store DIR] [--reverse] [--json] P|A..B [-- PATH…]`:
//! one record's diffs (or the patches going back with `--reverse`), or the
//! net change between two points as one diff per file; `--json` prints
//! the same as one object.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{ShowArgs, ShowWhat};
use crate::diff::Patch;
use crate::journal::Snapshot;
use crate::journal::record::{Body, Change, FileChange, Node, Record, Sample};
use crate::query::Paths;
use crate::render::{human, json};
use crate::restore::{self, At};
use crate::store;

/// Print the sample or the range.
///
/// # Errors
/// When the seq is not in the ring, the history does not replay, or stdout
/// fails.
pub fn run(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let store_dir = store::resolve(args.store.as_deref())?;
    let color = std::io::stdout().is_terminal();
    let mut out = Vec::new();
    let paths = Paths::new(args.paths.iter().map(|p| p.as_encoded_bytes().to_vec()));
    match &args.what {
        ShowWhat::Range(a, b) => {
            let from = restore::state_at(&store_dir, a.clone())?;
            let to = restore::state_at(&store_dir, b.clone())?;
            let (a, b) = (from.seq, to.seq);
            for state in [&from, &to] {
                if let Some(unknown) = state.left_out.first() {
                    bail!("{}", unknown.describe(state.seq));
                }
            }
            let mut changes = net_changes(&from.tree, &to.tree);
            changes.retain(|c| paths.matches(&c.path));
            if args.json {
                let files = json::files(&Sample { files: changes, ..Sample::default() });
                let value = serde_json::json!({"from": a, "to": b, "files": files});
                return print(format!("{value}\n").as_bytes());
            }
            let (added, removed) = human::line_counts(&changes);
            out.extend_from_slice(
                format!("#{a}..#{b}: {} files changed, +{added} -{removed}\n", changes.len()).as_bytes(),
            );
            human::render_changes(&changes, color, false, &mut out);
        }
        ShowWhat::Point(at) => {
            let seq = match at {
                At::Seq(seq) => *seq,
                other => restore::resolve(&store_dir, other.clone())?,
            };
            let ring = store_dir.join(store::RING_FILE);
            let snapshot = Snapshot::read(&ring)?;
            let info = snapshot.info();
            // Only the record asked for is decoded and kept.
            let mut found = None;
            let (problems, _) = snapshot.scan_each(|frame| {
                if frame.seq == seq && found.is_none() {
                    found = Some((frame.time_us, Record::decode(&frame.payload)));
                }
            });
            let Some((time_us, decoded)) = found else {
                if super::warn_damage(&ring, &problems) {
                    bail!("seq {seq} is not among the intact records of the ring");
                }
                bail!(
                    "seq {seq} is not in the ring (it holds {}..{})",
                    info.oldest_seq,
                    info.next_seq.saturating_sub(1)
                );
            };
            let mut record = decoded.with_context(|| format!("record {seq} cannot be decoded"))?;
            if let (Body::Sample(sample), false) = (&mut record.body, paths.is_empty()) {
                let touches = |c: &FileChange| {
                    paths.matches(&c.path) || c.from.as_deref().is_some_and(|f| paths.matches(f))
                };
                sample.files.retain(touches);
                sample.writers.retain(|w| sample.files.iter().any(|c| c.path == w.path));
            }
            if args.json {
                return print(format!("{}\n", json::record(seq, time_us, &record)).as_bytes());
            }
            match &record.body {
                // Only the given paths' diffs: no maps, no statistics.
                Body::Sample(sample) if !paths.is_empty() => {
                    out.extend_from_slice(human::summary(seq, time_us, &record, color).as_bytes());
                    out.push(b'\n');
                    human::render_changes(&sample.files, color, args.reverse, &mut out);
                }
                _ => human::render(seq, time_us, &record, color, args.reverse, &mut out),
            }
        }
    }
    print(&out)
}

fn print(out: &[u8]) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out).context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// One change per path that differs between two trees, oldest to newest.
fn net_changes(from: &crate::history::TreeState, to: &crate::history::TreeState) -> Vec<FileChange> {
    let deadline = Duration::from_secs(1);
    let paths: BTreeSet<&Vec<u8>> = from.keys().chain(to.keys()).collect();
    let mut changes = Vec::new();
    for path in paths {
        let (change, node, old, new): (Change, Node, &[u8], &[u8]) = match (from.get(path), to.get(path)) {
            (Some(a), Some(b)) if a == b => continue,
            (Some((_, a)), Some((node, b))) => (Change::Modified, *node, a, b),
            (None, Some((node, b))) => (Change::Created, *node, b"", b),
            (Some((node, a)), None) => (Change::Deleted, *node, a, b""),
            (None, None) => continue,
        };
        changes.push(FileChange::new(path.clone(), change, None, node, Patch::compute(old, new, deadline)));
    }
    changes
}
