//! `monitord report`: the page of a real recording, opened in a real
//! browser (headless Chromium) from a file:// address with no network.
//! Under CI=true a missing Chromium fails the test instead of skipping it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// A target that uses some CPU and grows its memory, threads, fds and
/// mappings as it runs, so every chart has something to show.
const BUSY_TARGET: &str = "
import mmap, threading, time
keep, files, maps, i = [], [], [], 0
while True:
    i += 1
    keep.append(bytearray(192 * 1024))
    if len(keep) > 120: del keep[:60]
    if i % 8 == 0 and len(files) < 24: files.append(open('/dev/null'))
    if i % 6 == 0 and len(maps) < 40: maps.append(mmap.mmap(-1, 4096 * (i % 5 + 1)))
    if i % 12 == 0: threading.Thread(target=time.sleep, args=(1.5,), daemon=True).start()
    t = time.time()
    while time.time() - t < 0.004 * (i % 9): pass
    time.sleep(0.03)
";

/// A file name that is markup.
const HOSTILE: &str = "<img src=x onerror=\"document.title='owned'\">.txt";

/// The browser, when installed.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Run headless Chromium on `page` (a file) with `args`, in its own
/// profile directory, removed after. Returns stdout.
fn browse(chromium: &Path, page: &Path, fragment: &str, args: &[&str]) -> String {
    let profile = TempDir::new("monitord-chromium-");
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}{fragment}", page.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text a reader sees in HTML: scripts and tags dropped, entities
/// decoded.
fn text_of(html: &str) -> String {
    let mut rest = html;
    let mut shown = String::with_capacity(html.len());
    while let Some(start) = rest.find("<script") {
        shown.push_str(&rest[..start]);
        rest = rest[start..].split_once("</script>").map_or("", |(_, after)| after);
    }
    shown.push_str(rest);
    let html = shown;
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Record a run with every kind of event the page shows: files created,
/// changed, renamed and deleted, a mark, a PID change and the old
/// process's exit, with process statistics all along.
fn record_run(tree: &Path, store: &Path) -> u64 {
    let t = tree;
    fs::create_dir_all(t.join("src")).unwrap();
    fs::write(t.join("README.md"), "# demo\n\nA small project.\n").unwrap();
    fs::write(t.join("src/main.rs"), "fn main() {\n    println!(\"hello\");\n}\n").unwrap();
    let first = Target::spawn(Command::new("python3").args(["-c", BUSY_TARGET]).current_dir(t));
    let backend: &[&str] = if fanotify_available() { &["--backend", "fanotify"] } else { &[] };
    let mut m = Monitord::start(&first, store, backend);
    let s = store.to_str().unwrap();
    let pause = || std::thread::sleep(Duration::from_millis(60));
    for i in 0..12 {
        if i % 3 == 0 {
            let body: String = (0..=i).map(|k| format!("line {k}\n")).collect();
            fs::write(t.join("notes.txt"), body).unwrap();
        }
        pause();
        m.sample();
    }
    fs::write(t.join("src/main.rs"), "fn main() {\n    println!(\"hello, world\");\n    run();\n}\n")
        .unwrap();
    fs::write(t.join("src/lib.rs"), "pub fn run() {}\n").unwrap();
    fs::write(t.join(HOSTILE), "</script><script>document.title='owned'</script>\n").unwrap();
    let changed = m.sample();
    let ran = monitord(&["mark", "--store", s, "before cleanup"]);
    ran.expect_success();
    for _ in 0..6 {
        pause();
        m.sample();
    }
    fs::remove_file(t.join("notes.txt")).unwrap();
    fs::rename(t.join("README.md"), t.join("README.txt")).unwrap();
    m.sample();
    let second = Target::spawn(Command::new("python3").args(["-c", BUSY_TARGET]).current_dir(t));
    m.send(&format!("pid {}", second.pid()));
    let pid = second.pid().to_string();
    m.wait_line("the reply to pid", |l| l.starts_with("pid: ") && l.ends_with(&pid));
    drop(first);
    for i in 0..10 {
        if i == 4 {
            fs::write(t.join("src/lib.rs"), "pub fn run() {\n    // <b>bold</b> & more\n}\n").unwrap();
        }
        pause();
        m.sample();
    }
    // The followed process ends: an exit record.
    drop(second);
    m.wait_line("the exit record", |l| l.contains(" exit "));
    m.stop();
    changed
}

#[test]
fn the_report_of_a_real_run_opens_in_a_browser_with_every_file_diff_mark_and_chart() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let changed = record_run(tree.path(), store.path());
    let s = store.path().to_str().unwrap();
    monitord(&["report", "--store", s]).expect_success();
    let page_path = store.path().join("report.html");
    let html = fs::read_to_string(&page_path).unwrap();
    // Nothing else was written to the store, and no temporary is left.
    let names: Vec<String> = fs::read_dir(store.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
    // -o - writes the same page to stdout.
    let stdout = monitord(&["report", "--store", s, "-o", "-"]).expect_success().stdout.clone();
    assert_eq!(String::from_utf8(stdout).unwrap(), html);

    // Self-contained: every src and href stays in the page.
    for attr in [" src=\"", " href=\"", " src='", " href='", "url("] {
        for rest in html.split(attr).skip(1) {
            assert!(
                rest.starts_with('#') || rest.starts_with("data:"),
                "external {attr}{}",
                &rest[..60.min(rest.len())]
            );
        }
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "no network address in the page");

    let Some(chromium) = chromium() else {
        skip_or_fail("chromium is not installed (apt-get install chromium)");
        return;
    };
    let dom = browse(&chromium, &page_path, "", &["--virtual-time-budget=2000", "--dump-dom"]);
    assert!(dom.contains("data-load-ms=\""), "the page's script ran: {}", &dom[..400.min(dom.len())]);
    // What the script drew links only inside the page too.
    for attr in [" src=\"", " href=\""] {
        for rest in dom.split(attr).skip(1) {
            assert!(
                rest.starts_with('#') || rest.starts_with("data:"),
                "drawn {attr}{}",
                &rest[..60.min(rest.len())]
            );
        }
    }
    let text = text_of(&dom);
    for path in ["notes.txt", "src/main.rs", "src/lib.rs", "README.txt"] {
        assert!(text.contains(path), "{path} is in the page");
    }
    for line in [
        "+    println!(\"hello, world\");",
        "-    println!(\"hello\");",
        "+pub fn run() {}",
        "+    // <b>bold</b> & more",
        "-line 9",
        "renamed",
        "before cleanup",
    ] {
        assert!(text.contains(line), "{line:?} is in the page");
    }
    assert!(!dom.contains("<b>bold</b>"), "file content is text, not markup");
    assert!(text.contains(HOSTILE), "the hostile name is shown as text");
    assert!(!dom.contains("<img"), "and is no element");
    assert!(
        dom.contains("<title>monitord report"),
        "no script of the recording ran (it would set the title)"
    );
    assert!(dom.matches("<svg").count() >= 6, "the timeline, the event lanes and the charts are drawn");
    for chart in ["changes", "cpu", "rss", "threads", "fds", "maps"] {
        assert!(dom.contains(&format!("data-series=\"{chart}\"")), "the {chart} chart is there");
    }
    assert!(text.contains("following pid"), "the PID change is an event");
    assert!(text.contains("exited") || text.contains("killed"), "the first process's exit is an event");

    // The reverse diff is the way back, exactly as show --reverse prints it.
    let reversed =
        text_of(&browse(&chromium, &page_path, "#reverse", &["--virtual-time-budget=2000", "--dump-dom"]));
    let show = monitord(&["show", "--store", s, "--reverse", &changed.to_string(), "--", "src/main.rs"])
        .expect_success()
        .text();
    let diff: String =
        show.lines().skip_while(|l| !l.starts_with("--- ")).map(|l| format!("{l}\n")).collect();
    assert!(diff.starts_with("--- b/src/main.rs\n+++ a/src/main.rs\n@@ "), "{show}");
    assert!(reversed.contains(&diff), "the page's reverse diff equals show --reverse:\n{diff}");

    // A screenshot at a laptop's size is a picture, not a blank page.
    let shot_dir = TempDir::new("monitord-shot-");
    let shot = shot_dir.path().join("report.png");
    browse(
        &chromium,
        &page_path,
        "",
        &[
            "--virtual-time-budget=2000",
            "--window-size=1280,900",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let (width, height, colours) = png_summary(&shot);
    assert_eq!((width, height), (1280, 900));
    assert!(colours > 50, "the screenshot has {colours} colours: blank?");
    if std::env::var_os("MONITORD_BLESS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        fs::create_dir_all(&docs).unwrap();
        fs::copy(&shot, docs.join("report.png")).unwrap();
    }
}

/// A PNG's size and how many distinct colours it has.
fn png_summary(path: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let pixel = info.color_type.samples() * (info.bit_depth as usize).div_ceil(8);
    let colours: std::collections::HashSet<&[u8]> = buf[..info.buffer_size()].chunks(pixel).collect();
    (info.width, info.height, colours.len())
}

#[test]
fn a_report_of_a_damaged_ring_is_written_and_exits_1() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("f.txt"), "start\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start_on("inotify", &target, store.path(), &[]);
    let mut seqs = Vec::new();
    for i in 0..6 {
        fs::write(tree.path().join("f.txt"), format!("LINE-{i:03} here\n")).unwrap();
        seqs.push(m.sample());
    }
    m.stop();
    // Damage the third sample's record: the line it inserts.
    let ring = store.path().join("ring.bin");
    let mut bytes = fs::read(&ring).unwrap();
    let at = bytes.windows(8).position(|w| w == b"LINE-002").unwrap();
    bytes[at + 2] ^= 0x04;
    fs::write(&ring, bytes).unwrap();
    let page = store.path().join("page.html");
    let ran = monitord(&["report", "--store", store.path().to_str().unwrap(), "-o", page.to_str().unwrap()]);
    ran.expect_code(1);
    assert!(ran.stderr.contains("damaged"), "{}", ran.stderr);
    let html = fs::read_to_string(&page).unwrap();
    assert!(html.contains("LINE-005 here"), "the records after the damage are in the page");
    assert!(!html.contains("+LINE-002 here"), "the damaged record's change is not");
    assert!(html.contains("-LINE-002 here"), "the next record's diff is");
    assert!(html.contains(&format!("records {}..{} missing", seqs[2], seqs[2])), "the gap is named");
}

#[test]
fn report_takes_since_and_until_and_refuses_a_point_it_does_not_hold() {
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    fs::write(tree.path().join("a.txt"), "1\n").unwrap();
    let target = Target::start(tree.path());
    let mut m = Monitord::start(&target, store.path(), &[]);
    fs::write(tree.path().join("early.txt"), "early\n").unwrap();
    let early = m.sample();
    fs::write(tree.path().join("late.txt"), "late\n").unwrap();
    let late = m.sample();
    m.stop();
    let s = store.path().to_str().unwrap();
    let page = |args: &[&str]| {
        let mut all = vec!["report", "--store", s, "-o", "-"];
        all.extend_from_slice(args);
        String::from_utf8(monitord(&all).expect_success().stdout.clone()).unwrap()
    };
    let since = page(&["--since", &late.to_string()]);
    assert!(since.contains("late.txt") && !since.contains("early.txt"));
    let until = page(&["--until", &early.to_string()]);
    assert!(until.contains("early.txt") && !until.contains("late.txt"));
    // A relative time is a value, not an option.
    let recent = page(&["--since", "-10min", "--until", "-0s"]);
    assert!(recent.contains("early.txt") && recent.contains("late.txt"));
    let ran = monitord(&["report", "--store", s, "--since", "@nowhere", "-o", "-"]);
    ran.expect_code(1);
    assert!(ran.stdout.is_empty());
}

/// `-o` naming something that is not a regular file writes into it:
/// a FIFO (or /dev/null) stays what it is, and a symlink stays a link
/// to the file that gets the page.
#[test]
fn report_writes_into_a_fifo_or_through_a_symlink_and_never_replaces_them() {
    use std::os::unix::fs::FileTypeExt;
    let tree = TempDir::new("monitord-tree-");
    let store = TempDir::new("monitord-store-");
    let _target = record_alpha(tree.path(), store.path());
    let s = store.path().to_str().unwrap();
    let out = TempDir::new("monitord-out-");
    let fifo = out.path().join("page.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read_to_string(fifo).unwrap())
    };
    monitord(&["report", "--store", s, "-o", fifo.to_str().unwrap()]).expect_success();
    // (Checked first: a reader of a FIFO replaced by a file would wait forever.)
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
    let page = reader.join().unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"), "the reader got the page");

    let target = out.path().join("real.html");
    fs::write(&target, "old").unwrap();
    let link = out.path().join("link.html");
    std::os::unix::fs::symlink("real.html", &link).unwrap();
    monitord(&["report", "--store", s, "-o", link.to_str().unwrap()]).expect_success();
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "still a link");
    assert!(fs::read_to_string(&target).unwrap().starts_with("<!DOCTYPE html>"), "its file has the page");
    let names: Vec<String> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no temporary left: {names:?}");
}
