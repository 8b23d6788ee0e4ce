//! One module per subcommand; each returns the process exit code. This is
//! the binary's edge: `anyhow` is used here and nowhere below.

pub mod blame;
pub mod ctl;
pub mod dump;
pub mod log;
pub mod maps;
pub mod mark;
pub mod monitor;
pub mod replay;
pub mod report;
pub mod restore;
pub mod show;
pub mod undo;
pub mod verify;

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::journal::Damage;

/// Exit codes (SPEC §3), in one place.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The operation failed.
    pub const FAILED: u8 = 1;
    /// Usage error (clap's own code).
    pub const USAGE: u8 = 2;
    /// No daemon answered `ctl`.
    pub const NO_DAEMON: u8 = 3;
}

/// Run the parsed command line.
///
/// # Errors
/// Whatever the subcommand reports; the binary prints it on one line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Ctl(args)) => ctl::run(&args),
        Some(Command::Dump(args)) => dump::run(&args),
        Some(Command::Log(args)) => log::run(&args),
        Some(Command::Show(args)) => show::run(&args),
        Some(Command::Blame(args)) => blame::run(&args),
        Some(Command::Mark(args)) => mark::run(&args),
        Some(Command::Undo(args)) => undo::run(&args),
        Some(Command::Restore(args)) => restore::run(&args),
        Some(Command::Verify(args)) => verify::run(&args),
        Some(Command::Maps(args)) => maps::run(&args),
        Some(Command::Replay(args)) => replay::run(&args),
        Some(Command::Report(args)) => report::run(&args),
        Some(Command::Completions(args)) => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&crate::cli::completions(args.shell))?;
            stdout.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        None => monitor::run(&cli.monitor),
    }
}

/// Say on stderr, one line each, which damaged stretches of `ring` a
/// reader skipped; the reader goes on with the intact records after them.
/// Returns whether there were any (the command's answer is then
/// incomplete, and it exits 1 at the end).
pub fn warn_damage(ring: &Path, damage: &[Damage]) -> bool {
    for stretch in damage {
        crate::log::to_stderr(
            crate::log::Level::Warning,
            &format!("monitord: {}: damaged at {stretch}; skipped, intact records follow", ring.display()),
        );
    }
    !damage.is_empty()
}

/// The exit code of a reader that skipped damage (`incomplete`) or not.
pub fn reader_exit(incomplete: bool) -> ExitCode {
    if incomplete { ExitCode::from(exit::FAILED) } else { ExitCode::SUCCESS }
}
