//! The shutdown sequence, from the first SIGTERM to the exit code:
//!
//! 1. **draining**: readiness fails at once; everything else is served as usual for the drain
//!    delay, with `Connection: close` on HTTP/1 responses and a GOAWAY to HTTP/2 clients, so
//!    load balancers and clients move elsewhere;
//! 2. **stopping**: the listener closes, idle connections close, in-flight requests finish;
//! 3. shutdown hooks run, last registered first, each bounded by its timeout;
//! 4. exit 0.
//!
//! One clock, started at the first signal, bounds it all: at `RODENT_SHUTDOWN_GRACE` minus the
//! safety margin, whatever is still open is aborted (exit 124), and hooks stop at half the margin,
//! so the process is gone before the SIGKILL of Kubernetes or Docker. A second SIGTERM or SIGINT at any
//! point skips what is left (exit 123).
//!
//! Traced, when traces are exported: a `rodent drain` span from the signal until the last
//! in-flight request is done, with the steps as its events, then one span per shutdown hook,
//! children of it. The drain span ends before the hooks run, so the telemetry flush (which runs
//! after every hook) exports it.

use tokio::time::{Instant, sleep_until};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use std::sync::Arc;

use super::controls::Controls;
use crate::config::format_duration;
use crate::exit::Exit;
use crate::http::Shared;
use crate::lifecycle::hooks::Hook;
use crate::lifecycle::{Event, State};
use crate::process::signal::Signal;
use crate::server::Server;

/// What runs at the end: the shutdown hooks, then the flush.
pub(super) struct Shutdown {
    /// In order of registration; they run in reverse.
    hooks: Vec<Hook>,
    /// Runs after every hook, so the spans of their work are exported.
    flush: Option<Hook>,
}

impl Shutdown {
    pub(super) fn new(hooks: Vec<Hook>, flush: Option<Hook>) -> Self {
        Self { hooks, flush }
    }

    /// Runs the sequence from the first shutdown `signal` to the exit code.
    pub(super) async fn run(
        self,
        signal: Signal,
        shared: &Arc<Shared>,
        server: &Server,
        controls: &mut Controls,
    ) -> Exit {
        let started = Instant::now();
        let config = shared.config.load_full();
        let deadline = started + config.shutdown_deadline();
        let hooks_stop = started + config.shutdown_grace - config.safety_margin() / 2;
        let lifecycle = shared.lifecycle.clone();
        // A service that never turned ready was never in rotation: nothing to wait for.
        let was_ready = lifecycle.state() == State::Ready;
        let drain = tracing::info_span!(
            target: "rodent::lifecycle",
            parent: None,
            "drain",
            otel.name = "rodent drain",
            signal = signal.name(),
        );

        lifecycle.advance(State::Draining);
        server.drain_started();
        let drain_delay = if was_ready {
            config.drain_delay
        } else {
            Default::default()
        };
        tracing::info!(
            target: "rodent::lifecycle",
            parent: &drain,
            signal = signal.name(),
            drain_delay = %format_duration(drain_delay),
            deadline = %format_duration(config.shutdown_deadline()),
            "draining"
        );
        controls.emit(&Event::Draining);

        tokio::select! {
            () = sleep_until(started + drain_delay) => {}
            second = controls.next_shutdown_signal(shared) => return force(second, shared, server, controls).await,
        }

        server.close().await;
        lifecycle.advance(State::Stopping);
        tracing::info!(
            target: "rodent::lifecycle",
            parent: &drain,
            in_flight = shared.metrics.in_flight().total(),
            connections = server.open_connections(),
            "listener closed"
        );

        let mut exit = Exit::Clean;
        tokio::select! {
            () = server.closed() => {
                tracing::info!(target: "rodent::lifecycle", parent: &drain, elapsed_ms = started.elapsed().as_millis() as u64, "in-flight requests finished");
            }
            () = sleep_until(deadline) => {
                let in_flight = shared.metrics.in_flight().total();
                let aborted = server.abort().await;
                shared.metrics.connections_aborted(aborted);
                tracing::warn!(
                    target: "rodent::lifecycle",
                    parent: &drain,
                    aborted_connections = aborted,
                    aborted_requests = in_flight,
                    "shutdown deadline reached; remaining connections aborted"
                );
                exit = Exit::DeadlineReached;
            }
            second = controls.next_shutdown_signal(shared) => return force(second, shared, server, controls).await,
        }

        let drain_trace = drain.context();
        drop(drain);

        let Self { hooks, flush } = self;
        for hook in hooks.into_iter().rev().chain(flush) {
            let name = hook.name().to_string();
            let span = tracing::info_span!(
                target: "rodent::lifecycle",
                parent: None,
                "shutdown hook",
                otel.name = %format_args!("rodent shutdown hook {name}"),
                otel.status_code = Empty,
                hook = %name,
            );
            // Fails only when traces are not exported.
            let _ = span.set_parent(drain_trace.clone());
            tracing::info!(target: "rodent::lifecycle", hook = %name, "running shutdown hook");
            let outcome = tokio::select! {
                outcome = hook.run(Some(hooks_stop)).instrument(span.clone()) => outcome,
                second = controls.next_shutdown_signal(shared) => return force(second, shared, server, controls).await,
            };
            if outcome.log(&name, "shutdown").is_err() {
                span.record("otel.status_code", "error");
                if exit == Exit::Clean {
                    exit = Exit::Failure;
                }
            }
        }

        tracing::info!(
            target: "rodent::lifecycle",
            exit_code = exit.code(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "stopped"
        );
        controls.emit(&Event::Stopped(exit));
        exit
    }
}

/// A second shutdown signal: drop everything and go.
async fn force(signal: Signal, shared: &Shared, server: &Server, controls: &mut Controls) -> Exit {
    tracing::warn!(target: "rodent::lifecycle", signal = signal.name(), "second shutdown signal; exiting without finishing the drain");
    let aborted = server.abort().await;
    shared.metrics.connections_aborted(aborted);
    let exit = Exit::Forced;
    tracing::info!(target: "rodent::lifecycle", exit_code = exit.code(), aborted_connections = aborted, "stopped");
    controls.emit(&Event::Stopped(exit));
    exit
}
