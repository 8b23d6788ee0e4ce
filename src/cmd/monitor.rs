//! `monitord [-i|-d] PID`: follow a process, in the foreground or as a
//! daemon.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::MonitorArgs;
use crate::daemon::{self, Detached};
use crate::journal::Ring;
use crate::log::Log;
use crate::monitor::{self, Monitor, Msg, Output};
use crate::proc::Target;
use crate::sampler::{Sampler, Settings};
use crate::store::{self, PidFile};
use crate::tree::Excludes;
use crate::{control, notify, signals};

/// Follow the process until `stop` or a signal: in the foreground, or
/// detached with `-d` (the launcher returns once the daemon is up).
///
/// # Errors
/// A one-line reason when the target, the store or the ring cannot be used.
pub fn run(args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    let Some(pid) = args.pid else { bail!("no PID given") };
    let excludes = Excludes::new(&args.exclude)?;
    // Resolve the store before a daemon changes directory to `/`.
    let store_dir = match &args.store {
        Some(dir) => {
            std::path::absolute(dir).with_context(|| format!("cannot resolve store {}", dir.display()))?
        }
        None => store::default_for_pid(pid)?,
    };
    if !args.daemon {
        let running = start(args, pid, excludes, &store_dir, false)?;
        notify::notify("READY=1");
        return finish(running);
    }
    let ready = match daemon::detach()? {
        Detached::Launcher => return Ok(ExitCode::SUCCESS),
        Detached::Daemon(ready) => ready,
    };
    let running = match start(args, pid, excludes, &store_dir, true) {
        Ok(running) => running,
        Err(e) => {
            ready.fail(&format!("{e:#}"));
            return Ok(ExitCode::from(super::exit::FAILED));
        }
    };
    ready.ok();
    finish(running)
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
    stopped.answer();
    Ok(ExitCode::SUCCESS)
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
    excludes: Excludes,
    store_dir: &Path,
    daemon: bool,
) -> anyhow::Result<Running> {
    let target = Target::open(pid)?;
    store::create(store_dir)?;
    let store_dir: PathBuf =
        store_dir.canonicalize().with_context(|| format!("cannot resolve store {}", store_dir.display()))?;
    let pid_file = PidFile::acquire(&store_dir)?;
    let ring = Ring::open_or_create(&store_dir.join(store::RING_FILE), args.ring_size)?;
    let ctl = control::fifo::open_or_create(&store_dir.join(store::CTL_FILE))?;
    let output = if daemon {
        let path = store_dir.join(store::LOG_FILE);
        Output::Log(Log::open(&path).with_context(|| format!("cannot open log {}", path.display()))?)
    } else {
        Output::Terminal { color: std::io::stdout().is_terminal() }
    };
    // Block the handled signals before any thread exists.
    let signal_fd = signals::block_and_open().context("cannot set up signal handling")?;
    let settings = Settings {
        store: store_dir.clone(),
        max_file_size: args.max_file_size,
        excludes,
        diff_deadline: Duration::from_millis(100),
        queue_capacity: usize::try_from(args.queue_capacity).unwrap_or(65_536),
        backend: args.backend.into(),
    };
    let (sampler, baseline) = Sampler::start(settings, ring, target)?;
    let (tx, rx) = monitor::channel();
    let period = Duration::from_millis(args.period_ms);
    let mut monitor =
        Monitor::new(sampler, period, output, args.backend.name(), store_dir.clone(), tx.clone());
    if daemon {
        monitor.note(&format!(
            "monitord {} started: pid {pid}, store {}, period {} ms",
            env!("CARGO_PKG_VERSION"),
            store_dir.display(),
            args.period_ms
        ));
    }
    monitor.show(&baseline);
    monitor::spawn_signals(signal_fd, tx.clone());
    monitor::spawn_fifo(ctl, tx.clone(), monitor.listener_busy());
    if !daemon {
        monitor::spawn_stdin(tx);
    }
    Ok(Running { monitor, messages: rx, pid_file })
}
