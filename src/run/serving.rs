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
    } = rodent;
    let drain_sequence = DrainSequence::new(shutdown, flush);
    let timeouts = Timeouts {
        header_read: config.header_read_timeout,
        idle: config.idle_timeout,
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
    let heartbeat = lifecycle.spawn_heartbeat();
    let routes = Arc::new(Routes::new(instance.clone(), app));
    let mut operator = Operator::new(
        signals,
        logging,
        config_source,
        observers,
        restarts,
        routes.clone(),
    );
    let address = listener.socket.local_addr().ok();
    let server = Server::start(listener.socket, routes.current(), timeouts, metrics);
    if let Some(address) = address {
        tracing::info!(target: "rodent::lifecycle", address = %address, port = address.port(), "listening");
        operator.emit(&Event::Listening(address));
    }

    let ended = match start(&instance, &mut operator, startup).await {
        Started::Ready => {
            lifecycle.advance(State::Ready);
            tracing::info!(target: "rodent::lifecycle", "ready");
            operator.emit(&Event::Ready);
            let reason =
                super::restart::serve_until_stopped(&instance, &server, &mut operator).await;
            drain_sequence
                .run(reason, &instance, &server, &mut operator)
                .await
        }
        Started::Interrupted(reason) => {
            tracing::info!(target: "rodent::lifecycle", reason = reason.as_str(), "stop asked for during startup");
            drain_sequence
                .run(reason, &instance, &server, &mut operator)
                .await
        }
        Started::Failed(cause) => {
            let budget = ExitBudget::starting_now(&instance.config.load());
            operator.emit(&Event::StartFailed(cause));
            server
                .abort(budget.abort_settles(tokio::time::Instant::now()))
                .await;
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
