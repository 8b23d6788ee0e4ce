//! Asking the history which records matter: the records that touch some
//! paths (a file followed back across its renames, a directory matching
//! what is below it), git's pickaxe over the lines a change adds and
//! removes, and the writers of a change (`--by`). Pure functions over
//! decoded records, used by `log`.

use std::borrow::Cow;

use crate::diff::Tag;
use crate::journal::record::{Body, FileChange, Record, Writers};

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
    ///
    /// A long line changed in place (a splice, see [`crate::diff::Splice`])
    /// is searched in the bytes the record holds of it: the changed bytes
    /// and up to [`crate::diff::SPLICE_CONTEXT`] bytes each side. So `-S`
    /// and `-G` on such a line see only the text around the edit: a string
    /// elsewhere in the line neither counts nor matches.
    pub fn matches(&self, change: &FileChange) -> bool {
        // Each changed line's text, and whether it was added.
        let changed = change.patch.hunks.iter().flat_map(|h| &h.lines).flat_map(|l| {
            // A splice's side is searched a piece at a time.
            let texts = match l.tag {
                Tag::Context | Tag::Elided => Vec::new(),
                Tag::Delete => vec![(vec![Cow::Borrowed(&l.text[..])], false)],
                Tag::Insert => vec![(vec![Cow::Borrowed(&l.text[..])], true)],
                Tag::Splice => match l.splice() {
                    Some(s) => [false, true]
                        .into_iter()
                        .map(|new| (s.windows(new).into_iter().map(Cow::Owned).collect(), new))
                        .collect(),
                    None => Vec::new(),
                },
            };
            texts.into_iter()
        });
        match self {
            Pickaxe::Occurrences(needle) => {
                let mut balance: i64 = 0;
                for (texts, added) in changed {
                    if texts.iter().any(|text| contains(text, needle)) {
                        balance += if added { 1 } else { -1 };
                    }
                }
                balance != 0
            }
            // Matched against the line without its newline, as git does.
            Pickaxe::Lines(regex) => changed.into_iter().any(|(texts, _)| {
                texts.iter().any(|text| regex.is_match(text.strip_suffix(b"\n").unwrap_or(text)))
            }),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// `--by WHO`: whose changes count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// A process by PID.
    Pid(i32),
    /// Processes by command name (`/proc/<pid>/comm`).
    Comm(String),
    /// The followed process and its descendants.
    Target,
    /// Anyone else.
    Foreign,
}

impl Who {
    /// Read a `--by` argument: a PID, `target`, `foreign`, else a command
    /// name.
    pub fn parse(text: &str) -> Result<Who, String> {
        if text.is_empty() {
            return Err("a writer is a PID, a command name, `target` or `foreign`".into());
        }
        Ok(match text {
            "target" => Who::Target,
            "foreign" => Who::Foreign,
            _ => match text.parse::<i32>() {
                Ok(pid) if pid > 0 => Who::Pid(pid),
                Ok(_) => return Err(format!("{text} is not a PID")),
                Err(_) => Who::Comm(text.to_string()),
            },
        })
    }

    /// Whether this named writer is WHO.
    pub fn matches_one(&self, writer: &crate::journal::record::Writer) -> bool {
        match self {
            Who::Pid(pid) => writer.pid == *pid,
            Who::Comm(name) => writer.comm.as_deref() == Some(name.as_str()),
            Who::Target => writer.target,
            Who::Foreign => !writer.target,
        }
    }

    /// Whether one of a change's writers is WHO. Writers recorded without
    /// names (older stores) match only by PID.
    pub fn matches(&self, writers: &Writers) -> bool {
        match self {
            Who::Pid(pid) => writers.pids.contains(pid),
            Who::Comm(name) => writers.who.iter().any(|w| w.comm.as_deref() == Some(name.as_str())),
            Who::Target => writers.who.iter().any(|w| w.target),
            Who::Foreign => writers.who.iter().any(|w| !w.target),
        }
    }
}

impl std::fmt::Display for Who {
    /// As [`Who::parse`] reads it back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Pid(pid) => write!(f, "{pid}"),
            Who::Comm(name) => f.write_str(name),
            Who::Target => f.write_str("target"),
            Who::Foreign => f.write_str("foreign"),
        }
    }
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
pub fn select(
    records: &[(u64, &Record)],
    paths: &Paths,
    pickaxe: Option<&Pickaxe>,
    by: Option<&Who>,
) -> Vec<Option<Kept>> {
    if paths.is_empty() && pickaxe.is_none() && by.is_none() {
        return vec![Some(Kept::All); records.len()];
    }
    let mut paths = paths.clone();
    let mut kept = vec![None; records.len()];
    for (i, (_, record)) in records.iter().enumerate().rev() {
        let chosen: Vec<usize> = match &record.body {
            Body::Sample(sample) | Body::Undo { sample, .. } => {
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
                    let written = || {
                        by.is_none_or(|who| {
                            sample.writers.iter().any(|w| w.path == change.path && who.matches(w))
                        })
                    };
                    if pickaxe.is_none_or(|p| p.matches(change)) && written() {
                        chosen.push(j);
                    }
                }
                chosen
            }
            // A baseline shows where a path's history starts; the pickaxe
            // and writers look at changes only.
            Body::Baseline(baseline) if pickaxe.is_none() && by.is_none() => baseline
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

/// Why `--by` cannot be answered from these records, if it cannot: no
/// record names a writer and no epoch was recorded with a backend that
/// knows them.
pub fn writers_unknown(records: &[(u64, &Record)]) -> Option<String> {
    let mut backends = Vec::new();
    for (_, record) in records {
        match &record.body {
            Body::Sample(s) if s.writers.iter().any(|w| !w.who.is_empty()) => return None,
            Body::Baseline(b) if b.backend == "fanotify" => return None,
            Body::Baseline(b) if !b.backend.is_empty() && !backends.contains(&b.backend) => {
                backends.push(b.backend.clone())
            }
            _ => {}
        }
    }
    let how = match backends.as_slice() {
        [] => "with a backend that cannot know writers, or before writers were named".to_string(),
        known => format!("with the {} backend, which cannot know writers", known.join(" and ")),
    };
    Some(format!("--by: this store was recorded {how}; record with --backend fanotify to ask who wrote"))
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

    #[test]
    fn who_reads_pids_names_and_the_two_words() {
        assert_eq!(Who::parse("42"), Ok(Who::Pid(42)));
        assert_eq!(Who::parse("target"), Ok(Who::Target));
        assert_eq!(Who::parse("foreign"), Ok(Who::Foreign));
        assert_eq!(Who::parse("make"), Ok(Who::Comm("make".into())));
        assert_eq!(Who::parse("-3"), Err("-3 is not a PID".into()));
        assert_eq!(Who::parse("0"), Err("0 is not a PID".into()));
        assert!(Who::parse("").is_err());
    }

    #[test]
    fn by_keeps_the_changes_of_that_writer_only() {
        use crate::journal::record::Writer;
        let named = |path: &str, pid: i32, comm: &str, target: bool| Writers {
            path: path.as_bytes().to_vec(),
            pids: vec![pid],
            foreign: false,
            who: vec![Writer { pid, comm: Some(comm.into()), target, ..Writer::default() }],
        };
        let mut record = sample(vec![
            change("a", Change::Modified, None, "1\n", "2\n"),
            change("b", Change::Modified, None, "1\n", "2\n"),
            change("c", Change::Created, None, "", "3\n"),
        ]);
        if let Body::Sample(s) = &mut record.body {
            s.writers = vec![named("a", 10, "sh", true), named("b", 20, "sed", false)];
        }
        let records = [(7, &record)];
        let kept = |who: Who| select(&records, &Paths::default(), None, Some(&who));
        assert_eq!(kept(Who::Target), [Some(Kept::Changes(vec![0]))]);
        assert_eq!(kept(Who::Foreign), [Some(Kept::Changes(vec![1]))]);
        assert_eq!(kept(Who::Comm("sed".into())), [Some(Kept::Changes(vec![1]))]);
        assert_eq!(kept(Who::Pid(10)), [Some(Kept::Changes(vec![0]))]);
        assert_eq!(kept(Who::Pid(99)), [None], "c has no known writer: nobody's");
        assert_eq!(writers_unknown(&records), None);
        let unnamed = sample(vec![change("a", Change::Modified, None, "1\n", "2\n")]);
        let inotify = Record {
            body: Body::Baseline(Baseline { backend: "inotify".into(), ..Baseline::default() }),
            ..unnamed.clone()
        };
        let why = writers_unknown(&[(1, &inotify), (2, &unnamed)]).expect("an inotify store cannot say");
        assert!(why.contains("inotify backend"), "{why}");
        assert!(writers_unknown(&[(2, &unnamed)]).is_some());
    }

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
        let entry =
            |p: &str| FileEntry { path: p.as_bytes().to_vec(), node: Node::File, size: 0, hash: 0, mode: 0 };
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
        select(&refs, &Paths::new(paths.iter().map(|p| p.as_bytes().to_vec())), pickaxe.as_ref(), None)
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
    fn pickaxes_search_a_spliced_long_line_around_its_edit() {
        // A long line with a marker far from the edit, the edit turning
        // "old-word" into "new-word".
        let old = format!("MARKER {} old-word {}\n", "x".repeat(5000), "y".repeat(5000));
        let new = old.replace("old-word", "new-word");
        let modified = change("long.json", Change::Modified, None, &old, &new);
        assert_eq!(modified.patch.hunks[0].lines[0].tag, Tag::Splice);
        let regex = |r: &str| Pickaxe::Lines(regex::bytes::Regex::new(r).unwrap());
        assert!(Pickaxe::Occurrences(b"new-word".to_vec()).matches(&modified));
        assert!(Pickaxe::Occurrences(b"old-word".to_vec()).matches(&modified));
        assert!(regex("new-w").matches(&modified));
        assert!(regex("xxx old-word yyy").matches(&modified));
        // In both sides' kept bytes: the count does not change.
        assert!(!Pickaxe::Occurrences(b"-word".to_vec()).matches(&modified));
        // Far from the edit: not among the bytes the record holds.
        assert!(!Pickaxe::Occurrences(b"MARKER".to_vec()).matches(&modified));
        assert!(!regex("MARKER").matches(&modified));
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
