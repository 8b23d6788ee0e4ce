//! The helper threads and what each owns: the signal thread (the
//! signalfd), the control thread (the `ctl` FIFO and the reply FIFOs),
//! the stdin thread (fd 0, in `-i`) and the exit watcher (the target's
//! pidfd and an eventfd to stop it). Each only sends [`Msg`]s to the loop.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use super::{Msg, Origin};
use crate::control::{self, wire::Reply};
use crate::proc::ExitNotice;

/// Spawn the thread that reads control lines from stdin. End of input
/// ends the thread, not the monitor.
pub(super) fn spawn_stdin(tx: Sender<Msg>) {
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
pub(super) fn spawn_signals(fd: nix::sys::signalfd::SignalFd, tx: Sender<Msg>) {
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
pub(super) fn spawn_fifo(fd: OwnedFd, tx: Sender<Msg>, busy: Arc<AtomicBool>) {
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
                let _ = faults.send(Msg::Fault(dropped));
            },
        );
    });
}

/// A thread waiting for a process to exit: its pidfd becomes readable, or,
/// without a pidfd, a check every [`EXIT_POLL_INTERVAL`] finds it gone.
/// Dropping it stops the thread.
pub(super) struct ExitWatch {
    stop: Arc<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often a process without a pidfd is checked.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(100);

impl ExitWatch {
    pub(super) fn start(notice: ExitNotice, on_exit: impl FnOnce() + Send + 'static) -> Option<ExitWatch> {
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
    use std::time::Instant;

    use super::*;
    use crate::proc::Target;

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
