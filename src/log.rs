//! The daemon's log, `<store>/monitord.log`: one timestamped line per event
//! (start, stop, target exit, PID switch, rescans, replies to plain FIFO
//! commands, errors). Opened for appending, 0600; SIGHUP reopens it, so
//! logrotate can move it away.
//!
//! Also the error and warning lines every other mode writes to stderr
//! ([`to_stderr`]): when stderr is the systemd journal, each line starts
//! with its sd-daemon(3) priority, `<3>` for an error and `<4>` for a
//! warning, so the journal files it at that priority.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How serious a line on stderr is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// An operation failed (`<3>`, SD_ERR).
    Error,
    /// Something went wrong and monitord carries on (`<4>`, SD_WARNING).
    Warning,
}

impl Level {
    /// The sd-daemon(3) prefix of this level.
    pub fn prefix(self) -> &'static str {
        match self {
            Level::Error => "<3>",
            Level::Warning => "<4>",
        }
    }
}

/// Parse `JOURNAL_STREAM`: `DEVICE:INODE`, both decimal (systemd.exec(5)).
pub fn parse_journal_stream(value: &OsStr) -> Option<(u64, u64)> {
    let (dev, ino) = value.to_str()?.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Whether stderr is connected to the systemd journal. systemd sets
/// `JOURNAL_STREAM` to the device and inode of the stream it connects, and
/// asks programs to compare them with their stderr (systemd.exec(5)): the
/// variable is inherited by children whose stderr has been redirected
/// elsewhere, where the prefixes would be noise.
pub fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var_os("JOURNAL_STREAM").as_deref().and_then(parse_journal_stream)
    else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// `text` as written to stderr: each line ends with a newline and, for the
/// journal, starts with `level`'s prefix.
pub fn stderr_lines(level: Level, text: &str, journal: bool) -> String {
    let prefix = if journal { level.prefix() } else { "" };
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        out.push_str(prefix);
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Write an error or warning to stderr, one line per line of `text`,
/// prefixed for the journal (see [`stderr_is_journal`]). Write errors are
/// ignored: stderr is where errors go, there is nowhere else.
pub fn to_stderr(level: Level, text: &str) {
    let out = stderr_lines(level, text, stderr_is_journal());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(out.as_bytes());
    let _ = err.flush();
}

/// An open log file.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    file: File,
}

impl Log {
    /// Open `path` for appending, creating it (0600) if missing.
    ///
    /// # Errors
    /// The open error; the caller names the path.
    pub fn open(path: &Path) -> io::Result<Log> {
        Ok(Log { path: path.to_path_buf(), file: open_append(path)? })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Close and open the path again (after a rotation).
    ///
    /// # Errors
    /// The open error; the old file stays in use.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path)?;
        Ok(())
    }

    /// Append `text`, each of its lines prefixed with the time. Write
    /// errors are ignored: there is nowhere else to report them.
    pub fn write(&mut self, text: &str) {
        let stamp = crate::render::rfc3339_us(crate::clock::now_us());
        let mut out = String::with_capacity(text.len() + 40);
        for line in text.lines() {
            out.push_str(&stamp);
            out.push(' ');
            out.push_str(line);
            out.push('\n');
        }
        let _ = self.file.write_all(out.as_bytes());
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_carry_the_sd_daemon_priority() {
        assert_eq!(stderr_lines(Level::Error, "monitord: no process", true), "<3>monitord: no process\n");
        assert_eq!(stderr_lines(Level::Warning, "one\ntwo\n", true), "<4>one\n<4>two\n");
        assert_eq!(stderr_lines(Level::Error, "monitord: no process", false), "monitord: no process\n");
        assert_eq!(parse_journal_stream(OsStr::new("8:306630")), Some((8, 306630)));
        for bad in ["", "8", "8:", ":1", "a:1", "1:2:3", "-1:2"] {
            assert_eq!(parse_journal_stream(OsStr::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn lines_are_stamped_and_reopen_follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitord.log");
        let mut log = Log::open(&path).unwrap();
        log.write("one\ntwo\n");
        std::fs::rename(&path, dir.path().join("monitord.log.1")).unwrap();
        log.write("three");
        log.reopen().unwrap();
        log.write("four");
        let old = std::fs::read_to_string(dir.path().join("monitord.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            old.lines().map(|l| l.split_once(' ').unwrap().1).collect::<Vec<_>>(),
            ["one", "two", "three"]
        );
        assert_eq!(new.lines().map(|l| l.split_once(' ').unwrap().1).collect::<Vec<_>>(), ["four"]);
        assert!(new.starts_with("20"), "{new}");
    }
}
