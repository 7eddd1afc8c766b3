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
use std::sync::Arc;

use nix::sys::signal::{Signal as Sig, kill};
use nix::unistd::Pid;
use tokio::net::TcpListener;

use super::drain_sequence::StopReason;
use super::operator::{Operator, Request};
use crate::http::Instance;
use crate::process::daemon::Outcome;
use crate::server::Server;

const TARGET: &str = "rodent::lifecycle";

/// A successor being started, and how its start ends.
type Succession = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// What the loop waits for.
enum Next {
    Request(Request),
    Outcome(Outcome),
}

/// Serves until the operator asks for a stop, or until a successor has taken over; returns why
/// this process's service ends (a handover, with accepting stopped).
pub(super) async fn serve_until_stopped(
    instance: &Arc<Instance>,
    server: &Server,
    management: Option<&Server>,
    operator: &mut Operator,
) -> StopReason {
    let mut succession: Option<(Pid, Succession)> = None;
    loop {
        let next = tokio::select! {
            request = operator.next_request(instance) => Next::Request(request),
            outcome = successor_outcome(&mut succession) => Next::Outcome(outcome),
        };
        match next {
            Next::Request(Request::Stop(reason)) => {
                if let Some((pid, _)) = succession {
                    tracing::info!(target: TARGET, successor_pid = pid.as_raw(), "stopping the new instance: this one is shutting down");
                    let _ = kill(pid, Sig::SIGTERM);
                }
                return reason;
            }
            Next::Request(Request::Restart) if succession.is_some() => {
                tracing::info!(target: TARGET, signal = "SIGUSR2", "a restart is already in progress");
            }
            Next::Request(Request::Restart) => {
                let Some(restarts) = operator.restarts() else {
                    continue;
                };
                // Both sockets go to the successor: it could bind neither while this process
                // holds them.
                let begin = |listener: &TcpListener| match management {
                    Some(management) => management
                        .with_listener(|own| restarts.begin(listener, Some(own.as_fd())))
                        .flatten(),
                    None => restarts.begin(listener, None),
                };
                let starting = match server.with_listener(begin) {
                    Some(starting) => starting,
                    None => {
                        restarts.refuse("this instance no longer accepts connections".into());
                        None
                    }
                };
                succession = starting
                    .map(|starting| (starting.pid(), Box::pin(starting.outcome()) as Succession));
            }
            Next::Outcome(outcome) => {
                succession = None;
                let done = operator
                    .restarts()
                    .and_then(|restarts| restarts.done(outcome));
                if let Some(new) = done {
                    tracing::info!(target: TARGET, successor_pid = new.as_raw(), "handed over to the new instance; draining");
                    instance.mark_listener_outliving();
                    // The successor accepts on the socket from now on: nothing is refused.
                    server.stop_accepting().await;
                    if let Some(management) = management {
                        management.stop_accepting().await;
                    }
                    return StopReason::Handover { successor: new };
                }
            }
        }
    }
}

/// The outcome of the successor being started; never resolves when there is none.
async fn successor_outcome(succession: &mut Option<(Pid, Succession)>) -> Outcome {
    match succession {
        Some((_, outcome)) => outcome.await,
        None => std::future::pending().await,
    }
}
