//! Observation: what the dirty paths hold now. Each pending path is read
//! beneath the root (a directory's whole subtree, every name of a linked
//! file), the observations are made to describe one possible tree, and the
//! result is classified against the index (see `classify`).
//!
//! It reads the tree and the mirror and writes nothing; the index, the
//! links map and the dirty set are the sampler's.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;

use crate::event::Dirty;
use crate::tree::{self, Inode, Observed};

use super::classify::{Classified, classify};
use super::links::Id;
use super::{Found, Sampler};

/// What a sample read: each path's state, and the inode of those that are
/// regular files.
#[derive(Default)]
struct Seen {
    observed: BTreeMap<Vec<u8>, Observed>,
    inodes: BTreeMap<Vec<u8>, Option<Inode>>,
}

impl Sampler {
    /// Observe every pending path and classify the differences from the
    /// mirror.
    pub(super) fn find(&self) -> Found {
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
        let inodes: Vec<(Vec<u8>, Option<Inode>)> = observed
            .iter()
            .filter(|(_, o)| !matches!(o, Observed::Unreadable(_)))
            .map(|(path, o)| {
                let inode =
                    if matches!(o, Observed::Absent) { None } else { inodes.get(path).copied().flatten() };
                (path.clone(), inode)
            })
            .collect();
        let modes: BTreeMap<Vec<u8>, u32> =
            inodes.iter().filter_map(|(p, i)| Some((p.clone(), i.as_ref()?.mode))).collect();
        let old_content = |path: &[u8]| self.mirror_content(path);
        let Classified { changes, skipped, updates, files_read, bytes_read, unread } =
            classify(observed, &modes, &self.index, &self.unread, old_content, self.settings.diff_deadline);
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
        if seen.observed.contains_key(path) || self.rules.is_excluded_anywhere(path, false) {
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
        if !dir.is_empty() && self.rules.is_excluded_anywhere(dir, true) {
            return;
        }
        tree::walk(
            watch.tree.root.as_fd(),
            dir,
            &|path, is_dir| !self.rules.is_excluded(path, is_dir),
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
}
