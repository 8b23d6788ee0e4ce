//! `monitord maps --at SEQ`: print the memory map as it was at a record,
//! in the format of `/proc/<pid>/maps`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::MapsArgs;
use crate::journal::Snapshot;
use crate::journal::record::Record;
use crate::maps;
use crate::store::{self, LockMode};

/// Rebuild the map at `--at` (from the epoch's baseline, or from the
/// store's newest map once the baseline has left the ring) and print it.
///
/// # Errors
/// When SEQ is not in the ring, its baseline has been dropped, the map was
/// not recorded, or the journal does not replay.
pub fn run(args: &MapsArgs) -> anyhow::Result<ExitCode> {
    let store_dir = store::resolve(args.store.as_deref())?;
    let ring = store_dir.join(store::RING_FILE);
    if !ring.exists() {
        // Let the reader name the missing ring in its error.
        Snapshot::read(&ring)?;
    }
    let lock = store::LockFile::open(&store_dir)?;
    let (anchor, snapshot) = {
        // A live monitor commits under the exclusive lock: read whole
        // records. The newest map is read first, so it is never newer than
        // the records read after it.
        let _guard = lock.lock(LockMode::Shared)?;
        (maps::read_anchor(&store_dir), Snapshot::read(&ring)?)
    };
    let scan = snapshot.scan();
    let records = scan
        .frames
        .iter()
        .map(|frame| {
            Record::decode(&frame.payload)
                .map(|record| (frame.seq, record))
                .with_context(|| format!("record {} cannot be decoded", frame.seq))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // A map is rebuilt from the records around the point; damage elsewhere
    // does not change it, damage in between is an error of map_at.
    super::warn_damage(&ring, &scan.problems);
    let map = maps::map_at(&records, args.at, anchor.as_ref())?;
    if map.is_empty() {
        bail!("no memory map was recorded at seq {} (the monitor ran without --record maps)", args.at);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&map.render()).context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
