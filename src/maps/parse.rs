//! The zero-copy parser of `/proc/<pid>/maps` lines (proc(5)): one line
//! in, a [`Mapping`] borrowing its fields out, and the kernel's escape of
//! the pathname undone for display.
//!
//! This file owns the line format only. It reads nothing and allocates
//! nothing (except [`unescape`] of a name that holds an escape); what a
//! whole map is, and how two maps differ, is in `delta.rs`.
//!
//! # Kernel notes
//!
//! - The kernel pads the pathname to a column and escapes a newline in it
//!   as `\012` (`seq_file_path`), but does not escape a backslash, so a
//!   name with a literal `\012` reads the same; [`unescape`] undoes the
//!   escape for display only, the stored line keeps the kernel's bytes.

use std::borrow::Cow;

/// A line of `/proc/<pid>/maps` that does not have the kernel's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed maps line: bad {0} field")]
pub struct ParseError(pub &'static str);

/// Access bits of a mapping (`rwxp` / `rwxs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perms {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Shared (`s`) rather than private copy-on-write (`p`).
    pub shared: bool,
}

/// What backs a mapping, from its pathname field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing<'a> {
    /// No pathname: an anonymous mapping (heap from `mmap`, thread stacks).
    Anonymous,
    /// A file (pathname starts with `/`), as the kernel escaped it.
    File {
        /// The path without the ` (deleted)` suffix.
        path: &'a [u8],
        /// The file was unlinked or replaced after it was mapped.
        deleted: bool,
    },
    /// Anything else: `[heap]`, `[stack]`, `[vdso]`, `[vvar]`,
    /// `[vsyscall]`, `[anon:name]`, `[stack:tid]`, `anon_inode:…`.
    Special(&'a [u8]),
}

/// One parsed line, borrowing from the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping<'a> {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Access bits.
    pub perms: Perms,
    /// Offset into the file (or the page offset of an anonymous mapping).
    pub offset: u64,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Inode of the file (0 when anonymous).
    pub inode: u64,
    /// The pathname field, padding removed, bytes as the kernel printed them.
    pub pathname: &'a [u8],
}

const DELETED: &[u8] = b" (deleted)";

impl<'a> Mapping<'a> {
    /// What backs the mapping.
    pub fn backing(&self) -> Backing<'a> {
        match self.pathname.first() {
            None => Backing::Anonymous,
            Some(b'/') => match self.pathname.strip_suffix(DELETED) {
                Some(path) => Backing::File { path, deleted: true },
                None => Backing::File { path: self.pathname, deleted: false },
            },
            Some(_) => Backing::Special(self.pathname),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range is empty (never for a kernel line).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Split off the next space-terminated field (one separating space).
fn field<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let (head, tail) = rest.split_at(end);
    *rest = tail.get(1..).unwrap_or(&[]);
    head
}

pub(super) fn parse_hex(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(acc << 4 | u64::from(digit))
    })
}

fn parse_dec(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Parse one line of `/proc/<pid>/maps` (a trailing newline is allowed).
/// Never panics, whatever the bytes.
///
/// # Errors
/// [`ParseError`] naming the first field that does not have the kernel's
/// format.
pub fn parse_line(line: &[u8]) -> Result<Mapping<'_>, ParseError> {
    let mut rest = line.strip_suffix(b"\n").unwrap_or(line);
    let (start, end) = field(&mut rest)
        .split(|&b| b == b'-')
        .collect::<ArrayPair>()
        .0
        .and_then(|(a, b)| Some((parse_hex(a)?, parse_hex(b)?)))
        .filter(|(a, b)| a <= b)
        .ok_or(ParseError("address"))?;
    let perms = match field(&mut rest) {
        &[r, w, x, s]
            if matches!(r, b'r' | b'-')
                && matches!(w, b'w' | b'-')
                && matches!(x, b'x' | b'-')
                && matches!(s, b's' | b'p') =>
        {
            Perms { read: r == b'r', write: w == b'w', exec: x == b'x', shared: s == b's' }
        }
        _ => return Err(ParseError("permissions")),
    };
    let offset = parse_hex(field(&mut rest)).ok_or(ParseError("offset"))?;
    let (major, minor) = field(&mut rest)
        .split(|&b| b == b':')
        .collect::<ArrayPair>()
        .0
        .and_then(|(a, b)| Some((u32::try_from(parse_hex(a)?).ok()?, u32::try_from(parse_hex(b)?).ok()?)))
        .ok_or(ParseError("device"))?;
    let inode = parse_dec(field(&mut rest)).ok_or(ParseError("inode"))?;
    let pad = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    Ok(Mapping { start, end, perms, offset, major, minor, inode, pathname: &rest[pad..] })
}

/// Collects exactly two items (`None` for any other count).
struct ArrayPair<'a>(Option<(&'a [u8], &'a [u8])>);

impl<'a> FromIterator<&'a [u8]> for ArrayPair<'a> {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> Self {
        let mut iter = iter.into_iter();
        match (iter.next(), iter.next(), iter.next()) {
            (Some(a), Some(b), None) => ArrayPair(Some((a, b))),
            _ => ArrayPair(None),
        }
    }
}

/// The non-empty lines of a maps text, without their newlines.
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n').filter(|line| !line.is_empty())
}

/// Parse every line of a maps text.
pub fn parse(text: &[u8]) -> impl Iterator<Item = Result<Mapping<'_>, ParseError>> {
    lines(text).map(parse_line)
}

/// Undo the kernel's `\012` escape of a newline in a pathname (display
/// only: see the module notes on ambiguity).
pub fn unescape(pathname: &[u8]) -> Cow<'_, [u8]> {
    const ESCAPED: &[u8] = b"\\012";
    if !pathname.windows(ESCAPED.len()).any(|w| w == ESCAPED) {
        return Cow::Borrowed(pathname);
    }
    let mut out = Vec::with_capacity(pathname.len());
    let mut rest = pathname;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix(ESCAPED) {
            out.push(b'\n');
            rest = tail;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::maps::{Map, diff};
    use proptest::prelude::*;

    const REAL: &[u8] = b"\
55d4c3a00000-55d4c3a02000 r--p 00000000 fd:01 1835121                    /usr/bin/cat
55d4c5e1e000-55d4c5e3f000 rw-p 00000000 00:00 0                          [heap]
7f3b1c000000-7f3b1c021000 rw-p 00000000 00:00 0 
7f3b2a3d1000-7f3b2a3d3000 rw-s 00000000 00:05 4097                       /memfd:wayland-shm (deleted)
7f3b2a3e0000-7f3b2a3e1000 r--p 00000000 fd:01 123                        /tmp/a file\\012with newline
7ffc8a1e4000-7ffc8a205000 rw-p 00000000 00:00 0                          [stack]
7ffc8a3f4000-7ffc8a3f6000 r-xp 00000000 00:00 0                          [vdso]
7f3b2a3f0000-7f3b2a3f1000 rw-p 00000000 00:00 0                          [anon:my name]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn real_lines_parse_with_every_field() {
        let all: Vec<Mapping<'_>> = parse(REAL).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 9);
        let cat = all[0];
        assert_eq!((cat.start, cat.end, cat.offset, cat.inode), (0x55d4c3a00000, 0x55d4c3a02000, 0, 1835121));
        assert_eq!((cat.major, cat.minor), (0xfd, 1));
        assert_eq!(cat.perms, Perms { read: true, write: false, exec: false, shared: false });
        assert_eq!(cat.backing(), Backing::File { path: b"/usr/bin/cat", deleted: false });
        assert_eq!(all[1].backing(), Backing::Special(b"[heap]"));
        assert_eq!(all[2].backing(), Backing::Anonymous);
        assert_eq!(all[3].backing(), Backing::File { path: b"/memfd:wayland-shm", deleted: true });
        assert!(all[3].perms.shared);
        assert_eq!(&*unescape(all[4].pathname), b"/tmp/a file\nwith newline");
        assert_eq!(all[5].backing(), Backing::Special(b"[stack]"));
        assert_eq!(all[6].backing(), Backing::Special(b"[vdso]"));
        assert_eq!(all[7].pathname, b"[anon:my name]");
        assert_eq!(all[8].end, 0xffffffffff601000);
        assert_eq!(cat.len(), 0x2000);
    }

    #[test]
    fn malformed_lines_name_the_field() {
        for (line, field) in [
            (&b"zz-10 r--p 0 00:00 0"[..], "address"),
            (b"20-10 r--p 0 00:00 0", "address"),
            (b"10-20-30 r--p 0 00:00 0", "address"),
            (b"10-20 rwz 0 00:00 0", "permissions"),
            (b"10-20 r--p 0x1 00:00 0", "offset"),
            (b"10-20 r--p 0 0000 0", "device"),
            (b"10-20 r--p 0 00:00 -1", "inode"),
            (b"10-20 r--p 0 00:00", "inode"),
            (b"", "address"),
        ] {
            assert_eq!(parse_line(line), Err(ParseError(field)), "{}", String::from_utf8_lossy(line));
        }
    }

    /// A line as the kernel prints it (`show_map_vma`): the fields, a
    /// space, padding to column 73, a space, the pathname; an anonymous
    /// mapping ends with the space after the inode.
    pub(in crate::maps) fn kernel_line(
        page: u64,
        pages: u64,
        perms: &str,
        inode: u64,
        path: &str,
    ) -> Vec<u8> {
        let start = 0x7f00_0000_0000 + page * 4096;
        let prefix = format!("{start:08x}-{:08x} {perms} 00000000 fd:01 {inode} ", start + pages * 4096);
        if path.is_empty() { prefix.into_bytes() } else { format!("{prefix:<73} {path}").into_bytes() }
    }

    proptest! {
        #[test]
        fn garbage_never_panics_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            for m in parse(&bytes).flatten() {
                prop_assert!(m.start <= m.end);
                let _ = m.backing();
            }
            let _ = unescape(&bytes);
            let delta = diff(&bytes, b"10-20 r--p 0 00:00 0\n");
            let mut map = Map::from_text(&bytes);
            prop_assert!(map.apply_forward(&delta).is_ok());
            prop_assert_eq!(map.render(), b"10-20 r--p 0 00:00 0\n".to_vec());
        }

        #[test]
        fn mangled_real_lines_never_panic(cut in 0usize..120, flip in 0usize..120, byte in any::<u8>()) {
            for line in lines(REAL) {
                let mut line = line.to_vec();
                if flip < line.len() {
                    line[flip] = byte;
                }
                line.truncate(cut);
                let _ = parse_line(&line);
            }
        }

        #[test]
        fn kernel_lines_parse_back(page in 0u64..1 << 20, pages in 1u64..100, inode in any::<u64>(), name in "[a-z ()]{0,12}") {
            let path = if name.is_empty() { String::new() } else { format!("/x/{name}") };
            let line = kernel_line(page, pages, "rw-p", inode, &path);
            let m = parse_line(&line).unwrap();
            prop_assert_eq!(m.inode, inode);
            prop_assert_eq!(m.len(), pages * 4096);
            prop_assert_eq!((m.major, m.minor), (0xfd, 1));
            prop_assert_eq!(m.pathname, path.as_bytes());
        }
    }
}
