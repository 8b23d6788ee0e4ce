//! `monitord log [--store DIR] [--json]`: one line per record, newest
//! last: seq, local time, kind, files changed with +/- lines, map changes
//! and RSS. Reads a copy of the ring, so it works while the monitor writes.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::cli::LogArgs;
use crate::journal::Snapshot;
use crate::journal::record::{Body, Record};
use crate::render::{self, human};
use crate::store;

/// Print the log.
///
/// # Errors
/// When the ring cannot be read or stdout fails.
pub fn run(args: &LogArgs) -> anyhow::Result<ExitCode> {
    let store_dir = store::resolve(args.store.as_deref())?;
    let ring = store_dir.join(store::RING_FILE);
    let snapshot = Snapshot::read(&ring)?;
    let scan = snapshot.scan();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let tz = jiff::tz::TimeZone::system();
    for frame in &scan.frames {
        let record = Record::decode(frame.payload);
        let line = match (&record, args.json) {
            (Ok(record), true) => json_line(frame.seq, frame.time_us, record).to_string(),
            (Ok(record), false) => text_line(frame.seq, frame.time_us, record, &tz),
            (Err(e), true) => {
                json!({"seq": frame.seq, "kind": "undecodable", "error": e.to_string()}).to_string()
            }
            (Err(e), false) => format!("{:>6}  undecodable record: {e}", frame.seq),
        };
        writeln!(out, "{line}").context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    Ok(super::reader_exit(super::warn_damage(&ring, &scan.problems)))
}

/// Figures of one record: (files, lines added, lines removed, maps added,
/// maps removed, RSS in KiB).
fn figures(record: &Record) -> (usize, usize, usize, usize, usize, Option<u64>) {
    match &record.body {
        Body::Sample(s) => {
            let (added, removed) = human::line_counts(&s.files);
            (
                s.files.len(),
                added,
                removed,
                s.maps.added.len(),
                s.maps.removed.len(),
                s.stats.map(|st| st.rss_kib),
            )
        }
        Body::Baseline(b) => (b.files.len(), 0, 0, b.maps.len(), 0, b.stats.map(|st| st.rss_kib)),
        _ => (0, 0, 0, 0, 0, None),
    }
}

fn text_line(seq: u64, time_us: u64, record: &Record, tz: &jiff::tz::TimeZone) -> String {
    let time =
        i64::try_from(time_us).ok().and_then(|us| jiff::Timestamp::from_microsecond(us).ok()).map_or_else(
            || "?".to_string(),
            |t| t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        );
    let kind = record.kind().name();
    let (files, added, removed, maps_added, maps_removed, rss) = figures(record);
    let detail = match &record.body {
        Body::Sample(_) => {
            let mut d = if files == 0 {
                "-".to_string()
            } else {
                format!("{files} file{} +{added} -{removed}", if files == 1 { "" } else { "s" })
            };
            if maps_added + maps_removed > 0 {
                d.push_str(&format!("  maps +{maps_added} -{maps_removed}"));
            }
            d
        }
        Body::Baseline(b) => {
            format!("{files} files tracked  pid {}  {}", record.pid, human::sanitize(&b.cwd))
        }
        _ => {
            // The summary's detail, without its "#seq time kind " prefix.
            let summary = human::summary(seq, time_us, record, false);
            summary.splitn(4, ' ').nth(3).unwrap_or_default().to_string()
        }
    };
    let rss = rss.map(|kib| format!("  rss {kib} KiB")).unwrap_or_default();
    format!("{seq:>6}  {time}  {kind:<8}  {detail}{rss}")
}

fn json_line(seq: u64, time_us: u64, record: &Record) -> serde_json::Value {
    let (files, added, removed, maps_added, maps_removed, rss) = figures(record);
    json!({
        "seq": seq,
        "time": render::rfc3339_us(time_us),
        "kind": record.kind().name(),
        "pid": record.pid,
        "files": files,
        "lines_added": added,
        "lines_removed": removed,
        "maps_added": maps_added,
        "maps_removed": maps_removed,
        "rss_kib": rss,
    })
}
