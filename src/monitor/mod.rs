//! The running monitor: starts and wires its threads, and stops in order.
//!
//! Threads and who owns what:
//! - the main thread runs the loop (`main_loop.rs`): it alone owns the
//!   sampler, and through it the ring, the mirror and the event thread
//!   (which owns the inotify or fanotify fd);
//! - the signal thread owns the signalfd, the control thread the `ctl`
//!   FIFO and the reply FIFOs, the stdin thread (`-i`) fd 0, and the exit
//!   watcher the target's pidfd (`threads.rs`); each only sends [`Msg`]s to
//!   the loop.
//!
//! The loop's replies to control commands are in `commands.rs`; what it
//! writes to stdout, stderr or the log, and how a survived failure becomes
//! a line there and in `status`, in `output.rs` and `faults.rs`.
//!
//! Shutdown order ([`Monitor::run`], then the caller): a last sample
//! (unless paused), the ring flushed; the caller releases the pid file;
//! only then is a `ctl stop` client answered ([`Stopped::answer`]), so a
//! script may start a new monitor as soon as it has the reply.

mod commands;
mod faults;
mod main_loop;
mod output;
mod threads;

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::control::wire::Reply;
use crate::fault::Fault;
use crate::sampler::Sampler;

pub use output::Output;
use threads::ExitWatch;

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
    /// and written to the output. A reply given up (its client did not
    /// read it, or its FIFO failed) is also counted as `dropped_replies`.
    Fault(Fault),
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
    /// Times recording paused on a record too large for the ring.
    oversize: u64,
    /// While a record too large for the ring holds recording back: the
    /// periodic sample is not tried again before this instant, and the
    /// wait, doubled at each try up to a minute (the pending change is
    /// read and diffed again at every try). Explicit samples try at once.
    retry_after: Option<(Instant, Duration)>,
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
            oversize: 0,
            retry_after: None,
            noted_faults: HashSet::new(),
        };
        monitor.watch_exit();
        monitor
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
    pub(super) fn watch_exit(&mut self) {
        self.exit_watch = None;
        if let (Some(pid), Some(notice)) = (self.sampler.pid(), self.sampler.exit_notice()) {
            let tx = self.tx.clone();
            self.exit_watch = ExitWatch::start(notice, move || {
                let _ = tx.send(Msg::Exited(pid));
            });
        }
    }

    /// Start the helper threads: signals from `signal_fd`, requests from
    /// the control FIFO `ctl`, and with `stdin` control lines from standard
    /// input. Call once the baseline is recorded and shown.
    pub fn start_threads(&self, signal_fd: nix::sys::signalfd::SignalFd, ctl: OwnedFd, stdin: bool) {
        threads::spawn_signals(signal_fd, self.tx.clone());
        threads::spawn_fifo(ctl, self.tx.clone(), self.listener_busy());
        if stdin {
            threads::spawn_stdin(self.tx.clone());
        }
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

/// A fresh message channel.
pub fn channel() -> (Sender<Msg>, Receiver<Msg>) {
    unbounded()
}
