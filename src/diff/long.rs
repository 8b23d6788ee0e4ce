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
//! - [`Tag::Splice`] holds a [`Splice`]: a long line changed in place. The
//!   two sides share a prefix and a suffix; the splice keeps their lengths,
//!   both changed middles, and up to [`SPLICE_CONTEXT`] bytes of the shared
//!   text each side of them, so that renders and `log -S`/`-G` show the
//!   edit in its surroundings.
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
//! printed, or `\ No newline at end of file` is). For example, an `X`
//! turned into a `Y` at offset 2,500,000 of a 5,000,000-byte line ending
//! in `\n`:
//!
//! ```text
//! -…[2499936 bytes]…(64 bytes before)X(64 bytes after)…[2499934 bytes]…
//! +…[2499936 bytes]…(64 bytes before)Y(64 bytes after)…[2499934 bytes]…
//! ```

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

/// A long line changed in place: the old line is
/// `P + old + S` and the new one `P + new + S` for a shared prefix `P`
/// of [`Splice::prefix`] bytes and a shared suffix `S` of
/// [`Splice::suffix`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splice {
    /// Length of the shared prefix.
    pub prefix: u64,
    /// Length of the shared suffix.
    pub suffix: u64,
    /// The last bytes of the prefix (at most [`SPLICE_CONTEXT`]).
    pub before: Vec<u8>,
    /// The old line's bytes between prefix and suffix.
    pub old: Vec<u8>,
    /// The new line's bytes between prefix and suffix.
    pub new: Vec<u8>,
    /// The first bytes of the suffix (at most [`SPLICE_CONTEXT`]).
    pub after: Vec<u8>,
    /// The suffix is longer than [`Splice::after`] and ends with `\n`
    /// (the line's end is then not among the kept bytes).
    pub newline: bool,
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

impl Splice {
    /// The splice from `old` to `new`, when they share at least `least`
    /// bytes at their ends (else a removed and an added line cost about as
    /// much, and say more).
    pub(super) fn between(old: &[u8], new: &[u8], least: usize) -> Option<Splice> {
        let prefix = common_prefix(old, new);
        let suffix = common_suffix(&old[prefix..], &new[prefix..]);
        if prefix + suffix < least {
            return None;
        }
        let after = &old[old.len() - suffix..][..suffix.min(SPLICE_CONTEXT)];
        Some(Splice {
            prefix: prefix as u64,
            suffix: suffix as u64,
            before: old[prefix - prefix.min(SPLICE_CONTEXT)..prefix].to_vec(),
            old: old[prefix..old.len() - suffix].to_vec(),
            new: new[prefix..new.len() - suffix].to_vec(),
            after: after.to_vec(),
            newline: suffix > after.len() && old.last() == Some(&b'\n'),
        })
    }

    /// As a hunk line.
    pub(super) fn into_line(self) -> Line {
        Line { tag: Tag::Splice, text: encode(&self) }
    }

    /// The same splice seen from the other direction.
    pub fn reversed(&self) -> Splice {
        Splice { old: self.new.clone(), new: self.old.clone(), ..self.clone() }
    }

    /// Appends to `out` the line that replaces `line` (the old side, or the
    /// new side when `reverse`); false, with `out` unchanged, when `line`
    /// is not the side this splice was made from.
    pub(super) fn apply(&self, line: &[u8], reverse: bool, out: &mut Vec<u8>) -> bool {
        let (from, to) = if reverse { (&self.new, &self.old) } else { (&self.old, &self.new) };
        let (Ok(prefix), Ok(suffix)) = (usize::try_from(self.prefix), usize::try_from(self.suffix)) else {
            return false;
        };
        let fits = prefix.checked_add(from.len()).and_then(|n| n.checked_add(suffix)) == Some(line.len())
            && self.before.len() <= prefix.min(SPLICE_CONTEXT)
            && self.after.len() <= suffix.min(SPLICE_CONTEXT);
        if !fits {
            return false;
        }
        let end = prefix + from.len();
        let kept = line[prefix - self.before.len()..prefix] == self.before[..]
            && line[prefix..end] == from[..]
            && line[end..end + self.after.len()] == self.after[..]
            && self.newline == (suffix > self.after.len() && line.last() == Some(&b'\n'));
        if kept {
            out.extend_from_slice(&line[..prefix]);
            out.extend_from_slice(to);
            out.extend_from_slice(&line[end..]);
        }
        kept
    }

    /// The kept bytes of one side (the new side when `new`): the context
    /// before, the middle, the context after. What `log -S`/`-G` search.
    pub fn window(&self, new: bool) -> Vec<u8> {
        let middle = if new { &self.new } else { &self.old };
        [&self.before[..], middle, &self.after[..]].concat()
    }

    /// One side as a unified diff prints it (without its `-`/`+`): the
    /// bytes left out as `…[N bytes]…`, ending in `\n` when the line does.
    pub fn render(&self, new: bool, out: &mut Vec<u8>) {
        let hidden_before = self.prefix.saturating_sub(self.before.len() as u64);
        push_hidden(out, hidden_before);
        out.extend_from_slice(&self.window(new));
        let hidden_after = self.suffix.saturating_sub(self.after.len() as u64);
        push_hidden(out, hidden_after.saturating_sub(u64::from(self.newline)));
        if self.newline {
            out.push(b'\n');
        }
    }
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
