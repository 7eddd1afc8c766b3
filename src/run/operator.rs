//! [`Operator`]: what answers the operator while the service runs: signals in (reload, dump,
//! stop, restart), each given its meaning here, and lifecycle events out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::drain_sequence::StopReason;
use super::reloads::{Reloads, Reread, Trigger};
use crate::config::{Config, ConfigErrors, Reload, format_duration};
use crate::http::{Instance, Routes};
use crate::lifecycle::{Event, Observers};
use crate::observe::logging::LogHandle;
use crate::process::signal::Signal;
use crate::process::successor::Restarts;

/// Where shutdown, reload and dump requests come from.
pub(crate) enum Signals {
    /// OS signals, as [`signal::listen`](crate::process::signal::listen) forwards them.
    Os(crate::process::signal::Received),
    /// An embedder's shutdown future: its completion asks for the stop, and nothing else comes.
    Future(Option<Pin<Box<dyn Future<Output = ()> + Send>>>),
}

impl Signals {
    /// What is asked next; never resolves once nothing more can come (a closed channel, a
    /// shutdown future that has completed) rather than yielding an endless stream of nothing.
    async fn next(&mut self, restarts: bool) -> Ask {
        match self {
            Self::Os(rx) => match rx.recv().await {
                Some(signal) => meaning(signal, restarts),
                None => std::future::pending().await,
            },
            // Polled in place, not taken: a caller that stops waiting (a select that another
            // branch won) must not lose the embedder's shutdown future with it.
            Self::Future(shutdown) => match shutdown {
                Some(future) => {
                    future.as_mut().await;
                    *shutdown = None;
                    Ask::Stop(StopReason::Requested)
                }
                None => std::future::pending().await,
            },
        }
    }
}

/// What a signal asks of a running service. This is the one place where signals get their
/// meaning for the service; `process::signal` says who sends each one.
fn meaning(signal: Signal, restarts: bool) -> Ask {
    match signal {
        Signal::Terminate | Signal::Interrupt => Ask::Stop(StopReason::Signal(signal)),
        Signal::User2 if restarts => Ask::Restart,
        Signal::Reload => Ask::Reload,
        Signal::Dump => Ask::Dump,
        Signal::User1 | Signal::User2 | Signal::WindowChange => Ask::Nothing(signal),
    }
}

/// What the operator asks.
enum Ask {
    Stop(StopReason),
    Restart,
    Reload,
    Dump,
    /// A signal with no meaning here.
    Nothing(Signal),
}

/// What the operator asks of the running service, beyond what [`Operator`] answers itself.
pub(super) enum Request {
    /// Stop, for this reason: SIGTERM, SIGINT, the embedder's shutdown future.
    Stop(StopReason),
    /// SIGUSR2 (`rodent restart`), where restarts are enabled: see `restart`.
    Restart,
}

/// Answers the operator while the service runs: reloads and dumps on the spot, stops and
/// restarts handed to the run loop; and tells the observers of every lifecycle step.
pub(super) struct Operator {
    signals: Signals,
    logging: Option<LogHandle>,
    reloads: Reloads,
    /// The problems of the last reload, when it was rejected for them.
    rejected: Option<ConfigErrors>,
    observers: Observers,
    /// When set, SIGUSR2 restarts this process; otherwise it has no meaning.
    restarts: Option<Restarts>,
    /// Rebuilt on reload: the handler timeout and the body limit are fixed in a router's stack.
    routes: Arc<Routes>,
}

impl Operator {
    pub(super) fn new(
        signals: Signals,
        logging: Option<LogHandle>,
        reloads: Reloads,
        observers: Observers,
        restarts: Option<Restarts>,
        routes: Arc<Routes>,
    ) -> Self {
        Self {
            signals,
            logging,
            reloads,
            rejected: None,
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

    /// Waits until the application's observers have heard every event so far, or `deadline`.
    pub(super) async fn events_heard(&mut self, deadline: tokio::time::Instant) {
        self.observers.delivered(deadline).await;
    }

    /// Waits for a stop, handling every other request as it comes. A restart asked for
    /// meanwhile is refused: only a ready instance restarts, from its run loop.
    pub(super) async fn next_stop(&mut self, instance: &Instance) -> StopReason {
        loop {
            match self.next_request(instance).await {
                Request::Stop(reason) => return reason,
                Request::Restart => {
                    let state = instance.lifecycle.state().as_str();
                    if let Some(restarts) = &self.restarts {
                        restarts.refuse(format!(
                            "this instance is {state}: only a ready instance restarts"
                        ));
                    }
                }
            }
        }
    }

    /// Waits for a stop or a restart, handling every other request as it comes, and applying
    /// reloads as their reads finish. Cancel-safe.
    pub(super) async fn next_request(&mut self, instance: &Instance) -> Request {
        loop {
            let ask = tokio::select! {
                ask = self.signals.next(self.restarts.is_some()) => ask,
                reread = self.reloads.next(|| instance.config.load_full()) => {
                    self.reloaded(reread, instance);
                    continue;
                }
            };
            match ask {
                Ask::Stop(reason) => return Request::Stop(reason),
                Ask::Restart => return Request::Restart,
                Ask::Reload => self.reload(instance),
                Ask::Dump => dump(instance),
                Ask::Nothing(signal) => {
                    tracing::info!(target: "rodent::lifecycle", signal = signal.name(), "signal received; it has no meaning here");
                }
            }
        }
    }

    /// SIGHUP: re-read the configuration (off this loop: see `reloads`), to apply what can
    /// change at run time, atomically, once it is read.
    fn reload(&mut self, instance: &Instance) {
        tracing::info!(target: "rodent::lifecycle", signal = "SIGHUP", "reloading configuration");
        self.emit(&Event::Reloading);
        self.reloads
            .ask(Trigger::Signal, instance.config.load_full());
    }

    /// A configuration read again: applied if valid, and an invalid one changes nothing. After a
    /// change on disk, a read that comes to what the last one came to (the same settings, or the
    /// same problems) is not a reload: the file changed in a way that does not matter (a
    /// comment), or a SIGHUP applied it already.
    fn reloaded(&mut self, reread: Reread, instance: &Instance) {
        if reread.trigger == Trigger::FileChanged {
            let same = match &reread.read {
                Ok(next) => next.vars == instance.config.load().vars,
                Err(errors) => self.rejected.as_ref() == Some(errors),
            };
            if same {
                if reread.read.is_ok() {
                    self.rejected = None;
                }
                tracing::debug!(target: "rodent::lifecycle", "the env file changed on disk, but not what it sets");
                return;
            }
            tracing::info!(target: "rodent::lifecycle", "reloading configuration: the env file changed");
            self.emit(&Event::Reloading);
        }
        let problems = reread.read.as_ref().err().cloned();
        let applied = self.apply(reread.read, instance);
        self.rejected = if applied { None } else { problems };
        instance.metrics.reload(applied);
        self.emit(&Event::Reloaded);
    }

    /// Applies a freshly read configuration; returns whether it was.
    fn apply(&self, next: Result<Config, ConfigErrors>, instance: &Instance) -> bool {
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
        let reload = Reload::of(&instance.config.load(), next);
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
        instance.config.store(Arc::new(reload.config));
        tracing::info!(target: "rodent::lifecycle", changed, "configuration reloaded");
        true
    }
}

/// SIGQUIT: what is this process doing? Logged, and the process keeps running.
fn dump(instance: &Instance) {
    let lifecycle = &instance.lifecycle;
    let in_flight = instance.metrics.in_flight();
    let by_route: Vec<String> = in_flight
        .by_route()
        .into_iter()
        .map(|(route, n)| format!("{route}={n}"))
        .collect();
    let config = instance.config.load();
    tracing::info!(
        target: "rodent::lifecycle",
        signal = "SIGQUIT",
        state = lifecycle.state().as_str(),
        readiness_enabled = lifecycle.readiness_enabled(),
        uptime_seconds = lifecycle.uptime().as_secs(),
        in_flight = in_flight.total(),
        in_flight_by_route = by_route.join(", "),
        connections = instance.metrics.open_connections(),
        drain_delay = %format_duration(config.drain_delay),
        shutdown_grace = %format_duration(config.shutdown_grace),
        "state dump"
    );
}
