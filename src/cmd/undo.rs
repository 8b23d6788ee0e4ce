//! `monitord undo [--dry-run] [--force] [--by WHO] A[..B] [-- PATH…]`: put
//! the live tree back to what it was at A. With a monitor running on the
//! store, the monitor applies it (between two samples) and records it as
//! one `undo` record; without one, this process applies it itself.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::Context;

use super::exit;
use crate::cli::{CtlArgs, ShowWhat, UndoArgs};
use crate::journal::record::Sample;
use crate::log::{Level, to_stderr};
use crate::render::{human, json};
use crate::restore::At;
use crate::store;
use crate::undo::{self, Conflict, Request, Wire};

/// Run the undo.
///
/// # Errors
/// When the store cannot be read, a point names no record, or a write
/// fails part-way (the files before it are put back).
pub fn run(args: &UndoArgs) -> anyhow::Result<ExitCode> {
    let store_dir = store::resolve(args.store.as_deref())?;
    let (from, to) = match &args.what {
        ShowWhat::Point(a) => (a.clone(), None),
        ShowWhat::Range(a, b) => (a.clone(), Some(b.clone())),
    };
    let paths: Vec<Vec<u8>> = args.paths.iter().map(|p| p.as_encoded_bytes().to_vec()).collect();
    let request = Request { from, to, paths, by: args.by.clone() };
    if args.dry_run {
        return dry_run(&store_dir, &request, args.json);
    }
    if store::is_running(&store_dir) {
        let wire = Wire {
            from: point_text(&request.from),
            to: request.to.as_ref().map(point_text),
            paths: request.paths.clone(),
            by: request.by.as_ref().map(ToString::to_string),
            force: args.force,
        };
        let line = serde_json::to_string(&wire).context("cannot encode the undo request")?;
        return super::ctl::run(&CtlArgs {
            store: Some(store_dir),
            timeout: args.timeout,
            command: vec!["undo".to_string(), line],
        });
    }
    let plan = undo::plan(&store_dir, &request)?;
    let root = undo::open_root(&plan)?;
    let (todo, conflicts) = undo::sort_out(&plan, undo::check(&plan, root.as_fd()), args.force);
    if !conflicts.is_empty() && !args.force {
        report_conflicts(&conflicts);
        return Ok(ExitCode::from(exit::FAILED));
    }
    for conflict in &conflicts {
        to_stderr(Level::Warning, &format!("monitord: forced: {conflict}"));
    }
    undo::apply(&plan, root.as_fd(), &todo)?;
    let mut stdout = std::io::stdout().lock();
    if todo.is_empty() {
        writeln!(stdout, "undone: #{}..#{}: the tree is already as it was", plan.to, plan.from)?;
    } else {
        writeln!(
            stdout,
            "undone: #{}..#{}, {} file{} put back",
            plan.to,
            plan.from,
            todo.len(),
            if todo.len() == 1 { "" } else { "s" }
        )?;
        to_stderr(
            Level::Warning,
            "monitord: no monitor is running on this store: the next monitor's baseline shows the undo",
        );
    }
    stdout.flush().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `--dry-run`: the diff the undo would apply, conflicts on stderr.
fn dry_run(store_dir: &std::path::Path, request: &Request, as_json: bool) -> anyhow::Result<ExitCode> {
    let plan = undo::plan(store_dir, request)?;
    // Every change it would make, those in conflict included.
    let (all, conflicts) = match undo::open_root(&plan) {
        Ok(root) => undo::sort_out(&plan, undo::check(&plan, root.as_fd()), true),
        // The tree is gone: everything would be written anew.
        Err(_) => ((0..plan.steps.len()).collect(), plan.refused.clone()),
    };
    let changes = undo::changes(&plan, &all);
    let mut out = Vec::new();
    if as_json {
        let conflicts: Vec<_> = conflicts
            .iter()
            .map(|c| serde_json::json!({"path": json::bytes(&c.path), "why": c.why}))
            .collect();
        let files = json::files(&Sample { files: changes, ..Sample::default() });
        let value =
            serde_json::json!({"from": plan.from, "to": plan.to, "files": files, "conflicts": conflicts});
        out.extend_from_slice(format!("{value}\n").as_bytes());
    } else {
        let (added, removed) = human::line_counts(&changes);
        out.extend_from_slice(
            format!("#{}..#{}: {} files to put back, +{added} -{removed}\n", plan.to, plan.from, all.len())
                .as_bytes(),
        );
        human::render_changes(&changes, std::io::stdout().is_terminal(), false, &mut out);
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out).context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    if conflicts.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    report_conflicts(&conflicts);
    Ok(ExitCode::from(exit::FAILED))
}

fn report_conflicts(conflicts: &[Conflict]) {
    for line in crate::sampler::conflict_lines(conflicts).lines() {
        to_stderr(Level::Error, &format!("monitord: {line}"));
    }
}

/// A point as the monitor parses it again: a seq, an exact time, a mark.
fn point_text(at: &At) -> String {
    match at {
        At::Seq(seq) => seq.to_string(),
        At::Time(ts) => ts.to_string(),
        At::Mark(name) => format!("@{name}"),
    }
}
