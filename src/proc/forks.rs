//! Fork events from the kernel's process connector (a `NETLINK_CONNECTOR`
//! socket subscribed to `CN_IDX_PROC`; needs CAP_NET_ADMIN), so a
//! short-lived child of the target can be told apart from any other
//! process even after it has exited.
//!
//! Byte layout of one message: `nlmsghdr` (16 bytes), `cn_msg` (20 bytes:
//! id.idx, id.val, seq, ack u32; len, flags u16), then `proc_event`: what
//! u32 at 0, cpu u32 at 4, timestamp u64 at 8, event data at 16; for
//! `PROC_EVENT_FORK` the data is parent_pid, parent_tgid, child_pid,
//! child_tgid (u32 each).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 1;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const EVENT_AT: usize = NLMSG_HDRLEN + CN_MSG_LEN;

/// A subscription to fork events.
#[derive(Debug)]
pub struct Forks {
    fd: OwnedFd,
}

impl Forks {
    /// Subscribe.
    ///
    /// # Errors
    /// The socket, bind or send error (EPERM without CAP_NET_ADMIN).
    pub fn open() -> io::Result<Forks> {
        // SAFETY: socket(2) with constant arguments; returns a new fd or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the fd was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: bind with a pointer to a live, correctly sized sockaddr_nl.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut msg = Vec::with_capacity(EVENT_AT + 4);
        msg.extend_from_slice(&((EVENT_AT + 4) as u32).to_ne_bytes()); // nlmsg_len
        msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes()); // nlmsg_type
        msg.extend_from_slice(&0u16.to_ne_bytes()); // nlmsg_flags
        msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
        msg.extend_from_slice(&4u16.to_ne_bytes()); // len
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        nix::unistd::write(&fd, &msg).map_err(io::Error::from)?;
        Ok(Forks { fd })
    }

    /// Read every queued fork event, calling `fork(parent, child)` (thread
    /// group IDs, i.e. PIDs) for each, oldest first.
    pub fn drain(&self, mut fork: impl FnMut(i32, i32)) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = nix::unistd::read(&self.fd, &mut buf) {
            if n == 0 {
                return;
            }
            for_each_fork(&buf[..n], &mut fork);
        }
    }
}

/// Call `fork` for each fork event in a datagram (which may hold several
/// netlink messages).
fn for_each_fork(mut buf: &[u8], fork: &mut impl FnMut(i32, i32)) {
    let u32_at =
        |b: &[u8], at: usize| b.get(at..at + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
    while let Some(len) = u32_at(buf, 0) {
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return;
        }
        let msg = &buf[..len];
        if u32_at(msg, EVENT_AT) == Some(PROC_EVENT_FORK)
            && let (Some(parent), Some(child)) =
                (u32_at(msg, EVENT_AT + 16 + 4), u32_at(msg, EVENT_AT + 16 + 12))
        {
            fork(parent as i32, child as i32);
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_fork_of_ours_is_reported() {
        let forks = Forks::open().expect("root can subscribe to fork events");
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !seen.contains(&(me, pid)) && std::time::Instant::now() < deadline {
            forks.drain(|parent, child| seen.push((parent, child)));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(seen.contains(&(me, pid)), "fork {me} -> {pid} not among {seen:?}");
    }

    proptest! {
        #[test]
        fn hostile_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            for_each_fork(&bytes, &mut |_, _| {});
        }
    }
}
