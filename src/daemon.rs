//! Daemon mode (`-d`): detach from the terminal following the SysV steps of
//! daemon(7), and tell the launching process whether start-up worked.
//!
//! ```text
//! launcher ──pipe──┐
//!   fork ──▶ child: setsid, fork ──▶ daemon: close fds, reset signals,
//!   │              _exit(0)                  umask 077, chdir /, stdio on
//!   │                                        /dev/null, then start-up …
//!   └── waits on the pipe: "ok" → exit 0; "err <reason>" or EOF → exit 1
//! ```
//!
//! [`detach`] must run before any thread exists (fork copies only the
//! calling thread). The daemon does all of its start-up (target, store, pid
//! file, ring, FIFO, baseline) after detaching and reports the outcome
//! through [`Ready`], so every start-up error reaches the launcher's stderr
//! and no daemon is left behind when one happens.
//!
//! The daemon also sanitises its environment (daemon(7), step 4): it keeps
//! only the variables [`keeps_variable`] allows. A command started with
//! `-d -- COMMAND` is not the daemon: it is given the launcher's
//! environment as it was (see [`crate::launch`]).

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, signal};
use nix::sys::stat::Mode;
use nix::unistd::{ForkResult, fork, setsid};

/// Errors while detaching (seen by the launcher).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call of the detaching sequence failed.
    #[error("cannot start the daemon: {what} failed")]
    Sys {
        /// Which step.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The daemon reported a start-up error (its own words).
    #[error("{0}")]
    Failed(String),
    /// The daemon went away without a word.
    #[error("the daemon exited during start-up without saying why")]
    Vanished,
}

/// Where [`detach`] returns.
#[derive(Debug)]
pub enum Detached {
    /// In the launching process, after the daemon said it is up.
    Launcher,
    /// In the daemon: report start-up through this.
    Daemon(Ready),
}

/// The daemon's end of the start-up pipe.
#[derive(Debug)]
pub struct Ready {
    fd: OwnedFd,
}

impl Ready {
    /// Tell the launcher the daemon is up (it then exits 0).
    pub fn ok(self) {
        self.send(b"ok\n");
    }

    /// Tell the launcher start-up failed and why (it prints the reason and
    /// exits 1).
    pub fn fail(self, reason: &str) {
        let one_line: String = reason.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
        self.send(format!("err {one_line}\n").as_bytes());
    }

    fn send(self, bytes: &[u8]) {
        let mut file = std::fs::File::from(self.fd);
        let _ = file.write_all(bytes);
    }
}

fn sys(what: &'static str) -> impl Fn(nix::errno::Errno) -> Error {
    move |errno| Error::Sys { what, source: errno.into() }
}

/// Detach. Returns [`Detached::Launcher`] in the original process once the
/// daemon is up, and [`Detached::Daemon`] in the daemon.
///
/// # Errors
/// In the launcher: [`Error::Failed`] with the daemon's reason, or
/// [`Error::Vanished`]; [`Error::Sys`] when a fork or pipe fails.
pub fn detach() -> Result<Detached, Error> {
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    // SAFETY: no other thread exists yet (the caller runs this first), so
    // the child is a faithful copy and may run ordinary code.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Parent { child } => {
            drop(write_end);
            let outcome = wait_for_word(read_end);
            // The first child exits right after the second fork.
            let _ = nix::sys::wait::waitpid(child, None);
            return outcome.map(|()| Detached::Launcher);
        }
        ForkResult::Child => {}
    }
    drop(read_end);
    let ready = Ready { fd: write_end };
    if let Err(errno) = setsid() {
        ready.fail(&format!("cannot start the daemon: setsid failed: {errno}"));
        // SAFETY: _exit ends this child without running the parent's atexit
        // handlers or flushing its copied stdio buffers.
        unsafe { libc::_exit(1) };
    }
    // SAFETY: still single-threaded (see above).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => {
            // SAFETY: as above; the grandchild carries on.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Child) => {}
        Err(errno) => {
            ready.fail(&format!("cannot start the daemon: second fork failed: {errno}"));
            // SAFETY: as above.
            unsafe { libc::_exit(1) };
        }
    }
    let ready = match become_daemon(ready) {
        Ok(ready) => ready,
        Err((ready, e)) => {
            ready.fail(&e.to_string());
            // SAFETY: as above.
            unsafe { libc::_exit(1) };
        }
    };
    Ok(Detached::Daemon(ready))
}

/// Read the daemon's one-line report.
fn wait_for_word(read_end: OwnedFd) -> Result<(), Error> {
    let mut text = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut text);
    let line = text.lines().next().unwrap_or("");
    match line.split_once(' ').map_or((line, ""), |(a, b)| (a, b)) {
        ("ok", _) => Ok(()),
        ("err", reason) => Err(Error::Failed(reason.to_string())),
        _ => Err(Error::Vanished),
    }
}

/// The daemon(7) steps after the double fork: close inherited fds, reset
/// signal handlers and mask, environment, umask, cwd and stdio.
fn become_daemon(ready: Ready) -> Result<Ready, (Ready, Error)> {
    let ready = match keep_only(ready) {
        Ok(ready) => ready,
        Err(e) => return Err((Ready { fd: e.0 }, e.1)),
    };
    reset_signals();
    sanitize_environment();
    nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
    if let Err(errno) = nix::unistd::chdir("/") {
        return Err((ready, sys("chdir /")(errno)));
    }
    if let Err(e) = stdio_to_dev_null() {
        return Err((ready, e));
    }
    Ok(ready)
}

/// Close every fd but 0, 1, 2 and the start-up pipe, which is moved to fd 3.
fn keep_only(ready: Ready) -> Result<Ready, (OwnedFd, Error)> {
    const KEEP: RawFd = 3;
    let fd = ready.fd;
    let fd = if fd.as_raw_fd() == KEEP {
        fd
    } else {
        // SAFETY: dup3 onto fd 3 closes whatever was inherited there; the new
        // fd is owned by nothing else.
        let rc = unsafe { libc::dup3(fd.as_raw_fd(), KEEP, libc::O_CLOEXEC) };
        if rc < 0 {
            let source = io::Error::last_os_error();
            return Err((fd, Error::Sys { what: "dup3", source }));
        }
        drop(fd);
        // SAFETY: dup3 just made fd 3 a copy that only we refer to.
        unsafe { OwnedFd::from_raw_fd(KEEP) }
    };
    // SAFETY: close_range closes descriptors no Rust object owns: every fd
    // above 3 was inherited, none was opened by this process yet.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, KEEP as u32 + 1, u32::MAX, 0u32) };
    if rc != 0 {
        // Kernels before 5.9: close what /proc/self/fd lists.
        let listed: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|&n: &RawFd| n > KEEP)
            .collect();
        for n in listed {
            // SAFETY: as above; a failing close (the directory's own fd,
            // already closed) is harmless.
            unsafe { libc::close(n) };
        }
    }
    Ok(Ready { fd })
}

/// Every handler back to its default, an empty mask, then ignore the
/// signals a daemon must never be stopped or killed by.
fn reset_signals() {
    for signo in 1..=libc::SIGRTMAX() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        if let Ok(sig) = Signal::try_from(signo) {
            // SAFETY: installing SIG_DFL runs no code of ours.
            let _ = unsafe { signal(sig, SigHandler::SigDfl) };
        } else {
            // Real-time signals have no nix name.
            // SAFETY: as above.
            unsafe { libc::signal(signo, libc::SIG_DFL) };
        }
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SIGPIPE: a vanished reader is an EPIPE to handle, not a death. The
    // job-control signals would stop a daemon nobody can continue from a
    // terminal. SIGALRM: monitord sets no timer, and the default action of
    // a stray one is to terminate.
    let ignored = [Signal::SIGPIPE, Signal::SIGTTIN, Signal::SIGTTOU, Signal::SIGTSTP, Signal::SIGALRM];
    for sig in ignored {
        // SAFETY: installing SIG_IGN runs no code of ours.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}

/// Whether a build lets the environment steer a daemon: debug builds (the
/// ones the tests run) keep `MONITORD_TEST_*` and `FAILPOINTS`, release
/// builds drop them.
pub const STEERABLE: bool = cfg!(debug_assertions);

/// Whether a daemon keeps the environment variable `name`: an allow-list.
///
/// Kept: `PATH`, `HOME`, `LANG`, `LC_*` and `TZ`, which the C library and
/// the time formatting read, and `XDG_STATE_HOME`, which places the default
/// store (resolved after detaching, once the PID to follow is known). With
/// `steerable` (see [`STEERABLE`]) also `MONITORD_TEST_*` and `FAILPOINTS`.
///
/// Dropped: everything else, notably `LD_*` and `MALLOC_*` (the dynamic
/// loader's and the allocator's knobs), `NOTIFY_SOCKET` (a daemon reports
/// readiness through the launcher's exit, as `Type=forking` expects; only a
/// foreground monitor speaks sd_notify) and `JOURNAL_STREAM` (it names the
/// launcher's stderr, which the daemon has replaced with /dev/null).
pub fn keeps_variable(name: &OsStr, steerable: bool) -> bool {
    const KEPT: [&[u8]; 5] = [b"PATH", b"HOME", b"LANG", b"TZ", b"XDG_STATE_HOME"];
    let name = name.as_encoded_bytes();
    if KEPT.contains(&name) || (name.starts_with(b"LC_") && name.len() > 3) {
        return true;
    }
    steerable && (name == b"FAILPOINTS" || (name.starts_with(b"MONITORD_TEST_") && name.len() > 14))
}

/// The variables of `vars` a daemon keeps (see [`keeps_variable`]), in
/// their order.
pub fn sanitized_environment(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    steerable: bool,
) -> Vec<(OsString, OsString)> {
    vars.into_iter().filter(|(name, _)| keeps_variable(name, steerable)).collect()
}

/// Replace the process's environment with [`sanitized_environment`].
fn sanitize_environment() {
    let kept = sanitized_environment(std::env::vars_os(), STEERABLE);
    // SAFETY: changing the environment is sound only while no other thread
    // can read it: this runs in the daemon right after the double fork,
    // before any thread exists (see `detach`). clearenv also drops entries
    // that `remove_var` would refuse (a name holding `=`).
    unsafe { libc::clearenv() };
    for (name, value) in kept {
        // SAFETY: as above. The names are allow-listed (no `=`, no NUL) and
        // the values came from the environment (no NUL).
        unsafe { std::env::set_var(name, value) };
    }
}

fn stdio_to_dev_null() -> Result<(), Error> {
    let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_NOCTTY, Mode::empty())
        .map_err(sys("open /dev/null"))?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which this process
        // reopens on purpose; std's handles refer to them by number.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(Error::Sys { what: "dup2 /dev/null", source: io::Error::last_os_error() });
        }
    }
    if null.as_raw_fd() <= 2 {
        // It is now one of the standard descriptors: keep it open.
        std::mem::forget(null);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_allow_list_keeps_locale_and_path_and_drops_loader_knobs() {
        // (name, kept in a release build, kept in a debug/test build)
        let table: &[(&str, bool, bool)] = &[
            ("PATH", true, true),
            ("HOME", true, true),
            ("LANG", true, true),
            ("LC_ALL", true, true),
            ("LC_CTYPE", true, true),
            ("LC_TIME", true, true),
            ("TZ", true, true),
            ("XDG_STATE_HOME", true, true),
            ("LC_", false, false),
            ("LD_PRELOAD", false, false),
            ("LD_LIBRARY_PATH", false, false),
            ("LD_AUDIT", false, false),
            ("MALLOC_CHECK_", false, false),
            ("MALLOC_ARENA_MAX", false, false),
            ("GLIBC_TUNABLES", false, false),
            ("NOTIFY_SOCKET", false, false),
            ("JOURNAL_STREAM", false, false),
            ("MONITORD_TEST_SEED", false, true),
            ("MONITORD_TEST_", false, false),
            ("FAILPOINTS", false, true),
            ("MONITORD_LONG", false, false),
            ("RUST_BACKTRACE", false, false),
            ("IFS", false, false),
            ("SHELL", false, false),
            ("TERM", false, false),
            ("PATHEXT", false, false),
            ("path", false, false),
            ("HOMEDIR", false, false),
            ("", false, false),
        ];
        for &(name, release, debug) in table {
            assert_eq!(keeps_variable(OsStr::new(name), false), release, "{name} in a release build");
            assert_eq!(keeps_variable(OsStr::new(name), true), debug, "{name} in a debug build");
        }
    }

    #[test]
    fn sanitizing_keeps_the_allowed_variables_in_order_with_their_values() {
        let vars = [("LD_PRELOAD", "/tmp/x.so"), ("PATH", "/bin"), ("MONITORD_TEST_X", "1"), ("TZ", "UTC")]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept = |steerable| -> Vec<(String, String)> {
            sanitized_environment(vars.clone(), steerable)
                .into_iter()
                .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
                .collect()
        };
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(kept(false), pairs(&[("PATH", "/bin"), ("TZ", "UTC")]));
        assert_eq!(kept(true), pairs(&[("PATH", "/bin"), ("MONITORD_TEST_X", "1"), ("TZ", "UTC")]));
    }
}
