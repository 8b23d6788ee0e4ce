//! Integration tests: the real binary, real child processes, real inotify.
//! One test binary; scenarios live in the modules below.

mod harness;

mod cli;
mod files;
mod journal;
mod maps;
mod restore;
