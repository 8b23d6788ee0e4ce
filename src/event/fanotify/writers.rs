//! Who wrote: whether an event's PID is the target or one of its
//! descendants, known from the fork watcher's events (read before each
//! batch of fanotify events) or else from the PID's ancestry in /proc.

use super::{CACHE_LIMIT, Worker};

impl Worker {
    /// Follow forks: a child of the family joins it. Called after each
    /// read of the fanotify queue, before its events are classified: a
    /// fork is reported before anything its child writes.
    pub(super) fn follow_forks(&mut self) {
        let Some(forks) = &self.forks else { return };
        let family = &mut self.family;
        let others = &mut self.others;
        forks.drain(|parent, child| {
            if family.contains(&parent) {
                family.insert(child);
                others.remove(&child);
            }
        });
        if self.family.len() >= CACHE_LIMIT {
            self.family.clear();
            self.family.insert(self.target);
        }
    }

    /// Whether `pid` is the target or one of its descendants: known from
    /// fork events, else from its ancestry in /proc while it runs.
    pub(super) fn is_target_family(&mut self, pid: i32) -> bool {
        if self.family.contains(&pid) {
            return true;
        }
        if self.others.contains(&pid) {
            return false;
        }
        if crate::proc::is_descendant(pid, self.target) {
            self.family.insert(pid);
            return true;
        }
        if self.others.len() >= CACHE_LIMIT {
            self.others.clear();
        }
        self.others.insert(pid);
        false
    }
}
