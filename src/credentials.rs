//! Reading files with the target's credentials: when monitord runs as root
//! and follows another user's process, a file is copied only if that
//! process itself could open it.
//!
//! Credentials belong to a thread in the kernel, and the raw `setgroups`,
//! `setfsgid` and `setfsuid` system calls change only the calling thread's
//! (glibc's wrappers would change every thread's). So one opener thread
//! takes the target's filesystem uid, gid and supplementary groups — which
//! also drops root's file capabilities from that thread (capabilities(7))
//! — and opens files on request; the kernel checks modes, groups, ACLs and
//! security modules exactly as for the target. The fd it returns is shared
//! by the whole process, so reading continues on the sampler's thread. The
//! rest of monitord (the store, the ring) keeps monitord's own rights.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crossbeam_channel::{Sender, bounded};
use nix::errno::Errno;

/// A process's filesystem identity, from `/proc/<pid>/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    /// Filesystem user id.
    pub uid: u32,
    /// Filesystem group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Creds {
    /// Parse the `Uid:`, `Gid:` and `Groups:` lines of a status file (the
    /// fourth id of each is the filesystem one). `None` if one is missing.
    pub fn parse_status(status: &[u8]) -> Option<Creds> {
        let text = std::str::from_utf8(status).ok()?;
        let ids = |key: &str| -> Option<Vec<u32>> {
            let line = text.lines().find_map(|l| l.strip_prefix(key))?;
            line.split_ascii_whitespace().map(|v| v.parse().ok()).collect()
        };
        let uid = *ids("Uid:")?.get(3)?;
        let gid = *ids("Gid:")?.get(3)?;
        let groups = ids("Groups:").unwrap_or_default();
        Some(Creds { uid, gid, groups })
    }

    /// This process's own (from `/proc/self/status`).
    pub fn own() -> Option<Creds> {
        Creds::parse_status(&std::fs::read("/proc/self/status").ok()?)
    }
}

type Request = (RawFd, Vec<u8>, Sender<Result<OwnedFd, Errno>>);

/// How regular files are opened for reading.
#[derive(Debug)]
pub enum Opener {
    /// With monitord's own rights (it runs as the target's user).
    Direct,
    /// On a thread that carries the target's credentials.
    AsTarget {
        /// Requests to the opener thread.
        requests: Sender<Request>,
    },
}

impl Opener {
    /// The opener for a target with `target` credentials: direct when they
    /// are monitord's own, else a thread that takes them. Falls back to
    /// direct when monitord may not change its credentials (not root).
    pub fn for_target(target: &Creds) -> Opener {
        match Creds::own() {
            Some(own) if own.uid != 0 || &own == target => Opener::Direct,
            Some(_) => Opener::as_target(target.clone()).unwrap_or(Opener::Direct),
            None => Opener::Direct,
        }
    }

    fn as_target(creds: Creds) -> Option<Opener> {
        let (requests, incoming) = bounded::<Request>(16);
        let (ready_tx, ready_rx) = bounded(1);
        std::thread::Builder::new()
            .name("monitord-opener".into())
            .spawn(move || {
                let ok = take_creds(&creds).is_ok();
                let _ = ready_tx.send(ok);
                if !ok {
                    return;
                }
                for (dir, name, reply) in incoming {
                    let _ = reply.send(open_at(dir, &name));
                }
            })
            .ok()?;
        ready_rx.recv().ok()?.then_some(Opener::AsTarget { requests })
    }

    /// `openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
    /// O_CLOEXEC)`, with the rights this opener carries.
    ///
    /// # Errors
    /// The open's errno (EACCES when the target may not read it).
    pub fn open(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
        match self {
            Opener::Direct => open_at(dir.as_raw_fd(), name),
            Opener::AsTarget { requests } => {
                let (tx, rx) = bounded(1);
                // `dir` stays open while we wait for the answer.
                requests.send((dir.as_raw_fd(), name.to_vec(), tx)).map_err(|_| Errno::EIO)?;
                rx.recv().map_err(|_| Errno::EIO)?
            }
        }
    }
}

fn open_at(dir: RawFd, name: &[u8]) -> Result<OwnedFd, Errno> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    // SAFETY: the caller keeps `dir` open for the duration of the call.
    let dir = unsafe { BorrowedFd::borrow_raw(dir) };
    nix::fcntl::openat(dir, crate::relpath::as_path(name), flags, nix::sys::stat::Mode::empty())
}

/// Give the calling thread `creds` as its filesystem identity.
fn take_creds(creds: &Creds) -> Result<(), Errno> {
    let groups: Vec<libc::gid_t> = creds.groups.clone();
    // SAFETY: raw setgroups with a pointer to `groups.len()` gids that live
    // for the call; the raw system call changes only this thread.
    if unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) } != 0 {
        return Err(Errno::last());
    }
    // SAFETY: setfsgid/setfsuid take an id and return the previous one; they
    // change only this thread's credentials.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, creds.gid);
        libc::syscall(libc::SYS_setfsuid, creds.uid);
    }
    // Calling with an invalid id returns the current one: check they took.
    // SAFETY: as above; -1 changes nothing.
    let (fsuid, fsgid) =
        unsafe { (libc::syscall(libc::SYS_setfsuid, u32::MAX), libc::syscall(libc::SYS_setfsgid, u32::MAX)) };
    if fsuid != i64::from(creds.uid) || fsgid != i64::from(creds.gid) {
        return Err(Errno::EPERM);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn status_lines_give_the_filesystem_ids() {
        let status = b"Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t50\t51\t52\t53\nGroups:\t4 24 27 \n";
        assert_eq!(Creds::parse_status(status), Some(Creds { uid: 1003, gid: 53, groups: vec![4, 24, 27] }));
        assert_eq!(Creds::parse_status(b"Uid:\t1\n"), None);
        let no_groups = b"Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(Creds::parse_status(no_groups).unwrap().groups, Vec::<u32>::new());
    }

    #[test]
    fn an_opener_as_nobody_cannot_open_a_root_only_file_but_can_open_a_group_one() {
        if Creds::own().is_none_or(|c| c.uid != 0) {
            eprintln!("SKIPPED: needs root");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::fs::set_permissions(dir.path().join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.path().join("group"), "g").unwrap();
        std::fs::set_permissions(dir.path().join("group"), std::fs::Permissions::from_mode(0o640)).unwrap();
        nix::unistd::chown(&dir.path().join("group"), None, Some(nix::unistd::Gid::from_raw(4242))).unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let nobody = Opener::for_target(&Creds { uid: 65534, gid: 65534, groups: vec![4242] });
        assert!(matches!(nobody, Opener::AsTarget { .. }));
        assert_eq!(nobody.open(root.as_fd(), b"secret").err(), Some(Errno::EACCES));
        assert!(nobody.open(root.as_fd(), b"group").is_ok(), "supplementary groups count");
        let no_group = Opener::for_target(&Creds { uid: 65534, gid: 65534, groups: vec![] });
        assert_eq!(no_group.open(root.as_fd(), b"group").err(), Some(Errno::EACCES));
        // The test thread itself kept root's rights.
        assert!(Opener::Direct.open(root.as_fd(), b"secret").is_ok());
    }
}
