//! The control FIFO `<store>/ctl`: created private (0600), checked before
//! use, and read by a listener thread that never blocks the sampler.
//!
//! The listener opens the FIFO read-write, so it holds a write end itself:
//! the FIFO never reports end-of-file when a client goes away, and poll
//! never spins on a writer-less FIFO (pipe(7), fifo(7)). Each line is a
//! request (see [`super::wire`]); it is answered by the `answer` function
//! the monitor supplies, and the reply is written to the client's reply
//! FIFO with a deadline, so a client that stops reading cannot stall the
//! listener for long.

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

/// How long a reply may take to write before the client is given up.
const REPLY_DEADLINE: Duration = Duration::from_secs(5);

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

/// Run the listener on the current thread: read request lines from `fd`
/// forever, answer each with `answer`, and deliver replies. `answer`
/// receives the command bytes and whether a client waits for the reply.
/// `busy` is raised while input is being handled and lowered once every
/// reply to it has been written. A reply that cannot be written is given
/// up (the client times out) and described to `report`.
pub fn listen(
    fd: OwnedFd,
    busy: &AtomicBool,
    mut answer: impl FnMut(&[u8], bool) -> Reply,
    mut report: impl FnMut(String),
) {
    let mut buf: Vec<u8> = Vec::with_capacity(2 * wire::MAX_REQUEST);
    let mut chunk = vec![0u8; 65536];
    let mut discarding = false;
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        let n = match nix::unistd::read(&fd, &mut chunk) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(_) => return,
        };
        busy.store(true, Ordering::Release);
        buf.extend_from_slice(&chunk[..n]);
        while let Some(newline) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=newline).collect();
            if std::mem::take(&mut discarding) {
                continue;
            }
            handle(&line[..line.len() - 1], &mut answer, &mut report);
        }
        if buf.len() > wire::MAX_REQUEST + MAX_LINE {
            // An over-long line: answer it once (the parser rejects it by
            // length) and drop the rest of it up to its newline.
            let head: Vec<u8> = buf.drain(..).take(MAX_LINE + 1).collect();
            answer(&head, false);
            discarding = true;
        }
        busy.store(false, Ordering::Release);
    }
}

fn handle(line: &[u8], answer: &mut impl FnMut(&[u8], bool) -> Reply, report: &mut impl FnMut(String)) {
    let request = wire::parse_request(line);
    let Some(reply_to) = request.reply_to else {
        answer(request.command, false);
        return;
    };
    let path = crate::tree::as_path(reply_to);
    let reply_fd = open_reply(path);
    let reply = answer(request.command, reply_fd.is_some());
    if let Some(fd) = reply_fd {
        let written = crate::failpoint::check("control.reply")
            .and_then(|()| write_all_by(&fd, &wire::encode_reply(&reply), Instant::now() + REPLY_DEADLINE));
        if let Err(e) = written {
            let path = crate::render::human::sanitize(reply_to);
            report(format!("cannot write the reply to {path}: {e}"));
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

/// Write all of `bytes` to a non-blocking fd, waiting for room until
/// `deadline`.
fn write_all_by(fd: &OwnedFd, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EAGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}
