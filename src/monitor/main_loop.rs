//! The monitor's main loop, on the main thread: a tick every period, and
//! between ticks the messages of the other threads (control lines,
//! signals, the target's exit, faults). It owns the sampler, so it is the
//! only caller of the ring and the mirror; it sends no fd anywhere.

use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Error, Monitor, Msg, Origin, Output};
use crate::control::wire::Reply;
use crate::journal;
use crate::render::human;

/// Longest part of a control line written to the output with its reply,
/// in bytes.
const SHOWN_LINE: usize = 80;

/// The longest wait between periodic tries of a record too large for the
/// ring.
const MAX_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Monitor {
    /// Sample now and show what was committed.
    pub(super) fn sample(&mut self) -> Result<u64, crate::sampler::Error> {
        let had_target = self.sampler.pid();
        let sampled = self.sampler.sample();
        self.report_faults();
        let committed = match sampled {
            Ok(committed) => committed,
            Err(e) if e.is_transient() => {
                self.stall(&e);
                self.retry_after = e.is_oversize().then(|| {
                    let wait = self.retry_after.map_or(self.period, |(_, wait)| wait * 2).min(MAX_RETRY_WAIT);
                    (Instant::now() + wait, wait)
                });
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        self.retry_after = None;
        if self.stalled.take().is_some() {
            self.note("recording resumed: nothing pending was lost");
        }
        self.show(&committed);
        if let Some(had_target) = had_target {
            if self.sampler.pid().is_none() {
                self.exit_watch = None;
                if self.child.is_none() {
                    self.note(&format!("pid {had_target} exited; waiting for a `pid` command"));
                }
            } else if committed.iter().any(|c| c.record.kind() == journal::record::Kind::Cwd) {
                self.note(&format!("pid {had_target} changed directory; baselined the new one"));
            }
        }
        Ok(committed.iter().map(|c| c.seq).max().unwrap_or(0))
    }

    pub(super) fn run_loop(
        &mut self,
        messages: &Receiver<Msg>,
        stop_client: &mut Option<(Sender<Reply>, Reply)>,
    ) -> Result<(), Error> {
        let mut next_tick = Instant::now() + self.period;
        loop {
            // A command of ours has ended and its exit is recorded (a tick
            // may notice it before the pidfd does).
            if self.child.is_some() && self.sampler.pid().is_none() {
                break;
            }
            // A due tick goes first: `recv_timeout` hands out queued
            // messages before it times out, so a steady stream of commands
            // or signals would otherwise hold the tick back until periods
            // are lost.
            let now = Instant::now();
            let next = if now >= next_tick {
                Err(RecvTimeoutError::Timeout)
            } else {
                messages.recv_timeout(next_tick - now)
            };
            match next {
                Ok(Msg::Line(line, origin)) => {
                    let (reply, stop) = self.handle_line(&line, &mut next_tick)?;
                    if stop && let Origin::Client(tx) = origin {
                        *stop_client = Some((tx, reply));
                        break;
                    }
                    self.deliver(&line, origin, reply);
                    if stop {
                        break;
                    }
                }
                Ok(Msg::Signal(signo)) => {
                    if signo == libc::SIGINT || signo == libc::SIGTERM {
                        match self.child {
                            // The command gets the signal; we stop when it ends.
                            Some(child) if self.sampler.pid() == Some(child) => {
                                // SAFETY: kill(2) on our own child, not yet reaped.
                                unsafe { libc::kill(child, signo) };
                            }
                            _ => break,
                        }
                        continue;
                    }
                    self.on_signal(signo)?;
                }
                Ok(Msg::Exited(pid)) => {
                    if self.sampler.pid() == Some(pid) {
                        self.sample()?;
                    }
                }
                Ok(Msg::Fault(fault)) => self.fault(&fault),
                Err(RecvTimeoutError::Timeout) => {
                    let backing_off = self.retry_after.is_some_and(|(at, _)| Instant::now() < at);
                    if !self.paused && !backing_off {
                        let before = self.sampler.counters().samples;
                        self.sample()?;
                        self.period_samples += self.sampler.counters().samples.saturating_sub(before);
                    }
                    next_tick += self.period;
                    let now = Instant::now();
                    if next_tick < now {
                        // Fell behind (a slow sample): skip, don't burst.
                        let behind = (now - next_tick).as_nanos() / self.period.as_nanos().max(1);
                        self.missed_periods += u64::try_from(behind).unwrap_or(u64::MAX).saturating_add(1);
                        next_tick = now + self.period;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if !self.paused {
            self.sample()?;
        }
        self.sampler.flush()?;
        match self.stalled.take() {
            Some(reason) => Err(Error::Stalled(reason)),
            None => Ok(()),
        }
    }

    fn deliver(&mut self, line: &[u8], origin: Origin, reply: Reply) {
        match origin {
            Origin::Client(tx) => {
                let _ = tx.send(reply);
            }
            Origin::Stdin => self.note(&reply.text),
            Origin::Fifo => {
                if !reply.text.is_empty() {
                    // Enough of a bad line to recognise it, not all of it.
                    let mut command = human::sanitize(&line[..line.len().min(SHOWN_LINE)]);
                    if line.len() > SHOWN_LINE {
                        command.push_str("...");
                    }
                    self.note(&format!("ctl: {command}\n{}", reply.text));
                }
            }
        }
    }

    fn on_signal(&mut self, signo: i32) -> Result<(), crate::sampler::Error> {
        match signo {
            libc::SIGUSR2 => {
                self.sample()?;
            }
            libc::SIGUSR1 => {
                let status = self.status();
                self.note(&status);
            }
            libc::SIGHUP => {
                if let Output::Log(log) = &mut self.output {
                    match log.reopen() {
                        Ok(()) => log.write("log reopened (SIGHUP)"),
                        Err(e) => log.write(&format!("cannot reopen {}: {e}", log.path().display())),
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
