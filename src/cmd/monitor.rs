//! `monitord [-i|-d] PID`: follow a process, in the foreground or as a
//! daemon.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{MonitorArgs, What};
use crate::daemon::{self, Detached};
use crate::exclude::{self, Matcher};
use crate::journal::Ring;
use crate::launch::Launched;
use crate::log::Log;
use crate::monitor::{self, Monitor, Msg, Output};
use crate::proc::Target;
use crate::proc::probe::Recording;
use crate::sampler::{Sampler, Settings};
use crate::store::{self, PidFile};
use crate::{control, notify, signals};

/// Follow the process until `stop` or a signal: in the foreground, or
/// detached with `-d` (the launcher returns once the daemon is up).
///
/// # Errors
/// A one-line reason when the target, the store or the ring cannot be used.
pub fn run(args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    if args.pid.is_none() && args.command.is_empty() {
        bail!("no PID given, and no command after --");
    }
    if args.only_target && args.backend != crate::cli::Backend::Fanotify {
        bail!("--only-target needs --backend fanotify, the only backend that knows who wrote");
    }
    let record = Recording {
        files: args.record.contains(&What::Files),
        maps: args.record.contains(&What::Maps),
        stats: args.record.contains(&What::Stats),
    };
    // Without `files`, every entry is excluded: the tree is neither walked
    // nor copied, and only the root directory is watched.
    let excludes = if record.files {
        match Matcher::new(&args.exclude, args.exclude_from.as_deref(), args.gitignore) {
            Ok(matcher) => matcher,
            // The file named on the command line is unusable: a usage
            // error, found before anything is created.
            Err(e @ (exclude::Error::Read { .. } | exclude::Error::Pattern { .. })) => {
                crate::log::to_stderr(crate::log::Level::Error, &format!("monitord: {e}"));
                return Ok(ExitCode::from(super::exit::USAGE));
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        Matcher::new(&["*"], None, false)?
    };
    // Resolve paths before a daemon changes directory to `/`.
    let store_arg = match &args.store {
        Some(dir) => Some(
            std::path::absolute(dir).with_context(|| format!("cannot resolve store {}", dir.display()))?,
        ),
        None => None,
    };
    let here = std::env::current_dir().context("cannot read the current directory")?;
    let what = (excludes, record);
    // A command runs with the user's environment, not the daemon's
    // sanitised one: take it before detaching.
    let user_env: Vec<_> = std::env::vars_os().collect();
    if !args.daemon {
        let (pid, launched) = target_pid(args, None, &user_env)?;
        let running = start(args, pid, what, store_arg, false, launched)?;
        notify::notify("READY=1");
        return finish(running);
    }
    let ready = match daemon::detach()? {
        Detached::Launcher => return Ok(ExitCode::SUCCESS),
        Detached::Daemon(ready) => ready,
    };
    let started = target_pid(args, Some(&here), &user_env)
        .and_then(|(pid, launched)| start(args, pid, what, store_arg, true, launched));
    let running = match started {
        Ok(running) => running,
        Err(e) => {
            ready.fail(&format!("{e:#}"));
            return Ok(ExitCode::from(super::exit::FAILED));
        }
    };
    ready.ok();
    finish(running)
}

/// The PID to follow: the one given, or a command forked now with the
/// environment `env` (held until the baseline is taken). A daemon forks it
/// in `here`, the directory monitord was started from.
fn target_pid(
    args: &MonitorArgs,
    here: Option<&Path>,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> anyhow::Result<(i32, Option<Launched>)> {
    if args.command.is_empty() {
        let Some(pid) = args.pid else { bail!("no PID given") };
        return Ok((pid, None));
    }
    if let Some(dir) = here {
        std::env::set_current_dir(dir).with_context(|| format!("cannot change to {}", dir.display()))?;
    }
    let launched = Launched::fork(&args.command, env);
    if here.is_some() {
        std::env::set_current_dir("/").context("cannot change to /")?;
    }
    let launched = launched?;
    Ok((launched.pid(), Some(launched)))
}

/// Run until stopped, release the store, then answer a `ctl stop`.
fn finish(running: Running) -> anyhow::Result<ExitCode> {
    let Running { monitor, messages, pid_file } = running;
    let stopped = monitor.run(&messages);
    notify::notify("STOPPING=1");
    pid_file.release();
    let mut stopped = stopped?;
    if matches!(stopped.output, crate::monitor::Output::Log(_)) {
        stopped.output.note("stopped");
    }
    let status = stopped.command_exit.as_ref().map_or(0, crate::launch::shell_status);
    stopped.answer();
    Ok(ExitCode::from(status))
}

/// A monitor set up and ready to run.
struct Running {
    monitor: Monitor,
    messages: crossbeam_channel::Receiver<Msg>,
    pid_file: PidFile,
}

/// Everything between the command line and the first tick: target, store,
/// pid file, ring, FIFO, log, signals, baseline and the helper threads.
fn start(
    args: &MonitorArgs,
    pid: i32,
    (excludes, record): (Matcher, Recording),
    store_arg: Option<PathBuf>,
    daemon: bool,
    launched: Option<Launched>,
) -> anyhow::Result<Running> {
    let target = Target::open(pid)?;
    let store_dir = match store_arg {
        Some(dir) => dir,
        None => store::default_for_pid(pid)?,
    };
    let store_dir = store_dir.as_path();
    store::create(store_dir)?;
    let store_dir: PathBuf =
        store_dir.canonicalize().with_context(|| format!("cannot resolve store {}", store_dir.display()))?;
    let pid_file = PidFile::acquire(&store_dir)?;
    match start_locked(args, target, (excludes, record), store_dir, daemon, launched) {
        Ok((monitor, messages)) => Ok(Running { monitor, messages, pid_file }),
        Err(e) => {
            // Nothing runs: leave no pid file behind.
            pid_file.release();
            Err(e)
        }
    }
}

/// [`start`] once the store's pid file is held.
fn start_locked(
    args: &MonitorArgs,
    target: Target,
    (excludes, record): (Matcher, Recording),
    store_dir: PathBuf,
    daemon: bool,
    launched: Option<Launched>,
) -> anyhow::Result<(Monitor, crossbeam_channel::Receiver<Msg>)> {
    let pid = target.pid();
    let ring = Ring::open_or_create(&store_dir.join(store::RING_FILE), args.ring_size)?;
    let ctl = control::fifo::open_or_create(&store_dir.join(store::CTL_FILE))?;
    let output = if daemon {
        let path = store_dir.join(store::LOG_FILE);
        Output::Log(Log::open(&path).with_context(|| format!("cannot open log {}", path.display()))?)
    } else {
        if launched.is_some() && args.quiet {
            Output::Quiet
        } else if launched.is_some() {
            // The command keeps stdout.
            Output::Terminal { color: std::io::stderr().is_terminal(), stderr: true }
        } else {
            Output::Terminal { color: std::io::stdout().is_terminal(), stderr: false }
        }
    };
    // Block the handled signals before any thread exists.
    let signal_fd = signals::block_and_open().context("cannot set up signal handling")?;
    let settings = Settings {
        store: store_dir.clone(),
        max_file_size: args.max_file_size,
        matcher: excludes,
        diff_deadline: Duration::from_millis(100),
        queue_capacity: usize::try_from(args.queue_capacity).unwrap_or(65_536),
        backend: args.backend,
        only_target: args.only_target,
        record,
    };
    let (sampler, baseline) = Sampler::start(settings, ring, target)?;
    let (tx, rx) = monitor::channel();
    let period = Duration::from_millis(args.period_ms);
    let mut monitor = Monitor::new(sampler, period, output, args.backend.name(), store_dir.clone(), tx);
    if daemon {
        monitor.note(&format!(
            "monitord {} started: pid {pid}, store {}, period {} ms",
            env!("CARGO_PKG_VERSION"),
            store_dir.display(),
            args.period_ms
        ));
    }
    monitor.show(&baseline);
    monitor.report_faults();
    // A command we start keeps stdin; so does a daemon's /dev/null.
    monitor.start_threads(signal_fd, ctl, launched.is_none() && !daemon);
    if let Some(launched) = launched {
        // The baseline is recorded: let the command run.
        monitor.set_child(launched.pid());
        let log = daemon.then(|| store_dir.join(store::COMMAND_LOG_FILE));
        launched.go(log.as_deref());
    }
    Ok((monitor, rx))
}
