//! Presentation of records: coloured unified diffs for people
//! ([`human`]) and JSON Lines for programs ([`json`], with lines bounded
//! for log shippers by [`split`]). The journal stores minimal reversible
//! deltas; these views are computed when read.

pub mod human;
pub mod json;
pub mod split;

/// RFC 3339 UTC time with microseconds, e.g. `2026-11-23T15:40:01.123456Z`.
pub fn rfc3339_us(time_us: u64) -> String {
    let ts = jiff::Timestamp::from_microsecond(time_us as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{}", ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ"))
}

/// An error and its causes on one line, as `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
