//! `monitord -- COMMAND`: start a command held at the door, so the
//! baseline is taken before its first instruction, then let it run, and
//! collect how it ended (`wait4`: status and resource use, by
//! [`crate::proc::child::reap`]).
//!
//! ```text
//! monitord ── fork ──▶ child: (stdio) read 1 byte from the go pipe ── execvpe
//!    │ baseline of the child's cwd (= ours)        ▲
//!    └──────────── write 1 byte ───────────────────┘
//! ```
//!
//! [`Launched::fork`] must run before any thread exists. The command gets
//! the environment it is given, which is the user's: a daemon sanitises its
//! own environment when it detaches, but the command it runs is the user's
//! program and sees everything the user set (`LD_PRELOAD` included).

use std::ffi::{CString, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::unistd::{ForkResult, fork};

use crate::journal::record::Exit;

/// Errors starting the command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument or an environment variable holds a NUL byte.
    #[error("the command line or its environment holds a NUL byte")]
    Nul,
    /// No command was given.
    #[error("no command given after --")]
    Empty,
    /// A pipe or fork failed.
    #[error("cannot start the command: {what} failed")]
    Sys {
        /// Which call.
        what: &'static str,
        /// Why.
        #[source]
        source: nix::Error,
    },
}

/// A forked command waiting for the go.
#[derive(Debug)]
pub struct Launched {
    pid: i32,
    go: OwnedFd,
}

impl Launched {
    /// Fork a child that will run `command` in the current directory, with
    /// the environment `env`, once [`Launched::go`] is called. `PATH` is
    /// searched as the calling process's environment sets it.
    ///
    /// # Errors
    /// [`Error`] when the command line is unusable or fork fails.
    pub fn fork(command: &[OsString], env: &[(OsString, OsString)]) -> Result<Launched, Error> {
        let argv: Vec<CString> = command
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| Error::Nul))
            .collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(name, value)| {
                CString::new([name.as_bytes(), b"=", value.as_bytes()].concat()).map_err(|_| Error::Nul)
            })
            .collect::<Result<_, _>>()?;
        let Some(program) = argv.first().cloned() else { return Err(Error::Empty) };
        let (wait_end, go) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|source| Error::Sys { what: "pipe2", source })?;
        // SAFETY: no other thread exists yet (the caller forks first thing),
        // so the child may run ordinary code until it execs.
        match unsafe { fork() }.map_err(|source| Error::Sys { what: "fork", source })? {
            ForkResult::Parent { child } => {
                drop(wait_end);
                Ok(Launched { pid: child.as_raw(), go })
            }
            ForkResult::Child => {
                drop(go);
                let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
                // The go: "g", then the path of a log for stdout and stderr
                // (empty: keep ours), then end of file.
                let mut message = Vec::new();
                let _ = std::fs::File::from(wait_end).read_to_end(&mut message);
                let Some(log) = message.strip_prefix(b"g") else {
                    // monitord gave up before the go: never run the command.
                    // SAFETY: _exit skips the parent's atexit handlers and buffers.
                    unsafe { libc::_exit(127) };
                };
                if !log.is_empty() {
                    let opened = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
                        .open(std::ffi::OsStr::from_bytes(log));
                    match opened {
                        Ok(file) => redirect(file.as_raw_fd()),
                        // SAFETY: as above.
                        Err(_) => unsafe { libc::_exit(127) },
                    }
                }
                let err = nix::unistd::execvpe(&program, &argv, &envp).err();
                let why = format!(
                    "monitord: cannot run {}: {}",
                    program.to_string_lossy(),
                    err.map_or_else(String::new, |e| e.desc().to_string())
                );
                crate::log::to_stderr(crate::log::Level::Error, &why);
                // SAFETY: as above.
                unsafe { libc::_exit(127) }
            }
        }
    }

    /// The command's PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Let the command run; with `log`, its stdin is /dev/null and its
    /// stdout and stderr are appended to `log` (created 0600).
    pub fn go(self, log: Option<&Path>) {
        let mut message = b"g".to_vec();
        if let Some(path) = log {
            message.extend_from_slice(path.as_os_str().as_bytes());
        }
        let _ = std::fs::File::from(self.go).write_all(&message);
    }
}

/// stdin from /dev/null, stdout and stderr to `log`.
fn redirect(log: i32) {
    if let Ok(null) = nix::fcntl::open("/dev/null", OFlag::O_RDONLY, nix::sys::stat::Mode::empty()) {
        // SAFETY: dup2 onto the standard descriptors of this child.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
    // SAFETY: as above.
    unsafe {
        libc::dup2(log, 1);
        libc::dup2(log, 2);
    }
}

/// The exit status a shell would report for `exit`: the code, or 128 + N
/// for a signal.
pub fn shell_status(exit: &Exit) -> u8 {
    match (exit.code, exit.signal) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_as_a_shell_reports_them() {
        assert_eq!(shell_status(&Exit { code: Some(3), signal: None, rusage: None }), 3);
        assert_eq!(shell_status(&Exit { code: None, signal: Some(9), rusage: None }), 137);
        assert_eq!(shell_status(&Exit::default()), 1);
    }
}
