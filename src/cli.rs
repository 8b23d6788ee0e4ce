//! The command line (SPEC §3), defined once with clap: `--help`, the man
//! page and shell completions are all generated from these definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  monitord -i --period 500 $(pgrep -n vim)     follow a process in the foreground
  monitord dump --json /var/lib/monitord/1234/ring.bin
  monitord restore --store /var/lib/monitord/1234 --at 7 /tmp/as-of-7
  monitord maps --store /var/lib/monitord/1234 --at 7

While monitoring in the foreground, type control commands on stdin
(help, status, sample, diff, history K, period MS, pause, resume, stop).

Exit status: 0 success; 1 the operation failed (bad PID, damage found, an
error reply); 2 usage error; 3 no daemon answered.

Damage: everything a reader returns is checked against the checksums and
hashes the journal recorded. dump, log, show, restore, maps and replay name
each damaged stretch of the ring on stderr (one line: its offset, the seqs
lost, where intact records resume) and go on with the intact records after
it; a command whose answer is incomplete exits 1. A point that depends on a
damaged record, or a mirror that does not hold what the journal recorded, is
an error naming it, and restore writes nothing.";

/// Follow a process and keep a replayable history of the text files in its
/// working directory and of its memory map.
///
/// The first sample is a full backup of every regular text file; every later
/// sample stores only what changed, as reversible line diffs (a line of 4 KiB
/// or more changed in place is stored as its changed bytes, and diffs show
/// the bytes they leave out of it as …[N bytes]…), in a fixed-size
/// ring-buffer journal (ring.bin), with the mappings added to and removed from
/// /proc/PID/maps and the process's CPU, memory, thread and fd counts. Any
/// recorded state can be restored.
#[derive(Debug, Parser)]
#[command(
    name = "monitord",
    version,
    after_long_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options for monitoring a process.
    #[command(flatten)]
    pub monitor: MonitorArgs,
    /// A tool for reading or controlling a store instead of monitoring.
    #[command(subcommand)]
    pub command: Option<Command>,
}

pub use crate::event::Backend;

/// What to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum What {
    /// Text files of the working directory.
    Files,
    /// The memory map (/proc/PID/maps).
    Maps,
    /// CPU time, RSS, threads, open fds.
    Stats,
}

/// Options for monitoring a process.
#[derive(Debug, Args)]
#[command(next_help_heading = "Monitoring")]
pub struct MonitorArgs {
    /// Detach and run as a daemon.
    #[arg(short = 'd', long, conflicts_with = "interactive")]
    pub daemon: bool,
    /// Stay in the foreground: records on stdout, commands on stdin (the default).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// How changes are found.
    #[arg(long, value_enum, default_value_t = Backend::Inotify)]
    pub backend: Backend,
    /// Mark changes made by processes other than the target and its
    /// descendants (they are still recorded, so restores stay exact).
    /// Needs --backend fanotify, which knows who wrote.
    #[arg(long)]
    pub only_target: bool,
    /// Sampling period T in milliseconds.
    #[arg(short = 'p', long = "period", value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub period_ms: u64,
    /// Where ring.bin, the mirror, the FIFO, pid file and log live
    /// [default: $XDG_STATE_HOME/monitord/PID; root: /var/lib/monitord/PID].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Size of ring.bin (K, M, G suffixes); an existing ring keeps its size.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub ring_size: u64,
    /// What to record, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "files,maps,stats")]
    pub record: Vec<What>,
    /// Paths to leave out (repeatable; a pattern without '/' matches any path
    /// component). Giving any replaces the default.
    #[arg(long = "exclude", value_name = "GLOB", default_value = ".git")]
    pub exclude: Vec<String>,
    /// Also leave out what the tree's .gitignore and .ignore files and its
    /// .git/info/exclude leave out, with git's rules ('!' keeps a path,
    /// '/x' is anchored, 'x/' matches directories only, '**' any depth). A
    /// file applies to its own directory's subtree, a deeper one overriding
    /// a shallower one. Editing one while monitoring rescans the directory
    /// it covers: what it now leaves out is recorded as deleted, what it
    /// lets in again as created.
    #[arg(long)]
    pub gitignore: bool,
    /// Leave out the paths matched by the patterns in FILE, written as in a
    /// .gitignore at the root of the tree (they take precedence over the
    /// tree's ignore files, as git's command-line patterns do).
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Option<PathBuf>,
    /// Larger text files are listed as skipped, not copied (K, M, G suffixes).
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = parse_size)]
    pub max_file_size: u64,
    /// Capacity of the dirty-path queue between the event thread and the
    /// sampler (a full queue turns into a rescan).
    #[arg(long, hide = true, default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    pub queue_capacity: u64,
    /// Print nothing but errors while running a command (`-- COMMAND`).
    #[arg(short, long)]
    pub quiet: bool,
    /// The process to follow.
    #[arg(value_name = "PID", required_unless_present = "command", conflicts_with = "command",
          value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: Option<i32>,
    /// Run COMMAND in the current directory and follow it from its first
    /// instruction (the baseline is taken before it starts). In -i, it keeps
    /// the terminal and monitord exits with its status; with -d, its output
    /// goes to STORE/command.log.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// Tools that read or control a store.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one control command to a running monitor and print its reply.
    Ctl(CtlArgs),
    /// Print the records of a ring.bin.
    Dump(DumpArgs),
    /// One line per record that changed something (idle runs collapsed); filters as git log has them.
    Log(LogArgs),
    /// The diffs of one record, or the net change between two points (A..B).
    Show(ShowArgs),
    /// Each line of a file with the record (seq, time, writer) that last changed it.
    Blame(BlameArgs),
    /// Name this point in history: the running monitor writes a mark record (@NAME finds it).
    Mark(MarkArgs),
    /// Put the live tree back to what it was at a point (checks every file first).
    Undo(UndoArgs),
    /// Rebuild the tracked tree as it was at a sample.
    Restore(RestoreArgs),
    /// Check the store: ring, records, patches against their hashes, mirror.
    Verify(VerifyArgs),
    /// Print the memory map as it was at a sample, as /proc/PID/maps prints it.
    Maps(MapsArgs),
    /// Play history in the terminal: file tree, diffs, map changes, timeline.
    Replay(ReplayArgs),
    /// Write the whole recording as one self-contained HTML page: timeline, charts, files, diffs.
    Report(ReportArgs),
    /// Print a shell completion script to stdout.
    Completions(CompletionsArgs),
}

/// `monitord ctl`.
#[derive(Debug, Args)]
#[command(after_long_help = CTL_HELP)]
pub struct CtlArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// How long to wait for the reply, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub timeout: u64,
    /// The command and its arguments (see COMMANDS below).
    #[arg(value_name = "COMMAND", required = true, num_args = 1.., trailing_var_arg = true,
          allow_hyphen_values = true)]
    pub command: Vec<String>,
}

const CTL_HELP: &str = "\
Commands:
  status         key: value lines (pid, cwd, backend, period_ms, samples, ring use, ...)
  sample         take a sample now
  diff           what changed since the last sample
  history K      the diffs of the last K samples, newest last
  period MS      set the sampling period
  pause, resume  stop and restart sampling
  pid PID        follow another process from now on
  stop           finish the current sample and exit
  help           list the commands

Exit status: 0 the reply; 1 an error reply; 3 no monitor answered in time.

Without ctl, any process may write a command line to <store>/ctl (for example
echo 'period 250' > <store>/ctl); its reply then goes to the monitor's log.";

/// `monitord dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// JSON Lines, one object per record.
    #[arg(long)]
    pub json: bool,
    /// Keep printing records as they are committed (like tail -f), from the
    /// newest on; a writer that wraps past the reader gives a gap line.
    #[arg(short, long)]
    pub follow: bool,
    /// With --follow: start at this sequence number instead of the newest.
    #[arg(long, value_name = "SEQ", requires = "follow")]
    pub from: Option<u64>,
    /// With --follow: exit 0 once the monitor writing the ring has stopped.
    #[arg(long, requires = "follow")]
    pub until_stop: bool,
    /// With --json: no output line is longer than BYTES, its newline
    /// included (at least 1024; K and M suffixes). A record whose line is
    /// longer is written as parts: objects with its seq, time, kind, epoch
    /// and pid and with part (from 1) and parts; part 1 holds its other
    /// fields and every list (files, skipped, maps...), and each part holds
    /// whole entries of the lists, which join back into the record. An entry too
    /// long for any line is replaced by a summary with "truncated": true,
    /// the length, line count and hash of the diffs it replaces. Without
    /// it, a record is one line, however long. See LOG PIPELINES in monitord(1).
    #[arg(long, value_name = "BYTES", requires = "json", value_parser = parse_max_line)]
    pub max_line: Option<usize>,
    /// The ring file.
    #[arg(value_name = "RING")]
    pub ring: PathBuf,
}

/// `monitord log`.
#[derive(Debug, Args)]
#[command(after_long_help = LOG_HELP)]
pub struct LogArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// JSON Lines: seq, time, kind, pid, files, lines_added, lines_removed,
    /// maps_added, maps_removed, rss_kib, changes; a run of samples that
    /// changed nothing is {"kind": "idle", "from", "to", "samples"}.
    #[arg(long)]
    pub json: bool,
    /// With --json: no output line is longer than BYTES, its newline
    /// included (at least 1024; K and M suffixes). A record whose line is
    /// longer is written as parts: objects with its seq, time, kind, epoch
    /// and pid and with part (from 1) and parts; part 1 holds its other
    /// fields and every list (files, skipped, maps...), and each part holds
    /// whole entries of the lists, which join back into the record. An entry too
    /// long for any line is replaced by a summary with "truncated": true,
    /// the length, line count and hash of the diffs it replaces. Without
    /// it, a record is one line, however long. See LOG PIPELINES in monitord(1).
    #[arg(long, value_name = "BYTES", requires = "json", value_parser = parse_max_line)]
    pub max_line: Option<usize>,
    /// Print each record's diffs under its line, like git log -p.
    #[arg(short = 'p', long = "patch")]
    pub patch: bool,
    /// List every sample, also each one that changed nothing.
    #[arg(long)]
    pub all: bool,
    /// Start at this point (a seq, a time, -10min, "10 min ago", @MARK; see POINTS).
    #[arg(long, value_name = "POINT", value_parser = parse_point, allow_hyphen_values = true)]
    pub since: Option<crate::point::Point>,
    /// End at this point.
    #[arg(long, value_name = "POINT", value_parser = parse_point, allow_hyphen_values = true)]
    pub until: Option<crate::point::Point>,
    /// Only changes that alter how many lines contain STRING (git's -S).
    /// In a line of 4 KiB or more changed in place, only the changed bytes
    /// and the 64 bytes each side of them are searched.
    #[arg(short = 'S', value_name = "STRING", conflicts_with = "regex")]
    pub pickaxe: Option<String>,
    /// Only changes that add or remove a line matching REGEX (git's -G),
    /// searched as -S searches a long line.
    #[arg(short = 'G', value_name = "REGEX", value_parser = parse_regex)]
    pub regex: Option<regex::bytes::Regex>,
    /// Only changes written by WHO: a PID, a command name, `target` (the
    /// followed process and its descendants) or `foreign` (anyone else).
    /// Needs a store recorded with --backend fanotify.
    #[arg(long, value_name = "WHO", value_parser = crate::query::Who::parse)]
    pub by: Option<crate::query::Who>,
    /// Only records that touch these paths (a directory: what is below it;
    /// a file is followed back across its renames).
    #[arg(last = true, value_name = "PATH")]
    pub paths: Vec<std::ffi::OsString>,
}

const LOG_HELP: &str = "\
Points (--since, --until, and wherever a point is taken):
  42, #42                         a sequence number
  2026-11-27T05:01:23.839012Z     a time as dump --json prints it (exact)
  '2026-11-27 05:01:23', 05:01    local time (a bare time is today)
  -10min, '10 min ago', 2h ago    relative to now
  yesterday, today, now           midnight yesterday, midnight today, now
  @NAME                           the record written by mark NAME

A time in --since keeps the records at or after it, in --until those at or
before it; a seq or a mark must name a record the ring holds.";

/// What `show` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShowWhat {
    /// One record.
    Point(crate::restore::At),
    /// The net change from the first point to the second.
    Range(crate::restore::At, crate::restore::At),
}

/// `POINT` or `A..B`, for clap.
fn parse_show_what(text: &str) -> Result<ShowWhat, String> {
    let at = |t: &str| crate::restore::At::parse_point(t).map_err(|e| e.to_string());
    match text.split_once("..") {
        Some((a, b)) => Ok(ShowWhat::Range(at(a)?, at(b)?)),
        None => Ok(ShowWhat::Point(at(text)?)),
    }
}

/// A point for `--at` of commands other than restore, for clap.
fn parse_at(text: &str) -> Result<crate::restore::At, String> {
    crate::restore::At::parse_point(text).map_err(|e| e.to_string())
}

/// A point, for clap.
fn parse_point(text: &str) -> Result<crate::point::Point, String> {
    crate::point::parse_now(text).map_err(|e| e.to_string())
}

/// A regex, for clap (its error quoted).
fn parse_regex(text: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::Regex::new(text).map_err(|e| e.to_string())
}

/// `monitord show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Show the patches that go back in time.
    #[arg(long)]
    pub reverse: bool,
    /// One JSON object: the record as `dump --json` prints it, or for A..B
    /// `{from, to, files}` with files as in a sample.
    #[arg(long)]
    pub json: bool,
    /// A point (a seq, a time, -10min, @MARK; see POINTS in `log --help`),
    /// or A..B for the net change from A to B (B..A goes back).
    #[arg(value_name = "POINT|A..B", value_parser = parse_show_what, allow_hyphen_values = true)]
    pub what: ShowWhat,
    /// Only the changes of these paths (a directory: what is below it).
    #[arg(last = true, value_name = "PATH")]
    pub paths: Vec<std::ffi::OsString>,
}

/// `monitord verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

/// `monitord replay`.
#[derive(Debug, Args)]
#[command(after_long_help = REPLAY_HELP)]
pub struct ReplayArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

const REPLAY_HELP: &str = "\
Keys:
  Left, Right    step one record back or forwards
  Home, End      the oldest or the newest record (End follows new records)
  Space          play forwards at the recorded pace; r plays backwards
  +, -           play faster or slower
  Up, Down       select a file; PageUp, PageDown scroll it
  Enter          the file's diff at this record, or its content as of then
  n, N           the next or previous record that changes the selected file
  g              go to a point: a seq, a time, -10min, @MARK (see log --help)
  /              find a file by name (an empty search finds the next match)
  q              quit

Marks are drawn as ◆ on the timeline.";

/// `monitord completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// Shells with completion scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash: source it, or put it in /usr/share/bash-completion/completions/monitord.
    Bash,
    /// zsh: put it as _monitord in a directory of $fpath.
    Zsh,
    /// fish: put it in ~/.config/fish/completions/monitord.fish.
    Fish,
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    use clap::CommandFactory;
    use clap_complete::{generate, shells};
    let mut command = Cli::command();
    let mut out = Vec::new();
    match shell {
        Shell::Bash => generate(shells::Bash, &mut command, "monitord", &mut out),
        Shell::Zsh => generate(shells::Zsh, &mut command, "monitord", &mut out),
        Shell::Fish => generate(shells::Fish, &mut command, "monitord", &mut out),
    }
    out
}

const RESTORE_HELP: &str = "\
Every entry is checked against the hash the journal recorded for it before
anything is written: a damaged mirror or ring is a one-line error naming what
is damaged, exit 1, and DEST is left empty.

An entry whose content at the point is not known (the target could not read
it when it last changed) is left out and named on stderr (with --json, in
left_out); the restore then exits 1, as the tree is incomplete.

Files get the mode the journal recorded for them. When a file's mode at the
point is not known (the baseline has left the ring and the store's modes
anchor is missing or stale), it is written with the umask's mode and named on
stderr (with --json, in modes_unknown), and the restore exits 1. A store
recorded before modes were has none, and restores as before.";

/// `monitord mark`.
#[derive(Debug, Args)]
pub struct MarkArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// How long to wait for the reply, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub timeout: u64,
    /// The name: one line of printable characters, at most 64 bytes.
    #[arg(value_name = "NAME", value_parser = parse_mark_name)]
    pub name: String,
}

/// `monitord undo`.
#[derive(Debug, Args)]
#[command(after_long_help = UNDO_HELP)]
pub struct UndoArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print the diff the undo would apply (as JSON with --json) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the changes as one JSON object {from, to, files, conflicts}.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
    /// Write even over files that changed since B (each one is named).
    #[arg(long)]
    pub force: bool,
    /// Undo only the changes written by WHO: a PID, a command name, `target` or `foreign`
    /// (stores recorded with --backend fanotify).
    #[arg(long, value_name = "WHO", value_parser = crate::query::Who::parse)]
    pub by: Option<crate::query::Who>,
    /// How long to wait for a running monitor to apply it, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub timeout: u64,
    /// A (the point the tree goes back to) or A..B (B: where it goes back
    /// from, default the newest record); points as in `log --help`.
    #[arg(value_name = "A[..B]", value_parser = parse_show_what, allow_hyphen_values = true)]
    pub what: ShowWhat,
    /// Only these paths (a directory: what is below it).
    #[arg(last = true, value_name = "PATH")]
    pub paths: Vec<std::ffi::OsString>,
}

const UNDO_HELP: &str = "\
Every file the undo would change is checked first: one whose live content
or mode differs from what was recorded at B is a conflict, and with any
conflict nothing is written (exit 1, each conflict named on stderr). A
file already as it was at A is left alone, so running an interrupted undo
again finishes it. Each file is written to a temporary beside it and
renamed over its path, with its recorded mode and its owner, never through
a symlink and never outside the watched directory.

When a monitor runs on the store, it applies the undo between two samples
and records it as one `undo` record; without one, the next monitor's
baseline shows it.

Examples:
  monitord -i -- make install && monitord undo 1
  monitord undo --dry-run @before-deploy
  monitord undo --by foreign '10 min ago' -- src";

/// `monitord report`.
#[derive(Debug, Args)]
#[command(after_long_help = REPORT_HELP)]
pub struct ReportArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Start at this point (a seq, a time, -10min, "10 min ago", @MARK; see log --help).
    #[arg(long, value_name = "POINT", value_parser = parse_point, allow_hyphen_values = true)]
    pub since: Option<crate::point::Point>,
    /// End at this point.
    #[arg(long, value_name = "POINT", value_parser = parse_point, allow_hyphen_values = true)]
    pub until: Option<crate::point::Point>,
    /// Where to write the page; - for stdout [default: <store>/report.html].
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

const REPORT_HELP: &str = "\
The page needs no network: styles, script and charts are inline, so it
opens from a file:// address in any browser. It shows the run's timeline
(changes per sample, PID, cwd, exit, rescans, gaps, marks), charts of CPU,
RSS, threads, open fds and mappings, the table of files, each file's
history with its diffs, and the map changes. For a large ring the charts
keep each pixel's minimum and maximum, and the diffs of the newest changes
are embedded up to a budget; the page says which were left out and how
monitord show prints them.

Exit status: 0 written; 1 an error, or a damaged ring (what is readable is
still written, and the damage is named on stderr).";

/// A mark name, for clap.
fn parse_mark_name(text: &str) -> Result<String, String> {
    match crate::journal::record::valid_mark_name(text) {
        Some(why) => Err(why.to_string()),
        None => Ok(text.to_string()),
    }
}

/// `monitord blame`.
#[derive(Debug, Args)]
#[command(after_long_help = BLAME_HELP)]
pub struct BlameArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// The point to blame the file as of (default: the newest record; see POINTS in `log --help`).
    #[arg(long, value_name = "POINT", value_parser = parse_at, allow_hyphen_values = true)]
    pub at: Option<crate::restore::At>,
    /// JSON: {path, at, lines: [{line, text, seq, time, writers, boundary}]}.
    #[arg(long)]
    pub json: bool,
    /// The file, relative to the tree.
    #[arg(value_name = "PATH")]
    pub path: std::ffi::OsString,
}

const BLAME_HELP: &str = "\
Each line as of the point, with the seq and time of the record that last
changed it and who wrote it (PIDs, with --backend fanotify; - otherwise), in
the shape of git blame. A line older than every record kept for the file's
epoch carries the oldest such record, marked ^ (a boundary, as git marks
one). The file is followed back across its renames.";

/// `monitord restore`.
#[derive(Debug, Args)]
#[command(after_long_help = RESTORE_HELP)]
pub struct RestoreArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// A sequence number (from 1, or #N), or a time (RFC 3339, local
    /// "YYYY-MM-DD HH:MM:SS" or HH:MM, -10min, "10 min ago", yesterday, now):
    /// the newest record at or before it; a time after the newest record
    /// restores that record and says so on stderr.
    #[arg(long, value_name = "SEQ|TIME", allow_hyphen_values = true)]
    pub at: String,
    /// Print just this file (path relative to the tree, any bytes) to stdout
    /// instead of writing a tree; a symlink prints its target and a newline,
    /// as readlink does.
    #[arg(long, value_name = "FILE", conflicts_with = "dest")]
    pub path: Option<PathBuf>,
    /// Directory to create (must not exist, or be empty).
    #[arg(value_name = "DEST", required_unless_present = "path")]
    pub dest: Option<PathBuf>,
    /// Print a JSON summary on stdout: seq, dest, entries, left_out
    /// (entries whose content at the point is not known: path, reason,
    /// errno, since) and modes_unknown (files whose mode is not known).
    #[arg(long, conflicts_with = "path")]
    pub json: bool,
}

/// `monitord maps`.
#[derive(Debug, Args)]
pub struct MapsArgs {
    /// The store [default: the most recently written store in the default location].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// The sequence number of a record still in the ring.
    #[arg(long, value_name = "SEQ")]
    pub at: u64,
}

/// `--max-line`, for clap: a size of at least [`crate::render::split::MIN_LINE`].
fn parse_max_line(text: &str) -> Result<usize, String> {
    let min = crate::render::split::MIN_LINE;
    let bytes = parse_size(text)?;
    match usize::try_from(bytes) {
        Ok(bytes) if bytes >= min => Ok(bytes),
        Ok(_) => Err(format!("{bytes} bytes cannot hold a part's fixed fields (the least is {min})")),
        Err(_) => Err(format!("{text:?} is too large")),
    }
}

/// Parse a size such as `4096`, `64K`, `64M`, `1G` (powers of 1024).
///
/// # Errors
/// A message for clap when the text is not a size or overflows.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?} is not a size (use a number with K, M or G)")),
    };
    let n: u64 =
        digits.parse().map_err(|_| format!("{text:?} is not a size (use a number with K, M or G)"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))
}

/// Hand-written man page sections (backends, control protocol, daemon mode,
/// signals, files, exit status), placed between the subcommands and the examples.
const MAN_SECTIONS: &str = include_str!("../man/extra.roff");

/// The replay keys for the man page, from the same text as `replay --help`.
fn replay_keys_section() -> String {
    let mut section = String::from(".SH \"REPLAY KEYS\"\n.nf\n");
    for line in REPLAY_HELP.lines().skip(1) {
        section.push_str(&line.replace('\\', "\\\\").replace('-', "\\-"));
        section.push('\n');
    }
    section.push_str(".fi\n");
    section
}

/// The man page, rendered from the definitions above plus the hand-written
/// sections (`man/monitord.1`).
pub fn render_man() -> Vec<u8> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(Cli::command());
    // Writing into a Vec cannot fail.
    let _ = (|| -> std::io::Result<()> {
        man.render_title(&mut out)?;
        man.render_name_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        man.render_options_section(&mut out)?;
        man.render_subcommands_section(&mut out)?;
        out.extend_from_slice(replay_keys_section().as_bytes());
        out.extend_from_slice(MAN_SECTIONS.as_bytes());
        man.render_extra_section(&mut out)?;
        man.render_version_section(&mut out)
    })();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
