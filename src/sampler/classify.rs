//! Classification: from what the tree shows now (the observed entries) and
//! what the index holds (the tracked entries) to the list of changes a
//! sample records (created, modified, deleted, renamed: a rename is a path
//! gone and another appeared with the same content) and the mirror updates
//! that follow it, in the order that survives a crash between any two.
//!
//! Pure: no fds, no mirror I/O. The old content of a deleted or modified
//! file (for its reversible patch) comes from the caller's closure. Reading
//! the tree is `observe`'s job, making the mirror follow is `upkeep`'s.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::diff::{self, Patch};
use crate::history::Entry;
use crate::journal::record::{Change, FileChange, Node, SkipReason, Skipped};
use crate::tree::Observed;

use super::links::Id;

/// What the index holds for one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tracked {
    pub(super) node: Node,
    pub(super) hash: u64,
    /// The file read (device, inode), to find its other names when a link
    /// to it appears.
    pub(super) id: Option<Id>,
    /// Its permission bits when read (0: a symlink, or not known).
    pub(super) mode: u32,
}

/// A mirror update: the path's new entry, or `None` to remove it.
pub(super) type Update = (Vec<u8>, Option<Entry>);

/// The changes found in a set of observations.
#[derive(Debug, Default)]
pub(super) struct Classified {
    /// File changes, in the order they apply forwards.
    pub(super) changes: Vec<FileChange>,
    /// Entries left out.
    pub(super) skipped: Vec<Skipped>,
    /// Mirror updates, in the order they are to be made.
    pub(super) updates: Vec<Update>,
    /// Entries whose content was read.
    pub(super) files_read: u64,
    /// Bytes of content read.
    pub(super) bytes_read: u64,
    /// Files whose read failed for a reason that may pass, with the errno.
    pub(super) unread: BTreeMap<Vec<u8>, i32>,
}

/// Classify the differences between `observed` (each path's state now) and
/// `index` (each path's recorded state). `modes` holds the permission bits
/// of the regular files observed. `listed` holds the files already
/// reported as unreadable (not listed as skipped again while they keep
/// failing); `old_content` gives a tracked path's recorded content.
pub(super) fn classify(
    observed: BTreeMap<Vec<u8>, Observed>,
    modes: &BTreeMap<Vec<u8>, u32>,
    index: &BTreeMap<Vec<u8>, Tracked>,
    listed: &BTreeMap<Vec<u8>, i32>,
    old_content: impl Fn(&[u8]) -> Vec<u8>,
    deadline: Duration,
) -> Classified {
    let mut found = Classified::default();
    let mut deleted = Vec::new();
    let mut created = Vec::new();
    let mut modified = Vec::new();
    let mut chmodded = Vec::new();
    for (path, seen) in observed {
        let old = index.get(&path).copied();
        // A file still failing to be read was listed when it first failed.
        let listed = matches!(seen, Observed::Unreadable(_)) && listed.contains_key(&path);
        if let Some(reason) = skip_reason(&seen)
            && !listed
        {
            found.skipped.push(Skipped { path: path.clone(), reason });
        }
        let new = match seen {
            Observed::File(content) => Some((Node::File, content)),
            Observed::Symlink(target) => Some((Node::Symlink, target)),
            // An unreadable entry keeps its recorded state; when the
            // reason may pass, it is read again at the next sample.
            Observed::Unreadable(errno) => {
                if worth_reading_again(errno) {
                    found.unread.insert(path, errno);
                }
                continue;
            }
            _ => None,
        };
        if let Some((_, content)) = &new {
            found.files_read += 1;
            found.bytes_read += content.len() as u64;
        }
        match (old, new) {
            (None, None) => {}
            (None, Some(new)) => created.push((path, new)),
            (Some(old), None) => deleted.push((path, old)),
            (Some(old), Some(new)) if old.node != new.0 => {
                deleted.push((path.clone(), old));
                created.push((path, new));
            }
            (Some(old), Some(new)) => {
                let mode = modes.get(&path).copied().unwrap_or(0);
                if old.hash != diff::hash(&new.1) {
                    modified.push((path, new));
                } else if old.mode != 0 && mode != 0 && old.mode != mode {
                    chmodded.push((path, new));
                }
            }
        }
    }
    order(deleted, created, modified, chmodded, &old_content, deadline, &mut found);
    for change in &mut found.changes {
        set_modes(change, index, modes);
    }
    found
}

/// The modes a change records: a created file's, a deleted file's old one,
/// both when a change altered them.
fn set_modes(change: &mut FileChange, index: &BTreeMap<Vec<u8>, Tracked>, modes: &BTreeMap<Vec<u8>, u32>) {
    let known = |mode: u32| (mode != 0).then_some(mode);
    let old = index.get(change.from.as_ref().unwrap_or(&change.path)).and_then(|t| known(t.mode));
    let new = modes.get(&change.path).copied().and_then(known);
    match change.change {
        Change::Created => change.mode = new,
        Change::Deleted => change.old_mode = old,
        Change::Modified | Change::Renamed | Change::Mode => {
            if old.is_some() && new.is_some() && old != new {
                (change.old_mode, change.mode) = (old, new);
            }
        }
    }
}

/// Pair deletions with creations of the same content into renames, and put
/// the changes and the mirror updates in order.
fn order(
    deleted: Vec<(Vec<u8>, Tracked)>,
    created: Vec<(Vec<u8>, Entry)>,
    modified: Vec<(Vec<u8>, Entry)>,
    chmodded: Vec<(Vec<u8>, Entry)>,
    old_content: &impl Fn(&[u8]) -> Vec<u8>,
    deadline: Duration,
    found: &mut Classified,
) {
    // A path gone and another appeared with the same content in the
    // same sample is a rename.
    let mut gone_by_hash: HashMap<(u64, Node), Vec<usize>> = HashMap::new();
    for (i, (_, tracked)) in deleted.iter().enumerate() {
        gone_by_hash.entry((tracked.hash, tracked.node)).or_default().push(i);
    }
    let mut renamed_from = vec![false; deleted.len()];
    let mut renames = Vec::new();
    let mut creations = Vec::new();
    for (path, (node, content)) in created {
        let hash = diff::hash(&content);
        let source = gone_by_hash.get_mut(&(hash, node)).and_then(Vec::pop);
        match source {
            Some(i) => {
                renamed_from[i] = true;
                renames.push((path, deleted[i].0.clone(), node, content));
            }
            None => creations.push((path, node, content)),
        }
    }
    for (i, (path, tracked)) in deleted.iter().enumerate() {
        if renamed_from[i] {
            continue;
        }
        let old = old_content(path);
        found.changes.push(FileChange::new(
            path.clone(),
            Change::Deleted,
            None,
            tracked.node,
            Patch::compute(&old, b"", deadline),
        ));
        found.updates.push((path.clone(), None));
    }
    // A renamed file's new path is put in the mirror before its old
    // path leaves it: the record holds no content for a rename, so a
    // crash between the two must leave the content somewhere for
    // start-up repair to finish the move. Only when a new path clashes
    // with an old one (a directory and a link trading places: `d/f` ->
    // `.d/f`, `.d` -> `d`) must every clashing old path leave first.
    let overlaps = |a: &[u8], b: &[u8]| {
        let under = |x: &[u8], y: &[u8]| x.len() > y.len() && x.starts_with(y) && x[y.len()] == b'/';
        a == b || under(a, b) || under(b, a)
    };
    let clashes: Vec<bool> = renames
        .iter()
        .map(|(path, _, _, _)| renames.iter().any(|(_, from, _, _)| overlaps(path, from)))
        .collect();
    let (mut early, mut late) = (Vec::new(), Vec::new());
    let before_renames = found.updates.len();
    for ((path, from, node, content), clash) in renames.into_iter().zip(clashes) {
        found.changes.push(FileChange::new(
            path.clone(),
            Change::Renamed,
            Some(from.clone()),
            node,
            Patch::compute(&content, &content, deadline),
        ));
        if clash {
            late.push((path, Some((node, content))))
        } else {
            early.push((path, Some((node, content))))
        }
        found.updates.push((from, None));
    }
    // Deletions first (a new path may lie below a deleted file), then
    // the puts that clash with nothing, the old paths, the rest.
    let removals = found.updates.split_off(before_renames);
    found.updates.extend(early);
    found.updates.extend(removals);
    found.updates.extend(late);
    let mut rest: Vec<(Vec<u8>, Node, Vec<u8>, Change)> = creations
        .into_iter()
        .map(|(p, n, c)| (p, n, c, Change::Created))
        .chain(modified.into_iter().map(|(p, (n, c))| (p, n, c, Change::Modified)))
        .chain(chmodded.into_iter().map(|(p, (n, c))| (p, n, c, Change::Mode)))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, node, content, change) in rest {
        let old = match change {
            Change::Modified => old_content(&path),
            // Only the mode changed: the content stays, and so does the mirror.
            Change::Mode => content.clone(),
            _ => Vec::new(),
        };
        found.changes.push(FileChange::new(
            path.clone(),
            change,
            None,
            node,
            Patch::compute(&old, &content, deadline),
        ));
        if change != Change::Mode {
            found.updates.push((path, Some((node, content))));
        }
    }
}

/// What the index holds after `changes`, from their patches' hashes (the
/// contents were hashed once already, by the patch): each path's new entry,
/// or `None` when it is gone.
pub(super) fn tracked_after(changes: &[FileChange]) -> Vec<(Vec<u8>, Option<Tracked>)> {
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        if let Some(from) = &change.from {
            out.push((from.clone(), None));
        }
        // The mode (and the inode) follow from what the sample read.
        let entry = (change.change != Change::Deleted).then_some(Tracked {
            node: change.node,
            hash: change.patch.new_hash,
            id: None,
            mode: change.mode.unwrap_or(0),
        });
        out.push((change.path.clone(), entry));
    }
    out
}

/// Whether a read that failed with `errno` may work at the next sample
/// without any event saying so: an I/O error, a race with a writer, a
/// shortage of memory or fds. A permission denied is left to the event a
/// `chmod` raises.
pub(super) fn worth_reading_again(errno: i32) -> bool {
    matches!(
        errno,
        libc::EIO
            | libc::EAGAIN
            | libc::EINTR
            | libc::ENOMEM
            | libc::ENFILE
            | libc::EMFILE
            | libc::EBUSY
            | libc::ENOBUFS
            | libc::ESTALE
            | libc::ETIMEDOUT
    )
}

pub(super) fn skip_reason(observed: &Observed) -> Option<SkipReason> {
    match observed {
        Observed::TooLarge(size) => Some(SkipReason::TooLarge { size: *size }),
        Observed::Unreadable(errno) => Some(SkipReason::Unreadable { errno: *errno }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row: the tree as the index holds it, what the dirty paths show
    /// now, and what classification must give.
    struct Case {
        name: &'static str,
        /// Tracked entries: path, kind, content.
        before: &'static [(&'static str, Node, &'static str)],
        /// Observed entries.
        after: &'static [(&'static str, Seen)],
        /// Changes in order: kind, path, renamed from, node.
        changes: &'static [(Change, &'static str, Option<&'static str>, Node)],
        /// Mirror updates in order: path, put (with its kind) or remove.
        updates: &'static [(&'static str, Option<Node>)],
        /// Paths listed as skipped.
        skipped: &'static [&'static str],
    }

    /// What a path shows now.
    #[derive(Clone, Copy)]
    enum Seen {
        File(&'static str),
        Link(&'static str),
        Gone,
        TooLarge,
        Unreadable(i32),
    }

    use Change::{Created, Deleted, Modified, Renamed};
    use Node::{File, Symlink};

    const CASES: &[Case] = &[
        Case {
            name: "unchanged content records nothing",
            before: &[("a", File, "1\n")],
            after: &[("a", Seen::File("1\n"))],
            changes: &[],
            updates: &[],
            skipped: &[],
        },
        Case {
            name: "new content is a modification",
            before: &[("a", File, "1\n")],
            after: &[("a", Seen::File("2\n"))],
            changes: &[(Modified, "a", None, File)],
            updates: &[("a", Some(File))],
            skipped: &[],
        },
        Case {
            name: "created and deleted",
            before: &[("old", File, "gone\n")],
            after: &[("new", Seen::File("fresh\n")), ("old", Seen::Gone)],
            changes: &[(Deleted, "old", None, File), (Created, "new", None, File)],
            updates: &[("old", None), ("new", Some(File))],
            skipped: &[],
        },
        Case {
            name: "same content under a new name is a rename: new path put before the old leaves",
            before: &[("a", File, "x\n")],
            after: &[("a", Seen::Gone), ("b", Seen::File("x\n"))],
            changes: &[(Renamed, "b", Some("a"), File)],
            updates: &[("b", Some(File)), ("a", None)],
            skipped: &[],
        },
        Case {
            name: "a created file whose content equals a deleted one's is a rename across directories",
            before: &[("src/f", File, "same\n"), ("keep", File, "k\n")],
            after: &[("dst/g", Seen::File("same\n")), ("src/f", Seen::Gone)],
            changes: &[(Renamed, "dst/g", Some("src/f"), File)],
            updates: &[("dst/g", Some(File)), ("src/f", None)],
            skipped: &[],
        },
        Case {
            name: "a rename onto an existing name is a deletion and a modification",
            before: &[("a", File, "x\n"), ("b", File, "y\n")],
            after: &[("a", Seen::Gone), ("b", Seen::File("x\n"))],
            changes: &[(Deleted, "a", None, File), (Modified, "b", None, File)],
            updates: &[("a", None), ("b", Some(File))],
            skipped: &[],
        },
        Case {
            name: "a file turned symlink is deleted then created",
            before: &[("a", File, "t")],
            after: &[("a", Seen::Link("t"))],
            changes: &[(Deleted, "a", None, File), (Created, "a", None, Symlink)],
            updates: &[("a", None), ("a", Some(Symlink))],
            skipped: &[],
        },
        Case {
            name: "a symlink turned file is deleted then created",
            before: &[("a", Symlink, "t")],
            after: &[("a", Seen::File("t"))],
            changes: &[(Deleted, "a", None, Symlink), (Created, "a", None, File)],
            updates: &[("a", None), ("a", Some(File))],
            skipped: &[],
        },
        Case {
            name: "a symlink with a deleted file's content as target is no rename",
            before: &[("a", File, "t")],
            after: &[("a", Seen::Gone), ("b", Seen::Link("t"))],
            changes: &[(Deleted, "a", None, File), (Created, "b", None, Symlink)],
            updates: &[("a", None), ("b", Some(Symlink))],
            skipped: &[],
        },
        Case {
            name: "two deleted files with the same content are two deletions",
            before: &[("a", File, "same\n"), ("b", File, "same\n")],
            after: &[("a", Seen::Gone), ("b", Seen::Gone)],
            changes: &[(Deleted, "a", None, File), (Deleted, "b", None, File)],
            updates: &[("a", None), ("b", None)],
            skipped: &[],
        },
        Case {
            name: "of two deleted files with the same content the last is the rename's source",
            before: &[("a", File, "same\n"), ("b", File, "same\n")],
            after: &[("a", Seen::Gone), ("b", Seen::Gone), ("c", Seen::File("same\n"))],
            changes: &[(Deleted, "a", None, File), (Renamed, "c", Some("b"), File)],
            updates: &[("a", None), ("c", Some(File)), ("b", None)],
            skipped: &[],
        },
        Case {
            name: "a directory and a link trading places: clashing old paths leave first",
            before: &[("d/f", File, "x\n"), (".d", Symlink, "t")],
            after: &[
                (".d", Seen::Gone),
                (".d/f", Seen::File("x\n")),
                ("d", Seen::Link("t")),
                ("d/f", Seen::Gone),
            ],
            changes: &[(Renamed, ".d/f", Some("d/f"), File), (Renamed, "d", Some(".d"), Symlink)],
            updates: &[("d/f", None), (".d", None), (".d/f", Some(File)), ("d", Some(Symlink))],
            skipped: &[],
        },
        Case {
            name: "creations and modifications come after renames, by path",
            before: &[("m", File, "1\n"), ("r", File, "r\n")],
            after: &[
                ("a", Seen::File("new\n")),
                ("m", Seen::File("2\n")),
                ("r", Seen::Gone),
                ("z", Seen::File("r\n")),
            ],
            changes: &[
                (Renamed, "z", Some("r"), File),
                (Created, "a", None, File),
                (Modified, "m", None, File),
            ],
            updates: &[("z", Some(File)), ("r", None), ("a", Some(File)), ("m", Some(File))],
            skipped: &[],
        },
        Case {
            name: "a tracked file grown over the limit is deleted and listed as skipped",
            before: &[("big", File, "small\n")],
            after: &[("big", Seen::TooLarge)],
            changes: &[(Deleted, "big", None, File)],
            updates: &[("big", None)],
            skipped: &["big"],
        },
        Case {
            name: "an unreadable file keeps its recorded state",
            before: &[("a", File, "1\n")],
            after: &[("a", Seen::Unreadable(libc::EACCES))],
            changes: &[],
            updates: &[],
            skipped: &["a"],
        },
        Case {
            name: "an unreadable file already listed is not listed again",
            before: &[("listed", File, "1\n")],
            after: &[("listed", Seen::Unreadable(libc::EIO))],
            changes: &[],
            updates: &[],
            skipped: &[],
        },
    ];

    fn observed(seen: Seen) -> Observed {
        match seen {
            Seen::File(c) => Observed::File(c.as_bytes().to_vec()),
            Seen::Link(t) => Observed::Symlink(t.as_bytes().to_vec()),
            Seen::Gone => Observed::Absent,
            Seen::TooLarge => Observed::TooLarge(1 << 30),
            Seen::Unreadable(errno) => Observed::Unreadable(errno),
        }
    }

    #[test]
    fn classify_cases() {
        for case in CASES {
            let contents: BTreeMap<Vec<u8>, Vec<u8>> =
                case.before.iter().map(|(p, _, c)| (p.as_bytes().to_vec(), c.as_bytes().to_vec())).collect();
            let index: BTreeMap<Vec<u8>, Tracked> = case
                .before
                .iter()
                .map(|(p, node, c)| {
                    (
                        p.as_bytes().to_vec(),
                        Tracked { node: *node, hash: diff::hash(c.as_bytes()), id: None, mode: 0 },
                    )
                })
                .collect();
            let after: BTreeMap<Vec<u8>, Observed> =
                case.after.iter().map(|(p, s)| (p.as_bytes().to_vec(), observed(*s))).collect();
            let listed: BTreeMap<Vec<u8>, i32> = [(b"listed".to_vec(), libc::EIO)].into();
            let old_content = |p: &[u8]| contents.get(p).cloned().unwrap_or_default();
            let found = classify(
                after.clone(),
                &BTreeMap::new(),
                &index,
                &listed,
                old_content,
                Duration::from_secs(5),
            );

            let changes: Vec<(Change, String, Option<String>, Node)> = found
                .changes
                .iter()
                .map(|c| {
                    let text = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
                    (c.change, text(&c.path), c.from.as_deref().map(text), c.node)
                })
                .collect();
            let want: Vec<(Change, String, Option<String>, Node)> = case
                .changes
                .iter()
                .map(|(k, p, f, n)| (*k, p.to_string(), f.map(str::to_string), *n))
                .collect();
            assert_eq!(changes, want, "{}: changes", case.name);

            let updates: Vec<(String, Option<Node>)> = found
                .updates
                .iter()
                .map(|(p, e)| (String::from_utf8_lossy(p).into_owned(), e.as_ref().map(|(n, _)| *n)))
                .collect();
            let want: Vec<(String, Option<Node>)> =
                case.updates.iter().map(|(p, n)| (p.to_string(), *n)).collect();
            assert_eq!(updates, want, "{}: mirror updates", case.name);

            let skipped: Vec<String> =
                found.skipped.iter().map(|s| String::from_utf8_lossy(&s.path).into_owned()).collect();
            assert_eq!(skipped, case.skipped, "{}: skipped", case.name);

            // Each patch goes from the recorded content to the one seen, and
            // each put carries the content seen.
            for change in &found.changes {
                let old_path = change.from.as_ref().unwrap_or(&change.path);
                let old: &[u8] = match change.change {
                    Created => b"",
                    _ => &contents[old_path],
                };
                let new: Vec<u8> = match change.change {
                    Deleted => Vec::new(),
                    _ => match &after[&change.path] {
                        Observed::File(c) | Observed::Symlink(c) => c.clone(),
                        other => panic!("{}: {other:?} recorded as present", case.name),
                    },
                };
                let rebuilt = change.patch.apply_forward(old).expect("the patch applies to the old content");
                assert_eq!(rebuilt, new, "{}: patch of {:?}", case.name, change.path);
            }
            for (path, entry) in &found.updates {
                if let Some((_, content)) = entry {
                    assert!(
                        matches!(&after[path], Observed::File(c) | Observed::Symlink(c) if c == content),
                        "{}: put of {path:?} carries the content seen",
                        case.name
                    );
                }
            }
        }
    }

    #[test]
    fn unreadable_for_a_passing_reason_is_read_again() {
        let index = BTreeMap::new();
        let after: BTreeMap<Vec<u8>, Observed> = [
            (b"io".to_vec(), Observed::Unreadable(libc::EIO)),
            (b"perm".to_vec(), Observed::Unreadable(libc::EACCES)),
        ]
        .into();
        let found = classify(
            after,
            &BTreeMap::new(),
            &index,
            &BTreeMap::new(),
            |_| Vec::new(),
            Duration::from_secs(5),
        );
        assert_eq!(found.unread, [(b"io".to_vec(), libc::EIO)].into());
        assert_eq!(found.files_read, 0);
    }

    #[test]
    fn tracked_after_follows_renames_and_deletions() {
        let after: BTreeMap<Vec<u8>, Observed> =
            [(b"a".to_vec(), Observed::Absent), (b"b".to_vec(), Observed::File(b"x\n".to_vec()))].into();
        let index: BTreeMap<Vec<u8>, Tracked> =
            [(b"a".to_vec(), Tracked { node: Node::File, hash: diff::hash(b"x\n"), id: None, mode: 0 })]
                .into();
        let found = classify(
            after,
            &BTreeMap::new(),
            &index,
            &BTreeMap::new(),
            |_| b"x\n".to_vec(),
            Duration::from_secs(5),
        );
        let tracked = tracked_after(&found.changes);
        assert_eq!(
            tracked,
            vec![
                (b"a".to_vec(), None),
                (
                    b"b".to_vec(),
                    Some(Tracked { node: Node::File, hash: diff::hash(b"x\n"), id: None, mode: 0 })
                )
            ]
        );
    }

    #[test]
    fn modes_are_recorded_when_set_altered_or_removed() {
        let file =
            |mode: u32, c: &str| Tracked { node: Node::File, hash: diff::hash(c.as_bytes()), id: None, mode };
        let index: BTreeMap<Vec<u8>, Tracked> = [
            (b"chmod".to_vec(), file(0o644, "same\n")),
            (b"both".to_vec(), file(0o644, "old\n")),
            (b"edit".to_vec(), file(0o755, "old\n")),
            (b"gone".to_vec(), file(0o600, "gone\n")),
            (b"moved".to_vec(), file(0o644, "moved\n")),
        ]
        .into();
        let contents: BTreeMap<&[u8], &[u8]> = [
            (&b"chmod"[..], &b"same\n"[..]),
            (b"both", b"old\n"),
            (b"edit", b"old\n"),
            (b"gone", b"gone\n"),
            (b"moved", b"moved\n"),
        ]
        .into();
        let seen = |c: &str| Observed::File(c.as_bytes().to_vec());
        let after: BTreeMap<Vec<u8>, Observed> = [
            (b"chmod".to_vec(), seen("same\n")),
            (b"both".to_vec(), seen("new\n")),
            (b"edit".to_vec(), seen("new\n")),
            (b"gone".to_vec(), Observed::Absent),
            (b"moved".to_vec(), Observed::Absent),
            (b"there".to_vec(), seen("moved\n")),
            (b"new".to_vec(), seen("new\n")),
        ]
        .into();
        let modes: BTreeMap<Vec<u8>, u32> = [
            (b"chmod".to_vec(), 0o755),
            (b"both".to_vec(), 0o600),
            (b"edit".to_vec(), 0o755),
            (b"there".to_vec(), 0o700),
            (b"new".to_vec(), 0o750),
        ]
        .into();
        let old = |p: &[u8]| contents.get(p).map(|c| c.to_vec()).unwrap_or_default();
        let found = classify(after, &modes, &index, &BTreeMap::new(), old, Duration::from_secs(5));
        let got: Vec<(String, Change, Option<u32>, Option<u32>)> = found
            .changes
            .iter()
            .map(|c| (String::from_utf8_lossy(&c.path).into_owned(), c.change, c.old_mode, c.mode))
            .collect();
        let want = [
            ("gone", Change::Deleted, Some(0o600), None),
            ("there", Change::Renamed, Some(0o644), Some(0o700)),
            ("both", Change::Modified, Some(0o644), Some(0o600)),
            ("chmod", Change::Mode, Some(0o644), Some(0o755)),
            ("edit", Change::Modified, None, None),
            ("new", Change::Created, None, Some(0o750)),
        ]
        .map(|(p, c, o, n)| (p.to_string(), c, o, n));
        assert_eq!(got, want);
        let chmod = found.changes.iter().find(|c| c.change == Change::Mode).unwrap();
        assert_eq!(
            chmod.patch.apply_forward(b"same\n").unwrap(),
            b"same\n",
            "a mode change keeps the content"
        );
        assert!(found.updates.iter().all(|(p, _)| p != b"chmod"), "nor does it touch the mirror");
    }
}
