//! The README's first command works on a machine where only the project is
//! installed: it runs as written (with the binary under test in place of
//! `cargo run --release --`), in an empty directory, and shows the
//! recording of a real command.

use std::process::Command;

use crate::harness::*;

/// The first `cargo run` line of the README's first `sh` block.
fn first_command() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme.split("```sh\n").nth(1).expect("a sh block in the README");
    let line = block.lines().next().expect("a first line");
    assert!(line.starts_with("cargo run --release -- "), "the first command runs monitord: {line}");
    line.to_string()
}

#[test]
fn the_readme_first_command_records_a_real_command() {
    let dir = TempDir::new("monitord-readme-");
    let state = TempDir::new("monitord-state-");
    let command = first_command().replacen("cargo run --release --", bin(), 1);
    let out = Command::new("sh")
        .args(["-c", &command])
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    // With a command, monitord reports on stderr: the command keeps stdout.
    let report = String::from_utf8_lossy(&out.stderr);
    // Root's default store is /var/lib/monitord/<pid>: leave nothing behind.
    let pid = report.lines().find_map(|l| l.split(" exit pid ").nth(1)).and_then(|r| r.split(' ').next());
    if let Some(pid) = pid
        && nix::unistd::geteuid().is_root()
    {
        let _ = std::fs::remove_dir_all(format!("/var/lib/monitord/{pid}"));
    }
    assert!(out.status.success(), "{command}:\n{report}");
    assert!(report.contains(" baseline "), "{report}");
    assert!(report.contains("created notes.txt") || report.contains("+one"), "{report}");
    assert!(report.contains("+two"), "{report}");
    assert!(report.contains("deleted notes.txt"), "{report}");
    assert!(pid.is_some(), "an exit record: {report}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the command left its directory as it was");
}
