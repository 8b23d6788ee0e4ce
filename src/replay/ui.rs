//! The replay screen: what the user looks at and what each key does, over
//! a [`Replay`] model. Draws into any ratatui backend (the terminal, or
//! `TestBackend` in tests); time comes in as a parameter, so play is tested
//! without a clock.
//!
//! ```text
//! #seq  time  kind  summary                                  i/N
//! ┌Files──────┐┌path: diff at #seq / content as of #seq──────────┐
//! │M a.txt    ││@@ -1 +1,2 @@                                    │
//! └───────────┘└─────────────────────────────────────────────────┘
//! ┌Maps───────────────────────────────────────────────────────────┐
//! ┌Timeline───────────────────────────────────────────────────────┐
//! │lines ▁▃█▁  /  rss ▂▂▃▃  /  ▲ at the cursor                     │
//! status: play state, speed, keys; the find prompt
//! ```

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

mod draw;

use super::{Entry, Replay, Source};
use crate::render::human;

/// The longest pause played between two records: idle stretches of the
/// recording are shortened to this (before the speed factor).
const MAX_GAP: Duration = Duration::from_secs(5);

/// What the file pane shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The selected file's diff at the cursor's record (its content when it
    /// did not change there).
    Diff,
    /// The selected file's full content as of the cursor.
    Content,
}

/// Whether and which way history is playing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Play {
    /// Not playing.
    Stopped,
    /// Oldest → newest.
    Forward,
    /// Newest → oldest.
    Backward,
}

/// The screen's state over a model.
pub struct App<S: Source> {
    /// The model.
    pub replay: Replay<S>,
    selected: Option<Vec<u8>>,
    /// The user picked a file: stepping no longer selects the changed one.
    pinned: bool,
    view: View,
    scroll: u16,
    play: Play,
    /// Playback speed as a power of two (0: the recorded pace).
    speed_exp: i32,
    next_step: Option<Instant>,
    search: Option<String>,
    last_search: String,
    /// The point being typed after `g`.
    goto: Option<String>,
    message: Option<String>,
    /// The record `moved` last saw.
    seen_seq: Option<u64>,
    scale: Scale,
    quit: bool,
}

/// The sparklines' scale over the whole timeline, kept up to date as
/// records arrive so that drawing looks only at the records on screen.
#[derive(Clone, Copy, Debug, Default)]
struct Scale {
    max_lines: u64,
    max_rss: u64,
    any_rss: bool,
    /// The newest record counted.
    counted: Option<u64>,
}

impl Scale {
    fn update(&mut self, entries: &[Entry]) {
        let counted = self.counted;
        for entry in entries.iter().filter(|e| counted.is_none_or(|c| e.seq > c)) {
            self.max_lines = self.max_lines.max(entry.lines_changed());
            if let Some(rss) = entry.rss_kib() {
                self.max_rss = self.max_rss.max(rss);
                self.any_rss = true;
            }
            self.counted = Some(entry.seq);
        }
        // A zero scale would draw nothing at all; 1 draws zeros as empty.
        self.max_lines = self.max_lines.max(1);
        self.max_rss = self.max_rss.max(1);
    }
}

impl<S: Source> App<S> {
    /// A screen on `replay`, at its cursor.
    pub fn new(replay: Replay<S>) -> App<S> {
        let mut app = App {
            replay,
            selected: None,
            pinned: false,
            view: View::Diff,
            scroll: 0,
            play: Play::Stopped,
            speed_exp: 0,
            next_step: None,
            search: None,
            last_search: String::new(),
            goto: None,
            message: None,
            seen_seq: None,
            scale: Scale::default(),
            quit: false,
        };
        app.scale.update(app.replay.entries());
        app.moved();
        app
    }

    /// Whether the user asked to quit.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// The play state.
    pub fn play(&self) -> Play {
        self.play
    }

    /// The selected entry's path.
    pub fn selected(&self) -> Option<&[u8]> {
        self.selected.as_deref()
    }

    fn speed(&self) -> f64 {
        2f64.powi(self.speed_exp)
    }

    /// After the cursor moved: pick the file to show (the first changed
    /// one, unless the user picked one that is still listed).
    fn moved(&mut self) {
        let current = self.replay.current();
        if self.seen_seq == Some(current.seq) {
            return;
        }
        self.seen_seq = Some(current.seq);
        let first_changed = current.files().first().map(|c| c.path.clone());
        let listed = self.selected.as_deref().is_some_and(|s| self.replay.listed(s));
        if (!self.pinned && first_changed.is_some()) || !listed {
            self.selected = first_changed.or_else(|| self.replay.first_listed());
            self.scroll = 0;
        }
    }

    /// Pick up records written since the last call (a live store).
    pub fn refresh(&mut self) {
        match self.replay.refresh() {
            Ok(_) => {
                self.scale.update(self.replay.entries());
                self.moved();
            }
            Err(e) => self.message = Some(format!("cannot read the store: {e}")),
        }
    }

    fn step(&mut self, forward: bool) -> bool {
        let stepped = if forward { self.replay.step_forward() } else { self.replay.step_back() };
        self.moved();
        stepped
    }

    /// When the next played step is due (`None` when not playing).
    pub fn next_step(&self) -> Option<Instant> {
        self.next_step
    }

    fn schedule(&mut self, now: Instant) {
        let entries = self.replay.entries();
        let i = self.replay.cursor();
        let pair = match self.play {
            Play::Forward if i + 1 < entries.len() => Some((&entries[i], &entries[i + 1])),
            Play::Backward if i > 0 => Some((&entries[i - 1], &entries[i])),
            _ => None,
        };
        self.next_step = pair.map(|(a, b)| {
            let gap = Duration::from_micros(b.time_us.saturating_sub(a.time_us)).min(MAX_GAP);
            now + gap.div_f64(self.speed())
        });
        if self.next_step.is_none() {
            self.play = Play::Stopped;
        }
    }

    /// Take the played steps that are due at `now`.
    pub fn tick(&mut self, now: Instant) {
        while let Some(due) = self.next_step {
            if due > now {
                return;
            }
            self.step(self.play == Play::Forward);
            self.schedule(due);
        }
    }

    fn set_play(&mut self, play: Play, now: Instant) {
        self.play = if self.play == play { Play::Stopped } else { play };
        self.schedule(now);
    }

    fn select_by(&mut self, delta: isize) {
        let Some(mut at) = self.selected.clone().or_else(|| self.replay.first_listed()) else { return };
        for _ in 0..delta.unsigned_abs() {
            match self.replay.neighbour(&at, delta > 0) {
                Some(next) => at = next,
                None => break,
            }
        }
        self.selected = Some(at);
        self.pinned = true;
        self.scroll = 0;
    }

    fn find(&mut self, query: &str) {
        let files = self.replay.listed_paths();
        let start =
            self.selected.as_deref().and_then(|s| files.iter().position(|p| *p == s)).map_or(0, |i| i + 1);
        let hit = (0..files.len())
            .map(|k| files[(start + k) % files.len()])
            .find(|p| String::from_utf8_lossy(p).contains(query))
            .map(<[u8]>::to_vec);
        match hit {
            Some(path) => {
                self.selected = Some(path);
                self.pinned = true;
                self.scroll = 0;
                self.message = None;
            }
            None => self.message = Some(format!("no file matches {query:?}")),
        }
    }

    /// Jump to the record a point names (any form of
    /// [`crate::point::parse`]).
    fn go_to(&mut self, text: &str) {
        let point = match crate::point::parse_now(text) {
            Ok(point) => point,
            Err(e) => {
                self.message = Some(e.to_string());
                return;
            }
        };
        let entries = self.replay.entries();
        let held: Vec<crate::point::Held> =
            entries.iter().map(|e| crate::point::Held { seq: e.seq, time_us: e.time_us }).collect();
        let marks = crate::point::marks(entries.iter().map(|e| (e.seq, &e.record)));
        match crate::point::resolve(&point, &held, jiff::Timestamp::now(), |name| marks.get(name).copied()) {
            Ok(seq) => {
                let index = entries.iter().position(|e| e.seq == seq).unwrap_or(0);
                self.replay.seek(index);
                self.moved();
            }
            Err(e) => self.message = Some(e.to_string()),
        }
    }

    /// Move to the next (or previous) record that changes the selected file.
    fn next_change(&mut self, forward: bool) {
        let Some(path) = self.selected.clone() else {
            self.message = Some("no file selected".to_string());
            return;
        };
        let entries = self.replay.entries();
        let cursor = self.replay.cursor();
        let touches = |e: &Entry| e.files().iter().any(|c| c.path == path || c.from.as_ref() == Some(&path));
        let found = if forward {
            entries.iter().enumerate().skip(cursor + 1).find(|(_, e)| touches(e)).map(|(i, _)| i)
        } else {
            entries[..cursor].iter().rposition(touches)
        };
        match found {
            Some(index) => {
                self.replay.seek(index);
                self.pinned = true;
                self.moved();
            }
            None => {
                let which = if forward { "later" } else { "earlier" };
                self.message = Some(format!("no {which} change of {}", human::sanitize(&path)));
            }
        }
    }

    /// Handle one key press at `now`.
    pub fn on_key(&mut self, key: KeyEvent, now: Instant) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if let Some(point) = &mut self.goto {
            match key.code {
                KeyCode::Esc => self.goto = None,
                KeyCode::Enter => {
                    let point = std::mem::take(point);
                    self.goto = None;
                    self.play = Play::Stopped;
                    self.next_step = None;
                    self.go_to(&point);
                }
                KeyCode::Backspace => {
                    point.pop();
                }
                KeyCode::Char(c) => point.push(c),
                _ => {}
            }
            return;
        }
        if let Some(query) = &mut self.search {
            match key.code {
                KeyCode::Esc => self.search = None,
                KeyCode::Enter => {
                    // An empty query finds the next match of the last one.
                    let query = match std::mem::take(query) {
                        query if query.is_empty() => self.last_search.clone(),
                        query => query,
                    };
                    self.search = None;
                    if !query.is_empty() {
                        self.find(&query);
                        self.last_search = query;
                    }
                }
                KeyCode::Backspace => {
                    query.pop();
                }
                KeyCode::Char(c) => query.push(c),
                _ => {}
            }
            return;
        }
        self.message = None;
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Left | KeyCode::Right => {
                self.play = Play::Stopped;
                self.next_step = None;
                self.step(key.code == KeyCode::Right);
            }
            KeyCode::Home | KeyCode::End => {
                self.play = Play::Stopped;
                self.next_step = None;
                let to = if key.code == KeyCode::Home { 0 } else { usize::MAX };
                self.replay.seek(to);
                self.moved();
            }
            KeyCode::Char(' ') => self.set_play(Play::Forward, now),
            KeyCode::Char('r') => self.set_play(Play::Backward, now),
            KeyCode::Char('+') | KeyCode::Char('=') => {
                self.speed_exp = (self.speed_exp + 1).min(6);
                if self.play != Play::Stopped {
                    self.schedule(now);
                }
            }
            KeyCode::Char('-') => {
                self.speed_exp = (self.speed_exp - 1).max(-4);
                if self.play != Play::Stopped {
                    self.schedule(now);
                }
            }
            KeyCode::Up | KeyCode::Char('k') => self.select_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.select_by(1),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_add(10),
            KeyCode::Enter => {
                self.view = if self.view == View::Diff { View::Content } else { View::Diff };
                self.scroll = 0;
            }
            KeyCode::Char('/') => self.search = Some(String::new()),
            KeyCode::Char('g') => self.goto = Some(String::new()),
            KeyCode::Char('n') | KeyCode::Char('N') => {
                self.play = Play::Stopped;
                self.next_step = None;
                self.next_change(key.code == KeyCode::Char('n'));
            }
            _ => {}
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::tests::two_epochs;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn screen(app: &App<crate::replay::MemorySource>) -> String {
        app.screen_text(100, 30)
    }

    fn type_keys(app: &mut App<crate::replay::MemorySource>, text: &str, now: Instant) {
        for c in text.chars() {
            app.on_key(key(KeyCode::Char(c)), now);
        }
        app.on_key(key(KeyCode::Enter), now);
    }

    #[test]
    fn g_goes_to_a_point_and_n_to_the_selected_files_changes() {
        let mut source = two_epochs();
        // A mark between the two epochs' records.
        source.entries.insert(
            4,
            crate::replay::Entry {
                seq: 5,
                time_us: 4_500,
                record: crate::journal::record::Record {
                    version: crate::journal::record::FORMAT_VERSION,
                    epoch: 1,
                    pid: 7,
                    body: crate::journal::record::Body::Mark { name: "halfway".into() },
                },
            },
        );
        for (i, entry) in source.entries.iter_mut().enumerate().skip(5) {
            entry.seq = i as u64 + 1;
        }
        let mut app = App::new(crate::replay::Replay::open(source).unwrap());
        let now = Instant::now();
        app.on_key(key(KeyCode::Char('g')), now);
        assert!(screen(&app).contains("go to:"), "{}", screen(&app));
        type_keys(&mut app, "#3", now);
        assert_eq!(app.replay.current().seq, 3);
        app.on_key(key(KeyCode::Char('g')), now);
        type_keys(&mut app, "@halfway", now);
        assert_eq!(app.replay.current().seq, 5);
        assert!(screen(&app).contains("@halfway"), "{}", screen(&app));
        app.on_key(key(KeyCode::Char('g')), now);
        type_keys(&mut app, "@nowhere", now);
        assert_eq!(app.replay.current().seq, 5, "an unknown mark moves nothing");
        assert!(screen(&app).contains("no record kept carries that mark"), "{}", screen(&app));
        app.on_key(key(KeyCode::Char('g')), now);
        type_keys(&mut app, "soonish", now);
        assert!(screen(&app).contains("cannot understand"), "{}", screen(&app));

        // a.txt changes in 2 and 4.
        app.on_key(key(KeyCode::Home), now);
        assert_eq!(app.selected(), Some(&b"a.txt"[..]));
        app.on_key(key(KeyCode::Char('n')), now);
        assert_eq!(app.replay.current().seq, 2);
        app.on_key(key(KeyCode::Char('n')), now);
        assert_eq!(app.replay.current().seq, 4);
        assert_eq!(app.selected(), Some(&b"a.txt"[..]));
        app.on_key(key(KeyCode::Char('n')), now);
        assert_eq!(app.replay.current().seq, 4, "no later change");
        assert!(screen(&app).contains("no later change of a.txt"), "{}", screen(&app));
        app.on_key(key(KeyCode::Char('N')), now);
        assert_eq!(app.replay.current().seq, 2);
    }

    #[test]
    fn keys_step_select_find_and_quit() {
        let mut app = App::new(crate::replay::Replay::open(two_epochs()).unwrap());
        let now = Instant::now();
        assert_eq!(app.selected(), Some(&b"a.txt"[..]));
        app.on_key(key(KeyCode::Right), now);
        assert_eq!(app.replay.current().seq, 2);
        app.on_key(key(KeyCode::Right), now);
        // The changed file is selected while the user has picked none.
        assert_eq!(app.selected(), Some(&b"src/c.rs"[..]));
        app.on_key(key(KeyCode::Char('/')), now);
        for c in "b.r".chars() {
            app.on_key(key(KeyCode::Char(c)), now);
        }
        app.on_key(key(KeyCode::Enter), now);
        assert_eq!(app.selected(), Some(&b"lib/b.rs"[..]));
        app.on_key(key(KeyCode::End), now);
        assert_eq!(app.replay.current().seq, 6);
        assert_eq!(app.selected(), Some(&b"z.txt"[..]));
        app.on_key(key(KeyCode::Home), now);
        assert_eq!(app.replay.current().seq, 1);
        assert!(!app.should_quit());
        app.on_key(key(KeyCode::Char('q')), now);
        assert!(app.should_quit());
    }

    #[test]
    fn play_follows_the_recorded_pace_and_speed() {
        let mut app = App::new(crate::replay::Replay::open(two_epochs()).unwrap());
        let t0 = Instant::now();
        app.on_key(key(KeyCode::Char(' ')), t0);
        assert_eq!(app.play(), Play::Forward);
        // Records are one second apart.
        assert_eq!(app.next_step(), Some(t0 + Duration::from_secs(1)));
        app.tick(t0 + Duration::from_millis(999));
        assert_eq!(app.replay.current().seq, 1);
        app.tick(t0 + Duration::from_millis(2500));
        assert_eq!(app.replay.current().seq, 3);
        app.on_key(key(KeyCode::Char('+')), t0 + Duration::from_millis(2500));
        assert_eq!(app.next_step(), Some(t0 + Duration::from_millis(3000)));
        app.tick(t0 + Duration::from_secs(60));
        assert_eq!(app.replay.current().seq, 6);
        assert_eq!(app.play(), Play::Stopped, "play stops at the newest record");
        app.on_key(key(KeyCode::Char('r')), t0);
        app.tick(t0 + Duration::from_millis(1000));
        assert_eq!((app.play(), app.replay.current().seq), (Play::Backward, 4));
    }

    #[test]
    fn frames_show_tree_diff_maps_and_timeline() {
        let mut app = App::new(crate::replay::Replay::open(two_epochs()).unwrap());
        let first = screen(&app);
        assert!(first.contains("#1 ") && first.contains("baseline"), "{first}");
        assert!(first.contains("a.txt") && first.contains("src/") && first.contains("b.rs"), "{first}");
        assert!(first.contains("a.txt: as of #1") && first.contains("    1 one"), "{first}");
        assert!(first.contains("[1/6]") && first.contains("paused"), "{first}");

        let now = Instant::now();
        app.on_key(key(KeyCode::Right), now);
        let second = screen(&app);
        assert!(second.contains("a.txt: diff at #2") && second.contains("+two"), "{second}");
        assert!(second.contains("M a.txt"), "{second}");
        assert!(second.contains("+ 7f00-7f10 rw-p"), "{second}");
        assert!(second.contains("▲ #2"), "{second}");
        // Both sparklines are scaled over the whole timeline: the biggest
        // change (2 lines, at #4 and #6) and the biggest RSS (#6) draw full bars.
        let graph =
            |label: &str| second.lines().find(|l| l.starts_with(&format!("│{label}"))).unwrap().to_string();
        assert!(graph("lines").contains('█') && graph("rss").contains('█'), "{second}");
        app.on_key(key(KeyCode::Enter), now);
        let content = screen(&app);
        assert!(content.contains("a.txt: as of #2") && content.contains("    2 two"), "{content}");

        app.on_key(key(KeyCode::End), now);
        app.on_key(key(KeyCode::Char('r')), now);
        app.tick(now + Duration::from_secs(3));
        let back = screen(&app);
        assert!(back.contains("◀ playing back") && back.contains("#3 "), "{back}");
        assert!(
            back.contains("R   b.rs") && back.contains("D   b.rs") && back.contains("C   c.rs"),
            "{back}"
        );
    }
}
