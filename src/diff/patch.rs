//! Applying, reversing and rendering a [`Patch`]: the work that needs only
//! the patch and one side's bytes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use similar::{DiffOp, DiffTag};

use super::{Error, Hunk, Line, Patch, Tag, hash};

/// Applies `patch` to `base`, old -> new, or new -> old when `reverse`.
pub(super) fn apply(patch: &Patch, base: &[u8], reverse: bool) -> Result<Vec<u8>, Error> {
    let (base_len, base_hash, out_len, out_hash) = if reverse {
        (patch.new_len, patch.new_hash, patch.old_len, patch.old_hash)
    } else {
        (patch.old_len, patch.old_hash, patch.new_len, patch.new_hash)
    };
    let found_hash = hash(base);
    if base.len() as u64 != base_len || found_hash != base_hash {
        return Err(Error::BaseMismatch {
            expected_len: base_len,
            expected_hash: base_hash,
            found_len: base.len() as u64,
            found_hash,
        });
    }
    // Trust the promised length only as far as the patch can deliver it.
    let inserted: usize = patch
        .hunks
        .iter()
        .flat_map(|h| &h.lines)
        .map(|l| match effective(l.tag, reverse) {
            Tag::Insert => l.text.len(),
            // Its new middle, which the encoding holds (the rest of the
            // line is the base's).
            Tag::Splice => l.text.len(),
            _ => 0,
        })
        .sum();
    let capacity = usize::try_from(out_len).unwrap_or(usize::MAX).min(base.len().saturating_add(inserted));
    let mut out = Vec::with_capacity(capacity);
    let mut cursor = Cursor { bytes: base, pos: 0, line: 0 };
    for (index, hunk) in patch.hunks.iter().enumerate() {
        let start = u64::from(if reverse { hunk.new_start } else { hunk.old_start });
        let mismatch = |line: u64| Error::HunkMismatch { hunk: index, line: line + 1 };
        if start < cursor.line {
            return Err(mismatch(start));
        }
        let from = cursor.pos;
        if !cursor.skip(start - cursor.line) {
            return Err(mismatch(cursor.line));
        }
        out.extend_from_slice(&base[from..cursor.pos]);
        for line in &hunk.lines {
            match effective(line.tag, reverse) {
                Tag::Insert => out.extend_from_slice(&line.text),
                Tag::Splice => {
                    let at = cursor.line;
                    let base_line = cursor.next_line().ok_or(mismatch(at))?;
                    let splice = line.splice().ok_or(mismatch(at))?;
                    if !splice.apply(base_line, reverse, &mut out) {
                        return Err(mismatch(at));
                    }
                }
                Tag::Elided => {
                    let at = cursor.line;
                    let base_line = cursor.next_line().ok_or(mismatch(at))?;
                    match line.elided() {
                        Some(elided) if elided.matches(base_line) => out.extend_from_slice(base_line),
                        _ => return Err(mismatch(at)),
                    }
                }
                tag => {
                    let at = cursor.line;
                    match cursor.next_line() {
                        Some(got) if got == line.text.as_slice() => {
                            if tag == Tag::Context {
                                out.extend_from_slice(got);
                            }
                        }
                        _ => return Err(mismatch(at)),
                    }
                }
            }
        }
    }
    out.extend_from_slice(&base[cursor.pos..]);
    let found_hash = hash(&out);
    if out.len() as u64 != out_len || found_hash != out_hash {
        return Err(Error::ResultMismatch {
            expected_len: out_len,
            expected_hash: out_hash,
            found_len: out.len() as u64,
            found_hash,
        });
    }
    Ok(out)
}

fn effective(tag: Tag, reverse: bool) -> Tag {
    if reverse { tag.reversed() } else { tag }
}

/// Walks the base line by line, keeping the byte offset and line index.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> Cursor<'a> {
    fn next_line(&mut self) -> Option<&'a [u8]> {
        let rest = &self.bytes[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let len = find_newline(rest).map_or(rest.len(), |i| i + 1);
        self.pos += len;
        self.line += 1;
        Some(&rest[..len])
    }

    /// Moves past `n` lines; false if the base ends first.
    fn skip(&mut self, n: u64) -> bool {
        for _ in 0..n {
            if self.next_line().is_none() {
                return false;
            }
        }
        true
    }
}

/// For 8 bytes of input (`word.len() == 8`), the top bit of byte `i` of the
/// result is set when `word[i]` is `\n`, and no other bit is: an exact
/// SWAR byte compare, 8 bytes per step with no branch.
#[inline]
pub(super) fn newline_bits(word: &[u8]) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(word);
    // Zero exactly where the byte was '\n'.
    let x = u64::from_le_bytes(bytes) ^ 0x0a0a_0a0a_0a0a_0a0a;
    // Bit 7 of each byte is set when that byte of x is not zero; adding
    // 0x7f to a value of at most 0x7f never carries into the next byte.
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// Index of the first `\n` in `bytes`.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    for (index, word) in (&mut words).enumerate() {
        let bits = newline_bits(word);
        if bits != 0 {
            return Some(index * 8 + bits.trailing_zeros() as usize / 8);
        }
    }
    let base = bytes.len() - words.remainder().len();
    words.remainder().iter().position(|&b| b == b'\n').map(|i| base + i)
}

/// Numbers the distinct lines of both sides: equal lines get equal ids.
pub(super) fn intern<'a>(old: &[&'a [u8]], new: &[&'a [u8]]) -> (Vec<u32>, Vec<u32>) {
    let mut ids: HashMap<&'a [u8], u32, BuildHasherDefault<LineHasher>> =
        HashMap::with_capacity_and_hasher(old.len() + 1, BuildHasherDefault::default());
    let mut number = |lines: &[&'a [u8]]| -> Vec<u32> {
        lines
            .iter()
            .map(|&line| {
                let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                *ids.entry(line).or_insert(next)
            })
            .collect()
    };
    let old_ids = number(old);
    let new_ids = number(new);
    (old_ids, new_ids)
}

/// Hashes a line with one xxh3 call (std's `Hash` for `[u8]` writes the
/// length, then the bytes).
#[derive(Default)]
struct LineHasher(u64);

impl Hasher for LineHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 ^= n as u64;
    }
}

/// The hunk seen from the other direction, each changed run listing its
/// removed lines before its added ones.
pub(super) fn reverse_hunk(hunk: &Hunk) -> Hunk {
    let mut lines = Vec::with_capacity(hunk.lines.len());
    let mut run_start = 0;
    let flush = |lines: &mut Vec<Line>, run: &[Line]| {
        for tag in [Tag::Insert, Tag::Delete] {
            lines.extend(
                run.iter()
                    .filter(|l| l.tag == tag)
                    .map(|l| Line { tag: tag.reversed(), text: l.text.clone() }),
            );
        }
    };
    for (i, line) in hunk.lines.iter().enumerate() {
        // Context and splices split runs and keep their places.
        let kept = match line.tag {
            Tag::Context | Tag::Elided => line.clone(),
            Tag::Splice => match line.splice() {
                Some(splice) => splice.reversed().into_line(),
                // Damaged: left as it is, to fail when applied.
                None => line.clone(),
            },
            Tag::Delete | Tag::Insert => continue,
        };
        flush(&mut lines, &hunk.lines[run_start..i]);
        lines.push(kept);
        run_start = i + 1;
    }
    flush(&mut lines, &hunk.lines[run_start..]);
    Hunk { old_start: hunk.new_start, new_start: hunk.old_start, lines }
}

/// The unified diff of `patch`, or with `reverse` of the patch going the
/// other way, exactly as `reverse_hunk` orders it, without building it:
/// within each changed run the added lines come first, as removed ones.
pub(super) fn render_unified(
    patch: &Patch,
    old_name: &[u8],
    new_name: &[u8],
    reverse: bool,
    out: &mut Vec<u8>,
) {
    if patch.hunks.is_empty() {
        return;
    }
    out.extend_from_slice(b"--- ");
    out.extend_from_slice(old_name);
    out.extend_from_slice(b"\n+++ ");
    out.extend_from_slice(new_name);
    out.push(b'\n');
    // The stored tags that read as added and as removed lines.
    let (added, removed) = if reverse { (Tag::Delete, Tag::Insert) } else { (Tag::Insert, Tag::Delete) };
    for hunk in &patch.hunks {
        let old_count = hunk.lines.iter().filter(|l| l.tag != added).count();
        let new_count = hunk.lines.iter().filter(|l| l.tag != removed).count();
        let (old_start, new_start) =
            if reverse { (hunk.new_start, hunk.old_start) } else { (hunk.old_start, hunk.new_start) };
        out.extend_from_slice(b"@@ -");
        push_range(out, old_start, old_count);
        out.extend_from_slice(b" +");
        push_range(out, new_start, new_count);
        out.extend_from_slice(b" @@\n");
        if !reverse {
            for line in &hunk.lines {
                render_line(out, line, false);
            }
            continue;
        }
        let run = |out: &mut Vec<u8>, run: &[Line]| {
            for (tag, mark) in [(Tag::Insert, b'-'), (Tag::Delete, b'+')] {
                for line in run.iter().filter(|l| l.tag == tag) {
                    push_line(out, mark, &line.text);
                }
            }
        };
        let mut run_start = 0;
        for (i, line) in hunk.lines.iter().enumerate() {
            if matches!(line.tag, Tag::Delete | Tag::Insert) {
                continue;
            }
            run(out, &hunk.lines[run_start..i]);
            render_line(out, line, true);
            run_start = i + 1;
        }
        run(out, &hunk.lines[run_start..]);
    }
}

/// One stored line of a hunk, seen forwards or (`reverse`) backwards.
fn render_line(out: &mut Vec<u8>, line: &Line, reverse: bool) {
    match line.tag {
        Tag::Context => push_line(out, b' ', &line.text),
        Tag::Delete => push_line(out, if reverse { b'+' } else { b'-' }, &line.text),
        Tag::Insert => push_line(out, if reverse { b'-' } else { b'+' }, &line.text),
        Tag::Splice => {
            let (mut old, mut new) = (Vec::new(), Vec::new());
            match line.splice() {
                Some(splice) => {
                    splice.render(reverse, &mut old);
                    splice.render(!reverse, &mut new);
                }
                None => {
                    old.extend_from_slice(DAMAGED.as_bytes());
                    new.extend_from_slice(DAMAGED.as_bytes());
                }
            }
            push_line(out, b'-', &old);
            push_line(out, b'+', &new);
        }
        Tag::Elided => {
            let mut text = Vec::new();
            match line.elided() {
                Some(elided) => elided.render(&mut text),
                None => text.extend_from_slice(DAMAGED.as_bytes()),
            }
            push_line(out, b' ', &text);
        }
    }
}

/// What a splice or elided line that does not decode renders as.
const DAMAGED: &str = "…[damaged line]…\n";

/// One hunk line: its mark, its text, and GNU diff's note when the text
/// lacks its `\n`.
fn push_line(out: &mut Vec<u8>, mark: u8, text: &[u8]) {
    out.push(mark);
    out.extend_from_slice(text);
    if text.last() != Some(&b'\n') {
        out.extend_from_slice(b"\n\\ No newline at end of file\n");
    }
}

/// GNU diff's `print_unidiff_number_range`: an empty range is named by the
/// line before it, a one-line range by its line alone.
fn push_range(out: &mut Vec<u8>, start: u32, count: usize) {
    match count {
        0 => {
            push_decimal(out, u64::from(start));
            out.extend_from_slice(b",0");
        }
        1 => push_decimal(out, u64::from(start) + 1),
        _ => {
            push_decimal(out, u64::from(start) + 1);
            out.push(b',');
            push_decimal(out, count as u64);
        }
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Changed regions as (old range, new range), in order, none touching.
pub(super) type Changes = Vec<(Range<usize>, Range<usize>)>;

/// Turns `similar`'s ops into changed regions, after sliding each run of
/// changed lines the way GNU diff's `shift_boundaries` does: back, to merge
/// with an earlier run, then forward as far as it goes, then back again to
/// line up with a run in the other file. Where the diff had a choice between
/// equally short scripts this picks the one `diff -u` prints, and it never
/// makes a script longer.
///
/// `ops` index the lines from `offset` on: the lines before were left out
/// as equal.
pub(super) fn shift_boundaries(ops: &[DiffOp], offset: usize, old: &[&[u8]], new: &[&[u8]]) -> Changes {
    // One flag per line plus a false sentinel each end, as in GNU diff.
    let mut flags = [vec![false; old.len() + 2], vec![false; new.len() + 2]];
    for op in ops {
        let (tag, o, n) = op.as_tag_tuple();
        if tag != DiffTag::Equal {
            flags[0][offset + o.start + 1..offset + o.end + 1].fill(true);
            flags[1][offset + n.start + 1..offset + n.end + 1].fill(true);
        }
    }
    let [old_flags, new_flags] = &mut flags;
    shift_one(old_flags, new_flags, old);
    shift_one(new_flags, old_flags, new);

    let (mut i, mut j) = (0, 0);
    let mut changes = Changes::new();
    while i < old.len() || j < new.len() {
        if old_flags[i + 1] || new_flags[j + 1] {
            let (si, sj) = (i, j);
            while old_flags[i + 1] {
                i += 1;
            }
            while new_flags[j + 1] {
                j += 1;
            }
            changes.push((si..i, sj..j));
        } else {
            i += 1;
            j += 1;
        }
    }
    changes
}

/// GNU diff's `shift_boundaries` for one file. `changed` and `other` hold a
/// false sentinel at each end; `lines` are this file's lines, so index `k`
/// of the flags is line `k - 1`.
fn shift_one(changed: &mut [bool], other: &[bool], lines: &[&[u8]]) {
    let same = |a: usize, b: usize| lines[a - 1] == lines[b - 1];
    let end = lines.len() + 1;
    let (mut i, mut j) = (1, 1);
    loop {
        while i < end && !changed[i] {
            while other[j] {
                j += 1;
            }
            j += 1;
            i += 1;
        }
        if i == end {
            break;
        }
        let mut start = i;
        while changed[i] {
            i += 1;
        }
        while other[j] {
            j += 1;
        }
        let mut corresponding;
        loop {
            let run = i - start;
            // Back, merging with earlier runs.
            while start > 1 && same(start - 1, i - 1) {
                start -= 1;
                changed[start] = true;
                i -= 1;
                changed[i] = false;
                while changed[start - 1] {
                    start -= 1;
                }
                j -= 1;
                while other[j] {
                    j -= 1;
                }
            }
            corresponding = if other[j - 1] { i } else { end };
            // Forward, merging with later runs, as far as it goes.
            while i != end && same(start, i) {
                changed[start] = false;
                start += 1;
                changed[i] = true;
                i += 1;
                while changed[i] {
                    i += 1;
                }
                j += 1;
                while other[j] {
                    j += 1;
                    corresponding = i;
                }
            }
            if run == i - start {
                break;
            }
        }
        // Back to line up with a changed run in the other file.
        while corresponding < i {
            start -= 1;
            changed[start] = true;
            i -= 1;
            changed[i] = false;
            j -= 1;
            while other[j] {
                j -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn newline_bits_flags_exactly_the_newlines() {
        for b in 0..=255u8 {
            for i in 0..8 {
                let mut word = [b'x'; 8];
                word[i] = b;
                let want = if b == b'\n' { 0x80 << (8 * i) } else { 0 };
                assert_eq!(newline_bits(&word), want, "byte {b:#04x} at {i}");
            }
        }
        assert_eq!(newline_bits(b"\n\n\n\n\n\n\n\n"), 0x8080_8080_8080_8080);
    }

    proptest! {
        #[test]
        fn newline_search_agrees_with_a_plain_scan(
            bytes in prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..200),
        ) {
            let plain: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
            prop_assert_eq!(super::super::split_lines(&bytes), plain);
            prop_assert_eq!(find_newline(&bytes), bytes.iter().position(|&b| b == b'\n'));
        }
    }
}
