//! `monitord report`: write the recording (or the part between `--since`
//! and `--until`) as one self-contained HTML page. Reads a copy of the
//! ring, so it works while the monitor writes; writes nothing to the store
//! but the page (`<store>/report.html` unless `-o` names another file;
//! `-o -` is stdout). A damaged ring still gives the page of what is
//! readable, the damage named on stderr, and exit status 1.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::ReportArgs;
use crate::journal::Snapshot;
use crate::journal::record::Record;
use crate::report::html::{self, Options};
use crate::report::model::{self, Builder, Entry, MapsAnchor, Model};
use crate::store;

/// Write the report of the store's ring.
///
/// # Errors
/// When the ring cannot be read, a point names no record, or the page
/// cannot be written.
pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let store_dir = store::resolve(args.store.as_deref())?;
    let ring = store_dir.join(store::RING_FILE);
    let snapshot = Snapshot::read(&ring)?;
    let range = super::log::resolve_range(&snapshot, args.since.as_ref(), args.until.as_ref())?;
    let from_start = range.start == 0;
    let anchor = crate::maps::read_anchor(&store_dir).map(|a| MapsAnchor {
        epoch: a.epoch,
        seq: a.seq,
        count: a.map.len() as u64,
    });
    // Each record is decoded as it is read and given to the model, which
    // copies what it needs; only the records it refers to (file and map
    // changes) are kept. Most of a long recording is idle samples.
    let mut builder: Option<Builder> = None;
    let mut changed: Vec<(u64, u64, Record)> = Vec::new();
    let problems = super::log::scan_range(&snapshot, &range, |frame, in_range| {
        if !in_range {
            return;
        }
        let builder = builder.get_or_insert_with(|| {
            // Records before the oldest one kept were dropped by wrap-around.
            let dropped_before = (from_start && frame.seq > 1).then(|| (1, frame.seq - 1));
            Builder::new(dropped_before, anchor)
        });
        let record = Record::decode(&frame.payload).ok();
        builder.push(Entry { seq: frame.seq, time_us: frame.time_us, record: record.as_ref() });
        if let Some(record) = record
            && model::refers_to(&record)
        {
            changed.push((frame.seq, frame.time_us, record));
        }
    });
    // The ring's copy is not needed any more: the model holds no frame.
    drop(snapshot);
    let model = builder.map_or_else(Model::default, |b| {
        b.finish(changed.iter().map(|(seq, time_us, record)| (*seq, *time_us, record)))
    });

    let mut options = Options::new(store_dir.display().to_string());
    // The newest process that still runs tells its command line.
    options.command =
        model.identities.iter().rev().find_map(|&(pid, starttime)| command_line(pid, starttime));
    // Only fanotify names who wrote a file.
    options.backend = if model.backends.is_empty() {
        // Stores from before baselines named their backend: only
        // fanotify names writers.
        model.writers_known.then(|| "fanotify".to_string())
    } else {
        Some(model.backends.join(", "))
    };
    let page = html::write(&model, &options);

    let output = args.output.clone().unwrap_or_else(|| store_dir.join(store::REPORT_FILE));
    if output.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(page.as_bytes()).context("cannot write to stdout")?;
        stdout.flush().context("cannot write to stdout")?;
    } else {
        // Inside the store, private as everything there; elsewhere as the umask says.
        let mode = if args.output.is_none() { 0o600 } else { 0o666 };
        write_atomically(&output, page.as_bytes(), mode)?;
    }
    Ok(super::reader_exit(super::warn_damage(&ring, &problems)))
}

/// The command line of `pid`, if it is still the process the recording
/// followed (same start time).
fn command_line(pid: i32, starttime: u64) -> Option<String> {
    let target = crate::proc::Target::open(pid).ok()?;
    if target.starttime() != starttime {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> =
        raw.split(|&b| b == 0).filter(|w| !w.is_empty()).map(crate::render::human::sanitize).collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Write `bytes` to `path`. A regular file (or a new one) is replaced
/// through a temporary beside it, then a rename, so a reader never sees
/// half a page; a symlink is followed and the file it names replaced the
/// same way. Anything else (a FIFO, a terminal, `/dev/null`) is written
/// into as it is: a rename would put a file in its place.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let context = || format!("cannot write the report to {}", path.display());
    let path = match std::fs::canonicalize(path) {
        Ok(real) => real,
        // A new file: its name as given (a dangling link is refused below).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e).with_context(context),
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            anyhow::bail!("{}: a symlink to nothing", context())
        }
        Ok(meta) if !meta.is_file() => {
            let mut file = std::fs::OpenOptions::new().write(true).open(&path).with_context(context)?;
            return file.write_all(bytes).and_then(|()| file.flush()).with_context(context);
        }
        _ => {}
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().with_context(|| format!("{}: not a file name", context()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(context);
    }
    Ok(())
}
