//! Exit codes: what the process tells its supervisor (Docker, Kubernetes, systemd, a shell)
//! about how it ended.

use std::process::ExitCode;

/// How a rodent process ended. Each variant has one documented code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// Drained and stopped cleanly: 0.
    Clean,
    /// A runtime failure (port in use, permission denied, a failed startup or shutdown hook): 1.
    Failure,
    /// The command line was wrong: 2 (as clap reports it).
    Usage,
    /// Another instance holds the PID file: 75 (`EX_TEMPFAIL`, try again once it stops).
    AlreadyRunning,
    /// The configuration was refused: 78 (`EX_CONFIG`).
    Config,
    /// The shutdown deadline was reached and connections were aborted: 124 (as `timeout(1)`).
    DeadlineReached,
    /// A second SIGTERM/SIGINT cut the drain short: 123 (next to the deadline code: neither
    /// finished draining; 125-127 are left to the container runtime).
    Forced,
    /// Killed by a signal: 128 + its number, as shells and container runtimes report it.
    Signal(i32),
}

impl Exit {
    /// The process's exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::AlreadyRunning => 75,
            Self::Config => 78,
            Self::DeadlineReached => 124,
            Self::Forced => 123,
            Self::Signal(n) => u8::try_from(128 + n).unwrap_or(255),
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// How long a crash waits for its last log lines to reach stdout: long enough for a pipe that
/// is read, short enough to stay "at once" when stdout is stuck.
const CRASH_LOG_WITHIN: std::time::Duration = std::time::Duration::from_millis(100);

/// Ends the process at once with exit 1, from anywhere in the service: for testing what a
/// platform does with a workload that dies (restart policies, `CrashLoopBackOff`, alerts). Get
/// one from [`Rodent::crash_handle`](crate::Rodent::crash_handle).
///
/// A crash skips everything a stop does: no drain, no shutdown hooks, no trace flush, requests
/// in flight are cut, and the PID file stays behind (the next start takes it over, as after any
/// crash). Only the log is flushed, for at most 100 ms, so that the reason is its last line.
#[derive(Clone)]
pub struct Crash {
    pub(crate) log: Option<crate::observe::logging::LogHandle>,
}

impl std::fmt::Debug for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crash").finish_non_exhaustive()
    }
}

impl Crash {
    /// Logs `reason` at error, flushes the log, and exits 1.
    pub fn now(&self, reason: &str) -> ! {
        tracing::error!(target: "rodent::lifecycle", reason, exit_code = 1, "crashing on purpose: exit 1 now, without the drain");
        if let Some(log) = &self.log {
            log.close_within(CRASH_LOG_WITHIN);
        }
        std::process::exit(i32::from(Exit::Failure.code()))
    }
}
