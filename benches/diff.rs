//! Cost of a line patch: `Patch::compute` and `Patch::apply_forward` on a
//! small file with one changed line, a 1 MiB file with 1 % of its lines
//! changed, and a pathological 1 MiB pair (40 distinct lines, shuffled)
//! under a 100 ms deadline; plus `text::is_text` on an 8 KiB head, the check
//! every changed file goes through first.
//!
//! Each input is checked once (the patch round-trips) before it is timed.
//! Sample counts are small: the machines have 2 shared cores.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use monitord::diff::Patch;
use monitord::text;

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

/// Source-like lines until `size` bytes.
fn lines(size: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    while total < size {
        let line = format!("    let value_{n} = compute(input, {n}); // keep line {n}\n", n = out.len());
        total += line.len();
        out.push(line);
    }
    out
}

/// A file of about `size` bytes and a copy with `changed` of its lines
/// edited, spread evenly.
fn pair(size: usize, changed: usize) -> (Vec<u8>, Vec<u8>) {
    let old = lines(size);
    let mut new = old.clone();
    let step = old.len() / changed;
    for (i, line) in new.iter_mut().enumerate() {
        if i % step == step / 2 {
            *line = format!("    changed({i});\n");
        }
    }
    (old.concat().into_bytes(), new.concat().into_bytes())
}

fn pathological(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    while out.len() < 1 << 20 {
        out.extend_from_slice(format!("line number {:02}\n", rng.next() % 40).as_bytes());
    }
    out
}

fn bench_case(c: &mut Criterion, name: &str, old: &[u8], new: &[u8], deadline: Duration) {
    let patch = Patch::compute(old, new, deadline);
    assert_eq!(patch.apply_forward(old).expect("patch applies"), new, "{name}: forward");
    assert_eq!(patch.apply_reverse(new).expect("patch applies"), old, "{name}: reverse");
    assert!(!patch.is_identity(), "{name}: inputs differ");
    eprintln!(
        "{name}: {} + {} lines, {} hunks",
        patch.lines_added(),
        patch.lines_removed(),
        patch.hunks.len()
    );
    let mut group = c.benchmark_group(name);
    group.bench_function("compute", |b| b.iter(|| Patch::compute(black_box(old), black_box(new), deadline)));
    group.bench_function("apply_forward", |b| b.iter(|| black_box(&patch).apply_forward(black_box(old))));
    group.finish();
}

fn diff(c: &mut Criterion) {
    let no_deadline = Duration::from_secs(60);
    let (old, new) = pair(4096, 1);
    bench_case(c, "4k_one_line", &old, &new, no_deadline);
    let (old, new) = pair(1 << 20, lines(1 << 20).len() / 100);
    bench_case(c, "1m_one_percent", &old, &new, no_deadline);
    let (old, new) = (pathological(1), pathological(2));
    bench_case(c, "1m_pathological_100ms", &old, &new, Duration::from_millis(100));
}

fn is_text(c: &mut Criterion) {
    let head = lines(text::SNIFF_BYTES).concat().into_bytes();
    let head = &head[..text::SNIFF_BYTES];
    assert!(text::is_text(head));
    c.bench_function("is_text_8k", |b| b.iter(|| text::is_text(black_box(head))));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = diff, is_text
}
criterion_main!(benches);
