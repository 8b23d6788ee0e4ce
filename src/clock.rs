//! The wall clock as the journal and the log write it: microseconds since
//! the Unix epoch.
//!
//! This module owns reading the time and nothing else, so that what stamps
//! a record (the sampler) and what stamps a log line ([`crate::log`])
//! depend on it rather than on each other.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}
