//! Files of the tree with other names (hard links), which may lie outside
//! it: each is known by its file handle, so a write through a name
//! outside the tree is still reported under its name inside.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::decode::fsid;
use super::marks::mark_entry;
use super::{CACHE_LIMIT, Marks, Worker};
use crate::event::thread::Queue;
use crate::tree;

/// A mark on a file with several names: its writes, whichever name.
const LINK_MASK: u64 = libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE | libc::FAN_ATTRIB;

impl Worker {
    /// A regular file of the tree with other names, which may lie outside
    /// it: remember its fid and one name inside, and (with inode marks)
    /// mark the file itself, so a write through any name is reported.
    pub(super) fn track_link(&mut self, dir: BorrowedFd<'_>, rel: &[u8], name: &[u8], queue: &Queue) {
        if self.linked.len() >= CACHE_LIMIT {
            return;
        }
        let Ok(st) =
            nix::sys::stat::fstatat(dir, tree::as_path(name), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            return;
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_nlink < 2 {
            return;
        }
        let Some(fid) = file_fid(dir, name) else { return };
        if self.marks == Marks::Inodes && mark_entry(self.group.as_fd(), LINK_MASK, dir, name).is_err() {
            return;
        }
        self.linked.insert(fid, tree::join(rel, name));
        // A name of it may lie in an ignored directory.
        self.unignore_all(queue);
    }
}

/// The fid events give for the entry `name` of `dir`: its filesystem's id,
/// then the `file_handle` of `name_to_handle_at`.
fn file_fid(dir: BorrowedFd<'_>, name: &[u8]) -> Option<Vec<u8>> {
    const MAX_HANDLE: usize = 128;
    let cname = std::ffi::CString::new(name).ok()?;
    // A `struct file_handle` with room for the largest handle, in u32
    // words for its alignment.
    let mut words = vec![0u32; 2 + MAX_HANDLE / 4];
    words[0] = MAX_HANDLE as u32;
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `words` is an aligned file_handle whose handle_bytes says how
    // much room follows; the kernel writes at most that much.
    let rc = unsafe {
        libc::name_to_handle_at(
            dir.as_raw_fd(),
            cname.as_ptr(),
            words.as_mut_ptr().cast::<libc::file_handle>(),
            &mut mount_id,
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    let len = (words[0] as usize).min(MAX_HANDLE);
    let bytes: &[u8] = bytemuck::cast_slice(&words);
    let mut fid = fsid(dir).ok()?.to_vec();
    fid.extend_from_slice(&bytes[..8 + len]);
    Some(fid)
}
