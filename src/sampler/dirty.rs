//! The dirty set: what the next sample must compare with the mirror, as
//! coalesced from the events drained from the queue (a set, so a path
//! written a thousand times in a period is read once), who caused them, and
//! why the tree must be rescanned when events were lost.
//!
//! It owns no fd: [`DirtySet::collect`] drains the event source it is
//! handed. What the dirty paths hold now is `observe`'s job.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::event::{Dirty, Event, Source};
use crate::journal::record::{FileChange, Writer, Writers};
use crate::tree;

/// The dirty paths of one period.
#[derive(Debug, Default)]
pub(super) struct DirtySet {
    /// What to compare at the next sample.
    pub(super) pending: BTreeSet<Dirty>,
    /// Who caused the pending events: path → PID → the writer as first
    /// named in the period.
    writers: BTreeMap<Vec<u8>, BTreeMap<i32, Arc<Writer>>>,
    /// Why events were lost since the last `rescan` record.
    rescan_reasons: Vec<String>,
}

impl DirtySet {
    /// Forget everything (a baseline walks the whole tree).
    pub(super) fn clear(&mut self) {
        self.pending.clear();
        self.writers.clear();
        self.rescan_reasons.clear();
    }

    /// A sample was committed: its paths and their writers are done.
    pub(super) fn done(&mut self) {
        self.pending.clear();
        self.writers.clear();
    }

    /// Run the barrier and move queued dirty paths into the set.
    pub(super) fn collect(&mut self, events: &mut dyn Source) {
        if !events.sync(Duration::from_secs(2)) {
            self.rescan("the event thread did not answer the sample barrier".into());
        }
        let mut drained = Vec::new();
        events.drain(&mut drained);
        for event in drained {
            self.add(event);
        }
        let shared = events.shared();
        if shared.take_overflow() {
            self.rescan("event queue overflow".into());
        }
        for dir in shared.unwatched() {
            self.pending.insert(Dirty::Subtree(dir));
        }
    }

    /// Add one event, and its writer when the backend knows it.
    fn add(&mut self, event: Event) {
        if let Some(writer) = event.writer {
            let path = match &event.dirty {
                Dirty::Path(p) | Dirty::Subtree(p) => p.clone(),
                // An inode event that names a writer is dropped, as it
                // always was; none is sent today (only inotify raises
                // inode events, and it knows no PIDs).
                Dirty::Inode(..) => return,
            };
            self.writers.entry(path).or_default().entry(writer.pid).or_insert(writer);
        }
        self.pending.insert(event.dirty);
    }

    /// Events were lost: the whole tree is compared, and a `rescan` record
    /// says why.
    fn rescan(&mut self, reason: String) {
        self.rescan_reasons.push(reason);
        self.pending.insert(Dirty::Subtree(Vec::new()));
    }

    /// The rules of what is left out changed below `dir`: its subtree is
    /// compared, and a `rescan` record says why.
    pub(super) fn rescan_dir(&mut self, reason: String, dir: Vec<u8>) {
        self.rescan_reasons.push(reason);
        self.pending.insert(Dirty::Subtree(dir));
    }

    /// The `rescan` record due, if events were lost: the reasons, joined,
    /// and the subtrees to compare.
    pub(super) fn rescan_due(&self) -> Option<(String, Vec<Vec<u8>>)> {
        if self.rescan_reasons.is_empty() {
            return None;
        }
        let paths: Vec<Vec<u8>> = self
            .pending
            .iter()
            .filter_map(|d| match d {
                Dirty::Subtree(p) => Some(p.clone()),
                Dirty::Path(_) | Dirty::Inode(..) => None,
            })
            .collect();
        Some((self.rescan_reasons.join("; "), paths))
    }

    /// The `rescan` record is committed.
    pub(super) fn rescan_recorded(&mut self) {
        self.rescan_reasons.clear();
    }

    /// The writers of each change, from the events of the period: the
    /// path's own events (both ends of a rename), else those of the nearest
    /// directory whose subtree changed. With `only_target`, a change none
    /// of whose writers is the target's is marked foreign.
    pub(super) fn attribute(&self, changes: &[FileChange], only_target: bool) -> Vec<Writers> {
        if self.writers.is_empty() {
            return Vec::new();
        }
        let lookup = |path: &[u8]| {
            let mut at = path;
            loop {
                if let Some(found) = self.writers.get(at) {
                    return Some(found);
                }
                if at.is_empty() {
                    return None;
                }
                at = tree::split(at).0;
            }
        };
        let mut out = Vec::new();
        for change in changes {
            let mut who: BTreeMap<i32, &Arc<Writer>> = BTreeMap::new();
            for path in std::iter::once(&change.path).chain(change.from.as_ref()) {
                if let Some(found) = lookup(path) {
                    for (pid, writer) in found {
                        who.entry(*pid).or_insert(writer);
                    }
                }
            }
            if !who.is_empty() {
                let by_target = who.values().any(|w| w.target);
                out.push(Writers {
                    path: change.path.clone(),
                    pids: who.keys().copied().collect(),
                    foreign: only_target && !by_target,
                    who: who.values().map(|w| Writer::clone(w)).collect(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Patch;
    use crate::journal::record::{Change, Node};

    fn path(p: &str) -> Dirty {
        Dirty::Path(p.as_bytes().to_vec())
    }

    fn subtree(p: &str) -> Dirty {
        Dirty::Subtree(p.as_bytes().to_vec())
    }

    fn event(dirty: Dirty, pid: Option<i32>, target: bool) -> Event {
        let comm = Some(format!("w{}", pid.unwrap_or(0)));
        Event { dirty, writer: pid.map(|pid| Arc::new(Writer { pid, comm, target, ..Writer::default() })) }
    }

    fn change(path: &str, from: Option<&str>) -> FileChange {
        FileChange::new(
            path.as_bytes().to_vec(),
            if from.is_some() { Change::Renamed } else { Change::Modified },
            from.map(|f| f.as_bytes().to_vec()),
            Node::File,
            Patch::compute(b"", b"", Duration::from_secs(1)),
        )
    }

    #[test]
    fn events_coalesce_into_a_set() {
        // Events in, pending set out.
        let cases: &[(&str, Vec<Event>, Vec<Dirty>)] = &[
            (
                "one path written many times is one entry",
                vec![event(path("a"), None, false); 3],
                vec![path("a")],
            ),
            (
                "paths and subtrees are kept apart, in order",
                vec![
                    event(subtree("d"), None, false),
                    event(path("b"), None, false),
                    event(path("a"), None, false),
                ],
                vec![path("a"), path("b"), subtree("d")],
            ),
            (
                "an inode event without a writer is kept",
                vec![event(Dirty::Inode(1, 2), None, false)],
                vec![Dirty::Inode(1, 2)],
            ),
            (
                "an inode event naming a writer is dropped",
                vec![event(Dirty::Inode(1, 2), Some(7), true)],
                vec![],
            ),
        ];
        for (name, events, want) in cases {
            let mut set = DirtySet::default();
            for e in events.iter().cloned() {
                set.add(e);
            }
            let got: Vec<Dirty> = set.pending.iter().cloned().collect();
            assert_eq!(&got, want, "{name}");
            assert_eq!(set.rescan_due(), None, "{name}: no rescan");
        }
    }

    #[test]
    fn lost_events_make_one_rescan_of_the_whole_tree() {
        let mut set = DirtySet::default();
        set.add(event(subtree("d"), None, false));
        set.rescan("event queue overflow".into());
        set.rescan("the event thread did not answer the sample barrier".into());
        let (reason, paths) = set.rescan_due().expect("a rescan is due");
        assert_eq!(reason, "event queue overflow; the event thread did not answer the sample barrier");
        assert_eq!(paths, vec![b"".to_vec(), b"d".to_vec()]);
        set.rescan_recorded();
        assert_eq!(set.rescan_due(), None);
        assert_eq!(set.pending.len(), 2, "the paths stay until the sample is committed");
        set.done();
        assert!(set.pending.is_empty());
    }

    #[test]
    fn writers_come_from_the_path_else_the_nearest_changed_directory() {
        let mut set = DirtySet::default();
        set.add(event(path("d/a"), Some(10), true));
        set.add(event(path("old"), Some(11), false));
        set.add(event(subtree("d"), Some(12), false));
        let changes =
            [change("d/a", None), change("d/e/b", None), change("new", Some("old")), change("x", None)];
        let writers = set.attribute(&changes, true);
        let got: Vec<(String, Vec<i32>, bool)> = writers
            .iter()
            .map(|w| (String::from_utf8_lossy(&w.path).into_owned(), w.pids.clone(), w.foreign))
            .collect();
        assert_eq!(
            got,
            vec![
                ("d/a".to_string(), vec![10], false),
                ("d/e/b".to_string(), vec![12], true),
                ("new".to_string(), vec![11], true),
            ]
        );
        let names: Vec<Vec<String>> =
            writers.iter().map(|w| w.who.iter().map(Writer::label).collect()).collect();
        assert_eq!(
            names,
            [vec!["w10[10]"], vec!["w12[12]"], vec!["w11[11]"]],
            "each writer named as its event was"
        );
        // Without `--only-target` nothing is foreign.
        assert!(set.attribute(&changes, false).iter().all(|w| !w.foreign));
    }

    #[test]
    fn no_writers_known_attributes_nothing() {
        let mut set = DirtySet::default();
        set.add(event(path("a"), None, false));
        assert!(set.attribute(&[change("a", None)], true).is_empty());
    }
}
