//! Mirror upkeep: the mirror follows the journal. Mirror updates are made
//! in the order `classify` gave; after a failed update the missed ones are
//! made before anything else is recorded; after a crash between a commit
//! and its mirror update, start-up repair rolls the mirror forward from the
//! last record; and the mirrors of epochs whose records have all left the
//! ring are removed.

use std::path::Path;

use crate::journal::record::{Body, Record};
use crate::journal::{self, Ring};
use crate::mirror::{self, Mirror};
use crate::store::LockMode;

use super::classify::Update;
use super::{Error, Sampler};

/// Make `updates` in the mirror, in order.
pub(super) fn apply_updates(mirror: &mut Mirror, updates: &[Update]) -> Result<(), Error> {
    for (path, entry) in updates {
        match entry {
            Some((node, content)) => mirror.put(path, *node, content)?,
            None => mirror.remove(path)?,
        }
    }
    Ok(())
}

/// Bring the newest epoch's mirror in line with the last committed record
/// after a crash between the ring commit and the mirror update. Returns
/// how many entries were rolled forward.
///
/// # Errors
/// [`Error::Mirror`] when the mirror cannot be written.
pub fn repair(store: &Path, ring: &Ring) -> Result<usize, Error> {
    let Ok(snapshot) = journal::Snapshot::read(ring.path()) else { return Ok(0) };
    let Some(last) = snapshot.frames().last() else { return Ok(0) };
    let Ok(record) = Record::decode(&last.payload) else { return Ok(0) };
    let Body::Sample(sample) = &record.body else { return Ok(0) };
    let Ok(mut mirror) = Mirror::open_existing(store, record.epoch) else { return Ok(0) };
    Ok(crate::history::roll_forward(&mut mirror, &sample.files)?)
}

impl Sampler {
    /// After [`Error::MirrorBehind`]: make the mirror updates the last
    /// record missed (putting and removing again is harmless).
    pub(super) fn catch_up(&mut self) -> Result<(), Error> {
        let Some(updates) = &self.unapplied else { return Ok(()) };
        let _guard = self.lock.lock(LockMode::Exclusive)?;
        apply_updates(&mut self.mirror, updates).map_err(|e| match e {
            Error::Mirror(source) => Error::MirrorBehind(source),
            other => other,
        })?;
        self.unapplied = None;
        Ok(())
    }

    /// Remove the mirrors of epochs whose records have all left the ring,
    /// and epoch directories that never got a committed baseline.
    pub(super) fn collect_garbage(&self) {
        let info = self.ring.info();
        let epochs = mirror::epochs(&self.settings.store);
        for (i, &epoch) in epochs.iter().enumerate() {
            if epoch == self.epoch {
                continue;
            }
            let next_start = epochs.get(i + 1).copied().unwrap_or(u64::MAX);
            let uncommitted = epoch >= info.next_seq;
            let all_dropped = next_start <= info.oldest_seq;
            if uncommitted || all_dropped {
                let _ = mirror::remove_epoch(&self.settings.store, epoch);
            }
        }
    }
}
