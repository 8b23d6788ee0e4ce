//! `monitord [-i] PID`: follow a process in the foreground.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{Backend, MonitorArgs, What};
use crate::journal::Ring;
use crate::monitor::{self, Monitor, Output};
use crate::proc::Target;
use crate::proc::probe::Recording;
use crate::sampler::{Sampler, Settings};
use crate::tree::Excludes;
use crate::{signals, store};

/// Run the monitor in the foreground until `stop` or a signal.
///
/// # Errors
/// A one-line reason when the target, the store or the ring cannot be used.
pub fn run(args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    if args.daemon {
        bail!("daemon mode (-d) is not available in this version: run in the foreground with -i");
    }
    if args.backend != Backend::Inotify {
        bail!("the {:?} backend is not available in this version: use --backend inotify", args.backend);
    }
    let Some(pid) = args.pid else { bail!("no PID given") };
    let record = Recording {
        files: args.record.contains(&What::Files),
        maps: args.record.contains(&What::Maps),
        stats: args.record.contains(&What::Stats),
    };
    // Without `files`, every entry is excluded: the tree is neither walked
    // nor copied, and only the root directory is watched.
    let excludes = if record.files { Excludes::new(&args.exclude)? } else { Excludes::new(&["*"])? };
    let target = Target::open(pid)?;
    let root = target.open_cwd()?;
    let cwd = target.cwd_path()?;
    let store_dir = match &args.store {
        Some(dir) => dir.clone(),
        None => store::default_for_pid(pid)?,
    };
    store::create(&store_dir)?;
    let store_dir =
        store_dir.canonicalize().with_context(|| format!("cannot resolve store {}", store_dir.display()))?;
    let ring = Ring::open_or_create(&store_dir.join(store::RING_FILE), args.ring_size)?;

    // Block the handled signals before any thread exists.
    let signal_fd = signals::block_and_open().context("cannot set up signal handling")?;
    let settings = Settings {
        store: store_dir.clone(),
        max_file_size: args.max_file_size,
        excludes,
        diff_deadline: Duration::from_millis(100),
        queue_capacity: usize::try_from(args.queue_capacity).unwrap_or(65_536),
        record,
    };
    let (sampler, baseline) = Sampler::start(settings, ring, target, root, cwd)?;
    let output = Output { color: std::io::stdout().is_terminal() };
    let mut monitor =
        Monitor::new(sampler, Duration::from_millis(args.period_ms), output, "inotify", store_dir);
    monitor.print(&baseline);
    let (tx, rx) = monitor::channel();
    monitor::spawn_signals(signal_fd, tx.clone());
    monitor::spawn_stdin(tx);
    monitor.run(&rx)?;
    Ok(ExitCode::SUCCESS)
}
