//! Reading the target's memory map, `/proc/<pid>/maps`, each baseline and
//! sample, through the pinned [`Target`].
//!
//! This file owns the read and the previous sample's text. What the text
//! means, how two texts differ and the store's newest map are
//! [`crate::maps`]; the sampler reaches this probe through
//! [`super::probe::Probe`].
//!
//! # Cost
//!
//! [`MapsProbe`] keeps the raw text of the previous sample. A sample reads
//! the file into a reused buffer and compares the bytes: when nothing
//! changed that is one read and one `memcmp`, with no parsing and no
//! allocation. Only when the bytes differ are the lines diffed
//! ([`maps::diff`]: sorted slices of both texts, merged; only changed
//! lines are copied).
//!
//! # Kernel notes
//!
//! - The text is produced on the fly, a page or so per `read(2)`; a large
//!   map read while the process changes it may mix the two states (the
//!   kernel takes the mmap lock per read call, not for the whole file). The
//!   next sample sees the settled state, and the recorded deltas stay
//!   consistent with the recorded texts, so replay is unaffected.
//! - A zombie's map reads as empty: [`MapsProbe`] reports that as
//!   [`Error::Empty`] instead of recording every mapping as removed.

use std::path::Path;

use crate::journal::record::MapsDelta;
use crate::maps::{self, diff, lines, write_anchor};
use crate::proc::{self, Target};

/// Errors reading the target's map.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/proc/<pid>/maps` could not be read (the process may be gone).
    #[error("cannot read the memory map")]
    Read(#[source] proc::Error),
    /// The map read as empty: the process has exited (a zombie) or is a
    /// kernel thread.
    #[error("process {pid} has no memory map (it has exited)")]
    Empty {
        /// The PID.
        pid: i32,
    },
}

/// Reads the target's map each sample and diffs it against the previous
/// one. Holds the previous text and a read buffer, both reused, so an
/// unchanged map costs one read and one comparison.
#[derive(Debug, Default)]
pub struct MapsProbe {
    previous: Vec<u8>,
    buffer: Vec<u8>,
    /// The last [`MapsProbe::sample`] moved `previous` on (the old map is
    /// in `buffer` until the next read).
    moved: bool,
    /// (epoch, seq) of the anchor last written.
    anchored: Option<(u64, u64)>,
}

impl MapsProbe {
    /// A probe with no previous map (the first sample records everything
    /// as added).
    pub fn new() -> MapsProbe {
        MapsProbe::default()
    }

    /// Read the whole map for a baseline, and remember it.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Empty`]; the previous map is kept.
    pub fn baseline(&mut self, target: &Target) -> Result<Vec<Vec<u8>>, Error> {
        self.read(target)?;
        std::mem::swap(&mut self.previous, &mut self.buffer);
        self.moved = false;
        Ok(lines(&self.previous).map(<[u8]>::to_vec).collect())
    }

    /// Read the map and return what changed since the last successful
    /// read.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Empty`]; the previous map is kept, so
    /// the next successful sample carries the whole change.
    pub fn sample(&mut self, target: &Target) -> Result<MapsDelta, Error> {
        self.moved = false;
        self.read(target)?;
        self.take_delta()
    }

    /// Forget the last [`MapsProbe::sample`]: its delta was not recorded,
    /// so the next sample must carry that change again.
    pub fn unsample(&mut self) {
        if std::mem::take(&mut self.moved) {
            std::mem::swap(&mut self.previous, &mut self.buffer);
        }
    }

    /// Diff the buffer against the previous text and make it the previous.
    fn take_delta(&mut self) -> Result<MapsDelta, Error> {
        if self.buffer == self.previous {
            return Ok(MapsDelta::default());
        }
        let delta = diff(&self.previous, &self.buffer);
        std::mem::swap(&mut self.previous, &mut self.buffer);
        self.moved = true;
        Ok(delta)
    }

    /// The text of the last successful read.
    pub fn current(&self) -> &[u8] {
        &self.previous
    }

    /// After record `seq` of `epoch` is committed, rewrite the store's
    /// [`maps::Anchor`] when it is due: at the start of an epoch, and when
    /// the ring (whose oldest record is now `oldest_seq`) has dropped a
    /// record newer than the anchor. Otherwise this costs nothing.
    ///
    /// # Errors
    /// [`maps::Error::Anchor`]; the next call tries again.
    pub fn keep_anchor(
        &mut self,
        store_dir: &Path,
        epoch: u64,
        seq: u64,
        oldest_seq: u64,
    ) -> Result<(), maps::Error> {
        let due = match self.anchored {
            Some((e, s)) => e != epoch || oldest_seq > s + 1,
            None => true,
        };
        if !due || self.previous.is_empty() {
            return Ok(());
        }
        write_anchor(store_dir, epoch, seq, &self.previous)?;
        self.anchored = Some((epoch, seq));
        Ok(())
    }

    fn read(&mut self, target: &Target) -> Result<(), Error> {
        self.buffer.clear();
        // Room for the whole text plus growth, so the kernel fills it in a
        // few large reads and the buffer is not reallocated.
        self.buffer.reserve(self.previous.len() + self.previous.len() / 4 + 64 * 1024);
        target.read_into("maps", &mut self.buffer).map_err(Error::Read)?;
        if self.buffer.is_empty() {
            return Err(Error::Empty { pid: target.pid() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::parse_line;

    #[test]
    fn own_map_parses_and_an_unchanged_read_is_empty() {
        let me = Target::open(std::process::id() as i32).unwrap();
        let mut probe = MapsProbe::new();
        let baseline = probe.baseline(&me).unwrap();
        assert!(baseline.iter().all(|l| parse_line(l).is_ok()));
        assert!(baseline.iter().any(|l| l.ends_with(b"[stack]")));
        // Compare the retained text with itself: the unchanged path.
        probe.buffer = probe.previous.clone();
        assert_eq!(probe.take_delta().unwrap(), MapsDelta::default());
    }

    #[test]
    fn an_unrecorded_delta_is_carried_by_the_next_sample() {
        let old = b"10-20 r--p 0 00:00 0 /a\n".to_vec();
        let new = b"10-20 r--p 0 00:00 0 /a\n30-40 rw-p 0 00:00 0\n".to_vec();
        let mut probe = MapsProbe { previous: old.clone(), ..MapsProbe::new() };
        probe.buffer = new.clone();
        let first = probe.take_delta().unwrap();
        assert_eq!(first.added, vec![b"30-40 rw-p 0 00:00 0".to_vec()]);
        // The record holding `first` was not written.
        probe.unsample();
        assert_eq!(probe.current(), old.as_slice());
        probe.buffer = new;
        assert_eq!(probe.take_delta().unwrap(), first, "the same change again");
        // Taking back twice, or after no change, changes nothing.
        probe.unsample();
        probe.unsample();
        assert_eq!(probe.current(), old.as_slice());
    }
}
