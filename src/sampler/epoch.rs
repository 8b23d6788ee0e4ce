//! Epochs and baselines: the tree followed, and what starts a new epoch.
//! A baseline copies the whole tree into a fresh mirror and records it;
//! following another process (`pid` record) or the target's `chdir` (`cwd`
//! record) ends the epoch and starts the next with a baseline of the new
//! directory.
//!
//! The samples inside an epoch are `mod.rs`'s; removing the mirrors of
//! epochs that left the ring is `upkeep`'s.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use crate::credentials::Opener;
use crate::diff;
use crate::event::{self, Source};
use crate::exclude::{Matcher, Reader};
use crate::journal::record::{Baseline, Body, FileEntry, Node, SkipReason, Skipped};
use crate::mirror::{self, Mirror};
use crate::proc::Target;
use crate::tree::{self, Observed};

use super::classify::{Tracked, skip_reason, worth_reading_again};
use super::links::Links;
use super::{Committed, Error, Sampler, Settings};

/// A followed process and the directory tree it works in.
pub(super) struct Watch {
    pub(super) target: Target,
    pub(super) tree: Tree,
}

/// A watched directory tree: the root fd every access goes through, its
/// identity (to notice a `chdir`), and the event thread watching it.
pub(super) struct Tree {
    pub(super) root: OwnedFd,
    pub(super) id: (u64, u64),
    pub(super) cwd: PathBuf,
    pub(super) skip: Option<(u64, u64)>,
    pub(super) events: Box<dyn Source>,
    /// Opens files with the target's rights (see [`crate::credentials`]).
    pub(super) opener: Opener,
    /// What is left out, as read when the tree was opened (the event
    /// source started with these rules).
    pub(super) rules: Matcher,
}

impl Tree {
    /// Open `target`'s working directory and start watching it.
    pub(super) fn open(target: &Target, settings: &Settings) -> Result<Tree, Error> {
        let root = target.open_cwd()?;
        let cwd = target.cwd_path()?;
        let id = nix::sys::stat::fstat(&root).map(|st| (st.st_dev, st.st_ino)).map_err(|errno| {
            crate::proc::Error::Proc { pid: target.pid(), what: "cwd", source: errno.into() }
        })?;
        let skip = std::fs::metadata(&settings.store).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        });
        let opener = match target.creds() {
            Some(creds) => Opener::for_target(&creds),
            None => Opener::Direct,
        };
        // The ignore files are read before the backend starts, so that
        // it never watches what they leave out.
        let mut rules = settings.matcher.clone();
        rules.reload_tree(Reader { root: root.as_fd(), opener: &opener, skip }, b"");
        let options = event::Options {
            excludes: rules.clone(),
            skip,
            capacity: settings.queue_capacity,
            target: target.pid(),
        };
        let events = event::start(settings.backend, &root, options)?;
        Ok(Tree { root, id, cwd, skip, events, opener, rules })
    }
}

impl Sampler {
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
        let body = Body::Pid { old: super::on_disk(self.pid), new: target.pid() };
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

    /// Start a new epoch on `watch` (after the `pid` or `cwd` record that
    /// says why, in the old epoch) and take its baseline. From here on the
    /// new tree is followed: a baseline that cannot be recorded now is
    /// taken by the next sample instead.
    pub(super) fn rebase(&mut self, watch: Watch) -> Result<Committed, Error> {
        self.epoch = self.ring.info().next_seq;
        self.pid = Some(watch.target.pid());
        self.rules = watch.tree.rules.clone();
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

    /// Copy the whole tree into a fresh mirror of the current epoch and
    /// commit the baseline record.
    pub(super) fn baseline(&mut self) -> Result<Committed, Error> {
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
        // The ignore files are read again, for what changed since the
        // event source was given them: the rules of a directory are in
        // force before its entries are judged.
        let reader = Reader { root: watched.root.as_fd(), opener: &watched.opener, skip: watched.skip };
        let changed = self.rules.reload_tree(reader, b"");
        let rules = &self.rules;
        tree::walk(
            watched.root.as_fd(),
            b"",
            &|path, is_dir| !rules.is_excluded(path, is_dir),
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
                    let mode = inode.map_or(0, |i| i.mode);
                    if let Err(e) = mirror.put_new(&path, node, &content) {
                        failed = Some(e);
                        return;
                    }
                    files.push(FileEntry {
                        path: path.clone(),
                        node,
                        size: content.len() as u64,
                        hash,
                        mode,
                    });
                    index.insert(path, Tracked { node, hash, id: inode.map(|i| i.id()), mode });
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
            backend: self.settings.backend.name().to_string(),
        });
        if !changed.is_empty()
            && let Some(watch) = &mut self.watch
        {
            watch.tree.events.rules(&self.rules, &changed);
        }
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

    /// The target changed directory: a `cwd` record, then a baseline of the
    /// new directory. When the new directory cannot be watched, the old
    /// tree stays watched and the failure is retried at the next sample.
    pub(super) fn moved(&mut self) -> Result<Vec<Committed>, Error> {
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
}
