//! The monitored process: a handle pinned to `/proc/<pid>` and the
//! identity (pid + start time) that tells it apart from a later process
//! that reuses the PID.
//!
//! Opening `/proc/<pid>` once and reading everything else relative to that
//! directory fd means a sample never reads a different process that took
//! the PID over: once the original exits, reads through the old fd fail with
//! `ESRCH` instead (proc(5)).

pub mod child;
pub mod forks;
pub mod maps;
pub mod probe;
pub mod stats;

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

/// Errors about the target process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such process.
    #[error("no process with PID {pid}")]
    NoSuchProcess {
        /// The PID asked for.
        pid: i32,
    },
    /// The process has exited but not been reaped.
    #[error("process {pid} is a zombie: it has exited and has no working directory")]
    Zombie {
        /// The PID asked for.
        pid: i32,
    },
    /// /proc refused access.
    #[error("no permission to follow process {pid}: cannot open its {what} (run as its owner or as root)")]
    Permission {
        /// The PID asked for.
        pid: i32,
        /// Which /proc entry.
        what: &'static str,
    },
    /// Any other failure reading /proc.
    #[error("cannot read /proc/{pid}/{what}")]
    Proc {
        /// The PID asked for.
        pid: i32,
        /// Which /proc entry.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A process followed by monitord.
#[derive(Debug)]
pub struct Target {
    pid: i32,
    starttime: u64,
    proc_dir: OwnedFd,
}

impl Target {
    /// Pin `/proc/<pid>` and read the process's identity.
    ///
    /// # Errors
    /// [`Error::NoSuchProcess`], [`Error::Zombie`], [`Error::Permission`] or
    /// [`Error::Proc`].
    pub fn open(pid: i32) -> Result<Target, Error> {
        if pid <= 0 {
            return Err(Error::NoSuchProcess { pid });
        }
        let proc_dir = nix::fcntl::open(
            format!("/proc/{pid}").as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| match errno {
            Errno::ENOENT | Errno::ESRCH => Error::NoSuchProcess { pid },
            Errno::EACCES | Errno::EPERM => Error::Permission { pid, what: "/proc directory" },
            other => Error::Proc { pid, what: "", source: other.into() },
        })?;
        let target = Target { pid, starttime: 0, proc_dir };
        let stat = target.read_stat()?;
        if stat.state == 'Z' || stat.state == 'X' {
            return Err(Error::Zombie { pid });
        }
        Ok(Target { starttime: stat.starttime, ..target })
    }

    /// The PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Start time in clock ticks since boot (field 22 of `stat`): with the
    /// PID, the process's identity.
    pub fn starttime(&self) -> u64 {
        self.starttime
    }

    /// Open the process's current working directory as a directory fd.
    ///
    /// # Errors
    /// [`Error::Permission`] when the cwd link cannot be followed,
    /// [`Error::Zombie`]/[`Error::NoSuchProcess`] when the process is gone.
    pub fn open_cwd(&self) -> Result<OwnedFd, Error> {
        openat(
            self.proc_dir.as_fd(),
            "cwd",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| self.map_errno(errno, "cwd"))
    }

    /// Where the working directory is, as the kernel names it now.
    ///
    /// # Errors
    /// As [`Target::open_cwd`].
    pub fn cwd_path(&self) -> Result<PathBuf, Error> {
        nix::fcntl::readlinkat(self.proc_dir.as_fd(), "cwd")
            .map(PathBuf::from)
            .map_err(|errno| self.map_errno(errno, "cwd"))
    }

    /// The identity (device, inode) of the working directory now: compared
    /// with the watched root's to notice a `chdir`.
    ///
    /// # Errors
    /// As [`Target::open_cwd`].
    pub fn cwd_identity(&self) -> Result<(u64, u64), Error> {
        nix::sys::stat::fstatat(self.proc_dir.as_fd(), "cwd", nix::fcntl::AtFlags::empty())
            .map(|st| (st.st_dev, st.st_ino))
            .map_err(|errno| self.map_errno(errno, "cwd"))
    }

    /// The process's filesystem identity (uid, gid, groups) now.
    pub fn creds(&self) -> Option<crate::credentials::Creds> {
        crate::credentials::Creds::parse_status(&self.read_proc_file("status").ok()?)
    }

    /// A second handle on the same process (the pinned directory is
    /// duplicated, so it can never name a later process either).
    ///
    /// # Errors
    /// [`Error::Proc`] when the fd cannot be duplicated (EMFILE).
    pub fn try_clone(&self) -> Result<Target, Error> {
        let proc_dir =
            self.proc_dir.try_clone().map_err(|source| Error::Proc { pid: self.pid, what: "", source })?;
        Ok(Target { pid: self.pid, starttime: self.starttime, proc_dir })
    }

    /// How to learn that this process has exited: a pidfd (pidfd_open(2),
    /// Linux 5.3), readable once it exits; or, where the call does not
    /// exist (older kernels, and valgrind, which answers ENOSYS for calls
    /// it does not know) or refuses this PID, a second handle to check
    /// every so often. `None` when the process is already gone: the next
    /// sample notices that.
    pub fn exit_notice(&self) -> Option<ExitNotice> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
        // no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        let notice = match std::os::fd::RawFd::try_from(fd).ok().filter(|&fd| fd >= 0) {
            // SAFETY: the kernel just returned this fd to us and nobody else owns it.
            Some(fd) => ExitNotice::Pidfd(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }),
            None if Errno::last() == Errno::ESRCH => return None,
            None => ExitNotice::Poll(self.try_clone().ok()?),
        };
        // The PID might have been reused before the call: a pidfd is ours
        // only if the process pinned by `proc_dir` is still alive.
        self.is_alive().then_some(notice)
    }

    /// Whether this very process (not a reuse of its PID) is still alive
    /// and not a zombie.
    pub fn is_alive(&self) -> bool {
        matches!(self.read_stat(), Ok(stat) if stat.starttime == self.starttime && stat.state != 'Z' && stat.state != 'X')
    }

    /// Append the content of `/proc/<pid>/<name>` to `buf`, read through the
    /// pinned directory (never a later process with the same PID). Reuses
    /// `buf`'s capacity: reserve before calling to read in few syscalls.
    ///
    /// # Errors
    /// [`Error::NoSuchProcess`]/[`Error::Zombie`] when the process is gone,
    /// [`Error::Permission`] or [`Error::Proc`].
    pub fn read_into(&self, name: &'static str, buf: &mut Vec<u8>) -> Result<(), Error> {
        let fd = openat(self.proc_dir.as_fd(), name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|errno| self.map_errno(errno, name))?;
        File::from(fd).read_to_end(buf).map_err(|source| match source.raw_os_error() {
            Some(code) => self.map_errno(Errno::from_raw(code), name),
            None => Error::Proc { pid: self.pid, what: name, source },
        })?;
        Ok(())
    }

    /// Open the directory `/proc/<pid>/<name>` (such as `fd`) through the
    /// pinned directory.
    ///
    /// # Errors
    /// As [`Target::read_into`].
    pub fn open_dir(&self, name: &'static str) -> Result<OwnedFd, Error> {
        openat(
            self.proc_dir.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| self.map_errno(errno, name))
    }

    fn read_proc_file(&self, name: &'static str) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::with_capacity(512);
        self.read_into(name, &mut buf)?;
        Ok(buf)
    }

    fn read_stat(&self) -> Result<Stat, Error> {
        let raw = self.read_proc_file("stat")?;
        parse_stat(&raw).ok_or_else(|| Error::Proc {
            pid: self.pid,
            what: "stat",
            source: io::Error::new(io::ErrorKind::InvalidData, "unexpected format"),
        })
    }

    fn map_errno(&self, errno: Errno, what: &'static str) -> Error {
        let pid = self.pid;
        match errno {
            Errno::ESRCH | Errno::ENOENT => match self.read_state() {
                Some('Z') | Some('X') => Error::Zombie { pid },
                _ => Error::NoSuchProcess { pid },
            },
            Errno::EACCES | Errno::EPERM => Error::Permission { pid, what },
            other => Error::Proc { pid, what, source: other.into() },
        }
    }

    fn read_state(&self) -> Option<char> {
        let fd =
            openat(self.proc_dir.as_fd(), "stat", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
        let mut buf = Vec::new();
        File::from(fd).read_to_end(&mut buf).ok()?;
        parse_stat(&buf).map(|s| s.state)
    }
}

/// How a watcher learns that a followed process has exited (see
/// [`Target::exit_notice`]).
#[derive(Debug)]
pub enum ExitNotice {
    /// A pidfd: it becomes readable when the process exits.
    Pidfd(OwnedFd),
    /// No pidfd: ask [`Target::is_alive`] every so often.
    Poll(Target),
}

/// Whether `pid` is `ancestor` or descends from it (following parent PIDs
/// in `/proc`). False when either is 0 or `pid` is gone.
pub fn is_descendant(pid: i32, ancestor: i32) -> bool {
    if ancestor <= 0 || pid <= 0 {
        return false;
    }
    let mut current = pid;
    for _ in 0..256 {
        if current == ancestor {
            return true;
        }
        if current <= 1 {
            return false;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{current}/stat")) else { return false };
        match parse_stat(&raw) {
            Some(stat) => current = stat.ppid,
            None => return false,
        }
    }
    false
}

/// The fields of `/proc/<pid>/stat` monitord uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: R, S, D, Z, T, t, X, I …
    pub state: char,
    /// Field 4: the parent's PID.
    pub ppid: i32,
    /// Field 22: start time in clock ticks after boot.
    pub starttime: u64,
}

/// The fields of a `/proc/<pid>/stat` line from field 3 (the state) on.
/// The command name (field 2) may hold spaces and parentheses, so fields
/// are counted from the last `)`. Field N is at index N - 3.
pub fn stat_fields(raw: &[u8]) -> Option<impl Iterator<Item = &str>> {
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(raw.get(close + 1..)?).ok()?;
    Some(rest.split_ascii_whitespace())
}

/// The command name of a `/proc/<pid>/stat` line (field 2, between the
/// first `(` and the last `)`).
pub fn stat_comm(raw: &[u8]) -> Option<&[u8]> {
    let open = raw.iter().position(|&b| b == b'(')?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    raw.get(open + 1..close)
}

/// Parse `/proc/<pid>/stat` (see [`stat_fields`]).
pub fn parse_stat(raw: &[u8]) -> Option<Stat> {
    let mut fields = stat_fields(raw)?;
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // After the parent (field 4) come fields 5..; starttime is field 22.
    let starttime = fields.nth(22 - 5)?.parse().ok()?;
    Some(Stat { state, ppid, starttime })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_are_found_through_parent_pids() {
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep").arg("10").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(is_descendant(pid, me));
        assert!(is_descendant(me, me));
        assert!(!is_descendant(me, pid), "a parent does not descend from its child");
        assert!(!is_descendant(pid, 0));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_descendant(pid, me), "a reaped process is nobody's descendant");
    }

    #[test]
    fn stat_with_parentheses_in_the_name_parses() {
        let raw = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 0 0 0\n";
        assert_eq!(parse_stat(raw), Some(Stat { state: 'S', ppid: 1, starttime: 987654 }));
        assert_eq!(stat_comm(raw), Some(&b"a) b (c)"[..]));
        assert_eq!(stat_comm(b"garbage"), None);
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(parse_stat(b"42 (x) S 1 2"), None);
        assert_eq!(parse_stat(b""), None);
    }

    #[test]
    fn own_process_opens_and_is_alive() {
        let me = Target::open(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        assert!(me.starttime() > 0);
        assert_eq!(me.cwd_path().unwrap(), std::env::current_dir().unwrap());
    }

    #[test]
    fn missing_pid_is_reported() {
        assert!(matches!(Target::open(0), Err(Error::NoSuchProcess { pid: 0 })));
        assert!(matches!(Target::open(4_194_304 + 1), Err(Error::NoSuchProcess { .. })));
    }
}
