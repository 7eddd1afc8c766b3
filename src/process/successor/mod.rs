//! `rodent restart` as the processes see it: the instance being replaced starts its successor
//! on its own listening socket and learns how the start went; the successor knows whom it
//! replaces; the outcome is left beside the PID file for the `restart` command ([`outcome`]);
//! [`Restarts`] is how an instance answers SIGUSR2.
//!
//! The successor is this program again ([`reexec`]), from the path it was started from (so a
//! binary upgraded in place is the one that starts), with the same arguments and environment (so
//! `RODENT_ENV_FILE` is read afresh), the listening socket handed down
//! ([`activation::hand_down`]) and a report pipe like a daemon's ([`Report`]): one line,
//! `ready <pid> <address>` or `failed <code> <message>`, or end of file if it died first.
//!
//! The PID file changes hands without a moment in which nobody holds it: the successor locks a
//! new file beside it at start, and once ready renames it over the PID file in one step
//! ([`PidFileLock::take_over`](super::pidfile::PidFileLock::take_over)). Before the rename the
//! path names the old instance's locked file, after it the successor's; `rodent status` finds a
//! running instance at every instant, and a third instance starting meanwhile finds one of the
//! two locks held.

pub(crate) mod outcome;
mod restarts;

pub(crate) use restarts::Restarts;

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal as Sig, kill};
use nix::unistd::{Pid, getpid, pipe2};

use super::activation;
use super::daemon::{self, Outcome, Report};
use super::handoff;
use super::reexec::{self, Binary};
use crate::config::Vars;
use crate::exit::Exit;

/// The internal variable that tells a process it is a successor, naming the pipe it reports on
/// (see [`handoff`]).
pub(crate) const MARKER: &str = "RODENT_SUCCESSOR";
/// How long the successor has to become ready before it is stopped and the restart given up:
/// startup hooks (each bounded by its own timeout) run in that time.
pub(crate) const START_PATIENCE: Duration = Duration::from_secs(60);

/// In a successor: whom it replaces, and the pipe to tell it how the start went.
pub(crate) struct Predecessor {
    pub(crate) pid: Pid,
    pub(crate) report: Report,
}

impl Predecessor {
    /// The predecessor named by [`MARKER`], if it is this process's parent. Claims the report
    /// pipe: call it once.
    pub(crate) fn inherited(vars: &Vars) -> Option<Self> {
        let predecessor = handoff::handed_down(vars, MARKER)?;
        Some(Self {
            pid: predecessor.parent,
            report: Report::new(predecessor.claim()?, getpid()),
        })
    }
}

/// In the instance being replaced: the successor, until it has said how its start went.
pub(crate) struct Starting {
    child: tokio::process::Child,
    pid: Pid,
    report: OwnedFd,
}

impl Starting {
    /// Starts the successor on `listener`, and on `management` for the management port when
    /// there is one. Call it inside the runtime.
    pub(crate) fn spawn(
        listener: &impl AsRawFd,
        management: Option<BorrowedFd<'_>>,
    ) -> io::Result<Self> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
        // The binary at the path this one was started from: an upgrade in place is the one
        // that starts. It starts with rodent's signals blocked (see `reexec::command`).
        let mut command = reexec::command(Binary::Installed);
        command
            .env_remove(super::supervisor::MARKER)
            .env_remove(daemon::FD_VARIABLE);
        handoff::hand_down(&mut command, MARKER, write.as_raw_fd());
        activation::hand_down(&mut command, listener);
        if let Some(management) = management {
            activation::hand_down_management(&mut command, &management);
        }
        let child = tokio::process::Command::from(command).spawn()?;
        // Only the successor may hold the writing end: its exit is then the pipe's end of file.
        drop(write);
        let pid = Pid::from_raw(child.id().map_or(0, |id| id as i32));
        Ok(Self {
            child,
            pid,
            report: read,
        })
    }

    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits for the successor's report, at most [`START_PATIENCE`]. A successor that fails
    /// or runs out of time is stopped and reaped in the background.
    pub(crate) async fn outcome(mut self) -> Outcome {
        let pipe = File::from(self.report);
        let read = tokio::task::spawn_blocking(move || daemon::read_report(pipe));
        let outcome = match tokio::time::timeout(START_PATIENCE, read).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Vanished,
            Err(_) => {
                let _ = kill(self.pid, Sig::SIGTERM);
                Outcome::Failed {
                    code: Exit::Failure.code(),
                    message: format!(
                        "the new instance was not ready within {}s and was stopped",
                        START_PATIENCE.as_secs()
                    ),
                }
            }
        };
        match outcome {
            Outcome::Ready { .. } => outcome,
            Outcome::Vanished => match self.child.wait().await {
                Ok(status) => Outcome::Failed {
                    code: status.code().map_or(Exit::Failure.code(), |c| c as u8),
                    message: format!(
                        "the new instance exited before it was ready ({status}); its log says why"
                    ),
                },
                Err(e) => Outcome::Failed {
                    code: Exit::Failure.code(),
                    message: format!("the new instance vanished: {e}"),
                },
            },
            failed => {
                tokio::spawn(async move { self.child.wait().await });
                failed
            }
        }
    }
}
