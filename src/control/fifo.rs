//! The control FIFO `<store>/ctl`: created private (0600), checked before
//! use, and read by a listener thread that never blocks the sampler.
//!
//! The listener opens the FIFO read-write, so it holds a write end itself:
//! the FIFO never reports end-of-file when a client goes away, and poll
//! never spins on a writer-less FIFO (pipe(7), fifo(7)). Each line is a
//! request (see [`super::wire`]); it is answered by the `answer` function
//! the monitor supplies, and the reply is written to the client's reply
//! FIFO without blocking: a client that stops reading never stalls the
//! listener or the other clients, and is given up after [`REPLY_DEADLINE`].

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;

use super::MAX_LINE;
use super::wire::{self, Reply};
use crate::fault::{Fault, ReplyLoss};

/// Errors setting up the FIFO.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path exists and is not a FIFO we may use.
    #[error("control FIFO {path} is unusable: {why}")]
    Unusable {
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The FIFO could not be created or opened.
    #[error("cannot open control FIFO {path}")]
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Create `path` as a FIFO (0600) if it is missing, refuse it when it is
/// not a FIFO, is a symlink or belongs to another user, and open it
/// read-write and non-blocking.
///
/// # Errors
/// [`Error::Unusable`] or [`Error::Open`].
pub fn open_or_create(path: &Path) -> Result<OwnedFd, Error> {
    let open_err = |source: io::Error| Error::Open { path: path.to_path_buf(), source };
    match nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(open_err(errno.into())),
    }
    let unusable = |why| Error::Unusable { path: path.to_path_buf(), why };
    let meta = std::fs::symlink_metadata(path).map_err(open_err)?;
    if meta.file_type().is_symlink() {
        return Err(unusable("it is a symlink"));
    }
    if !meta.file_type().is_fifo() {
        return Err(unusable("it exists and is not a FIFO"));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(unusable("it belongs to another user"));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(open_err)?;
    }
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|errno| open_err(errno.into()))?;
    // Make sure we opened what we checked (no swap between the two calls).
    let opened = nix::sys::stat::fstat(&fd).map_err(|errno| open_err(errno.into()))?;
    if opened.st_ino != meta.ino() || opened.st_dev != meta.dev() {
        return Err(unusable("it was replaced while being opened"));
    }
    Ok(fd)
}

/// How long a client may leave its reply unread (no byte taken) before it
/// is given up.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(2);

/// Most replies held for clients at once; past it the oldest is given up.
const MAX_PENDING: usize = 64;

/// A reply not yet fully written to its client's FIFO.
struct Pending {
    fd: OwnedFd,
    frame: Vec<u8>,
    written: usize,
    /// Given up at this instant unless the client takes a byte before.
    deadline: Instant,
    /// The reply FIFO's path.
    reply_to: Vec<u8>,
}

impl Pending {
    /// Write what the FIFO takes without blocking: `Ok(true)` once the
    /// whole frame is out. Any progress moves the deadline on.
    fn write(&mut self) -> io::Result<bool> {
        while self.written < self.frame.len() {
            match nix::unistd::write(&self.fd, &self.frame[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    self.deadline = Instant::now() + REPLY_DEADLINE;
                }
                Err(Errno::EAGAIN) => return Ok(false),
                Err(Errno::EINTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(true)
    }

    fn give_up(self, why: ReplyLoss, report: &mut impl FnMut(Fault)) {
        report(Fault::ReplyDropped { to: self.reply_to, why });
    }
}

/// Run the listener on the current thread: read request lines from `fd`
/// forever, answer each with `answer`, and deliver replies. `answer`
/// receives the command bytes and whether a client waits for the reply.
///
/// Replies are written without blocking: what a client's FIFO does not take
/// at once is kept and written as the client reads, so one client that
/// does not read never holds up the others. A client that takes nothing
/// for [`REPLY_DEADLINE`] is given up, and so is one whose FIFO fails; each
/// reply given up is described to `report`. `busy` is raised while input
/// is being handled and lowered once every reply is written or given up.
pub fn listen(
    fd: OwnedFd,
    busy: &AtomicBool,
    mut answer: impl FnMut(&[u8], bool) -> Reply,
    mut report: impl FnMut(Fault),
) {
    let mut buf: Vec<u8> = Vec::with_capacity(2 * wire::MAX_REQUEST);
    let mut chunk = vec![0u8; 65536];
    let mut discarding = false;
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        let timeout = pending.iter().map(|p| p.deadline).min().map_or(PollTimeout::NONE, |deadline| {
            // Rounded up, so the wait never ends just short of it.
            let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
        });
        let mut fds = vec![PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        fds.extend(pending.iter().map(|p| PollFd::new(p.fd.as_fd(), PollFlags::POLLOUT)));
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        let mut index = 0;
        pending = pending
            .into_iter()
            .filter_map(|mut p| {
                index += 1;
                if !ready[index] {
                    return Some(p);
                }
                match p.write() {
                    Ok(true) => None,
                    Ok(false) => Some(p),
                    Err(e) => {
                        p.give_up(ReplyLoss::Write(e), &mut report);
                        None
                    }
                }
            })
            .collect();
        let now = Instant::now();
        let (expired, waiting): (Vec<_>, Vec<_>) = pending.into_iter().partition(|p| p.deadline <= now);
        pending = waiting;
        for p in expired {
            p.give_up(ReplyLoss::Unread(REPLY_DEADLINE), &mut report);
        }
        if ready[0] {
            busy.store(true, Ordering::Release);
            let n = match nix::unistd::read(&fd, &mut chunk) {
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR) => 0,
                Err(_) => return,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(newline) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=newline).collect();
                if std::mem::take(&mut discarding) {
                    continue;
                }
                if let Some(reply) = handle(&line[..line.len() - 1], &mut answer, &mut report) {
                    pending.push(reply);
                }
            }
            if buf.len() > wire::MAX_REQUEST + MAX_LINE {
                // An over-long line: answer it once (the parser rejects it
                // by length) and drop the rest of it up to its newline,
                // however many reads that takes.
                let head: Vec<u8> = buf.drain(..).take(MAX_LINE + 1).collect();
                if !std::mem::replace(&mut discarding, true) {
                    answer(&head, false);
                }
            }
            while pending.len() > MAX_PENDING {
                let oldest = pending.remove(0);
                oldest.give_up(ReplyLoss::TooMany, &mut report);
            }
        }
        busy.store(!pending.is_empty(), Ordering::Release);
    }
}

/// Answer one request line; a reply its client has not taken whole yet is
/// returned, to be written as the client reads.
fn handle(
    line: &[u8],
    answer: &mut impl FnMut(&[u8], bool) -> Reply,
    report: &mut impl FnMut(Fault),
) -> Option<Pending> {
    let request = wire::parse_request(line);
    let Some(reply_to) = request.reply_to else {
        answer(request.command, false);
        return None;
    };
    let path = crate::tree::as_path(reply_to);
    let reply_fd = open_reply(path);
    let reply = answer(request.command, reply_fd.is_some());
    let fd = reply_fd?;
    let mut pending = Pending {
        fd,
        frame: wire::encode_reply(&reply),
        written: 0,
        deadline: Instant::now() + REPLY_DEADLINE,
        reply_to: reply_to.to_vec(),
    };
    let written = crate::failpoint::check("control.reply").and_then(|()| pending.write());
    match written {
        Ok(true) => None,
        Ok(false) => Some(pending),
        Err(e) => {
            pending.give_up(ReplyLoss::Write(e), report);
            None
        }
    }
}

/// Open a client's reply FIFO for writing, refusing anything that is not a
/// FIFO (a symlink planted there, a regular file).
fn open_reply(path: &Path) -> Option<OwnedFd> {
    if !path.is_absolute() {
        return None;
    }
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_fifo() {
        return None;
    }
    let fd = nix::fcntl::open(
        path,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .ok()?;
    let opened = nix::sys::stat::fstat(&fd).ok()?;
    (opened.st_ino == meta.ino() && opened.st_dev == meta.dev()).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::mpsc;

    /// A listener on a fresh control FIFO whose every reply is `reply`;
    /// what it gives up comes out of the receiver. The thread runs until
    /// the test process ends.
    fn listener(dir: &Path, reply: String) -> (PathBuf, mpsc::Receiver<Fault>) {
        let ctl = dir.join("ctl");
        let fd = open_or_create(&ctl).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let busy = AtomicBool::new(false);
            listen(fd, &busy, |_, _| Reply::ok(reply.clone()), |given_up| tx.send(given_up).unwrap());
        });
        (ctl, rx)
    }

    /// A reply FIFO held open read-write (so the listener may open it),
    /// and the request naming it sent.
    fn ask(dir: &Path, ctl: &Path, name: &str) -> std::fs::File {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).unwrap();
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut ctl = std::fs::OpenOptions::new().write(true).open(ctl).unwrap();
        ctl.write_all(&wire::encode_request(path.as_os_str().as_encoded_bytes(), b"history 1").unwrap())
            .unwrap();
        fifo
    }

    #[test]
    fn a_slow_reader_gets_its_whole_reply_however_long_it_takes() {
        let dir = tempfile::tempdir().unwrap();
        let text = "x".repeat(300_000) + "\n";
        let (ctl, given_up) = listener(dir.path(), text.clone());
        let mut fifo = ask(dir.path(), &ctl, "slow");
        // Well over the deadline in all, but a little at a time.
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 65536];
        let started = Instant::now();
        while wire::decode_reply(&got).unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(20), "the reply stalled at {} bytes", got.len());
            std::thread::sleep(REPLY_DEADLINE / 2);
            match fifo.read(&mut chunk) {
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(started.elapsed() > REPLY_DEADLINE, "the test read slower than the deadline");
        assert_eq!(wire::decode_reply(&got).unwrap(), Some(Reply::ok(text)));
        assert!(given_up.try_recv().is_err(), "nothing was given up");
    }

    #[test]
    fn replies_past_the_limit_are_given_up_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (ctl, given_up) = listener(dir.path(), "y".repeat(100_000));
        let started = Instant::now();
        let held: Vec<_> = (0..MAX_PENDING + 5).map(|i| ask(dir.path(), &ctl, &format!("r{i}"))).collect();
        for _ in 0..5 {
            let why = given_up.recv_timeout(REPLY_DEADLINE).unwrap();
            assert!(matches!(why, Fault::ReplyDropped { why: ReplyLoss::TooMany, .. }), "{why:?}");
        }
        assert!(started.elapsed() < REPLY_DEADLINE, "{:?}", started.elapsed());
        // The others are given up at their deadline.
        for _ in 0..MAX_PENDING {
            let why = given_up.recv_timeout(REPLY_DEADLINE * 3).unwrap();
            let unread = |why: &Fault| matches!(why, Fault::ReplyDropped { why: ReplyLoss::Unread(after), .. } if *after == REPLY_DEADLINE);
            assert!(unread(&why), "{why:?}");
        }
        drop(held);
    }
}
