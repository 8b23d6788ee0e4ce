//! `monitord dump [--json [--max-line BYTES]] [--follow] RING`: print
//! every record of a ring file, or follow it as it is written.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cli::DumpArgs;
use crate::journal::Snapshot;
use crate::journal::follow::{Follower, Start, Step};
use crate::journal::record::{Body, Record};
use crate::render::{human, json, split};
use crate::store;

/// How long `--follow` sleeps when nothing new is committed.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Print the ring's records, oldest first (or follow them).
///
/// # Errors
/// When the ring cannot be read or stdout fails.
pub fn run(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    if args.follow {
        return follow(args);
    }
    let snapshot = Snapshot::read(&args.ring)?;
    let stdout = std::io::stdout();
    let color = !args.json && stdout.is_terminal();
    let mut out = BufWriter::new(stdout.lock());
    if !args.json {
        let info = snapshot.info();
        writeln!(
            out,
            "ring {}: capacity {} bytes, {} used, records {}..{}, {} dropped by wrap, opened {} times",
            args.ring.display(),
            info.capacity_bytes,
            info.used_bytes,
            info.oldest_seq,
            info.next_seq.saturating_sub(1),
            info.dropped_records,
            info.opens
        )?;
    }
    // Each record is written as it is found, so a full ring's records are
    // never all held at once.
    let mut buf = Vec::new();
    let mut failed = None;
    let (problems, _) = snapshot.scan_each(|frame| {
        if failed.is_some() {
            return;
        }
        buf.clear();
        let written = write_record(frame.seq, frame.time_us, &frame.payload, args, color, &mut buf)
            .and_then(|()| out.write_all(&buf).context("cannot write to stdout"));
        failed = written.err();
    });
    if let Some(e) = failed {
        return Err(e);
    }
    out.flush().context("cannot write to stdout")?;
    Ok(super::reader_exit(super::warn_damage(&args.ring, &problems)))
}

/// One record, as JSON (in lines of at most `--max-line`) or human text.
fn write_record(
    seq: u64,
    time_us: u64,
    payload: &[u8],
    args: &DumpArgs,
    color: bool,
    buf: &mut Vec<u8>,
) -> anyhow::Result<()> {
    match Record::decode(payload) {
        Ok(record) if args.json => {
            // Samples, nearly every record, are written straight, as the
            // value would be; through the value when it must be split.
            let start = buf.len();
            let straight = match &record.body {
                Body::Sample(sample) => {
                    json::write_sample(seq, time_us, record.epoch, record.pid, sample, buf)?;
                    args.max_line.is_none_or(|limit| buf.len() - start < limit)
                }
                _ => false,
            };
            if straight {
                buf.push(b'\n');
            } else {
                buf.truncate(start);
                split::write_lines(&json::record(seq, time_us, &record), args.max_line, buf)?;
            }
        }
        Ok(record) => human::render(seq, time_us, &record, color, false, buf),
        Err(e) if args.json => {
            let value = serde_json::json!({ "seq": seq, "kind": "undecodable", "error": e.to_string() });
            split::write_lines(&value, args.max_line, buf)?;
        }
        Err(e) => buf.extend_from_slice(format!("#{seq} undecodable record: {e}\n").as_bytes()),
    }
    Ok(())
}

/// `--follow`: print records as they are committed, gaps as gap lines.
fn follow(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let start = args.from.map_or(Start::Newest, Start::Seq);
    let mut follower = Follower::open(&args.ring, start)?;
    let stdout = std::io::stdout();
    let color = !args.json && stdout.is_terminal();
    let mut out = stdout.lock();
    let mut buf = Vec::new();
    loop {
        // Whether the writer was gone before this drain: then nothing can
        // follow what the drain finds.
        let stopped = args.until_stop && writer_gone(&args.ring);
        buf.clear();
        while let Some(step) = follower.poll()? {
            match step {
                Step::Record(r) => write_record(r.seq, r.time_us, &r.payload, args, color, &mut buf)?,
                Step::Gap { from, to } if args.json => {
                    let value = serde_json::json!({ "kind": "gap", "from_seq": from, "to_seq": to, "dropped": to - from });
                    split::write_lines(&value, args.max_line, &mut buf)?;
                }
                Step::Gap { from, to } => {
                    buf.extend_from_slice(
                        format!("… {} records dropped ({from}..{}) …\n", to - from, to - 1).as_bytes(),
                    );
                }
            }
            if buf.len() > 1 << 20 {
                out.write_all(&buf).context("cannot write to stdout")?;
                buf.clear();
            }
        }
        out.write_all(&buf).context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
        // Nothing to write tells us the reader went: ask the pipe, as tail -f does.
        if stopped || reader_gone(&out, FOLLOW_POLL) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Whether no monitor writes the ring (the store is the ring's directory).
fn writer_gone(ring: &Path) -> bool {
    !store::is_running(ring.parent().unwrap_or(Path::new(".")))
}

/// Wait up to `timeout`; true as soon as `out` reports an error or a
/// hang-up: a pipe whose reader has closed it (poll(2) gives POLLERR on
/// its write end). Files and terminals just wait.
fn reader_gone(out: &impl std::os::fd::AsFd, timeout: Duration) -> bool {
    use nix::errno::Errno;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    // No events asked for: POLLERR and POLLHUP are always reported, and a
    // pipe with room to write does not wake us.
    let mut fds = [PollFd::new(out.as_fd(), PollFlags::empty())];
    let gone = PollFlags::POLLERR | PollFlags::POLLHUP;
    match poll(&mut fds, timeout) {
        Ok(0) | Err(Errno::EINTR) => false,
        Ok(_) if fds[0].revents().is_some_and(|r| r.intersects(gone)) => true,
        // Not something poll can watch (a closed stdout): just wait.
        _ => {
            std::thread::sleep(FOLLOW_POLL);
            false
        }
    }
}
