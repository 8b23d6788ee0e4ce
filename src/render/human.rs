//! Human output: one summary line per record, then unified diffs (as
//! `diff -u` and git print them), coloured when writing to a terminal.
//! Paths from the watched tree are untrusted: control characters are
//! escaped so a file name cannot drive the terminal.

use crate::journal::record::{Body, Change, FileChange, MapsDelta, Record, Stats, Writers};

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// Escape a path for a terminal: printable UTF-8 stays, control characters
/// and invalid bytes become `\xNN`.
pub fn sanitize(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                for b in c.to_string().bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Lines added and removed by a record's file changes.
pub fn line_counts(files: &[FileChange]) -> (usize, usize) {
    files.iter().fold((0, 0), |(a, r), f| (a + f.patch.lines_added(), r + f.patch.lines_removed()))
}

/// The one-line summary of a record.
pub fn summary(seq: u64, time_us: u64, record: &Record, color: bool) -> String {
    let (bold, reset) = if color { (BOLD, RESET) } else { ("", "") };
    let time = super::rfc3339_us(time_us);
    let kind = record.kind().name();
    let detail = match &record.body {
        Body::Baseline(b) => format!(
            "pid {} cwd {}: {} files tracked{}{}",
            record.pid,
            sanitize(&b.cwd),
            b.files.len(),
            if b.skipped.is_empty() { String::new() } else { format!(", {} skipped", b.skipped.len()) },
            if b.maps.is_empty() { String::new() } else { format!(", {} mappings", b.maps.len()) }
        ),
        Body::Sample(s) if s.files.is_empty() && s.maps == MapsDelta::default() => "no changes".to_string(),
        Body::Sample(s) => {
            let (added, removed) = line_counts(&s.files);
            let files = format!(
                "{} file{} changed, +{added} -{removed}",
                s.files.len(),
                if s.files.len() == 1 { "" } else { "s" }
            );
            match (s.files.is_empty(), s.maps == MapsDelta::default()) {
                (false, true) => files,
                (true, _) => format!("maps +{} -{}", s.maps.added.len(), s.maps.removed.len()),
                (false, false) => format!("{files}; maps +{} -{}", s.maps.added.len(), s.maps.removed.len()),
            }
        }
        Body::Pid { old, new } => format!("now following pid {new} (was {old})"),
        Body::Exit(e) => match (e.code, e.signal) {
            (Some(code), _) => format!("pid {} exited with status {code}", record.pid),
            (_, Some(signal)) => format!("pid {} killed by signal {signal}", record.pid),
            _ => format!("pid {} exited", record.pid),
        },
        Body::Cwd { old, new } => format!("cwd {} -> {}", sanitize(old), sanitize(new)),
        Body::Rescan { reason, paths } => format!(
            "{reason}: rescanned {} director{}",
            paths.len(),
            if paths.len() == 1 { "y" } else { "ies" }
        ),
        Body::Mark { name } => format!("@{name}"),
        Body::Undo { from, to, sample } => {
            let (added, removed) = line_counts(&sample.files);
            format!(
                "#{to} put back to #{from}: {} file{} changed, +{added} -{removed}",
                sample.files.len(),
                if sample.files.len() == 1 { "" } else { "s" }
            )
        }
    };
    format!("{bold}#{seq}{reset} {time} {bold}{kind}{reset} {detail}")
}

/// The full human rendering of a record: summary, file list and diffs.
/// `reverse` shows the patches that go back in time.
pub fn render(seq: u64, time_us: u64, record: &Record, color: bool, reverse: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(summary(seq, time_us, record, color).as_bytes());
    out.push(b'\n');
    match &record.body {
        Body::Undo { sample, .. } => {
            for change in &sample.files {
                render_change(change, None, color, reverse, out);
            }
        }
        Body::Sample(sample) => {
            for change in &sample.files {
                let writers = sample.writers.iter().find(|w| w.path == change.path);
                render_change(change, writers, color, reverse, out);
            }
            for skipped in &sample.skipped {
                out.extend_from_slice(
                    format!("  skipped {}: {}\n", sanitize(&skipped.path), skipped.reason).as_bytes(),
                );
            }
            render_maps(&sample.maps, color, out);
            render_stats(sample.stats.as_ref(), out);
        }
        Body::Baseline(baseline) => {
            for skipped in &baseline.skipped {
                out.extend_from_slice(
                    format!("  skipped {}: {}\n", sanitize(&skipped.path), skipped.reason).as_bytes(),
                );
            }
            render_stats(baseline.stats.as_ref(), out);
        }
        _ => {}
    }
}

/// Map changes as `-`/`+` lines (removed first) under a `maps:` heading;
/// nothing when the map did not change.
pub fn render_maps(delta: &MapsDelta, color: bool, out: &mut Vec<u8>) {
    if delta.added.is_empty() && delta.removed.is_empty() {
        return;
    }
    let (bold, red, green, reset) = if color { (BOLD, RED, GREEN, RESET) } else { ("", "", "", "") };
    out.extend_from_slice(format!("{bold}maps:{reset}\n").as_bytes());
    for (sign, paint, lines) in [('-', red, &delta.removed), ('+', green, &delta.added)] {
        for line in lines {
            out.extend_from_slice(format!("{paint}{sign}{}{reset}\n", sanitize(line)).as_bytes());
        }
    }
}

/// The one-line statistics summary of a record, when it has them.
pub fn render_stats(stats: Option<&Stats>, out: &mut Vec<u8>) {
    if let Some(s) = stats {
        let seconds = |ms: u64| format!("{}.{:03}s", ms / 1000, ms % 1000);
        out.extend_from_slice(
            format!(
                "stats: user {} sys {} rss {} KiB vsz {} KiB threads {} fds {}\n",
                seconds(s.utime_ms),
                seconds(s.stime_ms),
                s.rss_kib,
                s.vsz_kib,
                s.threads,
                s.fds
            )
            .as_bytes(),
        );
    }
}

/// The writers of a change for people: `comm[pid]` each when they were
/// named, else `pid N, M` as stores without names have it.
pub fn writer_labels(w: &Writers) -> String {
    if w.who.is_empty() {
        let pids: Vec<String> = w.pids.iter().map(i32::to_string).collect();
        format!("pid {}", pids.join(", "))
    } else {
        writer_names(w).join(", ")
    }
}

/// Each writer of a change for people: `comm[pid]` when named, else
/// `pid N`.
pub fn writer_names(w: &Writers) -> Vec<String> {
    if w.who.is_empty() {
        w.pids.iter().map(|p| format!("pid {p}")).collect()
    } else {
        w.who.iter().map(|n| sanitize(n.label().as_bytes())).collect()
    }
}

/// Names for the `---`/`+++` lines of a change, forwards.
pub fn diff_names(change: &FileChange) -> (Vec<u8>, Vec<u8>) {
    let prefixed = |prefix: &[u8], path: &[u8]| [prefix, path].concat();
    let old = match (&change.change, &change.from) {
        (Change::Created, _) => b"/dev/null".to_vec(),
        (_, Some(from)) => prefixed(b"a/", from),
        _ => prefixed(b"a/", &change.path),
    };
    let new = match change.change {
        Change::Deleted => b"/dev/null".to_vec(),
        _ => prefixed(b"b/", &change.path),
    };
    (old, new)
}

/// Render file changes as unified diffs (`reverse`: the way back).
pub fn render_changes(changes: &[FileChange], color: bool, reverse: bool, out: &mut Vec<u8>) {
    for change in changes {
        render_change(change, None, color, reverse, out);
    }
}

fn render_change(
    change: &FileChange,
    writers: Option<&Writers>,
    color: bool,
    reverse: bool,
    out: &mut Vec<u8>,
) {
    let (yellow, reset) = if color { (YELLOW, RESET) } else { ("", "") };
    let what = match (&change.from, change.change) {
        (Some(from), _) => format!("{} (from {})", sanitize(&change.path), sanitize(from)),
        _ => sanitize(&change.path),
    };
    let by = match writers {
        Some(w) => {
            let foreign = if w.foreign { ", not the target" } else { "" };
            format!(" (by {}{foreign})", writer_labels(w))
        }
        None => String::new(),
    };
    let modes = match (change.old_mode, change.mode) {
        (Some(old), Some(new)) if old != new => format!(" mode {old:04o} -> {new:04o}"),
        _ => String::new(),
    };
    out.extend_from_slice(format!("{yellow}{} {what}{modes}{by}{reset}\n", change.change.name()).as_bytes());
    let (old, new) = diff_names(change);
    let mut text = Vec::new();
    if reverse {
        change.patch.render_unified_reverse(&new, &old, &mut text);
    } else {
        change.patch.render_unified(&old, &new, &mut text);
    }
    if !color {
        out.extend_from_slice(&text);
        return;
    }
    for line in text.split_inclusive(|&b| b == b'\n') {
        let paint = match line.first() {
            Some(b'+') if !line.starts_with(b"+++") => GREEN,
            Some(b'-') if !line.starts_with(b"---") => RED,
            Some(b'@') => CYAN,
            Some(b'-' | b'+') => BOLD,
            _ => "",
        };
        if paint.is_empty() {
            out.extend_from_slice(line);
        } else {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            out.extend_from_slice(paint.as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(RESET.as_bytes());
            if body.len() != line.len() {
                out.push(b'\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invalid_bytes_are_escaped() {
        assert_eq!(sanitize(b"plain/\xc3\xa9.txt"), "plain/\u{e9}.txt");
        assert_eq!(sanitize(b"a\x1b[31mb"), "a\\x1b[31mb");
        assert_eq!(sanitize(b"\xff\n"), "\\xff\\x0a");
    }

    #[test]
    fn map_changes_and_stats_render_under_their_headings() {
        use crate::journal::record::{FORMAT_VERSION, Sample};
        let record = Record {
            version: FORMAT_VERSION,
            epoch: 1,
            pid: 7,
            body: Body::Sample(Sample {
                maps: MapsDelta {
                    added: vec![b"30-40 r--p 0 00:00 0 /a\x1b".to_vec()],
                    removed: vec![b"10-20 rw-p 0 00:00 0 ".to_vec()],
                },
                stats: Some(Stats {
                    utime_ms: 1500,
                    stime_ms: 20,
                    rss_kib: 4,
                    vsz_kib: 8,
                    threads: 2,
                    fds: 3,
                }),
                ..Sample::default()
            }),
        };
        let mut out = Vec::new();
        render(2, 0, &record, false, false, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("sample maps +1 -1"), "{text}");
        assert_eq!(
            &lines[1..],
            [
                "maps:",
                "-10-20 rw-p 0 00:00 0 ",
                "+30-40 r--p 0 00:00 0 /a\\x1b",
                "stats: user 1.500s sys 0.020s rss 4 KiB vsz 8 KiB threads 2 fds 3"
            ]
        );
    }
}
