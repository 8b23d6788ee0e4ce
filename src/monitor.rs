//! The running monitor: wires the threads, runs the sampler's loop (a tick
//! every period, control commands and signals in between) and shuts down
//! in order. Threads: the event thread (owned by the sampler), a signal
//! thread reading the signalfd, the control FIFO's listener, in `-i` a
//! stdin reader, and a watcher of the target's exit; each sends messages
//! to this loop, which alone touches the ring and the mirror.

use std::collections::HashSet;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

use crate::control::wire::Reply;
use crate::control::{self, Command};
use crate::journal::record::Record;
use crate::journal::{self, Snapshot};
use crate::log::Log;
use crate::proc::{ExitNotice, Target};
use crate::render::human;
use crate::sampler::{Committed, Sampler};

/// Why a monitor stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sample could not be recorded, in a way that cannot be retried.
    #[error(transparent)]
    Sampler(#[from] crate::sampler::Error),
    /// Asked to stop while recording was paused by a failure: the changes
    /// since then are not in the journal.
    #[error("the last changes were not recorded ({0})")]
    Stalled(String),
}

/// How many distinct fault lines are remembered, so each is written to the
/// output once.
const MAX_NOTED_FAULTS: usize = 256;

/// Longest part of a control line written to the output with its reply,
/// in bytes.
const SHOWN_LINE: usize = 80;

/// Where a control line came from, and so where its reply goes.
#[derive(Debug)]
pub enum Origin {
    /// Standard input in `-i`: the reply is printed.
    Stdin,
    /// A plain line written to the FIFO: the reply goes to the output.
    Fifo,
    /// A `monitord ctl` client waiting on its reply FIFO.
    Client(Sender<Reply>),
}

/// A message for the monitor loop.
#[derive(Debug)]
pub enum Msg {
    /// A control line (without its newline).
    Line(Vec<u8>, Origin),
    /// A signal number from the signalfd.
    Signal(i32),
    /// The process with this PID exited (its pidfd became readable, or a
    /// check found it gone).
    Exited(i32),
    /// Another thread survived a failure: counted and shown by `status`,
    /// and written to the output.
    Fault(String),
    /// A reply was given up (its client did not read it, or its FIFO
    /// failed): a fault, also counted as `dropped_replies`.
    ReplyDropped(String),
}

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

/// The monitor loop's state.
pub struct Monitor {
    sampler: Sampler,
    period: Duration,
    paused: bool,
    output: Output,
    backend: &'static str,
    store: PathBuf,
    tx: Sender<Msg>,
    exit_watch: Option<ExitWatch>,
    /// Why recording is paused (the journal or the mirror refused a write).
    stalled: Option<String>,
    /// Failures survived since start: writes retried, files read again,
    /// directories rescanned, replies given up.
    errors: u64,
    /// The newest of them, one line.
    last_error: Option<String>,
    /// Fault lines already written to the output.
    noted_faults: HashSet<String>,
    /// A command we started (`-- COMMAND`): our child, reaped here.
    child: Option<i32>,
    listener_busy: Arc<AtomicBool>,
    /// Samples taken at the period's ticks (the others were asked for:
    /// `sample`, SIGUSR2, the target's exit).
    period_samples: u64,
    /// Ticks skipped because the loop fell more than a period behind.
    missed_periods: u64,
    /// Replies to `monitord ctl` clients given up.
    dropped_replies: u64,
}

impl Monitor {
    /// Wrap a started sampler. `tx` is the sending side of the loop's own
    /// channel (for the target's exit watcher).
    pub fn new(
        sampler: Sampler,
        period: Duration,
        output: Output,
        backend: &'static str,
        store: PathBuf,
        tx: Sender<Msg>,
    ) -> Monitor {
        let mut monitor = Monitor {
            sampler,
            period,
            paused: false,
            output,
            backend,
            store,
            tx,
            exit_watch: None,
            listener_busy: Arc::new(AtomicBool::new(false)),
            child: None,
            stalled: None,
            period_samples: 0,
            missed_periods: 0,
            dropped_replies: 0,
            errors: 0,
            last_error: None,
            noted_faults: HashSet::new(),
        };
        monitor.watch_exit();
        monitor
    }

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

    /// Follow `pid` as a command we started: reap it when it exits, pass
    /// SIGINT and SIGTERM on to it, and stop once it has ended.
    pub fn set_child(&mut self, pid: i32) {
        self.child = Some(pid);
        self.sampler.reap_target();
    }

    /// The flag the FIFO listener raises while it handles a request, so a
    /// shutdown waits for the reply to `stop` to be delivered.
    pub fn listener_busy(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.listener_busy)
    }

    /// (Re)start the watcher of the followed process's exit.
    fn watch_exit(&mut self) {
        self.exit_watch = None;
        let pid = self.sampler.pid();
        if let Some(notice) = self.sampler.exit_notice() {
            let tx = self.tx.clone();
            self.exit_watch = ExitWatch::start(notice, move || {
                let _ = tx.send(Msg::Exited(pid));
            });
        }
    }

    /// Count a failure the monitor survived and keep it for `status`;
    /// write it to the output the first time it is seen.
    fn fault(&mut self, text: &str) {
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
    fn stall(&mut self, e: &crate::sampler::Error) -> String {
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

    /// Sample now and show what was committed.
    fn sample(&mut self) -> Result<u64, crate::sampler::Error> {
        let had_target = self.sampler.pid();
        let sampled = self.sampler.sample();
        self.report_faults();
        let committed = match sampled {
            Ok(committed) => committed,
            Err(e) if e.is_transient() => {
                self.stall(&e);
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        if self.stalled.take().is_some() {
            self.note("recording resumed: nothing pending was lost");
        }
        self.show(&committed);
        if had_target != 0 && self.sampler.pid() == 0 {
            self.exit_watch = None;
            if self.child.is_none() {
                self.note(&format!("pid {had_target} exited; waiting for a `pid` command"));
            }
        } else if had_target != 0 && committed.iter().any(|c| c.record.kind() == journal::record::Kind::Cwd) {
            self.note(&format!("pid {had_target} changed directory; baselined the new one"));
        }
        Ok(committed.iter().map(|c| c.seq).max().unwrap_or(0))
    }

    /// Run until `stop`, SIGINT or SIGTERM. A last sample is taken (unless
    /// paused), then the ring is flushed. A `ctl stop` client is answered
    /// only once everything is released: see [`Stopped::answer`].
    ///
    /// # Errors
    /// [`Error::Sampler`] when a sample cannot be recorded and retrying
    /// cannot help, or the ring cannot be flushed; [`Error::Stalled`] when
    /// recording was still paused by a failure at the stop.
    pub fn run(mut self, messages: &Receiver<Msg>) -> Result<Stopped, Error> {
        let mut stop_client = None;
        let result = self.run_loop(messages, &mut stop_client);
        // In the foreground the error reaches stderr through the caller; a
        // daemon's stderr is /dev/null, so it says why in its log.
        if let (Err(e), Output::Log(log)) = (&result, &mut self.output) {
            log.write(&format!("stopped on error: {e}"));
        }
        result?;
        Ok(Stopped {
            stop_client,
            listener_busy: self.listener_busy,
            output: self.output,
            // The sampler reaped the command and recorded how it ended.
            command_exit: self.child.and(self.sampler.exit().cloned()),
        })
    }

    fn run_loop(
        &mut self,
        messages: &Receiver<Msg>,
        stop_client: &mut Option<(Sender<Reply>, Reply)>,
    ) -> Result<(), Error> {
        let mut next_tick = Instant::now() + self.period;
        loop {
            // A command of ours has ended and its exit is recorded (a tick
            // may notice it before the pidfd does).
            if self.child.is_some() && self.sampler.pid() == 0 {
                break;
            }
            // A due tick goes first: `recv_timeout` hands out queued
            // messages before it times out, so a steady stream of commands
            // or signals would otherwise hold the tick back until periods
            // are lost.
            let now = Instant::now();
            let next = if now >= next_tick {
                Err(RecvTimeoutError::Timeout)
            } else {
                messages.recv_timeout(next_tick - now)
            };
            match next {
                Ok(Msg::Line(line, origin)) => {
                    let (reply, stop) = self.handle_line(&line, &mut next_tick)?;
                    if stop && let Origin::Client(tx) = origin {
                        *stop_client = Some((tx, reply));
                        break;
                    }
                    self.deliver(&line, origin, reply);
                    if stop {
                        break;
                    }
                }
                Ok(Msg::Signal(signo)) => {
                    if signo == libc::SIGINT || signo == libc::SIGTERM {
                        match self.child {
                            // The command gets the signal; we stop when it ends.
                            Some(child) if self.sampler.pid() == child => {
                                // SAFETY: kill(2) on our own child, not yet reaped.
                                unsafe { libc::kill(child, signo) };
                            }
                            _ => break,
                        }
                        continue;
                    }
                    self.on_signal(signo)?;
                }
                Ok(Msg::Exited(pid)) => {
                    if pid == self.sampler.pid() {
                        self.sample()?;
                    }
                }
                Ok(Msg::Fault(text)) => self.fault(&text),
                Ok(Msg::ReplyDropped(text)) => {
                    self.dropped_replies += 1;
                    self.fault(&text);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !self.paused {
                        let before = self.sampler.counters().samples;
                        self.sample()?;
                        self.period_samples += self.sampler.counters().samples.saturating_sub(before);
                    }
                    next_tick += self.period;
                    let now = Instant::now();
                    if next_tick < now {
                        // Fell behind (a slow sample): skip, don't burst.
                        let behind = (now - next_tick).as_nanos() / self.period.as_nanos().max(1);
                        self.missed_periods += u64::try_from(behind).unwrap_or(u64::MAX).saturating_add(1);
                        next_tick = now + self.period;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if !self.paused {
            self.sample()?;
        }
        self.sampler.flush()?;
        match self.stalled.take() {
            Some(reason) => Err(Error::Stalled(reason)),
            None => Ok(()),
        }
    }

    fn deliver(&mut self, line: &[u8], origin: Origin, reply: Reply) {
        match origin {
            Origin::Client(tx) => {
                let _ = tx.send(reply);
            }
            Origin::Stdin => self.note(&reply.text),
            Origin::Fifo => {
                if !reply.text.is_empty() {
                    // Enough of a bad line to recognise it, not all of it.
                    let mut command = human::sanitize(&line[..line.len().min(SHOWN_LINE)]);
                    if line.len() > SHOWN_LINE {
                        command.push_str("...");
                    }
                    self.note(&format!("ctl: {command}\n{}", reply.text));
                }
            }
        }
    }

    fn on_signal(&mut self, signo: i32) -> Result<(), crate::sampler::Error> {
        match signo {
            libc::SIGUSR2 => {
                self.sample()?;
            }
            libc::SIGUSR1 => {
                let status = self.status();
                self.note(&status);
            }
            libc::SIGHUP => {
                if let Output::Log(log) = &mut self.output {
                    match log.reopen() {
                        Ok(()) => log.write("log reopened (SIGHUP)"),
                        Err(e) => log.write(&format!("cannot reopen {}: {e}", log.path().display())),
                    }
                }
            }
            _ => {}
        }
        Ok(())
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
                if self.sampler.pid() == 0 {
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
        };
        Ok((reply, false))
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
                if self.sampler.pid() != pid {
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
        let cwd = self
            .sampler
            .cwd_now()
            .as_deref()
            .map_or_else(|| "-".to_string(), |p| human::sanitize(p.as_os_str().as_encoded_bytes()));
        let lines = [
            ("pid", self.sampler.pid().to_string()),
            ("cwd", cwd),
            ("store", self.store.display().to_string()),
            ("backend", self.backend.to_string()),
            ("period_ms", self.period.as_millis().to_string()),
            ("paused", self.paused.to_string()),
            (
                "recording",
                self.stalled.as_ref().map_or_else(|| "ok".to_string(), |why| format!("paused: {why}")),
            ),
            ("errors", self.errors.to_string()),
            ("last_error", self.last_error.clone().unwrap_or_else(|| "-".to_string())),
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
            match Record::decode(frame.payload) {
                Ok(record) => human::render(frame.seq, frame.time_us, &record, false, false, &mut out),
                Err(e) => out.extend_from_slice(format!("#{} undecodable: {e}\n", frame.seq).as_bytes()),
            }
        }
        Reply::ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// A monitor that has stopped: the ring is flushed and closed, its locks
/// released. What is left is to answer a `ctl stop` client.
pub struct Stopped {
    stop_client: Option<(Sender<Reply>, Reply)>,
    listener_busy: Arc<AtomicBool>,
    /// Where notes go, for the last words.
    pub output: Output,
    /// How a command started with `--` ended.
    pub command_exit: Option<crate::journal::record::Exit>,
}

impl Stopped {
    /// Answer the client that asked to stop (after the caller released the
    /// pid file: a script may start a new monitor as soon as it has the
    /// reply), and wait for the reply to be written.
    pub fn answer(self) {
        let Some((tx, reply)) = self.stop_client else { return };
        let _ = tx.send(reply);
        // The listener raised `busy` when it read the request and lowers it
        // once the reply is written.
        let deadline = Instant::now() + Duration::from_secs(2);
        std::thread::sleep(Duration::from_millis(1));
        while self.listener_busy.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
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
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.send(Msg::Line(line.clone(), Origin::Stdin)).is_err() {
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

/// Spawn the control FIFO's listener: each request becomes a message, and
/// a waiting client gets the loop's reply.
pub fn spawn_fifo(fd: OwnedFd, tx: Sender<Msg>, busy: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new().name("monitord-ctl".into()).spawn(move || {
        let faults = tx.clone();
        control::fifo::listen(
            fd,
            &busy,
            |command, wants_reply| {
                if !wants_reply {
                    let _ = tx.send(Msg::Line(command.to_vec(), Origin::Fifo));
                    return Reply::ok("");
                }
                let (reply_tx, reply_rx) = bounded(1);
                if tx.send(Msg::Line(command.to_vec(), Origin::Client(reply_tx))).is_err() {
                    return Reply::error("the monitor is shutting down");
                }
                reply_rx.recv().unwrap_or_else(|_| Reply::error("the monitor is shutting down"))
            },
            |dropped| {
                let _ = faults.send(Msg::ReplyDropped(dropped));
            },
        );
    });
}

/// A fresh message channel.
pub fn channel() -> (Sender<Msg>, Receiver<Msg>) {
    unbounded()
}

/// A thread waiting for a process to exit: its pidfd becomes readable, or,
/// without a pidfd, a check every [`EXIT_POLL_INTERVAL`] finds it gone.
/// Dropping it stops the thread.
struct ExitWatch {
    stop: Arc<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often a process without a pidfd is checked.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(100);

impl ExitWatch {
    fn start(notice: ExitNotice, on_exit: impl FnOnce() + Send + 'static) -> Option<ExitWatch> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let stop = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).ok()?;
        let stop: Arc<OwnedFd> = Arc::new(stop.into());
        let stop_seen = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("monitord-exit".into())
            .spawn(move || {
                use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
                let timeout = match &notice {
                    ExitNotice::Pidfd(_) => PollTimeout::NONE,
                    ExitNotice::Poll(_) => {
                        PollTimeout::try_from(EXIT_POLL_INTERVAL).unwrap_or(PollTimeout::MAX)
                    }
                };
                loop {
                    let mut fds = vec![PollFd::new(stop_seen.as_fd(), PollFlags::POLLIN)];
                    if let ExitNotice::Pidfd(pidfd) = &notice {
                        fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
                    }
                    match poll(&mut fds, timeout) {
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(_) => return,
                        Ok(_) => {}
                    }
                    let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
                    if ready(&fds[0]) {
                        return;
                    }
                    let exited = match &notice {
                        ExitNotice::Pidfd(_) => fds.get(1).is_some_and(ready),
                        ExitNotice::Poll(target) => !target.is_alive(),
                    };
                    if exited {
                        on_exit();
                        return;
                    }
                }
            })
            .ok()?;
        Some(ExitWatch { stop, thread: Some(thread) })
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        let _ = nix::unistd::write(&*self.stop, &1u64.to_ne_bytes());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start a child, watch it with `notice`, kill it: the watch reports
    /// the exit, and a watch dropped before an exit reports nothing.
    fn exit_is_reported(notice: impl Fn(&Target) -> ExitNotice) {
        let mut child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
        let target = Target::open(child.id() as i32).unwrap();
        let (tx, rx) = bounded(1);
        let watch = ExitWatch::start(notice(&target), move || tx.send(()).unwrap()).unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "no exit yet");
        child.kill().unwrap();
        let started = Instant::now();
        rx.recv_timeout(Duration::from_secs(5)).expect("the exit is reported");
        assert!(started.elapsed() < EXIT_POLL_INTERVAL * 5, "{:?}", started.elapsed());
        drop(watch);
        child.wait().unwrap();

        let mut other = std::process::Command::new("sleep").arg("100").spawn().unwrap();
        let target = Target::open(other.id() as i32).unwrap();
        let (tx, rx) = bounded(1);
        let watch = ExitWatch::start(notice(&target), move || tx.send(()).unwrap()).unwrap();
        let dropped = Instant::now();
        drop(watch);
        assert!(dropped.elapsed() < Duration::from_secs(1), "dropping stops the thread at once");
        other.kill().unwrap();
        other.wait().unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "a stopped watch says nothing");
    }

    #[test]
    fn a_pidfd_reports_the_exit() {
        let me = Target::open(std::process::id() as i32).unwrap();
        if !matches!(me.exit_notice(), Some(ExitNotice::Pidfd(_))) {
            eprintln!("SKIPPED: no pidfd_open here (Linux < 5.3, or under valgrind)");
            return;
        }
        exit_is_reported(|target| match target.exit_notice() {
            Some(notice @ ExitNotice::Pidfd(_)) => notice,
            other => panic!("pidfd_open worked a moment ago: {other:?}"),
        });
    }

    #[test]
    fn without_a_pidfd_polling_reports_the_exit() {
        exit_is_reported(|target| ExitNotice::Poll(target.try_clone().unwrap()));
    }
}
