//! The control language: a command line, a request line and a reply frame
//! from hostile bytes never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitord::control::{self, wire};

fuzz_target!(|data: &[u8]| {
    let _ = control::parse(data);
    let request = wire::parse_request(data);
    let _ = control::parse(request.command);
    let _ = wire::decode_reply(data);
});
