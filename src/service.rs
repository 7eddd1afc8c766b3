//! [`Rodent`]: the builder an application hands its routes, readiness checks and hooks to, and
//! the loop that runs the whole lifecycle: bind, start, serve, reload, dump, drain, stop.
//!
//! The state machine lives here and only here: this module is the one that advances the
//! [`Lifecycle`]; everything else reads it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::{Config, ConfigErrors, format_duration};
use crate::exit::Exit;
use crate::hooks::{Hook, HookOutcome, HookResult};
use crate::lifecycle::{Lifecycle, State};
use crate::logging::LogHandle;
use crate::metrics::Metrics;
use crate::probes::{Probes, ReadinessCheck};
use crate::server::Server;
use crate::signal::Signal;
use crate::state::ServiceState;
use crate::supervisor::Link;

/// A lifecycle step, for whoever needs to tell the outside world: systemd (`sd_notify`), the
/// process that launched a daemon, a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Listening(SocketAddr),
    Ready,
    Reloading,
    Reloaded,
    Draining,
    Stopped(Exit),
    /// Startup failed; the message is the one-line cause.
    StartFailed(String),
}

type Observer = Box<dyn Fn(&Event) + Send + Sync>;
type ConfigSource = Box<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// A service with rodent's lifecycle. Build it, then [`run`](Rodent::run) it.
///
/// ```no_run
/// # async fn example() -> rodent::Exit {
/// use std::time::Duration;
/// use axum::{Router, routing::get};
///
/// let config = rodent::Config::from_env().expect("valid configuration");
/// rodent::Rodent::new(config)
///     .routes(Router::new().route("/hello", get(|| async { "hello" })))
///     .readiness_check("always", || async { Ok(()) })
///     .on_shutdown("goodbye", Duration::from_secs(1), || async { Ok(()) })
///     .run()
///     .await
/// # }
/// ```
pub struct Rodent {
    config: Config,
    app: Router,
    lifecycle: Lifecycle,
    metrics: Arc<Metrics>,
    checks: Vec<ReadinessCheck>,
    startup: Vec<Hook>,
    shutdown: Vec<Hook>,
    logging: Option<LogHandle>,
    config_source: ConfigSource,
    observers: Vec<Observer>,
    supervisor: Option<Link>,
    signals: Option<mpsc::UnboundedReceiver<Signal>>,
}

impl Rodent {
    pub fn new(config: Config) -> Self {
        let lifecycle = Lifecycle::new();
        Self {
            config,
            app: Router::new(),
            metrics: Arc::new(Metrics::new(lifecycle.clone())),
            lifecycle,
            checks: Vec::new(),
            startup: Vec::new(),
            shutdown: Vec::new(),
            logging: None,
            config_source: Box::new(Config::from_env),
            observers: Vec::new(),
            supervisor: None,
            signals: None,
        }
    }

    /// Adds application routes. They sit behind load shedding, the request timeout and the body
    /// limit; rodent's own routes (`/healthz`, `/readyz`, `/metrics`, `/admin/*`) are added
    /// around them.
    pub fn routes(mut self, router: Router) -> Self {
        self.app = self.app.merge(router);
        self
    }

    /// Adds a readiness check: `/readyz` fails while it returns an error (or takes longer than
    /// [`CHECK_TIMEOUT`](crate::probes::CHECK_TIMEOUT)).
    pub fn readiness_check<F, Fut>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push(ReadinessCheck::new(name, check));
        self
    }

    /// Adds a startup hook. Hooks run in order after the listener is bound (so `/healthz`
    /// answers meanwhile) and before the service turns ready; a failure stops the start (exit 1).
    pub fn on_startup<F, Fut>(mut self, name: impl Into<String>, timeout: Duration, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = HookResult> + Send + 'static,
    {
        self.startup.push(Hook::new(name, timeout, hook));
        self
    }

    /// Adds a shutdown hook. Hooks run in reverse order of registration once in-flight requests
    /// are done, each within its timeout and all within the grace period.
    pub fn on_shutdown<F, Fut>(
        mut self,
        name: impl Into<String>,
        timeout: Duration,
        hook: F,
    ) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = HookResult> + Send + 'static,
    {
        self.shutdown.push(Hook::new(name, timeout, hook));
        self
    }

    /// Lets a reload change the log filter and format.
    pub fn logging(mut self, handle: LogHandle) -> Self {
        self.logging = Some(handle);
        self
    }

    /// Where a reload reads the configuration from; the process environment by default.
    pub fn config_source<F>(mut self, source: F) -> Self
    where
        F: Fn() -> Result<Config, ConfigErrors> + Send + Sync + 'static,
    {
        self.config_source = Box::new(source);
        self
    }

    /// Calls `observer` at every lifecycle step.
    pub fn on_event<F>(mut self, observer: F) -> Self
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.observers.push(Box::new(observer));
        self
    }

    /// Runs under rodent's PID 1 supervisor (see [`crate::supervisor`]): the orphans it reaps
    /// are counted at `/metrics` as `rodent_zombies_reaped`.
    pub fn supervised_by(mut self, link: Link) -> Self {
        self.supervisor = Some(link);
        self
    }

    /// The lifecycle handle, for application code that wants to read the state or switch
    /// readiness off and on.
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.clone()
    }

    /// The metrics served at `/metrics`, for code that counts into them from outside the
    /// request path (telemetry's exported and dropped spans, the supervisor's reaped zombies).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Takes signals from `signals` (from [`signal::listen`](crate::signal::listen), called
    /// before the runtime was built) instead of listening from inside the runtime.
    pub fn signals(mut self, signals: mpsc::UnboundedReceiver<Signal>) -> Self {
        self.signals = Some(signals);
        self
    }

    /// Listens for OS signals (unless [`signals`](Rodent::signals) gave them), binds the
    /// configured address and serves until shutdown.
    pub async fn run(mut self) -> Exit {
        let signals = match self.signals.take().map_or_else(crate::signal::listen, Ok) {
            Ok(signals) => signals,
            Err(e) => {
                let cause = format!("cannot install signal handlers: {e}");
                tracing::error!(target: "rodent::lifecycle", "{cause}");
                self.emit(&Event::StartFailed(cause));
                return Exit::Failure;
            }
        };
        let address = self.config.bind_addr();
        match TcpListener::bind(address).await {
            Ok(listener) => self.serve(listener, signals).await,
            Err(e) => {
                let cause = format!("cannot listen on {address}: {e}");
                tracing::error!(target: "rodent::lifecycle", address = %address, error = %e, "{cause}");
                self.emit(&Event::StartFailed(cause));
                Exit::Failure
            }
        }
    }

    fn emit(&self, event: &Event) {
        for observer in &self.observers {
            observer(event);
        }
    }

    /// Serves on an already bound listener, taking signals from `signals`. Tests and embedders
    /// that manage their own listener or signals call this instead of [`run`](Rodent::run).
    pub async fn serve(
        self,
        listener: TcpListener,
        signals: mpsc::UnboundedReceiver<Signal>,
    ) -> Exit {
        let Rodent {
            config,
            app,
            lifecycle,
            metrics,
            checks,
            startup,
            shutdown,
            logging,
            config_source,
            observers,
            supervisor,
            signals: _,
        } = self;
        let state = Arc::new(ServiceState::new(
            config,
            lifecycle.clone(),
            metrics,
            Probes::new(checks),
        ));
        let heartbeat = lifecycle.spawn_heartbeat();
        if let Some(link) = supervisor {
            let state = state.clone();
            link.publish(move |total| state.metrics.set_zombies_reaped(total));
        }
        let router = crate::http::router(state.clone(), app);
        let address = crate::server::local_addr(&listener);
        let server = Server::start(listener, router, state.clone());
        let mut run = Orchestrator {
            state: state.clone(),
            server,
            operator: Operator {
                state,
                signals: Signals(Some(signals)),
                logging,
                config_source,
                observers,
            },
        };
        if let Some(address) = address {
            tracing::info!(target: "rodent::lifecycle", address = %address, port = address.port(), "listening");
            run.operator.emit(&Event::Listening(address));
        }
        let exit = run.lifecycle(startup, shutdown).await;
        heartbeat.abort();
        exit
    }
}

/// Signals, with a closed channel meaning "no more signals" rather than an endless stream of
/// `None`s.
struct Signals(Option<mpsc::UnboundedReceiver<Signal>>);

impl Signals {
    async fn recv(&mut self) -> Signal {
        if let Some(rx) = &mut self.0 {
            if let Some(signal) = rx.recv().await {
                return signal;
            }
            self.0 = None;
        }
        std::future::pending().await
    }
}

/// The running service, as the lifecycle loop sees it.
pub(crate) struct Orchestrator {
    pub(crate) state: Arc<ServiceState>,
    pub(crate) server: Server,
    /// Kept apart from `server` so the loop can wait on both at once.
    pub(crate) operator: Operator,
}

/// What answers the operator: signals in (reload, dump, shutdown), lifecycle events out.
pub(crate) struct Operator {
    state: Arc<ServiceState>,
    signals: Signals,
    logging: Option<LogHandle>,
    config_source: ConfigSource,
    observers: Vec<Observer>,
}

impl Orchestrator {
    async fn lifecycle(&mut self, startup: Vec<Hook>, shutdown: Vec<Hook>) -> Exit {
        for hook in startup {
            let name = hook.name().to_string();
            tracing::info!(target: "rodent::lifecycle", hook = %name, "running startup hook");
            let outcome = tokio::select! {
                outcome = hook.run(None) => outcome,
                signal = self.operator.next_shutdown_signal() => {
                    tracing::info!(target: "rodent::lifecycle", signal = signal.name(), "signal received during startup");
                    return self.shut_down(signal, shutdown).await;
                }
            };
            if let Err(cause) = log_hook(&name, "startup", outcome) {
                let cause = format!("startup hook {name:?} {cause}");
                self.operator.emit(&Event::StartFailed(cause));
                self.server.abort().await;
                tracing::info!(target: "rodent::lifecycle", exit_code = Exit::Failure.code(), "stopped");
                return Exit::Failure;
            }
        }

        self.state.lifecycle.advance(State::Ready);
        tracing::info!(target: "rodent::lifecycle", "ready");
        self.operator.emit(&Event::Ready);

        let signal = self.operator.next_shutdown_signal().await;
        self.shut_down(signal, shutdown).await
    }
}

impl Operator {
    pub(crate) fn emit(&self, event: &Event) {
        for observer in &self.observers {
            observer(event);
        }
    }

    /// Waits for SIGTERM or SIGINT, handling every other signal as it comes.
    pub(crate) async fn next_shutdown_signal(&mut self) -> Signal {
        loop {
            let signal = self.signals.recv().await;
            if signal.is_shutdown() {
                return signal;
            }
            self.handle(signal);
        }
    }

    fn handle(&self, signal: Signal) {
        match signal {
            Signal::Reload => self.reload(),
            Signal::Dump => self.dump(),
            Signal::User1 | Signal::User2 | Signal::WindowChange => {
                tracing::info!(target: "rodent::lifecycle", signal = signal.name(), "signal received; it has no meaning here");
            }
            Signal::Terminate | Signal::Interrupt => {}
        }
    }

    /// SIGHUP: re-read the configuration and apply what can change at run time, atomically; an
    /// invalid configuration changes nothing.
    fn reload(&self) {
        tracing::info!(target: "rodent::lifecycle", signal = "SIGHUP", "reloading configuration");
        self.emit(&Event::Reloading);
        let metrics = &self.state.metrics;
        match (self.config_source)() {
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!(
                        target: "rodent::config",
                        variable = error.variable().unwrap_or_default(),
                        error = %error,
                        "invalid configuration"
                    );
                }
                tracing::error!(
                    target: "rodent::lifecycle",
                    problems = errors.0.len(),
                    "reload rejected; the running configuration is unchanged"
                );
                metrics.reload(false);
            }
            Ok(next) => {
                let reload = self.state.config.load().reload(next);
                if let Some(logging) = &self.logging
                    && let Err(e) = logging.apply(&reload.config.log, reload.config.log_format)
                {
                    tracing::error!(target: "rodent::lifecycle", error = %e, "reload rejected; the running configuration is unchanged");
                    metrics.reload(false);
                    self.emit(&Event::Reloaded);
                    return;
                }
                for variable in &reload.needs_restart {
                    tracing::warn!(target: "rodent::config", variable, "changed, but applies only after a restart");
                }
                for variable in &reload.config.unknown {
                    tracing::warn!(target: "rodent::config", variable = %variable, "unknown variable (a typo?)");
                }
                let changed = reload.changed.join(",");
                self.state.config.store(Arc::new(reload.config));
                tracing::info!(target: "rodent::lifecycle", changed, "configuration reloaded");
                metrics.reload(true);
            }
        }
        self.emit(&Event::Reloaded);
    }

    /// SIGQUIT: what is this process doing? Logged, and the process keeps running.
    fn dump(&self) {
        let lifecycle = &self.state.lifecycle;
        let in_flight = self.state.metrics.in_flight();
        let by_route: Vec<String> = in_flight
            .by_route()
            .into_iter()
            .map(|(route, n)| format!("{route}={n}"))
            .collect();
        let config = self.state.config.load();
        tracing::info!(
            target: "rodent::lifecycle",
            signal = "SIGQUIT",
            state = lifecycle.state().as_str(),
            readiness_enabled = lifecycle.readiness_enabled(),
            uptime_seconds = lifecycle.uptime().as_secs(),
            in_flight = in_flight.total(),
            in_flight_by_route = by_route.join(", "),
            connections = self.state.metrics.open_connections(),
            drain_delay = %format_duration(config.drain_delay),
            shutdown_grace = %format_duration(config.shutdown_grace),
            "state dump"
        );
    }
}

/// Logs how a hook ended; `Err` carries the cause when it did not succeed.
pub(crate) fn log_hook(name: &str, kind: &str, outcome: HookOutcome) -> Result<(), String> {
    match outcome {
        HookOutcome::Done(took) => {
            tracing::info!(target: "rodent::lifecycle", hook = name, kind, elapsed_ms = took.as_millis() as u64, "hook done");
            Ok(())
        }
        HookOutcome::Failed(error) => {
            tracing::error!(target: "rodent::lifecycle", hook = name, kind, error = %error, "hook failed");
            Err(format!("failed: {error}"))
        }
        HookOutcome::TimedOut(limit) => {
            tracing::error!(target: "rodent::lifecycle", hook = name, kind, timeout_ms = limit.as_millis() as u64, "hook timed out");
            Err(format!("timed out after {}", format_duration(limit)))
        }
    }
}
