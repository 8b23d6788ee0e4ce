//! The `monitord` binary: parse the command line, run, map errors to one
//! line on stderr and an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Fault injection (only in a build with the `failpoints` feature).
    if let Err(err) = monitord::failpoint::setup() {
        eprintln!("monitord: {err}");
        return ExitCode::from(monitord::cmd::exit::USAGE);
    }
    let cli = monitord::cli::Cli::parse();
    match monitord::cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let broken_pipe = err.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            monitord::log::to_stderr(monitord::log::Level::Error, &format!("monitord: {err:#}"));
            ExitCode::from(monitord::cmd::exit::FAILED)
        }
    }
}
