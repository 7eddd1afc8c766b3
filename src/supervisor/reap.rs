//! The supervisor's loop, once the service runs: reap, forward, and leave with the service.

use std::fs::File;
use std::io::Write;

use nix::errno::Errno;
use nix::sys::signal::{Signal as Sig, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{TARGET, forwarded};
use crate::daemon::Report;
use crate::exit::Exit;
use crate::pidfile::PidFileLock;

/// The supervisor once the service runs.
pub(super) struct Running {
    service: Pid,
    /// Where reaped-orphan totals go (the service's `/metrics`).
    counts: File,
    reaped: u64,
    /// Held until the supervisor exits, then removed.
    _pid_file: Option<PidFileLock>,
    /// A daemon's report pipe, which the service writes to. Our copy stays open until the PID
    /// file is removed (fields drop in order), so a launcher waiting for the end of file after
    /// a failure returns only once nothing is left.
    _report: Option<Report>,
}

impl Running {
    pub(super) fn new(
        service: Pid,
        counts: File,
        pid_file: Option<PidFileLock>,
        report: Option<Report>,
    ) -> Self {
        Self {
            service,
            counts,
            reaped: 0,
            _pid_file: pid_file,
            _report: report,
        }
    }

    /// The loop. Returns the exit code once the service is gone.
    pub(super) fn supervise(&mut self) -> u8 {
        let mut waited = forwarded();
        waited.add(Sig::SIGCHLD);
        loop {
            let signal = match waited.wait() {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::warn!(target: TARGET, error = %e, "sigwait failed");
                    continue;
                }
            };
            if signal != Sig::SIGCHLD {
                self.forward(signal);
                continue;
            }
            if let Some(code) = self.reap() {
                tracing::info!(
                    target: TARGET,
                    exit_code = code,
                    zombies_reaped = self.reaped,
                    "supervisor exiting"
                );
                return code;
            }
        }
    }

    fn forward(&self, signal: Sig) {
        tracing::debug!(target: TARGET, signal = signal.as_str(), "forwarding signal to the service");
        if let Err(e) = kill(self.service, signal) {
            // ESRCH: the service is exiting; its SIGCHLD is on the way.
            tracing::warn!(target: TARGET, signal = signal.as_str(), error = %e, "cannot forward signal");
        }
    }

    /// Reaps every child that has exited (one SIGCHLD may stand for many), in the manner of
    /// catatonit's `reap_zombies`. Returns the exit code once the service is among them.
    fn reap(&mut self) -> Option<u8> {
        let before = self.reaped;
        let mut service_exit = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.service => {
                    tracing::info!(target: TARGET, exit_code = code, "service exited");
                    service_exit = Some(u8::try_from(code).unwrap_or(u8::MAX));
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == self.service => {
                    let code = Exit::Signal(signal as i32).code();
                    tracing::warn!(target: TARGET, signal = signal.as_str(), exit_code = code, "service killed by a signal");
                    service_exit = Some(code);
                }
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => self.reaped += 1,
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!(target: TARGET, error = %e, "waitpid failed");
                    break;
                }
            }
        }
        if self.reaped != before {
            tracing::debug!(target: TARGET, reaped = self.reaped - before, total = self.reaped, "reaped orphans");
            // Eight bytes are written whole or not at all (less than PIPE_BUF); a full pipe or
            // a service that is gone only loses this update.
            let _ = self.counts.write(&self.reaped.to_le_bytes());
        }
        service_exit
    }
}
