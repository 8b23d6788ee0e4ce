//! `monitord report`: the whole recording as one self-contained HTML page.
//!
//! [`model`] turns decoded records into what the page shows (events in
//! time, statistics series, the file table, min/max buckets for charts);
//! [`html`] writes the page, escaping everything that came from the
//! recording. The command itself is [`crate::cmd::report`].

pub mod html;
pub mod model;
