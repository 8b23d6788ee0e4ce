//! `monitord replay` on a store recorded by the real binary: the screen
//! drawn into ratatui's TestBackend (first frame, after a step, during
//! backwards play), and the real binary in a real terminal (tmux), quit
//! with `q`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use monitord::replay::ui::{App, Play};
use monitord::replay::{Replay, StoreSource};

use crate::harness::*;

/// A store recorded from a real target: baseline {notes.txt, src/main.rs};
/// 2 appends a line to notes.txt; 3 creates src/util.rs and deletes
/// notes.txt; then whatever `stop` records. Returns how many records.
fn recorded(tree: &Path, store: &Path) -> usize {
    std::fs::write(tree.join("notes.txt"), "first\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tree.join("notes.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::create_dir(tree.join("src")).unwrap();
    std::fs::write(tree.join("src/main.rs"), "fn main() {}\n").unwrap();
    let target = Target::start(tree);
    let mut monitord = Monitord::start(&target, store, &[]);
    std::fs::write(tree.join("notes.txt"), "first\nsecond line\n").unwrap();
    assert_eq!(monitord.sample(), 2);
    std::fs::write(tree.join("src/util.rs"), "pub fn util() {}\n").unwrap();
    std::fs::remove_file(tree.join("notes.txt")).unwrap();
    assert_eq!(monitord.sample(), 3);
    monitord.stop();
    dump_json(store).len()
}

fn screen(app: &App<StoreSource>) -> String {
    app.screen_text(140, 48)
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn replay_screens_of_a_recorded_store() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let n = recorded(tree.path(), store.path());
    let mut app = App::new(Replay::open(StoreSource::new(store.path())).unwrap());

    let first = screen(&app);
    assert!(first.contains("#1 ") && first.contains("baseline"), "{first}");
    assert!(first.contains("notes.txt") && first.contains("src/") && first.contains("main.rs"), "{first}");
    assert!(first.contains(&format!("[1/{n}]")) && first.contains(&format!("Timeline #1..#{n}")), "{first}");

    let now = Instant::now();
    app.on_key(key(KeyCode::Right), now);
    let second = screen(&app);
    assert!(second.contains("#2 ") && second.contains("1 file changed, +1 -0"), "{second}");
    // The view names the file's recorded mode.
    assert!(second.contains("M notes.txt") && second.contains("notes.txt (0640): diff at #2"), "{second}");
    assert!(second.contains("+second line"), "{second}");
    assert!(second.contains("▲ #2"), "{second}");

    app.on_key(key(KeyCode::End), now);
    assert_eq!(app.replay.current().seq, n as u64);
    while app.replay.current().seq > 3 {
        app.on_key(key(KeyCode::Left), now);
    }
    let third = screen(&app);
    assert!(third.contains("C   util.rs") && third.contains("D notes.txt"), "{third}");

    // Backwards play, caught between two steps.
    app.on_key(key(KeyCode::Char('r')), now);
    assert_eq!(app.play(), Play::Backward);
    let due = app.next_step().expect("a step is scheduled");
    app.tick(due);
    let back = screen(&app);
    assert_eq!(app.play(), Play::Backward);
    assert!(back.contains("◀ playing back") && back.contains("#2 "), "{back}");
    assert!(back.contains("notes.txt") && !back.contains("util.rs"), "{back}");
}

/// A tmux server of our own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux is needed for this test (.ci/run installs it)")
    }

    fn pane(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "replay"]).stdout).into_owned()
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pane = self.pane();
            if cond(&pane) {
                return pane;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; the pane shows:\n{pane}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn replay_runs_in_a_real_terminal_and_quits_with_q() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let n = recorded(tree.path(), store.path());
    let status: PathBuf = store.path().join("replay-exit-status");
    let script =
        format!("'{}' replay --store '{}'; echo $? > '{}'", bin(), store.path().display(), status.display());
    let tmux = Tmux { socket: format!("monitord-test-{}", std::process::id()) };
    let out = tmux.cmd(&["new-session", "-d", "-s", "replay", "-x", "120", "-y", "40", "sh", "-c", &script]);
    assert!(out.status.success(), "tmux new-session failed: {}", String::from_utf8_lossy(&out.stderr));

    let first =
        tmux.wait_for("the first frame", |p| p.contains("baseline") && p.contains(&format!("[1/{n}]")));
    assert!(first.contains("notes.txt") && first.contains("main.rs"), "{first}");
    tmux.cmd(&["send-keys", "-t", "replay", "Right"]);
    let second = tmux.wait_for("the step to #2", |p| p.contains(&format!("[2/{n}]")));
    assert!(second.contains("notes.txt (0640): diff at #2") && second.contains("+second line"), "{second}");
    tmux.cmd(&["send-keys", "-t", "replay", "Right"]);
    let third = tmux.wait_for("the step to #3", |p| p.contains(&format!("[3/{n}]")));
    assert!(third.contains("util.rs"), "{third}");
    tmux.cmd(&["send-keys", "-t", "replay", "q"]);
    wait_until("replay to exit after q", Duration::from_secs(20), || status.exists());
    let code = std::fs::read_to_string(&status).unwrap();
    assert_eq!(code.trim(), "0", "replay exited with {code}");
}

#[test]
fn replay_follows_a_live_store() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    std::fs::write(tree.path().join("a.txt"), "a\n").unwrap();
    let target = Target::start(tree.path());
    let mut monitord = Monitord::start(&target, store.path(), &[]);
    let mut replay = Replay::open(StoreSource::new(store.path())).unwrap();
    replay.seek(usize::MAX);
    assert_eq!(replay.refresh().unwrap(), 0, "nothing new yet");

    std::fs::write(tree.path().join("a.txt"), "a\nb\n").unwrap();
    let seq = monitord.sample();
    assert_eq!(replay.refresh().unwrap(), 1);
    assert_eq!(replay.current().seq, seq, "the cursor follows the newest record");
    assert_eq!(replay.content_of(b"a.txt"), Some(&b"a\nb\n"[..]));
    assert_eq!(replay.problem(), None);
    monitord.stop();
}
