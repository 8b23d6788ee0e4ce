//! Our own children: waiting for one and saying how it ended (`wait4(2)`:
//! the exit code or signal, and the resource use the kernel kept for it).
//!
//! This file owns only the wait. Starting a command is [`crate::launch`];
//! the sampler reaps the command it launched when it sees it exit, so the
//! record of the exit carries the status.

use crate::journal::record::{Exit, Rusage};

/// Reap `pid` (our child) and say how it ended; `None` when it is not our
/// child or (with `block` false) has not exited yet.
pub fn reap(pid: i32, block: bool) -> Option<Exit> {
    let flags = if block { 0 } else { libc::WNOHANG };
    let mut status = 0;
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 with pointers to live locals.
        let rc = unsafe { libc::wait4(pid, &raw mut status, flags, &raw mut usage) };
        if rc == pid {
            break;
        }
        if rc < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
            continue;
        }
        return None;
    }
    let ms = |tv: libc::timeval| (tv.tv_sec as u64) * 1000 + (tv.tv_usec as u64) / 1000;
    let count = |v: libc::c_long| u64::try_from(v).unwrap_or(0);
    let rusage = Rusage {
        utime_ms: ms(usage.ru_utime),
        stime_ms: ms(usage.ru_stime),
        maxrss_kib: count(usage.ru_maxrss),
        inblock: count(usage.ru_inblock),
        oublock: count(usage.ru_oublock),
        nvcsw: count(usage.ru_nvcsw),
        nivcsw: count(usage.ru_nivcsw),
    };
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Some(Exit { code, signal, rusage: Some(rusage) })
}
