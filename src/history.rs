//! Replaying file changes over an in-memory tree, forwards (older →
//! newer) or backwards (newer → older). Every step is checked against the
//! hashes the patches carry, so a wrong application is an error, never a
//! silently wrong tree. Used by `restore`, by start-up repair of the mirror
//! and by `verify`.

use std::collections::BTreeMap;

use crate::diff::{self, Patch};
use crate::journal::record::{Change, FileChange, Node};

/// One entry's kind and content.
pub type Entry = (Node, Vec<u8>);

/// A tree as path → (kind, content).
pub type TreeState = BTreeMap<Vec<u8>, Entry>;

/// The permission bits of a tree's files, where recorded: path → mode.
pub type Modes = BTreeMap<Vec<u8>, u32>;

/// Follow a record's changes forwards in `modes`: a rename moves the
/// path's mode, a change that sets one records it, a deletion forgets it.
pub fn modes_forward(modes: &mut Modes, changes: &[FileChange]) {
    for change in changes {
        if let Some(from) = &change.from
            && let Some(mode) = modes.remove(from)
        {
            modes.insert(change.path.clone(), mode);
        }
        match (change.change, change.mode) {
            (Change::Deleted, _) => {
                modes.remove(&change.path);
            }
            (_, Some(mode)) => {
                modes.insert(change.path.clone(), mode);
            }
            (Change::Created, None) => {
                modes.remove(&change.path);
            }
            _ => {}
        }
    }
}

/// Follow a record's changes backwards in `modes` (the tree after → the
/// tree before).
pub fn modes_reverse(modes: &mut Modes, changes: &[FileChange]) {
    for change in changes.iter().rev() {
        match (change.change, change.old_mode) {
            (Change::Created, _) => {
                modes.remove(&change.path);
            }
            (_, Some(mode)) => {
                modes.insert(change.path.clone(), mode);
            }
            (Change::Deleted, None) => {
                modes.remove(&change.path);
            }
            _ => {}
        }
        if let Some(from) = &change.from
            && let Some(mode) = modes.remove(&change.path)
        {
            modes.insert(from.clone(), mode);
        }
    }
}

/// A change that does not apply to the tree it was given.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}")]
pub struct Error {
    /// The path, lossily printable.
    pub path: String,
    /// What is wrong.
    pub what: String,
}

fn err(path: &[u8], what: impl Into<String>) -> Error {
    Error { path: String::from_utf8_lossy(path).into_owned(), what: what.into() }
}

fn patch_err(path: &[u8], e: diff::Error) -> Error {
    err(path, e.to_string())
}

fn take(state: &mut TreeState, path: &[u8], hash: u64, node: Node) -> Result<Vec<u8>, Error> {
    match state.remove(path) {
        Some((found, content)) if found == node && diff::hash(&content) == hash => Ok(content),
        Some(_) => Err(err(path, "content does not match the recorded hash")),
        None => Err(err(path, "missing where the journal expects it")),
    }
}

fn place(state: &mut TreeState, path: &[u8], node: Node, content: Vec<u8>) -> Result<(), Error> {
    if state.insert(path.to_vec(), (node, content)).is_some() {
        return Err(err(path, "already exists where the journal expects none"));
    }
    Ok(())
}

fn apply(state: &mut TreeState, change: &FileChange, patch: &Patch, forward: bool) -> Result<(), Error> {
    let node = change.node;
    let (from_path, to_path): (&[u8], &[u8]) = match (&change.from, forward) {
        (Some(from), true) => (from, &change.path),
        (Some(from), false) => (&change.path, from),
        (None, _) => (&change.path, &change.path),
    };
    let existed_before =
        !matches!((change.change, forward), (Change::Created, true) | (Change::Deleted, false));
    let exists_after =
        !matches!((change.change, forward), (Change::Deleted, true) | (Change::Created, false));
    let old = if existed_before { take(state, from_path, patch.old_hash, node)? } else { Vec::new() };
    let new = patch.apply_forward(&old).map_err(|e| patch_err(to_path, e))?;
    if exists_after {
        place(state, to_path, node, new)?;
    }
    Ok(())
}

/// Apply a record's changes forwards (the tree before → the tree after).
///
/// # Errors
/// [`Error`] on the first change that does not apply.
pub fn apply_forward(state: &mut TreeState, changes: &[FileChange]) -> Result<(), Error> {
    for change in changes {
        apply(state, change, &change.patch, true)?;
    }
    Ok(())
}

/// Apply a record's changes backwards (the tree after → the tree before).
///
/// # Errors
/// [`Error`] on the first change that does not apply.
pub fn apply_reverse(state: &mut TreeState, changes: &[FileChange]) -> Result<(), Error> {
    for change in changes.iter().rev() {
        apply(state, change, &change.patch.reversed(), false)?;
    }
    Ok(())
}

/// Where [`roll_forward`] finds and puts entries: an in-memory tree
/// (`verify`) or the mirror on disk (start-up repair).
pub trait Entries {
    /// Why an access failed.
    type Error;
    /// The entry at `path`, if any.
    ///
    /// # Errors
    /// When it cannot be read.
    fn get(&self, path: &[u8]) -> Result<Option<Entry>, Self::Error>;
    /// Put `content` at `path`.
    ///
    /// # Errors
    /// When it cannot be written.
    fn put(&mut self, path: &[u8], node: Node, content: Vec<u8>) -> Result<(), Self::Error>;
    /// Remove `path` (absent is fine).
    ///
    /// # Errors
    /// When it cannot be removed.
    fn remove(&mut self, path: &[u8]) -> Result<(), Self::Error>;
}

impl Entries for TreeState {
    type Error = std::convert::Infallible;
    fn get(&self, path: &[u8]) -> Result<Option<Entry>, Self::Error> {
        Ok(BTreeMap::get(self, path).cloned())
    }
    fn put(&mut self, path: &[u8], node: Node, content: Vec<u8>) -> Result<(), Self::Error> {
        self.insert(path.to_vec(), (node, content));
        Ok(())
    }
    fn remove(&mut self, path: &[u8]) -> Result<(), Self::Error> {
        BTreeMap::remove(self, path);
        Ok(())
    }
}

/// Bring `entries` (a mirror) up to date with the record it may have
/// missed part of, after a crash between the journal commit and the mirror
/// update: each change not yet in place is applied forwards when it applies
/// cleanly (hash-checked) to what is there; a rename's new path is put
/// before its old one goes, as the mirror does. A change that does not
/// apply is left alone (replay then reports it). Returns how many changes
/// were completed.
///
/// # Errors
/// The first access `entries` refuses.
pub fn roll_forward<S: Entries>(entries: &mut S, changes: &[FileChange]) -> Result<usize, S::Error> {
    let mut rolled = 0;
    for change in changes {
        let current = entries.get(&change.path)?;
        let is_new = match &current {
            Some((_, content)) => {
                change.change != Change::Deleted && diff::hash(content) == change.patch.new_hash
            }
            None => change.change == Change::Deleted,
        };
        if is_new {
            // Only a rename's old path may be left.
            if let Some(from) = &change.from
                && entries.get(from)?.is_some_and(|(node, content)| {
                    node == change.node && diff::hash(&content) == change.patch.old_hash
                })
            {
                entries.remove(from)?;
                rolled += 1;
            }
            continue;
        }
        let source = match &change.from {
            Some(from) => entries.get(from)?,
            None => current,
        };
        let old = match source {
            Some((_, content)) => content,
            None if change.change == Change::Created => Vec::new(),
            None => continue,
        };
        let Ok(new) = change.patch.apply_forward(&old) else { continue };
        if change.change == Change::Deleted {
            entries.remove(&change.path)?;
        } else {
            entries.put(&change.path, change.node, new)?;
        }
        if let Some(from) = &change.from {
            entries.remove(from)?;
        }
        rolled += 1;
    }
    Ok(rolled)
}

#[cfg(test)]
mod tests {
    #[test]
    fn modes_follow_changes_both_ways() {
        let with = |mut c: FileChange, old: Option<u32>, new: Option<u32>| {
            (c.old_mode, c.mode) = (old, new);
            c
        };
        let changes = [
            with(change(b"new", Change::Created, None, b"", b"x\n"), None, Some(0o755)),
            with(change(b"to", Change::Renamed, Some(b"from"), b"y\n", b"y\n"), Some(0o644), Some(0o600)),
            with(change(b"gone", Change::Deleted, None, b"z\n", b""), Some(0o640), None),
            with(change(b"kept", Change::Mode, None, b"k\n", b"k\n"), Some(0o644), Some(0o700)),
            change(b"edited", Change::Modified, None, b"1\n", b"2\n"),
        ];
        let before: Modes = [
            (b"from".to_vec(), 0o644),
            (b"gone".to_vec(), 0o640),
            (b"kept".to_vec(), 0o644),
            (b"edited".to_vec(), 0o664),
        ]
        .into();
        let mut modes = before.clone();
        modes_forward(&mut modes, &changes);
        let after: Modes = [
            (b"new".to_vec(), 0o755),
            (b"to".to_vec(), 0o600),
            (b"kept".to_vec(), 0o700),
            (b"edited".to_vec(), 0o664),
        ]
        .into();
        assert_eq!(modes, after);
        modes_reverse(&mut modes, &changes);
        assert_eq!(modes, before);
    }

    use super::*;
    use std::time::Duration;

    fn change(path: &[u8], kind: Change, from: Option<&[u8]>, old: &[u8], new: &[u8]) -> FileChange {
        FileChange::new(
            path.to_vec(),
            kind,
            from.map(<[u8]>::to_vec),
            Node::File,
            Patch::compute(old, new, Duration::from_millis(100)),
        )
    }

    #[test]
    fn every_change_kind_round_trips() {
        let mut state = TreeState::new();
        state.insert(b"a".to_vec(), (Node::File, b"1\n".to_vec()));
        state.insert(b"b".to_vec(), (Node::File, b"2\n".to_vec()));
        state.insert(b"c".to_vec(), (Node::File, b"3\n".to_vec()));
        let before = state.clone();
        let changes = vec![
            change(b"a", Change::Deleted, None, b"1\n", b""),
            change(b"d/e", Change::Renamed, Some(b"b"), b"2\n", b"2\n"),
            change(b"c", Change::Modified, None, b"3\n", b"3\n4\n"),
            change(b"n", Change::Created, None, b"", b"new\n"),
        ];
        apply_forward(&mut state, &changes).unwrap();
        let after: Vec<&[u8]> = state.keys().map(Vec::as_slice).collect();
        assert_eq!(after, vec![&b"c"[..], b"d/e", b"n"]);
        assert_eq!(state[&b"c".to_vec()].1, b"3\n4\n");
        apply_reverse(&mut state, &changes).unwrap();
        assert_eq!(state, before);
    }

    #[test]
    fn wrong_base_is_an_error() {
        let mut state = TreeState::new();
        state.insert(b"a".to_vec(), (Node::File, b"other\n".to_vec()));
        let changes = vec![change(b"a", Change::Modified, None, b"1\n", b"2\n")];
        assert!(apply_forward(&mut state, &changes).is_err());
    }
}
