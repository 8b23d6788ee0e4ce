//! Integration tests: the real binary, real child processes, real inotify.
//! One test binary; scenarios live in the modules below.

mod harness;

mod cli;
mod control;
mod daemon;
mod files;
mod history;
mod journal;
mod replay;
mod restore;
