//! The sampler: every period it takes the dirty paths the event thread
//! queued, compares only those with the mirror, writes exactly one record
//! to the ring and then brings the mirror up to date. It is the single
//! writer of the ring and of the mirror.
//!
//! The life of one change: the target writes `notes.txt` → inotify queues
//! `IN_MODIFY` → the event thread pushes `Dirty::Path("notes.txt")` → at
//! the next tick the sampler runs the barrier
//! ([`crate::event::Source::sync`]), drains
//! the queue, reads `notes.txt` beneath the root, diffs it against the
//! mirror's copy, appends a `sample` record holding the reversible patch,
//! and replaces the mirror's copy.
//!
//! Only the baseline and a rescan walk the tree; a normal sample reads the
//! dirty paths and nothing else (`files_read` in `status` proves it), and
//! the other names of a dirty file that has hard links (see `links`).
//!
//! This file holds the [`Sampler`] and its period step, wiring the parts:
//!
//! | part | owns |
//! |---|---|
//! | `dirty` | the dirty set: events drained from the queue, coalesced; their writers; why to rescan |
//! | `observe` | reading what the dirty paths hold now, made to describe one possible tree |
//! | `classify` | observed vs tracked → changes (renames by content hash) and ordered mirror updates (pure) |
//! | `epoch` | the tree followed; baselines, `pid` and `cwd` changes, new epochs |
//! | `upkeep` | the mirror following the journal: updates, catch-up, crash repair, garbage collection |
//! | `links` | the names of files with more than one link |

mod classify;
mod dirty;
mod epoch;
mod links;
mod observe;
mod undo;
mod upkeep;

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::now_us;
use crate::event::{Backend, Dirty, Linked};
use crate::exclude::{Matcher, Reader};
use crate::fault::Fault;
use crate::journal::record::{Body, FORMAT_VERSION, FileChange, Record, Sample, Skipped};
use crate::journal::{self, Ring, RingInfo};
use crate::mirror::{self, Mirror};
use crate::proc::probe::{Probe, Recording};
use crate::proc::{Target, child};
use crate::store::{self, LockFile, LockMode};
use crate::tree::{self, Inode};
use classify::{Tracked, Update, tracked_after};
use dirty::DirtySet;
use epoch::{Tree, Watch};
use links::{Id, Links};
pub use undo::{Undone, conflict_lines};
use upkeep::apply_updates;
pub use upkeep::repair;

/// Errors that stop the sampler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The journal refused a write.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// The mirror could not be updated.
    #[error(transparent)]
    Mirror(#[from] mirror::Error),
    /// The store lock failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The event source failed to start.
    #[error(transparent)]
    Event(#[from] crate::event::Error),
    /// A record was committed but the mirror could not follow it (a full
    /// disk, say). Nothing recorded is lost: the mirror is brought up to
    /// date from the journal before anything else is recorded.
    #[error("recording paused: the mirror cannot be brought up to date")]
    MirrorBehind(#[source] mirror::Error),
    /// A baseline was asked for with no process followed.
    #[error("no process is followed")]
    NoTarget,
    /// The target's `/proc` entries could not be used.
    #[error(transparent)]
    Proc(#[from] crate::proc::Error),
}

impl Error {
    /// Whether the next sample may succeed where this one failed: a write
    /// to the journal or the mirror was refused (a full disk, an I/O
    /// error), or the record was too large for the ring (the change that
    /// made it may shrink or be undone), and the sampler kept what it
    /// needs to try again (the pending paths, the mirror updates, the
    /// baseline to take).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::MirrorBehind(_)
                | Error::Mirror(_)
                | Error::Journal(journal::Error::Write { .. } | journal::Error::TooLarge { .. })
        )
    }

    /// The record was too large for the ring.
    pub fn is_oversize(&self) -> bool {
        matches!(self, Error::Journal(journal::Error::TooLarge { .. }))
    }
}

/// Settings of a sampler.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The store directory.
    pub store: PathBuf,
    /// Larger text files are listed as skipped, not copied.
    pub max_file_size: u64,
    /// Paths left out, as the command line says (the tree's ignore files
    /// are read into the sampler's own copy).
    pub matcher: Matcher,
    /// How long one file's line diff may take before a coarser patch is used.
    pub diff_deadline: Duration,
    /// Capacity of the dirty-path queue.
    pub queue_capacity: usize,
    /// How changes are found.
    pub backend: Backend,
    /// Mark changes whose writers were neither the target nor its
    /// descendants (needs a backend that knows writers).
    pub only_target: bool,
    /// What is recorded besides the files (`--record`).
    pub record: Recording,
}

/// Work counters, shown by `status`: they make "the cost follows the
/// change" checkable from outside.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Samples taken (records of kind `sample`).
    pub samples: u64,
    /// Entries read by the last sample.
    pub files_read: u64,
    /// Bytes read by the last sample.
    pub bytes_read: u64,
    /// Dirty paths handled by the last sample.
    pub dirty_paths: u64,
    /// Rescans done.
    pub rescans: u64,
    /// Entries currently tracked.
    pub tracked: u64,
}

/// A committed record, for display.
#[derive(Clone, Debug)]
pub struct Committed {
    /// Its sequence number.
    pub seq: u64,
    /// Its time, in microseconds since the Unix epoch.
    pub time_us: u64,
    /// The record.
    pub record: Record,
}

/// The changes found in the pending dirty paths.
#[derive(Debug, Default)]
pub struct Found {
    /// File changes, in the order they apply forwards.
    pub changes: Vec<FileChange>,
    /// Entries left out.
    pub skipped: Vec<Skipped>,
    updates: Vec<Update>,
    files_read: u64,
    bytes_read: u64,
    /// Files whose read failed for a reason that may pass, with the errno.
    unread: BTreeMap<Vec<u8>, i32>,
    /// The inode each read path is now (`None`: not a regular file).
    inodes: Vec<(Vec<u8>, Option<Inode>)>,
    /// Linked files whose other names were looked for in the index, and
    /// their link counts.
    searched: Vec<(Id, u64)>,
}

/// The sampler's state.
pub struct Sampler {
    settings: Settings,
    ring: Ring,
    lock: LockFile,
    /// The process followed and its tree; `None` once it has exited.
    watch: Option<Watch>,
    epoch: u64,
    mirror: Mirror,
    index: BTreeMap<Vec<u8>, Tracked>,
    /// What is left out: the command line's rules and the ignore files
    /// of the tree as last read.
    rules: Matcher,
    /// The names of files with more than one link.
    links: Links,
    /// The files the event source was last asked to watch for writes
    /// through names outside the tree.
    watching: Vec<Linked>,
    /// The dirty paths of the period, their writers, why to rescan.
    dirty: DirtySet,
    /// The PID followed (`None` once it has exited).
    pid: Option<i32>,
    /// Mirror updates of the last committed record that could not be made
    /// (see [`Error::MirrorBehind`]); made before anything else is recorded.
    unapplied: Option<Vec<Update>>,
    /// The (epoch, seq) `<store>/modes` was last written as of.
    modes_anchored: Option<(u64, u64)>,
    /// How the target ended, when we are its parent and have reaped it.
    exit: Option<crate::journal::record::Exit>,
    /// The current epoch has no committed baseline yet (recording it
    /// failed): the next sample takes it first.
    needs_baseline: bool,
    /// Files that could not be read for a reason that may pass (an I/O
    /// error), by path: read again at every sample until they can be.
    unread: BTreeMap<Vec<u8>, i32>,
    /// Failures survived since the last [`Sampler::take_faults`].
    faults: Vec<Fault>,
    /// See [`Sampler::take_unshown`].
    unshown: Vec<Committed>,
    /// The target is our child: reap it when it ends.
    reap: bool,
    counters: Counters,
    probe: Probe,
}

impl Sampler {
    /// Open the ring, start watching the target's working directory and
    /// take the baseline. Returns the sampler and the committed baseline.
    ///
    /// # Errors
    /// Any [`Error`]: the store or ring cannot be used, watches cannot be
    /// set up, the mirror cannot be written.
    pub fn start(settings: Settings, ring: Ring, target: Target) -> Result<(Sampler, Vec<Committed>), Error> {
        let tree = Tree::open(&target, &settings)?;
        let store_path = settings.store.clone();
        repair(&store_path, &ring)?;
        let lock = LockFile::open(&store_path)?;
        let epoch = ring.info().next_seq;
        let mirror = Mirror::open(&store_path, epoch)?;
        let mut sampler = Sampler {
            probe: Probe::new(settings.record),
            rules: settings.matcher.clone(),
            settings,
            ring,
            lock,
            watch: None,
            epoch,
            mirror,
            index: BTreeMap::new(),
            links: Links::default(),
            watching: Vec::new(),
            dirty: DirtySet::default(),
            pid: None,
            unapplied: None,
            modes_anchored: None,
            exit: None,
            needs_baseline: false,
            unread: BTreeMap::new(),
            faults: Vec::new(),
            unshown: Vec::new(),
            reap: false,
            counters: Counters::default(),
        };
        let baseline = sampler.rebase(Watch { target, tree })?;
        Ok((sampler, vec![baseline]))
    }

    /// Keep `out`, committed by a call that then failed with `e`, for
    /// [`Sampler::take_unshown`]; returns `e`.
    fn unshown_then(&mut self, mut out: Vec<Committed>, e: Error) -> Error {
        out.append(&mut self.unshown);
        self.unshown = out;
        e
    }

    /// Records committed by a call that then failed (a sample whose mirror
    /// update failed, say), for display: that call returned no records.
    pub fn take_unshown(&mut self) -> Vec<Committed> {
        std::mem::take(&mut self.unshown)
    }

    /// The PID followed (`None` once it has exited).
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// The target is our child (a command we started): when it ends, reap
    /// it, so the `exit` record carries its status and resource use.
    pub fn reap_target(&mut self) {
        self.reap = true;
    }

    /// How the target ended, once a sample has recorded its exit (known
    /// only when we reaped it).
    pub fn exit(&self) -> Option<&crate::journal::record::Exit> {
        self.exit.as_ref()
    }

    /// How to notice the followed process's exit between samples.
    pub fn exit_notice(&self) -> Option<crate::proc::ExitNotice> {
        self.watch.as_ref().and_then(|w| w.target.exit_notice())
    }

    /// The directory watched (`None` without a target).
    pub fn cwd(&self) -> Option<&Path> {
        self.watch.as_ref().map(|w| w.tree.cwd.as_path())
    }

    /// Where the watched directory is now: its path may change while the
    /// root fd keeps pointing at it (the directory renamed, or removed:
    /// then the kernel's path ends in " (deleted)"). The path it had at
    /// start when /proc cannot say.
    pub fn cwd_now(&self) -> Option<PathBuf> {
        use std::os::fd::AsRawFd;
        let watch = self.watch.as_ref()?;
        let link = format!("/proc/self/fd/{}", watch.tree.root.as_raw_fd());
        Some(std::fs::read_link(link).unwrap_or_else(|_| watch.tree.cwd.clone()))
    }

    /// Write a `mark` record (`mark NAME`), naming this point in history.
    ///
    /// # Errors
    /// When the record cannot be appended.
    pub fn mark(&mut self, name: String) -> Result<Committed, Error> {
        self.commit(Body::Mark { name }, |_| Ok(()))
    }

    /// Work counters.
    pub fn counters(&self) -> Counters {
        Counters { tracked: self.index.len() as u64, ..self.counters }
    }

    /// What is left out: the command line's rules and the tree's ignore
    /// files in force.
    pub fn rules(&self) -> &Matcher {
        &self.rules
    }

    /// Journal figures.
    pub fn ring_info(&self) -> RingInfo {
        self.ring.info()
    }

    /// The event thread's shared counters (`None` without a target).
    pub fn event_shared(&self) -> Option<&crate::event::Shared> {
        self.watch.as_ref().map(|w| &**w.tree.events.shared())
    }

    /// Dirty paths waiting for the next sample.
    pub fn pending_len(&self) -> usize {
        self.dirty.pending.len()
    }

    /// The ring file's path.
    pub fn ring_path(&self) -> &Path {
        self.ring.path()
    }

    /// Append one record under the store lock, run `then` (the mirror
    /// update) before releasing it.
    fn commit(
        &mut self,
        body: Body,
        then: impl FnOnce(&mut Mirror) -> Result<(), Error>,
    ) -> Result<Committed, Error> {
        let record = Record { version: FORMAT_VERSION, epoch: self.epoch, pid: on_disk(self.pid), body };
        let time_us = now_us();
        let payload = record.encode();
        let _guard = self.lock.lock(LockMode::Exclusive)?;
        let seq = self.ring.append(record.kind() as u16, time_us, &payload)?;
        if let Some(e) = self.ring.take_flush_error() {
            self.faults.push(Fault::JournalWriteBack(e));
        }
        if let Err(e) = then(&mut self.mirror) {
            self.unshown.push(Committed { seq, time_us, record });
            return Err(match e {
                Error::Mirror(source) => Error::MirrorBehind(source),
                other => other,
            });
        }
        Ok(Committed { seq, time_us, record })
    }

    /// Run the barrier and move queued dirty paths into the pending set.
    fn collect(&mut self) {
        let Some(watch) = &mut self.watch else { return };
        self.dirty.collect(&mut *watch.tree.events);
    }

    /// What the pending dirty paths amount to, without recording anything
    /// (the `diff` command).
    pub fn peek(&mut self) -> Found {
        self.collect();
        self.find()
    }

    /// Take one sample: write exactly one `sample` record (preceded by a
    /// `rescan` record when events were lost), then update the mirror.
    /// Also notices the target's exit and writes an `exit` record.
    ///
    /// # Errors
    /// [`Error`] when the ring or the mirror cannot be written; the pending
    /// paths are kept for the next attempt.
    pub fn sample(&mut self) -> Result<Vec<Committed>, Error> {
        let mut out = Vec::new();
        match self.sample_into(&mut out) {
            Ok(()) => Ok(out),
            Err(e) => Err(self.unshown_then(out, e)),
        }
    }

    fn sample_into(&mut self, out: &mut Vec<Committed>) -> Result<(), Error> {
        if self.watch.is_none() {
            return Ok(());
        }
        self.catch_up()?;
        if self.needs_baseline {
            // The baseline walks the whole tree: nothing is left to rescan.
            self.dirty.clear();
            out.push(self.baseline()?);
        }
        self.collect();
        self.refresh_rules();
        if let Some((reason, paths)) = self.dirty.rescan_due() {
            out.push(self.commit(Body::Rescan { reason, paths }, |_| Ok(()))?);
            self.dirty.rescan_recorded();
            self.counters.rescans += 1;
        }
        let found = self.find();
        let Found { changes, skipped, updates, files_read, bytes_read, unread, inodes, searched } = found;
        let writers = self.dirty.attribute(&changes, self.settings.only_target);
        let tracked = tracked_after(&changes);
        let (maps, stats) = self.probe.sample(self.watch.as_ref().map(|w| &w.target));
        let body = Body::Sample(Sample { files: changes, skipped, maps, stats, writers });
        let dirty_paths = self.dirty.pending.len() as u64;
        let committed = self.commit(body, |mirror| apply_updates(mirror, &updates));
        // Committed with the mirror behind: the journal holds the changes,
        // so the index follows them; the mirror catches up later.
        let committed = match committed {
            Err(Error::MirrorBehind(e)) => {
                self.unapplied = Some(updates);
                self.settle(tracked, dirty_paths, files_read, bytes_read, unread);
                self.relink(inodes, searched);
                return Err(Error::MirrorBehind(e));
            }
            Err(e) => {
                // Nothing recorded: the pending paths stay for the next
                // attempt, and so must the map this record would have moved past.
                self.probe.unsample();
                return Err(e);
            }
            Ok(committed) => committed,
        };
        self.settle(tracked, dirty_paths, files_read, bytes_read, unread);
        self.relink(inodes, searched);
        out.push(committed);
        if let Some(watch) = &self.watch {
            if !watch.target.is_alive() {
                // Reaped once only: an exit record that could not be
                // written is written again with the same status.
                let exit = match &self.exit {
                    Some(exit) => exit.clone(),
                    None if self.reap => child::reap(watch.target.pid(), true).unwrap_or_default(),
                    None => Default::default(),
                };
                self.exit = Some(exit.clone());
                out.push(self.commit(Body::Exit(exit), |_| Ok(()))?);
                self.watch = None;
                self.pid = None;
                self.index.clear();
                self.links.clear();
                self.watching.clear();
            } else if watch.target.cwd_identity().is_ok_and(|id| id != watch.tree.id) {
                out.extend(self.moved()?);
            }
        }
        if let Some(last) = out.last() {
            self.probe.keep_anchor(&self.settings.store, self.epoch, last.seq, self.ring.info().oldest_seq);
            self.keep_modes_anchor(last.seq);
        }
        self.collect_garbage();
        Ok(())
    }

    /// Read again the ignore files the pending paths name (or may hold,
    /// below a dirty directory), and the root's `.git/info/exclude`. Each
    /// directory whose rules changed is compared whole: what they now
    /// leave out is recorded as deleted, what they let in as created,
    /// after a `rescan` record that says why.
    fn refresh_rules(&mut self) {
        let Some(watch) = &self.watch else { return };
        if !self.rules.gitignore() {
            return;
        }
        let at = Reader { root: watch.tree.root.as_fd(), opener: &watch.tree.opener, skip: watch.tree.skip };
        let mut changed: Vec<Vec<u8>> = Vec::new();
        for dirty in &self.dirty.pending {
            match dirty {
                Dirty::Path(path) => {
                    let (dir, name) = tree::split(path);
                    if self.rules.is_ignore_file(name) && self.rules.reload_dir(at, dir) {
                        changed.push(dir.to_vec());
                    }
                }
                Dirty::Subtree(dir) => changed.extend(self.rules.reload_tree(at, dir)),
                Dirty::Inode(..) => {}
            }
        }
        if self.rules.reload_info(at) {
            changed.push(Vec::new());
        }
        changed.sort();
        changed.dedup();
        let mut covered: Vec<Vec<u8>> = Vec::new();
        for dir in changed {
            if covered.iter().any(|c| tree::is_within(&dir, c)) {
                continue;
            }
            let shown =
                if dir.is_empty() { ".".to_string() } else { String::from_utf8_lossy(&dir).into_owned() };
            self.dirty.rescan_dir(format!("ignore rules changed in {shown}"), dir.clone());
            covered.push(dir);
        }
        if !covered.is_empty()
            && let Some(watch) = &mut self.watch
        {
            watch.tree.events.rules(&self.rules, &covered);
        }
    }

    /// After record `seq`: keep `<store>/modes` (every tracked file's mode
    /// as of `seq`) when it is due: at an epoch's first sample, and again
    /// each time the ring has dropped records past it. Best effort, as the
    /// map's anchor: a failure only limits how far back modes are known
    /// once the baseline has left the ring, and a later record tries again.
    fn keep_modes_anchor(&mut self, seq: u64) {
        let oldest = self.ring.info().oldest_seq;
        let due = match self.modes_anchored {
            Some((epoch, at)) => epoch != self.epoch || oldest > at + 1,
            None => true,
        };
        if !due {
            return;
        }
        let modes =
            self.index.iter().filter(|(_, t)| t.mode != 0).map(|(p, t)| (p.clone(), t.mode)).collect();
        let anchor = crate::modes::Anchor { epoch: self.epoch, seq, modes };
        if crate::modes::write(&self.settings.store, &anchor).is_ok() {
            self.modes_anchored = Some((self.epoch, seq));
        }
    }

    /// Book a committed sample: the index follows its changes, the pending
    /// paths are done but for the files that could not be read, which the
    /// next sample reads again.
    fn settle(
        &mut self,
        tracked: Vec<(Vec<u8>, Option<Tracked>)>,
        dirty_paths: u64,
        files_read: u64,
        bytes_read: u64,
        unread: BTreeMap<Vec<u8>, i32>,
    ) {
        for (path, entry) in tracked {
            match entry {
                Some(entry) => self.index.insert(path, entry),
                None => self.index.remove(&path),
            };
        }
        self.dirty.done();
        self.keep_unread(unread);
        self.counters.samples += 1;
        self.counters.files_read = files_read;
        self.counters.bytes_read = bytes_read;
        self.counters.dirty_paths = dirty_paths;
    }

    /// Bring the names of linked files up to what this sample read, and
    /// the event source's watches on files with names outside the tree.
    fn relink(&mut self, inodes: Vec<(Vec<u8>, Option<Inode>)>, searched: Vec<(Id, u64)>) {
        for (path, inode) in inodes {
            if let Some(tracked) = self.index.get_mut(&path) {
                tracked.id = inode.map(|i| i.id());
                tracked.mode = inode.map_or(0, |i| i.mode);
            }
            self.links.set(&path, inode);
        }
        for (id, nlink) in searched {
            self.links.searched(id, nlink);
        }
        self.watch_linked();
    }

    /// Ask the event source to follow the files with names outside the
    /// tree, when they changed.
    fn watch_linked(&mut self) {
        let wanted = self.links.outside();
        if wanted == self.watching {
            return;
        }
        if let Some(watch) = &mut self.watch {
            watch.tree.events.watch_files(&wanted);
        }
        self.watching = wanted;
    }

    /// Take `unread` as the files that could not be read: each is reported
    /// the first time it fails and read again at the next sample.
    fn keep_unread(&mut self, unread: BTreeMap<Vec<u8>, i32>) {
        self.note_unread(&unread);
        self.dirty.pending.extend(unread.keys().cloned().map(Dirty::Path));
        self.unread = unread;
    }

    /// Report the files that could not be read, the first time each fails.
    fn note_unread(&mut self, unread: &BTreeMap<Vec<u8>, i32>) {
        for (path, errno) in unread {
            if !self.unread.contains_key(path) {
                let source = std::io::Error::from_raw_os_error(*errno);
                self.faults.push(Fault::TreeRead { path: path.clone(), source });
            }
        }
    }

    /// The failures survived since the last call (by the sampler and the
    /// event thread), oldest first.
    pub fn take_faults(&mut self) -> Vec<Fault> {
        let mut faults = std::mem::take(&mut self.faults);
        if let Some(shared) = self.event_shared() {
            faults.extend(shared.take_faults());
        }
        faults
    }

    /// Flush the ring to disk (clean shutdown).
    ///
    /// # Errors
    /// [`Error::Journal`] when msync fails.
    pub fn flush(&self) -> Result<(), Error> {
        self.ring.flush().map_err(Error::from)
    }
}

/// A PID as the journal stores it: 0 for no process.
fn on_disk(pid: Option<i32>) -> i32 {
    pid.unwrap_or(0)
}
