//! The store directory: where it is by default, what lives in it, and how it
//! is created (private: 0700 directories, 0600 files).
//!
//! ```text
//! <store>/
//!   ring.bin          the journal (see `journal`)
//!   mirror/<epoch>/   the newest recorded content of every tracked file,
//!                     one directory per baseline ("epoch", named by the
//!                     baseline's sequence number)
//!   tmp/              staging for atomic mirror writes (same filesystem)
//!   lock              flock: exclusive while the sampler commits a record
//!                     and updates the mirror, shared while `restore` reads
//!   report.html       `monitord report`'s page, when it was asked for
//! ```
//!
//! The control FIFO, pid file and log join this directory later; their names
//! are reserved here so every module agrees on them.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// File name of the journal inside a store.
pub const RING_FILE: &str = "ring.bin";
/// Directory of per-epoch mirrors inside a store.
pub const MIRROR_DIR: &str = "mirror";
/// Staging directory for atomic writes into the mirror.
pub const TMP_DIR: &str = "tmp";
/// The newest memory map of the current epoch (see [`crate::maps::Anchor`]).
pub const MAPS_FILE: &str = "maps";
/// Lock file that orders mirror updates against readers.
pub const LOCK_FILE: &str = "lock";
/// The control FIFO.
pub const CTL_FILE: &str = "ctl";
/// The daemon's pid file.
pub const PID_FILE: &str = "monitord.pid";
/// The daemon's log.
pub const LOG_FILE: &str = "monitord.log";
/// The output of a command run with `-d -- COMMAND`.
pub const COMMAND_LOG_FILE: &str = "command.log";
/// The page `monitord report` writes by default.
pub const REPORT_FILE: &str = "report.html";

/// Errors of the store directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store directory could not be created or opened.
    #[error("cannot create store {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No default location could be derived (no HOME for a non-root user).
    #[error("cannot find a default store directory: set --store, XDG_STATE_HOME or HOME")]
    NoDefault,
    /// No store was named and none was found in the default location.
    #[error("no store found under {base}: name one with --store")]
    NoneFound {
        /// Where we looked.
        base: PathBuf,
    },
    /// Another monitord holds the store's pid file.
    #[error("store {store} is in use by another monitord{}", match pid { Some(p) => format!(" (pid {p})"), None => String::new() })]
    InUse {
        /// The store directory.
        store: PathBuf,
        /// The PID written in the pid file, when readable.
        pid: Option<i32>,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The directory under which per-PID stores are created by default:
/// `/var/lib/monitord` for root, `$XDG_STATE_HOME/monitord` or
/// `~/.local/state/monitord` for everyone else.
///
/// # Errors
/// [`Error::NoDefault`] when neither variable is set for a non-root user.
pub fn default_base() -> Result<PathBuf, Error> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/monitord"));
    }
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(state).join("monitord"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/monitord")),
        None => Err(Error::NoDefault),
    }
}

/// The default store of a monitored PID.
///
/// # Errors
/// As [`default_base`].
pub fn default_for_pid(pid: i32) -> Result<PathBuf, Error> {
    Ok(default_base()?.join(pid.to_string()))
}

/// The store a reading command works on: the one named, or else the most
/// recently written store under the default base directory.
///
/// # Errors
/// [`Error::NoneFound`] when nothing was named and no store exists.
pub fn resolve(named: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = named {
        return Ok(path.to_path_buf());
    }
    let base = default_base()?;
    let newest = fs::read_dir(&base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let ring = entry.path().join(RING_FILE);
            let modified = fs::metadata(&ring).and_then(|m| m.modified()).ok()?;
            Some((modified, entry.path()))
        })
        .max();
    newest.map(|(_, path)| path).ok_or(Error::NoneFound { base })
}

/// Create the store directory and its subdirectories (0700), and remove
/// whatever a crash left in `tmp/`.
///
/// # Errors
/// [`Error::Create`] naming the directory that could not be made.
pub fn create(store: &Path) -> Result<(), Error> {
    let mut builder = DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for dir in [store.to_path_buf(), store.join(MIRROR_DIR), store.join(TMP_DIR)] {
        builder.create(&dir).map_err(|source| Error::Create { path: dir.clone(), source })?;
    }
    let tmp = store.join(TMP_DIR);
    if let Ok(entries) = fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Which kind of lock to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Readers (`restore`): many at once.
    Shared,
    /// The sampler while it commits and updates the mirror.
    Exclusive,
}

/// `<store>/lock`, opened once; [`LockFile::lock`] takes the flock.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
}

/// A held flock; released on drop.
#[derive(Debug)]
pub struct Guard<'a> {
    file: &'a File,
}

impl LockFile {
    /// Open (creating it, 0600, when the store is writable) the lock file.
    ///
    /// # Errors
    /// [`Error::Lock`] when it cannot be opened.
    pub fn open(store: &Path) -> Result<LockFile, Error> {
        let path = store.join(LOCK_FILE);
        let flags = libc::O_CLOEXEC | libc::O_NOFOLLOW;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(flags)
            .open(&path)
            .or_else(|_| OpenOptions::new().read(true).custom_flags(flags).open(&path))
            .map_err(|source| Error::Lock { path: path.clone(), source })?;
        Ok(LockFile { file, path })
    }

    /// Take the lock, waiting for it.
    ///
    /// # Errors
    /// [`Error::Lock`] when flock fails.
    pub fn lock(&self, mode: LockMode) -> Result<Guard<'_>, Error> {
        let op = match mode {
            LockMode::Shared => libc::LOCK_SH,
            LockMode::Exclusive => libc::LOCK_EX,
        };
        loop {
            // SAFETY: flock on a file descriptor owned by self for the whole call.
            let rc = unsafe { libc::flock(self.file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(Guard { file: &self.file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(Error::Lock { path: self.path.clone(), source: err });
            }
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: flock on a file descriptor borrowed for the guard's life.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Whether a monitor runs on `store`: its pid file is locked.
pub fn is_running(store: &Path) -> bool {
    let Ok(file) = File::open(store.join(PID_FILE)) else { return false };
    // SAFETY: flock on a file this function owns; a shared lock is refused
    // while the monitor holds its exclusive one, and is dropped with `file`.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

/// `<store>/monitord.pid`: the running monitor's PID, held with an
/// exclusive `flock` for the monitor's whole life. A flock belongs to the
/// open file description, so it survives `fork` (an `fcntl` lock would
/// not); a file left by a crash is not locked and is simply taken over.
#[derive(Debug)]
pub struct PidFile {
    file: File,
    path: PathBuf,
}

impl PidFile {
    /// Lock the pid file and write this process's PID into it.
    ///
    /// # Errors
    /// [`Error::InUse`] when another monitor holds it, [`Error::Lock`] when
    /// it cannot be opened or written.
    pub fn acquire(store: &Path) -> Result<PidFile, Error> {
        use std::io::{Read, Seek, Write};
        let path = store.join(PID_FILE);
        let lock_err = |source| Error::Lock { path: path.clone(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&path)
            .map_err(lock_err)?;
        // SAFETY: flock on a file descriptor owned by `file` for the whole call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(lock_err(err));
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(Error::InUse { store: store.to_path_buf(), pid: text.trim().parse().ok() });
        }
        file.set_len(0).map_err(lock_err)?;
        file.rewind().map_err(lock_err)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(lock_err)?;
        Ok(PidFile { file, path })
    }

    /// Remove the pid file (clean shutdown); the lock goes with the file.
    pub fn release(self) {
        let _ = fs::remove_file(&self.path);
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_pid_file_means_running_and_refuses_a_second_monitor() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path()).unwrap();
        assert!(!is_running(dir.path()));
        let held = PidFile::acquire(dir.path()).unwrap();
        assert!(is_running(dir.path()));
        let pid = std::process::id() as i32;
        assert!(matches!(PidFile::acquire(dir.path()), Err(Error::InUse { pid: Some(p), .. }) if p == pid));
        held.release();
        assert!(!is_running(dir.path()));
        assert!(!dir.path().join(PID_FILE).exists());
    }
}
