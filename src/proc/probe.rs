//! What the sampler reads from `/proc/<pid>` besides the tree, as chosen
//! by `--record`: the memory map ([`super::maps`]) and the statistics
//! ([`super::stats`]). The sampler holds one [`Probe`] and calls it where
//! it builds a baseline or a sample.
//!
//! A probe never fails a record: a map or statistics that cannot be read
//! (most often because the target has just exited, which the sampler's
//! exit path records) leave the record's `maps` empty and `stats` unset.
//! The maps probe keeps its previous map, so the next successful sample
//! carries the whole change and replay stays exact.

use std::path::Path;

use crate::journal::record::{MapsDelta, Stats};
use crate::proc::Target;
use crate::proc::maps::MapsProbe;
use crate::proc::stats::StatsProbe;

/// What a monitor records (`--record files,maps,stats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recording {
    /// Text files of the working directory.
    pub files: bool,
    /// The memory map.
    pub maps: bool,
    /// Process statistics.
    pub stats: bool,
}

impl Default for Recording {
    /// Everything.
    fn default() -> Recording {
        Recording { files: true, maps: true, stats: true }
    }
}

/// The maps and statistics probes, with the choice of what to record.
#[derive(Debug, Default)]
pub struct Probe {
    recording: Recording,
    maps: MapsProbe,
    stats: StatsProbe,
}

impl Probe {
    /// A probe recording what `recording` says.
    pub fn new(recording: Recording) -> Probe {
        Probe { recording, maps: MapsProbe::new(), stats: StatsProbe::new() }
    }

    /// What is recorded.
    pub fn recording(&self) -> Recording {
        self.recording
    }

    /// The baseline's full map and statistics (`None` target: exited).
    pub fn baseline(&mut self, target: Option<&Target>) -> (Vec<Vec<u8>>, Option<Stats>) {
        let maps = match target {
            Some(target) if self.recording.maps => self.maps.baseline(target).unwrap_or_default(),
            _ => Vec::new(),
        };
        (maps, self.stats(target))
    }

    /// A sample's map delta and statistics.
    pub fn sample(&mut self, target: Option<&Target>) -> (MapsDelta, Option<Stats>) {
        let maps = match target {
            Some(target) if self.recording.maps => self.maps.sample(target).unwrap_or_default(),
            _ => MapsDelta::default(),
        };
        (maps, self.stats(target))
    }

    /// The record the last [`Probe::sample`] went into was not written:
    /// the next sample carries its map change again.
    pub fn unsample(&mut self) {
        self.maps.unsample();
    }

    /// After record `seq` of `epoch` is committed: keep the store's newest
    /// map ([`crate::maps::Anchor`]) when it is due. Best effort: a failure
    /// only limits how far back the map can be rebuilt once the baseline
    /// has left the ring, and the next record tries again.
    pub fn keep_anchor(&mut self, store_dir: &Path, epoch: u64, seq: u64, oldest_seq: u64) {
        if self.recording.maps {
            let _ = self.maps.keep_anchor(store_dir, epoch, seq, oldest_seq);
        }
    }

    fn stats(&mut self, target: Option<&Target>) -> Option<Stats> {
        match target {
            Some(target) if self.recording.stats => self.stats.read(target).ok(),
            _ => None,
        }
    }
}
