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
use std::pin::Pin;
use std::sync::Arc;

use nix::sys::signal::{Signal as Sig, kill};
use nix::unistd::Pid;

use super::controls::{Controls, Request};
use crate::http::Shared;
use crate::process::daemon::Outcome;
use crate::process::signal::Signal;
use crate::server::Server;

const TARGET: &str = "rodent::lifecycle";

type Pending = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// What the loop waits for.
enum Next {
    Request(Request),
    Outcome(Outcome),
}

/// Serves until a shutdown signal, or until a successor has taken over; returns the signal
/// that ends this process's service (SIGUSR2 after a handover, with accepting stopped).
pub(super) async fn serve_until_stopped(
    shared: &Arc<Shared>,
    server: &Server,
    controls: &mut Controls,
) -> Signal {
    let mut pending: Option<(Pid, Pending)> = None;
    loop {
        let next = tokio::select! {
            request = controls.next_request(shared) => Next::Request(request),
            outcome = successor_outcome(&mut pending) => Next::Outcome(outcome),
        };
        match next {
            Next::Request(Request::Stop(signal)) => {
                if let Some((pid, _)) = pending {
                    tracing::info!(target: TARGET, successor_pid = pid.as_raw(), "stopping the new instance: this one is shutting down");
                    let _ = kill(pid, Sig::SIGTERM);
                }
                return signal;
            }
            Next::Request(Request::Restart) if pending.is_some() => {
                tracing::info!(target: TARGET, signal = "SIGUSR2", "a restart is already in progress");
            }
            Next::Request(Request::Restart) => {
                let Some(restarts) = controls.restarts() else {
                    continue;
                };
                let starting = match server.with_listener(|listener| restarts.begin(listener)) {
                    Some(starting) => starting,
                    None => {
                        restarts.refuse("this instance no longer accepts connections".into());
                        None
                    }
                };
                pending = starting
                    .map(|starting| (starting.pid(), Box::pin(starting.outcome()) as Pending));
            }
            Next::Outcome(outcome) => {
                pending = None;
                let done = controls
                    .restarts()
                    .and_then(|restarts| restarts.done(outcome));
                if let Some(new) = done {
                    tracing::info!(target: TARGET, successor_pid = new.as_raw(), "handed over to the new instance; draining");
                    shared.mark_listener_outliving();
                    // The successor accepts on the socket from now on: nothing is refused.
                    server.stop_accepting().await;
                    return Signal::User2;
                }
            }
        }
    }
}

/// The outcome of the successor being started; never resolves when there is none.
async fn successor_outcome(pending: &mut Option<(Pid, Pending)>) -> Outcome {
    match pending {
        Some((_, outcome)) => outcome.await,
        None => std::future::pending().await,
    }
}
