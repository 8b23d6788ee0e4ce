//! `monitord log`: one line per record that changed something, newest
//! last: seq, local time, kind, files changed with +/- lines, map changes
//! and RSS; a run of samples that changed nothing is one line. Filters
//! (`--since`/`--until`, `-- PATH…`, `-S`, `-G`) and `-p` as git log has
//! them; `--by` keeps one writer's changes. Reads a copy of the ring, so it works while the monitor writes.

use std::io::{BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::cli::LogArgs;
use crate::journal::record::{Body, Kind, Record};
use crate::journal::{Frame, Snapshot};
use crate::point::{self, Held, Point};
use crate::query::{self, Kept, Paths, Pickaxe};
use crate::render::{self, human, split};
use crate::store;

/// Print the log of the store's ring.
///
/// # Errors
/// When the ring cannot be read, a point names no record, or stdout fails.
pub fn run(args: &LogArgs) -> anyhow::Result<ExitCode> {
    let store_dir = store::resolve(args.store.as_deref())?;
    let ring = store_dir.join(store::RING_FILE);
    let snapshot = Snapshot::read(&ring)?;
    let scan = snapshot.scan();
    let marks = point::marks_in(&scan.frames);
    let range =
        range(&scan.frames, args.since.as_ref(), args.until.as_ref(), |name| marks.get(name).copied())?;
    let frames = &scan.frames[range];
    // An idle sample is only counted into its run unless every sample is
    // listed: it is not kept (a full ring of an idle process holds
    // millions of them).
    let decoded: &[Read] = &frames
        .iter()
        .map(|f| match Record::decode(&f.payload) {
            Ok(record) if !args.all && query::is_idle(&record) => Read::Idle,
            Ok(record) => Read::Record(Box::new(record)),
            Err(e) => Read::Undecodable(e),
        })
        .collect::<Vec<_>>();
    let paths = Paths::new(args.paths.iter().map(|p| p.as_encoded_bytes().to_vec()));
    let pickaxe = match (&args.pickaxe, &args.regex) {
        (Some(text), _) => Some(Pickaxe::Occurrences(text.as_bytes().to_vec())),
        (None, Some(regex)) => Some(Pickaxe::Lines(regex.clone())),
        (None, None) => None,
    };
    let filtered = !paths.is_empty() || pickaxe.is_some() || args.by.is_some();
    let records: Vec<(u64, &Record)> = frames
        .iter()
        .zip(decoded)
        .filter_map(|(f, r)| match r {
            Read::Record(record) => Some((f.seq, &**record)),
            _ => None,
        })
        .collect();
    if args.by.is_some() {
        // Epochs whose baseline lies before the range still say their backend.
        let baselines = crate::journal::record::decode_kind(&scan.frames, Kind::Baseline);
        let all: Vec<(u64, &Record)> =
            baselines.iter().map(|(s, r)| (*s, r)).chain(records.iter().copied()).collect();
        if let Some(why) = query::writers_unknown(&all) {
            anyhow::bail!(why);
        }
    }
    let mut chosen = query::select(&records, &paths, pickaxe.as_ref(), args.by.as_ref()).into_iter();

    let stdout = std::io::stdout();
    let color = !args.json && args.patch && stdout.is_terminal();
    let mut out = BufWriter::new(stdout.lock());
    let tz = jiff::tz::TimeZone::system();
    // A run of idle samples waiting to be printed: (first, last, count).
    let mut idle: Option<(u64, u64, u64)> = None;
    for (frame, read) in frames.iter().zip(decoded) {
        let record = match read {
            Read::Record(record) => record,
            // Never chosen by a filter (it changed nothing); else one more
            // in its run.
            Read::Idle if filtered => continue,
            Read::Idle => {
                idle = Some(match idle {
                    Some((first, _, n)) => (first, frame.seq, n + 1),
                    None => (frame.seq, frame.seq, 1),
                });
                continue;
            }
            Read::Undecodable(e) => {
                flush_idle(&mut idle, args, &mut out)?;
                if args.json {
                    let value = json!({"seq": frame.seq, "kind": "undecodable", "error": e.to_string()});
                    write_json(&value, args, &mut out)?;
                } else {
                    writeln!(out, "{:>6}  undecodable record: {e}", frame.seq)
                        .context("cannot write to stdout")?;
                }
                continue;
            }
        };
        let Some(kept) = chosen.next().flatten() else { continue };
        if !filtered && !args.all && query::is_idle(record) {
            idle = Some(match idle {
                Some((first, _, n)) => (first, frame.seq, n + 1),
                None => (frame.seq, frame.seq, 1),
            });
            continue;
        }
        flush_idle(&mut idle, args, &mut out)?;
        if args.json {
            write_json(&json_line(frame.seq, frame.time_us, record), args, &mut out)?;
        } else {
            writeln!(out, "{}", text_line(frame.seq, frame.time_us, record, &tz))
                .context("cannot write to stdout")?;
        }
        if args.patch && !args.json {
            let mut buf = Vec::new();
            patch(record, &kept, color, &mut buf);
            out.write_all(&buf).context("cannot write to stdout")?;
        }
    }
    flush_idle(&mut idle, args, &mut out)?;
    out.flush().context("cannot write to stdout")?;
    Ok(super::reader_exit(super::warn_damage(&ring, &scan.problems)))
}

/// A record of the range as `log` keeps it.
enum Read {
    /// A sample that changed nothing, when runs of them are collapsed.
    Idle,
    /// Any other record (boxed: most records of a long run are idle).
    Record(Box<Record>),
    /// A record that does not decode.
    Undecodable(crate::journal::record::DecodeError),
}

/// The frames between `since` and `until`, as a range of indexes (`log`
/// and `report` take them alike).
pub(crate) fn range(
    frames: &[Frame<'_>],
    since: Option<&Point>,
    until: Option<&Point>,
    marks: impl Fn(&str) -> Option<u64> + Copy,
) -> anyhow::Result<std::ops::Range<usize>> {
    let held: Vec<Held> = frames.iter().map(|f| Held { seq: f.seq, time_us: f.time_us }).collect();
    let now = jiff::Timestamp::now();
    let at_or_after =
        |ts: &jiff::Timestamp| held.partition_point(|h| (h.time_us as i64) < ts.as_microsecond());
    let at_or_before =
        |ts: &jiff::Timestamp| held.partition_point(|h| (h.time_us as i64) <= ts.as_microsecond());
    let index = |seq: u64| held.partition_point(|h| h.seq < seq);
    let future = |p: &Point| match p {
        Point::Time(ts) => *ts > now && held.last().is_none_or(|h| ts.as_microsecond() > h.time_us as i64),
        _ => false,
    };
    let start = match since {
        None => 0,
        Some(p) if future(p) => point::resolve(p, &held, now, marks).map(index)?,
        // A time range keeps what lies in it, whatever the ring holds.
        Some(Point::Time(ts)) => at_or_after(ts),
        Some(p) => point::resolve(p, &held, now, marks).map(index)?,
    };
    let end = match until {
        None => held.len(),
        Some(Point::Time(ts)) if !future(&Point::Time(*ts)) => at_or_before(ts),
        Some(p) => point::resolve(p, &held, now, marks).map(|seq| index(seq) + 1)?,
    };
    Ok(start..end.max(start))
}

/// Print the pending run of idle samples: one line for a run, the usual
/// line's shape for a single one.
fn flush_idle(
    idle: &mut Option<(u64, u64, u64)>,
    args: &LogArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let Some((first, last, n)) = idle.take() else { return Ok(()) };
    if args.json {
        return write_json(&json!({"kind": "idle", "from": first, "to": last, "samples": n}), args, out);
    }
    let line = if n == 1 {
        format!("{first:>6}  1 sample, no change")
    } else {
        format!("{:>6}  {n} samples, no change", format!("{first}..{last}"))
    };
    writeln!(out, "{line}").context("cannot write to stdout")
}

/// One JSON line (or its parts, with `--max-line`).
fn write_json(value: &serde_json::Value, args: &LogArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    split::write_lines(value, args.max_line, &mut buf)?;
    out.write_all(&buf).context("cannot write to stdout")
}

/// A record's diffs, only the kept changes when a filter chose them.
fn patch(record: &Record, kept: &Kept, color: bool, out: &mut Vec<u8>) {
    if let Some(sample) = record.changes() {
        let changes: Vec<_> = match kept {
            Kept::All => sample.files.clone(),
            Kept::Changes(indexes) => indexes.iter().filter_map(|&i| sample.files.get(i).cloned()).collect(),
        };
        human::render_changes(&changes, color, false, out);
        if matches!(kept, Kept::All) {
            human::render_maps(&sample.maps, color, out);
        }
    }
}

fn figures(record: &Record) -> (usize, usize, usize, usize, usize, Option<u64>) {
    match &record.body {
        Body::Sample(s) | Body::Undo { sample: s, .. } => {
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
            if let Some(sample) = record.changes() {
                d.push_str(&writers_summary(sample));
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

/// `  by sh[12], cp[13]`: who wrote the record's changes, the first three
/// and how many more; nothing when no writer is known.
fn writers_summary(sample: &crate::journal::record::Sample) -> String {
    let mut names: Vec<String> = Vec::new();
    for w in &sample.writers {
        for name in human::writer_names(w) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    match names.len() {
        0 => String::new(),
        1..=3 => format!("  by {}", names.join(", ")),
        n => format!("  by {} and {} more", names[..3].join(", "), n - 3),
    }
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
        "changes": {"files": files, "lines_added": added, "lines_removed": removed},
    })
}
