//! The supervisor's loop, once the service runs: reap, forward, and leave with the service.

use std::fs::File;
use std::io::Write;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal as Sig, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{TARGET, waited};
use crate::exit::Exit;
use crate::process::daemon::Report;
use crate::process::pidfile::PidFileLock;

/// The supervisor once the service runs.
pub(super) struct Running {
    service: Pid,
    /// Where reaped-orphan totals go (the service's `/metrics`).
    counts: File,
    reaped: u64,
    /// The last total did not fit in the pipe (the service is not reading it just now): it is
    /// sent again until it does, since no later reap may come to carry it.
    unsent: bool,
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
            unsent: false,
            _pid_file: pid_file,
            _report: report,
        }
    }

    /// The loop. Returns the exit code once the service is gone.
    pub(super) fn supervise(&mut self) -> u8 {
        let waited = waited();
        loop {
            let waiting = if self.unsent {
                wait_at_most(&waited, RESEND_EVERY)
            } else {
                waited.wait().map(Some)
            };
            let signal = match waiting {
                Ok(Some(signal)) => signal,
                Ok(None) => {
                    self.send_total();
                    continue;
                }
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
            self.send_total();
        }
        service_exit
    }

    /// Tells the service the total so far. Eight bytes are written whole or not at all (less
    /// than PIPE_BUF); the pipe is non-blocking, so a service that does not read it cannot
    /// stall the reaping, and a total that does not fit is sent again later.
    fn send_total(&mut self) {
        self.unsent = match self.counts.write(&self.reaped.to_le_bytes()) {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            // The service is gone (EPIPE): nobody is left to tell.
            Err(_) => false,
        };
    }
}

/// How often an unsent total is tried again.
const RESEND_EVERY: Duration = Duration::from_millis(100);

/// `sigwait` with a time limit: `None` when none of `signals` came within `timeout`.
fn wait_at_most(signals: &SigSet, timeout: Duration) -> nix::Result<Option<Sig>> {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: both pointers are valid for the call; the info argument may be null.
    let signal = unsafe { libc::sigtimedwait(signals.as_ref(), std::ptr::null_mut(), &timeout) };
    match Errno::result(signal) {
        Ok(signal) => Sig::try_from(signal).map(Some),
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}
