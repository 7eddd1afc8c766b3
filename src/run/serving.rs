//! The run loop: from a bound listener to the stop. Startup hooks run while the listener
//! already answers `/healthz`; then the service turns ready and waits (restarting on SIGUSR2
//! where that is enabled: see `restart`); the first stop (a signal, a successor taking over)
//! hands over to the [`DrainSequence`].

use std::sync::Arc;

use tokio::net::TcpListener;

use super::Rodent;
use super::drain_sequence::{DrainSequence, Ended, StopReason};
use super::operator::{Operator, Signals};
use crate::exit::Exit;
use crate::http::{Instance, Routes};
use crate::lifecycle::budget::ExitBudget;
use crate::lifecycle::hooks::Hook;
use crate::lifecycle::readiness::Readiness;
use crate::lifecycle::{Event, State};
use crate::observe::logging::{AccessLog, LogHandle};
use crate::server::{Server, Timeouts};

/// The socket to serve on.
pub(super) struct Listener {
    pub(super) socket: TcpListener,
    /// Inherited from a service manager or a predecessor: the socket outlives this process.
    pub(super) outlives: bool,
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
        observers,
        logging,
        config_source,
        restarts,
        management_socket,
    } = rodent;
    let drain_sequence = DrainSequence::new(shutdown, flush);
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
                observers.emit(&Event::StartFailed(cause));
                return Ended {
                    exit: Exit::Failure,
                    budget: ExitBudget::starting_now(&instance.config.load()),
                };
            }
        },
        (None, _) => None,
    };
    let heartbeat = lifecycle.spawn_heartbeat();
    let mut operator = Operator::new(
        signals,
        logging,
        config_source,
        observers,
        restarts,
        routes.clone(),
    );
    let address = listener.socket.local_addr().ok();
    let server = Server::start(listener.socket, routes.main(), timeouts, metrics.clone());
    if let Some(address) = address {
        tracing::info!(target: "rodent::lifecycle", address = %address, port = address.port(), "listening");
        operator.emit(&Event::Listening(address));
    }
    let management = management_socket.zip(routes.management()).map(|(socket, router)| {
        let address = socket.local_addr().ok();
        let server = Server::start(socket, router, timeouts, metrics);
        if let Some(address) = address {
            tracing::info!(target: "rodent::lifecycle", address = %address, port = address.port(), "management listening");
        }
        server
    });

    let ended = match start(&instance, &mut operator, startup).await {
        Started::Ready => {
            lifecycle.advance(State::Ready);
            tracing::info!(target: "rodent::lifecycle", "ready");
            operator.emit(&Event::Ready);
            let reason = super::restart::serve_until_stopped(
                &instance,
                &server,
                management.as_ref(),
                &mut operator,
            )
            .await;
            drain_sequence
                .run(
                    reason,
                    &instance,
                    &server,
                    management.as_ref(),
                    &mut operator,
                )
                .await
        }
        Started::Interrupted(reason) => {
            tracing::info!(target: "rodent::lifecycle", reason = reason.as_str(), "stop asked for during startup");
            drain_sequence
                .run(
                    reason,
                    &instance,
                    &server,
                    management.as_ref(),
                    &mut operator,
                )
                .await
        }
        Started::Failed(cause) => {
            let budget = ExitBudget::starting_now(&instance.config.load());
            operator.emit(&Event::StartFailed(cause));
            server
                .abort(budget.abort_settles(tokio::time::Instant::now()))
                .await;
            if let Some(management) = &management {
                management
                    .abort(budget.abort_settles(tokio::time::Instant::now()))
                    .await;
            }
            tracing::info!(target: "rodent::lifecycle", exit_code = Exit::Failure.code(), "stopped");
            Ended {
                exit: Exit::Failure,
                budget,
            }
        }
    };
    heartbeat.abort();
    ended
}

/// How the startup hooks ended.
enum Started {
    Ready,
    /// A stop was asked for first.
    Interrupted(StopReason),
    /// A hook failed; the one-line cause.
    Failed(String),
}

async fn start(instance: &Instance, operator: &mut Operator, hooks: Vec<Hook>) -> Started {
    for hook in hooks {
        let name = hook.name().to_string();
        tracing::info!(target: "rodent::lifecycle", hook = %name, "running startup hook");
        let outcome = tokio::select! {
            outcome = hook.run(None) => outcome,
            reason = operator.next_stop(instance) => return Started::Interrupted(reason),
        };
        if let Err(cause) = outcome.log(&name, "startup") {
            return Started::Failed(format!("startup hook {name:?} {cause}"));
        }
    }
    Started::Ready
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
