//! Failures the monitor survived: counted for `status` (`errors`,
//! `last_error`, `recording`) and written to the output, each distinct
//! line once. Main thread only.

use super::Monitor;
use crate::render::human;

/// How many distinct fault lines are remembered, so each is written to the
/// output once.
const MAX_NOTED_FAULTS: usize = 256;

impl Monitor {
    /// Count a failure the monitor survived and keep it for `status`;
    /// write it to the output the first time it is seen.
    pub(super) fn fault(&mut self, text: &str) {
        let text = human::sanitize(text.as_bytes());
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
        let chain = crate::render::error_chain(e);
        let reason =
            if chain.starts_with("recording paused") { chain } else { format!("recording paused: {chain}") };
        let reason = human::sanitize(reason.as_bytes());
        self.errors += 1;
        self.last_error = Some(reason.clone());
        if self.stalled.as_deref() != Some(reason.as_str()) {
            self.output.warn(&format!("{reason}; retrying every period"));
            self.stalled = Some(reason.clone());
        }
        reason
    }
}
