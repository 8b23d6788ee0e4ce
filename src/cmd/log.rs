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
    let range = resolve_range(&snapshot, args.since.as_ref(), args.until.as_ref())?;
    let paths = Paths::new(args.paths.iter().map(|p| p.as_encoded_bytes().to_vec()));
    let pickaxe = match (&args.pickaxe, &args.regex) {
        (Some(text), _) => Some(Pickaxe::Occurrences(text.as_bytes().to_vec())),
        (None, Some(regex)) => Some(Pickaxe::Lines(regex.clone())),
        (None, None) => None,
    };
    let filtered = !paths.is_empty() || pickaxe.is_some() || args.by.is_some();
    let stdout = std::io::stdout();
    let color = !args.json && args.patch && stdout.is_terminal();
    let mut printer = Printer {
        args,
        color,
        out: BufWriter::new(stdout.lock()),
        tz: jiff::tz::TimeZone::system(),
        idle: None,
    };

    if !filtered {
        // Every record is shown: each is printed as it is read, and none
        // is kept (a full ring of an idle process holds millions).
        let mut failed = None;
        let problems = scan_range(&snapshot, &range, |frame, in_range| {
            if !in_range || failed.is_some() {
                return;
            }
            let printed = match Record::decode(&frame.payload) {
                // Counted into its run unless every sample is listed.
                Ok(record) if !args.all && query::is_idle(&record) => {
                    printer.idle(frame.seq);
                    Ok(())
                }
                Ok(record) => printer.record(frame.seq, frame.time_us, &record, &Kept::All),
                Err(e) => printer.undecodable(frame.seq, &e),
            };
            failed = printed.err();
        });
        if let Some(e) = failed {
            return Err(e);
        }
        printer.finish()?;
        return Ok(super::reader_exit(super::warn_damage(&ring, &problems)));
    }

    // A filter walks back from the newest record: the range's records are
    // kept, but for idle samples, which a filter never chooses.
    let mut read: Vec<(u64, u64, Read)> = Vec::new();
    // Epochs whose baseline lies before the range still say their backend.
    let mut baselines: Vec<(u64, Record)> = Vec::new();
    let problems = scan_range(&snapshot, &range, |frame, in_range| {
        let decoded = Record::decode(&frame.payload);
        if args.by.is_some()
            && frame.kind == Kind::Baseline as u16
            && let Ok(record) = &decoded
        {
            baselines.push((frame.seq, record.clone()));
        }
        if !in_range {
            return;
        }
        let item = match decoded {
            Ok(record) if !args.all && query::is_idle(&record) => return,
            Ok(record) => Read::Record(Box::new(record)),
            Err(e) => Read::Undecodable(e),
        };
        read.push((frame.seq, frame.time_us, item));
    });
    let records: Vec<(u64, &Record)> = read
        .iter()
        .filter_map(|(seq, _, r)| match r {
            Read::Record(record) => Some((*seq, &**record)),
            Read::Undecodable(_) => None,
        })
        .collect();
    if args.by.is_some() {
        let all: Vec<(u64, &Record)> =
            baselines.iter().map(|(s, r)| (*s, r)).chain(records.iter().copied()).collect();
        if let Some(why) = query::writers_unknown(&all) {
            anyhow::bail!(why);
        }
    }
    let mut chosen = query::select(&records, &paths, pickaxe.as_ref(), args.by.as_ref()).into_iter();
    for (seq, time_us, item) in &read {
        match item {
            Read::Record(record) => {
                let Some(kept) = chosen.next().flatten() else { continue };
                printer.record(*seq, *time_us, record, &kept)?;
            }
            Read::Undecodable(e) => printer.undecodable(*seq, e)?,
        }
    }
    printer.finish()?;
    Ok(super::reader_exit(super::warn_damage(&ring, &problems)))
}

/// A record of the range as a filtered `log` keeps it.
enum Read {
    /// A record that decodes (boxed: an undecodable one is small).
    Record(Box<Record>),
    /// A record that does not decode.
    Undecodable(crate::journal::record::DecodeError),
}

/// Writes the log's lines, collapsing each run of idle samples into one.
struct Printer<'a> {
    args: &'a LogArgs,
    /// Diffs in colour.
    color: bool,
    out: BufWriter<std::io::StdoutLock<'static>>,
    tz: jiff::tz::TimeZone,
    /// A run of idle samples waiting to be printed: (first, last, count).
    idle: Option<(u64, u64, u64)>,
}

impl Printer<'_> {
    /// One more idle sample in the pending run.
    fn idle(&mut self, seq: u64) {
        self.idle = Some(match self.idle {
            Some((first, _, n)) => (first, seq, n + 1),
            None => (seq, seq, 1),
        });
    }

    /// A record's line, and its diffs with `-p` (`kept` of them).
    fn record(&mut self, seq: u64, time_us: u64, record: &Record, kept: &Kept) -> anyhow::Result<()> {
        let args = self.args;
        flush_idle(&mut self.idle, args, &mut self.out)?;
        if args.json {
            write_json(&json_line(seq, time_us, record), args, &mut self.out)?;
        } else {
            writeln!(self.out, "{}", text_line(seq, time_us, record, &self.tz))
                .context("cannot write to stdout")?;
        }
        if args.patch && !args.json {
            let mut buf = Vec::new();
            patch(record, kept, self.color, &mut buf);
            self.out.write_all(&buf).context("cannot write to stdout")?;
        }
        Ok(())
    }

    /// The line of a record that does not decode.
    fn undecodable(&mut self, seq: u64, e: &crate::journal::record::DecodeError) -> anyhow::Result<()> {
        flush_idle(&mut self.idle, self.args, &mut self.out)?;
        if self.args.json {
            let value = json!({"seq": seq, "kind": "undecodable", "error": e.to_string()});
            write_json(&value, self.args, &mut self.out)
        } else {
            writeln!(self.out, "{seq:>6}  undecodable record: {e}").context("cannot write to stdout")
        }
    }

    /// The pending run, then everything out.
    fn finish(mut self) -> anyhow::Result<()> {
        flush_idle(&mut self.idle, self.args, &mut self.out)?;
        self.out.flush().context("cannot write to stdout")
    }
}

/// The records between `since` and `until`, as a range of indexes into
/// the scan of `snapshot` (`log` and `report` take them alike); all of
/// them (`0..usize::MAX`) when neither is given. A point is resolved
/// from a first walk that keeps only each record's seq and time, and the
/// marks, not the records.
pub(crate) fn resolve_range(
    snapshot: &Snapshot,
    since: Option<&Point>,
    until: Option<&Point>,
) -> anyhow::Result<std::ops::Range<usize>> {
    if since.is_none() && until.is_none() {
        return Ok(0..usize::MAX);
    }
    let mut held = Vec::new();
    let mut marked: Vec<(u64, Record)> = Vec::new();
    snapshot.scan_each(|frame| {
        if frame.kind == Kind::Mark as u16
            && let Ok(record) = Record::decode(&frame.payload)
        {
            marked.push((frame.seq, record));
        }
        held.push(Held { seq: frame.seq, time_us: frame.time_us });
    });
    let marks = point::marks(marked.iter().map(|(seq, r)| (*seq, r)));
    range(&held, since, until, |name| marks.get(name).copied())
}

/// Scan `snapshot`, handing `each` every intact record in order and
/// whether it lies in `range` (indexes as [`resolve_range`] gives them);
/// returns the damage found.
pub(crate) fn scan_range<'s>(
    snapshot: &'s Snapshot,
    range: &std::ops::Range<usize>,
    mut each: impl FnMut(Frame<'s>, bool),
) -> Vec<crate::journal::Damage> {
    let mut index = 0;
    let (problems, _torn_tail) = snapshot.scan_each(|frame| {
        each(frame, range.contains(&index));
        index += 1;
    });
    problems
}

/// The records between `since` and `until`, as a range of indexes into
/// `held`.
pub(crate) fn range(
    held: &[Held],
    since: Option<&Point>,
    until: Option<&Point>,
    marks: impl Fn(&str) -> Option<u64> + Copy,
) -> anyhow::Result<std::ops::Range<usize>> {
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
        Some(p) if future(p) => point::resolve(p, held, now, marks).map(index)?,
        // A time range keeps what lies in it, whatever the ring holds.
        Some(Point::Time(ts)) => at_or_after(ts),
        Some(p) => point::resolve(p, held, now, marks).map(index)?,
    };
    let end = match until {
        None => held.len(),
        Some(Point::Time(ts)) if !future(&Point::Time(*ts)) => at_or_before(ts),
        Some(p) => point::resolve(p, held, now, marks).map(|seq| index(seq) + 1)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Ring;
    use crate::journal::record::{Baseline, FORMAT_VERSION, Sample, Stats};
    use proptest::prelude::*;

    /// What a record of the generated ring is.
    #[derive(Clone, Debug)]
    enum Made {
        Idle,
        Mark(u8),
        Baseline,
    }

    fn made() -> impl Strategy<Value = Made> {
        prop_oneof![6 => Just(Made::Idle), 2 => (0u8..3).prop_map(Made::Mark), 1 => Just(Made::Baseline)]
    }

    fn point(newest_us: u64) -> impl Strategy<Value = Option<Point>> {
        let time = (0..newest_us + 3_000_000)
            .prop_map(|us| Point::Time(jiff::Timestamp::from_microsecond(us as i64).unwrap()));
        proptest::option::of(prop_oneof![
            (0u64..200).prop_map(Point::Seq),
            time,
            (0u8..4).prop_map(|n| Point::Mark(format!("m{n}"))),
        ])
    }

    /// A ring written by the writer (wrapped when it is long enough, idle
    /// samples in compact frames), then damaged at a few bytes.
    fn ring(records: &[Made], flips: &[(prop::sample::Index, u8)]) -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.bin");
        let mut ring = Ring::open_or_create(&path, 4096 + 2048).unwrap();
        for (i, made) in records.iter().enumerate() {
            let stats =
                Some(Stats { utime_ms: i as u64, rss_kib: 100, threads: 1, fds: 3, ..Stats::default() });
            let body = match made {
                Made::Idle => Body::Sample(Sample { stats, ..Sample::default() }),
                Made::Mark(n) => Body::Mark { name: format!("m{n}") },
                Made::Baseline => Body::Baseline(Baseline { stats, ..Baseline::default() }),
            };
            let record = Record { version: FORMAT_VERSION, epoch: 1, pid: 7, body };
            ring.append(record.kind() as u16, 1_000_000 * (i as u64 + 1), &record.encode()).unwrap();
        }
        ring.flush().unwrap();
        drop(ring);
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, bit) in flips {
            // The data area only: a damaged header is not a ring.
            let i = 4096 + at.index(bytes.len() - 4096);
            bytes[i] ^= 1 << bit;
        }
        Snapshot::from_bytes(bytes).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Resolving `--since`/`--until` from the seq-and-time walk, then
        /// streaming, gives the records, the error and the damage that
        /// slicing the whole scan gave.
        #[test]
        fn streaming_a_range_hands_over_what_slicing_the_scan_gives(
            (records, since, until) in proptest::collection::vec(made(), 0..300).prop_flat_map(|records| {
                let newest = records.len() as u64 * 1_000_000;
                (Just(records), point(newest), point(newest))
            }),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..3),
        ) {
            let snapshot = ring(&records, &flips);
            let scan = snapshot.scan();
            let held: Vec<Held> = scan.frames.iter().map(|f| Held { seq: f.seq, time_us: f.time_us }).collect();
            let marks = point::marks_in(&scan.frames);
            let sliced = range(&held, since.as_ref(), until.as_ref(), |name| marks.get(name).copied())
                .map(|r| scan.frames[r].iter().map(|f| (f.seq, f.payload.to_vec())).collect::<Vec<_>>());
            let streamed = resolve_range(&snapshot, since.as_ref(), until.as_ref()).map(|r| {
                let mut got = Vec::new();
                let problems = scan_range(&snapshot, &r, |f, in_range| {
                    if in_range {
                        got.push((f.seq, f.payload.to_vec()));
                    }
                });
                (got, problems, r.start == 0)
            });
            match (sliced, streamed) {
                (Ok(want), Ok((got, problems, from_start))) => {
                    prop_assert_eq!(&got, &want);
                    prop_assert_eq!(&problems, &scan.problems);
                    // `report` counts the wrap-around gap from the oldest
                    // record only.
                    if let Some((first, _)) = want.first() {
                        prop_assert_eq!(from_start, Some(*first) == held.first().map(|h| h.seq));
                    }
                }
                (Err(want), Err(got)) => prop_assert_eq!(got.to_string(), want.to_string()),
                (want, got) => prop_assert!(false, "sliced {:?}, streamed {:?}", want.map(|w| w.len()), got.map(|g| g.0.len())),
            }
        }
    }
}
