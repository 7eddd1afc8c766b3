//! [`DrainSequence`]: the stop, from the moment it begins to the exit code. It is the only code
//! that moves the lifecycle past `ready` and the server through its phases:
//!
//! 1. **draining**: readiness fails at once; everything else is served as usual for the drain
//!    delay, with `Connection: close` on HTTP/1 responses and a GOAWAY to HTTP/2 clients, so
//!    load balancers and clients move elsewhere;
//! 2. **stopping**: the listener closes and the drain is signaled; idle connections close,
//!    in-flight requests finish, upgraded connections (WebSockets) and background tasks end,
//!    drain holds are released;
//! 3. shutdown hooks run, last registered first, each bounded by its timeout; then the
//!    telemetry flush;
//! 4. the management port, when there is one, closes: it answered the probes and `/metrics`
//!    through every step above;
//! 5. exit 0 (1 when a background task failed, or a hook did).
//!
//! One [`ExitBudget`], computed when the stop begins from the grace in force then, times it all
//! (see `lifecycle::budget`): at the deadline whatever is still open (connections, tasks) is
//! aborted and holds give way (exit 124), and hooks stop soon after, so the process is gone before the SIGKILL of Kubernetes or Docker. A
//! second SIGTERM or SIGINT at any point skips what is left (exit 123).
//!
//! Traced, when traces are exported: a `rodent drain` span from the signal until the last
//! in-flight request is done, with the steps as its events, then one span per shutdown hook,
//! children of it. The drain span ends before the hooks run, so the telemetry flush (which runs
//! after every hook) exports it.

use nix::unistd::Pid;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::serving::Running;
use crate::config::format_duration;
use crate::exit::Exit;
use crate::lifecycle::budget::ExitBudget;
use crate::lifecycle::hooks::Hook;
use crate::lifecycle::tasks::TaskFailure;
use crate::lifecycle::{Event, State};
use crate::observe::telemetry::FinalFlush;
use crate::process::signal::Signal;
use crate::server::Server;

const TARGET: &str = "rodent::lifecycle";

/// Why the service stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// SIGTERM or SIGINT.
    Signal(Signal),
    /// A successor took over the listening socket (`rodent restart`): no signal was sent.
    Handover { successor: Pid },
    /// The shutdown future of an embedding application completed (`Rodent::serve`).
    Requested,
    /// A background task returned an error or panicked: the stop ends with exit 1.
    TaskFailed(TaskFailure),
}

impl StopReason {
    /// In a word, for the `reason` field of the log and the drain span.
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            Self::Signal(_) => "signal",
            Self::Handover { .. } => "handover",
            Self::Requested => "requested",
            Self::TaskFailed(_) => "task failed",
        }
    }

    fn signal(&self) -> Option<&'static str> {
        match self {
            Self::Signal(signal) => Some(signal.name()),
            _ => None,
        }
    }

    fn successor(&self) -> Option<i32> {
        match self {
            Self::Handover { successor } => Some(successor.as_raw()),
            _ => None,
        }
    }

    fn task(&self) -> Option<&str> {
        match self {
            Self::TaskFailed(failure) => Some(&failure.task),
            _ => None,
        }
    }

    /// The exit code of a stop that went as planned.
    fn exit(&self) -> Exit {
        match self {
            Self::TaskFailed(_) => Exit::Failure,
            _ => Exit::Clean,
        }
    }
}

/// How a run ended: its exit code, and the schedule that the rest of the process's exit (the
/// runtime's shutdown, the log's last flush) keeps to.
pub(crate) struct Ended {
    pub(crate) exit: Exit,
    pub(crate) budget: ExitBudget,
}

/// The stop of one service: what it ends with (the shutdown hooks, then the flush), and the
/// sequence that gets there.
pub(super) struct DrainSequence {
    /// In order of registration; they run in reverse.
    hooks: Vec<Hook>,
    /// Runs after every hook, so the spans of their work are exported.
    flush: Option<FinalFlush>,
}

impl DrainSequence {
    pub(super) fn new(hooks: Vec<Hook>, flush: Option<FinalFlush>) -> Self {
        Self { hooks, flush }
    }

    /// Runs the stop that began now, for `reason`.
    pub(super) async fn run(self, reason: StopReason, running: &mut Running) -> Ended {
        let Running {
            instance,
            server,
            management,
            operator,
            tasks,
        } = running;
        let config = instance.config.load_full();
        let lifecycle = instance.lifecycle.clone();
        // A service that never turned ready was never in rotation: nothing to wait for.
        let drain_delay = if lifecycle.state() == State::Ready {
            config.drain_delay
        } else {
            Default::default()
        };
        let budget = ExitBudget::new(Instant::now(), config.shutdown_grace, drain_delay);
        let drain = tracing::info_span!(
            target: TARGET,
            parent: None,
            "drain",
            otel.name = "rodent drain",
            reason = reason.as_str(),
            signal = Empty,
            successor_pid = Empty,
            task = Empty,
        );
        if let Some(signal) = reason.signal() {
            drain.record("signal", signal);
        }
        if let Some(successor) = reason.successor() {
            drain.record("successor_pid", successor);
        }
        if let Some(task) = reason.task() {
            drain.record("task", task);
        }

        lifecycle.advance(State::Draining);
        server.drain_started();
        tracing::info!(
            target: TARGET,
            parent: &drain,
            reason = reason.as_str(),
            signal = reason.signal(),
            successor_pid = reason.successor(),
            task = reason.task(),
            drain_delay = %format_duration(budget.drain_delay()),
            deadline = %format_duration(budget.deadline_in()),
            "draining"
        );
        operator.emit(&Event::Draining);

        tokio::select! {
            () = sleep_until(budget.listener_closes) => {}
            second = operator.next_stop(instance) => return force(second, &budget, running).await,
        }

        server.close().await;
        lifecycle.advance(State::Stopping);
        let holds = lifecycle.holds();
        holds.close();
        tracing::info!(
            target: TARGET,
            parent: &drain,
            in_flight = instance.metrics.in_flight().total(),
            connections = server.open_connections(),
            tasks = tasks.len(),
            holds = holds.len(),
            "listener closed"
        );

        let mut exit = reason.exit();
        let failures;
        let everything_ended = async {
            let ((), ended, ()) = tokio::join!(server.closed(), tasks.finished(), holds.wait());
            ended
        };
        tokio::select! {
            ended = everything_ended => {
                failures = ended;
                tracing::info!(target: TARGET, parent: &drain, elapsed_ms = budget.began.elapsed().as_millis() as u64, "in-flight requests finished");
            }
            () = sleep_until(budget.deadline) => {
                let in_flight = instance.metrics.in_flight().total();
                let aborted = server.abort(budget.abort_settles(Instant::now())).await;
                instance.metrics.connections_aborted(aborted);
                let (aborted_tasks, ended) = tasks.abort().await;
                failures = ended;
                tracing::warn!(
                    target: TARGET,
                    parent: &drain,
                    aborted_connections = aborted,
                    aborted_requests = in_flight,
                    aborted_tasks,
                    holds_given_way = holds.len(),
                    "shutdown deadline reached; remaining connections aborted"
                );
                if exit == Exit::Clean {
                    exit = Exit::DeadlineReached;
                }
            }
            second = operator.next_stop(instance) => return force(second, &budget, running).await,
        }
        // A task that failed while the service drained: logged as it ended, and the exit says so.
        if !failures.is_empty() && exit == Exit::Clean {
            exit = Exit::Failure;
        }

        let drain_trace = drain.context();
        drop(drain);

        let Self { hooks, flush } = self;
        for hook in hooks.into_iter().rev() {
            let name = hook.name().to_string();
            let span = tracing::info_span!(
                target: TARGET,
                parent: None,
                "shutdown hook",
                otel.name = %format_args!("rodent shutdown hook {name}"),
                otel.status_code = Empty,
                hook = %name,
            );
            // Fails only when traces are not exported.
            let _ = span.set_parent(drain_trace.clone());
            tracing::info!(target: TARGET, hook = %name, "running shutdown hook");
            let outcome = tokio::select! {
                outcome = hook.run(Some(budget.hooks_stop)).instrument(span.clone()) => outcome,
                second = operator.next_stop(instance) => return force(second, &budget, running).await,
            };
            if outcome.log(&name, "shutdown").is_err() {
                span.record("otel.status_code", "error");
                if exit == Exit::Clean {
                    exit = Exit::Failure;
                }
            }
        }

        // Best effort: a flush cut short drops spans (logged and counted), not the exit code.
        if let Some(flush) = flush {
            tokio::select! {
                () = flush.run(budget.hooks_stop) => {}
                second = operator.next_stop(instance) => return force(second, &budget, running).await,
            }
        }
        if let Some(management) = management {
            close_last(management, &budget).await;
        }

        tracing::info!(
            target: TARGET,
            exit_code = exit.code(),
            elapsed_ms = budget.began.elapsed().as_millis() as u64,
            "stopped"
        );
        operator.emit(&Event::Stopped(exit));
        Ended { exit, budget }
    }
}

/// A second stop: drop everything and go.
async fn force(second: StopReason, budget: &ExitBudget, running: &mut Running) -> Ended {
    let Running {
        instance,
        server,
        management,
        operator,
        tasks,
    } = running;
    tracing::warn!(
        target: TARGET,
        reason = second.as_str(),
        signal = second.signal(),
        "second shutdown signal; exiting without finishing the drain"
    );
    if let Some(management) = management {
        management.abort(budget.abort_settles(Instant::now())).await;
    }
    let aborted = server.abort(budget.abort_settles(Instant::now())).await;
    instance.metrics.connections_aborted(aborted);
    tasks.abort().await;
    let exit = Exit::Forced;
    tracing::info!(target: TARGET, exit_code = exit.code(), aborted_connections = aborted, "stopped");
    operator.emit(&Event::Stopped(exit));
    Ended {
        exit,
        budget: *budget,
    }
}

/// The management port closes last, once nothing else is left to report on: idle connections
/// close at once, and a probe or a scrape in flight may finish until the hooks' stop, with the
/// rest of the margin left for the exit.
async fn close_last(management: &Server, budget: &ExitBudget) {
    management.close().await;
    if tokio::time::timeout_at(budget.hooks_stop, management.closed())
        .await
        .is_err()
    {
        management.abort(budget.abort_settles(Instant::now())).await;
    }
    tracing::info!(target: TARGET, "management listener closed");
}
