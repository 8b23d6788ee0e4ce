//! The sampler: every period it takes the dirty paths the event thread
//! queued, compares only those with the mirror, writes exactly one record
//! to the ring and then brings the mirror up to date. It is the single
//! writer of the ring and of the mirror.
//!
//! The life of one change: the target writes `notes.txt` → inotify queues
//! `IN_MODIFY` → the event thread pushes `Dirty::Path("notes.txt")` → at
//! the next tick the sampler runs the barrier ([`Source::sync`]), drains
//! the queue, reads `notes.txt` beneath the root, diffs it against the
//! mirror's copy, appends a `sample` record holding the reversible patch,
//! and replaces the mirror's copy.
//!
//! Only the baseline and a rescan walk the tree; a normal sample reads the
//! dirty paths and nothing else (`files_read` in `status` proves it), and
//! the other names of a dirty file that has hard links (see `links`).

mod classify;
mod dirty;
mod links;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::now_us;
use crate::credentials::Opener;
use crate::diff;
use crate::event::{self, Backend, Dirty, Linked, Source};
use crate::journal::record::{
    Baseline, Body, FORMAT_VERSION, FileChange, FileEntry, Node, Record, Sample, SkipReason, Skipped,
};
use crate::journal::{self, Ring, RingInfo};
use crate::mirror::{self, Mirror};
use crate::proc::probe::{Probe, Recording};
use crate::proc::{Target, child};
use crate::store::{self, LockFile, LockMode};
use crate::tree::{self, Excludes, Inode, Observed};
use classify::{Classified, Tracked, Update, classify, skip_reason, tracked_after, worth_reading_again};
use dirty::DirtySet;
use links::{Id, Links};

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
    /// error), and the sampler kept what it needs to try again (the
    /// pending paths, the mirror updates, the baseline to take).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::MirrorBehind(_) | Error::Mirror(_) | Error::Journal(journal::Error::Write { .. })
        )
    }
}

/// Settings of a sampler.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The store directory.
    pub store: PathBuf,
    /// Larger text files are listed as skipped, not copied.
    pub max_file_size: u64,
    /// Paths left out.
    pub excludes: Excludes,
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

/// What a sample read: each path's state, and the inode of those that are
/// regular files.
#[derive(Default)]
struct Seen {
    observed: BTreeMap<Vec<u8>, Observed>,
    inodes: BTreeMap<Vec<u8>, Option<Inode>>,
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
    /// The names of files with more than one link.
    links: Links,
    /// The files the event source was last asked to watch for writes
    /// through names outside the tree.
    watching: Vec<Linked>,
    /// The dirty paths of the period, their writers, why to rescan.
    dirty: DirtySet,
    pid: i32,
    /// Mirror updates of the last committed record that could not be made
    /// (see [`Error::MirrorBehind`]); made before anything else is recorded.
    unapplied: Option<Vec<Update>>,
    /// How the target ended, when we are its parent and have reaped it.
    exit: Option<crate::journal::record::Exit>,
    /// The current epoch has no committed baseline yet (recording it
    /// failed): the next sample takes it first.
    needs_baseline: bool,
    /// Files that could not be read for a reason that may pass (an I/O
    /// error), by path: read again at every sample until they can be.
    unread: BTreeMap<Vec<u8>, i32>,
    /// Failures survived since the last [`Sampler::take_faults`], one line
    /// each.
    faults: Vec<String>,
    /// See [`Sampler::take_unshown`].
    unshown: Vec<Committed>,
    /// The target is our child: reap it when it ends.
    reap: bool,
    counters: Counters,
    probe: Probe,
}

/// A followed process and the directory tree it works in.
struct Watch {
    target: Target,
    tree: Tree,
}

/// A watched directory tree: the root fd every access goes through, its
/// identity (to notice a `chdir`), and the event thread watching it.
struct Tree {
    root: OwnedFd,
    id: (u64, u64),
    cwd: PathBuf,
    skip: Option<(u64, u64)>,
    events: Box<dyn Source>,
    /// Opens files with the target's rights (see [`crate::credentials`]).
    opener: Opener,
}

impl Tree {
    /// Open `target`'s working directory and start watching it.
    fn open(target: &Target, settings: &Settings) -> Result<Tree, Error> {
        let root = target.open_cwd()?;
        let cwd = target.cwd_path()?;
        let id = nix::sys::stat::fstat(&root).map(|st| (st.st_dev, st.st_ino)).map_err(|errno| {
            crate::proc::Error::Proc { pid: target.pid(), what: "cwd", source: errno.into() }
        })?;
        let skip = std::fs::metadata(&settings.store).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        });
        let options = event::Options {
            excludes: settings.excludes.clone(),
            skip,
            capacity: settings.queue_capacity,
            target: target.pid(),
        };
        let events = event::start(settings.backend, &root, options)?;
        let opener = match target.creds() {
            Some(creds) => Opener::for_target(&creds),
            None => Opener::Direct,
        };
        Ok(Tree { root, id, cwd, skip, events, opener })
    }
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
            pid: 0,
            unapplied: None,
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

    /// Follow another process from now on: a last sample of the current
    /// one, a `pid` record, then a baseline of the new process's working
    /// directory in a new epoch. Nothing changes when the new process's
    /// directory cannot be opened or watched.
    ///
    /// # Errors
    /// [`Error::Proc`]/[`Error::Event`] before anything is recorded; the
    /// others when the ring or the mirror cannot be written.
    pub fn follow(&mut self, target: Target) -> Result<Vec<Committed>, Error> {
        let tree = Tree::open(&target, &self.settings)?;
        let mut out = self.sample()?;
        let body = Body::Pid { old: self.pid, new: target.pid() };
        // The old process is let go only once the `pid` record is in.
        match self.commit(body, |_| Ok(())) {
            Ok(lead) => out.push(lead),
            Err(e) => return Err(self.unshown_then(out, e)),
        }
        self.reap = false;
        match self.rebase(Watch { target, tree }) {
            Ok(baseline) => out.push(baseline),
            Err(e) => return Err(self.unshown_then(out, e)),
        }
        Ok(out)
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

    /// Start a new epoch on `watch` (after the `pid` or `cwd` record that
    /// says why, in the old epoch) and take its baseline. From here on the
    /// new tree is followed: a baseline that cannot be recorded now is
    /// taken by the next sample instead.
    fn rebase(&mut self, watch: Watch) -> Result<Committed, Error> {
        self.epoch = self.ring.info().next_seq;
        self.pid = watch.target.pid();
        self.watch = Some(watch);
        self.index.clear();
        self.links.clear();
        self.watching.clear();
        self.dirty.clear();
        self.unread.clear();
        self.exit = None;
        self.needs_baseline = true;
        self.baseline()
    }

    /// The PID followed (0 once it has exited).
    pub fn pid(&self) -> i32 {
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

    /// Work counters.
    pub fn counters(&self) -> Counters {
        Counters { tracked: self.index.len() as u64, ..self.counters }
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

    /// Copy the whole tree into a fresh mirror of the current epoch and
    /// commit the baseline record.
    fn baseline(&mut self) -> Result<Committed, Error> {
        let Some(Watch { target, tree: watched }) = &self.watch else { return Err(Error::NoTarget) };
        // The epoch has no record yet: whatever its mirror holds is left
        // from a baseline that failed (or a crash during one), and
        // `Mirror::open` removes it.
        self.mirror = Mirror::open(&self.settings.store, self.epoch)?;
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        let mut index = BTreeMap::new();
        let mut links = Links::default();
        let mut failed: Option<mirror::Error> = None;
        let max = self.settings.max_file_size;
        let mirror = &mut self.mirror;
        tree::walk(
            watched.root.as_fd(),
            b"",
            &self.settings.excludes,
            watched.skip,
            &mut |rel, dir, entries| {
                for (name, is_dir) in entries {
                    if *is_dir {
                        continue;
                    }
                    let path = tree::join(rel, name);
                    let (seen, inode) = tree::observe_entry_linked(dir, name, max, &watched.opener);
                    links.set(&path, inode);
                    let (node, content) = match seen {
                        Observed::File(content) => (Node::File, content),
                        Observed::Symlink(target) => (Node::Symlink, target),
                        other => {
                            if let Some(reason) = skip_reason(&other) {
                                skipped.push(Skipped { path, reason });
                            }
                            continue;
                        }
                    };
                    if failed.is_some() {
                        return;
                    }
                    let hash = diff::hash(&content);
                    if let Err(e) = mirror.put_new(&path, node, &content) {
                        failed = Some(e);
                        return;
                    }
                    files.push(FileEntry { path: path.clone(), node, size: content.len() as u64, hash });
                    index.insert(path, Tracked { node, hash, id: inode.map(|i| i.id()) });
                }
            },
            &mut |_, _| {},
        );
        if let Some(e) = failed {
            return Err(e.into());
        }
        self.mirror.finish_baseline()?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        let unread: BTreeMap<Vec<u8>, i32> = skipped
            .iter()
            .filter_map(|s| match s.reason {
                SkipReason::Unreadable { errno } if worth_reading_again(errno) => {
                    Some((s.path.clone(), errno))
                }
                _ => None,
            })
            .collect();
        let starttime = target.starttime();
        let (maps, stats) = self.probe.baseline(Some(target));
        let body = Body::Baseline(Baseline {
            cwd: watched.cwd.clone().into_os_string().into_encoded_bytes(),
            starttime,
            files,
            skipped,
            maps,
            stats,
        });
        let committed = self.commit(body, |_| Ok(()))?;
        self.needs_baseline = false;
        self.probe.keep_anchor(&self.settings.store, self.epoch, committed.seq, self.ring.info().oldest_seq);
        self.index = index;
        links.all_searched();
        self.links = links;
        self.watch_linked();
        self.keep_unread(unread);
        // Events that arrived while walking may name files the walk already
        // saw; comparing them again at the next sample is harmless.
        self.collect_garbage();
        Ok(committed)
    }

    /// Append one record under the store lock, run `then` (the mirror
    /// update) before releasing it.
    fn commit(
        &mut self,
        body: Body,
        then: impl FnOnce(&mut Mirror) -> Result<(), Error>,
    ) -> Result<Committed, Error> {
        let record = Record { version: FORMAT_VERSION, epoch: self.epoch, pid: self.pid, body };
        let time_us = now_us();
        let payload = record.encode();
        let _guard = self.lock.lock(LockMode::Exclusive)?;
        let seq = self.ring.append(record.kind() as u16, time_us, &payload)?;
        if let Some(e) = self.ring.take_flush_error() {
            self.faults.push(format!(
                "{}; the records stay in memory and are written back later",
                crate::render::error_chain(&e)
            ));
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

    /// After [`Error::MirrorBehind`]: make the mirror updates the last
    /// record missed (putting and removing again is harmless).
    fn catch_up(&mut self) -> Result<(), Error> {
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
    fn collect_garbage(&self) {
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
                self.pid = 0;
                self.index.clear();
                self.links.clear();
                self.watching.clear();
            } else if watch.target.cwd_identity().is_ok_and(|id| id != watch.tree.id) {
                out.extend(self.moved()?);
            }
        }
        if let Some(last) = out.last() {
            self.probe.keep_anchor(&self.settings.store, self.epoch, last.seq, self.ring.info().oldest_seq);
        }
        self.collect_garbage();
        Ok(())
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

    /// The target changed directory: a `cwd` record, then a baseline of the
    /// new directory. When the new directory cannot be watched, the old
    /// tree stays watched and the failure is retried at the next sample.
    fn moved(&mut self) -> Result<Vec<Committed>, Error> {
        let Some(watch) = &self.watch else { return Ok(Vec::new()) };
        let Ok(tree) = Tree::open(&watch.target, &self.settings) else { return Ok(Vec::new()) };
        let old = watch.tree.cwd.clone().into_os_string().into_encoded_bytes();
        let new = tree.cwd.clone().into_os_string().into_encoded_bytes();
        // The old tree is let go only once the `cwd` record is in: when it
        // cannot be written, the next sample notices the move again.
        let lead = self.commit(Body::Cwd { old, new }, |_| Ok(()))?;
        let Some(Watch { target, .. }) = self.watch.take() else { return Ok(vec![lead]) };
        match self.rebase(Watch { target, tree }) {
            Ok(baseline) => Ok(vec![lead, baseline]),
            Err(e) => Err(self.unshown_then(vec![lead], e)),
        }
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
                self.faults.push(format!(
                    "cannot read {}: {}; reading it again at every sample",
                    crate::render::human::sanitize(path),
                    std::io::Error::from_raw_os_error(*errno)
                ));
            }
        }
    }

    /// The failures survived since the last call (by the sampler and the
    /// event thread), one line each, oldest first.
    pub fn take_faults(&mut self) -> Vec<String> {
        let mut faults = std::mem::take(&mut self.faults);
        if let Some(shared) = self.event_shared() {
            faults.extend(shared.take_faults());
        }
        faults
    }

    /// Observe every pending path and classify the differences from the
    /// mirror.
    fn find(&self) -> Found {
        let mut seen = Seen::default();
        for dirty in &self.dirty.pending {
            match dirty {
                Dirty::Path(path) => self.observe_path(path, &mut seen),
                Dirty::Subtree(dir) => self.observe_subtree(dir, &mut seen),
                Dirty::Inode(dev, ino) => {
                    for name in self.links.names((*dev, *ino)) {
                        self.observe_path(name, &mut seen);
                    }
                }
            }
        }
        let searched = self.observe_links(&mut seen);
        let Seen { mut observed, inodes } = seen;
        self.make_consistent(&mut observed);
        let inodes = observed
            .iter()
            .filter(|(_, o)| !matches!(o, Observed::Unreadable(_)))
            .map(|(path, o)| {
                let inode =
                    if matches!(o, Observed::Absent) { None } else { inodes.get(path).copied().flatten() };
                (path.clone(), inode)
            })
            .collect();
        let old_content = |path: &[u8]| self.mirror_content(path);
        let Classified { changes, skipped, updates, files_read, bytes_read, unread } =
            classify(observed, &self.index, &self.unread, old_content, self.settings.diff_deadline);
        Found { changes, skipped, updates, files_read, bytes_read, unread, inodes, searched }
    }

    /// The paths were observed one at a time while the tree may have been
    /// changing (a directory swapped for a symlink between two of them):
    /// make the observations describe one possible tree, so that nothing
    /// is recorded below an entry that is not a directory. The next events
    /// bring whatever this hides back.
    fn make_consistent(&self, observed: &mut BTreeMap<Vec<u8>, Observed>) {
        let is_leaf = |o: &Observed| {
            matches!(
                o,
                Observed::File(_)
                    | Observed::Symlink(_)
                    | Observed::Binary
                    | Observed::TooLarge(_)
                    | Observed::Special
            )
        };
        let leaves: Vec<Vec<u8>> =
            observed.iter().filter(|(_, o)| is_leaf(o)).map(|(p, _)| p.clone()).collect();
        for leaf in leaves {
            let mut below = leaf;
            below.push(b'/');
            let under = |p: &&Vec<u8>| p.starts_with(&below);
            let hidden: Vec<Vec<u8>> = observed
                .range(below.clone()..)
                .map(|(p, _)| p)
                .take_while(under)
                .chain(self.index.range(below.clone()..).map(|(p, _)| p).take_while(under))
                .cloned()
                .collect();
            for p in hidden {
                observed.insert(p, Observed::Absent);
            }
        }
        // A tracked file or link with something below it now is gone.
        let present: Vec<Vec<u8>> =
            observed.iter().filter(|(_, o)| is_leaf(o)).map(|(p, _)| p.clone()).collect();
        for path in present {
            let mut at = path.as_slice();
            while let Some(i) = at.iter().rposition(|&b| b == b'/') {
                at = &at[..i];
                if self.index.contains_key(at) && !observed.contains_key(at) {
                    observed.insert(at.to_vec(), Observed::Absent);
                }
            }
        }
    }

    fn mirror_content(&self, path: &[u8]) -> Vec<u8> {
        match self.mirror.read(path) {
            Ok(Some((_, content))) => content,
            _ => Vec::new(),
        }
    }

    /// Observe one path, unless it was already (its whole subtree when it
    /// is a directory now).
    fn observe_path(&self, path: &[u8], seen: &mut Seen) {
        let Some(watch) = &self.watch else { return };
        if seen.observed.contains_key(path) || self.settings.excludes.is_excluded_anywhere(path) {
            return;
        }
        let max = self.settings.max_file_size;
        let (observed, inode) = tree::observe_linked(watch.tree.root.as_fd(), path, max, &watch.tree.opener);
        if matches!(observed, Observed::Dir) {
            // A path that is a directory now: compare its subtree.
            self.observe_subtree(path, seen);
        } else {
            seen.observed.insert(path.to_vec(), observed);
            seen.inodes.insert(path.to_vec(), inode);
        }
    }

    /// A change seen under one name of a file is a change of all its
    /// names: observe the other names of every linked file observed, as
    /// the links map knows them (by the inode a path had and the one it
    /// has now). A file with more links than known names may have names
    /// that were in the index before it was linked (`ln` of a file that had
    /// one name): those are looked for once, in one pass over the index.
    /// Returns the inodes so searched, with their link counts.
    fn observe_links(&self, seen: &mut Seen) -> Vec<(Id, u64)> {
        let mut work: Vec<Vec<u8>> = seen.observed.keys().cloned().collect();
        let mut done: BTreeSet<Id> = BTreeSet::new();
        while let Some(path) = work.pop() {
            let now = seen.inodes.get(&path).copied().flatten().filter(|i| i.nlink > 1).map(|i| i.id());
            for id in self.links.of_path(&path).into_iter().chain(now) {
                if !done.insert(id) {
                    continue;
                }
                for name in self.links.names(id) {
                    if !seen.observed.contains_key(name) {
                        self.observe_path(name, seen);
                        work.push(name.clone());
                    }
                }
            }
        }
        // Each linked inode read now that has a name new to the map (an
        // unknown name can only be older than a new one: a link made to a
        // file seen with one name), its link count and its names, known
        // or just read. A link count grown by names outside the tree
        // alone is not searched for.
        let mut known: BTreeMap<Id, (u64, BTreeSet<&Vec<u8>>)> = BTreeMap::new();
        let mut fresh: BTreeSet<Id> = BTreeSet::new();
        for (path, inode) in &seen.inodes {
            if let Some(inode) = inode.filter(|i| i.nlink > 1) {
                let entry = known.entry(inode.id()).or_default();
                entry.0 = entry.0.max(inode.nlink);
                entry.1.insert(path);
                if self.links.of_path(path) != Some(inode.id()) {
                    fresh.insert(inode.id());
                }
            }
        }
        known.retain(|id, _| fresh.contains(id));
        for (id, (_, names)) in known.iter_mut() {
            for name in self.links.names(*id) {
                let moved = seen.observed.contains_key(name)
                    && seen.inodes.get(name).copied().flatten().is_none_or(|i| i.id() != *id);
                if !moved {
                    names.insert(name);
                }
            }
        }
        let search: BTreeMap<Id, u64> = known
            .iter()
            .filter(|(id, (nlink, names))| self.links.worth_searching(**id, *nlink, names.len()))
            .map(|(id, (nlink, _))| (*id, *nlink))
            .collect();
        if search.is_empty() {
            return Vec::new();
        }
        let others: Vec<Vec<u8>> = self
            .index
            .iter()
            .filter(|(path, t)| {
                t.id.is_some_and(|id| search.contains_key(&id)) && !seen.observed.contains_key(*path)
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in others {
            self.observe_path(&path, seen);
        }
        search.into_iter().collect()
    }

    /// Observe everything in `dir`'s subtree: what the tree holds now and
    /// what the index says was there.
    fn observe_subtree(&self, dir: &[u8], seen: &mut Seen) {
        let Some(watch) = &self.watch else { return };
        let max = self.settings.max_file_size;
        let Seen { observed, inodes } = seen;
        for path in self.index.range(dir.to_vec()..).map(|(p, _)| p).take_while(|p| p.starts_with(dir)) {
            if tree::is_within(path, dir) {
                observed.entry(path.clone()).or_insert(Observed::Absent);
            }
        }
        if !dir.is_empty() && self.settings.excludes.is_excluded_anywhere(dir) {
            return;
        }
        tree::walk(
            watch.tree.root.as_fd(),
            dir,
            &self.settings.excludes,
            watch.tree.skip,
            &mut |rel, fd, entries| {
                for (name, is_dir) in entries {
                    if !*is_dir {
                        let path = tree::join(rel, name);
                        let (seen, inode) = tree::observe_entry_linked(fd, name, max, &watch.tree.opener);
                        observed.insert(path.clone(), seen);
                        inodes.insert(path, inode);
                    }
                }
            },
            &mut |_, _| {},
        );
    }

    /// Flush the ring to disk (clean shutdown).
    ///
    /// # Errors
    /// [`Error::Journal`] when msync fails.
    pub fn flush(&self) -> Result<(), Error> {
        self.ring.flush().map_err(Error::from)
    }
}

/// Make `updates` in the mirror, in order.
fn apply_updates(mirror: &mut Mirror, updates: &[Update]) -> Result<(), Error> {
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
    let Ok(record) = Record::decode(last.payload) else { return Ok(0) };
    let Body::Sample(sample) = &record.body else { return Ok(0) };
    let Ok(mut mirror) = Mirror::open_existing(store, record.epoch) else { return Ok(0) };
    Ok(crate::history::roll_forward(&mut mirror, &sample.files)?)
}
