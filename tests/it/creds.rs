//! Root following another user's process copies only what that process
//! could read itself (its uid, gid and supplementary groups).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::*;

#[test]
fn a_file_the_target_cannot_read_is_never_copied() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let dir = tree.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        std::fs::write(dir.join(name), text).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("public.txt", "everyone may read this\n", 0o644);
    write("secret.txt", "TOP-SECRET-ROOT-ONLY\n", 0o600);
    write("team.txt", "for group 4242\n", 0o640);
    nix::unistd::chown(&dir.join("team.txt"), None, Some(nix::unistd::Gid::from_raw(4242))).unwrap();
    // A throwaway user's process (nobody, with supplementary group 4242).
    let mut target = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--groups=4242", "sleep", "100000"])
        .current_dir(dir)
        .spawn()
        .unwrap();
    let daemon = Daemon::start(target.id() as i32, store.path(), 600_000, &[]);
    // A later write of the secret is not copied either.
    write("secret.txt", "TOP-SECRET-ROOT-ONLY, edited\n", 0o600);
    write("public.txt", "everyone may read this, edited\n", 0o644);
    assert_eq!(daemon.ctl(&["sample"]).0, 0);
    assert_eq!(daemon.ctl(&["stop"]).0, 0);
    daemon.wait_gone(std::time::Duration::from_secs(20));
    let _ = target.kill();
    let _ = target.wait();

    let records = dump_json(store.path());
    let baseline = &records[0];
    let tracked: Vec<&str> = file_paths(baseline);
    assert_eq!(
        tracked,
        ["public.txt", "team.txt"],
        "the group file is readable through a supplementary group"
    );
    let skipped = &baseline["skipped"].as_array().unwrap()[0];
    assert_eq!(skipped["path"], "secret.txt");
    assert!(
        skipped.to_string().contains("unreadable") || skipped.to_string().contains("denied"),
        "{skipped}"
    );
    assert!(!occurs_below(store.path(), b"TOP-SECRET"), "the secret is nowhere in the store");
    let (_, text, _) = run(&["dump", "--json", store.path().join("ring.bin").to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&text).contains("TOP-SECRET"));
    assert!(records.iter().any(|r| changes(r) == [("public.txt".to_string(), "modified".to_string())]));
}
