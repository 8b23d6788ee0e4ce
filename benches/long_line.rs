//! What an edit of a long line costs: a 5,000,000-byte file of words on
//! one line (no newline), with one byte changed in its middle, and with
//! edits at both ends (a date at its start rewritten, a count at its end
//! grown by two digits), recorded as a sample with its line kept whole (as format version 4 did:
//! `Patch::compute_with_long_line(.., usize::MAX)`) and as a splice (what
//! `Patch::compute` records). For each: the ring bytes of the sample (its
//! frame in a real 64 MiB ring: header, payload compressed when that is
//! smaller, padding), the record's raw size, and the medians of
//! `Patch::compute` (the sampler's CPU for the file, both contents hashed
//! and split included) and `Patch::apply_reverse` (restore's step).
//!
//! Each patch is checked once (it round-trips) before anything is timed.
//! Run with `cargo bench --bench long_line`.

use std::time::{Duration, Instant};

use monitord::diff::Patch;
use monitord::journal::Ring;
use monitord::journal::record::{Body, Change, FORMAT_VERSION, FileChange, Kind, Node, Record, Sample};

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

/// Size of the one-line file.
const SIZE: usize = 5_000_000;

/// Timed runs of each step; the median is quoted.
const RUNS: usize = 7;

/// `len` bytes of words, no newline.
fn one_line(len: usize) -> Vec<u8> {
    const WORDS: &[&[u8]] = &[b"sample ", b"record ", b"mirror ", b"journal ", b"patch ", b"ring ", b"tree "];
    let mut rng = Rng(0x5eed);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.below(WORDS.len())]);
    }
    out.truncate(len);
    out
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn timed(mut f: impl FnMut()) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

/// Ring bytes of one sample holding `patch`, and the record's raw size.
fn ring_cost(patch: &Patch) -> (u64, usize) {
    let record = Record {
        version: FORMAT_VERSION,
        epoch: 1,
        pid: 4242,
        body: Body::Sample(Sample {
            files: vec![FileChange::new(
                b"data/big.json".to_vec(),
                Change::Modified,
                None,
                Node::File,
                patch.clone(),
            )],
            ..Sample::default()
        }),
    };
    let payload = record.encode();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ring = Ring::open_or_create(&dir.path().join("ring.bin"), 64 << 20).expect("ring");
    let before = ring.info().used_bytes;
    ring.append(Kind::Sample as u16, 1, &payload).expect("append");
    (ring.info().used_bytes - before, payload.len())
}

fn main() {
    let old = one_line(SIZE);
    let mut new = old.clone();
    new[SIZE / 2] = b'#';
    case("one-byte edit in the middle", &old, &new);
    let mut ends = old.clone();
    ends[3..13].copy_from_slice(b"2026-11-27");
    ends.splice(SIZE - 10..SIZE - 8, *b"1042");
    case("edits at both ends", &old, &ends);
}

fn case(what: &str, old: &[u8], new: &[u8]) {
    let deadline = Duration::from_secs(5);
    println!("{what} of a {SIZE}-byte one-line file of words:");
    let mut costs = Vec::new();
    for (name, long_line) in [("whole line (version 4)", usize::MAX), ("splice", monitord::diff::LONG_LINE)] {
        let patch = Patch::compute_with_long_line(old, new, deadline, long_line);
        assert_eq!(patch.apply_forward(old).expect("applies"), new, "{name}: forward");
        assert_eq!(patch.apply_reverse(new).expect("applies"), old, "{name}: reverse");
        let (ring, raw) = ring_cost(&patch);
        let compute = timed(|| {
            std::hint::black_box(Patch::compute_with_long_line(old, new, deadline, long_line));
        });
        let apply = timed(|| {
            std::hint::black_box(patch.apply_reverse(new).expect("applies"));
        });
        println!(
            "  {name:<22} ring {ring:>9} bytes (record {raw:>9} bytes), compute {compute:>8.2?}, apply_reverse {apply:>8.2?}"
        );
        costs.push(ring);
    }
    println!(
        "  the splice costs {:.4} % of the whole line's ring bytes",
        costs[1] as f64 / costs[0] as f64 * 100.0
    );
}
