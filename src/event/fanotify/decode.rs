//! Reading the group's events and what they name: the byte layout of an
//! event and its info records, the file handles (fids) in them, and the
//! resolution of a directory's handle to its path below the root
//! (`open_by_handle_at` on a mount of its filesystem in the tree, then
//! `/proc/self/fd`, confirmed beneath the root), with its cache.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{CACHE_LIMIT, Worker};
use crate::tree;
use nix::errno::Errno;

const METADATA_LEN: usize = 24;

/// One event, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Raw<'a> {
    pub(super) mask: u64,
    pub(super) pid: i32,
    /// The directory's fid: fsid (8 bytes), handle_bytes (4),
    /// handle_type (4), the handle (the cache key).
    pub(super) fid: Option<&'a [u8]>,
    /// The object's own fid, same layout (`FAN_REPORT_FID`).
    pub(super) object: Option<&'a [u8]>,
    pub(super) name: &'a [u8],
}

/// A fid's parts: fsid, handle type, handle.
fn split_fid(fid: &[u8]) -> Option<([u8; 8], i32, &[u8])> {
    let fsid: [u8; 8] = fid.get(..8)?.try_into().ok()?;
    let handle_type = i32::from_ne_bytes(fid.get(12..16)?.try_into().ok()?);
    Some((fsid, handle_type, fid.get(16..)?))
}

impl Worker {
    /// Open the directory `fid` names, on the first mount of its
    /// filesystem that knows it (a real open: `fanotify_mark` takes no
    /// O_PATH fd).
    pub(super) fn open_fid(&self, fid: &[u8]) -> Option<OwnedFd> {
        use nix::fcntl::OFlag;
        let (fsid, handle_type, handle) = split_fid(fid)?;
        let found = self.mounts.iter().filter(|m| m.fsid == fsid).find_map(|m| match m.id {
            None => open_by_handle(self.root.as_fd(), handle_type, handle),
            Some(_) => {
                let mount = tree::open_dir(self.root.as_fd(), &m.rel).ok()?;
                open_by_handle(mount.as_fd(), handle_type, handle)
            }
        })?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        nix::fcntl::openat(&found, ".", flags, nix::sys::stat::Mode::empty()).ok()
    }

    /// The path below the root of the directory `fid` names, if it is
    /// inside the tree: the handle is opened on each mount of its
    /// filesystem in the tree (a bind mount shows a directory of the
    /// root's filesystem under another path).
    pub(super) fn resolve(&mut self, fid: &[u8]) -> Option<Vec<u8>> {
        if let Some(found) = self.cache.get(fid) {
            return found.clone();
        }
        let (fsid, handle_type, handle) = split_fid(fid)?;
        let mut found = None;
        for i in 0..self.mounts.len() {
            if self.mounts[i].fsid != fsid {
                continue;
            }
            let opened;
            let mount = match self.mounts[i].id {
                None => self.root.as_fd(),
                Some(_) => match tree::open_dir(self.root.as_fd(), &self.mounts[i].rel) {
                    Ok(fd) => {
                        opened = fd;
                        opened.as_fd()
                    }
                    Err(_) => continue,
                },
            };
            let Some(dir) = open_by_handle(mount, handle_type, handle) else { continue };
            found = self.relative(&dir);
            if found.is_some() {
                break;
            }
        }
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(fid.to_vec(), found.clone());
        found
    }

    pub(super) fn relative(&mut self, dir: &OwnedFd) -> Option<Vec<u8>> {
        let st = nix::sys::stat::fstat(dir).ok()?;
        let id = (st.st_dev, st.st_ino);
        if id == self.root_id {
            // The root itself, wherever it is now, even removed.
            return Some(Vec::new());
        }
        let path = fd_path(dir.as_fd())?;
        let rel = match below(&path, &self.root_path) {
            Some(rel) => rel,
            None => {
                // The root may have been renamed since its path was read:
                // the directory it is, not the path it had, is watched.
                self.root_path = fd_path(self.root.as_fd())?;
                below(&path, &self.root_path)?
            }
        };
        // Confirm that the name leads to this very directory, beneath the
        // root without symlinks (a rename may have raced with readlink).
        let beneath = tree::open_dir(self.root.as_fd(), &rel).ok()?;
        let seen = nix::sys::stat::fstat(&beneath).ok()?;
        if (seen.st_dev, seen.st_ino) != id {
            return None;
        }
        if Some(id) == self.skip {
            self.store_rel = Some(rel);
            return None;
        }
        Some(rel)
    }
}

/// `path` relative to `root` (empty for the root itself), if below it.
pub(super) fn below(path: &[u8], root: &[u8]) -> Option<Vec<u8>> {
    if path == root {
        return Some(Vec::new());
    }
    let rest = path.strip_prefix(root)?.strip_prefix(b"/")?;
    Some(rest.to_vec())
}

/// Parse the event at the start of `buf`: the event and its length.
pub(super) fn parse_event(buf: &[u8]) -> Option<(Raw<'_>, usize)> {
    let u16_at = |at: usize| buf.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |at: usize| buf.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let event_len = u32_at(0)? as usize;
    let metadata_len = usize::from(u16_at(6)?);
    if event_len < METADATA_LEN
        || event_len > buf.len()
        || metadata_len < METADATA_LEN
        || metadata_len > event_len
    {
        return None;
    }
    let mask = u64::from_ne_bytes(buf.get(8..16)?.try_into().ok()?);
    let pid = u32_at(20)? as i32;
    let mut raw = Raw { mask, pid, fid: None, object: None, name: b"" };
    let mut at = metadata_len;
    while at + 4 <= event_len {
        let info_type = buf[at];
        let len = usize::from(u16_at(at + 2)?);
        if len < 4 || at + len > event_len {
            break;
        }
        if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME || info_type == libc::FAN_EVENT_INFO_TYPE_DFID {
            // header (4) + fsid (8) + handle_bytes (4) + handle_type (4)
            let record = &buf[at..at + len];
            let handle_bytes =
                record.get(12..16).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))? as usize;
            raw.fid = Some(record.get(4..20 + handle_bytes)?);
            let rest = record.get(20 + handle_bytes..).unwrap_or_default();
            let name_len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
                raw.name = &rest[..name_len];
            }
        } else if info_type == libc::FAN_EVENT_INFO_TYPE_FID {
            let record = &buf[at..at + len];
            let handle_bytes =
                record.get(12..16).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))? as usize;
            raw.object = Some(record.get(4..20 + handle_bytes)?);
        }
        at += len;
    }
    Some((raw, event_len))
}

/// `open_by_handle_at(mount, handle, O_PATH)`.
fn open_by_handle(mount: BorrowedFd<'_>, handle_type: i32, handle: &[u8]) -> Option<OwnedFd> {
    // A `struct file_handle`: handle_bytes, handle_type, then the bytes;
    // built in u32 words for its alignment.
    let mut words = vec![0u32; 2 + handle.len().div_ceil(4)];
    words[0] = u32::try_from(handle.len()).ok()?;
    words[1] = handle_type as u32;
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words[2..]);
    bytes[..handle.len()].copy_from_slice(handle);
    // SAFETY: `words` is a properly aligned, fully initialised file_handle
    // whose handle_bytes matches the bytes that follow; the kernel only
    // reads it. The returned fd is new and owned by nobody else.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            words.as_mut_ptr().cast::<libc::file_handle>(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    // SAFETY: as above.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The id of the filesystem `fd` is on, as fanotify reports it (statfs's
/// `f_fsid`).
pub(super) fn fsid(fd: BorrowedFd<'_>) -> Result<[u8; 8], Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs fills the statfs it is given, or fails.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(Errno::last());
    }
    // SAFETY: fstatfs returned 0, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    // SAFETY: fsid_t is two C ints, 8 bytes without padding, whatever
    // their names; read as the bytes events carry.
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [u8; 8]>(st.f_fsid) })
}

/// The path `/proc/self/fd/N` names for an fd.
pub(super) fn fd_path(fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let bytes = link.into_os_string().into_encoded_bytes();
    (!bytes.ends_with(b" (deleted)")).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(mask: u64, pid: i32, handle: &[u8], name: &[u8]) -> Vec<u8> {
        let mut info = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
        info.extend_from_slice(&[7; 8]);
        info.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        info.extend_from_slice(&1i32.to_ne_bytes());
        info.extend_from_slice(handle);
        info.extend_from_slice(name);
        info.push(0);
        while info.len() % 4 != 0 {
            info.push(0);
        }
        let info_len = info.len() as u16;
        info[2..4].copy_from_slice(&info_len.to_ne_bytes());
        let mut out = Vec::new();
        out.extend_from_slice(&((METADATA_LEN + info.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&[3, 0]);
        out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        out.extend_from_slice(&mask.to_ne_bytes());
        out.extend_from_slice(&(-1i32).to_ne_bytes());
        out.extend_from_slice(&pid.to_ne_bytes());
        out.extend_from_slice(&info);
        out
    }

    #[test]
    fn events_parse_with_their_handle_and_name() {
        let mut buf = event(libc::FAN_MODIFY, 42, &[1, 2, 3, 4, 5, 6, 7, 8], b"notes.txt");
        buf.extend(event(libc::FAN_CREATE | libc::FAN_ONDIR, 7, &[9; 12], b"sub"));
        let (first, len) = parse_event(&buf).unwrap();
        assert_eq!((first.mask, first.pid, first.name), (libc::FAN_MODIFY, 42, b"notes.txt".as_slice()));
        let (fsid, handle_type, handle) = split_fid(first.fid.unwrap()).unwrap();
        assert_eq!((fsid, handle_type, handle), ([7; 8], 1, [1, 2, 3, 4, 5, 6, 7, 8].as_slice()));
        let (second, rest) = parse_event(&buf[len..]).unwrap();
        assert_eq!(second.name, b"sub");
        assert_eq!(second.pid, 7);
        assert_eq!(len + rest, buf.len());
        assert!(parse_event(&buf[..len - 1]).is_none() || parse_event(&buf[..len - 1]).unwrap().1 < len);
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut at = 0;
            while let Some((_, len)) = parse_event(&bytes[at..]) {
                prop_assert!(len >= METADATA_LEN);
                at += len;
            }
        }
    }
}
