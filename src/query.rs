//! Asking the history which records matter: the records that touch some
//! paths (a file followed back across its renames, a directory matching
//! what is below it), and git's pickaxe over the lines a change adds and
//! removes. Pure functions over decoded records, used by `log`.

use crate::diff::Tag;
use crate::journal::record::{Body, FileChange, Record};

/// Paths to follow, as given (relative to the tree; `./` and a trailing
/// `/` are dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paths {
    names: Vec<Vec<u8>>,
}

impl Paths {
    /// The paths `given`; empty means every path.
    pub fn new(given: impl IntoIterator<Item = Vec<u8>>) -> Paths {
        let names = given
            .into_iter()
            .map(|mut name| {
                while name.starts_with(b"./") {
                    name.drain(..2);
                }
                while name.len() > 1 && name.ends_with(b"/") {
                    name.pop();
                }
                name
            })
            .collect();
        Paths { names }
    }

    /// No paths were given: everything matches.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `path` is one of the names, or below one of them.
    pub fn matches(&self, path: &[u8]) -> bool {
        self.is_empty()
            || self.names.iter().any(|name| {
                name.as_slice() == b"."
                    || path == name.as_slice()
                    || (path.starts_with(name) && path.get(name.len()) == Some(&b'/'))
            })
    }

    fn follow(&mut self, older_name: &[u8]) {
        if !self.names.iter().any(|n| n == older_name) {
            self.names.push(older_name.to_vec());
        }
    }
}

/// git's pickaxe: which changes count.
#[derive(Clone, Debug)]
pub enum Pickaxe {
    /// `-S STRING`: the change alters how many lines contain STRING.
    Occurrences(Vec<u8>),
    /// `-G REGEX`: an added or removed line matches REGEX.
    Lines(regex::bytes::Regex),
}

impl Pickaxe {
    /// Whether `change` counts.
    pub fn matches(&self, change: &FileChange) -> bool {
        let changed = change.patch.hunks.iter().flat_map(|h| &h.lines).filter(|l| l.tag != Tag::Context);
        match self {
            Pickaxe::Occurrences(needle) => {
                let mut balance: i64 = 0;
                for line in changed {
                    if contains(&line.text, needle) {
                        balance += if line.tag == Tag::Insert { 1 } else { -1 };
                    }
                }
                balance != 0
            }
            // Matched against the line without its newline, as git does.
            Pickaxe::Lines(regex) => changed
                .into_iter()
                .any(|line| regex.is_match(line.text.strip_suffix(b"\n").unwrap_or(&line.text))),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// What a record shows once filtered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Every record: nothing was asked for.
    All,
    /// These changes of the record (indexes into its files; for a
    /// baseline, into its listed files).
    Changes(Vec<usize>),
}

/// Choose among `records` (oldest first) those that touch `paths` and
/// pass `pickaxe`. Returns, for each record, what of it to show (`None`:
/// leave it out). Walks back from the newest, so a file is followed to
/// the names it had before each rename.
pub fn select(records: &[(u64, &Record)], paths: &Paths, pickaxe: Option<&Pickaxe>) -> Vec<Option<Kept>> {
    if paths.is_empty() && pickaxe.is_none() {
        return vec![Some(Kept::All); records.len()];
    }
    let mut paths = paths.clone();
    let mut kept = vec![None; records.len()];
    for (i, (_, record)) in records.iter().enumerate().rev() {
        let chosen: Vec<usize> = match &record.body {
            Body::Sample(sample) => {
                let mut chosen = Vec::new();
                for (j, change) in sample.files.iter().enumerate() {
                    let touches = paths.matches(&change.path)
                        || change.from.as_deref().is_some_and(|f| paths.matches(f));
                    if !touches {
                        continue;
                    }
                    if let Some(from) = &change.from
                        && !paths.is_empty()
                        && paths.matches(&change.path)
                    {
                        paths.follow(from);
                    }
                    if pickaxe.is_none_or(|p| p.matches(change)) {
                        chosen.push(j);
                    }
                }
                chosen
            }
            // A baseline shows where a path's history starts; the pickaxe
            // looks at changes only.
            Body::Baseline(baseline) if pickaxe.is_none() => baseline
                .files
                .iter()
                .enumerate()
                .filter(|(_, f)| paths.matches(&f.path))
                .map(|(j, _)| j)
                .collect(),
            _ => Vec::new(),
        };
        if !chosen.is_empty() {
            kept[i] = Some(Kept::Changes(chosen));
        }
    }
    kept
}

/// A sample that changed nothing (no file, no mapping, nothing skipped).
pub fn is_idle(record: &Record) -> bool {
    match &record.body {
        Body::Sample(s) => {
            s.files.is_empty() && s.maps.added.is_empty() && s.maps.removed.is_empty() && s.skipped.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{Baseline, Change, FORMAT_VERSION, FileEntry, Node, Sample};

    use crate::replay::tests::change;

    fn sample(files: Vec<FileChange>) -> Record {
        Record {
            version: FORMAT_VERSION,
            epoch: 1,
            pid: 1,
            body: Body::Sample(Sample { files, ..Sample::default() }),
        }
    }

    /// 1 baseline {a.txt, src/x.rs}; 2 a.txt edited; 3 a.txt renamed to
    /// docs/b.txt; 4 docs/b.txt edited, src/x.rs edited; 5 nothing.
    fn history() -> Vec<Record> {
        let entry = |p: &str| FileEntry { path: p.as_bytes().to_vec(), node: Node::File, size: 0, hash: 0 };
        vec![
            Record {
                version: FORMAT_VERSION,
                epoch: 1,
                pid: 1,
                body: Body::Baseline(Baseline {
                    files: vec![entry("a.txt"), entry("src/x.rs")],
                    ..Baseline::default()
                }),
            },
            sample(vec![change("a.txt", Change::Modified, None, "one\n", "one\nTODO two\n")]),
            sample(vec![change(
                "docs/b.txt",
                Change::Renamed,
                Some("a.txt"),
                "one\nTODO two\n",
                "one\nTODO two\n",
            )]),
            sample(vec![
                change("docs/b.txt", Change::Modified, None, "one\nTODO two\n", "one\ntwo done\n"),
                change("src/x.rs", Change::Modified, None, "fn x() {}\n", "fn x() { todo!() }\n"),
            ]),
            sample(Vec::new()),
        ]
    }

    fn seqs(kept: &[Option<Kept>]) -> Vec<u64> {
        kept.iter().enumerate().filter(|(_, k)| k.is_some()).map(|(i, _)| i as u64 + 1).collect()
    }

    fn run(paths: &[&str], pickaxe: Option<Pickaxe>) -> Vec<Option<Kept>> {
        let records = history();
        let refs: Vec<(u64, &Record)> = records.iter().enumerate().map(|(i, r)| (i as u64 + 1, r)).collect();
        select(&refs, &Paths::new(paths.iter().map(|p| p.as_bytes().to_vec())), pickaxe.as_ref())
    }

    #[test]
    fn paths_and_pickaxes_choose_records() {
        let regex = |r: &str| Some(Pickaxe::Lines(regex::bytes::Regex::new(r).unwrap()));
        let table: &[(&[&str], Option<Pickaxe>, &[u64])] = &[
            (&[], None, &[1, 2, 3, 4, 5]),
            // A file is followed back across its rename, to the baseline.
            (&["docs/b.txt"], None, &[1, 2, 3, 4]),
            (&["./docs/b.txt"], None, &[1, 2, 3, 4]),
            (&["a.txt"], None, &[1, 2, 3]),
            // A directory matches what is below it, not a prefix of a name.
            (&["src"], None, &[1, 4]),
            (&["src/"], None, &[1, 4]),
            (&["sr"], None, &[]),
            (&["."], None, &[1, 2, 3, 4]),
            // -S: the number of lines containing TODO changes in 2 and 4
            // (not in the rename, which moves the line).
            (&[], Some(Pickaxe::Occurrences(b"TODO".to_vec())), &[2, 4]),
            (&[], Some(Pickaxe::Occurrences(b"todo!".to_vec())), &[4]),
            (&["docs/b.txt"], Some(Pickaxe::Occurrences(b"todo!".to_vec())), &[]),
            // -G: an added or removed line matches.
            (&[], regex(r"two( done)?$"), &[2, 4]),
            (&[], regex(r"^fn x"), &[4]),
            (&[], regex(r"never"), &[]),
        ];
        for (paths, pickaxe, want) in table {
            assert_eq!(seqs(&run(paths, pickaxe.clone())), *want, "{paths:?} {pickaxe:?}");
        }
    }

    #[test]
    fn only_the_matching_changes_of_a_record_are_kept() {
        let kept = run(&["src"], None);
        assert_eq!(kept[3], Some(Kept::Changes(vec![1])));
        assert_eq!(kept[0], Some(Kept::Changes(vec![1])));
    }

    #[test]
    fn an_idle_sample_is_one_that_changed_nothing() {
        let records = history();
        let idle: Vec<bool> = records.iter().map(is_idle).collect();
        assert_eq!(idle, [false, false, false, false, true]);
    }
}
