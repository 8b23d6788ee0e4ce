//! Blame: which record last changed each line of a file. The file as of a
//! point is walked back through the patches of the records before it (the
//! patches restore applies), newest first, using only their hunks: each
//! line the point still has is followed to the record whose patch
//! inserted it. Lines older than the oldest record walked are the
//! boundary's (git marks them `^`).

use crate::diff::{Patch, Tag};
use crate::journal::record::{Change, Record};

/// Who a line is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The record that inserted the line (or the boundary record).
    pub seq: u64,
    /// The line is older than every record walked: `seq` is the oldest.
    pub boundary: bool,
}

/// One step back: the path's change in one record.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    /// The record.
    pub seq: u64,
    /// The path's name in that record.
    pub path: &'a [u8],
    /// Its patch of the path (old → new).
    pub patch: &'a Patch,
    /// The path had no earlier version: every line is this record's.
    pub created: bool,
}

/// The changes to `path` in `records` (oldest first, all at or before the
/// point), newest first, following `path` back across renames; stops at
/// the record that created it.
pub fn steps<'a>(path: &[u8], records: &'a [(u64, Record)]) -> Vec<Step<'a>> {
    let mut path = path.to_vec();
    let mut steps = Vec::new();
    for (seq, record) in records.iter().rev() {
        let Some(sample) = record.changes() else { continue };
        // A record applies its changes in order; walking back, the last
        // change of the path is met first.
        for change in sample.files.iter().rev() {
            if change.path != path {
                continue;
            }
            let created = change.change == Change::Created;
            steps.push(Step { seq: *seq, path: &change.path, patch: &change.patch, created });
            if created {
                return steps;
            }
            if let Some(from) = &change.from {
                path.clone_from(from);
            }
        }
    }
    steps
}

/// The origin of each of `lines` lines of the file at the point, given the
/// `steps` back from it and the `boundary` seq (the oldest record walked).
pub fn blame(lines: usize, steps: &[Step<'_>], boundary: u64) -> Vec<Origin> {
    let mut origin: Vec<Option<u64>> = vec![None; lines];
    // For each line of the version being walked: the line of the point's
    // version it is, if any.
    let mut view: Vec<Option<usize>> = (0..lines).map(Some).collect();
    for step in steps {
        if step.created {
            for line in view.iter().flatten() {
                origin[*line].get_or_insert(step.seq);
            }
            view.clear();
            break;
        }
        view = back_one(&view, step.patch, |line| {
            origin[line].get_or_insert(step.seq);
        });
        if view.iter().all(Option::is_none) {
            break;
        }
    }
    origin
        .into_iter()
        .map(|seq| match seq {
            Some(seq) => Origin { seq, boundary: false },
            None => Origin { seq: boundary, boundary: true },
        })
        .collect()
}

/// Map `view` (the newer version's lines) through `patch` to the older
/// version's lines; `inserted` is called for each tracked line the patch
/// inserted.
fn back_one(view: &[Option<usize>], patch: &Patch, mut inserted: impl FnMut(usize)) -> Vec<Option<usize>> {
    let mut older = Vec::with_capacity(view.len());
    let mut new_pos = 0;
    let at = |pos: usize| view.get(pos).copied().flatten();
    for hunk in &patch.hunks {
        while new_pos < hunk.new_start as usize && new_pos < view.len() {
            older.push(at(new_pos));
            new_pos += 1;
        }
        for line in &hunk.lines {
            match line.tag {
                Tag::Context | Tag::Elided => {
                    older.push(at(new_pos));
                    new_pos += 1;
                }
                Tag::Delete => older.push(None),
                Tag::Insert => {
                    if let Some(tracked) = at(new_pos) {
                        inserted(tracked);
                    }
                    new_pos += 1;
                }
                // A long line changed in place: the new line is this
                // record's, as if removed and added.
                Tag::Splice => {
                    older.push(None);
                    if let Some(tracked) = at(new_pos) {
                        inserted(tracked);
                    }
                    new_pos += 1;
                }
            }
        }
    }
    while new_pos < view.len() {
        older.push(at(new_pos));
        new_pos += 1;
    }
    older
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{Body, FORMAT_VERSION, Sample};

    fn sample(changes: Vec<(&str, Change, Option<&str>, &str, &str)>) -> Record {
        let files = changes
            .into_iter()
            .map(|(path, kind, from, old, new)| crate::replay::tests::change(path, kind, from, old, new))
            .collect();
        Record {
            version: FORMAT_VERSION,
            epoch: 1,
            pid: 1,
            body: Body::Sample(Sample { files, ..Sample::default() }),
        }
    }

    fn origins(path: &str, text: &str, records: &[(u64, Record)]) -> Vec<String> {
        let lines = text.split_inclusive('\n').count();
        let oldest = records.first().map_or(0, |r| r.0);
        let steps = steps(path.as_bytes(), records);
        blame(lines, &steps, oldest)
            .into_iter()
            .map(|o| if o.boundary { format!("^{}", o.seq) } else { o.seq.to_string() })
            .collect()
    }

    #[test]
    fn each_line_is_from_the_record_that_last_inserted_it() {
        let v1 = "a\nb\nc\n";
        let v2 = "a\nB\nc\nd\n";
        let v3 = "x\na\nB\nc\nd\n";
        let v4 = "x\na\nB\nd\n";
        let records = vec![
            (1, sample(vec![])),
            (2, sample(vec![("f", Change::Modified, None, v1, v2)])),
            (3, sample(vec![("other", Change::Modified, None, "1\n", "2\n")])),
            (4, sample(vec![("f", Change::Modified, None, v2, v3)])),
            (5, sample(vec![("f", Change::Modified, None, v3, v4)])),
        ];
        assert_eq!(origins("f", v4, &records), ["4", "^1", "2", "2"]);
        // As of 4: c is still there, from before the oldest record.
        assert_eq!(origins("f", v3, &records[..4]), ["4", "^1", "2", "^1", "2"]);
        assert_eq!(origins("f", v1, &records[..1]), ["^1", "^1", "^1"]);
    }

    #[test]
    fn a_long_line_changed_in_place_is_the_changing_record_s() {
        let long = |c: &str| format!("{}\n", c.repeat(6000));
        let v1 = format!("a\n{}{}", long("x"), long("y"));
        let v2 = format!("a\n{}{}", long("x").replacen('x', "X", 1), long("y"));
        let records = vec![(1, sample(vec![])), (2, sample(vec![("f", Change::Modified, None, &v1, &v2)]))];
        let patch = &records[1].1.changes().unwrap().files[0].patch;
        let tags: Vec<Tag> = patch.hunks[0].lines.iter().map(|l| l.tag).collect();
        assert_eq!(tags, [Tag::Context, Tag::Splice, Tag::Elided]);
        assert_eq!(origins("f", &v2, &records), ["^1", "2", "^1"]);
    }

    #[test]
    fn a_file_is_followed_across_a_rename_to_its_creation() {
        let records = vec![
            (1, sample(vec![])),
            (2, sample(vec![("old", Change::Created, None, "", "one\ntwo\n")])),
            (3, sample(vec![("new", Change::Renamed, Some("old"), "one\ntwo\n", "one\ntwo\n")])),
            (4, sample(vec![("new", Change::Modified, None, "one\ntwo\n", "one\ntwo\nthree\n")])),
        ];
        assert_eq!(origins("new", "one\ntwo\nthree\n", &records), ["2", "2", "4"]);
    }

    #[test]
    fn a_file_deleted_and_created_again_starts_over() {
        let records = vec![
            (1, sample(vec![])),
            (2, sample(vec![("f", Change::Modified, None, "a\n", "a\nb\n")])),
            (3, sample(vec![("f", Change::Deleted, None, "a\nb\n", "")])),
            (4, sample(vec![("f", Change::Created, None, "", "a\nb\n")])),
        ];
        assert_eq!(origins("f", "a\nb\n", &records), ["4", "4"]);
    }

    #[test]
    fn a_last_line_without_newline_and_an_empty_file() {
        let records =
            vec![(1, sample(vec![])), (2, sample(vec![("f", Change::Modified, None, "a\nb", "a\nb\nc")]))];
        assert_eq!(origins("f", "a\nb\nc", &records), ["^1", "2", "2"]);
        assert_eq!(origins("f", "", &records), Vec::<String>::new());
    }
}
