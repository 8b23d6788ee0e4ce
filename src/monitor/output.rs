//! The monitor's output: the sink every record, note and warning goes
//! through. It writes to stdout or stderr (fd 1 or 2) in the foreground and
//! to `<store>/log` in a daemon; only the main thread (the loop) writes.

use std::io::Write;

use super::Monitor;
use crate::log::Log;
use crate::render::human;
use crate::sampler::Committed;

/// Where the monitor's own output goes.
#[derive(Debug)]
pub enum Output {
    /// The foreground: every record in full on stdout (on stderr while a
    /// command started with `--` keeps stdout).
    Terminal {
        /// Colour diffs (the stream is a terminal).
        color: bool,
        /// Write to stderr instead of stdout.
        stderr: bool,
    },
    /// A daemon: one line per notable record or event in the log.
    Log(Log),
    /// Nothing but errors (`--quiet`).
    Quiet,
}

impl Output {
    /// Write a note: to the terminal in the foreground, to the log in a
    /// daemon.
    pub fn note(&mut self, text: &str) {
        match self {
            Output::Terminal { stderr, .. } => {
                let mut bytes = text.as_bytes().to_vec();
                if !text.ends_with('\n') {
                    bytes.push(b'\n');
                }
                write_terminal(*stderr, &bytes);
            }
            Output::Log(log) => log.write(text),
            Output::Quiet => {}
        }
    }

    /// Write a warning: something went wrong and monitoring goes on. In
    /// the foreground (even `--quiet`) it goes to stderr, prefixed `<4>`
    /// for the journal; in a daemon, to the log.
    pub fn warn(&mut self, text: &str) {
        match self {
            Output::Log(log) => log.write(text),
            Output::Terminal { .. } | Output::Quiet => {
                crate::log::to_stderr(crate::log::Level::Warning, text)
            }
        }
    }
}

fn write_terminal(stderr: bool, bytes: &[u8]) {
    if stderr {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes);
        let _ = err.flush();
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }
}

impl Monitor {
    /// Show committed records: in full on a terminal, one summary line per
    /// record in the log (samples with no change are left out of the log).
    pub fn show(&mut self, committed: &[Committed]) {
        match &mut self.output {
            Output::Terminal { color, stderr } => {
                let mut out = Vec::new();
                for c in committed {
                    human::render(c.seq, c.time_us, &c.record, *color, false, &mut out);
                }
                write_terminal(*stderr, &out);
            }
            Output::Quiet => {}
            Output::Log(log) => {
                for c in committed {
                    if let crate::journal::record::Body::Sample(s) = &c.record.body
                        && s.files.is_empty()
                        && s.skipped.is_empty()
                    {
                        continue;
                    }
                    log.write(&human::summary(c.seq, c.time_us, &c.record, false));
                }
            }
        }
    }

    /// Write a note: to stdout in the foreground, to the log in a daemon.
    pub fn note(&mut self, text: &str) {
        self.output.note(text);
    }
}
