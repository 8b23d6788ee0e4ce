//! An undo applied by the running monitor: planned, checked and written
//! between two samples, then recorded as one `undo` record holding
//! exactly the changes it made, with the mirror and the index following
//! them, so that the next sample finds nothing of it to record again.

use std::os::fd::AsFd;

use super::classify::tracked_after;
use super::upkeep::apply_updates;
use super::{Committed, Error, Sampler};
use crate::event::Dirty;
use crate::journal::record::{Body, Sample};
use crate::undo::{self, Conflict, Request};

/// What an undo did.
#[derive(Debug)]
pub struct Undone {
    /// The plan's A and B.
    pub from: u64,
    /// B.
    pub to: u64,
    /// The `undo` record (`None`: nothing needed changing).
    pub committed: Option<Committed>,
    /// Files written or removed.
    pub files: usize,
    /// Conflicts written over (`--force`).
    pub forced: Vec<Conflict>,
}

/// Apply a plan straight to its directory (no tree is watched, so nothing
/// is recorded): the steps as recorded at B, and the conflicts with
/// `force`.
fn apply_unwatched(plan: &undo::Plan, force: bool) -> Result<Undone, String> {
    let root = undo::open_root(plan).map_err(|e| e.to_string())?;
    let (todo, conflicts) = undo::sort_out(plan, undo::check(plan, root.as_fd()), force);
    if !conflicts.is_empty() && !force {
        return Err(conflict_lines(&conflicts));
    }
    undo::apply(plan, root.as_fd(), &todo).map_err(|e| e.to_string())?;
    Ok(Undone { from: plan.from, to: plan.to, committed: None, files: todo.len(), forced: conflicts })
}

impl Sampler {
    /// Put the live tree back as `request` asks. `Ok(Err(why))` is a
    /// refusal that changed nothing (a conflict, a point that names no
    /// record) or a failure part-way, worded for people; the paths
    /// written before it are then compared at the next sample.
    ///
    /// # Errors
    /// [`Error`] when the journal or the mirror cannot be written.
    pub fn undo(&mut self, request: &Request, force: bool) -> Result<Result<Undone, String>, Error> {
        let plan = match undo::plan(&self.settings.store, request) {
            Ok(plan) => plan,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let Some(watch) = &self.watch else {
            // The target is gone: nothing records the tree now, so the
            // undo is applied as without a monitor.
            return Ok(apply_unwatched(&plan, force));
        };
        let same_tree = undo::open_root(&plan).ok().and_then(|fd| crate::tree::dir_identity(fd.as_fd()))
            == Some(watch.tree.id);
        if !same_tree {
            return Ok(Err(format!(
                "#{} recorded {}, which is not the directory this monitor watches ({})",
                plan.to,
                crate::render::human::sanitize(&plan.root),
                watch.tree.cwd.display()
            )));
        }
        let root = watch.tree.root.as_fd();
        let (todo, conflicts) = undo::sort_out(&plan, undo::check(&plan, root), force);
        if !conflicts.is_empty() && !force {
            return Ok(Err(conflict_lines(&conflicts)));
        }
        let (from, to) = (plan.from, plan.to);
        if todo.is_empty() {
            return Ok(Ok(Undone { from, to, committed: None, files: 0, forced: conflicts }));
        }
        if let Err(e) = undo::apply(&plan, root, &todo) {
            // What was written before the failure is the next sample's.
            for &i in &todo {
                self.dirty.pending.insert(Dirty::Path(plan.steps[i].path.clone()));
            }
            return Ok(Err(format!("{e} (the files before it are put back; the next sample records them)")));
        }
        let changes = undo::changes(&plan, &todo);
        let updates: Vec<_> = todo
            .iter()
            .map(|&i| {
                let step = &plan.steps[i];
                (step.path.clone(), step.then.as_ref().map(|v| (v.node, v.content.clone())))
            })
            .collect();
        let mut tracked = tracked_after(&changes);
        for (path, entry) in &mut tracked {
            let mode = plan.steps.iter().find(|s| &s.path == path).and_then(|s| s.then.as_ref()?.mode);
            if let Some(entry) = entry {
                entry.mode = mode.unwrap_or(0);
            }
        }
        let files = todo.len();
        let body = Body::Undo { from, to, sample: Sample { files: changes, ..Sample::default() } };
        let committed = self.commit(body, |mirror| apply_updates(mirror, &updates));
        let committed = match committed {
            Ok(committed) => committed,
            Err(Error::MirrorBehind(e)) => {
                self.unapplied = Some(updates);
                self.follow_index(tracked);
                return Err(Error::MirrorBehind(e));
            }
            Err(e) => {
                // Written but not recorded: the next sample records it.
                for &i in &todo {
                    self.dirty.pending.insert(Dirty::Path(plan.steps[i].path.clone()));
                }
                return Err(e);
            }
        };
        self.follow_index(tracked);
        self.keep_modes_anchor(committed.seq);
        Ok(Ok(Undone { from, to, committed: Some(committed), files, forced: conflicts }))
    }

    fn follow_index(&mut self, tracked: Vec<(Vec<u8>, Option<super::Tracked>)>) {
        for (path, entry) in tracked {
            match entry {
                Some(entry) => self.index.insert(path, entry),
                None => self.index.remove(&path),
            };
        }
    }
}

/// Conflicts as the reply's lines: one per path, then what happened.
pub fn conflict_lines(conflicts: &[Conflict]) -> String {
    let mut lines: Vec<String> = conflicts.iter().map(|c| format!("conflict: {c}")).collect();
    lines.push(format!(
        "nothing written: {} conflict{} (--force writes anyway)",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" }
    ));
    lines.join("\n")
}
