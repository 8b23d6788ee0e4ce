//! The daemon's log, `<store>/monitord.log`: one timestamped line per event
//! (start, stop, target exit, PID switch, rescans, replies to plain FIFO
//! commands, errors). Opened for appending, 0600; SIGHUP reopens it, so
//! logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
        let stamp = crate::render::rfc3339_us(crate::sampler::now_us());
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
