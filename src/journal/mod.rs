//! ring.bin: the mmap'd ring-buffer journal.

pub mod record;
