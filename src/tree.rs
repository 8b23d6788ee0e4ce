//! The watched tree: every access to the target's files, confined beneath
//! the root directory fd, and the walk used by the baseline and rescans.
//!
//! Paths are relative byte strings, `/`-separated, with no leading `/`
//! (the root itself is the empty path). Nothing here follows a symlink:
//! intermediate components are resolved with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` (openat2(2), Linux 5.6), and the last component is
//! examined with `fstatat(AT_SYMLINK_NOFOLLOW)` and opened with `O_NOFOLLOW`
//! relative to its parent's fd, then checked again with `fstat` on the
//! opened fd. A file swapped for a symlink between the event and the read
//! is therefore read as the link it has become, never as what it points to.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use globset::{Glob, GlobSet, GlobSetBuilder};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

use crate::credentials::Opener;
use crate::relpath::as_path as bytes_as_path;
pub use crate::relpath::{as_path, is_safe_relative, is_within, join, split};
use crate::text;

/// Errors of the tree module that are not per-file observations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An `--exclude` pattern is not a valid glob.
    #[error("invalid --exclude pattern {pattern:?}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// Why.
        #[source]
        source: globset::Error,
    },
}

/// What a path in the tree is right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Nothing there (or only reachable through a symlink).
    Absent,
    /// A regular text file and its content.
    File(Vec<u8>),
    /// A symbolic link and its target string.
    Symlink(Vec<u8>),
    /// A directory.
    Dir,
    /// A regular file whose content is data, not text.
    Binary,
    /// A regular text file over the size limit.
    TooLarge(u64),
    /// Could not be read (errno).
    Unreadable(i32),
    /// A FIFO, socket or device: never opened for reading.
    Special,
}

/// The file an observation read: its identity and its number of names
/// (hard links), from `fstat` of the fd its content was read through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inode {
    /// Its device.
    pub dev: u64,
    /// Its inode number.
    pub ino: u64,
    /// How many names it has (in the tree or not).
    pub nlink: u64,
    /// Its permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

impl Inode {
    /// (device, inode).
    pub fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// `--exclude` globs. A pattern without `/` matches any single path
/// component (so `.git` leaves out every `.git` directory and `*.log` every
/// log file); a pattern with `/` matches the whole relative path.
#[derive(Clone, Debug)]
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
}

impl Excludes {
    /// Compile the patterns.
    ///
    /// # Errors
    /// [`Error::Glob`] for the first invalid pattern.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Excludes, Error> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let trimmed = pattern.trim_matches('/');
            let glob =
                Glob::new(trimmed).map_err(|source| Error::Glob { pattern: pattern.to_string(), source })?;
            if trimmed.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|source| Error::Glob {
                pattern: patterns.iter().map(|p| p.as_ref()).collect::<Vec<_>>().join(" "),
                source,
            })
        };
        Ok(Excludes { names: build(names)?, paths: build(paths)? })
    }

    /// Whether `rel` is left out. Only the last component is checked
    /// against name patterns: the walk never enters an excluded directory,
    /// so its descendants are never asked about.
    pub fn is_excluded(&self, rel: &[u8]) -> bool {
        if rel.is_empty() {
            return false;
        }
        let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
        let name_matches = self.names.is_match(bytes_as_path(name));
        name_matches || (!self.paths.is_empty() && self.paths.is_match(bytes_as_path(rel)))
    }

    /// Whether `rel` or any of its ancestors is left out (for paths that
    /// did not come from the walk).
    pub fn is_excluded_anywhere(&self, rel: &[u8]) -> bool {
        let ancestors = rel.iter().enumerate().filter(|&(_, &b)| b == b'/').map(|(i, _)| &rel[..i]);
        ancestors.chain(std::iter::once(rel)).any(|path| self.is_excluded(path))
    }
}

/// Open a directory of the tree, strictly beneath `root`, never through a
/// symlink. The empty path opens the root itself.
///
/// # Errors
/// The errno of `openat2`: `ENOENT`/`ENOTDIR` when it is gone, `ELOOP` or
/// `EXDEV` when the path leads through a symlink or out of the tree.
pub fn open_dir(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let path: &[u8] = if rel.is_empty() { b"." } else { rel };
    match openat2(root, bytes_as_path(path), how) {
        // Kernels before 5.6 (and tools such as valgrind) lack openat2.
        Err(Errno::ENOSYS) => open_dir_by_components(root, rel),
        other => other,
    }
}

/// [`open_dir`] without openat2: one `openat(O_NOFOLLOW | O_DIRECTORY)`
/// per component, refusing `.`, `..` and empty components, so the walk can
/// neither follow a symlink nor leave the tree.
fn open_dir_by_components(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let mut dir = openat(root, ".", flags, Mode::empty())?;
    if rel.is_empty() {
        return Ok(dir);
    }
    for component in rel.split(|&b| b == b'/') {
        if component.is_empty() || component == b"." || component == b".." {
            return Err(Errno::EXDEV);
        }
        dir = openat(dir.as_fd(), bytes_as_path(component), flags, Mode::empty())?;
    }
    Ok(dir)
}

/// Observe one path of the tree (see the module doc for how it is
/// confined).
pub fn observe(root: BorrowedFd<'_>, rel: &[u8], max_size: u64, opener: &Opener) -> Observed {
    observe_linked(root, rel, max_size, opener).0
}

/// [`observe`], and the inode read when it is a regular file that could
/// be opened.
pub fn observe_linked(
    root: BorrowedFd<'_>,
    rel: &[u8],
    max_size: u64,
    opener: &Opener,
) -> (Observed, Option<Inode>) {
    if rel.is_empty() {
        return (Observed::Dir, None);
    }
    let (parent, name) = split(rel);
    if parent.is_empty() {
        return observe_entry_linked(root, name, max_size, opener);
    }
    match open_dir(root, parent) {
        Ok(dir) => observe_entry_linked(dir.as_fd(), name, max_size, opener),
        Err(Errno::EACCES) => (Observed::Unreadable(Errno::EACCES as i32), None),
        Err(_) => (Observed::Absent, None),
    }
}

/// Observe the entry `name` (one component) of the directory `dir`.
pub fn observe_entry(dir: BorrowedFd<'_>, name: &[u8], max_size: u64, opener: &Opener) -> Observed {
    observe_entry_linked(dir, name, max_size, opener).0
}

/// [`observe_entry`], and the inode read when it is a regular file that
/// could be opened.
pub fn observe_entry_linked(
    dir: BorrowedFd<'_>,
    name: &[u8],
    max_size: u64,
    opener: &Opener,
) -> (Observed, Option<Inode>) {
    observe_attempt(dir, name, max_size, opener, FLIP_RETRIES)
}

/// How many times an entry that keeps changing type between two system
/// calls (a file swapped for a symlink and back) is looked at again before
/// it is reported unreadable for this sample.
const FLIP_RETRIES: u32 = 3;

/// Look again at an entry that changed type under us, or give up.
fn retry(
    dir: BorrowedFd<'_>,
    name: &[u8],
    max_size: u64,
    opener: &Opener,
    tries: u32,
) -> (Observed, Option<Inode>) {
    match tries.checked_sub(1) {
        Some(left) => observe_attempt(dir, name, max_size, opener, left),
        None => (Observed::Unreadable(Errno::EAGAIN as i32), None),
    }
}

fn observe_attempt(
    dir: BorrowedFd<'_>,
    name: &[u8],
    max_size: u64,
    opener: &Opener,
    tries: u32,
) -> (Observed, Option<Inode>) {
    let stat = match fstatat(dir, bytes_as_path(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return (Observed::Absent, None),
        Err(errno) => return (Observed::Unreadable(errno as i32), None),
    };
    let observed = match file_type(&stat) {
        SFlag::S_IFDIR => Observed::Dir,
        SFlag::S_IFLNK => match readlinkat(dir, bytes_as_path(name)) {
            Ok(target) => {
                use std::os::unix::ffi::OsStringExt;
                Observed::Symlink(target.into_vec())
            }
            Err(Errno::ENOENT) => Observed::Absent,
            Err(Errno::EINVAL) => return retry(dir, name, max_size, opener, tries),
            Err(errno) => Observed::Unreadable(errno as i32),
        },
        SFlag::S_IFREG => return read_regular(dir, name, max_size, opener, tries),
        _ => Observed::Special,
    };
    (observed, None)
}

fn file_type(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

fn read_regular(
    dir: BorrowedFd<'_>,
    name: &[u8],
    max_size: u64,
    opener: &Opener,
    tries: u32,
) -> (Observed, Option<Inode>) {
    // Opened with the target's rights when monitord has more (see
    // `credentials`); read here.
    let fd = match opener.open(dir, name) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return (Observed::Absent, None),
        // It became a symlink after the fstatat: look again.
        Err(Errno::ELOOP) => return retry(dir, name, max_size, opener, tries),
        Err(errno) => return (Observed::Unreadable(errno as i32), None),
    };
    let stat = match fstat(&fd) {
        Ok(stat) => stat,
        Err(errno) => return (Observed::Unreadable(errno as i32), None),
    };
    if file_type(&stat) != SFlag::S_IFREG {
        // Swapped for a FIFO, device or directory between the two calls.
        return retry(dir, name, max_size, opener, tries);
    }
    let inode =
        Some(Inode { dev: stat.st_dev, ino: stat.st_ino, nlink: stat.st_nlink, mode: stat.st_mode & 0o7777 });
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > max_size {
        return (Observed::TooLarge(size), inode);
    }
    let observed = match read_limited(&fd, size, max_size) {
        Ok(Some(content)) => {
            let head = &content[..content.len().min(text::SNIFF_BYTES)];
            if text::is_text(head) { Observed::File(content) } else { Observed::Binary }
        }
        Ok(None) => Observed::TooLarge(size.max(max_size.saturating_add(1))),
        Err(err) => Observed::Unreadable(err.raw_os_error().unwrap_or(libc::EIO)),
    };
    (observed, inode)
}

/// Read a whole file of expected `size`, giving up (None) past `max` bytes.
fn read_limited(fd: &OwnedFd, size: u64, max: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    crate::failpoint::check("tree.read")?;
    let cap = usize::try_from(size.min(max)).unwrap_or(0);
    let mut content = Vec::with_capacity(cap + 1);
    let file = std::fs::File::from(fd.try_clone()?);
    let limit = max.saturating_add(1);
    file.take(limit).read_to_end(&mut content)?;
    if content.len() as u64 > max {
        return Ok(None);
    }
    Ok(Some(content))
}

/// The identity of a directory, to recognise the store inside the tree.
pub fn dir_identity(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    fstat(fd).ok().map(|s| (s.st_dev, s.st_ino))
}

/// List the names in an open directory (without `.` and `..`), each with
/// whether the directory entry says it is a directory.
///
/// # Errors
/// The errno of reading the directory.
pub fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<(Vec<u8>, bool)>, Errno> {
    let fd = openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut listing = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(nix::dir::Type::Directory) => true,
            Some(_) => false,
            None => matches!(
                fstatat(dir, bytes_as_path(name), AtFlags::AT_SYMLINK_NOFOLLOW).map(|s| file_type(&s)),
                Ok(SFlag::S_IFDIR)
            ),
        };
        names.push((name.to_vec(), is_dir));
    }
    Ok(names)
}

/// The visitor of [`walk`]: `(relative dir, its fd, its entries as
/// (name, is_dir))`.
pub type Visit<'a> = dyn FnMut(&[u8], BorrowedFd<'_>, &[(Vec<u8>, bool)]) + 'a;

/// Walk the directories below `start` (included), depth first, calling
/// `visit(rel_dir, dir_fd, entries)` for each directory that could be
/// opened, with the entries `keep(path, is_dir)` keeps (a
/// [`Matcher`](crate::exclude::Matcher) decides). What it does not keep and
/// the directory whose identity is `skip` (the store, when it lies inside
/// the tree) are pruned. Directories that cannot be opened are reported
/// through `on_error`.
pub fn walk(
    root: BorrowedFd<'_>,
    start: &[u8],
    keep: &dyn Fn(&[u8], bool) -> bool,
    skip: Option<(u64, u64)>,
    visit: &mut Visit<'_>,
    on_error: &mut dyn FnMut(&[u8], Errno),
) {
    let mut stack = vec![start.to_vec()];
    while let Some(rel) = stack.pop() {
        let dir = match open_dir(root, &rel) {
            Ok(dir) => dir,
            Err(errno) => {
                on_error(&rel, errno);
                continue;
            }
        };
        if skip.is_some() && dir_identity(dir.as_fd()) == skip {
            continue;
        }
        let entries = match list_dir(dir.as_fd()) {
            Ok(entries) => entries,
            Err(errno) => {
                on_error(&rel, errno);
                continue;
            }
        };
        let entries: Vec<(Vec<u8>, bool)> =
            entries.into_iter().filter(|(name, is_dir)| keep(&join(&rel, name), *is_dir)).collect();
        visit(&rel, dir.as_fd(), &entries);
        for (name, is_dir) in entries.iter().rev() {
            if *is_dir {
                stack.push(join(&rel, name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn root_of(dir: &std::path::Path) -> OwnedFd {
        nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
    }

    #[test]
    fn excludes_match_names_anywhere_and_paths_exactly() {
        let ex = Excludes::new(&[".git", "*.log", "build/out"]).unwrap();
        assert!(ex.is_excluded(b".git"));
        assert!(ex.is_excluded(b"sub/.git"));
        assert!(ex.is_excluded(b"a/b.log"));
        assert!(ex.is_excluded(b"build/out"));
        assert!(!ex.is_excluded(b"other/build/out"));
        assert!(!ex.is_excluded(b"a.txt"));
        assert!(ex.is_excluded_anywhere(b".git/config"));
        assert!(!ex.is_excluded_anywhere(b"src/main.rs"));
        assert!(Excludes::new(&["a[b"]).is_err());
    }

    #[test]
    fn symlinks_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "top secret\n").unwrap();
        let tree = tempfile::tempdir().unwrap();
        symlink(outside.path().join("secret"), tree.path().join("link")).unwrap();
        symlink(outside.path(), tree.path().join("dirlink")).unwrap();
        fs::write(tree.path().join("plain.txt"), "hello\n").unwrap();
        let root = root_of(tree.path());
        let max = 1 << 20;
        let target = outside.path().join("secret").into_os_string().into_encoded_bytes();
        assert_eq!(observe(root.as_fd(), b"link", max, &Opener::Direct), Observed::Symlink(target));
        assert_eq!(observe(root.as_fd(), b"dirlink/secret", max, &Opener::Direct), Observed::Absent);
        assert_eq!(
            observe(root.as_fd(), b"plain.txt", max, &Opener::Direct),
            Observed::File(b"hello\n".to_vec())
        );
        assert_eq!(observe(root.as_fd(), b"../x", max, &Opener::Direct), Observed::Absent);
        assert_eq!(observe(root.as_fd(), b"missing", max, &Opener::Direct), Observed::Absent);
    }

    #[test]
    fn binary_large_and_special_files_are_classified() {
        let tree = tempfile::tempdir().unwrap();
        fs::write(tree.path().join("bin"), b"\x7fELF\x02\x01\x01\x00\x00").unwrap();
        fs::write(tree.path().join("big.txt"), "x".repeat(100)).unwrap();
        nix::unistd::mkfifo(&tree.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        fs::create_dir(tree.path().join("d")).unwrap();
        let root = root_of(tree.path());
        assert_eq!(observe(root.as_fd(), b"bin", 1000, &Opener::Direct), Observed::Binary);
        assert_eq!(observe(root.as_fd(), b"big.txt", 50, &Opener::Direct), Observed::TooLarge(100));
        assert_eq!(observe(root.as_fd(), b"fifo", 1000, &Opener::Direct), Observed::Special);
        assert_eq!(observe(root.as_fd(), b"d", 1000, &Opener::Direct), Observed::Dir);
    }

    #[test]
    fn walk_prunes_excluded_dirs_and_visits_the_rest() {
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir_all(tree.path().join("a/b")).unwrap();
        fs::create_dir_all(tree.path().join(".git/objects")).unwrap();
        fs::write(tree.path().join("a/b/f"), "x").unwrap();
        let root = root_of(tree.path());
        let ex = crate::exclude::Matcher::new(&[".git"], None, false).unwrap();
        let mut seen = Vec::new();
        walk(
            root.as_fd(),
            b"",
            &|path, is_dir| !ex.is_excluded(path, is_dir),
            None,
            &mut |rel, _, entries| {
                seen.push((rel.to_vec(), entries.len()));
            },
            &mut |_, _| panic!("no errors expected"),
        );
        seen.sort();
        assert_eq!(seen, vec![(b"".to_vec(), 1), (b"a".to_vec(), 1), (b"a/b".to_vec(), 1)]);
    }

    #[test]
    fn without_openat2_directories_open_component_by_component() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("a/link")).unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let root = root.as_fd();
        assert!(open_dir_by_components(root, b"").is_ok());
        assert!(open_dir_by_components(root, b"a/b").is_ok());
        assert!(matches!(open_dir_by_components(root, b"a/link"), Err(Errno::ELOOP | Errno::ENOTDIR)));
        assert_eq!(open_dir_by_components(root, b"a/../..").err(), Some(Errno::EXDEV));
        assert_eq!(open_dir_by_components(root, b"missing").err(), Some(Errno::ENOENT));
    }

    #[test]
    fn an_entry_that_keeps_flipping_is_unreadable_after_the_retries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        assert_eq!(
            retry(root.as_fd(), b"f", 100, &Opener::Direct, 0).0,
            Observed::Unreadable(Errno::EAGAIN as i32)
        );
        assert_eq!(retry(root.as_fd(), b"f", 100, &Opener::Direct, 1).0, Observed::File(b"x".to_vec()));
    }
}
