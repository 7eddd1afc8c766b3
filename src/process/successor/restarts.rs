//! How this process answers SIGUSR2 (`rodent restart`): whether it may be replaced at all, the
//! successor it starts, and the outcome it records beside the PID file for the command. The
//! service's run loop decides when ([`run`'s `restart`](crate::run)); this decides what.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::unistd::{Pid, getpid, getppid};

use super::Starting;
use super::outcome::{self, Recorded};
use crate::exit::Exit;
use crate::process::daemon::Outcome;

const TARGET: &str = "rodent::lifecycle";

/// How this process answers SIGUSR2.
pub(crate) struct Restarts {
    /// Where the outcome is recorded for the `restart` command: beside this PID file.
    pid_file: Option<PathBuf>,
    /// The PID the PID file names, which the command signalled: this process's, or its
    /// supervisor's.
    pid: Pid,
    /// Why this process cannot be replaced this way, when it cannot.
    refused: Option<String>,
}

impl Restarts {
    fn new(pid_file: Option<PathBuf>, pid: Pid) -> Self {
        Self {
            pid_file,
            pid,
            refused: None,
        }
    }

    /// How this process answers SIGUSR2. A restart is refused where a successor could not take
    /// this process's place:
    /// - under the PID 1 supervisor (`supervised`), which holds the PID file and the socket and
    ///   would be left supervising nothing;
    /// - as PID 1 without the supervisor (`RODENT_INIT=never`): when PID 1 exits, the kernel
    ///   kills every other process of its namespace, the successor included, and the container
    ///   ends (`serve --detach` refuses PID 1 for the same reason);
    /// - under systemd, which tracks the main PID and would take this process's exit for the
    ///   service's.
    pub(crate) fn of_this_process(
        pid_file: Option<PathBuf>,
        supervised: bool,
        under_systemd: bool,
    ) -> Self {
        if supervised {
            // The PID file names the supervisor, whom `rodent restart` signalled.
            return Self::new(pid_file, getppid()).refused(
                "restart is not available under the PID 1 supervisor (RODENT_INIT=always, or PID \
                 1): restart the container or the supervisor instead",
            );
        }
        let restarts = Self::new(pid_file, getpid());
        if getpid() == Pid::from_raw(1) {
            return restarts.refused(
                "restart is not available as PID 1 without the supervisor (RODENT_INIT=never): \
                 the new instance would be killed with the old one when it exits; restart the \
                 container instead",
            );
        }
        if under_systemd {
            return restarts.refused(
                "restart is not available under systemd (NOTIFY_SOCKET is set), which would take \
                 this process's exit for the service's: use systemctl restart, with a socket unit",
            );
        }
        restarts
    }

    /// Every restart is refused, for this reason (recorded for the command like a failure).
    fn refused(mut self, reason: impl Into<String>) -> Self {
        self.refused = Some(reason.into());
        self
    }

    /// A restart that does not happen, for `reason`: logged, and recorded for the command.
    pub(crate) fn refuse(&self, reason: String) {
        self.failed(Exit::Failure.code(), reason);
    }

    /// Starts a successor on `listener` (and `management`, the management port's), unless
    /// restarts are refused or it cannot start.
    pub(crate) fn begin(
        &self,
        listener: &impl AsRawFd,
        management: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Option<Starting> {
        if let Some(reason) = &self.refused {
            self.refuse(reason.clone());
            return None;
        }
        tracing::info!(target: TARGET, signal = "SIGUSR2", "restarting: starting a new instance on the listening socket");
        match Starting::spawn(listener, management) {
            Ok(starting) => {
                tracing::info!(target: TARGET, successor_pid = starting.pid().as_raw(), "new instance started; waiting for it to be ready");
                Some(starting)
            }
            Err(e) => {
                self.refuse(format!("cannot start the new instance: {e}"));
                None
            }
        }
    }

    /// The successor's PID when it is ready and has taken over; otherwise the failure is
    /// logged and recorded.
    pub(crate) fn done(&self, outcome: Outcome) -> Option<Pid> {
        match outcome {
            Outcome::Ready { pid, address } => {
                self.record(&Recorded::Ready {
                    old: self.pid,
                    new: pid,
                    address,
                });
                Some(pid)
            }
            Outcome::Failed { code, message } => {
                self.failed(code, message);
                None
            }
            Outcome::Vanished => {
                self.refuse("the new instance exited before it was ready".to_string());
                None
            }
        }
    }

    fn failed(&self, code: u8, message: String) {
        tracing::error!(target: TARGET, exit_code = code, cause = %message, "restart failed");
        self.record(&Recorded::Failed {
            old: self.pid,
            code,
            message,
        });
    }

    fn record(&self, outcome: &Recorded) {
        if let Some(path) = &self.pid_file
            && let Err(e) = outcome::record(path, outcome)
        {
            tracing::warn!(target: TARGET, error = %e, "cannot record the restart's outcome for `rodent restart`");
        }
    }
}
