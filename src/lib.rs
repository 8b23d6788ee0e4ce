//! monitord: follow one process by PID and keep a replayable history of the
//! text files in its working directory and of its memory map.
//!
//! (The architecture map is filled in as the modules land.)

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(clippy::unwrap_used)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod control;
pub mod diff;
pub mod journal;
pub mod text;
