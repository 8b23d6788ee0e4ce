//! `monitord ctl`: send one command to a running monitor and wait for its
//! reply on a private FIFO.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;

use super::wire::{self, Reply};

/// Why no reply came.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing listens on the control FIFO (exit status 3).
    #[error("no monitord is listening on {0}")]
    NoDaemon(PathBuf),
    /// The monitor exited before it replied (exit status 3).
    #[error("monitord on {0} exited before it replied")]
    Gone(PathBuf),
    /// The monitor did not answer in time (exit status 3).
    #[error("no reply from monitord on {path} within {timeout:?}")]
    Timeout {
        /// The control FIFO.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// The control FIFO belongs to another user, and we are not root.
    #[error("{path} belongs to uid {uid}: only that user or root may control it")]
    NotAllowed {
        /// The control FIFO.
        path: PathBuf,
        /// Its owner, the monitor's user.
        uid: u32,
    },
    /// The command cannot be sent as one atomic request.
    #[error("the command is too long to send")]
    TooLong,
    /// Local set-up failed (temp directory, reply FIFO).
    #[error("cannot {what}")]
    Local {
        /// What failed.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The reply was not a reply.
    #[error(transparent)]
    BadReply(#[from] wire::BadReply),
}

/// A private directory holding the reply FIFO; removed on drop.
struct ReplyDir {
    dir: PathBuf,
    fifo: PathBuf,
}

impl ReplyDir {
    /// Make the directory and the FIFO. With `owner` (root talking to the
    /// monitor of another user) the FIFO is given to that user and the
    /// directory may be searched by others, in a place every user can
    /// reach: the monitor opens the FIFO with its own rights.
    fn create(owner: Option<(u32, u32)>) -> Result<ReplyDir, Error> {
        let base = std::env::temp_dir();
        let unusable = base.as_os_str().as_encoded_bytes().iter().any(u8::is_ascii_whitespace)
            || (owner.is_some() && !searchable_by_all(&base));
        let base = if unusable { PathBuf::from("/tmp") } else { base };
        let local = |what: &str| {
            let what = what.to_string();
            move |errno: Errno| Error::Local { what, source: errno.into() }
        };
        let dir = nix::unistd::mkdtemp(&base.join("monitord-ctl-XXXXXX"))
            .map_err(local(&format!("create a private directory in {}", base.display())))?;
        let fifo = dir.join("reply");
        let made = ReplyDir { dir, fifo };
        nix::unistd::mkfifo(&made.fifo, Mode::from_bits_truncate(0o600))
            .map_err(local(&format!("create reply FIFO {}", made.fifo.display())))?;
        if let Some((uid, gid)) = owner {
            let (uid, gid) = (Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)));
            nix::unistd::chown(&made.fifo, uid, gid)
                .map_err(local(&format!("give reply FIFO {} to the monitor's user", made.fifo.display())))?;
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                &made.dir,
                Mode::from_bits_truncate(0o711),
                nix::sys::stat::FchmodatFlags::NoFollowSymlink,
            )
            .map_err(local(&format!("open {} to the monitor's user", made.dir.display())))?;
        }
        Ok(made)
    }
}

/// Whether every user may search `dir` and each directory above it.
fn searchable_by_all(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    dir.is_absolute()
        && dir.ancestors().all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

impl Drop for ReplyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.fifo);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Send `command` to the monitor whose control FIFO is `ctl` and wait up to
/// `timeout` for the reply.
///
/// # Errors
/// [`Error::NoDaemon`] / [`Error::Timeout`] when nobody answers; the others
/// for local failures.
pub fn request(ctl: &Path, command: &str, timeout: Duration) -> Result<Reply, Error> {
    let deadline = Instant::now() + timeout;
    // The monitor writes the reply with its own rights: when root talks to
    // the monitor of another user, that user must be able to open the FIFO.
    let me = nix::unistd::geteuid();
    let owner = std::fs::symlink_metadata(ctl)
        .ok()
        .map(|m| (std::os::unix::fs::MetadataExt::uid(&m), std::os::unix::fs::MetadataExt::gid(&m)))
        .filter(|&(uid, _)| me.is_root() && uid != me.as_raw());
    let reply_dir = ReplyDir::create(owner)?;
    // Read-write: we hold a write end ourselves, so the reply FIFO never
    // reads as end-of-file before the monitor has written.
    let reply_fd = nix::fcntl::open(
        &reply_dir.fifo,
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| Error::Local { what: "open the reply FIFO".into(), source: errno.into() })?;
    let line = wire::encode_request(reply_dir.fifo.as_os_str().as_encoded_bytes(), command.as_bytes())
        .ok_or(Error::TooLong)?;
    // The monitor holds its pid file locked while it runs: when it was
    // running as the request went out, its end is noticed at once rather
    // than at the timeout.
    let store = ctl.parent().map(Path::to_path_buf);
    let watched = store.filter(|dir| crate::store::is_running(dir));
    send(ctl, &line)?;
    read_reply(&reply_fd, ctl, timeout, deadline, watched.as_deref())
}

fn send(ctl: &Path, line: &[u8]) -> Result<(), Error> {
    // Non-blocking open for writing fails with ENXIO when no process has the
    // FIFO open for reading: nobody is listening.
    let meta = std::fs::symlink_metadata(ctl).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => {
            Error::Local { what: format!("reach {}", ctl.display()), source: e }
        }
        _ => Error::NoDaemon(ctl.to_path_buf()),
    })?;
    if !std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) {
        return Err(Error::NoDaemon(ctl.to_path_buf()));
    }
    let fd = nix::fcntl::open(
        ctl,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|errno| match errno {
        Errno::ENXIO | Errno::ENOENT => Error::NoDaemon(ctl.to_path_buf()),
        Errno::EACCES if std::os::unix::fs::MetadataExt::uid(&meta) != nix::unistd::geteuid().as_raw() => {
            Error::NotAllowed { path: ctl.to_path_buf(), uid: std::os::unix::fs::MetadataExt::uid(&meta) }
        }
        other => Error::Local { what: format!("open {}", ctl.display()), source: other.into() },
    })?;
    // One write of at most PIPE_BUF bytes is atomic: requests never mix.
    match nix::unistd::write(&fd, line) {
        Ok(n) if n == line.len() => Ok(()),
        Ok(_) | Err(Errno::EAGAIN) => {
            Err(Error::Timeout { path: ctl.to_path_buf(), timeout: Duration::ZERO })
        }
        Err(errno) => Err(Error::Local { what: format!("write to {}", ctl.display()), source: errno.into() }),
    }
}

/// How often a wait for a reply looks whether the monitor still runs.
const ALIVE_CHECK: Duration = Duration::from_millis(200);

fn read_reply(
    fd: &OwnedFd,
    ctl: &Path,
    timeout: Duration,
    deadline: Instant,
    store: Option<&Path>,
) -> Result<Reply, Error> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        if let Some(reply) = wire::decode_reply(&buf)? {
            return Ok(reply);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout { path: ctl.to_path_buf(), timeout });
        }
        let ms = u16::try_from(left.min(ALIVE_CHECK).as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => {
                if store.is_some_and(|dir| !crate::store::is_running(dir)) {
                    // A reply written just before the end is still read.
                    match nix::unistd::read(fd, &mut chunk) {
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(_) => return Err(Error::Gone(ctl.to_path_buf())),
                    }
                    if wire::decode_reply(&buf)?.is_none() {
                        return Err(Error::Gone(ctl.to_path_buf()));
                    }
                }
                continue;
            }
            Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(errno) => {
                return Err(Error::Local { what: "wait for the reply".into(), source: errno.into() });
            }
        }
        match nix::unistd::read(fd, &mut chunk) {
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(errno) => return Err(Error::Local { what: "read the reply".into(), source: errno.into() }),
        }
    }
}
