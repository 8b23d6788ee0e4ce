//! The replies to control commands: one place that turns each parsed
//! [`Command`] into its [`Reply`], on the main thread (the loop), whoever
//! sent the line (stdin, the FIFO, a `monitord ctl` client).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Monitor;
use crate::control::wire::Reply;
use crate::control::{self, Command};
use crate::journal::record::Record;
use crate::journal::{self, Snapshot};
use crate::proc::Target;
use crate::render::human;

impl Monitor {
    pub(super) fn handle_line(
        &mut self,
        line: &[u8],
        next_tick: &mut Instant,
    ) -> Result<(Reply, bool), crate::sampler::Error> {
        let command = match control::parse(line) {
            Ok(command) => command,
            Err(control::ParseError::Empty) => return Ok((Reply::ok(""), false)),
            Err(e) => return Ok((Reply::error(e.to_string()), false)),
        };
        let reply = match command {
            Command::Stop => return Ok((Reply::ok("stopping\n"), true)),
            Command::Help => Reply::ok(control::help_text()),
            Command::Period(period) => {
                self.period = period;
                *next_tick = Instant::now() + period;
                Reply::ok(format!("period_ms: {}\n", period.as_millis()))
            }
            Command::Pause => {
                self.paused = true;
                Reply::ok("paused\n")
            }
            Command::Resume => {
                self.paused = false;
                *next_tick = Instant::now() + self.period;
                Reply::ok("resumed\n")
            }
            Command::Sample => {
                if self.sampler.pid().is_none() {
                    Reply::error("no process is followed: give one with `pid <pid>`")
                } else {
                    let seq = self.sample()?;
                    match &self.stalled {
                        Some(why) => Reply::error(why.clone()),
                        None => Reply::ok(format!("sampled: {seq}\n")),
                    }
                }
            }
            Command::Status => Reply::ok(self.status()),
            Command::Diff => Reply::ok(self.diff()),
            Command::History(k) => self.history(k),
            Command::Pid(pid) => self.follow(pid)?,
            Command::Mark(name) => self.mark(name)?,
            Command::Undo(wire) => self.undo(&wire)?,
        };
        Ok((reply, false))
    }

    /// `mark <name>`: take a sample first, so that the mark comes after
    /// every change made before it, then write the mark record.
    fn mark(&mut self, name: String) -> Result<Reply, crate::sampler::Error> {
        if self.sampler.pid().is_some() {
            self.sample()?;
            if let Some(why) = &self.stalled {
                return Ok(Reply::error(why.clone()));
            }
        }
        match self.sampler.mark(name) {
            Ok(committed) => {
                let seq = committed.seq;
                self.show(&[committed]);
                Ok(Reply::ok(format!("marked: {seq}\n")))
            }
            Err(e) if e.is_transient() => Ok(Reply::error(self.stall(&e))),
            Err(e) => Err(e),
        }
    }

    /// `undo <json>`: take a sample first (so the undo starts from every
    /// change made before it), then put the tree back and record it.
    fn undo(&mut self, wire: &crate::undo::Wire) -> Result<Reply, crate::sampler::Error> {
        let request = match wire.request() {
            Ok(request) => request,
            Err(why) => return Ok(Reply::error(why)),
        };
        if self.sampler.pid().is_some() {
            self.sample()?;
            if let Some(why) = &self.stalled {
                return Ok(Reply::error(why.clone()));
            }
        }
        match self.sampler.undo(&request, wire.force) {
            Ok(Ok(undone)) => {
                let mut text = String::new();
                for conflict in &undone.forced {
                    text.push_str(&format!("forced: {conflict}\n"));
                }
                match undone.committed {
                    Some(committed) => {
                        let seq = committed.seq;
                        self.show(&[committed]);
                        text.push_str(&format!(
                            "undone: #{}..#{}, {} file{} put back (seq {seq})\n",
                            undone.to,
                            undone.from,
                            undone.files,
                            if undone.files == 1 { "" } else { "s" }
                        ));
                    }
                    None => text.push_str(&format!(
                        "undone: #{}..#{}: the tree is already as it was\n",
                        undone.to, undone.from
                    )),
                }
                Ok(Reply::ok(text))
            }
            Ok(Err(why)) => Ok(Reply::error(why)),
            Err(e) if e.is_transient() => Ok(Reply::error(self.stall(&e))),
            Err(e) => Err(e),
        }
    }

    /// `pid <n>`: follow another process. A process that cannot be followed
    /// is an error reply and changes nothing.
    fn follow(&mut self, pid: i32) -> Result<Reply, crate::sampler::Error> {
        let target = match Target::open(pid) {
            Ok(target) => target,
            Err(e) => return Ok(Reply::error(format!("cannot follow pid {pid}: {e}"))),
        };
        let followed = self.sampler.follow(target);
        self.report_faults();
        let committed = match followed {
            Ok(committed) => committed,
            Err(e @ (crate::sampler::Error::Proc(_) | crate::sampler::Error::Event(_))) => {
                return Ok(Reply::error(format!("cannot follow pid {pid}: {e}")));
            }
            Err(e) if e.is_transient() => {
                let reason = self.stall(&e);
                if self.sampler.pid() != Some(pid) {
                    return Ok(Reply::error(format!("cannot follow pid {pid}: {reason}")));
                }
                // The `pid` record is in: the new process is followed, and
                // its baseline is taken as soon as it can be recorded.
                self.watch_exit();
                self.child = None;
                return Ok(Reply::error(format!(
                    "following pid {pid}, but its baseline is not recorded yet: {reason}"
                )));
            }
            Err(e) => return Err(e),
        };
        self.show(&committed);
        self.watch_exit();
        // A command we started is no longer what we follow.
        self.child = None;
        let cwd = self.sampler.cwd().map(|p| human::sanitize(p.as_os_str().as_encoded_bytes()));
        let seq = committed.last().map_or(0, |c| c.seq);
        Ok(Reply::ok(format!("pid: {pid}\ncwd: {}\nbaseline: {seq}\n", cwd.unwrap_or_default())))
    }

    /// The `status` reply: `key: value` lines.
    pub fn status(&self) -> String {
        let info = self.sampler.ring_info();
        let counters = self.sampler.counters();
        let events = self.sampler.event_shared();
        let load = |v: Option<&std::sync::atomic::AtomicU64>| v.map_or(0, |v| v.load(Ordering::Relaxed));
        let newest = info.next_seq.saturating_sub(1);
        let rules = self.sampler.rules();
        let cwd = self
            .sampler
            .cwd_now()
            .as_deref()
            .map_or_else(|| "-".to_string(), |p| human::sanitize(p.as_os_str().as_encoded_bytes()));
        let lines = [
            // 0 when no process is followed, as the journal writes it.
            ("pid", self.sampler.pid().unwrap_or(0).to_string()),
            ("cwd", cwd),
            ("store", self.store.display().to_string()),
            ("backend", self.backend.to_string()),
            ("period_ms", self.period.as_millis().to_string()),
            ("paused", self.paused.to_string()),
            (
                "recording",
                self.stalled.as_ref().map_or_else(
                    || "ok".to_string(),
                    |why| format!("paused: {}", super::faults::paused_because(why)),
                ),
            ),
            ("errors", self.errors.to_string()),
            ("last_error", self.last_error.clone().unwrap_or_else(|| "-".to_string())),
            ("oversize", self.oversize.to_string()),
            ("samples", counters.samples.to_string()),
            ("period_samples", self.period_samples.to_string()),
            ("missed_periods", self.missed_periods.to_string()),
            ("oldest_seq", info.oldest_seq.to_string()),
            ("newest_seq", newest.to_string()),
            ("ring_used", info.used_bytes.to_string()),
            ("ring_size", info.capacity_bytes.to_string()),
            ("dropped_records", info.dropped_records.to_string()),
            ("tracked_files", counters.tracked.to_string()),
            ("pending_paths", self.sampler.pending_len().to_string()),
            ("last_dirty_paths", counters.dirty_paths.to_string()),
            ("last_files_read", counters.files_read.to_string()),
            ("last_bytes_read", counters.bytes_read.to_string()),
            ("rescans", counters.rescans.to_string()),
            ("overflows", load(events.map(|e| &e.overflows)).to_string()),
            ("watches", load(events.map(|e| &e.watches)).to_string()),
            (
                "fanotify_marks",
                events
                    .and_then(|e| e.marks.lock().ok().map(|m| m.clone()))
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "-".to_string()),
            ),
            ("unwatched_dirs", events.map_or(0, |e| e.unwatched().len()).to_string()),
            ("last_scan_us", load(events.map(|e| &e.last_scan_us)).to_string()),
            ("last_scan_entries", load(events.map(|e| &e.last_scan_entries)).to_string()),
            ("gitignore", if rules.gitignore() { "on" } else { "off" }.to_string()),
            ("ignore_files", rules.ignore_files().to_string()),
            (
                "exclude_from",
                rules
                    .exclude_from()
                    .map_or_else(|| "-".to_string(), |p| human::sanitize(p.as_os_str().as_encoded_bytes())),
            ),
            ("dropped_replies", self.dropped_replies.to_string()),
            // Last: readers of a reply on a stream wait for this key.
            ("events", load(events.map(|e| &e.events)).to_string()),
        ];
        lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
    }

    fn diff(&mut self) -> String {
        let found = self.sampler.peek();
        if found.changes.is_empty() {
            return "no changes since the last sample\n".to_string();
        }
        let (added, removed) = human::line_counts(&found.changes);
        let mut out =
            format!("pending: {} files changed, +{added} -{removed}\n", found.changes.len()).into_bytes();
        human::render_changes(&found.changes, false, false, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn history(&self, k: usize) -> Reply {
        let snapshot = match Snapshot::read(self.sampler.ring_path()) {
            Ok(snapshot) => snapshot,
            Err(e) => return Reply::error(format!("cannot read the journal: {e}")),
        };
        let samples: Vec<_> =
            snapshot.frames().filter(|f| f.kind == journal::record::Kind::Sample as u16).collect();
        let mut out = Vec::new();
        for frame in &samples[samples.len().saturating_sub(k)..] {
            match Record::decode(&frame.payload) {
                Ok(record) => human::render(frame.seq, frame.time_us, &record, false, false, &mut out),
                Err(e) => out.extend_from_slice(format!("#{} undecodable: {e}\n", frame.seq).as_bytes()),
            }
        }
        Reply::ok(String::from_utf8_lossy(&out).into_owned())
    }
}
