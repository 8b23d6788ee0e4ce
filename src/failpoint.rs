//! Fault injection: named points on the I/O paths the monitor must survive
//! a failure of, each able to return an [`io::Error`] through the same path
//! a real failure takes, so the real error handling runs.
//!
//! The points exist only in a build with the `failpoints` feature, which
//! the tests turn on (the package's dev-dependency on itself). In any other
//! build [`check`] is an empty inline function: no name, no lookup and no
//! `fail` crate code is left in the binary, and `FAILPOINTS` is ignored.
//!
//! A build with the feature reads `FAILPOINTS` at start ([`setup`]), in the
//! `fail` crate's syntax: `name=actions;name=actions…`, where an action is
//! `[p%][count*]task[(arg)]` and `->` chains them. The task that matters
//! here is `return`: the point fails with `EIO`, or with the errno named
//! by its argument (`return(ENOSPC)`, or a number); `sleep(MS)` holds the
//! operation there (a test then kills the process mid-way). Each point is hit once
//! per operation:
//!
//! | point | operation |
//! |---|---|
//! | `ring.append` | appending one record to ring.bin (before any byte of it is written) |
//! | `ring.msync` | one msync of ring.bin: the write-back after an append, the header at open, the whole map at creation and shutdown |
//! | `mirror.write` | writing one entry into the mirror (a sample's update appended to the log, or a baseline's copy into the pack) |
//! | `mirror.rename` | putting a compacted pack in place of the old one (the mirror's only rename) |
//! | `mirror.remove` | appending one deletion to the mirror's log |
//! | `tree.read` | reading one file of the watched tree |
//! | `events.watch_add` | one inotify watch, or the fanotify mark |
//! | `control.reply` | writing one reply to a `monitord ctl` client |
//! | `undo.write` | putting back one file of an undo (before any byte of it is written) |
//!
//! `1*off->1*return` fails the second operation only (the first passes),
//! `return` every one from the start:
//!
//! ```sh
//! FAILPOINTS='ring.append=1*off->1*return' monitord -d 1234
//! ```

use std::io;

/// The points, by name (see the module doc for where each one is).
pub const POINTS: [&str; 9] = [
    "ring.append",
    "ring.msync",
    "mirror.write",
    "mirror.rename",
    "mirror.remove",
    "tree.read",
    "events.watch_add",
    "control.reply",
    "undo.write",
];

/// A `FAILPOINTS` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid FAILPOINTS entry {entry:?}: {why}")]
pub struct Error {
    /// The `name=actions` entry.
    pub entry: String,
    /// What is wrong with it.
    pub why: String,
}

/// Fail here if the point `name` is configured to: `Err` with the errno
/// its `return` action names (`EIO` by default), `Ok` otherwise and always
/// in a build without the `failpoints` feature.
///
/// # Errors
/// The injected error.
#[cfg(feature = "failpoints")]
pub fn check(name: &str) -> io::Result<()> {
    // Benches are built with the feature too: with nothing configured, a
    // check costs one load, not a lookup in the fail registry.
    if !ACTIVE.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    match fail::eval(name, |arg| io::Error::from_raw_os_error(errno_of(arg.as_deref()))) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Fail here if the point `name` is configured to: never, in a build
/// without the `failpoints` feature.
///
/// # Errors
/// None in this build.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn check(_name: &str) -> io::Result<()> {
    Ok(())
}

/// Some point has been configured ([`setup`], [`cfg`]).
#[cfg(feature = "failpoints")]
static ACTIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Configure the point `name` with `actions` (the `fail` crate's syntax),
/// as one `FAILPOINTS` entry does.
///
/// # Errors
/// [`Error`] when the actions do not parse.
#[cfg(feature = "failpoints")]
pub fn cfg(name: &str, actions: &str) -> Result<(), Error> {
    fail::cfg(name, actions).map_err(|why| Error { entry: format!("{name}={actions}"), why })?;
    ACTIVE.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Whether this build has the points (the `failpoints` feature).
pub const fn enabled() -> bool {
    cfg!(feature = "failpoints")
}

/// Configure the points from the `FAILPOINTS` environment variable (a
/// build with the `failpoints` feature; a no-op otherwise). Called once at
/// start, before any thread exists, so a daemon's fork keeps the setting.
///
/// Does what `fail::FailScenario::setup` does, but reports a malformed
/// value as an error where that function panics.
///
/// # Errors
/// [`Error`] for an entry that is not `name=actions` or whose actions do
/// not parse, or a value that is not UTF-8.
pub fn setup() -> Result<(), Error> {
    #[cfg(feature = "failpoints")]
    {
        let value = match std::env::var("FAILPOINTS") {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => return Ok(()),
            Err(std::env::VarError::NotUnicode(raw)) => {
                return Err(Error { entry: raw.to_string_lossy().into_owned(), why: "not UTF-8".into() });
            }
        };
        for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = |why: String| Error { entry: entry.to_string(), why };
            let Some((name, actions)) = entry.split_once('=') else {
                return Err(invalid("expected name=actions".into()));
            };
            cfg(name.trim(), actions.trim()).map_err(|e| invalid(e.why))?;
        }
    }
    Ok(())
}

/// The errno a `return` action's argument names: a number, a name from
/// the short list below, or `EIO` when there is none.
#[cfg(feature = "failpoints")]
fn errno_of(arg: Option<&str>) -> i32 {
    let Some(arg) = arg.map(str::trim).filter(|a| !a.is_empty()) else { return libc::EIO };
    if let Ok(n) = arg.parse() {
        return n;
    }
    match arg {
        "EACCES" => libc::EACCES,
        "EAGAIN" => libc::EAGAIN,
        "EDQUOT" => libc::EDQUOT,
        "EINTR" => libc::EINTR,
        "EMFILE" => libc::EMFILE,
        "ENODEV" => libc::ENODEV,
        "ENOENT" => libc::ENOENT,
        "ENOMEM" => libc::ENOMEM,
        "ENOSPC" => libc::ENOSPC,
        "EOPNOTSUPP" => libc::EOPNOTSUPP,
        "EPIPE" => libc::EPIPE,
        "EXDEV" => libc::EXDEV,
        _ => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_build_has_the_points() {
        assert!(enabled(), "tests are built with the `failpoints` feature (the self dev-dependency)");
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn return_arguments_name_an_errno() {
        assert_eq!(errno_of(None), libc::EIO);
        assert_eq!(errno_of(Some("ENOSPC")), libc::ENOSPC);
        assert_eq!(errno_of(Some("32")), libc::EPIPE);
        assert_eq!(errno_of(Some("nonsense")), libc::EIO);
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn a_configured_point_fails_once_then_passes() {
        // A name of its own: unit tests share the process-wide registry.
        let name = "test.unit.once";
        cfg(name, "1*return(ENOSPC)").unwrap();
        let err = check(name).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(check(name).is_ok());
        fail::remove(name);
        assert!(check("test.unit.never-configured").is_ok());
    }
}
