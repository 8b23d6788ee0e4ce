//! ring.bin speed: append throughput and reading a full ring back.
//!
//! Goals: appends at 500 MB/s of payload or more (4 KiB and 64 KiB records
//! into a 64 MiB ring, wrapping, so every append also drops old records);
//! `Snapshot::read` plus walking every frame of a full 64 MiB ring well
//! under 2 s. Sample counts are small for 2-core machines.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monitord::journal::{Ring, Snapshot};

const RING_BYTES: u64 = 4096 + 64 * 1024 * 1024;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// A ring filled past one wrap, so pages are allocated and mapped and every
/// further append drops old records.
fn full_ring(path: &Path, len: usize) -> Ring {
    let mut ring = Ring::open_or_create(path, RING_BYTES).expect("create ring");
    let p = payload(len);
    let mut t = 0;
    while ring.info().dropped_records == 0 {
        t += 1;
        ring.append(1, t, &p).expect("append");
    }
    ring
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for len in [4096usize, 65536] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ring.bin");
        let mut ring = full_ring(&path, len);
        let p = payload(len);

        // Correctness once before timing: the newest record reads back.
        let seq = ring.append(2, 0, &p).expect("append");
        let snap = Snapshot::read(&path).expect("read");
        let last = snap.frames().last().expect("a record");
        assert_eq!((last.seq, last.kind, &last.payload[..]), (seq, 2, &p[..]));

        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("{}KiB", len / 1024), |b| {
            let mut t = 0;
            b.iter(|| {
                t += 1;
                black_box(ring.append(1, t, black_box(&p)).expect("append"))
            });
        });
    }
    group.finish();
}

fn read_full(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ring.bin");
    let ring = full_ring(&path, 4096);
    let info = ring.info();
    drop(ring);
    let live = info.next_seq - info.oldest_seq;
    assert_eq!(Snapshot::read(&path).expect("read").frames().count() as u64, live);

    let mut group = c.benchmark_group("read");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(info.capacity_bytes));
    group.bench_function("full_64MiB_4KiB_records", |b| {
        b.iter(|| {
            let snap = Snapshot::read(&path).expect("read");
            let (mut n, mut bytes) = (0u64, 0usize);
            for f in snap.frames() {
                n += 1;
                bytes += f.payload.len();
            }
            assert_eq!(n, live);
            black_box(bytes)
        });
    });
    group.finish();
}

criterion_group!(benches, append, read_full);
criterion_main!(benches);
