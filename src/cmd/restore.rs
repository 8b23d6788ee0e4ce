//! `monitord restore --at SEQ|TIME DEST`: rebuild the tracked tree as it
//! was at a sample.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::RestoreArgs;
use crate::journal::record::Node;
use crate::restore::{self, At};
use crate::store;

/// Rebuild the tree (or one file) at the requested point.
///
/// # Errors
/// When the point is not in the ring, the journal does not replay, or DEST
/// cannot be written.
pub fn run(args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let store_dir = store::resolve(args.store.as_deref())?;
    let at = At::parse(&args.at)?;
    let state = restore::state_at(&store_dir, at)?;
    if let At::Time(ts) = at
        && state.seq == state.newest
        && ts.as_microsecond() > i64::try_from(state.time_us).unwrap_or(i64::MAX)
    {
        let newest = crate::render::rfc3339_us(state.time_us);
        eprintln!(
            "--at {} is after the newest record (#{} at {newest}): restoring that",
            args.at.trim(),
            state.seq
        );
    }
    if let Some(path) = &args.path {
        let mut key = path.as_os_str().as_encoded_bytes();
        while let Some(rest) = key.strip_prefix(b"./") {
            key = rest;
        }
        let Some((node, content)) = state.tree.get(key) else {
            bail!("{} is not in the tree at seq {}", path.display(), state.seq);
        };
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(content).context("cannot write to stdout")?;
        if *node == Node::Symlink {
            // The link's target, as readlink prints it.
            stdout.write_all(b"\n").context("cannot write to stdout")?;
        }
        stdout.flush().context("cannot write to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(dest) = &args.dest else { bail!("DEST is required") };
    restore::write_tree(&state.tree, Path::new(dest))?;
    eprintln!("restored {} entries as of seq {} into {}", state.tree.len(), state.seq, dest.display());
    Ok(ExitCode::SUCCESS)
}
