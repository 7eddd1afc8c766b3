//! SIGUSR2 (`rodent restart`, the nginx and unicorn convention): replace this process with a
//! fresh one on the same listening socket, losing nothing.
//!
//! 1. the successor starts on this process's listening socket
//!    ([`Restarts`](crate::process::successor::Restarts)); this process keeps serving meanwhile;
//! 2. once ready, it has taken over the PID file, and says so on its report pipe;
//! 3. this process then stops accepting (the successor accepts everything from here on,
//!    connections queued in the socket included) and drains as for SIGTERM;
//! 4. a successor that fails (an invalid configuration, a failed startup hook, no readiness
//!    within a minute) changes nothing here: the failure is logged, and recorded beside the PID
//!    file for the command, with the successor's own error and exit code.
//!
//! Only [`launch`](crate::launch) enables restarts: a successor finds its predecessor, its
//! socket and its report pipe in the way `launch::serve` starts, which a service run by
//! [`Rodent::run`](crate::Rodent::run) in a `main` of its own may not share.

use std::future::Future;
use std::os::fd::AsFd;
use std::pin::Pin;

use nix::sys::signal::{Signal as Sig, kill};
use nix::unistd::Pid;
use tokio::net::TcpListener;

use super::serving::Running;
use crate::process::daemon::Outcome;

const TARGET: &str = "rodent::lifecycle";

/// A restart in progress: the successor being started, and how its start ends.
pub(super) struct Succession {
    pid: Pid,
    outcome: Pin<Box<dyn Future<Output = Outcome> + Send>>,
}

/// SIGUSR2: starts a successor on the listening socket, unless one is starting already. What
/// refuses a restart (the supervisor, systemd) says so to the command.
pub(super) fn begin(running: &Running, succession: &mut Option<Succession>) {
    if succession.is_some() {
        tracing::info!(target: TARGET, signal = "SIGUSR2", "a restart is already in progress");
        return;
    }
    let Some(restarts) = running.operator.restarts() else {
        return;
    };
    // Both sockets go to the successor: it could bind neither while this process holds them.
    let begin = |listener: &TcpListener| match &running.management {
        Some(management) => management
            .with_listener(|own| restarts.begin(listener, Some(own.as_fd())))
            .flatten(),
        None => restarts.begin(listener, None),
    };
    let starting = match running.server.with_listener(begin) {
        Some(starting) => starting,
        None => {
            restarts.refuse("this instance no longer accepts connections".into());
            None
        }
    };
    *succession = starting.map(|starting| Succession {
        pid: starting.pid(),
        outcome: Box::pin(starting.outcome()),
    });
}

/// How the successor's start ends; never resolves when there is none.
pub(super) async fn outcome(succession: &mut Option<Succession>) -> Outcome {
    match succession {
        Some(succession) => succession.outcome.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The successor's start ended. When it took over, its PID: this process must then stop
/// accepting on both its sockets (the successor accepts everything from now on, nothing is
/// refused), and its service ends, the handover being the reason.
pub(super) fn finish(running: &Running, outcome: Outcome) -> Option<Pid> {
    let successor = running
        .operator
        .restarts()
        .and_then(|restarts| restarts.done(outcome))?;
    tracing::info!(target: TARGET, successor_pid = successor.as_raw(), "handed over to the new instance; draining");
    running.instance.mark_listener_outliving();
    Some(successor)
}

/// This instance stops before its successor was ready: the successor stops too.
pub(super) fn abandon(succession: Option<Succession>) {
    if let Some(Succession { pid, .. }) = succession {
        tracing::info!(target: TARGET, successor_pid = pid.as_raw(), "stopping the new instance: this one is shutting down");
        let _ = kill(pid, Sig::SIGTERM);
    }
}
