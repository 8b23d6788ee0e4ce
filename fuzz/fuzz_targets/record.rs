//! A record payload: decoding hostile bytes never panics, and whatever
//! decodes renders as text and JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitord::journal::record::Record;
use monitord::render::{human, json};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let mut out = Vec::new();
        human::render(1, 0, &record, false, false, &mut out);
        human::render(1, 0, &record, false, true, &mut out);
        let _ = json::record(1, 0, &record);
    }
});
