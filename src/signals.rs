//! Signals, handled synchronously through signalfd(2).
//!
//! The signals monitord acts on are blocked in the main thread before any
//! other thread exists (threads inherit the mask), so none of them can be
//! delivered asynchronously to a stray thread; one thread reads them from
//! a signalfd and turns them into messages for the sampler.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals read through the signalfd.
pub fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2] {
        set.add(signal);
    }
    set
}

/// Block [`handled`] in the calling thread (call before spawning threads)
/// and open a signalfd for them.
///
/// # Errors
/// The errno of `pthread_sigmask` or `signalfd`.
pub fn block_and_open() -> nix::Result<SignalFd> {
    let set = handled();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)
}

/// Read the next signal number (blocking).
pub fn next(fd: &SignalFd) -> Option<i32> {
    loop {
        match fd.read_signal() {
            Ok(Some(info)) => return Some(info.ssi_signo as i32),
            Ok(None) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}
