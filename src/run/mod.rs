//! [`Rodent`]: the builder an application hands its routes, readiness checks and hooks to, and
//! the loop that runs the whole lifecycle around them: bind, start, serve, reload, dump, drain,
//! stop.
//!
//! | part | owns |
//! | --- | --- |
//! | this file | the builder, and how it is served |
//! | `serving` | the run loop: startup hooks, ready, then the stop |
//! | `operator` | what answers the operator: signals in, each given its meaning there (reload, dump, stop, restart), events out |
//! | `restart` | SIGUSR2: a successor on the listening socket, then the drain |
//! | `drain_sequence` | the stop, from its first moment to the exit code, on one [`ExitBudget`](crate::lifecycle::budget::ExitBudget) |
//!
//! The state machine is advanced here and only here (`ready` by the run loop, everything after
//! it by the drain sequence); everything else reads it.

mod drain_sequence;
mod operator;
mod restart;
mod serving;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::exit::Exit;
use crate::lifecycle::budget::ExitBudget;
use crate::lifecycle::hooks::Hook;
use crate::lifecycle::readiness::ReadinessCheck;
use crate::lifecycle::tasks::Task;
use crate::lifecycle::{BoxError, Drain, Event, Lifecycle, Observers};
use crate::observe::logging::LogHandle;
use crate::observe::metrics::Metrics;
use crate::observe::telemetry::FinalFlush;
use crate::process::successor::Restarts;
pub(crate) use drain_sequence::Ended;
use operator::ConfigSource;
pub(crate) use operator::Signals;

/// A service with rodent's lifecycle. Build it, then [`run`](Rodent::run) or
/// [`serve`](Rodent::serve) it, or hand it to [`launch::serve`](crate::launch::serve), which
/// also does everything a process does around it.
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
    /// Runs after every shutdown hook, whatever order they were registered in: the telemetry
    /// flush, which must export the spans of the other hooks' work.
    flush: Option<FinalFlush>,
    tasks: Vec<Task>,
    observers: Observers,
    logging: Option<LogHandle>,
    config_source: ConfigSource,
    restarts: Option<Restarts>,
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
            flush: None,
            tasks: Vec::new(),
            observers: Observers::default(),
            logging: None,
            config_source: Box::new(Config::from_env),
            restarts: None,
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
    /// 800 ms, below the one-second default timeout of a Kubernetes probe).
    pub fn readiness_check<F, Fut>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.checks.push(ReadinessCheck::new(name, check));
        self
    }

    /// Adds a startup hook. Hooks run in order after the listener is bound (so `/healthz`
    /// answers meanwhile) and before the service turns ready; a failure stops the start (exit 1).
    pub fn on_startup<F, Fut>(mut self, name: impl Into<String>, timeout: Duration, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
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
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.shutdown.push(Hook::new(name, timeout, hook));
        self
    }

    /// Adds a background task: work that runs beside the requests for the life of the service,
    /// such as a queue consumer or a cache refresher. It starts once the startup hooks have
    /// succeeded, just before the service turns ready, and is given the [`Drain`]: once that is
    /// signaled (the listener has closed), it should finish its current item and return. The
    /// shutdown hooks wait for it; at the deadline it is aborted (exit 124).
    ///
    /// A task that returns an error or panics stops the service (exit 1), with its name and the
    /// cause on one log line. One that returns `Ok` before the drain just ends.
    ///
    /// ```no_run
    /// # fn example(service: rodent::Rodent) -> rodent::Rodent {
    /// use std::time::Duration;
    ///
    /// service.task("refresher", |drain| async move {
    ///     loop {
    ///         tokio::select! {
    ///             () = drain.signaled() => return Ok(()),
    ///             () = tokio::time::sleep(Duration::from_secs(10)) => {}
    ///         }
    ///         // Refresh the cache: an item the drain lets finish.
    ///     }
    /// })
    /// # }
    /// ```
    pub fn task<F, Fut>(mut self, name: impl Into<String>, task: F) -> Self
    where
        F: FnOnce(Drain) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.tasks.push(Task::new(name, task));
        self
    }

    /// Calls `observer` at every lifecycle step, in order, on a thread of its own: an observer
    /// that blocks or panics does not hold up the service (a panic is logged). At the exit, the
    /// last events wait for it a moment at most.
    pub fn on_event<F>(mut self, observer: F) -> Self
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.observers.push(observer);
        self
    }

    /// Calls `observer` at every lifecycle step, on the loop, as the step happens: for rodent's
    /// own quick observers (systemd's notification, a daemon's report to its launcher).
    pub(crate) fn on_event_in_loop<F>(mut self, observer: F) -> Self
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.observers.push_own(observer);
        self
    }

    /// The lifecycle handle, for application code that wants to read the state or switch
    /// readiness off and on.
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.clone()
    }

    /// The metrics served at `/metrics`, for the parts of the process that count from outside
    /// the request path (telemetry's spans, the supervisor's reaped orphans).
    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Lets a reload change the log filter and format, and `/metrics` count dropped lines.
    pub(crate) fn logging(mut self, handle: LogHandle) -> Self {
        self.metrics.count_log_lines_dropped(handle.dropped());
        self.logging = Some(handle);
        self
    }

    /// The telemetry flush: runs after every shutdown hook.
    pub(crate) fn flush_last(mut self, flush: Option<FinalFlush>) -> Self {
        self.flush = flush;
        self
    }

    /// Lets SIGUSR2 restart the service (`rodent restart`).
    pub(crate) fn restarts(mut self, restarts: Restarts) -> Self {
        self.restarts = Some(restarts);
        self
    }

    /// Listens for OS signals (SIGTERM and SIGINT stop, SIGHUP reloads, SIGQUIT dumps), binds
    /// the configured address and serves until shutdown.
    pub async fn run(self) -> Exit {
        let signals = match crate::process::signal::listen() {
            Ok(signals) => signals,
            Err(e) => {
                let cause = format!("cannot install signal handlers: {e}");
                tracing::error!(target: "rodent::lifecycle", "{cause}");
                return self.start_failed(cause).await.exit;
            }
        };
        self.bind_and_serve(Signals::Os(signals)).await.exit
    }

    /// Serves on an already bound listener until `shutdown` resolves, which starts the drain as
    /// SIGTERM would. OS signals are left to the caller; tests and embedders that manage their
    /// own listener and signals call this instead of [`run`](Rodent::run).
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> Exit
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = serving::Listener {
            socket: listener,
            outlives: false,
        };
        self.serve_with(listener, Signals::Future(Some(Box::pin(shutdown))))
            .await
            .exit
    }

    /// Binds the configured address and serves, taking signals from `signals`.
    pub(crate) async fn bind_and_serve(self, signals: Signals) -> Ended {
        let address = self.config.bind_addr();
        match TcpListener::bind(address).await {
            Ok(socket) => {
                let listener = serving::Listener {
                    socket,
                    outlives: false,
                };
                self.serve_with(listener, signals).await
            }
            Err(e) => {
                let cause = format!("cannot listen on {address}: {e}");
                tracing::error!(target: "rodent::lifecycle", address = %address, error = %e, "{cause}");
                self.start_failed(cause).await
            }
        }
    }

    /// Serves on a listening socket this process inherited (socket activation, a supervisor, a
    /// predecessor) instead of binding one, taking signals from `signals`.
    pub(crate) async fn serve_inherited(
        self,
        socket: std::net::TcpListener,
        signals: Signals,
    ) -> Ended {
        match TcpListener::from_std(socket) {
            Ok(socket) => {
                let listener = serving::Listener {
                    socket,
                    outlives: true,
                };
                self.serve_with(listener, signals).await
            }
            Err(e) => {
                let cause = format!("cannot serve on the inherited socket: {e}");
                tracing::error!(target: "rodent::lifecycle", "{cause}");
                self.start_failed(cause).await
            }
        }
    }

    /// Serves on `listener`, taking signals from `signals`.
    async fn serve_with(self, listener: serving::Listener, signals: Signals) -> Ended {
        serving::serve(self, listener, signals).await
    }

    /// How a run ends that could not even listen, for `cause`.
    async fn start_failed(self, cause: String) -> Ended {
        let budget = ExitBudget::starting_now(&self.config);
        self.observers.emit(&Event::StartFailed(cause));
        self.observers
            .delivered(budget.observers_heard(tokio::time::Instant::now()))
            .await;
        Ended {
            exit: Exit::Failure,
            budget,
        }
    }
}
