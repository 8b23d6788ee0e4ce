//! `monitord mark [--store DIR] NAME`: ask the running monitor to write a
//! `mark` record, which `@NAME` then finds wherever a point is taken. The
//! same as `monitord ctl mark NAME`.

use std::process::ExitCode;

use crate::cli::{CtlArgs, MarkArgs};

/// Send `mark NAME` to the store's monitor and print its reply.
///
/// # Errors
/// As [`super::ctl::run`]: exit 1 on an error reply, 3 when no monitor
/// answers.
pub fn run(args: &MarkArgs) -> anyhow::Result<ExitCode> {
    super::ctl::run(&CtlArgs {
        store: args.store.clone(),
        timeout: args.timeout,
        command: vec!["mark".to_string(), args.name.clone()],
    })
}
