//! The map at a recorded sequence number, and the store's newest map that
//! makes it possible once the baseline has left the ring.
//!
//! This file owns choosing where a map is rebuilt from (the epoch's
//! baseline or the [`Anchor`]), checking that every record in between is
//! held, and the anchor file `<store>/maps`: its format, and reading and
//! replacing it.

use std::io::{self, Write};
use std::path::Path;

use super::{Error, Map};
use crate::journal::record::{Body, Record};
use crate::store;

/// The map as of record `seq`, from decoded records in ring order: the
/// baseline of `seq`'s epoch and the deltas of the epoch's samples up to
/// `seq`; or, once that baseline has left the ring, the epoch's `anchor`
/// and the deltas between it and `seq`, undone or applied.
///
/// # Errors
/// [`Error::NotInRing`], [`Error::BaselineDropped`] or [`Error::Replay`].
pub fn map_at(records: &[(u64, Record)], seq: u64, anchor: Option<&Anchor>) -> Result<Map, Error> {
    let oldest = records.first().map_or(0, |r| r.0);
    let newest = records.last().map_or(0, |r| r.0);
    let index =
        records.iter().position(|(s, _)| *s == seq).ok_or(Error::NotInRing { seq, oldest, newest })?;
    let epoch = records[index].1.epoch;
    let deltas = |range: std::ops::RangeInclusive<u64>| {
        records.iter().filter_map(move |(s, record)| match &record.body {
            Body::Sample(sample) if record.epoch == epoch && range.contains(s) => Some((*s, &sample.maps)),
            _ => None,
        })
    };
    // Every record between where the map starts and `seq` must be held.
    let held = |from: u64, to: u64| {
        let count = records.iter().filter(|(s, _)| (from..=to).contains(s)).count() as u64;
        if from <= to && count != to - from + 1 { Err(Error::Missing { seq, from, to }) } else { Ok(()) }
    };
    let with_seq = |s: u64| {
        move |e| match e {
            Error::Replay { line, .. } => Error::Replay { seq: s, line },
            other => other,
        }
    };
    let baseline = records[..=index].iter().rev().find_map(|(s, r)| match &r.body {
        Body::Baseline(b) if *s == epoch => Some(b),
        _ => None,
    });
    // From the baseline when every record up to `seq` is held; otherwise
    // from the anchor (a damaged stretch may lie between the two).
    let usable_anchor = anchor.filter(|a| a.epoch == epoch && a.seq + 1 >= oldest && a.seq <= newest);
    if let Some(baseline) = baseline {
        let from_baseline = held(epoch, seq);
        if from_baseline.is_ok() || usable_anchor.is_none() {
            from_baseline?;
            let mut map = Map::from_lines(&baseline.maps);
            for (s, delta) in deltas(epoch + 1..=seq) {
                map.apply_forward(delta).map_err(with_seq(s))?;
            }
            return Ok(map);
        }
    }
    // Every record between the anchor and `seq` must be held: a stale
    // anchor (a crash before its rewrite) must not yield a wrong map.
    let anchor = usable_anchor.ok_or(Error::BaselineDropped { seq, epoch })?;
    let mut map = anchor.map.clone();
    held(seq.min(anchor.seq + 1), seq.max(anchor.seq))?;
    if seq >= anchor.seq {
        for (s, delta) in deltas(anchor.seq + 1..=seq) {
            map.apply_forward(delta).map_err(with_seq(s))?;
        }
    } else {
        let later: Vec<_> = deltas(seq + 1..=anchor.seq).collect();
        for (s, delta) in later.into_iter().rev() {
            map.apply_reverse(delta).map_err(with_seq(s))?;
        }
    }
    Ok(map)
}

/// The newest map of an epoch, as kept in `<store>/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The epoch the map belongs to.
    pub epoch: u64,
    /// The record the map is as of.
    pub seq: u64,
    /// The map.
    pub map: Map,
}

const ANCHOR_MAGIC: &[u8] = b"monitord maps anchor v1";

/// The anchor file's bytes: a header line `monitord maps anchor v1 EPOCH
/// SEQ`, then the map text as the kernel printed it.
pub fn encode_anchor(epoch: u64, seq: u64, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64);
    out.extend_from_slice(ANCHOR_MAGIC);
    out.extend_from_slice(format!(" {epoch} {seq}\n").as_bytes());
    out.extend_from_slice(text);
    out
}

/// Decode an anchor file; `None` when it is not one. Never panics.
pub fn decode_anchor(bytes: &[u8]) -> Option<Anchor> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(bytes[..newline].strip_prefix(ANCHOR_MAGIC)?).ok()?;
    let mut numbers = header.split_ascii_whitespace().map(str::parse::<u64>);
    let (Some(Ok(epoch)), Some(Ok(seq)), None) = (numbers.next(), numbers.next(), numbers.next()) else {
        return None;
    };
    Some(Anchor { epoch, seq, map: Map::from_text(&bytes[newline + 1..]) })
}

/// Read `<store>/maps`; `None` when it is missing or not an anchor.
pub fn read_anchor(store_dir: &Path) -> Option<Anchor> {
    decode_anchor(&std::fs::read(store_dir.join(store::MAPS_FILE)).ok()?)
}

/// Replace `<store>/maps` atomically: write in `<store>/tmp/`, then rename.
///
/// # Errors
/// [`Error::Anchor`].
pub fn write_anchor(store_dir: &Path, epoch: u64, seq: u64, text: &[u8]) -> Result<(), Error> {
    let path = store_dir.join(store::MAPS_FILE);
    let tmp = store_dir.join(store::TMP_DIR).join(format!("maps.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&encode_anchor(epoch, seq, text))?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Anchor { path: path.clone(), source }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{Baseline, FORMAT_VERSION, MapsDelta, Sample};

    #[test]
    fn map_at_replays_from_the_epoch_baseline() {
        let record = |epoch, body| Record { version: FORMAT_VERSION, epoch, pid: 1, body };
        let sample = |added: &[&[u8]], removed: &[&[u8]]| {
            Body::Sample(Sample {
                maps: MapsDelta {
                    added: added.iter().map(|l| l.to_vec()).collect(),
                    removed: removed.iter().map(|l| l.to_vec()).collect(),
                },
                ..Sample::default()
            })
        };
        let records = vec![
            (
                1,
                record(
                    1,
                    Body::Baseline(Baseline {
                        maps: vec![b"10-20 r--p 0 00:00 0".to_vec()],
                        ..Baseline::default()
                    }),
                ),
            ),
            (2, record(1, sample(&[b"30-40 r--p 0 00:00 0"], &[]))),
            (3, record(1, sample(&[], &[b"10-20 r--p 0 00:00 0"]))),
        ];
        assert_eq!(map_at(&records, 1, None).unwrap().render(), b"10-20 r--p 0 00:00 0\n");
        assert_eq!(
            map_at(&records, 2, None).unwrap().render(),
            b"10-20 r--p 0 00:00 0\n30-40 r--p 0 00:00 0\n"
        );
        assert_eq!(map_at(&records, 3, None).unwrap().render(), b"30-40 r--p 0 00:00 0\n");
        assert!(matches!(map_at(&records, 9, None), Err(Error::NotInRing { seq: 9, oldest: 1, newest: 3 })));
        assert!(matches!(map_at(&records[1..], 3, None), Err(Error::BaselineDropped { seq: 3, epoch: 1 })));
        let mut bad = records.clone();
        bad.push((4, record(1, sample(&[], &[b"99-aa r--p 0 00:00 0"]))));
        assert!(matches!(map_at(&bad, 4, None), Err(Error::Replay { seq: 4, .. })));

        // The baseline has left the ring: rebuild from the newest map.
        let held = &records[1..];
        let newest = Anchor { epoch: 1, seq: 3, map: Map::from_text(b"30-40 r--p 0 00:00 0\n") };
        assert_eq!(
            map_at(held, 2, Some(&newest)).unwrap().render(),
            b"10-20 r--p 0 00:00 0\n30-40 r--p 0 00:00 0\n",
            "backwards from the anchor"
        );
        assert_eq!(map_at(held, 3, Some(&newest)).unwrap(), newest.map);
        let older = Anchor { seq: 2, map: map_at(&records, 2, None).unwrap(), ..newest.clone() };
        assert_eq!(map_at(held, 3, Some(&older)).unwrap(), newest.map, "forwards from the anchor");
        let stale = Anchor { seq: 1, map: Map::default(), ..newest.clone() };
        assert!(matches!(map_at(&records[2..], 3, Some(&stale)), Err(Error::BaselineDropped { .. })));
        let other_epoch = Anchor { epoch: 7, ..newest.clone() };
        assert!(matches!(map_at(held, 3, Some(&other_epoch)), Err(Error::BaselineDropped { .. })));
    }

    #[test]
    fn anchors_round_trip_and_garbage_is_refused() {
        let text = b"10-20 r--p 0 00:00 0 /a b\n30-40 rw-p 0 00:00 0 \n";
        let anchor = decode_anchor(&encode_anchor(4, 9, text)).unwrap();
        assert_eq!((anchor.epoch, anchor.seq, anchor.map.render()), (4, 9, text.to_vec()));
        for bad in
            [&b""[..], b"monitord maps anchor v1 4\n", b"monitord maps anchor v1 x 9\n", b"something else\n"]
        {
            assert_eq!(decode_anchor(bad), None);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(store::TMP_DIR)).unwrap();
        write_anchor(dir.path(), 4, 9, text).unwrap();
        assert_eq!(read_anchor(dir.path()), Some(anchor));
    }
}
