//! Relative byte paths, the one spelling of a path in the watched tree and
//! in the store: `/`-separated bytes with no leading `/`, the root itself
//! being the empty path. Names are bytes because a Linux file name is, and
//! need not be UTF-8.
//!
//! This module owns only the arithmetic on such paths (join, split, is
//! within, is safe to use under a directory) and their view as a
//! [`Path`]. It does no I/O: opening them strictly beneath the root is
//! [`crate::tree`].

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Join a directory path and an entry name.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    path.extend_from_slice(dir);
    path.push(b'/');
    path.extend_from_slice(name);
    path
}

/// Split a path into its parent directory and last component.
pub fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// Whether a relative path read back from a store is safe to use under a
/// directory: not empty, not absolute, no empty, `.` or `..` components,
/// no NUL, no component longer than `NAME_MAX` (255) bytes and not longer
/// than `PATH_MAX` (4096) bytes in all: no Linux directory can hold such a
/// name, so only a crafted ring has one. A crafted ring cannot make
/// `restore` write outside its target.
pub fn is_safe_relative(rel: &[u8]) -> bool {
    !rel.is_empty()
        && rel.len() <= 4096
        && !rel.contains(&0)
        && rel
            .split(|&b| b == b'/')
            .all(|part| !part.is_empty() && part.len() <= 255 && part != b"." && part != b"..")
}

/// A relative byte path as a [`std::path::Path`].
pub fn as_path(rel: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(rel))
}

/// Whether `path` is `dir` or lies below it.
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_helpers() {
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"a", b"b"), b"a/b");
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        assert!(is_within(b"a/b", b"a"));
        assert!(!is_within(b"ab", b"a"));
        assert!(is_within(b"x", b""));
        assert!(is_safe_relative(b"a/b.txt"));
        for bad in [&b""[..], b"/etc/passwd", b"../x", b"a/../../x", b"a//b", b"./a", b"a\0b"] {
            assert!(!is_safe_relative(bad), "{bad:?}");
        }
        assert!(is_safe_relative(&[b'n'; 255]));
        assert!(!is_safe_relative(&[b'n'; 256]));
        let deep = [&[b'n'; 255][..], b"/"].concat().repeat(17);
        assert!(is_safe_relative(&deep[..4095]) && !is_safe_relative(&deep[..4097]));
    }
}
