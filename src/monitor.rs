//! The running monitor: starts and wires the threads, runs the sampler's
//! loop (a tick every period, control commands in between) and shuts down
//! in order. Threads: the event thread (owned by the sampler), a signal
//! thread reading the signalfd, and in `-i` a stdin reader; each sends
//! messages to this loop, which alone touches the ring and the mirror.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

use crate::control::{self, Command};
use crate::journal::record::Record;
use crate::journal::{self, Snapshot};
use crate::render::human;
use crate::sampler::{Committed, Sampler};

/// A message for the monitor loop.
#[derive(Debug)]
pub enum Msg {
    /// A control line (stdin, FIFO), with where to send the reply (None:
    /// print it).
    Line(Vec<u8>, Option<Sender<Reply>>),
    /// A signal number from the signalfd.
    Signal(i32),
}

/// The answer to one control command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// False for an error reply.
    pub ok: bool,
    /// The reply text (lines ending in `\n`).
    pub text: String,
}

impl Reply {
    fn ok(text: impl Into<String>) -> Reply {
        Reply { ok: true, text: text.into() }
    }
    fn error(text: impl Into<String>) -> Reply {
        Reply { ok: false, text: format!("error: {}\n", text.into()) }
    }
}

/// Output settings for the foreground.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Colour diffs (stdout is a terminal).
    pub color: bool,
}

/// The monitor loop's state.
pub struct Monitor {
    sampler: Sampler,
    period: Duration,
    paused: bool,
    output: Output,
    backend: &'static str,
    store: PathBuf,
}

impl Monitor {
    /// Wrap a started sampler.
    pub fn new(
        sampler: Sampler,
        period: Duration,
        output: Output,
        backend: &'static str,
        store: PathBuf,
    ) -> Monitor {
        Monitor { sampler, period, paused: false, output, backend, store }
    }

    /// Print committed records to stdout (foreground).
    pub fn print(&self, committed: &[Committed]) {
        let mut out = Vec::new();
        for c in committed {
            human::render(c.seq, c.time_us, &c.record, self.output.color, false, &mut out);
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&out);
        let _ = stdout.flush();
    }

    /// Run until `stop`, SIGINT or SIGTERM. The sample being taken is
    /// finished first; then the ring is flushed.
    ///
    /// # Errors
    /// [`crate::sampler::Error`] when a sample cannot be recorded.
    pub fn run(&mut self, messages: &Receiver<Msg>) -> Result<(), crate::sampler::Error> {
        let mut next_tick = Instant::now() + self.period;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            match messages.recv_timeout(timeout) {
                Ok(Msg::Line(line, reply_to)) => {
                    let (reply, stop) = self.handle_line(&line, &mut next_tick)?;
                    match reply_to {
                        Some(tx) => {
                            let _ = tx.send(reply);
                        }
                        None => {
                            let mut stdout = std::io::stdout().lock();
                            let _ = stdout.write_all(reply.text.as_bytes());
                            let _ = stdout.flush();
                        }
                    }
                    if stop {
                        break;
                    }
                }
                Ok(Msg::Signal(signo)) => {
                    if signo == libc::SIGINT || signo == libc::SIGTERM {
                        break;
                    }
                    if signo == libc::SIGUSR2 {
                        let committed = self.sampler.sample()?;
                        self.print(&committed);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !self.paused {
                        let committed = self.sampler.sample()?;
                        self.print(&committed);
                    }
                    next_tick += self.period;
                    let now = Instant::now();
                    if next_tick < now {
                        // Fell behind (a slow sample): skip, don't burst.
                        next_tick = now + self.period;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.sampler.flush()
    }

    fn handle_line(
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
                let committed = self.sampler.sample()?;
                self.print(&committed);
                let seq = committed.iter().map(|c| c.seq).max().unwrap_or(0);
                Reply::ok(format!("sampled: {seq}\n"))
            }
            Command::Status => Reply::ok(self.status()),
            Command::Diff => Reply::ok(self.diff()),
            Command::History(k) => self.history(k),
            Command::Pid(_) => Reply::error("following another process is not supported by this version"),
        };
        Ok((reply, false))
    }

    /// The `status` reply: `key: value` lines.
    pub fn status(&self) -> String {
        let info = self.sampler.ring_info();
        let counters = self.sampler.counters();
        let events = self.sampler.event_shared();
        let load = |v: &std::sync::atomic::AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
        let newest = info.next_seq.saturating_sub(1);
        let lines = [
            ("pid", self.sampler.pid().to_string()),
            ("cwd", human::sanitize(self.sampler.cwd().as_os_str().as_encoded_bytes())),
            ("store", self.store.display().to_string()),
            ("backend", self.backend.to_string()),
            ("period_ms", self.period.as_millis().to_string()),
            ("paused", self.paused.to_string()),
            ("samples", counters.samples.to_string()),
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
            ("overflows", load(&events.overflows).to_string()),
            ("watches", load(&events.watches).to_string()),
            ("unwatched_dirs", events.unwatched().len().to_string()),
            ("events", load(&events.events).to_string()),
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
            match Record::decode(frame.payload) {
                Ok(record) => human::render(frame.seq, frame.time_us, &record, false, false, &mut out),
                Err(e) => out.extend_from_slice(format!("#{} undecodable: {e}\n", frame.seq).as_bytes()),
            }
        }
        Reply::ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Spawn the thread that reads control lines from stdin. End of input
/// ends the thread, not the monitor.
pub fn spawn_stdin(tx: Sender<Msg>) {
    let _ = std::thread::Builder::new().name("monitord-stdin".into()).spawn(move || {
        use std::io::BufRead;
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            match lock.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(Msg::Line(line.clone(), None)).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Spawn the thread that turns signals from the signalfd into messages.
pub fn spawn_signals(fd: nix::sys::signalfd::SignalFd, tx: Sender<Msg>) {
    let _ = std::thread::Builder::new().name("monitord-signals".into()).spawn(move || {
        while let Some(signo) = crate::signals::next(&fd) {
            if tx.send(Msg::Signal(signo)).is_err() {
                return;
            }
        }
    });
}

/// A fresh message channel.
pub fn channel() -> (Sender<Msg>, Receiver<Msg>) {
    unbounded()
}
