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
