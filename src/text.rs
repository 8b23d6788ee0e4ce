//! Text or data: the content check `file(1)` would make.
//!
//! This module owns the one rule that decides whether monitord diffs a file
//! or only lists it as binary: [`is_text`] on the first [`SNIFF_BYTES`] of
//! its content. The rule is the byte classes of `file(1)`'s `encoding.c`
//! (`text_chars`): a file is text when every byte is a character that plain
//! ASCII, ISO-8859 or non-ISO "extended ASCII" text may contain. UTF-8 and
//! 8-bit encodings such as Latin-1 are text; a NUL byte or another control
//! character makes it data.
//!
//! Two deliberate differences from `file -b --mime-encoding`: an empty file
//! is text here (`file` calls it `binary`), and UTF-16/UTF-32 with a byte
//! order mark are data here (they are full of NUL bytes, and a line diff of
//! them would be useless). Magic numbers are not consulted: a PNG or ELF
//! header is data because of its bytes, not because of its signature.

/// How many leading bytes are examined.
pub const SNIFF_BYTES: usize = 8192;

/// True when `head` (the first [`SNIFF_BYTES`] of a file, or all of a
/// shorter one) is text: no NUL bytes and no control characters other than
/// BEL, backspace, tab, newline, vertical tab, form feed, carriage return and
/// escape (`\x07`–`\x0d`, `\x1b`), and no DEL (`\x7f`). UTF-8, ASCII and
/// 8-bit encodings such as Latin-1 (bytes `0x80`–`0xff`) count as text, so a
/// UTF-8 sequence cut by the end of `head` does not make a file data. Empty
/// is text. Bytes past [`SNIFF_BYTES`] are not examined.
pub fn is_text(head: &[u8]) -> bool {
    let head = &head[..head.len().min(SNIFF_BYTES)];
    // Branch-free within a chunk so that the compiler can vectorise it.
    let mut chunks = head.chunks_exact(64);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |bad, &b| bad | never_in_text(b)) {
            return false;
        }
    }
    !chunks.remainder().iter().any(|&b| never_in_text(b))
}

/// The bytes `file(1)`'s `text_chars` table puts in class `F` (never in
/// text), as comparisons; a test checks them against a copy of the table.
#[inline(always)]
fn never_in_text(b: u8) -> bool {
    b < 0x07 || (b > 0x0d && b < 0x20 && b != 0x1b) || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `file(1)`'s classes: never in text, plain ASCII text, ISO-8859 text,
    /// non-ISO extended ASCII (Mac, IBM PC) text.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Class {
        Never,
        Ascii,
        Iso,
        Extended,
    }

    /// A copy of `text_chars` from `file(1)`'s `encoding.c`, one entry per byte value.
    const TEXT_CHARS: [Class; 256] = {
        let mut table = [Class::Never; 256];
        let mut b = 0;
        while b < 256 {
            table[b] = match b as u8 {
                // BEL BS HT LF VT FF CR, ESC, and printable ASCII.
                0x07..=0x0d | 0x1b | 0x20..=0x7e => Class::Ascii,
                // NEL counts as plain text in file(1).
                0x85 => Class::Ascii,
                0x80..=0x9f => Class::Extended,
                0xa0..=0xff => Class::Iso,
                _ => Class::Never,
            };
            b += 1;
        }
        table
    };

    #[test]
    fn fast_check_agrees_with_the_file_table() {
        for b in 0..=255u8 {
            assert_eq!(never_in_text(b), TEXT_CHARS[usize::from(b)] == Class::Never, "byte {b:#04x}");
        }
    }

    /// Bytes from the start of real formats and typical text, and whether
    /// they are text.
    fn cases() -> Vec<(&'static str, Vec<u8>, bool)> {
        let mut cut_utf8 = "é".repeat(SNIFF_BYTES).into_bytes();
        cut_utf8.truncate(SNIFF_BYTES - 1); // ends in the first byte of "é"
        let mut cut_at_boundary = b"x".repeat(SNIFF_BYTES - 1);
        cut_at_boundary.extend_from_slice("€".as_bytes()); // 3 bytes, cut after 1
        let mut nul_after_head = b"text\n".repeat(2000);
        nul_after_head.truncate(SNIFF_BYTES);
        nul_after_head.extend_from_slice(b"\0\0\0");
        vec![
            ("empty", Vec::new(), true),
            ("ascii", b"hello, world\n".to_vec(), true),
            ("source code", b"fn main() {\n\tprintln!(\"hi\");\n}\n".to_vec(), true),
            ("crlf and form feed", b"a\r\nb\x0c\r\n\x0b".to_vec(), true),
            ("backspace and bell", b"b\x08_old tty bold\x07\n".to_vec(), true),
            ("esc colour codes", b"\x1b[31mred\x1b[0m plain\n".to_vec(), true),
            ("utf-8", "naïve café — ünïcödé ✓ 日本語\n".as_bytes().to_vec(), true),
            ("latin-1", b"caf\xe9 na\xefve \xa9 2024\n".to_vec(), true),
            ("cp1252 quotes", b"\x93quoted\x94 \x85\n".to_vec(), true),
            ("utf-8 cut at the sniff boundary", cut_utf8, true),
            ("utf-8 cut past the sniff boundary", cut_at_boundary, true),
            ("nul only after the sniffed head", nul_after_head, true),
            (
                "elf header",
                b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x3e\x00".to_vec(),
                false,
            ),
            ("png magic", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec(), false),
            ("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03".to_vec(), false),
            ("nul in text", b"almost text\0\n".to_vec(), false),
            ("del", b"rub\x7fout\n".to_vec(), false),
            ("soh", b"\x01header\n".to_vec(), false),
            ("utf-16le with bom", b"\xff\xfeh\x00i\x00\n\x00".to_vec(), false),
        ]
    }

    #[test]
    fn table_of_cases() {
        for (name, bytes, text) in cases() {
            assert_eq!(is_text(&bytes), text, "case {name:?}");
        }
    }

    #[test]
    fn one_bad_byte_anywhere_in_the_head_makes_data() {
        let mut head = b"plain text line\n".repeat(SNIFF_BYTES / 16);
        assert_eq!(head.len(), SNIFF_BYTES);
        assert!(is_text(&head));
        for at in [0, 1, 63, 64, 65, 4000, SNIFF_BYTES - 65, SNIFF_BYTES - 1] {
            head[at] = 0;
            assert!(!is_text(&head), "nul at {at}");
            head[at] = b'x';
        }
    }

    /// Compares with `file -b --mime-encoding` on generated files: text here
    /// exactly when `file` names an encoding other than `binary`.
    #[test]
    #[ignore = "needs file(1): apt-get install file"]
    fn agrees_with_file_mime_encoding() {
        let file = std::path::Path::new("/usr/bin/file");
        assert!(file.exists(), "this test needs /usr/bin/file (apt-get install file)");
        let mut samples: Vec<(String, Vec<u8>)> = cases()
            .into_iter()
            .filter(|(name, bytes, _)| {
                // Documented differences (see the module doc), and inputs
                // longer than the head, which file(1) reads further.
                !bytes.is_empty() && !name.contains("bom") && bytes.len() <= SNIFF_BYTES
            })
            .map(|(name, bytes, _)| (name.to_string(), bytes))
            .collect();
        // Text with one byte of each value spliced in.
        for b in 0..=255u8 {
            samples.push((format!("byte {b:#04x}"), [&b"some text "[..], &[b], b" more\n"].concat()));
        }
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = samples
            .iter()
            .enumerate()
            .map(|(i, (_, bytes))| {
                let path = dir.path().join(format!("{i:03}"));
                std::fs::write(&path, bytes).unwrap();
                path
            })
            .collect();
        let output =
            std::process::Command::new(file).arg("-b").arg("--mime-encoding").args(&paths).output().unwrap();
        assert!(output.status.success(), "file failed: {output:?}");
        let answers: Vec<&str> = std::str::from_utf8(&output.stdout).unwrap().lines().collect();
        assert_eq!(answers.len(), samples.len());
        for ((name, bytes), answer) in samples.iter().zip(answers) {
            assert_eq!(is_text(bytes), answer != "binary", "{name}: file(1) says {answer:?} for {bytes:?}");
        }
    }
}
