//! `monitord dump [--json] RING`: print every record of a ring file.

use std::io::{BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::DumpArgs;
use crate::journal::Snapshot;
use crate::journal::record::Record;
use crate::render::{human, json};

/// Print the ring's records, oldest first.
///
/// # Errors
/// When the ring cannot be read or stdout fails.
pub fn run(args: &DumpArgs) -> anyhow::Result<ExitCode> {
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
    let mut buf = Vec::new();
    for frame in snapshot.frames() {
        buf.clear();
        match Record::decode(frame.payload) {
            Ok(record) if args.json => {
                serde_json::to_writer(&mut buf, &json::record(frame.seq, frame.time_us, &record))?;
                buf.push(b'\n');
            }
            Ok(record) => human::render(frame.seq, frame.time_us, &record, color, false, &mut buf),
            Err(e) if args.json => {
                let value =
                    serde_json::json!({ "seq": frame.seq, "kind": "undecodable", "error": e.to_string() });
                serde_json::to_writer(&mut buf, &value)?;
                buf.push(b'\n');
            }
            Err(e) => buf.extend_from_slice(format!("#{} undecodable record: {e}\n", frame.seq).as_bytes()),
        }
        out.write_all(&buf).context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
