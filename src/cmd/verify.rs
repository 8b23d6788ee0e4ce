//! `monitord verify [--store DIR]`: check a store; exit 1 on damage, with
//! one line per problem.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::VerifyArgs;
use crate::{store, verify};

/// Check the store and report.
///
/// # Errors
/// When no store is found or its lock cannot be taken.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let store_dir = store::resolve(args.store.as_deref())?;
    let report = verify::verify(&store_dir)?;
    let mut stdout = std::io::stdout().lock();
    for problem in &report.problems {
        writeln!(stdout, "{problem}")?;
    }
    let mut torn =
        if report.torn_tail { " (a torn last record from a crash was ignored)" } else { "" }.to_string();
    if report.mirror_behind > 0 {
        torn += &format!(
            " (the mirror was {} file(s) behind the last record, as a crash leaves it; the next start repairs it)",
            report.mirror_behind
        );
    }
    if report.problems.is_empty() {
        writeln!(
            stdout,
            "{}: sound: {} records in {} epoch{}{torn}",
            store_dir.display(),
            report.records,
            report.epochs,
            if report.epochs == 1 { "" } else { "s" }
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    stdout.flush()?;
    let found =
        format!("monitord: {} problem(s) found in {}{torn}", report.problems.len(), store_dir.display());
    crate::log::to_stderr(crate::log::Level::Error, &found);
    Ok(ExitCode::from(super::exit::FAILED))
}
