//! What answers the operator while the service runs: signals in (reload, dump, shutdown,
//! restart), lifecycle events out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{Config, ConfigErrors, Reload, format_duration};
use crate::http::{Routes, Shared};
use crate::lifecycle::{Event, Observers};
use crate::observe::logging::LogHandle;
use crate::process::signal::Signal;
use crate::process::successor::Restarts;

pub(super) type ConfigSource = Box<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// Where shutdown, reload and dump requests come from.
pub(crate) enum Signals {
    /// OS signals, as [`signal::listen`](crate::process::signal::listen) forwards them.
    Os(crate::process::signal::Received),
    /// An embedder's shutdown future: its completion is a SIGTERM, and nothing else comes.
    Future(Option<Pin<Box<dyn Future<Output = ()> + Send>>>),
}

impl Signals {
    /// The next signal; never resolves once there are no more (a closed channel, a shutdown
    /// future that has completed) rather than yielding an endless stream of nothing.
    async fn recv(&mut self) -> Signal {
        match self {
            Self::Os(rx) => match rx.recv().await {
                Some(signal) => signal,
                None => std::future::pending().await,
            },
            Self::Future(shutdown) => match shutdown.take() {
                Some(shutdown) => {
                    shutdown.await;
                    Signal::Terminate
                }
                None => std::future::pending().await,
            },
        }
    }
}

/// What the operator asks of the running service, beyond what [`Controls`] answers itself.
pub(super) enum Request {
    /// SIGTERM or SIGINT.
    Stop(Signal),
    /// SIGUSR2 (`rodent restart`), where restarts are enabled: see `restart`.
    Restart,
}

pub(super) struct Controls {
    signals: Signals,
    logging: Option<LogHandle>,
    config_source: ConfigSource,
    observers: Observers,
    /// When set, SIGUSR2 restarts this process; otherwise it has no meaning.
    restarts: Option<Restarts>,
    /// Rebuilt on reload: the handler timeout and the body limit are fixed in a router's stack.
    routes: Arc<Routes>,
}

impl Controls {
    pub(super) fn new(
        signals: Signals,
        logging: Option<LogHandle>,
        config_source: ConfigSource,
        observers: Observers,
        restarts: Option<Restarts>,
        routes: Arc<Routes>,
    ) -> Self {
        Self {
            signals,
            logging,
            config_source,
            observers,
            restarts,
            routes,
        }
    }

    pub(super) fn restarts(&self) -> Option<&Restarts> {
        self.restarts.as_ref()
    }

    pub(super) fn emit(&self, event: &Event) {
        self.observers.emit(event);
    }

    /// Waits for SIGTERM or SIGINT, handling every other signal as it comes. A restart asked
    /// for meanwhile is refused: only a ready instance restarts, from its run loop.
    pub(super) async fn next_shutdown_signal(&mut self, shared: &Arc<Shared>) -> Signal {
        loop {
            match self.next_request(shared).await {
                Request::Stop(signal) => return signal,
                Request::Restart => {
                    let state = shared.lifecycle.state().as_str();
                    if let Some(restarts) = &self.restarts {
                        restarts.refuse(format!(
                            "this instance is {state}: only a ready instance restarts"
                        ));
                    }
                }
            }
        }
    }

    /// Waits for a stop or a restart, handling every other signal as it comes.
    pub(super) async fn next_request(&mut self, shared: &Arc<Shared>) -> Request {
        loop {
            let signal = self.signals.recv().await;
            match signal {
                Signal::Terminate | Signal::Interrupt => return Request::Stop(signal),
                Signal::User2 if self.restarts.is_some() => return Request::Restart,
                Signal::Reload => self.reload(shared),
                Signal::Dump => dump(shared),
                Signal::User1 | Signal::User2 | Signal::WindowChange => {
                    tracing::info!(target: "rodent::lifecycle", signal = signal.name(), "signal received; it has no meaning here");
                }
            }
        }
    }

    /// SIGHUP: re-read the configuration and apply what can change at run time, atomically; an
    /// invalid configuration changes nothing.
    fn reload(&self, shared: &Shared) {
        tracing::info!(target: "rodent::lifecycle", signal = "SIGHUP", "reloading configuration");
        self.emit(&Event::Reloading);
        let applied = self.apply((self.config_source)(), shared);
        shared.metrics.reload(applied);
        self.emit(&Event::Reloaded);
    }

    /// Applies a freshly read configuration; returns whether it was.
    fn apply(&self, next: Result<Config, ConfigErrors>, shared: &Shared) -> bool {
        let rejected = |problems: usize| {
            tracing::error!(
                target: "rodent::lifecycle",
                problems,
                "reload rejected; the running configuration is unchanged"
            );
            false
        };
        let next = match next {
            Ok(next) => next,
            Err(errors) => {
                errors.log();
                return rejected(errors.0.len());
            }
        };
        let reload = Reload::of(&shared.config.load(), next);
        if let Some(logging) = &self.logging
            && let Err(e) = logging.apply(&reload.config.log, reload.config.log_format)
        {
            tracing::error!(target: "rodent::lifecycle", error = %e, "the log settings cannot be applied");
            return rejected(1);
        }
        for variable in &reload.needs_restart {
            tracing::warn!(target: "rodent::config", variable, "changed, but applies only after a restart");
        }
        reload.config.warn_unknown();
        let changed = reload.changed.join(",");
        // The new stack first, then the configuration: a request sees the new bounds from the
        // router it is given, and the rest of the new settings from the configuration.
        self.routes.rebuild(&reload.config);
        shared.config.store(Arc::new(reload.config));
        tracing::info!(target: "rodent::lifecycle", changed, "configuration reloaded");
        true
    }
}

/// SIGQUIT: what is this process doing? Logged, and the process keeps running.
fn dump(shared: &Shared) {
    let lifecycle = &shared.lifecycle;
    let in_flight = shared.metrics.in_flight();
    let by_route: Vec<String> = in_flight
        .by_route()
        .into_iter()
        .map(|(route, n)| format!("{route}={n}"))
        .collect();
    let config = shared.config.load();
    tracing::info!(
        target: "rodent::lifecycle",
        signal = "SIGQUIT",
        state = lifecycle.state().as_str(),
        readiness_enabled = lifecycle.readiness_enabled(),
        uptime_seconds = lifecycle.uptime().as_secs(),
        in_flight = in_flight.total(),
        in_flight_by_route = by_route.join(", "),
        connections = shared.metrics.open_connections(),
        drain_delay = %format_duration(config.drain_delay),
        shutdown_grace = %format_duration(config.shutdown_grace),
        "state dump"
    );
}
