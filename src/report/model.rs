//! What the report shows, computed from decoded records and nothing else:
//! the events placed in time, the statistics series (CPU % from CPU time
//! deltas, RSS, threads, fds, mapping count), the per-file table and
//! histories, and the min/max buckets that downsample a series to the
//! pixels a chart has. Pure functions; the page is written by
//! [`super::html`].
//!
//! The model is built a record at a time ([`Builder`]), so that a reader
//! holds only the records it refers to (file and map changes), not the
//! millions of idle samples a long recording has; their statistics are
//! held by column, repeated values as runs ([`StatPoints`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::journal::record::{Body, FileChange, MapsDelta, Record, Writers};

/// One record of the ring as the report takes it.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Time the record was written, µs since the Unix epoch.
    pub time_us: u64,
    /// The decoded record; `None` when its payload could not be decoded.
    pub record: Option<&'a Record>,
}

/// The map count a store's anchor file (`<store>/maps`) gives, which makes
/// the mapping count known for samples whose baseline left the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapsAnchor {
    /// The epoch the anchor belongs to.
    pub epoch: u64,
    /// The record the map is as of.
    pub seq: u64,
    /// How many mappings it has.
    pub count: u64,
}

/// Something that happened other than a sample's changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A baseline: the tree was listed in full.
    Baseline {
        /// Files tracked.
        files: usize,
    },
    /// The monitor followed another process.
    Pid {
        /// The PID before (0: none).
        old: i32,
        /// The PID after.
        new: i32,
    },
    /// The target changed its working directory.
    Cwd {
        /// The old directory.
        old: Vec<u8>,
        /// The new one.
        new: Vec<u8>,
    },
    /// The target exited.
    Exit {
        /// Exit status, when known.
        code: Option<i32>,
        /// Terminating signal, when known.
        signal: Option<i32>,
    },
    /// Events were lost; directories were rescanned.
    Rescan {
        /// Why.
        reason: String,
        /// How many directories.
        dirs: usize,
    },
    /// Records `from..=to` are not in the ring (dropped by wrap-around, or
    /// skipped as damaged).
    Gap {
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
        /// Dropped by wrap-around (before the oldest kept record), not damage.
        wrap: bool,
    },
    /// A mark record.
    Mark {
        /// Its name.
        name: String,
    },
    /// A record whose payload could not be decoded.
    Undecodable,
}

impl EventKind {
    /// The lane name used in the page (one colour each).
    pub fn lane(&self) -> &'static str {
        match self {
            EventKind::Baseline { .. } => "baseline",
            EventKind::Pid { .. } => "pid",
            EventKind::Cwd { .. } => "cwd",
            EventKind::Exit { .. } => "exit",
            EventKind::Rescan { .. } => "rescan",
            EventKind::Gap { .. } | EventKind::Undecodable => "gap",
            EventKind::Mark { .. } => "mark",
        }
    }
}

/// An event at a point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The record's seq (for a gap: the first record after it).
    pub seq: u64,
    /// Its time.
    pub time_us: u64,
    /// What happened.
    pub kind: EventKind,
}

/// A sample that changed files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    /// The sample's seq.
    pub seq: u64,
    /// Its time.
    pub time_us: u64,
    /// Files changed.
    pub files: usize,
    /// Lines added plus lines removed.
    pub lines: usize,
}

/// The statistics of one record that carried them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatPoint {
    /// The record's seq.
    pub seq: u64,
    /// Its time.
    pub time_us: u64,
    /// CPU use since the previous point of the same process, in percent of
    /// one CPU; `None` for the first point of a process or after a reset.
    pub cpu: Option<f64>,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Mappings, when the map is known at this record.
    pub maps: Option<u64>,
}

/// A value per point, stored as runs: one entry where the value changes,
/// not one per point (an idle process's RSS, threads, fds and map count
/// stay the same for thousands of samples).
#[derive(Clone, Debug, PartialEq)]
struct Runs<T> {
    /// Each run's first point and value, in order.
    runs: Vec<(usize, T)>,
    /// Points held.
    len: usize,
}

impl<T> Default for Runs<T> {
    fn default() -> Self {
        Runs { runs: Vec::new(), len: 0 }
    }
}

impl<T: Copy + PartialEq> Runs<T> {
    fn push(&mut self, value: T) {
        if self.runs.last().is_none_or(|(_, last)| *last != value) {
            self.runs.push((self.len, value));
        }
        self.len += 1;
    }

    /// The value of point `i` (`i < len`).
    fn get(&self, i: usize) -> T {
        let run = self.runs.partition_point(|(start, _)| *start <= i);
        self.runs[run - 1].1
    }

    /// Every point's value, in order.
    fn iter(&self) -> RunsIter<'_, T> {
        RunsIter { runs: &self.runs, run: 0, at: 0, len: self.len }
    }
}

/// The values of [`Runs`], point by point.
#[derive(Clone, Debug)]
struct RunsIter<'a, T> {
    runs: &'a [(usize, T)],
    /// The run of point `at`.
    run: usize,
    /// The next point.
    at: usize,
    len: usize,
}

impl<T: Copy> Iterator for RunsIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.at >= self.len {
            return None;
        }
        while self.runs.get(self.run + 1).is_some_and(|next| next.0 <= self.at) {
            self.run += 1;
        }
        self.at += 1;
        self.runs.get(self.run).map(|r| r.1)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len - self.at;
        (left, Some(left))
    }
}

/// The statistics points of a report, in seq order, held by column: a
/// long recording has millions of points and most of their values repeat
/// (held as runs). [`StatPoints::iter`] gives them back as [`StatPoint`]s.
#[derive(Clone, Debug, Default)]
pub struct StatPoints {
    seqs: Vec<u64>,
    times: Vec<u64>,
    /// CPU %, NaN where unknown ([`cpu_percent`] never gives NaN).
    cpu: Vec<f64>,
    rss_kib: Runs<u64>,
    threads: Runs<u64>,
    fds: Runs<u64>,
    maps: Runs<Option<u64>>,
}

impl StatPoints {
    /// Add a point after the others.
    pub fn push(&mut self, point: StatPoint) {
        self.seqs.push(point.seq);
        self.times.push(point.time_us);
        self.cpu.push(point.cpu.unwrap_or(f64::NAN));
        self.rss_kib.push(point.rss_kib);
        self.threads.push(point.threads);
        self.fds.push(point.fds);
        self.maps.push(point.maps);
    }

    /// How many points.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// No point at all.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// The points, in seq order.
    pub fn iter(&self) -> impl Iterator<Item = StatPoint> + Clone + '_ {
        let levels = self.rss_kib.iter().zip(self.threads.iter()).zip(self.fds.iter()).zip(self.maps.iter());
        self.seqs.iter().zip(&self.times).zip(&self.cpu).zip(levels).map(
            |(((&seq, &time_us), &cpu), (((rss_kib, threads), fds), maps))| StatPoint {
                seq,
                time_us,
                cpu: (!cpu.is_nan()).then_some(cpu),
                rss_kib,
                threads,
                fds,
                maps,
            },
        )
    }

    /// The newest point.
    pub fn last(&self) -> Option<StatPoint> {
        self.iter().last()
    }
}

/// One change of one file, as its history lists it.
#[derive(Clone, Copy, Debug)]
pub struct ChangeAt<'a> {
    /// The sample's seq.
    pub seq: u64,
    /// Its time.
    pub time_us: u64,
    /// The change, with its patch.
    pub change: &'a FileChange,
    /// Who wrote it, when the backend knows.
    pub writers: Option<&'a Writers>,
}

/// The writers of a file over the report: PIDs, and whether any change
/// was not the target's. [`writer_text`] formats them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileWriters {
    /// PIDs that wrote it.
    pub pids: BTreeSet<i32>,
    /// Their names (`comm[pid]`) where the store names writers.
    pub names: BTreeSet<String>,
    /// Some change was written by a process outside the target's tree.
    pub foreign: bool,
}

impl FileWriters {
    fn add(&mut self, writers: &Writers) {
        self.pids.extend(writers.pids.iter().copied());
        self.names.extend(writers.who.iter().map(|w| w.label()));
        self.foreign |= writers.foreign;
    }
}

impl From<&Writers> for FileWriters {
    /// The writers of one change.
    fn from(writers: &Writers) -> FileWriters {
        let mut one = FileWriters::default();
        one.add(writers);
        one
    }
}

/// The one place writers are put into words: `comm[pid]` where they were
/// named, else their PIDs. Empty when no writer is known.
pub fn writer_text(writers: &FileWriters) -> String {
    let named: BTreeSet<i32> =
        writers.names.iter().filter_map(|n| n.rsplit_once('[')?.1.strip_suffix(']')?.parse().ok()).collect();
    let mut words: Vec<String> = writers.names.iter().cloned().collect();
    words.extend(writers.pids.iter().filter(|p| !named.contains(p)).map(i32::to_string));
    let mut text = words.join(", ");
    if writers.foreign {
        text.push_str(" (not the target)");
    }
    text
}

/// A row of the file table, with the file's history.
#[derive(Clone, Debug)]
pub struct FileRow<'a> {
    /// Path relative to the watched directory.
    pub path: &'a [u8],
    /// Its changes, oldest first.
    pub changes: Vec<ChangeAt<'a>>,
    /// Lines added over all changes.
    pub added: usize,
    /// Lines removed over all changes.
    pub removed: usize,
    /// Who wrote it.
    pub writers: FileWriters,
}

/// A sample whose memory map changed.
#[derive(Clone, Copy, Debug)]
pub struct MapChange<'a> {
    /// The sample's seq.
    pub seq: u64,
    /// Its time.
    pub time_us: u64,
    /// Mappings added and removed.
    pub delta: &'a MapsDelta,
}

/// The counts in the page's header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records in the report.
    pub records: usize,
    /// Samples among them.
    pub samples: usize,
    /// File changes.
    pub changes: usize,
    /// Distinct paths changed.
    pub files: usize,
    /// Distinct writer PIDs.
    pub writers: usize,
    /// Gaps (wrap-around and missing records).
    pub gaps: usize,
    /// Marks.
    pub marks: usize,
    /// Records that could not be decoded.
    pub undecodable: usize,
    /// Rescans.
    pub rescans: usize,
}

/// Everything the page shows.
#[derive(Clone, Debug, Default)]
pub struct Model<'a> {
    /// Oldest and newest (seq, time) in the report.
    pub span: Option<((u64, u64), (u64, u64))>,
    /// PIDs followed, in order of appearance.
    pub pids: Vec<i32>,
    /// Working directories, in order of appearance.
    pub cwds: Vec<Vec<u8>>,
    /// The event backends the baselines name (stores from before they were
    /// recorded name none).
    pub backends: Vec<String>,
    /// Each followed process's PID and start time (ticks after boot), from
    /// its baselines, in order: with the PID, the start time is its identity.
    pub identities: Vec<(i32, u64)>,
    /// The header's counts.
    pub counts: Counts,
    /// Events other than file changes, in seq order.
    pub events: Vec<Event>,
    /// Samples that changed files, in seq order.
    pub activity: Vec<Activity>,
    /// Statistics, in seq order.
    pub stats: StatPoints,
    /// Changed files, by path.
    pub files: Vec<FileRow<'a>>,
    /// Samples whose map changed, in seq order.
    pub maps: Vec<MapChange<'a>>,
    /// Some change named its writers (only fanotify knows them).
    pub writers_known: bool,
}

/// CPU use between two readings of the same process, in percent of one
/// CPU: `None` when the time does not advance or the CPU time went back
/// (another process, or a counter reset).
pub fn cpu_percent(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let ((t0, cpu0), (t1, cpu1)) = (before, after);
    if t1 <= t0 || cpu1 < cpu0 {
        return None;
    }
    // ms of CPU over µs of wall time, in percent: ×1000 ×100.
    Some((cpu1 - cpu0) as f64 * 100_000.0 / (t1 - t0) as f64)
}

impl<'a> Model<'a> {
    /// Build the model of `entries` (seq order). `dropped_before` is the
    /// range of seqs the ring dropped by wrap-around before the first
    /// entry, if any; `anchor` the store's newest map, if read.
    pub fn build(
        entries: &[Entry<'a>],
        dropped_before: Option<(u64, u64)>,
        anchor: Option<MapsAnchor>,
    ) -> Self {
        let mut builder = Builder::new(dropped_before, anchor);
        for entry in entries {
            builder.push(*entry);
        }
        builder.finish(entries.iter().filter_map(|e| Some((e.seq, e.time_us, e.record?))))
    }
}

/// Whether the model refers to `record` (keeps references into it rather
/// than copies): a sample or undo that changed files or the memory map.
/// [`Builder::finish`] needs exactly these records; any other can be
/// dropped once [`Builder::push`] has seen it.
pub fn refers_to(record: &Record) -> bool {
    match &record.body {
        Body::Sample(s) | Body::Undo { sample: s, .. } => {
            !s.files.is_empty() || !s.maps.added.is_empty() || !s.maps.removed.is_empty()
        }
        _ => false,
    }
}

/// Builds a [`Model`] from records handed one at a time, so that a reader
/// need not hold a whole ring's records: [`Builder::push`] takes, from
/// every record in seq order, what the model copies (events, statistics,
/// counts); [`Builder::finish`] then takes, again in seq order, the records
/// the model refers to (those [`refers_to`] picks: file and map changes),
/// which must outlive the model. A full ring of an idle process is millions
/// of samples, none of which needs to be kept.
#[derive(Debug)]
pub struct Builder {
    /// The wrap-around gap before the first record, until it is pushed.
    dropped_before: Option<(u64, u64)>,
    anchor: Option<MapsAnchor>,
    span: Option<((u64, u64), (u64, u64))>,
    pids: Vec<i32>,
    cwds: Vec<Vec<u8>>,
    backends: Vec<String>,
    identities: Vec<(i32, u64)>,
    counts: Counts,
    events: Vec<Event>,
    stats: StatPoints,
    /// The previous CPU reading: (pid, time, cpu ms).
    cpu_before: Option<(i32, u64, u64)>,
    /// Map count as known going forward: (epoch, count).
    maps_known: Option<(u64, i64)>,
    /// Per stats point: its epoch and the map delta of its record, for
    /// the anchor pass (none without an anchor).
    map_steps: Runs<(u64, i64)>,
    /// The seq of the record pushed last.
    previous: Option<u64>,
}

impl Builder {
    /// A builder of the model of a range of records. `dropped_before` is
    /// the range of seqs the ring dropped by wrap-around before the first
    /// record, if any; `anchor` the store's newest map, if read.
    pub fn new(dropped_before: Option<(u64, u64)>, anchor: Option<MapsAnchor>) -> Builder {
        Builder {
            dropped_before,
            anchor,
            span: None,
            pids: Vec::new(),
            cwds: Vec::new(),
            backends: Vec::new(),
            identities: Vec::new(),
            counts: Counts::default(),
            events: Vec::new(),
            stats: StatPoints::default(),
            cpu_before: None,
            maps_known: None,
            map_steps: Runs::default(),
            previous: None,
        }
    }

    /// Take the next record (seq order): what the model copies from it.
    /// The record may be dropped afterwards unless [`refers_to`] picks it.
    pub fn push(&mut self, entry: Entry<'_>) {
        match &mut self.span {
            None => {
                self.span = Some(((entry.seq, entry.time_us), (entry.seq, entry.time_us)));
                if let Some((from, to)) = self.dropped_before {
                    self.events.push(Event {
                        seq: entry.seq,
                        time_us: entry.time_us,
                        kind: EventKind::Gap { from, to, wrap: true },
                    });
                }
            }
            Some((_, last)) => *last = (entry.seq, entry.time_us),
        }
        self.counts.records += 1;
        if let Some(prev) = self.previous
            && entry.seq > prev + 1
        {
            self.events.push(Event {
                seq: entry.seq,
                time_us: entry.time_us,
                kind: EventKind::Gap { from: prev + 1, to: entry.seq - 1, wrap: false },
            });
        }
        self.previous = Some(entry.seq);
        let event = |kind| Event { seq: entry.seq, time_us: entry.time_us, kind };
        let Some(record) = entry.record else {
            self.counts.undecodable += 1;
            self.events.push(event(EventKind::Undecodable));
            return;
        };
        if record.pid != 0 && !self.pids.contains(&record.pid) {
            self.pids.push(record.pid);
        }
        if self.maps_known.is_some_and(|(epoch, _)| epoch != record.epoch) {
            self.maps_known = None;
        }
        let stats = match &record.body {
            Body::Baseline(b) => {
                if !self.cwds.contains(&b.cwd) {
                    self.cwds.push(b.cwd.clone());
                }
                if !b.backend.is_empty() && !self.backends.contains(&b.backend) {
                    self.backends.push(b.backend.clone());
                }
                if record.pid != 0 && !self.identities.contains(&(record.pid, b.starttime)) {
                    self.identities.push((record.pid, b.starttime));
                }
                self.maps_known = Some((record.epoch, b.maps.len() as i64));
                self.events.push(event(EventKind::Baseline { files: b.files.len() }));
                b.stats.map(|s| (s, 0))
            }
            // An undo's changes are file changes as a sample's are; they
            // are taken by `finish`.
            Body::Sample(s) | Body::Undo { sample: s, .. } => {
                if matches!(record.body, Body::Sample(_)) {
                    self.counts.samples += 1;
                }
                let delta = s.maps.added.len() as i64 - s.maps.removed.len() as i64;
                if let Some((_, count)) = &mut self.maps_known {
                    *count += delta;
                }
                s.stats.map(|st| (st, delta))
            }
            Body::Pid { old, new } => {
                self.events.push(event(EventKind::Pid { old: *old, new: *new }));
                None
            }
            Body::Cwd { old, new } => {
                if !self.cwds.contains(new) {
                    self.cwds.push(new.clone());
                }
                self.events.push(event(EventKind::Cwd { old: old.clone(), new: new.clone() }));
                None
            }
            Body::Exit(exit) => {
                self.events.push(event(EventKind::Exit { code: exit.code, signal: exit.signal }));
                None
            }
            Body::Rescan { reason, paths } => {
                self.counts.rescans += 1;
                self.events.push(event(EventKind::Rescan { reason: reason.clone(), dirs: paths.len() }));
                None
            }
            Body::Mark { name } => {
                self.counts.marks += 1;
                self.events.push(event(EventKind::Mark { name: name.clone() }));
                None
            }
        };
        if let Some((stats, delta)) = stats {
            let cpu_ms = stats.utime_ms + stats.stime_ms;
            let cpu = match self.cpu_before {
                Some((pid, t, ms)) if pid == record.pid => cpu_percent((t, ms), (entry.time_us, cpu_ms)),
                _ => None,
            };
            self.cpu_before = Some((record.pid, entry.time_us, cpu_ms));
            self.stats.push(StatPoint {
                seq: entry.seq,
                time_us: entry.time_us,
                cpu,
                rss_kib: stats.rss_kib,
                threads: stats.threads,
                fds: stats.fds,
                maps: self.maps_known.map(|(_, n)| n.max(0) as u64),
            });
            if self.anchor.is_some() {
                self.map_steps.push((record.epoch, delta));
            }
        }
    }

    /// The model, given the records it refers to: `(seq, time, record)` of
    /// every pushed record that [`refers_to`] picks, in seq order (others
    /// among them are passed over).
    pub fn finish<'a>(self, changed: impl IntoIterator<Item = (u64, u64, &'a Record)>) -> Model<'a> {
        let Builder {
            anchor,
            span,
            pids,
            cwds,
            backends,
            identities,
            mut counts,
            events,
            mut stats,
            map_steps,
            ..
        } = self;
        if span.is_none() {
            return Model::default();
        }
        let mut model_maps = Vec::new();
        let mut activity = Vec::new();
        let mut files: BTreeMap<&'a [u8], FileRow<'a>> = BTreeMap::new();
        let mut writers: BTreeSet<i32> = BTreeSet::new();
        let mut writers_known = false;
        for (seq, time_us, record) in changed {
            let (Body::Sample(s) | Body::Undo { sample: s, .. }) = &record.body else { continue };
            if !s.maps.added.is_empty() || !s.maps.removed.is_empty() {
                model_maps.push(MapChange { seq, time_us, delta: &s.maps });
            }
            if !s.files.is_empty() {
                let lines = s.files.iter().map(|f| f.patch.lines_added() + f.patch.lines_removed()).sum();
                activity.push(Activity { seq, time_us, files: s.files.len(), lines });
            }
            for change in &s.files {
                counts.changes += 1;
                let by = s.writers.iter().find(|w| w.path == change.path);
                let row = files.entry(&change.path).or_insert_with(|| FileRow {
                    path: &change.path,
                    changes: Vec::new(),
                    added: 0,
                    removed: 0,
                    writers: FileWriters::default(),
                });
                row.added += change.patch.lines_added();
                row.removed += change.patch.lines_removed();
                if let Some(by) = by {
                    row.writers.add(by);
                    writers.extend(by.pids.iter().copied());
                    writers_known = true;
                }
                row.changes.push(ChangeAt { seq, time_us, change, writers: by });
            }
        }
        if let Some(anchor) = anchor {
            fill_maps_from_anchor(&mut stats, &map_steps, anchor);
        }
        counts.gaps = events.iter().filter(|e| matches!(e.kind, EventKind::Gap { .. })).count();
        counts.files = files.len();
        counts.writers = writers.len();
        Model {
            span,
            pids,
            cwds,
            backends,
            identities,
            counts,
            events,
            activity,
            stats,
            files: files.into_values().collect(),
            maps: model_maps,
            writers_known,
        }
    }
}

/// Give the mapping count to the points of the anchor's epoch that did not
/// have it (their baseline left the ring): from the anchor's count, undo
/// the deltas backwards and apply them forwards. `steps` holds each
/// point's epoch and the map delta of its record.
fn fill_maps_from_anchor(points: &mut StatPoints, steps: &Runs<(u64, i64)>, anchor: MapsAnchor) {
    let (at, count_at) = match points.seqs.iter().position(|&seq| seq == anchor.seq) {
        Some(at) => (at, anchor.count as i64),
        // As of the record just before the oldest point (the anchor is
        // renewed only once the ring has dropped past it): the first
        // point's count follows from it.
        None if points.seqs.first() == Some(&(anchor.seq + 1)) => (0, anchor.count as i64 + steps.get(0).1),
        None => return,
    };
    let unknown = |i: usize| steps.get(i).0 == anchor.epoch && points.maps.get(i).is_none();
    if !unknown(at) {
        return;
    }
    // The stretch around the anchor's point that has no count, and the
    // count at its first point.
    let (mut first, mut last) = (at, at);
    let mut count = count_at;
    while first > 0 && unknown(first - 1) {
        count -= steps.get(first).1;
        first -= 1;
    }
    while last + 1 < points.len() && unknown(last + 1) {
        last += 1;
    }
    let mut filled = Runs::default();
    for (i, maps) in points.maps.iter().enumerate() {
        if (first..=last).contains(&i) {
            if i > first {
                count += steps.get(i).1;
            }
            filled.push(Some(count.max(0) as u64));
        } else {
            filled.push(maps);
        }
    }
    points.maps = filled;
}

/// A series value downsampled to one chart column: the smallest and
/// largest value that fell in it, and which records they were.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Seq of the record with the smallest value.
    pub min_seq: u64,
    /// Seq of the record with the largest value (the one a tooltip names).
    pub max_seq: u64,
    /// Time of that record.
    pub max_time_us: u64,
    /// How many values fell in the column.
    pub count: u32,
    /// Their sum.
    pub sum: f64,
}

/// The column of `time_us` when `t0..=t1` is cut into `n` columns.
pub fn column(time_us: u64, t0: u64, t1: u64, n: usize) -> usize {
    if n == 0 || t1 <= t0 {
        return 0;
    }
    let offset = time_us.clamp(t0, t1) - t0;
    let index = (u128::from(offset) * n as u128 / (u128::from(t1 - t0) + 1)) as usize;
    index.min(n - 1)
}

/// Downsample `(time_us, seq, value)` points to `n` columns over
/// `t0..=t1`, keeping each column's minimum and maximum so a spike that
/// lasts one sample still shows. A column no point fell in is `None`.
pub fn buckets(
    points: impl IntoIterator<Item = (u64, u64, f64)>,
    t0: u64,
    t1: u64,
    n: usize,
) -> Vec<Option<Bucket>> {
    let mut out: Vec<Option<Bucket>> = vec![None; n];
    if n == 0 {
        return out;
    }
    for (time_us, seq, value) in points {
        let slot = &mut out[column(time_us, t0, t1, n)];
        match slot {
            None => {
                *slot = Some(Bucket {
                    min: value,
                    max: value,
                    min_seq: seq,
                    max_seq: seq,
                    max_time_us: time_us,
                    count: 1,
                    sum: value,
                })
            }
            Some(b) => {
                if value < b.min {
                    b.min = value;
                    b.min_seq = seq;
                }
                if value > b.max {
                    b.max = value;
                    b.max_seq = seq;
                    b.max_time_us = time_us;
                }
                b.count += 1;
                b.sum += value;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Patch;
    use crate::journal::record::{Baseline, Change, FORMAT_VERSION, Node, Sample, Stats};
    use proptest::prelude::*;
    use std::time::Duration;

    fn record(pid: i32, epoch: u64, body: Body) -> Record {
        Record { version: FORMAT_VERSION, epoch, pid, body }
    }

    fn stats(cpu_ms: u64) -> Option<Stats> {
        Some(Stats { utime_ms: cpu_ms, stime_ms: 0, rss_kib: 100, vsz_kib: 200, threads: 1, fds: 3 })
    }

    fn change(path: &str, kind: Change, old: &str, new: &str) -> FileChange {
        FileChange::new(
            path.as_bytes().to_vec(),
            kind,
            None,
            Node::File,
            Patch::compute(old.as_bytes(), new.as_bytes(), Duration::from_secs(1)),
        )
    }

    #[test]
    fn buckets_keep_a_one_sample_spike_and_the_dip_beside_it() {
        // 10,000 flat points with one spike and one dip, into 100 columns.
        let points = (0..10_000u64).map(|i| {
            let v = match i {
                4321 => 99.0,
                4322 => -5.0,
                _ => 1.0,
            };
            (1_000_000 + i * 1000, i + 1, v)
        });
        let cols = buckets(points, 1_000_000, 1_000_000 + 9_999 * 1000, 100);
        assert_eq!(cols.len(), 100);
        assert!(cols.iter().all(Option::is_some));
        let max = cols.iter().flatten().max_by(|a, b| a.max.total_cmp(&b.max)).unwrap();
        assert_eq!((max.max, max.max_seq), (99.0, 4322));
        let min = cols.iter().flatten().min_by(|a, b| a.min.total_cmp(&b.min)).unwrap();
        assert_eq!((min.min, min.min_seq), (-5.0, 4323));
        assert_eq!(cols.iter().flatten().map(|b| b.count).sum::<u32>(), 10_000);
        // Columns without a point stay empty; the last point lands in the last column.
        let sparse = buckets([(0, 1, 1.0), (100, 2, 2.0)], 0, 100, 10);
        assert_eq!(sparse.iter().filter(|b| b.is_some()).count(), 2);
        assert_eq!(sparse[9].map(|b| b.max), Some(2.0));
        // One instant: everything in the first column.
        assert_eq!(column(5, 5, 5, 10), 0);
    }

    #[test]
    fn cpu_percent_comes_from_deltas_and_resets_on_a_pid_change() {
        assert_eq!(cpu_percent((0, 100), (1_000_000, 600)), Some(50.0));
        assert_eq!(cpu_percent((0, 100), (500_000, 1100)), Some(200.0), "two CPUs busy");
        assert_eq!(cpu_percent((0, 600), (1_000_000, 100)), None, "the counter went back");
        assert_eq!(cpu_percent((5, 0), (5, 10)), None, "no time passed");

        let records = [
            record(10, 1, Body::Baseline(Baseline { stats: stats(1000), ..Baseline::default() })),
            record(10, 1, Body::Sample(Sample { stats: stats(1250), ..Sample::default() })),
            record(10, 1, Body::Mark { name: "m".into() }),
            record(10, 1, Body::Sample(Sample { stats: stats(1250), ..Sample::default() })),
            record(20, 5, Body::Pid { old: 10, new: 20 }),
            // The new process used more CPU in all than the old one: not a delta.
            record(20, 5, Body::Baseline(Baseline { stats: stats(9000), ..Baseline::default() })),
            record(20, 5, Body::Sample(Sample { stats: stats(9100), ..Sample::default() })),
        ];
        let entries: Vec<Entry> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Entry { seq: i as u64 + 1, time_us: i as u64 * 1_000_000, record: Some(r) })
            .collect();
        let model = Model::build(&entries, None, None);
        let cpu: Vec<(u64, Option<f64>)> = model.stats.iter().map(|p| (p.seq, p.cpu)).collect();
        assert_eq!(
            cpu,
            [(1, None), (2, Some(25.0)), (4, Some(0.0)), (6, None), (7, Some(10.0))],
            "the mark does not break the series; the new PID starts it again"
        );
        assert_eq!(model.pids, [10, 20]);
        let lanes: Vec<&str> = model.events.iter().map(|e| e.kind.lane()).collect();
        assert_eq!(lanes, ["baseline", "mark", "pid", "baseline"]);
    }

    #[test]
    fn the_file_table_counts_changes_lines_and_writers() {
        let s1 = Sample {
            files: vec![
                change("a.txt", Change::Created, "", "1\n2\n"),
                change("b.txt", Change::Created, "", "x\n"),
            ],
            writers: vec![Writers {
                path: b"a.txt".to_vec(),
                pids: vec![7],
                foreign: false,
                who: Vec::new(),
            }],
            ..Sample::default()
        };
        let s2 = Sample {
            files: vec![change("a.txt", Change::Modified, "1\n2\n", "1\n3\n4\n")],
            writers: vec![Writers {
                path: b"a.txt".to_vec(),
                pids: vec![8, 7],
                foreign: true,
                who: Vec::new(),
            }],
            maps: MapsDelta { added: vec![b"1-2 r--p 0 0:0 0 /x".to_vec()], removed: vec![] },
            ..Sample::default()
        };
        let s3 = Sample { files: vec![change("b.txt", Change::Deleted, "x\n", "")], ..Sample::default() };
        let records = [
            record(1, 1, Body::Baseline(Baseline { maps: vec![b"m".to_vec(); 3], ..Baseline::default() })),
            record(1, 1, Body::Sample(s1)),
            record(1, 1, Body::Sample(s2)),
            record(1, 1, Body::Sample(s3)),
            record(1, 1, Body::Sample(Sample { stats: stats(0), ..Sample::default() })),
        ];
        // Seq 3 is missing from the ring: a gap.
        let entries: Vec<Entry> = records
            .iter()
            .zip([10u64, 11, 13, 14, 15])
            .map(|(r, seq)| Entry { seq, time_us: seq * 1000, record: Some(r) })
            .collect();
        let model = Model::build(&entries, Some((1, 9)), None);
        let table: Vec<(&[u8], usize, usize, usize, String)> = model
            .files
            .iter()
            .map(|f| (f.path, f.changes.len(), f.added, f.removed, writer_text(&f.writers)))
            .collect();
        assert_eq!(
            table,
            [
                (&b"a.txt"[..], 2, 4, 1, "7, 8 (not the target)".to_string()),
                (&b"b.txt"[..], 2, 1, 1, String::new())
            ]
        );
        assert_eq!(
            model.counts,
            Counts { records: 5, samples: 4, changes: 4, files: 2, writers: 2, gaps: 2, ..Counts::default() }
        );
        assert_eq!(
            model.activity.iter().map(|a| (a.seq, a.files, a.lines)).collect::<Vec<_>>(),
            [(11, 2, 3), (13, 1, 3), (14, 1, 1)]
        );
        assert_eq!(model.maps.iter().map(|m| m.seq).collect::<Vec<_>>(), [13]);
        assert_eq!(model.stats.last().map(|p| p.maps), Some(Some(4)), "3 at the baseline, one added");
        let gaps: Vec<&EventKind> =
            model.events.iter().filter(|e| e.kind.lane() == "gap").map(|e| &e.kind).collect();
        assert_eq!(
            gaps,
            [
                &EventKind::Gap { from: 1, to: 9, wrap: true },
                &EventKind::Gap { from: 12, to: 12, wrap: false }
            ]
        );
        assert!(model.writers_known);
    }

    #[test]
    fn the_anchor_gives_the_map_count_once_the_baseline_is_gone() {
        let sample = |added: usize, removed: usize| {
            Body::Sample(Sample {
                maps: MapsDelta { added: vec![b"a".to_vec(); added], removed: vec![b"r".to_vec(); removed] },
                stats: stats(0),
                ..Sample::default()
            })
        };
        let records = [record(1, 1, sample(2, 0)), record(1, 1, sample(0, 1)), record(1, 1, sample(1, 0))];
        let entries: Vec<Entry> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Entry { seq: i as u64 + 50, time_us: i as u64, record: Some(r) })
            .collect();
        let unknown = Model::build(&entries, None, None);
        assert!(unknown.stats.iter().all(|p| p.maps.is_none()));
        let anchored = Model::build(&entries, None, Some(MapsAnchor { epoch: 1, seq: 51, count: 10 }));
        let counts: Vec<Option<u64>> = anchored.stats.iter().map(|p| p.maps).collect();
        assert_eq!(counts, [Some(11), Some(10), Some(11)]);
        // As of the record just before the oldest held: the writer renews
        // it only once the ring has dropped past it.
        let just_before = Model::build(&entries, None, Some(MapsAnchor { epoch: 1, seq: 49, count: 9 }));
        let counts: Vec<Option<u64>> = just_before.stats.iter().map(|p| p.maps).collect();
        assert_eq!(counts, [Some(11), Some(10), Some(11)]);
        let stale = Model::build(&entries, None, Some(MapsAnchor { epoch: 1, seq: 48, count: 9 }));
        assert!(stale.stats.iter().all(|p| p.maps.is_none()), "a stale anchor is not used");
    }

    /// The anchor pass over a plain list of points, one step per point:
    /// what [`fill_maps_from_anchor`] must do over the column store.
    fn fill_plain(points: &mut [StatPoint], steps: &[(u64, i64)], anchor: MapsAnchor) {
        let (at, count_at) = match points.iter().position(|p| p.seq == anchor.seq) {
            Some(at) => (at, anchor.count as i64),
            None if points.first().is_some_and(|p| p.seq == anchor.seq + 1) => {
                (0, anchor.count as i64 + steps[0].1)
            }
            None => return,
        };
        if steps[at].0 != anchor.epoch || points[at].maps.is_some() {
            return;
        }
        points[at].maps = Some(count_at.max(0) as u64);
        let mut count = count_at;
        for i in (0..at).rev() {
            count -= steps[i + 1].1;
            if steps[i].0 != anchor.epoch || points[i].maps.is_some() {
                break;
            }
            points[i].maps = Some(count.max(0) as u64);
        }
        let mut count = count_at;
        for i in at + 1..points.len() {
            count += steps[i].1;
            if steps[i].0 != anchor.epoch || points[i].maps.is_some() {
                break;
            }
            points[i].maps = Some(count.max(0) as u64);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The column store gives back every point pushed, and the anchor
        /// fills it as it fills a plain list.
        #[test]
        fn the_column_store_gives_back_each_point_and_the_anchor_fills_it_as_a_list(
            raw in proptest::collection::vec(
                (
                    proptest::option::of(0.0f64..300.0),
                    0u64..3,
                    0u64..2,
                    prop_oneof![3 => Just(None), 1 => (0u64..5).prop_map(Some)],
                    prop_oneof![2 => Just(1u64), 1 => 0u64..3],
                    prop_oneof![3 => Just(0i64), 1 => -3i64..4],
                ),
                0..80,
            ),
            at in any::<prop::sample::Index>(),
            held in any::<bool>(),
            count in 0u64..6,
            epoch in 0u64..3,
        ) {
            let mut plain: Vec<StatPoint> = raw
                .iter()
                .enumerate()
                .map(|(i, &(cpu, rss_kib, threads, maps, _, _))| StatPoint {
                    seq: 2 * i as u64 + 1,
                    time_us: 10 * i as u64,
                    cpu,
                    rss_kib,
                    threads,
                    fds: rss_kib * threads,
                    maps,
                })
                .collect();
            let plain_steps: Vec<(u64, i64)> = raw.iter().map(|&(.., epoch, delta)| (epoch, delta)).collect();
            let mut columns = StatPoints::default();
            let mut steps = Runs::default();
            for (point, step) in plain.iter().zip(&plain_steps) {
                columns.push(*point);
                steps.push(*step);
            }
            prop_assert_eq!(columns.iter().collect::<Vec<_>>(), plain.clone());
            prop_assert_eq!(columns.len(), plain.len());
            prop_assert_eq!(columns.last(), plain.last().copied());
            for (i, step) in plain_steps.iter().enumerate() {
                prop_assert_eq!(steps.get(i), *step);
            }
            // The anchor's seq is a point's, or one no point has.
            let seq = if held && !plain.is_empty() { plain[at.index(plain.len())].seq } else { 2 * at.index(90) as u64 };
            let anchor = MapsAnchor { epoch, seq, count };
            fill_plain(&mut plain, &plain_steps, anchor);
            fill_maps_from_anchor(&mut columns, &steps, anchor);
            prop_assert_eq!(columns.iter().collect::<Vec<_>>(), plain);
        }
    }
}
