//! `monitord ctl [--store DIR] COMMAND…`: send one control command to a
//! running monitor over its FIFO and print the reply.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::CtlArgs;
use crate::control::client::{self, Error};
use crate::log::{Level, to_stderr};
use crate::store;

use super::exit;

/// Send the command; print the reply (an error reply on stderr).
///
/// # Errors
/// A local failure (no store, reply FIFO cannot be made). "Nobody
/// answered" is not an error here but exit status 3.
pub fn run(args: &CtlArgs) -> anyhow::Result<ExitCode> {
    let store_dir = match store::resolve(args.store.as_deref()) {
        Ok(dir) => dir,
        Err(e @ store::Error::NoneFound { .. }) => {
            to_stderr(Level::Error, &format!("monitord: {e}"));
            return Ok(ExitCode::from(exit::NO_DAEMON));
        }
        Err(e) => return Err(e.into()),
    };
    let ctl = store_dir.join(store::CTL_FILE);
    let command = args.command.join(" ");
    match client::request(&ctl, &command, Duration::from_millis(args.timeout)) {
        Ok(reply) if reply.ok => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(reply.text.as_bytes())?;
            stdout.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(reply) => {
            let reason = reply.text.strip_prefix("error: ").unwrap_or(&reply.text);
            to_stderr(Level::Error, &format!("monitord: {reason}"));
            Ok(ExitCode::from(exit::FAILED))
        }
        Err(e @ (Error::NoDaemon(_) | Error::Gone(_) | Error::Timeout { .. })) => {
            to_stderr(Level::Error, &format!("monitord: {e}"));
            Ok(ExitCode::from(exit::NO_DAEMON))
        }
        Err(e) => Err(e.into()),
    }
}
