//! `monitord blame [--at P] [--json] PATH`: each line of a file as of a
//! point, with the record that last changed it, in git blame's shape.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;

use crate::blame;
use crate::cli::BlameArgs;
use crate::journal::record::{Body, Node, Record, Writers};
use crate::render::human::sanitize;
use crate::render::{self, json};
use crate::restore::{self, At};
use crate::store;

/// Print the blame of one file.
///
/// # Errors
/// When the point names no record, the file is not a tracked text file at
/// the point, or the store cannot be read.
pub fn run(args: &BlameArgs) -> anyhow::Result<ExitCode> {
    let store_dir = store::resolve(args.store.as_deref())?;
    let ring = store_dir.join(store::RING_FILE);
    // By default the newest record: the newest at or before the end of time.
    let at = args.at.clone().unwrap_or(At::Time(jiff::Timestamp::MAX));
    let mut key = args.path.as_encoded_bytes();
    while let Some(rest) = key.strip_prefix(b"./") {
        key = rest;
    }
    let shown = sanitize(key);
    let file = restore::file_at(&store_dir, at, key)?;
    super::warn_damage(&ring, &file.damage);
    let content = match &file.entry {
        Some((Node::File, content)) => content,
        Some((Node::Symlink, target)) => {
            bail!("{shown} is a symlink (to {}) at seq {}: nothing to blame", sanitize(target), file.seq)
        }
        None => bail!("{}", why_absent(key, &shown, file.seq, &file.history, file.left_out.as_ref())),
    };
    let epoch_records = &file.history[..];
    let boundary = file.epoch_start;
    let times = &file.times;
    let lines: Vec<&[u8]> = content.split_inclusive(|&b| b == b'\n').collect();
    let steps = blame::steps(key, epoch_records);
    let origins = blame::blame(lines.len(), &steps, boundary);
    // Who wrote the path in each step's record.
    let mut writers: HashMap<u64, &Writers> = HashMap::new();
    for step in &steps {
        if let Some((_, Record { body: Body::Sample(sample) | Body::Undo { sample, .. }, .. })) =
            epoch_records.iter().find(|(s, _)| *s == step.seq)
            && let Some(w) = sample.writers.iter().find(|w| w.path == step.path)
        {
            writers.insert(step.seq, w);
        }
    }
    let time = |seq: u64| times.get(&seq).copied().unwrap_or(0);
    let state_seq = file.seq;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if args.json {
        let lines: Vec<_> = lines
            .iter()
            .zip(&origins)
            .enumerate()
            .map(|(i, (text, origin))| {
                let who = writers.get(&origin.seq).filter(|_| !origin.boundary);
                json!({
                    "line": i + 1,
                    "text": json::bytes(text.strip_suffix(b"\n").unwrap_or(text)),
                    "seq": origin.seq,
                    "time": render::rfc3339_us(time(origin.seq)),
                    "writers": who.map(|w| json::writers_or_pids(w)),
                    "boundary": origin.boundary,
                })
            })
            .collect();
        let value = json!({"path": json::bytes(key), "at": state_seq, "lines": lines});
        writeln!(out, "{value}").context("cannot write to stdout")?;
    } else {
        let tz = jiff::tz::TimeZone::system();
        let width = origins.iter().map(|o| o.seq.to_string().len() + 1).max().unwrap_or(1);
        let number_width = lines.len().to_string().len();
        for (i, (text, origin)) in lines.iter().zip(&origins).enumerate() {
            let seq = if origin.boundary { format!("^{}", origin.seq) } else { origin.seq.to_string() };
            let who = match writers.get(&origin.seq).filter(|_| !origin.boundary) {
                Some(w) => render::human::writer_names(w).join(","),
                None => "-".to_string(),
            };
            let when = jiff::Timestamp::from_microsecond(time(origin.seq) as i64)
                .map(|t| t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M:%S %z").to_string())
                .unwrap_or_default();
            let text = sanitize(text.strip_suffix(b"\n").unwrap_or(text));
            writeln!(out, "{seq:>width$} ({who} {when} {:>number_width$}) {text}", i + 1)
                .context("cannot write to stdout")?;
        }
    }
    out.flush().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Why `path` is not a file of the tree at `seq`: left out, deleted,
/// never tracked.
fn why_absent(
    path: &[u8],
    shown: &str,
    seq: u64,
    records: &[(u64, Record)],
    left_out: Option<&restore::LeftOut>,
) -> String {
    if let Some(unknown) = left_out {
        return unknown.describe(seq);
    }
    for (at, record) in records.iter().rev() {
        let (changes, skipped) = match &record.body {
            Body::Sample(s) | Body::Undo { sample: s, .. } => (&s.files[..], &s.skipped[..]),
            Body::Baseline(b) => (&[][..], &b.skipped[..]),
            _ => continue,
        };
        if changes.iter().any(|c| c.path == path && c.change == crate::journal::record::Change::Deleted) {
            return format!("{shown} was deleted at seq {at} (before seq {seq}): nothing to blame");
        }
        if changes.iter().any(|c| c.from.as_deref() == Some(path)) {
            return format!("{shown} was renamed away at seq {at} (before seq {seq})");
        }
        if let Some(skip) = skipped.iter().find(|s| s.path == path) {
            return format!("{shown} is not tracked: {} (seq {at})", skip.reason);
        }
    }
    format!(
        "{shown} is not a tracked file at seq {seq} (binary files, files over --max-file-size and excluded paths are not recorded)"
    )
}
