//! Integration tests: the real binary, real child processes, real inotify and the other
//! backends.
//! One test binary; scenarios live in the modules below.

#[macro_use]
mod harness;

mod backends;
mod cli;
mod control;
mod creds;
mod daemon;
mod damage;
mod faults;
mod files;
mod follow;
mod formats;
mod fullness;
mod history;
mod ignore;
mod journal;
mod links;
mod longline;
mod maps;
mod marks;
mod modes;
mod pidreuse;
mod pipeline;
mod readme;
mod replay;
mod report;
mod restore;
mod run;
mod security;
mod soak;
mod stderr;
mod sweep;
mod undo;
mod valgrind;
mod watched;
