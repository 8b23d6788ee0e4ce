//! Failures the monitor survived: the one place a [`Fault`] becomes text.
//! Each is counted for `status` (`errors`, `last_error`, `recording`) and
//! written to the output, each distinct line once. Main thread only.

use super::Monitor;
use crate::fault::{Fault, ReplyLoss};
use crate::render::human::{self, sanitize};

/// How many distinct fault lines are remembered, so each is written to the
/// output once.
const MAX_NOTED_FAULTS: usize = 256;

impl Monitor {
    /// Count a failure the monitor survived and keep it for `status`;
    /// write it to the output the first time it is seen.
    pub(super) fn fault(&mut self, fault: &Fault) {
        if let Fault::ReplyDropped { .. } = fault {
            self.dropped_replies += 1;
        }
        let text = sanitize(describe(fault).as_bytes());
        self.errors += 1;
        if self.noted_faults.len() >= MAX_NOTED_FAULTS {
            self.noted_faults.clear();
        }
        if self.noted_faults.insert(text.clone()) {
            self.note(&text);
        }
        self.last_error = Some(text);
    }

    /// Show the records the sampler committed in a call that then failed,
    /// and count the failures the sampler and the event thread survived
    /// (after each call to the sampler, and once after the baseline).
    pub fn report_faults(&mut self) {
        let unshown = self.sampler.take_unshown();
        if !unshown.is_empty() {
            self.show(&unshown);
        }
        for fault in self.sampler.take_faults() {
            self.fault(&fault);
        }
    }

    /// Recording cannot go on for now (`e` is transient: a full disk, an
    /// I/O error): pause it, say why once, count the failure. Nothing is
    /// lost while the target's changes stay pending; every period tries
    /// again. Returns the reason.
    pub(super) fn stall(&mut self, e: &crate::sampler::Error) -> String {
        let mut chain = crate::render::error_chain(e);
        if e.is_oversize() {
            chain.push_str(": a larger --ring-size would hold it; the change stays pending until it fits");
        }
        let reason = if chain.starts_with(PAUSED) { chain } else { format!("{PAUSED}{chain}") };
        let reason = human::sanitize(reason.as_bytes());
        self.errors += 1;
        self.last_error = Some(reason.clone());
        if self.stalled.as_deref() != Some(reason.as_str()) {
            if e.is_oversize() {
                self.oversize += 1;
            }
            let retrying =
                if e.is_oversize() { "retrying less and less often" } else { "retrying every period" };
            self.output.warn(&format!("{reason}; {retrying}"));
            self.stalled = Some(reason.clone());
        }
        reason
    }
}

/// How every reason [`Monitor::stall`] gives starts.
const PAUSED: &str = "recording paused: ";

/// What a stall's reason says after [`PAUSED`] (`status` shows it as
/// `recording: paused: WHY`).
pub(super) fn paused_because(reason: &str) -> &str {
    reason.strip_prefix(PAUSED).unwrap_or(reason)
}

/// What the output and `last_error` say about `fault`: what failed, on
/// which path, why, and how monitoring works around it. Paths are escaped
/// for a terminal.
fn describe(fault: &Fault) -> String {
    match fault {
        Fault::JournalWriteBack(e) => format!(
            "{}; the records stay in memory and are written back later",
            crate::render::error_chain(e)
        ),
        Fault::TreeRead { path, source } => {
            format!("cannot read {}: {source}; reading it again at every sample", sanitize(path))
        }
        Fault::WatchDir { path, source } => {
            let dir = if path.is_empty() { ".".to_string() } else { sanitize(path) };
            format!("cannot watch directory {dir}: {source}; rescanning it every sample")
        }
        Fault::MarkDir { path, call, source } => {
            let dir = if path.is_empty() { ".".to_string() } else { sanitize(path) };
            format!("fanotify: cannot mark directory {dir}: {call}: {source}; rescanning it every sample")
        }
        Fault::WatchFile { path, source } => format!(
            "cannot watch file {}: {source}; writes through its names outside the tree are missed",
            sanitize(path)
        ),
        Fault::ReplyDropped { to, why } => {
            let why = match why {
                ReplyLoss::Write(e) => e.to_string(),
                ReplyLoss::Unread(after) => format!("not read within {}s", after.as_secs()),
                ReplyLoss::TooMany => "too many replies waiting to be read".to_string(),
            };
            format!("cannot write the reply to {}: {why}", sanitize(to))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_fault_says_what_failed_where_and_what_is_done_about_it() {
        let eio = || io::Error::from_raw_os_error(libc::EIO);
        let sync = crate::journal::Error::Sync { path: PathBuf::from("/s/ring.bin"), source: eio() };
        let cases = [
            (
                Fault::JournalWriteBack(sync),
                "cannot sync ring /s/ring.bin: Input/output error (os error 5); \
                 the records stay in memory and are written back later",
            ),
            (
                Fault::TreeRead { path: b"d/a.txt".to_vec(), source: eio() },
                "cannot read d/a.txt: Input/output error (os error 5); reading it again at every sample",
            ),
            (
                Fault::WatchDir { path: Vec::new(), source: eio() },
                "cannot watch directory .: Input/output error (os error 5); rescanning it every sample",
            ),
            (
                Fault::WatchDir { path: b"d".to_vec(), source: eio() },
                "cannot watch directory d: Input/output error (os error 5); rescanning it every sample",
            ),
            (
                Fault::WatchFile { path: b"l.txt".to_vec(), source: eio() },
                "cannot watch file l.txt: Input/output error (os error 5); \
                 writes through its names outside the tree are missed",
            ),
            (
                Fault::ReplyDropped { to: b"/tmp/r".to_vec(), why: ReplyLoss::Write(eio()) },
                "cannot write the reply to /tmp/r: Input/output error (os error 5)",
            ),
            (
                Fault::ReplyDropped {
                    to: b"/tmp/r".to_vec(),
                    why: ReplyLoss::Unread(Duration::from_secs(2)),
                },
                "cannot write the reply to /tmp/r: not read within 2s",
            ),
            (
                Fault::ReplyDropped { to: b"/tmp/r".to_vec(), why: ReplyLoss::TooMany },
                "cannot write the reply to /tmp/r: too many replies waiting to be read",
            ),
        ];
        for (fault, text) in cases {
            assert_eq!(describe(&fault), text);
        }
    }

    #[test]
    fn a_path_from_the_tree_is_escaped_for_the_terminal() {
        let fault =
            Fault::TreeRead { path: b"a\x1b[2Jb".to_vec(), source: io::Error::from_raw_os_error(libc::EIO) };
        let text = describe(&fault);
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.starts_with("cannot read a"), "{text:?}");
    }
}
