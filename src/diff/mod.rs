//! Reversible line patches between two versions of a text file.
//!
//! This module owns [`Patch`]: the one record of how a file changed between
//! two samples. A patch is computed from the two contents with `similar`'s
//! Myers diff (bounded by a deadline), applies both ways
//! ([`Patch::apply_forward`], [`Patch::apply_reverse`]) and renders as the
//! unified diff GNU `diff -u` prints ([`Patch::render_unified`]). It also owns
//! [`hash`], the content hash used everywhere in monitord.
//!
//! Contents are arbitrary bytes. Lines are split on `b'\n'` only and every
//! line keeps its exact bytes (its `\n` if it has one, any `\r`, any byte
//! that is not UTF-8), so applying a patch gives back the other side byte
//! for byte. Both directions check the base's length and hash before they
//! start and the result's hash when they finish: a patch applied to the
//! wrong base is an [`Error`], never a silently wrong file.
//!
//! Lines of [`LONG_LINE`] bytes or more are recorded by what changed in
//! them ([`Tag::Splice`], [`Tag::Elided`]; see [`Splice`]): a one-byte
//! edit of a one-line file of megabytes costs a few hundred bytes, not the
//! line twice. A patch with no such line is exactly GNU diff's.
//!
//! Line numbers are `u32`. Callers keep files far below 2^32 lines (the
//! `--max-file-size` limit); a patch that could not say where its hunks
//! start would fail its own hash check on apply.

mod long;
mod patch;

pub use long::{Elided, LONG_LINE, Piece, SPLICE_CONTEXT, Splice};

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use similar::{Algorithm, capture_diff_slices_deadline};

/// Lines of unchanged context around each change, as `diff -u` uses.
pub const CONTEXT_LINES: usize = 3;

/// Content hash used everywhere in monitord (xxh3 64-bit).
pub fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Why a patch did not apply.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The content given as the base is not the one the patch was made from.
    #[error(
        "patch does not apply: base is {found_len} bytes with hash {found_hash:016x}, \
         expected {expected_len} bytes with hash {expected_hash:016x}"
    )]
    BaseMismatch {
        /// Length the patch expects.
        expected_len: u64,
        /// Hash the patch expects.
        expected_hash: u64,
        /// Length of the content given.
        found_len: u64,
        /// Hash of the content given.
        found_hash: u64,
    },
    /// A hunk's context or removed lines are not in the base where it says.
    /// The base hash matched, so the patch itself is damaged.
    #[error("patch is damaged: hunk {hunk} does not match the base at line {line}")]
    HunkMismatch {
        /// Index of the hunk in the patch.
        hunk: usize,
        /// 1-based line of the base where the mismatch was found.
        line: u64,
    },
    /// Applying the patch did not give the content it promises. The base
    /// hash matched, so the patch itself is damaged.
    #[error(
        "patch is damaged: result is {found_len} bytes with hash {found_hash:016x}, \
         expected {expected_len} bytes with hash {expected_hash:016x}"
    )]
    ResultMismatch {
        /// Length the patch promises.
        expected_len: u64,
        /// Hash the patch promises.
        expected_hash: u64,
        /// Length of what applying it gave.
        found_len: u64,
        /// Hash of what applying it gave.
        found_hash: u64,
    },
}

/// How one file changed: the hunks of a line diff, with the length and hash of
/// both sides so that either direction can check its base and its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// [`hash`] of the old content.
    pub old_hash: u64,
    /// [`hash`] of the new content.
    pub new_hash: u64,
    /// Length of the old content in bytes.
    pub old_len: u64,
    /// Length of the new content in bytes.
    pub new_len: u64,
    /// The changed regions, in file order, each with its context.
    pub hunks: Vec<Hunk>,
}

/// One changed region with up to [`CONTEXT_LINES`] lines of context each side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hunk {
    /// 0-based index of the hunk's first old line.
    pub old_start: u32,
    /// 0-based index of the hunk's first new line.
    pub new_start: u32,
    /// Context, removed and added lines in order.
    pub lines: Vec<Line>,
}

/// One line of a hunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Whether the line is kept, removed or added.
    pub tag: Tag,
    /// The line's exact bytes, including its `\n` if it has one; for
    /// [`Tag::Splice`] and [`Tag::Elided`], the postcard encoding of a
    /// [`Splice`] or an [`Elided`] ([`Line::splice`], [`Line::elided`]).
    /// Stored as postcard stores a sequence of bytes (a length, then the
    /// bytes); read in one copy rather than byte by byte.
    #[serde(with = "serde_bytes")]
    pub text: Vec<u8>,
}

/// What a hunk line does. New kinds go at the end: the variant's index is
/// what the journal stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tag {
    /// In both sides.
    Context,
    /// Only in the old side.
    Delete,
    /// Only in the new side.
    Insert,
    /// A long line changed in place ([`Splice`]): one line removed and
    /// one added, recorded by the bytes that changed.
    Splice,
    /// A long line in both sides, recorded by its length and hash
    /// ([`Elided`]).
    Elided,
}

impl Tag {
    /// The tag seen from the other direction. A splice stays a splice,
    /// its sides swapped in its text ([`Splice::reversed`]).
    pub fn reversed(self) -> Tag {
        match self {
            Tag::Context => Tag::Context,
            Tag::Delete => Tag::Insert,
            Tag::Insert => Tag::Delete,
            Tag::Splice => Tag::Splice,
            Tag::Elided => Tag::Elided,
        }
    }
}

impl Patch {
    /// Line diff old -> new with [`CONTEXT_LINES`] lines of context.
    ///
    /// Uses `similar`'s Myers diff. When `deadline` runs out, the rest of the
    /// diff is coarser (bigger hunks) but still exact: the patch always
    /// applies. A created file (empty `old`) gives one hunk of inserts, a
    /// deleted one (empty `new`) one hunk of deletes, equal contents no hunks.
    /// Lines of [`LONG_LINE`] bytes or more are spliced or elided.
    pub fn compute(old: &[u8], new: &[u8], deadline: Duration) -> Patch {
        Patch::compute_with_long_line(old, new, deadline, LONG_LINE)
    }

    /// [`Patch::compute`] with lines of `long_line` bytes or more spliced or
    /// elided: `usize::MAX` keeps every line whole, as format versions
    /// before 5 did (the benches measure what splicing saves with it).
    pub fn compute_with_long_line(old: &[u8], new: &[u8], deadline: Duration, long_line: usize) -> Patch {
        let old_hash = hash(old);
        let same = old == new;
        let mut patch = Patch {
            old_hash,
            new_hash: if same { old_hash } else { hash(new) },
            old_len: old.len() as u64,
            new_len: new.len() as u64,
            hunks: Vec::new(),
        };
        if same {
            return patch;
        }
        let old_lines = split_lines(old);
        let new_lines = split_lines(new);
        // Lines equal at both ends stay out of the diff proper (similar
        // would trim them too, but only after hashing them).
        let prefix = old_lines.iter().zip(&new_lines).take_while(|(a, b)| a == b).count();
        let suffix = old_lines[prefix..]
            .iter()
            .rev()
            .zip(new_lines[prefix..].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        // Diff line numbers rather than bytes: similar then hashes and
        // compares integers, and each line is hashed once, with xxh3.
        let (old_ids, new_ids) = patch::intern(
            &old_lines[prefix..old_lines.len() - suffix],
            &new_lines[prefix..new_lines.len() - suffix],
        );
        let ops = capture_diff_slices_deadline(
            Algorithm::Myers,
            &old_ids,
            &new_ids,
            Instant::now().checked_add(deadline),
        );
        let changes = patch::shift_boundaries(&ops, prefix, &old_lines, &new_lines);
        let mut i = 0;
        while i < changes.len() {
            // Changes whose gap is at most twice the context share a hunk,
            // as in GNU diff's find_hunk.
            let mut j = i;
            while j + 1 < changes.len() && changes[j + 1].0.start - changes[j].0.end <= 2 * CONTEXT_LINES {
                j += 1;
            }
            let first = &changes[i];
            let last = &changes[j];
            let lead = first.0.start.min(CONTEXT_LINES);
            let trail = (old_lines.len() - last.0.end).min(CONTEXT_LINES);
            let old_start = first.0.start - lead;
            let mut lines = Vec::new();
            let context = |lines: &mut Vec<Line>, range: std::ops::Range<usize>| {
                lines.extend(old_lines[range].iter().map(|l| long::context_line(l, long_line)));
            };
            context(&mut lines, old_start..first.0.start);
            for k in i..=j {
                let (o, n) = &changes[k];
                long::run_lines(&old_lines[o.clone()], &new_lines[n.clone()], long_line, &mut lines);
                let next = if k < j { changes[k + 1].0.start } else { o.end + trail };
                context(&mut lines, o.end..next);
            }
            patch.hunks.push(Hunk {
                old_start: line_index(old_start),
                new_start: line_index(first.1.start - lead),
                lines,
            });
            i = j + 1;
        }
        patch
    }

    /// old -> new. Checks `old`'s length and hash first and the result's
    /// after: an [`Error`] on any mismatch, never a silently wrong result.
    pub fn apply_forward(&self, old: &[u8]) -> Result<Vec<u8>, Error> {
        patch::apply(self, old, false)
    }

    /// new -> old, with the same checks as [`Patch::apply_forward`].
    pub fn apply_reverse(&self, new: &[u8]) -> Result<Vec<u8>, Error> {
        patch::apply(self, new, true)
    }

    /// The patch that goes the other way: `p.reversed().apply_forward(new)`
    /// is `p.apply_reverse(new)`. Within each changed run (between context
    /// lines and splices), removed lines come before added ones, as `diff
    /// -u` prints them.
    pub fn reversed(&self) -> Patch {
        Patch {
            old_hash: self.new_hash,
            new_hash: self.old_hash,
            old_len: self.new_len,
            new_len: self.old_len,
            hunks: self.hunks.iter().map(patch::reverse_hunk).collect(),
        }
    }

    /// Unified diff text, byte for byte what GNU `diff -u` prints for these
    /// hunks, except that the `---`/`+++` lines carry the given names and no
    /// timestamp: `"--- {old_name}\n+++ {new_name}\n@@ -a,b +c,d @@\n"`, the
    /// lines, and `\ No newline at end of file` after a line that lacks its
    /// `\n`. Callers name the sides (for example `a/x.txt` and `b/x.txt`, or
    /// `/dev/null` for a created or deleted side). A patch with no hunks
    /// renders as nothing, as `diff -u` prints nothing for equal files.
    ///
    /// A [`Tag::Splice`] line prints as a `-` and a `+` line and a
    /// [`Tag::Elided`] one as a context line, with the bytes the patch does
    /// not hold shown as `…[N bytes]…` ([`Splice::render`],
    /// [`Elided::render`]); only such lines differ from `diff -u`.
    pub fn render_unified(&self, old_name: &[u8], new_name: &[u8], out: &mut Vec<u8>) {
        patch::render_unified(self, old_name, new_name, false, out);
    }

    /// What `self.reversed().render_unified(new_name, old_name, out)`
    /// writes, without building the reversed patch (which copies every
    /// line): the diff that takes the new side back to the old.
    pub fn render_unified_reverse(&self, new_name: &[u8], old_name: &[u8], out: &mut Vec<u8>) {
        patch::render_unified(self, new_name, old_name, true, out);
    }

    /// Number of added lines (a splice adds one).
    pub fn lines_added(&self) -> usize {
        self.count(Tag::Insert) + self.count(Tag::Splice)
    }

    /// Number of removed lines (a splice removes one).
    pub fn lines_removed(&self) -> usize {
        self.count(Tag::Delete) + self.count(Tag::Splice)
    }

    /// No hunks and equal hashes: the contents did not change.
    pub fn is_identity(&self) -> bool {
        self.hunks.is_empty() && self.old_hash == self.new_hash && self.old_len == self.new_len
    }

    fn count(&self, tag: Tag) -> usize {
        self.hunks.iter().map(|h| h.lines.iter().filter(|l| l.tag == tag).count()).sum()
    }
}

/// Splits on `b'\n'`, each line keeping its `\n`; the last line may lack it.
/// Empty input has no lines.
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::with_capacity(bytes.len() / 64 + 1);
    let mut start = 0;
    let mut words = bytes.chunks_exact(8);
    for (index, word) in (&mut words).enumerate() {
        let mut bits = patch::newline_bits(word);
        while bits != 0 {
            let end = index * 8 + bits.trailing_zeros() as usize / 8 + 1;
            lines.push(&bytes[start..end]);
            start = end;
            bits &= bits - 1;
        }
    }
    let base = bytes.len() - words.remainder().len();
    for (i, &b) in words.remainder().iter().enumerate() {
        if b == b'\n' {
            lines.push(&bytes[start..base + i + 1]);
            start = base + i + 1;
        }
    }
    if start < bytes.len() {
        lines.push(&bytes[start..]);
    }
    lines
}

/// Line indexes beyond `u32` saturate; such a patch fails its checks on apply.
fn line_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NO_DEADLINE: Duration = Duration::from_secs(3600);

    /// Computes the patch and checks every way of applying it.
    fn round_trip(old: &[u8], new: &[u8]) -> Patch {
        let patch = Patch::compute(old, new, NO_DEADLINE);
        assert_round_trips(&patch, old, new);
        patch
    }

    fn assert_round_trips(patch: &Patch, old: &[u8], new: &[u8]) {
        assert_eq!(patch.apply_forward(old).unwrap(), new, "forward");
        assert_eq!(patch.apply_reverse(new).unwrap(), old, "reverse");
        let back = patch.reversed();
        let (mut direct, mut built) = (Vec::new(), Vec::new());
        patch.render_unified_reverse(b"b/x", b"a/x", &mut direct);
        back.render_unified(b"b/x", b"a/x", &mut built);
        assert_eq!(direct, built, "the reverse diff rendered straight from the patch");
        assert_eq!(back.apply_forward(new).unwrap(), old, "reversed forward");
        assert_eq!(back.apply_reverse(old).unwrap(), new, "reversed reverse");
        assert_eq!(back.reversed(), *patch, "reversing twice");
    }

    #[test]
    fn created_file_is_one_hunk_of_inserts() {
        let p = round_trip(b"", b"one\ntwo\nthree\n");
        assert_eq!(p.hunks.len(), 1);
        assert_eq!((p.hunks[0].old_start, p.hunks[0].new_start), (0, 0));
        assert!(p.hunks[0].lines.iter().all(|l| l.tag == Tag::Insert));
        assert_eq!((p.lines_added(), p.lines_removed()), (3, 0));
        assert_eq!((p.old_len, p.new_len), (0, 14));
    }

    #[test]
    fn deleted_file_is_one_hunk_of_deletes() {
        let p = round_trip(b"one\ntwo", b"");
        assert_eq!(p.hunks.len(), 1);
        assert!(p.hunks[0].lines.iter().all(|l| l.tag == Tag::Delete));
        assert_eq!((p.lines_added(), p.lines_removed()), (0, 2));
    }

    #[test]
    fn identical_inputs_give_an_identity_patch_that_renders_nothing() {
        for text in [&b""[..], b"a\nb\n", b"no newline"] {
            let p = round_trip(text, text);
            assert!(p.is_identity());
            assert_eq!(p.old_hash, hash(text));
            let mut out = Vec::new();
            p.render_unified(b"a/x", b"b/x", &mut out);
            assert!(out.is_empty());
        }
        assert!(!round_trip(b"a\n", b"b\n").is_identity());
    }

    #[test]
    fn missing_trailing_newline_on_either_side_round_trips() {
        round_trip(b"a\nb\nc", b"a\nb\nc\n");
        round_trip(b"a\nb\nc\n", b"a\nb\nc");
        round_trip(b"a\nb\nc", b"a\nB\nc");
        round_trip(b"x", b"y");
        let p = round_trip(b"a\nb", b"a\nb\n");
        assert_eq!((p.lines_added(), p.lines_removed()), (1, 1));
    }

    #[test]
    fn crlf_and_latin1_bytes_are_kept_exactly() {
        round_trip(b"one\r\ntwo\r\nthree\r\n", b"one\r\ntwo\nthree\r\n");
        round_trip(b"caf\xe9\nna\xefve\n\xff\xfe\n", b"caf\xe9\nna\xefve!\n\xff\xfe\n");
        round_trip(b"\r\n\r\n\r", b"\r\r\n\n");
        let p = round_trip(b"a\r\nb\r\n", b"a\r\nc\r\n");
        assert_eq!(p.hunks[0].lines[1].text, b"b\r\n");
    }

    #[test]
    fn changes_up_to_six_lines_apart_share_a_hunk() {
        let base: Vec<String> = (0..30).map(|i| format!("{i}\n")).collect();
        let with = |changed: &[usize]| -> Vec<u8> {
            let mut lines = base.clone();
            for &i in changed {
                lines[i] = format!("changed {i}\n");
            }
            lines.concat().into_bytes()
        };
        let old = with(&[]);
        assert_eq!(round_trip(&old, &with(&[10, 17])).hunks.len(), 1);
        let two = round_trip(&old, &with(&[10, 18]));
        assert_eq!(two.hunks.len(), 2);
        assert_eq!((two.hunks[1].old_start, two.hunks[1].new_start), (15, 15));
        let edges = round_trip(&old, &with(&[0, 29]));
        assert_eq!(edges.hunks.len(), 2);
        assert_eq!(edges.hunks[0].lines.len(), 5);
        assert_eq!(edges.hunks[1].lines.len(), 5);
    }

    #[test]
    fn pathological_input_past_the_deadline_still_round_trips() {
        // 1 MiB of lines drawn from 40 distinct ones, shuffled differently.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut make = || {
            let mut out = Vec::new();
            while out.len() < 1 << 20 {
                out.extend_from_slice(format!("line number {:02}\n", next() % 40).as_bytes());
            }
            out
        };
        let (old, new) = (make(), make());
        let patch = Patch::compute(&old, &new, Duration::from_millis(100));
        assert_round_trips(&patch, &old, &new);
    }

    #[test]
    fn patch_applied_to_the_wrong_base_is_an_error() {
        let p = Patch::compute(b"a\nb\nc\n", b"a\nB\nc\n", NO_DEADLINE);
        assert!(matches!(p.apply_forward(b"a\nb\nC\n"), Err(Error::BaseMismatch { .. })));
        assert!(matches!(p.apply_forward(b"a\nB\nc\n"), Err(Error::BaseMismatch { .. })));
        assert!(matches!(p.apply_reverse(b"a\nb\nc\n"), Err(Error::BaseMismatch { .. })));
        assert!(matches!(p.apply_forward(b""), Err(Error::BaseMismatch { .. })));
        let msg = p.apply_forward(b"").unwrap_err().to_string();
        assert!(msg.starts_with("patch does not apply: base is 0 bytes"), "{msg}");
    }

    #[test]
    fn damaged_patch_is_an_error_not_a_wrong_result() {
        let old = b"a\nb\nc\nd\n";
        let new = b"a\nb\nX\nd\n";
        let good = Patch::compute(old, new, NO_DEADLINE);

        let mut context = good.clone();
        context.hunks[0].lines[0].text = b"z\n".to_vec();
        assert_eq!(context.apply_forward(old), Err(Error::HunkMismatch { hunk: 0, line: 1 }));

        let mut inserted = good.clone();
        let last = inserted.hunks[0].lines.iter_mut().find(|l| l.tag == Tag::Insert).unwrap();
        last.text = b"Y\n".to_vec();
        assert!(matches!(inserted.apply_forward(old), Err(Error::ResultMismatch { .. })));

        let mut moved = good.clone();
        moved.hunks[0].old_start = 100;
        assert!(matches!(moved.apply_forward(old), Err(Error::HunkMismatch { .. })));

        let mut overlapping = good;
        overlapping.hunks.push(overlapping.hunks[0].clone());
        assert!(matches!(overlapping.apply_forward(old), Err(Error::HunkMismatch { .. })));
    }

    #[test]
    fn reversed_lists_removed_lines_before_added_ones() {
        let p = round_trip(b"a\nb\nc\n", b"a\nB1\nB2\nc\n");
        let tags: Vec<Tag> = p.reversed().hunks[0].lines.iter().map(|l| l.tag).collect();
        use Tag::*;
        assert_eq!(tags, [Context, Delete, Delete, Insert, Context]);
    }

    /// Cases for comparing `render_unified` with GNU `diff -u`.
    fn gnu_cases() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
        let numbered = |n: usize, changed: &[(usize, &str)]| -> Vec<u8> {
            let mut out = Vec::new();
            for i in 1..=n {
                match changed.iter().find(|(at, _)| *at == i) {
                    Some((_, text)) => out.extend_from_slice(text.as_bytes()),
                    None => out.extend_from_slice(format!("line {i}\n").as_bytes()),
                }
            }
            out
        };
        vec![
            ("one line changed", numbered(10, &[]), numbered(10, &[(5, "five\n")])),
            ("first line changed", numbered(10, &[]), numbered(10, &[(1, "one\n")])),
            ("last line changed", numbered(10, &[]), numbered(10, &[(10, "ten\n")])),
            ("two hunks", numbered(30, &[]), numbered(30, &[(5, "x\n"), (20, "y\n")])),
            ("six apart merge", numbered(20, &[]), numbered(20, &[(5, "x\n"), (12, "y\n")])),
            ("seven apart split", numbered(20, &[]), numbered(20, &[(5, "x\n"), (13, "y\n")])),
            ("created", Vec::new(), b"a\nb\n".to_vec()),
            ("deleted", b"a\nb\nc\n".to_vec(), Vec::new()),
            ("single line file", b"a\n".to_vec(), b"b\n".to_vec()),
            ("lose trailing newline", b"a\nb\nc\n".to_vec(), b"a\nb\nc".to_vec()),
            ("gain trailing newline", b"a\nb\nc".to_vec(), b"a\nb\nc\n".to_vec()),
            ("both lack newline", b"a\nb\nc".to_vec(), b"a\nB\nc".to_vec()),
            ("created without newline", Vec::new(), b"x".to_vec()),
            ("crlf", b"a\r\nb\r\nc\r\n".to_vec(), b"a\r\nB\r\nc\r\n".to_vec()),
            ("latin-1", b"caf\xe9\nb\n".to_vec(), b"caf\xe9\nb\xe8s\n".to_vec()),
            ("insert at start", numbered(8, &[]), [b"new\n".to_vec(), numbered(8, &[])].concat()),
            ("append", numbered(8, &[]), [numbered(8, &[]), b"new\n".to_vec()].concat()),
            ("delete block", numbered(12, &[]), [numbered(3, &[]), numbered(12, &[]).split_off(70)].concat()),
            ("replace grows", numbered(9, &[]), numbered(9, &[(4, "p\nq\nr\n"), (5, "s\n")])),
            ("empty lines", b"\n\n\nx\n\n\n".to_vec(), b"\n\n\ny\n\n\n".to_vec()),
        ]
    }

    #[test]
    fn render_unified_matches_gnu_diff() {
        let diff = std::path::Path::new("/usr/bin/diff");
        assert!(diff.exists(), "this test needs GNU diff at /usr/bin/diff (apt-get install diffutils)");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        for (name, old, new) in gnu_cases() {
            let old_name: &[u8] = if old.is_empty() { b"/dev/null" } else { b"a/x.txt" };
            let new_name: &[u8] = if new.is_empty() { b"/dev/null" } else { b"b/x.txt" };
            std::fs::write(dir.path().join("a/x.txt"), &old).unwrap();
            std::fs::write(dir.path().join("b/x.txt"), &new).unwrap();
            let output = std::process::Command::new(diff)
                .arg("-u")
                .arg(std::str::from_utf8(old_name).unwrap())
                .arg(std::str::from_utf8(new_name).unwrap())
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(1), "{name}: diff failed: {output:?}");
            let mut expected = Vec::new();
            for (i, line) in output.stdout.split_inclusive(|&b| b == b'\n').enumerate() {
                match line.iter().position(|&b| b == b'\t') {
                    Some(tab) if i < 2 => {
                        expected.extend_from_slice(&line[..tab]);
                        expected.push(b'\n');
                    }
                    _ => expected.extend_from_slice(line),
                }
            }
            let patch = round_trip(&old, &new);
            let mut got = Vec::new();
            patch.render_unified(old_name, new_name, &mut got);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected),
                "case {name:?}: render_unified differs from diff -u"
            );
            assert_eq!(got, expected, "case {name:?}: bytes differ");
        }
    }

    /// A small alphabet of lines, some without `\n`, CR or Latin-1, so that
    /// random files repeat lines and diffs have real choices to make.
    const PIECES: &[&[u8]] = &[b"a\n", b"b\n", b"c\n", b"\n", b"a", b"x\r\n", b"\xe9t\xe9\n", b"{\n"];

    fn file(pieces: &[usize]) -> Vec<u8> {
        pieces.iter().flat_map(|&i| PIECES[i].iter().copied()).collect()
    }

    proptest! {
        #[test]
        fn random_edits_round_trip(
            old in prop::collection::vec(0..PIECES.len(), 0..60),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, 0..PIECES.len()), 0..10),
        ) {
            let mut new = old.clone();
            for (at, kind, piece) in edits {
                let i = at.index(new.len() + 1);
                match kind {
                    0 => new.insert(i, piece),
                    1 if i < new.len() => { new.remove(i); }
                    _ if i < new.len() => new[i] = piece,
                    _ => new.push(piece),
                }
            }
            let (old, new) = (file(&old), file(&new));
            let patch = Patch::compute(&old, &new, NO_DEADLINE);
            // Every way of applying it, and the reverse diff rendered
            // straight from it.
            assert_round_trips(&patch, &old, &new);
            prop_assert_eq!(patch.is_identity(), old == new);
            // Short lines only: the patch is the one format version 4 wrote.
            let whole = Patch::compute_with_long_line(&old, &new, NO_DEADLINE, usize::MAX);
            prop_assert_eq!(postcard::to_stdvec(&patch).unwrap(), postcard::to_stdvec(&whole).unwrap());
            prop_assert!(patch.hunks.iter().flat_map(|h| &h.lines).all(|l| !matches!(l.tag, Tag::Splice | Tag::Elided)));
        }
    }

    /// A line of about `len` bytes of words drawn from `seed`, ending as
    /// `end` says: 0 `\n`, 1 `\r\n`, 2 nothing.
    fn words(seed: u64, len: usize, end: u8) -> Vec<u8> {
        const WORDS: &[&[u8]] =
            &[b"sample ", b"record\t", b"mirror ", b"caf\xe9 ", b"{\"k\": 1}, ", b"\xff", b"ring "];
        let mut state = seed | 1;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(WORDS[(state % WORDS.len() as u64) as usize]);
        }
        out.truncate(len);
        out.extend_from_slice([&b"\n"[..], b"\r\n", b""][usize::from(end % 3)]);
        out
    }

    fn tags(patch: &Patch) -> Vec<Tag> {
        patch.hunks.iter().flat_map(|h| &h.lines).map(|l| l.tag).collect()
    }

    #[test]
    fn one_byte_edit_of_a_five_megabyte_line_is_a_small_splice() {
        let old = words(7, 5_000_000, 2);
        let mut new = old.clone();
        new[2_500_000] ^= 0x20;
        let patch = round_trip(&old, &new);
        assert_eq!(tags(&patch), [Tag::Splice]);
        assert_eq!((patch.lines_added(), patch.lines_removed()), (1, 1));
        let splice = patch.hunks[0].lines[0].splice().unwrap();
        assert_eq!(splice.pieces.len(), 1);
        let piece = &splice.pieces[0];
        assert_eq!((piece.skip, piece.old.len(), piece.new.len()), (2_500_000, 1, 1));
        assert_eq!((piece.before.len(), piece.after.len()), (64, 64));
        let encoded = postcard::to_stdvec(&patch).unwrap();
        assert!(encoded.len() <= 512, "{} bytes", encoded.len());
        // Whole lines: the old representation, for comparison.
        let whole =
            postcard::to_stdvec(&Patch::compute_with_long_line(&old, &new, NO_DEADLINE, usize::MAX)).unwrap();
        assert!(whole.len() > 10_000_000, "{} bytes", whole.len());
        let mut deflater = crate::compress::Deflater::new().unwrap();
        let packed = deflater.shrink(&encoded).map_or(encoded.len(), |p| p.len());
        assert!(packed <= 64 << 10, "{packed} bytes compressed");
    }

    #[test]
    fn splice_and_elided_lines_render_with_their_left_out_bytes_counted() {
        let long = |c: u8, n: usize| vec![c; n];
        let old = [long(b'a', 5000), b"\n".to_vec(), b"short\n".to_vec(), long(b'b', 4500), b"\n".to_vec()]
            .concat();
        let mut new = old.clone();
        new[2000] = b'X';
        new[5000 + 1 + 6 + 4500] = b'!';
        let patch = round_trip(&old, &new);
        assert_eq!(tags(&patch), [Tag::Splice, Tag::Context, Tag::Splice]);
        let mut out = Vec::new();
        patch.render_unified(b"a/x", b"b/x", &mut out);
        let a64 = "a".repeat(64);
        let b64 = "b".repeat(64);
        let expected = format!(
            "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n\
             -…[1936 bytes]…{a64}a{a64}…[2935 bytes]…\n\
             +…[1936 bytes]…{a64}X{a64}…[2935 bytes]…\n \
             short\n\
             -…[4436 bytes]…{b64}\n\
             +…[4436 bytes]…{b64}!\n\\ No newline at end of file\n"
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);

        // A short change between long lines: the long ones are context.
        let old = [long(b'a', 5000), b"\nmid\n".to_vec(), long(b'b', 5000)].concat();
        let new = [long(b'a', 5000), b"\nMID\n".to_vec(), long(b'b', 5000)].concat();
        let patch = round_trip(&old, &new);
        assert_eq!(tags(&patch), [Tag::Elided, Tag::Delete, Tag::Insert, Tag::Elided]);
        assert_eq!((patch.lines_added(), patch.lines_removed()), (1, 1));
        let mut out = Vec::new();
        patch.render_unified(b"a/x", b"b/x", &mut out);
        let expected = format!(
            "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n {a64}…[4873 bytes]…{}\n-mid\n+MID\n {b64}…[4872 bytes]…{b64}\n\\ No newline at end of file\n",
            "a".repeat(63)
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        assert!(postcard::to_stdvec(&patch).unwrap().len() < 1000);
    }

    #[test]
    fn edits_far_apart_in_a_long_line_are_pieces_of_one_splice() {
        // A header rewritten, three bytes inserted in the middle, a count
        // at the end grown by two digits.
        let mut old = words(9, 5_000_000, 0);
        old.splice(5_000_000 - 10..5_000_000 - 8, *b"42");
        let mut new = old.clone();
        new[3..13].copy_from_slice(b"2026-11-27");
        new.splice(5_000_000 - 10..5_000_000 - 8, *b"1042");
        new.splice(2_000_000..2_000_000, *b"new");
        let patch = round_trip(&old, &new);
        assert_eq!(tags(&patch), [Tag::Splice]);
        let splice = patch.hunks[0].lines[0].splice().unwrap();
        let sizes: Vec<(usize, usize)> = splice.pieces.iter().map(|p| (p.old.len(), p.new.len())).collect();
        // (Where an insertion sits among equal bytes is the diff's choice.)
        assert_eq!(sizes, [(10, 10), (0, 3), (0, 2)]);
        assert_eq!((splice.pieces[0].skip, &splice.pieces[0].new[..]), (3, &b"2026-11-27"[..]));
        assert!(postcard::to_stdvec(&patch).unwrap().len() < 1000);

        // Twenty edits of every kind, spread over the line.
        let mut scattered = old.clone();
        for k in (0..20).rev() {
            let at = 100_000 + k * 240_000;
            scattered.splice(at..at + k % 3, b"#edit".iter().copied().take(1 + k % 5));
        }
        let patch = round_trip(&old, &scattered);
        assert_eq!(patch.hunks[0].lines[0].splice().unwrap().pieces.len(), 20);
        assert!(postcard::to_stdvec(&patch).unwrap().len() < 8000);

        // Renders a piece after the other, every byte accounted for.
        let old = [vec![b'a'; 10_000], b"\n".to_vec()].concat();
        let mut new = old.clone();
        new[100] = b'X';
        new[9000] = b'Y';
        let patch = round_trip(&old, &new);
        let mut out = Vec::new();
        patch.render_unified(b"a/x", b"b/x", &mut out);
        let a = |n: usize| "a".repeat(n);
        let expected = format!(
            "--- a/x\n+++ b/x\n@@ -1 +1 @@\n\
             -…[36 bytes]…{}a{}…[8771 bytes]…{}a{}…[935 bytes]…\n\
             +…[36 bytes]…{}X{}…[8771 bytes]…{}Y{}…[935 bytes]…\n",
            a(64),
            a(64),
            a(64),
            a(64),
            a(64),
            a(64),
            a(64),
            a(64),
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn long_lines_that_share_little_stay_whole() {
        let old = words(1, 6000, 0);
        let new = words(2, 6000, 0);
        let patch = round_trip(&old, &new);
        assert_eq!(tags(&patch), [Tag::Delete, Tag::Insert]);
        // A long line turned short and back.
        let short = b"short\n".to_vec();
        assert_eq!(tags(&round_trip(&old, &short)), [Tag::Delete, Tag::Insert]);
        assert_eq!(tags(&round_trip(&short, &old)), [Tag::Delete, Tag::Insert]);
    }

    #[test]
    fn damaged_splice_or_elided_line_is_an_error_not_a_wrong_result() {
        let long = words(3, 6000, 0);
        let mut edited = long.clone();
        edited[3000] ^= 1;
        let new = [long.clone(), b"y\n".to_vec(), edited.clone()].concat();
        let base = [long.clone(), b"x\n".to_vec(), long.clone()].concat();
        let good = round_trip(&base, &new);
        assert_eq!(tags(&good), [Tag::Elided, Tag::Delete, Tag::Insert, Tag::Splice]);

        let mut middle = good.clone();
        let mut splice = middle.hunks[0].lines[3].splice().unwrap();
        splice.pieces[0].old[0] ^= 1;
        middle.hunks[0].lines[3] = splice.into_line();
        assert_eq!(middle.apply_forward(&base), Err(Error::HunkMismatch { hunk: 0, line: 3 }));

        let mut garbled = good.clone();
        garbled.hunks[0].lines[3].text.truncate(3);
        assert_eq!(garbled.apply_forward(&base), Err(Error::HunkMismatch { hunk: 0, line: 3 }));
        assert_eq!(garbled.reversed().apply_forward(&new), Err(Error::HunkMismatch { hunk: 0, line: 3 }));
        let mut out = Vec::new();
        garbled.render_unified(b"a", b"b", &mut out);
        assert!(String::from_utf8_lossy(&out).contains("-…[damaged line]…\n+…[damaged line]…\n"));

        let mut new_middle = good.clone();
        let mut splice = new_middle.hunks[0].lines[3].splice().unwrap();
        splice.pieces[0].new[0] ^= 1;
        new_middle.hunks[0].lines[3] = splice.into_line();
        assert!(matches!(new_middle.apply_forward(&base), Err(Error::ResultMismatch { .. })));

        let mut context = good.clone();
        let mut elided = context.hunks[0].lines[0].elided().unwrap();
        elided.hash ^= 1;
        context.hunks[0].lines[0] = elided.into_line();
        assert_eq!(context.apply_forward(&base), Err(Error::HunkMismatch { hunk: 0, line: 1 }));

        assert!(matches!(good.apply_forward(&new), Err(Error::BaseMismatch { .. })));
    }

    proptest! {
        #[test]
        fn a_damaged_splice_or_elided_line_never_gives_a_wrong_result(
            which in 0..2usize,
            flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
            garbage in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        ) {
            let long = words(5, 5000, 0);
            let mut edited = long.clone();
            edited[2500] ^= 1;
            let old = [long.clone(), b"a\n".to_vec(), long.clone()].concat();
            let new = [long.clone(), b"b\n".to_vec(), edited].concat();
            let good = Patch::compute(&old, &new, NO_DEADLINE);
            let mut damaged = good.clone();
            let at = [0, 3][which];
            let text = &mut damaged.hunks[0].lines[at].text;
            match garbage {
                Some(bytes) => *text = bytes,
                None => for (i, x) in &flips {
                    let i = i.index(text.len());
                    text[i] ^= x;
                },
            }
            for (patch, base, want) in [
                (&damaged, &old, &new),
                (&damaged.reversed(), &new, &old),
            ] {
                if let Ok(got) = patch.apply_forward(base) {
                    prop_assert_eq!(&got, want);
                }
            }
            if let Ok(got) = damaged.apply_reverse(&new) {
                prop_assert_eq!(got, old);
            }
            let mut out = Vec::new();
            damaged.render_unified(b"a", b"b", &mut out);
            prop_assert!(!out.is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn scattered_edits_of_one_long_line_round_trip(
            seed in any::<u64>(),
            len in LONG_LINE..40_000usize,
            repetitive in any::<bool>(),
            end in 0..3u8,
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), 0..8usize, prop::collection::vec(prop_oneof![Just(b'a'), any::<u8>()], 0..8)),
                1..12,
            ),
        ) {
            // Text that repeats itself finds anchors in the wrong places:
            // the splice is bigger, never wrong.
            let old = if repetitive {
                [b"abcabcab".repeat(len / 8), [&b"\n"[..], b"\r\n", b""][usize::from(end)].to_vec()].concat()
            } else {
                words(seed, len, end)
            };
            let mut new = old.clone();
            for (at, remove, insert) in edits {
                let at = at.index(new.len());
                let end = (at + remove).min(new.len());
                new.splice(at..end, insert);
            }
            let patch = Patch::compute(&old, &new, NO_DEADLINE);
            // Every way of applying it, and the reverse diff rendered
            // straight from it.
            assert_round_trips(&patch, &old, &new);
            // A splice holds no more changed bytes than the two lines.
            for splice in patch.hunks.iter().flat_map(|h| &h.lines).filter_map(Line::splice) {
                let changed: usize = splice.pieces.iter().map(|p| p.old.len() + p.new.len()).sum();
                prop_assert!(changed as u64 <= splice.old_len + splice.new_len);
                prop_assert!(splice.pieces.len() <= 64);
            }
        }
    }

    /// One edit of the long-line property test.
    #[derive(Clone, Debug)]
    enum Edit {
        /// In line `line`, at `at` (0: start, 1: end, else a fraction),
        /// remove `remove` bytes and insert `insert`.
        Bytes { line: prop::sample::Index, at: u8, remove: usize, insert: Vec<u8> },
        /// Insert a line (long when `long`) before `line`.
        AddLine { line: prop::sample::Index, seed: u64, long: bool, end: u8 },
        /// Remove a line.
        RemoveLine { line: prop::sample::Index },
        /// Replace a line (long turned short or short turned long).
        ReplaceLine { line: prop::sample::Index, seed: u64, long: bool, end: u8 },
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let index = any::<prop::sample::Index>;
        prop_oneof![
            4 => (index(), any::<u8>(), 0..20usize, prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..12))
                .prop_map(|(line, at, remove, insert)| Edit::Bytes { line, at, remove, insert }),
            1 => (index(), any::<u64>(), any::<bool>(), 0..3u8)
                .prop_map(|(line, seed, long, end)| Edit::AddLine { line, seed, long, end }),
            1 => index().prop_map(|line| Edit::RemoveLine { line }),
            1 => (index(), any::<u64>(), any::<bool>(), 0..3u8)
                .prop_map(|(line, seed, long, end)| Edit::ReplaceLine { line, seed, long, end }),
        ]
    }

    fn made_line(seed: u64, long: bool, end: u8) -> Vec<u8> {
        let len = if long { LONG_LINE - 8 + (seed % 3000) as usize } else { (seed % 40) as usize };
        words(seed, len, end)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn long_lines_with_random_edits_round_trip(
            lines in prop::collection::vec((any::<u64>(), any::<bool>(), 0..3u8), 1..8),
            last_end in 0..3u8,
            edits in prop::collection::vec(edit(), 1..6),
        ) {
            let mut old: Vec<Vec<u8>> = lines.iter().map(|&(seed, long, end)| made_line(seed, long, end)).collect();
            if let Some(last) = old.last_mut() {
                // The last line decides the file's end (and a middle line
                // without `\n` joins the next one: a longer line).
                *last = made_line(lines[lines.len() - 1].0, lines[lines.len() - 1].1, last_end);
            }
            let mut new = old.clone();
            for edit in edits {
                match edit {
                    Edit::Bytes { line, at, remove, insert } if !new.is_empty() => {
                        let i = line.index(new.len());
                        let text = &mut new[i];
                        let at = match at { 0 => 0, 1 => text.len(), f => text.len() * usize::from(f) / 256 };
                        let end = (at + remove).min(text.len());
                        text.splice(at..end, insert);
                    }
                    Edit::AddLine { line, seed, long, end } => {
                        let at = line.index(new.len() + 1);
                        new.insert(at, made_line(seed, long, end));
                    }
                    Edit::RemoveLine { line } if !new.is_empty() => { new.remove(line.index(new.len())); }
                    Edit::ReplaceLine { line, seed, long, end } if !new.is_empty() => {
                        let at = line.index(new.len());
                        new[at] = made_line(seed, long, end);
                    }
                    _ => {}
                }
            }
            let (old, new) = (old.concat(), new.concat());
            let patch = Patch::compute(&old, &new, NO_DEADLINE);
            // Every way of applying it, and the reverse diff rendered
            // straight from it.
            assert_round_trips(&patch, &old, &new);
            prop_assert_eq!(patch.is_identity(), old == new);
            if old != new && !old.is_empty() {
                prop_assert!(patch.apply_forward(&new).is_err());
                let mut wrong = old.clone();
                wrong[0] ^= 1;
                prop_assert!(patch.apply_forward(&wrong).is_err());
            }
            // Whole-line counts are kept: a splice is one line each way.
            let whole = Patch::compute_with_long_line(&old, &new, NO_DEADLINE, usize::MAX);
            prop_assert_eq!((patch.lines_added(), patch.lines_removed()), (whole.lines_added(), whole.lines_removed()));
            let long_line = |text: &[u8]| text.split_inclusive(|&b| b == b'\n').any(|l| l.len() >= LONG_LINE);
            if !long_line(&old) && !long_line(&new) {
                prop_assert_eq!(&patch, &whole);
            }
            for (hunk, whole_hunk) in patch.hunks.iter().zip(&whole.hunks) {
                prop_assert_eq!((hunk.old_start, hunk.new_start), (whole_hunk.old_start, whole_hunk.new_start));
            }
        }
    }
}
