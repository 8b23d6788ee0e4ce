//! A ring file image: reading, walking and scanning hostile bytes never
//! panics, and every frame returned decodes or fails cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitord::journal::Snapshot;
use monitord::journal::record::Record;

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = Snapshot::from_bytes(data.to_vec()) else { return };
    let _ = snapshot.info();
    for frame in snapshot.frames() {
        let _ = Record::decode(&frame.payload);
    }
    let scan = snapshot.scan();
    for frame in &scan.frames {
        let _ = Record::decode(&frame.payload);
    }
});
