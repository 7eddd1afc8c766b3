//! The run loop: from a bound listener to the shutdown signal. Startup hooks run while the
//! listener already answers `/healthz`; then the service turns ready and waits (restarting on
//! SIGUSR2 where that is enabled: see `restart`); the first shutdown signal, or a successor
//! taking over, hands over to the [`Shutdown`] sequence.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::Rodent;
use super::controls::{Controls, Signals};
use super::shutdown::Shutdown;
use crate::exit::Exit;
use crate::http::{Routes, Shared};
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

pub(super) async fn run(service: Rodent, listener: Listener, signals: Signals) -> Exit {
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
    } = service;
    let shutdown = Shutdown::new(shutdown, flush);
    let timeouts = {
        let config = config.load();
        Timeouts {
            header_read: config.header_read_timeout,
            idle: config.idle_timeout,
        }
    };
    let shared = Arc::new(Shared::new(
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
        shared.mark_listener_outliving();
    }
    let heartbeat = lifecycle.spawn_heartbeat();
    let routes = Arc::new(Routes::new(shared.clone(), app));
    let mut controls = Controls::new(
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
        controls.emit(&Event::Listening(address));
    }

    let exit = match start(&shared, &mut controls, startup).await {
        Started::Ready => {
            lifecycle.advance(State::Ready);
            tracing::info!(target: "rodent::lifecycle", "ready");
            controls.emit(&Event::Ready);
            let signal = super::restart::serve_until_stopped(&shared, &server, &mut controls).await;
            shutdown.run(signal, &shared, &server, &mut controls).await
        }
        Started::Interrupted(signal) => {
            tracing::info!(target: "rodent::lifecycle", signal = signal.name(), "signal received during startup");
            shutdown.run(signal, &shared, &server, &mut controls).await
        }
        Started::Failed(cause) => {
            controls.emit(&Event::StartFailed(cause));
            server.abort().await;
            tracing::info!(target: "rodent::lifecycle", exit_code = Exit::Failure.code(), "stopped");
            Exit::Failure
        }
    };
    heartbeat.abort();
    exit
}

/// How the startup hooks ended.
enum Started {
    Ready,
    /// A shutdown signal came first.
    Interrupted(crate::process::signal::Signal),
    /// A hook failed; the one-line cause.
    Failed(String),
}

async fn start(shared: &Arc<Shared>, controls: &mut Controls, hooks: Vec<Hook>) -> Started {
    for hook in hooks {
        let name = hook.name().to_string();
        tracing::info!(target: "rodent::lifecycle", hook = %name, "running startup hook");
        let outcome = tokio::select! {
            outcome = hook.run(None) => outcome,
            signal = controls.next_shutdown_signal(shared) => return Started::Interrupted(signal),
        };
        if let Err(cause) = outcome.log(&name, "startup") {
            return Started::Failed(format!("startup hook {name:?} {cause}"));
        }
    }
    Started::Ready
}
