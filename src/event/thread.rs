//! The event thread every kernel-queue backend shares: it waits on the
//! backend's fd and a wake-up eventfd, reads the kernel queue dry whenever
//! either is ready, and answers the sampler's barrier requests only after
//! such a read, so "every event queued before the barrier is on our queue"
//! holds for any backend whose kernel queue is filled in the write path.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::{Error, Event, Linked, Shared, Source};
use crate::exclude::Matcher;

/// A backend's reading half, run on the event thread.
pub(super) trait Reader: Send + 'static {
    /// The fd that becomes readable when the kernel has events.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Read the kernel queue until it is empty, pushing events to `queue`.
    fn read_all(&mut self, queue: &Queue);
    /// At each sample barrier, before it is answered: try again what
    /// failed earlier (directories that could not be watched).
    fn retry(&mut self, _queue: &Queue) {}
    /// Follow writes to exactly these files (see [`Source::watch_files`]).
    fn watch_files(&mut self, _files: &[Linked], _queue: &Queue) {}
    /// Leave out what `rules` leave out from now on, and watch what they
    /// let in below `changed` (see [`Source::rules`]).
    fn rules(&mut self, rules: Matcher, changed: &[Vec<u8>], queue: &Queue);
}

/// The sending side of the dirty-path queue. A full queue is an overflow
/// (a rescan), never a lost change.
pub(super) struct Queue {
    out: Sender<Event>,
    /// Counters shared with the sampler.
    pub shared: Arc<Shared>,
}

impl Queue {
    /// Queue one event.
    pub fn push(&self, event: Event) {
        match self.out.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.shared.overflow(),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

enum Request {
    Sync(Sender<()>),
    Files(Vec<Linked>),
    Rules(Box<Matcher>, Vec<Vec<u8>>),
    Stop,
}

/// A running event thread; stopped and joined on drop.
pub(super) struct Threaded {
    thread: Option<JoinHandle<()>>,
    wake: Arc<EventFd>,
    requests: Sender<Request>,
    events: Receiver<Event>,
    shared: Arc<Shared>,
}

/// A queue of `capacity` events and the shared counters.
pub(super) fn queue(capacity: usize) -> (Queue, Receiver<Event>) {
    let (out, events) = bounded(capacity);
    (Queue { out, shared: Arc::new(Shared::default()) }, events)
}

impl Threaded {
    /// Start the thread for `reader`, which pushes to `queue`.
    pub fn spawn(
        name: &str,
        mut reader: impl Reader,
        queue: Queue,
        events: Receiver<Event>,
    ) -> Result<Threaded, Error> {
        let wake = Arc::new(
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(Error::Init)?,
        );
        let (requests, request_rx) = bounded(64);
        let shared = Arc::clone(&queue.shared);
        let thread_wake = Arc::clone(&wake);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&mut reader, &queue, &thread_wake, &request_rx))
            .map_err(Error::Thread)?;
        Ok(Threaded { thread: Some(thread), wake, requests, events, shared })
    }
}

fn run(reader: &mut impl Reader, queue: &Queue, wake: &EventFd, requests: &Receiver<Request>) {
    loop {
        let (kernel_ready, wake_ready) = {
            let mut fds =
                [PollFd::new(reader.fd(), PollFlags::POLLIN), PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if kernel_ready || wake_ready {
            reader.read_all(queue);
        }
        if wake_ready {
            let _ = wake.read();
            for request in requests.try_iter() {
                match request {
                    Request::Sync(reply) => {
                        reader.retry(queue);
                        let _ = reply.send(());
                    }
                    Request::Files(files) => reader.watch_files(&files, queue),
                    Request::Rules(rules, changed) => reader.rules(*rules, &changed, queue),
                    Request::Stop => return,
                }
            }
        }
    }
}

impl Source for Threaded {
    fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn sync(&mut self, timeout: Duration) -> bool {
        let (tx, rx) = bounded(1);
        if self.requests.send(Request::Sync(tx)).is_err() {
            return false;
        }
        let _ = self.wake.write(1);
        rx.recv_timeout(timeout).is_ok()
    }

    fn drain(&mut self, into: &mut Vec<Event>) {
        into.extend(self.events.try_iter());
    }

    fn watch_files(&mut self, files: &[Linked]) {
        if self.requests.send(Request::Files(files.to_vec())).is_ok() {
            let _ = self.wake.write(1);
        }
    }

    fn rules(&mut self, rules: &Matcher, changed: &[Vec<u8>]) {
        if self.requests.send(Request::Rules(Box::new(rules.clone()), changed.to_vec())).is_ok() {
            let _ = self.wake.write(1);
        }
    }
}

impl Drop for Threaded {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Stop);
        let _ = self.wake.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
