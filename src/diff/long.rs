//! Long lines: how a patch records a line of [`LONG_LINE`] bytes or more
//! by what changed in it rather than by its whole bytes.
//!
//! A text file can be one line of megabytes (minified JSON or JavaScript,
//! a log written without newlines, a CSV export). Recording a one-byte
//! edit of such a line as a removed line and an added one costs twice the
//! line in the journal; this module keeps it to the bytes that changed.
//! Two kinds of hunk line exist for that, each held in [`Line::text`] as a
//! small postcard encoding (so the hunk layout is unchanged and older
//! patches decode as they are):
//!
//! - [`Tag::Splice`] holds a [`Splice`]: a long line changed in place. It
//!   keeps both lines' lengths and, for each changed stretch ([`Piece`]),
//!   the old and new bytes and up to [`SPLICE_CONTEXT`] unchanged bytes
//!   each side, so that renders and `log -S`/`-G` show each edit in its
//!   surroundings. The stretches are found by comparing slices, not by a
//!   byte diff: the shared prefix and suffix, then unchanged stretches of
//!   [`MIN_KEPT`] bytes or more inside what is left (see
//!   [`Splice::between`]).
//! - [`Tag::Elided`] holds an [`Elided`]: a long context line, kept as its
//!   length, hash, and first and last [`SPLICE_CONTEXT`] bytes.
//!
//! Both are checked against the base when a patch applies (lengths, the
//! kept bytes, the elided line's hash), and the patch's whole-content
//! hashes stay the final judge, as for every patch.
//!
//! In a unified diff a splice prints as a `-` and a `+` line and an elided
//! context line as a ` ` line, each with the bytes left out replaced by
//! `…[N bytes]…` (N in decimal, the line's final `\n` never counted: it is
//! printed, or `\ No newline at end of file` is); the pieces of a splice
//! print one after the other on its line. For example, an `X`
//! turned into a `Y` at offset 2,500,000 of a 5,000,000-byte line ending
//! in `\n`:
//!
//! ```text
//! -…[2499936 bytes]…(64 bytes before)X(64 bytes after)…[2499934 bytes]…
//! +…[2499936 bytes]…(64 bytes before)Y(64 bytes after)…[2499934 bytes]…
//! ```

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::{Line, Tag};

/// Lines at least this long (their `\n` included) are recorded by what
/// changed: a changed one whose replacement is long too as a [`Splice`],
/// an unchanged one in a hunk's context as an [`Elided`] line.
///
/// Shorter lines are kept whole, so the patches of ordinary text (source,
/// configuration, prose) are exactly GNU diff's, byte for byte. 4 KiB is
/// far above any line a person writes (and twice POSIX's `LINE_MAX`), so
/// only machine-written lines are touched, while the bookkeeping of a
/// splice (about 150 bytes with its context) is a few percent of the
/// smallest line it replaces.
pub const LONG_LINE: usize = 4096;

/// Bytes of unchanged text a [`Splice`] keeps each side of its change, and
/// an [`Elided`] line at each end: enough to see what the edit was in.
pub const SPLICE_CONTEXT: usize = 64;

/// A long line changed in place: the old line with some stretches of it
/// ([`Piece`]s) replaced, everything between them kept. Most splices have
/// one piece (one edit, or edits close together); edits far apart in the
/// line are pieces of their own, so that only changed bytes are recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splice {
    /// Length of the old line.
    pub old_len: u64,
    /// Length of the new line.
    pub new_len: u64,
    /// The changed stretches, in order; at least one.
    pub pieces: Vec<Piece>,
    /// The bytes after the last piece are more than its
    /// [`Piece::after`] and end with `\n` (the line's end is then not
    /// among the kept bytes).
    pub newline: bool,
}

/// One changed stretch of a [`Splice`], with the unchanged bytes around it
/// that are kept to show it in context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// Unchanged bytes between the end of the previous piece (or the
    /// line's start) and this one.
    pub skip: u64,
    /// The last of those bytes (at most [`SPLICE_CONTEXT`], and none that
    /// the previous piece's [`Piece::after`] holds).
    pub before: Vec<u8>,
    /// The old line's bytes of this stretch.
    pub old: Vec<u8>,
    /// The new line's bytes of this stretch.
    pub new: Vec<u8>,
    /// The unchanged bytes right after the stretch (at most
    /// [`SPLICE_CONTEXT`], and none of the next piece's).
    pub after: Vec<u8>,
}

/// A long context line: its length, hash and both ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elided {
    /// The line's length in bytes.
    pub len: u64,
    /// [`super::hash`] of the line.
    pub hash: u64,
    /// Its first bytes (at most [`SPLICE_CONTEXT`]).
    pub head: Vec<u8>,
    /// Its last bytes (at most [`SPLICE_CONTEXT`]), its `\n` included.
    pub tail: Vec<u8>,
}

/// Changed stretches of at least this many bytes (on either side) are
/// searched for an unchanged stretch inside them, to be split in two.
const SPLIT_FROM: usize = 1024;

/// Bytes of the old stretch looked up in the new one to find an unchanged
/// stretch in both: long enough to be rare in text by chance.
const ANCHOR: usize = 64;

/// An unchanged stretch shorter than this is not worth a piece of its own
/// (each piece costs its context and a few lengths).
const MIN_KEPT: usize = 1024;

/// Most pieces a splice is split into: past it, the rest of the changes
/// form one piece.
const MAX_PIECES: usize = 64;

impl Splice {
    /// The splice from `old` to `new`, when they keep at least `least`
    /// bytes unchanged (else a removed and an added line cost about as
    /// much, and say more).
    ///
    /// The shared prefix and suffix are found by comparing slices. The
    /// changed middle is split where an [`ANCHOR`] of it taken from the old
    /// side (at its middle, then its quarters) is found in the new side
    /// (first where it would be had the edits kept their lengths, then
    /// anywhere) and grows to [`MIN_KEPT`] equal bytes or more, recursively;
    /// searches stop after scanning four times the middle's size, so the
    /// cost stays linear in the line.
    pub(super) fn between(old: &[u8], new: &[u8], least: usize) -> Option<Splice> {
        let prefix = common_prefix(old, new);
        let suffix = common_suffix(&old[prefix..], &new[prefix..]);
        let middle = (prefix..old.len() - suffix, prefix..new.len() - suffix);
        let mut changed = Vec::new();
        let mut budget = 4 * (middle.0.len() + middle.1.len());
        split(old, new, middle.clone(), &mut changed, &mut budget);
        if changed.is_empty() {
            // Equal lines (a coarse diff can pair them): one empty piece.
            changed.push(middle);
        }
        let kept = old.len() - changed.iter().map(|(o, _)| o.len()).sum::<usize>();
        if kept < least {
            return None;
        }
        let mut pieces: Vec<Piece> = Vec::with_capacity(changed.len());
        let mut at = 0;
        for (k, (o, n)) in changed.iter().enumerate() {
            let shown = pieces.last().map_or(0, |p| p.after.len());
            let before = (o.start - at - shown).min(SPLICE_CONTEXT);
            let next = changed.get(k + 1).map_or(old.len(), |(o, _)| o.start);
            let after = (next - o.end).min(SPLICE_CONTEXT);
            pieces.push(Piece {
                skip: (o.start - at) as u64,
                before: old[o.start - before..o.start].to_vec(),
                old: old[o.clone()].to_vec(),
                new: new[n.clone()].to_vec(),
                after: old[o.end..o.end + after].to_vec(),
            });
            at = o.end;
        }
        let after = pieces.last().map_or(0, |p| p.after.len());
        Some(Splice {
            old_len: old.len() as u64,
            new_len: new.len() as u64,
            pieces,
            newline: old.len() - at > after && old.last() == Some(&b'\n'),
        })
    }

    /// As a hunk line.
    pub(super) fn into_line(self) -> Line {
        Line { tag: Tag::Splice, text: encode(&self) }
    }

    /// The same splice seen from the other direction.
    pub fn reversed(&self) -> Splice {
        Splice {
            old_len: self.new_len,
            new_len: self.old_len,
            pieces: self
                .pieces
                .iter()
                .map(|p| Piece { old: p.new.clone(), new: p.old.clone(), ..p.clone() })
                .collect(),
            newline: self.newline,
        }
    }

    /// Appends to `out` the line that replaces `line` (the old side, or the
    /// new side when `reverse`); false, with `out` unchanged, when `line`
    /// is not the side this splice was made from.
    pub(super) fn apply(&self, line: &[u8], reverse: bool, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let done = self.apply_inner(line, reverse, out);
        if !done {
            out.truncate(start);
        }
        done
    }

    fn apply_inner(&self, line: &[u8], reverse: bool, out: &mut Vec<u8>) -> bool {
        let (from_len, to_len) =
            if reverse { (self.new_len, self.old_len) } else { (self.old_len, self.new_len) };
        if line.len() as u64 != from_len || self.pieces.is_empty() {
            return false;
        }
        let start = out.len();
        let mut pos = 0usize;
        for piece in &self.pieces {
            let (from, to) = if reverse { (&piece.new, &piece.old) } else { (&piece.old, &piece.new) };
            let Some(at) = usize::try_from(piece.skip).ok().and_then(|skip| pos.checked_add(skip)) else {
                return false;
            };
            let end = at.saturating_add(from.len());
            let kept = end <= line.len()
                && at - pos >= piece.before.len()
                && line[at - piece.before.len()..at] == piece.before[..]
                && line[at..end] == from[..]
                && line[end..].starts_with(&piece.after);
            if !kept {
                return false;
            }
            out.extend_from_slice(&line[pos..at]);
            out.extend_from_slice(to);
            pos = end;
        }
        let after = self.pieces.last().map_or(0, |p| p.after.len());
        if self.newline != (line.len() - pos > after && line.last() == Some(&b'\n')) {
            return false;
        }
        out.extend_from_slice(&line[pos..]);
        (out.len() - start) as u64 == to_len
    }

    /// The kept bytes of one side (the new side when `new`), a piece at a
    /// time: the context before, the changed bytes, the context after.
    /// What `log -S`/`-G` search.
    pub fn windows(&self, new: bool) -> Vec<Vec<u8>> {
        self.pieces
            .iter()
            .map(|p| [&p.before[..], if new { &p.new } else { &p.old }, &p.after[..]].concat())
            .collect()
    }

    /// One side as a unified diff prints it (without its `-`/`+`): the
    /// bytes left out as `…[N bytes]…`, ending in `\n` when the line does.
    pub fn render(&self, new: bool, out: &mut Vec<u8>) {
        let mut shown = 0;
        let mut consumed = 0u64;
        for piece in &self.pieces {
            push_hidden(out, piece.skip.saturating_sub(shown + piece.before.len() as u64));
            out.extend_from_slice(&piece.before);
            out.extend_from_slice(if new { &piece.new } else { &piece.old });
            out.extend_from_slice(&piece.after);
            shown = piece.after.len() as u64;
            consumed = consumed.saturating_add(piece.skip).saturating_add(piece.old.len() as u64);
        }
        let hidden_after = self.old_len.saturating_sub(consumed).saturating_sub(shown);
        push_hidden(out, hidden_after.saturating_sub(u64::from(self.newline)));
        if self.newline {
            out.push(b'\n');
        }
    }
}

/// The changed stretches of `old[o]` against `new[n]`, appended to `out`
/// in order: the whole of them, or, when an unchanged stretch of both is
/// found inside, the changed stretches on each side of it.
fn split(
    old: &[u8],
    new: &[u8],
    (o, n): (Range<usize>, Range<usize>),
    out: &mut Vec<(Range<usize>, Range<usize>)>,
    budget: &mut usize,
) {
    if o.is_empty() && n.is_empty() {
        return;
    }
    if o.len().max(n.len()) >= SPLIT_FROM
        && out.len() + 2 <= MAX_PIECES
        && let Some((a, b, len)) = anchor(&old[o.clone()], &new[n.clone()], budget)
    {
        split(old, new, (o.start..o.start + a, n.start..n.start + b), out, budget);
        split(old, new, (o.start + a + len..o.end, n.start + b + len..n.end), out, budget);
        return;
    }
    out.push((o, n));
}

/// An unchanged stretch of `a` and `b`, as (start in `a`, start in `b`,
/// length), of at least [`MIN_KEPT`] bytes, when one is found within the
/// `budget` of bytes searched.
fn anchor(a: &[u8], b: &[u8], budget: &mut usize) -> Option<(usize, usize, usize)> {
    if a.len() < ANCHOR || b.len() < ANCHOR {
        return None;
    }
    for at in [a.len() / 2, a.len() / 4, a.len() * 3 / 4] {
        let at = at.min(a.len() - ANCHOR);
        let block = &a[at..at + ANCHOR];
        // Where an edit of the same length would leave it, counted from
        // either end (the length change before or after it), then
        // anywhere: text that repeats itself is found where it was.
        let shifted = (at + b.len()).checked_sub(a.len());
        let aligned =
            [Some(at), shifted].into_iter().flatten().find(|&i| b.get(i..i + ANCHOR) == Some(block));
        let found = match aligned {
            Some(i) => i,
            None if *budget >= b.len() => {
                *budget -= b.len();
                match memchr::memmem::find(b, block) {
                    Some(i) => i,
                    None => continue,
                }
            }
            None => return None,
        };
        let back = common_suffix(&a[..at], &b[..found]);
        let forth = common_prefix(&a[at..], &b[found..]);
        if back + forth >= MIN_KEPT {
            return Some((at - back, found - back, back + forth));
        }
    }
    None
}

impl Elided {
    /// `line` as an elided context line.
    pub(super) fn of(line: &[u8]) -> Elided {
        let ends = line.len().min(SPLICE_CONTEXT);
        Elided {
            len: line.len() as u64,
            hash: super::hash(line),
            head: line[..ends].to_vec(),
            tail: line[line.len() - ends..].to_vec(),
        }
    }

    /// As a hunk line.
    pub(super) fn into_line(self) -> Line {
        Line { tag: Tag::Elided, text: encode(&self) }
    }

    /// Whether `line` is the line this was made from.
    pub(super) fn matches(&self, line: &[u8]) -> bool {
        line.len() as u64 == self.len
            && line.starts_with(&self.head)
            && line.ends_with(&self.tail)
            && super::hash(line) == self.hash
    }

    /// As a unified diff prints it (without its ` `): the bytes left out
    /// between head and tail as `…[N bytes]…`.
    pub fn render(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        let kept = (self.head.len() + self.tail.len()) as u64;
        push_hidden(out, self.len.saturating_sub(kept));
        out.extend_from_slice(&self.tail);
    }
}

impl Line {
    /// The splice of a [`Tag::Splice`] line; `None` for another tag or a
    /// damaged one.
    pub fn splice(&self) -> Option<Splice> {
        (self.tag == Tag::Splice).then(|| postcard::from_bytes(&self.text).ok()).flatten()
    }

    /// The elided line of a [`Tag::Elided`] line; `None` for another tag
    /// or a damaged one.
    pub fn elided(&self) -> Option<Elided> {
        (self.tag == Tag::Elided).then(|| postcard::from_bytes(&self.text).ok()).flatten()
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing into a Vec cannot fail for these types: postcard only
    // fails on unsized sequences and full buffers, neither possible here.
    postcard::to_stdvec(value).unwrap_or_default()
}

/// `…[N bytes]…`, or nothing when `n` is 0.
fn push_hidden(out: &mut Vec<u8>, n: u64) {
    if n > 0 {
        out.extend_from_slice(format!("…[{n} bytes]…").as_bytes());
    }
}

/// Bytes compared at a time when looking for the first difference: slice
/// equality is a `memcmp`, fast in every build, where a byte loop is not.
const STRIDE: usize = 256;

/// Length of the longest common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let mut at = 0;
    while at + STRIDE <= len && a[at..at + STRIDE] == b[at..at + STRIDE] {
        at += STRIDE;
    }
    let end = (at + STRIDE).min(len);
    at + a[at..end].iter().zip(&b[at..end]).take_while(|(x, y)| x == y).count()
}

/// Length of the longest common suffix of `a` and `b`.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let (a, b) = (&a[a.len() - len..], &b[b.len() - len..]);
    let mut at = 0;
    while at + STRIDE <= len && a[len - at - STRIDE..len - at] == b[len - at - STRIDE..len - at] {
        at += STRIDE;
    }
    let end = (at + STRIDE).min(len);
    at + a[len - end..len - at]
        .iter()
        .rev()
        .zip(b[len - end..len - at].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// The lines of one changed run: `old` removed, `new` added. When both
/// sides have the same number of lines of at least `long_line` bytes,
/// those pair up in order, and each pair sharing at least `long_line`
/// bytes at its ends becomes a [`Splice`] in place of its removed and
/// added line. The lines between
/// splices are listed removed first, then added, as `diff -u` lists a run.
pub(super) fn run_lines(old: &[&[u8]], new: &[&[u8]], long_line: usize, lines: &mut Vec<Line>) {
    let long = |side: &[&[u8]]| -> Vec<usize> {
        side.iter().enumerate().filter(|(_, l)| l.len() >= long_line).map(|(i, _)| i).collect()
    };
    let (old_long, new_long) = (long(old), long(new));
    let mut splices = Vec::new();
    if old_long.len() == new_long.len() {
        for (&o, &n) in old_long.iter().zip(&new_long) {
            if let Some(splice) = Splice::between(old[o], new[n], long_line) {
                splices.push((o, n, splice));
            }
        }
    }
    let plain = |lines: &mut Vec<Line>, o: std::ops::Range<usize>, n: std::ops::Range<usize>| {
        lines.extend(old[o].iter().map(|l| Line { tag: Tag::Delete, text: l.to_vec() }));
        lines.extend(new[n].iter().map(|l| Line { tag: Tag::Insert, text: l.to_vec() }));
    };
    let (mut o_at, mut n_at) = (0, 0);
    for (o, n, splice) in splices {
        plain(lines, o_at..o, n_at..n);
        lines.push(splice.into_line());
        (o_at, n_at) = (o + 1, n + 1);
    }
    plain(lines, o_at..old.len(), n_at..new.len());
}

/// A context line: whole, or elided when at least `long_line` bytes long.
pub(super) fn context_line(line: &[u8], long_line: usize) -> Line {
    if line.len() >= long_line {
        Elided::of(line).into_line()
    } else {
        Line { tag: Tag::Context, text: line.to_vec() }
    }
}
