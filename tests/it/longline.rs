//! A one-byte edit of a one-line file of megabytes costs its changed bytes
//! in the ring, not the line: the sample records a splice, restore gives
//! back every version exactly, `show` prints the splice with the bytes it
//! leaves out counted, and `verify` passes.

use std::fs;

use monitord::diff::Tag;
use monitord::journal::Snapshot;
use monitord::journal::record::{Kind, Record};

use crate::harness::*;

/// Size of the one-line file.
const SIZE: usize = 5_000_000;

/// What a sample may cost in the ring for a one-byte edit.
const MAX_PAYLOAD: usize = 64 << 10;

/// `len` bytes of words drawn from `seed`, with no newline: one line.
fn one_line_of_words(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&[u8]] = &[b"sample ", b"record ", b"mirror ", b"journal ", b"patch ", b"ring ", b"tree "];
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state % WORDS.len() as u64) as usize]);
    }
    out.truncate(len);
    out
}

#[test]
fn one_byte_edits_of_a_five_megabyte_line_are_small_samples_that_restore_exactly() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let path = tree.path().join("big.json");
    let mut content = one_line_of_words(11, SIZE);
    fs::write(&path, &content).unwrap();
    fs::write(tree.path().join("small.txt"), "one\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &[]);
    let mut states = vec![(1, snapshot(tree.path()))];
    for (i, at) in [SIZE / 2, SIZE / 2 + 1000, SIZE / 3].into_iter().enumerate() {
        content[at] = b'A' + i as u8;
        fs::write(&path, &content).unwrap();
        if i == 1 {
            fs::write(tree.path().join("small.txt"), "one\ntwo\n").unwrap();
        }
        let seq = m.sample();
        states.push((seq, snapshot(tree.path())));
    }
    m.stop();

    // (a) Each sample's record, inflated, is far under the line's size.
    let snapshot = Snapshot::read(&store.path().join("ring.bin")).unwrap();
    let samples: Vec<(u64, usize, Record)> = snapshot
        .frames()
        .filter(|f| f.kind == Kind::Sample as u16)
        .map(|f| (f.seq, f.payload.len(), Record::decode(&f.payload).unwrap()))
        .collect();
    let seqs: Vec<u64> = states[1..].iter().map(|s| s.0).collect();
    for &seq in &seqs {
        let (_, len, record) = samples.iter().find(|s| s.0 == seq).expect("the sample is in the ring");
        assert!(*len <= MAX_PAYLOAD, "sample {seq} is {len} bytes");
        let change = record.changes().unwrap().files.iter().find(|c| c.path == b"big.json").unwrap();
        let tags: Vec<Tag> = change.patch.hunks.iter().flat_map(|h| &h.lines).map(|l| l.tag).collect();
        assert_eq!(tags, [Tag::Splice], "sample {seq}");
    }

    // (b) Restore gives every version byte for byte.
    for (seq, expected) in &states {
        assert!(restored(store.path(), *seq) == *expected, "restore --at {seq} differs");
    }

    // (c) `show` prints the splice, the bytes left out counted: the first
    // edit is at byte 2,500,000, with 64 bytes kept each side.
    let s = store.path().to_str().unwrap();
    let shown = monitord(&["show", "--store", s, &seqs[0].to_string()]);
    shown.expect_success();
    let out = shown.text();
    let tail = SIZE - SIZE / 2 - 1 - 64;
    assert!(out.contains("\n-…[2499936 bytes]…"), "{}", &out[..out.len().min(2000)]);
    assert!(out.contains("\n+…[2499936 bytes]…"), "{}", &out[..out.len().min(2000)]);
    let after = String::from_utf8(content[SIZE / 2 + 1..SIZE / 2 + 65].to_vec()).unwrap();
    assert!(out.contains(&format!("A{after}…[{tail} bytes]…\n\\ No newline at end of file\n")), "{out}");
    assert!(out.len() < 2000, "show prints {} bytes", out.len());
    // Going back, the edited byte is on the removed side.
    let before = String::from_utf8(content[SIZE / 2 - 64..SIZE / 2].to_vec()).unwrap();
    let back = monitord(&["show", "--store", s, "--reverse", &seqs[0].to_string()]);
    assert!(
        back.expect_success().text().contains(&format!("\n-…[2499936 bytes]…{before}A{after}…")),
        "{}",
        back.text()
    );
    // JSON carries the same diff text.
    let json = monitord(&["show", "--store", s, "--json", &seqs[0].to_string()]);
    let value: serde_json::Value = serde_json::from_slice(&json.expect_success().stdout).unwrap();
    let forward = value["files"][0]["forward"].as_str().unwrap();
    assert!(forward.contains(&format!("+…[2499936 bytes]…{before}A{after}…[{tail} bytes]…")), "{value}");

    // (d) The store checks out.
    monitord(&["verify", "--store", s]).expect_success();
}
