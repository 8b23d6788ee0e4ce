//! `monitord restore --at SEQ|TIME DEST`: rebuild the tracked tree as it
//! was at a sample.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;

use crate::cli::RestoreArgs;
use crate::journal::record::{Node, SkipReason};
use crate::render::json;
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
    let state = restore::state_at(&store_dir, at.clone())?;
    super::warn_damage(&store_dir.join(store::RING_FILE), &state.damage);
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
        if let Some(unknown) = state.left_out.iter().find(|l| l.path == key) {
            bail!("{}", unknown.describe(state.seq));
        }
        let Some((node, content)) = state.tree.get(key) else {
            bail!("{} is not in the tree at seq {}", path.display(), state.seq);
        };
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
    restore::write_tree(&state.tree, &state.modes, Path::new(dest))?;
    for unknown in &state.left_out {
        crate::log::to_stderr(
            crate::log::Level::Warning,
            &format!("monitord: {}", unknown.describe(state.seq)),
        );
    }
    if let Some(first) = state.modes_unknown.first() {
        let others = match state.modes_unknown.len() - 1 {
            0 => String::new(),
            1 => " and 1 other file".to_string(),
            n => format!(" and {n} other files"),
        };
        crate::log::to_stderr(
            crate::log::Level::Warning,
            &format!(
                "monitord: {}{others}: mode at seq {} not known (the baseline has left the ring, and {} is \
                 missing, damaged or older than the oldest record held): written with the umask's mode",
                crate::render::human::sanitize(first),
                state.seq,
                store_dir.join(crate::modes::MODES_FILE).display()
            ),
        );
    }
    if args.json {
        let left_out: Vec<_> = state
            .left_out
            .iter()
            .map(|l| {
                let (reason, errno) = match l.reason {
                    SkipReason::Unreadable { errno } => ("unreadable", Some(errno)),
                    SkipReason::TooLarge { .. } => ("too_large", None),
                };
                json!({"path": json::bytes(&l.path), "reason": reason, "errno": errno, "since": l.since})
            })
            .collect();
        let summary = json!({
            "seq": state.seq,
            "dest": json::bytes(dest.as_os_str().as_encoded_bytes()),
            "entries": state.tree.len(),
            "left_out": left_out,
            "modes_unknown": state.modes_unknown.iter().map(|p| json::bytes(p)).collect::<Vec<_>>(),
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{summary}").context("cannot write to stdout")?;
    } else {
        eprintln!("restored {} entries as of seq {} into {}", state.tree.len(), state.seq, dest.display());
    }
    // A tree missing entries it should hold, or holding files whose mode
    // is not known, is not a successful restore.
    Ok(super::reader_exit(!state.left_out.is_empty() || !state.modes_unknown.is_empty()))
}
