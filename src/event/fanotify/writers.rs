//! Who wrote: whether an event's PID is the target or one of its
//! descendants, known from the fork watcher's events (read before each
//! batch of fanotify events) or else from the PID's ancestry in /proc;
//! and its name (command, executable, uid), read from /proc when its
//! event is read, so that a writer that exits before the sample is still
//! named.
//!
//! A name is read once per read of the queue and PID: its `stat` line
//! (command name and start time) then; the executable and uid only when
//! the start time or the command name differ from what is cached, so a
//! reused PID or an `exec` is named afresh and a busy writer costs one
//! small read per batch.

use std::sync::Arc;

use super::{CACHE_LIMIT, Worker};
use crate::journal::record::Writer;

/// A writer as last named.
#[derive(Debug)]
pub(super) struct Named {
    /// The queue read it was checked in.
    batch: u64,
    /// Its start time (ticks after boot): with the PID, its identity.
    starttime: u64,
    writer: Arc<Writer>,
}

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

    /// The writer `pid`, named now (or as named earlier in this read of
    /// the queue). A process already gone keeps the name it had when it
    /// was last seen, or only its PID.
    pub(super) fn writer(&mut self, pid: i32) -> Arc<Writer> {
        if let Some(named) = self.named.get(&pid)
            && named.batch == self.batch
        {
            return Arc::clone(&named.writer);
        }
        let target = self.is_target_family(pid);
        let stat = std::fs::read(format!("/proc/{pid}/stat")).ok();
        let parsed = stat.as_deref().and_then(|raw| {
            let starttime = crate::proc::parse_stat(raw)?.starttime;
            let comm = String::from_utf8_lossy(crate::proc::stat_comm(raw)?).into_owned();
            Some((starttime, comm))
        });
        let Some((starttime, comm)) = parsed else {
            return match self.named.get_mut(&pid) {
                Some(named) => {
                    named.batch = self.batch;
                    Arc::clone(&named.writer)
                }
                None => Arc::new(Writer { pid, target, ..Writer::default() }),
            };
        };
        if let Some(named) = self.named.get_mut(&pid)
            && named.starttime == starttime
            && named.writer.comm.as_deref() == Some(comm.as_str())
            && named.writer.target == target
        {
            named.batch = self.batch;
            return Arc::clone(&named.writer);
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| std::os::unix::ffi::OsStringExt::into_vec(p.into_os_string()));
        let uid = effective_uid(pid);
        let writer = Arc::new(Writer { pid, comm: Some(comm), exe, uid, target });
        if self.named.len() >= CACHE_LIMIT {
            self.named.clear();
        }
        self.named.insert(pid, Named { batch: self.batch, starttime, writer: Arc::clone(&writer) });
        writer
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

/// The effective uid of `pid` (the second field of `Uid:` in its status).
fn effective_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}
