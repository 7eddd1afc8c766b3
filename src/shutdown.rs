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
//! so the process is gone before the orchestrator's SIGKILL. A second SIGTERM or SIGINT at any
//! point skips what is left (exit 123).
//!
//! Traced, when traces are exported: a `rodent drain` span from the signal until the last
//! in-flight request is done, with the steps as its events, then one span per shutdown hook,
//! children of it. The drain span ends before the hooks run, so the telemetry flush (the last
//! hook) exports it.

use tokio::time::{Instant, sleep_until};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::format_duration;
use crate::exit::Exit;
use crate::hooks::Hook;
use crate::lifecycle::State;
use crate::service::{Event, Orchestrator, log_hook};
use crate::signal::Signal;

impl Orchestrator {
    pub(crate) async fn shut_down(&mut self, signal: Signal, hooks: Vec<Hook>) -> Exit {
        let started = Instant::now();
        let config = self.state.config.load_full();
        let deadline = started + config.shutdown_deadline();
        let hooks_stop = started + config.shutdown_grace - config.safety_margin() / 2;
        let lifecycle = self.state.lifecycle.clone();
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
        self.server.drain_started();
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
        self.operator.emit(&Event::Draining);

        tokio::select! {
            () = sleep_until(started + drain_delay) => {}
            second = self.operator.next_shutdown_signal() => return self.force(second).await,
        }

        self.server.close().await;
        lifecycle.advance(State::Stopping);
        tracing::info!(
            target: "rodent::lifecycle",
            parent: &drain,
            in_flight = self.state.metrics.in_flight().total(),
            connections = self.server.open_connections(),
            "listener closed"
        );

        let mut exit = Exit::Clean;
        tokio::select! {
            () = self.server.closed() => {
                tracing::info!(target: "rodent::lifecycle", parent: &drain, elapsed_ms = started.elapsed().as_millis() as u64, "in-flight requests finished");
            }
            () = sleep_until(deadline) => {
                let in_flight = self.state.metrics.in_flight().total();
                let aborted = self.server.abort().await;
                self.state.metrics.connections_aborted(aborted);
                tracing::warn!(
                    target: "rodent::lifecycle",
                    parent: &drain,
                    aborted_connections = aborted,
                    aborted_requests = in_flight,
                    "shutdown deadline reached; remaining connections aborted"
                );
                exit = Exit::DeadlineReached;
            }
            second = self.operator.next_shutdown_signal() => return self.force(second).await,
        }

        let drain_trace = drain.context();
        drop(drain);

        for hook in hooks.into_iter().rev() {
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
                second = self.operator.next_shutdown_signal() => return self.force(second).await,
            };
            if log_hook(&name, "shutdown", outcome).is_err() {
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
        self.operator.emit(&Event::Stopped(exit));
        exit
    }

    /// A second shutdown signal: drop everything and go.
    async fn force(&mut self, signal: Signal) -> Exit {
        tracing::warn!(target: "rodent::lifecycle", signal = signal.name(), "second shutdown signal; exiting without finishing the drain");
        let aborted = self.server.abort().await;
        self.state.metrics.connections_aborted(aborted);
        let exit = Exit::Forced;
        tracing::info!(target: "rodent::lifecycle", exit_code = exit.code(), aborted_connections = aborted, "stopped");
        self.operator.emit(&Event::Stopped(exit));
        exit
    }
}
