//! Cheap process statistics for every sample (SPEC §1): CPU time, RSS,
//! virtual size, threads and open fds, read through the target's pinned
//! `/proc/<pid>` directory.
//!
//! One sample costs one read of `stat` and one listing of `fd/`:
//! `stat` already carries utime, stime, num_threads, vsize and rss
//! (proc(5) fields 14, 15, 20, 23 and 24), so `statm` and `status` are not
//! read. Listing `fd/` of another user's process needs the same access as
//! ptrace (proc(5)); without it the statistics are left out of the record.

use nix::unistd::{SysconfVar, sysconf};

use crate::journal::record::Stats;
use crate::proc::{self, Target};

/// Errors reading statistics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A /proc entry could not be read (the process may be gone).
    #[error("cannot read process statistics")]
    Read(#[source] proc::Error),
    /// The process has exited (a zombie): nothing left to measure.
    #[error("process {pid} has exited")]
    Exited {
        /// The PID.
        pid: i32,
    },
    /// `stat` did not have the expected format.
    #[error("unexpected format of /proc/{pid}/stat")]
    Format {
        /// The PID.
        pid: i32,
    },
    /// The fd directory could not be listed.
    #[error("cannot list /proc/{pid}/fd")]
    Fds {
        /// The PID.
        pid: i32,
        /// Why.
        #[source]
        source: nix::Error,
    },
}

/// The fields of `/proc/<pid>/stat` behind [`Stats`], in the kernel's units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFields {
    /// Field 14: user time, clock ticks.
    pub utime_ticks: u64,
    /// Field 15: system time, clock ticks.
    pub stime_ticks: u64,
    /// Field 20: threads.
    pub threads: u64,
    /// Field 23: virtual size, bytes.
    pub vsize_bytes: u64,
    /// Field 24: resident set, pages.
    pub rss_pages: u64,
}

/// Parse the fields [`Stats`] needs from `/proc/<pid>/stat` (split by
/// [`proc::stat_fields`]). Never panics; `None` when a field is missing or
/// not a number.
pub fn parse_stat(raw: &[u8]) -> Option<StatFields> {
    let fields: Vec<&str> = proc::stat_fields(raw)?.take(22).collect();
    let number = |field: usize| -> Option<u64> { fields.get(field - 3)?.parse().ok() };
    Some(StatFields {
        utime_ticks: number(14)?,
        stime_ticks: number(15)?,
        threads: number(20)?,
        vsize_bytes: number(23)?,
        // rss is a signed long; the kernel never prints a negative one, but
        // a hostile or future text must not fail the sample.
        rss_pages: fields.get(24 - 3)?.parse::<i64>().ok()?.max(0) as u64,
    })
}

/// Reads [`Stats`] of a target; holds the units and a reused buffer.
#[derive(Debug)]
pub struct StatsProbe {
    ticks_per_second: u64,
    page_kib: u64,
    buffer: Vec<u8>,
}

impl Default for StatsProbe {
    fn default() -> StatsProbe {
        StatsProbe::new()
    }
}

impl StatsProbe {
    /// A probe with the system's clock tick and page size.
    pub fn new() -> StatsProbe {
        let get = |var, default: u64| match sysconf(var) {
            Ok(Some(value)) if value > 0 => value as u64,
            _ => default,
        };
        StatsProbe {
            ticks_per_second: get(SysconfVar::CLK_TCK, 100),
            page_kib: get(SysconfVar::PAGE_SIZE, 4096) / 1024,
            buffer: Vec::with_capacity(1024),
        }
    }

    /// Convert kernel units to a record's [`Stats`].
    pub fn convert(&self, fields: StatFields, fds: u64) -> Stats {
        let ms = |ticks: u64| ticks.saturating_mul(1000) / self.ticks_per_second;
        Stats {
            utime_ms: ms(fields.utime_ticks),
            stime_ms: ms(fields.stime_ticks),
            rss_kib: fields.rss_pages.saturating_mul(self.page_kib),
            vsz_kib: fields.vsize_bytes / 1024,
            threads: fields.threads,
            fds,
        }
    }

    /// Read the target's statistics now.
    ///
    /// # Errors
    /// Any [`Error`]; the process may have exited.
    pub fn read(&mut self, target: &Target) -> Result<Stats, Error> {
        self.buffer.clear();
        target.read_into("stat", &mut self.buffer).map_err(Error::Read)?;
        let fields = parse_stat(&self.buffer).ok_or(Error::Format { pid: target.pid() })?;
        if proc::parse_stat(&self.buffer).is_some_and(|s| s.state == 'Z' || s.state == 'X') {
            // An exited process not yet reaped: its figures are gone.
            return Err(Error::Exited { pid: target.pid() });
        }
        let fds = count_fds(target)?;
        Ok(self.convert(fields, fds))
    }
}

/// Entries of `/proc/<pid>/fd`, without `.` and `..`.
fn count_fds(target: &Target) -> Result<u64, Error> {
    let pid = target.pid();
    let fd = target.open_dir("fd").map_err(Error::Read)?;
    let mut dir = nix::dir::Dir::from_fd(fd).map_err(|source| Error::Fds { pid, source })?;
    let mut count = 0;
    for entry in dir.iter() {
        let entry = entry.map_err(|source| Error::Fds { pid, source })?;
        if !matches!(entry.file_name().to_bytes(), b"." | b"..") {
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REAL: &[u8] =
        b"4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 75 0 0 20 0 3 0 987654 \
        123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn real_stat_parses() {
        let fields = parse_stat(REAL).unwrap();
        assert_eq!(
            fields,
            StatFields {
                utime_ticks: 250,
                stime_ticks: 75,
                threads: 3,
                vsize_bytes: 123456789,
                rss_pages: 2048
            }
        );
        let probe = StatsProbe { ticks_per_second: 100, page_kib: 4, buffer: Vec::new() };
        let stats = probe.convert(fields, 7);
        assert_eq!(
            stats,
            Stats { utime_ms: 2500, stime_ms: 750, rss_kib: 8192, vsz_kib: 120563, threads: 3, fds: 7 }
        );
    }

    #[test]
    fn truncated_or_garbled_stat_is_none() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"42 (x) S 1 2 3"), None);
        assert_eq!(
            parse_stat(b"42 no parenthesis S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22"),
            None
        );
        let garbled = String::from_utf8_lossy(REAL).replace(" 250 ", " x ");
        assert_eq!(parse_stat(garbled.as_bytes()), None);
    }

    #[test]
    fn own_stats_are_plausible() {
        let me = Target::open(std::process::id() as i32).unwrap();
        let stats = StatsProbe::new().read(&me).unwrap();
        assert!(stats.threads >= 1, "{stats:?}");
        assert!(stats.fds >= 3, "{stats:?}");
        assert!(stats.rss_kib > 0 && stats.vsz_kib >= stats.rss_kib, "{stats:?}");
    }

    proptest! {
        #[test]
        fn hostile_stat_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_stat(&bytes);
        }

        #[test]
        fn any_name_and_numbers_parse_back(
            name in "[ -~]{0,20}",
            numbers in prop::collection::vec(any::<u32>(), 22),
        ) {
            let rest: Vec<String> = numbers.iter().map(u32::to_string).collect();
            let text = format!("99 ({name}) R {}\n", rest.join(" "));
            let fields = parse_stat(text.as_bytes()).unwrap();
            prop_assert_eq!(fields.utime_ticks, u64::from(numbers[14 - 4]));
            prop_assert_eq!(fields.stime_ticks, u64::from(numbers[15 - 4]));
            prop_assert_eq!(fields.threads, u64::from(numbers[20 - 4]));
            prop_assert_eq!(fields.vsize_bytes, u64::from(numbers[23 - 4]));
            prop_assert_eq!(fields.rss_pages, u64::from(numbers[24 - 4]));
        }
    }
}
