//! The run loop: from a bound listener to the stop. Startup hooks run while the listener
//! already answers `/healthz`; then the background tasks start, the service turns ready and
//! serves until the first stop: a signal (given its meaning by the `operator`), a failed task,
//! or a successor taking over (SIGUSR2, where restarts are enabled: see `restart`). The
//! [`DrainSequence`] takes it from there.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::Rodent;
use super::drain_sequence::{DrainSequence, Ended, StopReason};
use super::operator::{Operator, Request, Signals};
use super::reloads::Reloads;
use super::restart;
use crate::config::Config;
use crate::exit::Exit;
use crate::http::{Instance, Routes};
use crate::lifecycle::budget::ExitBudget;
use crate::lifecycle::hooks::Hook;
use crate::lifecycle::readiness::Readiness;
use crate::lifecycle::tasks::Tasks;
use crate::lifecycle::{Drain, Event, Observers, State};
use crate::observe::logging::{AccessLog, LogHandle};
use crate::server::{Server, Timeouts};
use crate::tls::Tls;

/// The socket to serve on.
pub(super) struct Listener {
    pub(super) socket: TcpListener,
    /// Inherited from a service manager or a predecessor: the socket outlives this process.
    pub(super) outlives: bool,
}

/// What a running service is made of, for the run loop and the drain sequence.
pub(super) struct Running {
    pub(super) instance: Arc<Instance>,
    pub(super) server: Server,
    /// The management port's server, when `RODENT_MANAGEMENT_PORT` is set.
    pub(super) management: Option<Server>,
    pub(super) operator: Operator,
    pub(super) tasks: Tasks,
}

pub(super) async fn serve(rodent: Rodent, listener: Listener, signals: Signals) -> Ended {
    let Rodent {
        config,
        app,
        lifecycle,
        metrics,
        checks,
        startup,
        shutdown,
        flush,
        tasks,
        observers,
        logging,
        config_source,
        restarts,
        management_socket,
    } = rodent;
    let drain_sequence = DrainSequence::new(shutdown, flush);
    let tls = match Tls::start(&config.load(), &metrics) {
        Ok(tls) => tls,
        Err(e) => {
            e.log();
            return start_refused(&observers, e.exit(), e.to_string(), &config.load()).await;
        }
    };
    let acceptor = tls.as_ref().map(Tls::acceptor);
    let reloads = match Reloads::new(config_source, config.load().env_file.clone(), tls) {
        Ok(reloads) => reloads,
        Err(e) => {
            tracing::error!(target: "rodent::lifecycle", file = %e.file.display(), "{e}");
            return start_refused(&observers, Exit::Failure, e.to_string(), &config.load()).await;
        }
    };
    let timeouts = {
        let config = config.load();
        Timeouts {
            header_read: config.header_read_timeout,
            idle: config.idle_timeout,
        }
    };
    let instance = Arc::new(Instance::new(
        config,
        lifecycle.clone(),
        metrics.clone(),
        Readiness::new(checks),
        logging.as_ref().map_or_else(
            || Arc::new(AccessLog::through_tracing()),
            LogHandle::access_log,
        ),
    ));
    if listener.outlives {
        instance.mark_listener_outliving();
    }
    let management_addr = instance.config.load().management_addr();
    let routes = Arc::new(Routes::new(
        instance.clone(),
        app,
        management_addr.is_some(),
    ));
    // Bound before anything is served, like the main listener: a start that cannot have it
    // fails before any request is taken.
    let management_socket = match (management_addr, management_socket) {
        (Some(address), inherited) => match bind_management(address, inherited).await {
            Ok(socket) => Some(socket),
            Err(e) => {
                let cause = format!("cannot listen on {address} (RODENT_MANAGEMENT_PORT): {e}");
                tracing::error!(target: "rodent::lifecycle", address = %address, error = %e, "{cause}");
                return start_refused(&observers, Exit::Failure, cause, &instance.config.load())
                    .await;
            }
        },
        (None, _) => None,
    };
    let heartbeat = lifecycle.spawn_heartbeat();
    let operator = Operator::new(
        signals,
        logging,
        reloads,
        observers,
        restarts,
        routes.clone(),
    );
    let address = listener.socket.local_addr().ok();
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let server = Server::start(
        listener.socket,
        routes.main(),
        instance.config.clone(),
        timeouts,
        metrics.clone(),
        acceptor,
    );
    if let Some(address) = address {
        tracing::info!(target: "rodent::lifecycle", address = %address, port = address.port(), scheme, "listening");
        operator.emit(&Event::Listening(address));
    }
    let management = management_socket.zip(routes.management()).map(|(socket, router)| {
        let address = socket.local_addr().ok();
        // Plain HTTP, whatever the main port speaks: the kubelet's and Prometheus' side.
        let server = Server::start(socket, router, instance.config.clone(), timeouts, metrics, None);
        if let Some(address) = address {
            tracing::info!(target: "rodent::lifecycle", address = %address, port = address.port(), "management listening");
        }
        server
    });
    let mut running = Running {
        instance,
        server,
        management,
        operator,
        tasks: Tasks::default(),
    };

    let ended = match start(&mut running, startup).await {
        StartupOutcome::Ready => {
            running.tasks = Tasks::start(tasks, &Drain::new(&lifecycle));
            lifecycle.advance(State::Ready);
            tracing::info!(target: "rodent::lifecycle", "ready");
            running.operator.emit(&Event::Ready);
            let reason = serve_until_stopped(&mut running).await;
            drain_sequence.run(reason, &mut running).await
        }
        StartupOutcome::Interrupted(reason) => {
            tracing::info!(target: "rodent::lifecycle", reason = reason.as_str(), "stop asked for during startup");
            drain_sequence.run(reason, &mut running).await
        }
        StartupOutcome::Failed(cause) => {
            let budget = ExitBudget::starting_now(running.instance.config.load().shutdown_grace);
            running.operator.emit(&Event::StartFailed(cause));
            let settled = budget.abort_settles(tokio::time::Instant::now());
            running.server.abort(settled).await;
            if let Some(management) = &running.management {
                management.abort(settled).await;
            }
            tracing::info!(target: "rodent::lifecycle", exit_code = Exit::Failure.code(), "stopped");
            Ended {
                exit: Exit::Failure,
                budget,
            }
        }
    };
    heartbeat.abort();
    let heard = ended.budget.observers_heard(tokio::time::Instant::now());
    running.operator.events_heard(heard).await;
    ended
}

/// Serves until the operator asks for a stop, a background task fails, or a successor has
/// taken over (SIGUSR2, see `restart`); returns why the service ends.
async fn serve_until_stopped(running: &mut Running) -> StopReason {
    let mut succession = None;
    loop {
        let reason = tokio::select! {
            request = running.operator.next_request(&running.instance) => match request {
                Request::Stop(reason) => reason,
                Request::Restart => {
                    restart::begin(running, &mut succession);
                    continue;
                }
            },
            failure = running.tasks.next_failure() => StopReason::TaskFailed(failure),
            outcome = restart::outcome(&mut succession) => {
                succession = None;
                let Some(successor) = restart::finish(running, outcome) else {
                    continue;
                };
                running.server.stop_accepting().await;
                if let Some(management) = &running.management {
                    management.stop_accepting().await;
                }
                return StopReason::Handover { successor };
            }
        };
        restart::abandon(succession);
        return reason;
    }
}

/// A start refused before anything was served, for `cause`.
async fn start_refused(observers: &Observers, exit: Exit, cause: String, config: &Config) -> Ended {
    let budget = ExitBudget::starting_now(config.shutdown_grace);
    observers.emit(&Event::StartFailed(cause));
    observers
        .delivered(budget.observers_heard(tokio::time::Instant::now()))
        .await;
    Ended { exit, budget }
}

/// How the startup hooks ended.
enum StartupOutcome {
    Ready,
    /// A stop was asked for first.
    Interrupted(StopReason),
    /// A hook failed; the one-line cause.
    Failed(String),
}

async fn start(running: &mut Running, hooks: Vec<Hook>) -> StartupOutcome {
    for hook in hooks {
        let name = hook.name().to_string();
        tracing::info!(target: "rodent::lifecycle", hook = %name, "running startup hook");
        let outcome = tokio::select! {
            outcome = hook.run(None) => outcome,
            reason = running.operator.next_stop(&running.instance) => return StartupOutcome::Interrupted(reason),
        };
        if let Err(cause) = outcome.log(&name, "startup") {
            return StartupOutcome::Failed(format!("startup hook {name:?} {cause}"));
        }
    }
    StartupOutcome::Ready
}

/// The management port's listener: the one a predecessor handed down, or one bound here.
async fn bind_management(
    address: std::net::SocketAddr,
    inherited: Option<std::net::TcpListener>,
) -> std::io::Result<TcpListener> {
    match inherited {
        Some(socket) => TcpListener::from_std(socket),
        None => TcpListener::bind(address).await,
    }
}
