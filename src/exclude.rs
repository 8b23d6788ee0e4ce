//! What is left out of the recorded tree: one [`Matcher`] answers for
//! every part that decides (the baseline and rescan walks, the sampler's
//! dirty paths, the event backends' watches and the poll scan).
//!
//! It combines, in git's order of precedence (gitignore(5)), highest first:
//!
//! 1. the `--exclude` globs, which leave a path out whatever else says;
//! 2. the `--exclude-from FILE` patterns (git's "patterns read from the
//!    command line");
//! 3. with `--gitignore`, the `.ignore` and `.gitignore` files of the tree,
//!    each applying to its own directory's subtree, a deeper file
//!    overriding a shallower one (and `.ignore` its sibling `.gitignore`,
//!    as ripgrep does);
//! 4. with `--gitignore`, the root's `.git/info/exclude`.
//!
//! Within one source the last matching pattern wins, and a `!` pattern
//! keeps what an earlier one left out. A path below a directory that is
//! left out is left out too (git cannot re-include a file whose parent
//! directory is excluded). Patterns are matched by the `ignore` crate's
//! [`Gitignore`], which implements git's rules (anchored `/x`, directory
//! only `x/`, `**`).
//!
//! The ignore files of the tree are read strictly beneath the root, like
//! every other file ([`tree::observe_entry`]): a `.gitignore` that is a
//! symlink is not followed (git does not follow them either). They are read
//! at the baseline and again only when an event names one (or a directory
//! that holds one): asking the matcher never reads anything, and its cost
//! grows with the depth of the path, not with the tree.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::credentials::Opener;
use crate::tree::{self, Excludes, Observed};

/// The per-directory ignore files honoured with `--gitignore`, in order of
/// precedence within their directory.
pub const IGNORE_FILES: [&[u8]; 2] = [b".ignore", b".gitignore"];

/// Where git keeps the repository's own exclude patterns, below the root.
pub const INFO_EXCLUDE: &[u8] = b".git/info/exclude";

/// Ignore files larger than this are not read (and leave nothing out).
const MAX_IGNORE_FILE: u64 = 4 << 20;

/// Errors building a matcher from the command line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An `--exclude` glob is invalid.
    #[error(transparent)]
    Glob(#[from] tree::Error),
    /// The `--exclude-from` file cannot be read.
    #[error("cannot read --exclude-from {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of the `--exclude-from` file is not a valid pattern.
    #[error("--exclude-from {}, line {line}: {source}", path.display())]
    Pattern {
        /// The file.
        path: PathBuf,
        /// Its line number (from 1).
        line: usize,
        /// Why.
        #[source]
        source: ignore::Error,
    },
}

/// One ignore file's patterns, and a hash of its content (to tell whether
/// reading it again changed anything).
#[derive(Clone, Debug)]
struct Rules {
    patterns: Gitignore,
    hash: u64,
}

impl Rules {
    /// Compile `content`, skipping lines that are not valid patterns (git
    /// ignores them too).
    fn parse(content: &[u8]) -> Rules {
        let mut builder = GitignoreBuilder::new(".");
        for line in String::from_utf8_lossy(content).lines() {
            let _ = builder.add_line(None, line);
        }
        Rules {
            patterns: builder.build().unwrap_or_else(|_| Gitignore::empty()),
            hash: crate::diff::hash(content),
        }
    }

    /// The verdict of these patterns on `rel` (relative to their
    /// directory): `Some(true)` left out, `Some(false)` kept by a `!`
    /// pattern, `None` no pattern matches.
    fn verdict(&self, rel: &[u8], is_dir: bool) -> Option<bool> {
        match self.patterns.matched(tree::as_path(rel), is_dir) {
            Match::None => None,
            Match::Ignore(_) => Some(true),
            Match::Whitelist(_) => Some(false),
        }
    }
}

/// The ignore files of one directory, by their index in [`IGNORE_FILES`]
/// (shared: handing the rules to the event thread copies no pattern).
type DirRules = [Option<Arc<Rules>>; 2];

/// Where to read ignore files from: the tree's root fd, the opener of its
/// files and the store to skip (see [`tree::walk`]).
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    /// The tree's root directory.
    pub root: BorrowedFd<'a>,
    /// Opens files with the target's rights.
    pub opener: &'a Opener,
    /// The directory never to enter (the store).
    pub skip: Option<(u64, u64)>,
}

/// The decision of what is left out (see the module doc).
#[derive(Clone, Debug)]
pub struct Matcher {
    globs: Excludes,
    from: Option<(PathBuf, Arc<Rules>)>,
    gitignore: bool,
    /// The ignore files read, by the directory (relative path) they are in.
    dirs: BTreeMap<Vec<u8>, DirRules>,
    /// The root's `.git/info/exclude`.
    info: Option<Arc<Rules>>,
}

impl Matcher {
    /// The matcher of the command line: `--exclude` globs, the patterns of
    /// the `--exclude-from` file, and whether to honour the tree's ignore
    /// files (read later, by [`Matcher::reload_tree`]).
    ///
    /// # Errors
    /// [`Error`] naming the bad glob, or the file that cannot be read and why.
    pub fn new<S: AsRef<str>>(
        globs: &[S],
        exclude_from: Option<&Path>,
        gitignore: bool,
    ) -> Result<Matcher, Error> {
        let globs = Excludes::new(globs)?;
        let from = match exclude_from {
            Some(path) => {
                let rules = read_exclude_from(path)?;
                Some((std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()), Arc::new(rules)))
            }
            None => None,
        };
        Ok(Matcher { globs, from, gitignore, dirs: BTreeMap::new(), info: None })
    }

    /// Whether `.gitignore`, `.ignore` and `.git/info/exclude` are honoured.
    pub fn gitignore(&self) -> bool {
        self.gitignore
    }

    /// The `--exclude-from` file, if any.
    pub fn exclude_from(&self) -> Option<&Path> {
        self.from.as_ref().map(|(path, _)| path.as_path())
    }

    /// How many ignore files of the tree are in force.
    pub fn ignore_files(&self) -> usize {
        let per_dir: usize = self.dirs.values().map(|d| d.iter().flatten().count()).sum();
        per_dir + usize::from(self.info.is_some())
    }

    /// Whether `name` is the name of a per-directory ignore file (and
    /// ignore files are honoured).
    pub fn is_ignore_file(&self, name: &[u8]) -> bool {
        self.gitignore && IGNORE_FILES.contains(&name)
    }

    /// Whether `rel` is left out, its ancestors being known not to be (as
    /// in a walk that prunes what is left out). `is_dir`: whether it is a
    /// directory (patterns ending in `/` match only directories).
    pub fn is_excluded(&self, rel: &[u8], is_dir: bool) -> bool {
        if rel.is_empty() {
            return false;
        }
        self.globs.is_excluded(rel) || self.verdict(rel, is_dir) == Some(true)
    }

    /// Whether `rel` or any of its ancestors is left out (for paths that
    /// did not come from a walk).
    pub fn is_excluded_anywhere(&self, rel: &[u8], is_dir: bool) -> bool {
        let ancestors = rel.iter().enumerate().filter(|&(_, &b)| b == b'/').map(|(i, _)| &rel[..i]);
        ancestors
            .map(|dir| (dir, true))
            .chain(std::iter::once((rel, is_dir)))
            .any(|(p, d)| self.is_excluded(p, d))
    }

    /// Whether an event backend must report a change of `rel`, its
    /// ancestors being known not to be left out: it is not left out, or it
    /// is an ignore file, whose rules are in force even where it leaves
    /// itself out (as in git).
    pub fn is_reported(&self, rel: &[u8], is_dir: bool) -> bool {
        !self.is_excluded(rel, is_dir) || (!is_dir && self.is_ignore_file(tree::split(rel).1))
    }

    /// [`Matcher::is_reported`] for a path that did not come from a walk.
    pub fn is_reported_anywhere(&self, rel: &[u8], is_dir: bool) -> bool {
        let mut dir = rel;
        while !dir.is_empty() {
            dir = tree::split(dir).0;
            if self.is_excluded(dir, true) {
                return false;
            }
        }
        self.is_reported(rel, is_dir)
    }

    /// The verdict of the patterns on `rel` (see [`Rules::verdict`]), in
    /// order of precedence.
    fn verdict(&self, rel: &[u8], is_dir: bool) -> Option<bool> {
        if let Some((_, from)) = &self.from
            && let Some(verdict) = from.verdict(rel, is_dir)
        {
            return Some(verdict);
        }
        if !self.gitignore {
            return None;
        }
        if !self.dirs.is_empty() {
            let mut dir = rel;
            loop {
                dir = tree::split(dir).0;
                if let Some(rules) = self.dirs.get(dir) {
                    let below = if dir.is_empty() { rel } else { &rel[dir.len() + 1..] };
                    for rules in rules.iter().flatten() {
                        if let Some(verdict) = rules.verdict(below, is_dir) {
                            return Some(verdict);
                        }
                    }
                }
                if dir.is_empty() {
                    break;
                }
            }
        }
        self.info.as_ref().and_then(|info| info.verdict(rel, is_dir))
    }

    /// Read the ignore files of the directory `dir` (open as `fd`) again.
    /// Returns whether its rules changed.
    fn load_dir(&mut self, dir: &[u8], fd: BorrowedFd<'_>, opener: &Opener) -> bool {
        let mut now: DirRules = [None, None];
        for (slot, name) in now.iter_mut().zip(IGNORE_FILES) {
            if let Observed::File(content) = tree::observe_entry(fd, name, MAX_IGNORE_FILE, opener) {
                *slot = Some(Arc::new(Rules::parse(&content)));
            }
        }
        let hashes = |rules: &DirRules| rules.clone().map(|r| r.map(|r| r.hash));
        let before = self.dirs.get(dir).map(hashes).unwrap_or([None, None]);
        let changed = before != hashes(&now);
        if now.iter().all(Option::is_none) {
            self.dirs.remove(dir);
        } else {
            self.dirs.insert(dir.to_vec(), now);
        }
        changed
    }

    /// Read again the ignore files of the directory `dir` alone (an event
    /// named one of them). Returns whether its rules changed.
    pub fn reload_dir(&mut self, at: Reader<'_>, dir: &[u8]) -> bool {
        if !self.gitignore {
            return false;
        }
        if self.is_excluded_anywhere(dir, true) {
            return self.dirs.remove(dir).is_some();
        }
        match tree::open_dir(at.root, dir) {
            Ok(fd) => self.load_dir(dir, fd.as_fd(), at.opener),
            Err(_) => self.dirs.remove(dir).is_some(),
        }
    }

    /// Read again every ignore file below `start` (included), as a walk
    /// that prunes what the rules read so far leave out: the rules of a
    /// directory are in force before its entries are judged. Rules of
    /// directories no longer reached are dropped. Returns the directories
    /// whose rules changed, shallowest first.
    pub fn reload_tree(&mut self, at: Reader<'_>, start: &[u8]) -> Vec<Vec<u8>> {
        if !self.gitignore {
            return Vec::new();
        }
        let mut changed = Vec::new();
        let mut reached = std::collections::BTreeSet::new();
        let mut stack = Vec::new();
        if start.is_empty() || !self.is_excluded_anywhere(start, true) {
            stack.push(start.to_vec());
        }
        while let Some(rel) = stack.pop() {
            let Ok(fd) = tree::open_dir(at.root, &rel) else { continue };
            if at.skip.is_some() && tree::dir_identity(fd.as_fd()) == at.skip {
                continue;
            }
            let Ok(entries) = tree::list_dir(fd.as_fd()) else { continue };
            if self.load_dir(&rel, fd.as_fd(), at.opener) {
                changed.push(rel.clone());
            }
            for (name, is_dir) in entries.iter().rev() {
                let path = tree::join(&rel, name);
                if *is_dir && !self.is_excluded(&path, true) {
                    stack.push(path);
                }
            }
            reached.insert(rel);
        }
        let gone: Vec<Vec<u8>> = self
            .dirs
            .keys()
            .filter(|d| (start.is_empty() || tree::is_within(d, start)) && !reached.contains(*d))
            .cloned()
            .collect();
        for dir in gone {
            self.dirs.remove(&dir);
            changed.push(dir);
        }
        if start.is_empty() && self.reload_info(at) {
            changed.push(Vec::new());
        }
        changed.sort();
        changed.dedup();
        changed
    }

    /// Read the root's `.git/info/exclude` again (strictly beneath the
    /// root: a `.git` that is a symlink or a file leads nowhere). Returns
    /// whether it changed.
    pub fn reload_info(&mut self, at: Reader<'_>) -> bool {
        if !self.gitignore {
            return false;
        }
        let now = match tree::observe(at.root, INFO_EXCLUDE, MAX_IGNORE_FILE, at.opener) {
            Observed::File(content) => Some(Arc::new(Rules::parse(&content))),
            _ => None,
        };
        let changed = self.info.as_ref().map(|r| r.hash) != now.as_ref().map(|r| r.hash);
        self.info = now;
        changed
    }
}

/// Read and compile an `--exclude-from` file; unlike the tree's ignore
/// files, a bad pattern here is an error of the command line.
fn read_exclude_from(path: &Path) -> Result<Rules, Error> {
    let content = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let text = std::str::from_utf8(&content).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let mut builder = GitignoreBuilder::new(".");
    for (i, line) in text.lines().enumerate() {
        builder.add_line(None, line).map_err(|source| Error::Pattern {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
    }
    let patterns =
        builder.build().map_err(|source| Error::Pattern { path: path.to_path_buf(), line: 0, source })?;
    Ok(Rules { patterns, hash: crate::diff::hash(&content) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::fd::OwnedFd;

    fn root_of(dir: &Path) -> OwnedFd {
        fs::File::open(dir).unwrap().into()
    }

    /// A matcher with `--gitignore` over `dir`, its ignore files read.
    fn read(dir: &Path, globs: &[&str], from: Option<&Path>) -> Matcher {
        let root = root_of(dir);
        let mut matcher = Matcher::new(globs, from, true).unwrap();
        let at = Reader { root: root.as_fd(), opener: &Opener::Direct, skip: None };
        matcher.reload_tree(at, b"");
        matcher
    }

    fn write(dir: &Path, rel: &str, content: &str) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    #[test]
    fn negation_anchoring_and_directory_only_patterns_follow_git() {
        let tree = tempfile::tempdir().unwrap();
        write(tree.path(), ".gitignore", "*.log\n!keep.log\n/top.txt\nbuild/\n**/gen/*.c\n# comment\n");
        let m = read(tree.path(), &[".git"], None);
        assert!(m.is_excluded(b"a.log", false));
        assert!(m.is_excluded(b"sub/b.log", false));
        assert!(!m.is_excluded(b"keep.log", false));
        assert!(!m.is_excluded(b"sub/keep.log", false));
        assert!(m.is_excluded(b"top.txt", false));
        assert!(!m.is_excluded(b"sub/top.txt", false), "an anchored pattern matches at its own level only");
        assert!(m.is_excluded(b"build", true));
        assert!(!m.is_excluded(b"build", false), "a pattern ending in / matches directories only");
        assert!(m.is_excluded(b"x/y/gen/main.c", false));
        assert!(!m.is_excluded(b"x/y/gen/main.h", false));
        assert!(m.is_excluded_anywhere(b"build/out.txt", false), "below a directory left out");
        assert!(!m.is_excluded(b"# comment", false));
        assert!(m.is_excluded(b".git", true), "the --exclude globs still apply");
        assert_eq!(m.ignore_files(), 1);
    }

    #[test]
    fn a_nested_ignore_file_applies_below_it_and_overrides_the_shallower_one() {
        let tree = tempfile::tempdir().unwrap();
        write(tree.path(), ".gitignore", "*.tmp\n");
        write(tree.path(), "sub/.gitignore", "!wanted.tmp\nlocal.txt\n");
        write(tree.path(), "sub/.ignore", "secret\n");
        let m = read(tree.path(), &[], None);
        assert!(m.is_excluded(b"x.tmp", false));
        assert!(m.is_excluded(b"sub/x.tmp", false));
        assert!(!m.is_excluded(b"sub/wanted.tmp", false), "the deeper file's ! wins");
        assert!(m.is_excluded(b"wanted.tmp", false), "but only below it");
        assert!(m.is_excluded(b"sub/local.txt", false));
        assert!(m.is_excluded(b"sub/deeper/local.txt", false));
        assert!(!m.is_excluded(b"local.txt", false), "a nested file applies only below it");
        assert!(m.is_excluded(b"sub/secret", false), ".ignore is honoured");
        assert!(!m.is_excluded(b"secret", false));
        assert_eq!(m.ignore_files(), 3);
    }

    #[test]
    fn ignore_files_inside_a_directory_left_out_are_not_read() {
        let tree = tempfile::tempdir().unwrap();
        write(tree.path(), ".gitignore", "vendor/\n");
        write(tree.path(), "vendor/.gitignore", "!*\n");
        let m = read(tree.path(), &[], None);
        assert!(m.is_excluded_anywhere(b"vendor/lib.c", false));
        assert_eq!(m.ignore_files(), 1);
    }

    #[test]
    fn git_info_exclude_is_read_below_the_tracked_ones() {
        let tree = tempfile::tempdir().unwrap();
        write(tree.path(), ".git/info/exclude", "local/\n*.bak\n");
        write(tree.path(), ".gitignore", "!keep.bak\n");
        let m = read(tree.path(), &[".git"], None);
        assert!(m.is_excluded(b"local", true));
        assert!(m.is_excluded(b"a.bak", false));
        assert!(!m.is_excluded(b"keep.bak", false), ".gitignore overrides .git/info/exclude");
        assert_eq!(m.ignore_files(), 2);
    }

    #[test]
    fn without_gitignore_the_tree_files_are_not_read() {
        let tree = tempfile::tempdir().unwrap();
        write(tree.path(), ".gitignore", "*.txt\n");
        let root = root_of(tree.path());
        let mut m = Matcher::new(&[".git"], None, false).unwrap();
        let at = Reader { root: root.as_fd(), opener: &Opener::Direct, skip: None };
        assert!(m.reload_tree(at, b"").is_empty());
        assert!(!m.is_excluded(b"a.txt", false));
        assert!(!m.gitignore());
        assert_eq!(m.ignore_files(), 0);
    }

    #[test]
    fn exclude_from_reads_gitignore_syntax_and_names_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("patterns");
        fs::write(&from, "*.o\n!main.o\n/root-only\ncache/\n").unwrap();
        let m = Matcher::new::<&str>(&[], Some(&from), false).unwrap();
        assert!(m.is_excluded(b"x/a.o", false));
        assert!(!m.is_excluded(b"main.o", false));
        assert!(m.is_excluded(b"root-only", false));
        assert!(!m.is_excluded(b"a/root-only", false));
        assert!(m.is_excluded(b"a/cache", true));
        assert!(!m.is_excluded(b"a/cache", false));
        assert_eq!(m.exclude_from(), Some(from.as_path()));

        let bad = dir.path().join("bad");
        fs::write(&bad, "ok.txt\n[z-a]\n").unwrap();
        let message = Matcher::new::<&str>(&[], Some(&bad), false).unwrap_err().to_string();
        assert!(message.contains("bad, line 2"), "{message}");

        let missing = dir.path().join("missing");
        let err = Matcher::new::<&str>(&[], Some(&missing), false).unwrap_err();
        assert!(matches!(err, Error::Read { .. }));
        let message = err.to_string();
        assert!(message.contains("missing") && message.contains("No such file"), "{message}");
    }

    #[test]
    fn exclude_from_takes_precedence_over_the_tree_files() {
        let tree = tempfile::tempdir().unwrap();
        write(tree.path(), ".gitignore", "*.cfg\n");
        let elsewhere = tempfile::tempdir().unwrap();
        let from = elsewhere.path().join("patterns");
        fs::write(&from, "!site.cfg\n").unwrap();
        let m = read(tree.path(), &[], Some(&from));
        assert!(m.is_excluded(b"a.cfg", false));
        assert!(!m.is_excluded(b"site.cfg", false));
    }

    #[test]
    fn reloading_tells_which_directories_changed() {
        let tree = tempfile::tempdir().unwrap();
        write(tree.path(), "a/.gitignore", "x\n");
        write(tree.path(), "b/file", "");
        let root = root_of(tree.path());
        let at = Reader { root: root.as_fd(), opener: &Opener::Direct, skip: None };
        let mut m = Matcher::new::<&str>(&[], None, true).unwrap();
        assert_eq!(m.reload_tree(at, b""), vec![b"a".to_vec()]);
        assert!(m.reload_tree(at, b"").is_empty(), "nothing changed");
        assert!(!m.reload_dir(at, b"a"));
        write(tree.path(), "a/.gitignore", "y\n");
        assert!(m.reload_dir(at, b"a"));
        assert!(m.is_excluded(b"a/y", false) && !m.is_excluded(b"a/x", false));
        write(tree.path(), "b/.ignore", "file\n");
        assert_eq!(m.reload_tree(at, b"b"), vec![b"b".to_vec()]);
        fs::remove_dir_all(tree.path().join("a")).unwrap();
        assert_eq!(m.reload_tree(at, b""), vec![b"a".to_vec()]);
        assert!(!m.is_excluded(b"a/y", false));
        write(tree.path(), ".git/info/exclude", "z\n");
        assert!(m.reload_info(at));
        assert!(!m.reload_info(at));
        assert!(m.is_excluded(b"z", false));
    }

    #[test]
    fn an_ignore_file_left_out_is_still_reported_to_the_sampler() {
        let tree = tempfile::tempdir().unwrap();
        write(tree.path(), ".gitignore", ".*\nvendor/\n");
        let m = read(tree.path(), &[], None);
        assert!(m.is_excluded(b".gitignore", false));
        assert!(m.is_reported(b".gitignore", false), "its edits must reach the sampler");
        assert!(m.is_reported(b"sub/.ignore", false));
        assert!(!m.is_reported(b".env", false));
        assert!(!m.is_reported_anywhere(b"vendor/.gitignore", false), "not below a directory left out");
        assert!(m.is_reported_anywhere(b"src/main.rs", false));
        let plain = Matcher::new(&[".*"], None, false).unwrap();
        assert!(!plain.is_reported(b".gitignore", false), "without --gitignore it is a file like any other");
    }

    #[test]
    fn a_symlinked_ignore_file_is_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("rules"), "*\n").unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("rules"), tree.path().join(".gitignore")).unwrap();
        let m = read(tree.path(), &[], None);
        assert!(!m.is_excluded(b"a.txt", false));
        assert_eq!(m.ignore_files(), 0);
    }
}
