//! `monitord replay [--store DIR]`: the terminal UI over [`crate::replay`].
//! Owns the terminal: raw mode and the alternate screen are set up here and
//! undone on every way out (return, error, panic through ratatui's hook).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use crossterm::event::{self, Event, KeyEventKind};

use crate::cli::ReplayArgs;
use crate::replay::ui::App;
use crate::replay::{Replay, StoreSource};
use crate::store;

/// How often a live store is read again for new records.
const REFRESH: Duration = Duration::from_millis(500);

/// Puts the terminal back when dropped, whichever way `run` ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Run the UI until the user quits.
///
/// # Errors
/// When the store cannot be read, stdout is not a terminal, or the terminal
/// fails.
pub fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let store_dir = store::resolve(args.store.as_deref())?;
    let replay = Replay::open(StoreSource::new(&store_dir))
        .with_context(|| format!("cannot replay {}", store_dir.display()))?;
    if !std::io::stdout().is_terminal() {
        bail!("replay needs a terminal (try `monitord log` or `monitord show` instead)");
    }
    let mut app = App::new(replay);
    // try_init installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let _restore = Restore;
    let mut next_refresh = Instant::now() + REFRESH;
    loop {
        terminal.draw(|frame| app.draw(frame)).context("cannot draw")?;
        let now = Instant::now();
        let due = app.next_step().map_or(next_refresh, |step| step.min(next_refresh));
        if event::poll(due.saturating_duration_since(now)).context("cannot read the terminal")? {
            match event::read().context("cannot read the terminal")? {
                Event::Key(key) if key.kind != KeyEventKind::Release => app.on_key(key, Instant::now()),
                _ => {}
            }
            if app.should_quit() {
                return Ok(ExitCode::SUCCESS);
            }
        }
        let now = Instant::now();
        app.tick(now);
        if now >= next_refresh {
            app.refresh();
            next_refresh = now + REFRESH;
        }
    }
}
