//! A real log pipeline: `dump --follow --json --max-line 8000` appended to
//! a file that rsyslog's imfile ships (rsyslog's limit is 8k a message),
//! with the configuration the manual's LOG PIPELINES section documents.
//! Every line that comes out must parse, and the parts of each record must
//! join back into the record `dump --json` prints.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(180);

/// A child process killed and reaped on drop, so nothing outlives the test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a child of this test, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        if poll(Duration::from_secs(10), || self.0.try_wait().ok().flatten()).is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// rsyslogd, on PATH or where Debian puts it.
fn rsyslogd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("rsyslogd"))
        .find(|p| p.is_file())
}

/// The manual's rsyslog configuration, unescaped from roff.
fn manual_config() -> String {
    let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/extra.roff")).unwrap();
    let start = page.find("# /etc/rsyslog.d/monitord.conf\n").expect("the rsyslog example is in the manual");
    let end = start + page[start..].find(".EE").expect("the example ends");
    page[start..end].replace("\\-", "-").replace("\\e", "\\")
}

/// The manual's rsyslog configuration with this test's files in place of
/// the documented ones.
fn documented_config(input: &Path, output: &Path) -> String {
    manual_config()
        .replace("/var/log/monitord/1234.jsonl", input.to_str().unwrap())
        .replace("/var/log/monitord/records.jsonl", output.to_str().unwrap())
}

/// The complete lines of a file, parsed (a line that does not parse is an
/// error naming it).
fn json_lines(path: &Path) -> Vec<Result<Value, String>> {
    let text = std::fs::read(path).unwrap_or_default();
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    text[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).map_err(|e| {
                format!(
                    "{e}: a line of {} bytes: {}…",
                    l.len(),
                    String::from_utf8_lossy(&l[..l.len().min(120)])
                )
            })
        })
        .collect()
}

/// What a consumer does: group the lines by seq, join each record's parts
/// (part 1, then each later part's entries appended to its lists).
/// `None` for a record some of whose parts have not arrived.
fn join(lines: &[Value]) -> BTreeMap<u64, Option<Value>> {
    let mut by_seq: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for line in lines {
        if let Some(seq) = line["seq"].as_u64() {
            by_seq.entry(seq).or_default().push(line);
        }
    }
    by_seq
        .into_iter()
        .map(|(seq, mut parts)| {
            if parts[0].get("part").is_none() {
                assert_eq!(parts.len(), 1, "record {seq} arrived twice");
                return (seq, Some(parts[0].clone()));
            }
            parts.sort_by_key(|p| p["part"].as_u64());
            let count = parts[0]["parts"].as_u64().unwrap() as usize;
            if parts.len() < count {
                return (seq, None);
            }
            let numbers: Vec<u64> = parts.iter().map(|p| p["part"].as_u64().unwrap()).collect();
            assert_eq!(numbers, (1..=count as u64).collect::<Vec<_>>(), "record {seq}: each part once");
            let mut record = parts[0].clone();
            let fields = record.as_object_mut().unwrap();
            fields.remove("part");
            fields.remove("parts");
            for part in &parts[1..] {
                for (key, value) in part.as_object().unwrap() {
                    if key == "part" {
                        continue;
                    }
                    if ["seq", "time", "kind", "epoch", "pid", "parts"].contains(&key.as_str()) {
                        assert_eq!(value, &parts[0][key.as_str()], "record {seq}: every part says {key}");
                        continue;
                    }
                    match value {
                        Value::Array(more) => {
                            fields[key].as_array_mut().unwrap().extend(more.iter().cloned())
                        }
                        Value::Object(lists) => {
                            for (sub, more) in lists {
                                fields[key][sub]
                                    .as_array_mut()
                                    .unwrap()
                                    .extend(more.as_array().unwrap().iter().cloned())
                            }
                        }
                        other => panic!("record {seq}: a later part has a field {key}: {other}"),
                    }
                }
            }
            (seq, Some(record))
        })
        .collect()
}

/// Compare a joined record with the one `dump --json` prints: equal,
/// except file entries replaced by summaries, which must say what they
/// replaced. Returns the summaries.
fn compare(joined: &Value, recorded: &Value) -> Vec<Value> {
    let seq = &recorded["seq"];
    if joined == recorded {
        return Vec::new();
    }
    let mut summaries = Vec::new();
    let (j, r) = (joined.as_object().unwrap(), recorded.as_object().unwrap());
    assert_eq!(j.keys().collect::<Vec<_>>(), r.keys().collect::<Vec<_>>(), "record {seq}: the same fields");
    for (key, value) in r {
        if &j[key] == value {
            continue;
        }
        assert_eq!(key, "files", "record {seq}: only diffs are summarised, {key} differs");
        let (got, want) = (j[key].as_array().unwrap(), value.as_array().unwrap());
        assert_eq!(got.len(), want.len(), "record {seq}: every file entry arrived");
        for (summary, entry) in got.iter().zip(want).filter(|(a, b)| a != b) {
            assert_eq!(summary["truncated"], true, "record {seq}: a changed entry is marked: {summary}");
            for (field, v) in entry.as_object().unwrap() {
                if field == "forward" || field == "reverse" {
                    let text = v.as_str().expect("this test's diffs are UTF-8");
                    assert_eq!(summary[format!("{field}_bytes")], text.len(), "record {seq}: {field} length");
                    assert_eq!(
                        summary[format!("{field}_lines")],
                        text.lines().count(),
                        "record {seq}: {field} lines"
                    );
                    assert!(summary[format!("{field}_hash")].is_string());
                    assert!(summary.get(field.as_str()).is_none());
                } else {
                    assert_eq!(&summary[field.as_str()], v, "record {seq}: the summary keeps {field}");
                }
            }
            summaries.push(summary.clone());
        }
    }
    summaries
}

#[test]
fn the_readme_shows_the_tested_rsyslog_configuration() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let config = manual_config();
    assert!(
        config.contains("template(name=\"monitord-json\" type=\"string\" string=\"%msg%\\n\")"),
        "{config}"
    );
    assert!(readme.contains(&config), "README.md shows the manual's rsyslog configuration:\n{config}");
}

#[test]
fn rsyslog_ships_every_record_whole_with_max_line() {
    let Some(rsyslogd) = rsyslogd() else {
        skip_or_fail("rsyslogd is not installed (.ci/run installs Debian's rsyslog)");
        return;
    };
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let logs = TempDir::new("monitord-rsyslog-");
    // A baseline of 20,000 files: a line of about 2 MB without --max-line.
    for d in 0..100 {
        let dir = tree.path().join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..200 {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("{d} {f}\n")).unwrap();
        }
    }
    std::fs::write(tree.path().join("big.txt"), "first\nsecond\n").unwrap();
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    let ring = store.path().join("ring.bin");

    let input = logs.path().join("1234.jsonl");
    let output = logs.path().join("records.jsonl");
    // The control: what imfile does to the same records without --max-line.
    let unsplit = logs.path().join("unsplit.jsonl");
    let unsplit_out = logs.path().join("unsplit-out.jsonl");
    std::fs::create_dir(logs.path().join("work")).unwrap();
    std::fs::write(&input, "").unwrap();
    std::fs::write(&unsplit, "").unwrap();
    let config = format!(
        "global(workDirectory=\"{work}\")\n{documented}\n\
         ruleset(name=\"control\") {{\n    action(type=\"omfile\" file=\"{unsplit_out}\" template=\"monitord-json\")\n}}\n\
         input(type=\"imfile\" file=\"{unsplit}\" tag=\"control\" ruleset=\"control\")\n",
        work = logs.path().join("work").display(),
        documented = documented_config(&input, &output),
        unsplit = unsplit.display(),
        unsplit_out = unsplit_out.display(),
    );
    let conf = logs.path().join("rsyslog.conf");
    std::fs::write(&conf, &config).unwrap();
    let check = Command::new(&rsyslogd).arg("-N1").arg("-f").arg(&conf).output().unwrap();
    assert!(
        check.status.success(),
        "rsyslogd -N1 refuses\n{config}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let rsyslog_log = logs.path().join("rsyslogd.stderr");
    let _rsyslog = Reaped(
        Command::new(&rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(logs.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&rsyslog_log).unwrap())
            .spawn()
            .unwrap(),
    );
    // The documented pipeline: `dump --follow --json --max-line 8000 RING >> FILE`.
    let appended = OpenOptions::new().append(true).open(&input).unwrap();
    let _follower = Reaped(
        Command::new(bin())
            .args(["dump", "--follow", "--json", "--max-line", "8000", "--from", "1"])
            .arg(&ring)
            .stdout(appended)
            .spawn()
            .unwrap(),
    );

    // Small records, a 1 MB diff, small records again.
    for i in 0..5 {
        std::fs::write(tree.path().join(format!("d{i:02}/f000.txt")), format!("changed {i}\n")).unwrap();
        assert_eq!(daemon.ctl(&["sample"]).0, 0);
    }
    let megabyte: String = (0..16_384).map(|i| format!("new line {i:06} {}\n", "x".repeat(47))).collect();
    assert!(megabyte.len() >= 1 << 20);
    std::fs::write(tree.path().join("big.txt"), &megabyte).unwrap();
    assert_eq!(daemon.ctl(&["sample"]).0, 0);
    for i in 0..3 {
        std::fs::write(tree.path().join(format!("new{i}.txt")), "hello\n").unwrap();
        assert_eq!(daemon.ctl(&["sample"]).0, 0);
    }
    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(WAIT);
    let recorded = dump_json(store.path());
    assert!(recorded.len() >= 10, "{} records", recorded.len());

    // Wait until every record's parts came out of rsyslog.
    let arrived = poll(WAIT, || {
        let lines: Vec<Value> = json_lines(&output).into_iter().filter_map(Result::ok).collect();
        let joined = join(&lines);
        recorded
            .iter()
            .all(|r| joined.get(&r["seq"].as_u64().unwrap()).is_some_and(Option::is_some))
            .then_some(joined)
    });
    let Some(joined) = arrived else {
        panic!(
            "timed out waiting for every record from rsyslog: {} lines in, {} out\nrsyslogd: {}",
            std::fs::read_to_string(&input).unwrap().lines().count(),
            std::fs::read_to_string(&output).unwrap_or_default().lines().count(),
            std::fs::read_to_string(&rsyslog_log).unwrap_or_default()
        );
    };

    // What was written: no line longer than 8000 bytes, newline included.
    let written = std::fs::read(&input).unwrap();
    let longest = written.split(|&b| b == b'\n').map(|l| l.len() + 1).max().unwrap();
    assert!(longest <= 8000, "a line of {longest} bytes");
    // What came out: every line is JSON, and nothing more or less.
    let shipped = json_lines(&output);
    for line in &shipped {
        assert!(line.is_ok(), "rsyslog shipped a line that is not JSON: {line:?}");
    }
    assert_eq!(shipped.len(), written.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count());

    let mut summaries = Vec::new();
    for record in &recorded {
        let seq = record["seq"].as_u64().unwrap();
        summaries.extend(compare(joined[&seq].as_ref().unwrap(), record));
    }
    // The 1 MB diff could not fit a line: one summary, which says so.
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    assert_eq!(summaries[0]["path"], "big.txt");
    assert!(summaries[0]["forward_bytes"].as_u64().unwrap() > megabyte.len() as u64);
    assert_eq!(summaries[0]["forward_lines"], 16_384 + 2 + 3, "the added lines, two removed, the headers");
    // The baseline was shared out over many parts and joined back exactly.
    let baseline = recorded.iter().find(|r| r["kind"] == "baseline").unwrap();
    assert_eq!(baseline["files"].as_array().unwrap().len(), 20_001);
    let lines: Vec<Value> = shipped.into_iter().map(Result::unwrap).collect();
    let baseline_parts = lines.iter().filter(|l| l["seq"] == baseline["seq"]).count();
    assert!(baseline_parts > 100, "{baseline_parts} parts");

    // Without --max-line, imfile cuts the long records: not JSON.
    let dump = Command::new(bin()).args(["dump", "--json"]).arg(&ring).output().unwrap();
    assert!(dump.status.success());
    OpenOptions::new()
        .append(true)
        .open(&unsplit)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &dump.stdout))
        .unwrap();
    let cut = poll(WAIT, || {
        let lines = json_lines(&unsplit_out);
        (lines.len() >= recorded.len()).then_some(lines)
    })
    .expect("the control lines through rsyslog");
    assert!(
        cut.iter().any(Result::is_err),
        "rsyslog passed a line of megabytes whole: is its limit still 8k?"
    );
}

/// `dump --json` (without --follow) and `log --json` take the option too;
/// a limit too small for a part's fixed fields is a usage error.
#[test]
fn dump_and_log_bound_their_lines_and_refuse_a_tiny_limit() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    for i in 0..300 {
        std::fs::write(tree.path().join(format!("file-{i:03}.txt")), format!("{i}\n")).unwrap();
    }
    let target = Target::start(tree.path());
    let daemon = Daemon::start(target.pid(), store.path(), 600_000, &[]);
    for i in 0..40 {
        std::fs::write(tree.path().join(format!("file-{i:03}.txt")), format!("{}\n", "y".repeat(100)))
            .unwrap();
    }
    assert_eq!(daemon.ctl(&["sample"]).0, 0);
    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(WAIT);
    let ring = store.path().join("ring.bin");
    let ring = ring.to_str().unwrap();
    let store_arg = store.path().to_str().unwrap();

    let ran = monitord(&["dump", "--json", "--max-line", "1024", ring]);
    ran.expect_success();
    assert!(ran.stdout.split(|&b| b == b'\n').all(|l| l.len() < 1024), "{}", ran.explain());
    let lines: Vec<Value> = ran.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let recorded = dump_json(store.path());
    assert!(lines.len() > recorded.len() + 10, "the baseline and the sample were split");
    let joined = join(&lines);
    for record in &recorded {
        assert_eq!(joined[&record["seq"].as_u64().unwrap()].as_ref(), Some(record), "joined exactly");
    }

    let plain = monitord(&["log", "--json", "--store", store_arg]);
    let bounded = monitord(&["log", "--json", "--max-line", "1024", "--store", store_arg]);
    assert_eq!(plain.expect_success().stdout, bounded.expect_success().stdout, "log lines are short already");

    for args in [
        &["dump", "--json", "--max-line", "1000", ring][..],
        &["log", "--json", "--max-line", "100", "--store", store_arg],
    ] {
        let ran = monitord(args);
        ran.expect_code(2);
        let first = ran.stderr.lines().next().unwrap_or_default();
        assert!(first.contains("the least is 1024"), "{}", ran.explain());
    }
}
