//! [`Rodent`]: the builder an application hands its routes, readiness checks and hooks to, and
//! the loop that runs the whole lifecycle around them: bind, start, serve, reload, dump, drain,
//! stop.
//!
//! | part | owns |
//! | --- | --- |
//! | this file | the builder, and how it is served |
//! | `serving` | the run loop: startup hooks, ready, then the stop |
//! | `operator` | what answers the operator: signals in, each given its meaning there (reload, dump, stop, restart), events out |
//! | `reloads` | reading the configuration again off the operator's loop, on SIGHUP and when the env file changes |
//! | `restart` | SIGUSR2: a successor on the listening socket, then the drain |
//! | `drain_sequence` | the stop, from its first moment to the exit code, on one [`ExitBudget`](crate::lifecycle::budget::ExitBudget) |
//!
//! The state machine is advanced here and only here (`ready` by the run loop, everything after
//! it by the drain sequence); everything else reads it.

mod drain_sequence;
mod operator;
mod reloads;
mod restart;
mod serving;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::Route;
use prometheus_client::registry::{Metric, Registry};
use tokio::net::TcpListener;
use tower::{Layer, Service};

use crate::config::{Config, Current};
use crate::exit::Exit;
use crate::http::Application;
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
pub(crate) use operator::Signals;
use reloads::ConfigSource;

/// A service with rodent's lifecycle. Build it, then [`run`](Rodent::run) or
/// [`serve`](Rodent::serve) it, or return it from the setup of an [`App`](crate::App), which
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
    /// The configuration in effect, shared with the request path and with the application's
    /// [`Current`] handles; a reload swaps it whole.
    config: Arc<ArcSwap<Config>>,
    app: Application,
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
    /// The management port's socket, handed down by a predecessor instead of bound here.
    management_socket: Option<std::net::TcpListener>,
}

impl Rodent {
    /// A service with this configuration, and no routes of its own yet.
    pub fn new(config: Config) -> Self {
        let lifecycle = Lifecycle::new();
        let metrics = Metrics::new(lifecycle.clone(), config.build_info());
        Self {
            config: Arc::new(ArcSwap::from_pointee(config)),
            app: Application::default(),
            metrics: Arc::new(metrics),
            lifecycle,
            checks: Vec::new(),
            startup: Vec::new(),
            shutdown: Vec::new(),
            flush: None,
            tasks: Vec::new(),
            observers: Observers::default(),
            logging: None,
            config_source: Arc::new(Config::reread),
            restarts: None,
            management_socket: None,
        }
    }

    /// Adds application routes. They sit behind load shedding, the handler timeout
    /// (`RODENT_REQUEST_TIMEOUT`) and the body bounds (`RODENT_BODY_LIMIT`, and a body that
    /// stalls for `RODENT_HEADER_READ_TIMEOUT`); rodent's own routes (`/healthz`, `/readyz`,
    /// `/metrics`, `/admin/...`) are added beside them. The router's fallback, if it has one
    /// (a `ServeDir`, tonic's `UNIMPLEMENTED`), answers what no route matches; otherwise rodent
    /// answers 404.
    ///
    /// # Panics
    ///
    /// On a route that collides with rodent's own (`/healthz`, `/readyz`, `/readyz/...`,
    /// `/metrics`, `/admin`, `/admin/...`), naming it; and where axum's `Router::merge` panics:
    /// a route added twice, or a second fallback.
    #[track_caller]
    pub fn routes(mut self, router: Router) -> Self {
        self.app.add_bounded(router);
        self
    }

    /// Adds application routes without the handler timeout and the body bounds: uploads,
    /// streams (gRPC's among them), long polls. They still get load shedding, the drain rules
    /// and the access log, and they end by the drain (a handler that extracts [`Drain`] learns
    /// of it) or, at the latest, at the shutdown deadline.
    ///
    /// [`Drain`]: crate::Drain
    ///
    /// # Panics
    ///
    /// As [`routes`](Rodent::routes) does.
    #[track_caller]
    pub fn unbounded_routes(mut self, router: Router) -> Self {
        self.app.add_unbounded(router);
        self
    }

    /// Adds gRPC methods, one route per method (`/{package.Service}/{Method}`) or per service
    /// (`/{package.Service}/{*method}`), each routed to a tonic server:
    ///
    /// ```
    /// # use axum::Router;
    /// # fn example<S>(service: rodent::Rodent, greeter: S) -> rodent::Rodent
    /// # where S: tower::Service<axum::extract::Request, Response = axum::response::Response,
    /// #     Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    /// #     S::Future: Send + 'static {
    /// service.grpc_routes(Router::new().route_service("/hello.Greeter/{*method}", greeter))
    /// # }
    /// ```
    ///
    /// rodent answers their calls in gRPC: a unary call that does not answer within
    /// `RODENT_REQUEST_TIMEOUT`, or within the client's `grpc-timeout` if that is shorter, gets
    /// DEADLINE_EXCEEDED; a call refused because the listener closed or the service is
    /// overloaded (`RODENT_MAX_INFLIGHT`) gets UNAVAILABLE, a panic INTERNAL, and a call no
    /// route matches UNIMPLEMENTED. The body limit does not apply (tonic's own message size
    /// limit does). Once the application has gRPC routes, rodent serves `grpc.health.v1.Health`
    /// beside them (and on the management port), answered from readiness: SERVING while
    /// `/readyz` passes, NOT_SERVING from the first SIGTERM on.
    ///
    /// Register streaming methods with [`unbounded_grpc_routes`](Rodent::unbounded_grpc_routes)
    /// instead: the handler timeout would cut them. Do not give the router tonic's own fallback
    /// (`Routes::into_axum_router` has one): it would answer every unknown path, HTTP ones
    /// included, while rodent answers unknown gRPC calls UNIMPLEMENTED and the rest 404.
    ///
    /// # Panics
    ///
    /// As [`routes`](Rodent::routes) does; `/grpc.health.v1.Health/...` is rodent's too.
    #[track_caller]
    pub fn grpc_routes(mut self, router: Router) -> Self {
        self.app.add_grpc(router);
        self
    }

    /// Adds streaming gRPC methods, as [`grpc_routes`](Rodent::grpc_routes) does but without
    /// the handler timeout: a call ends by the drain (a handler that holds a [`Drain`] learns
    /// of it, and should end its stream), at the client's `grpc-timeout` (DEADLINE_EXCEEDED in
    /// the trailers), or at the latest at the shutdown deadline.
    ///
    /// [`Drain`]: crate::Drain
    ///
    /// # Panics
    ///
    /// As [`routes`](Rodent::routes) does.
    #[track_caller]
    pub fn unbounded_grpc_routes(mut self, router: Router) -> Self {
        self.app.add_unbounded_grpc(router);
        self
    }

    /// Adds routes to the admin API, relative to `/admin` (`.route("/faults", put(..))` is
    /// `PUT /admin/faults`), behind the bearer token `RODENT_ADMIN_TOKEN` as rodent's own admin
    /// routes are: 404 while no token is set, 401 without the right one (compared in constant
    /// time). They are served where the probes and `/metrics` are (the management port, when
    /// `RODENT_MANAGEMENT_PORT` is set), without shedding, the handler timeout or the body
    /// limit.
    ///
    /// # Panics
    ///
    /// On a route under `/readiness`, rodent's own, naming it.
    #[track_caller]
    pub fn admin_routes(mut self, router: Router) -> Self {
        self.app.add_admin(router);
        self
    }

    /// Adds application routes behind the admin API's bearer token (`RODENT_ADMIN_TOKEN`), at
    /// their own paths: 404 while no token is set, 401 without the right one (compared in
    /// constant time), as on `/admin/...`. For what may only be shown to operators but belongs
    /// beside the application's routes (the reference service's `GET /env`). Otherwise they
    /// are routes like those of [`routes`](Rodent::routes): on the main port, behind shedding,
    /// the handler timeout and the body bounds.
    ///
    /// # Panics
    ///
    /// As [`routes`](Rodent::routes) does.
    #[track_caller]
    pub fn protected_routes(mut self, router: Router) -> Self {
        // `route_layer`: the token guards these routes, not the fallback (what no route
        // matches stays the application's 404).
        let guarded = router.route_layer(axum::middleware::from_fn_with_state(
            self.config.clone(),
            crate::http::admin::authorize,
        ));
        self.app.add_bounded(guarded);
        self
    }

    /// Wraps the application's routes in `layer`, as `Router::layer` does, and rodent's answers
    /// on them too: a 503 for a handler past its timeout, for overload or after the listener
    /// closed, a 413, a 408, and the 404 of an unknown route (a CORS layer puts its headers on
    /// all of them). It sits inside the access log and the request id, which see what it
    /// answers. The probes, `/metrics` and the admin API are not wrapped. A layer added later
    /// wraps those added before.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<std::convert::Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.app
            .add_layer(Arc::new(move |router: Router| router.layer(layer.clone())));
        self
    }

    /// Whether error responses of the application's routes with an empty or plain-text body of
    /// 8 KiB or less (axum's rejections, a bare `StatusCode`) are rewritten as problem+json;
    /// they are unless this turns it off. rodent's own answers (timeouts, limits, overload, the
    /// drain, an unknown route) and its own routes, the admin API included, are problem+json
    /// either way.
    pub fn rewrite_error_bodies(mut self, rewrite: bool) -> Self {
        self.app.rewrite_errors(rewrite);
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

    /// The configuration in effect now (a reload may replace it later: hold a
    /// [`Current`] handle, from [`settings`](Self::settings), to follow it).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// A handle that ends the process at once with exit 1, skipping the drain (see [`Crash`]).
    ///
    /// [`Crash`]: crate::Crash
    pub fn crash_handle(&self) -> crate::Crash {
        crate::Crash {
            log: self.logging.clone(),
        }
    }

    /// How trace context crosses HTTP hops (`OTEL_PROPAGATORS`), for handlers that call other
    /// services: [`Propagation::inject`](crate::http::Propagation::inject) writes the request's
    /// trace context on the requests they make, so the services called join its trace.
    pub fn propagation(&self) -> crate::http::Propagation {
        crate::http::Propagation::of(&self.config.load())
    }

    /// A handle on the application's settings, as they are now and after every reload; `None`
    /// when the configuration holds no settings of type `S`. An [`App`](crate::App) hands its
    /// setup this handle already.
    pub fn settings<S: Send + Sync + 'static>(&self) -> Option<Current<S>> {
        Current::new(self.config.clone())
    }

    /// Registers one of the application's metrics, served at `/metrics` after rodent's own:
    ///
    /// ```
    /// use rodent::prometheus_client::metrics::counter::Counter;
    /// # fn example(service: rodent::Rodent) -> rodent::Rodent {
    /// let created = Counter::<u64>::default();
    /// service.metric("notes_created", "Notes created", created.clone())
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// When `name` is not a valid metric name, is in rodent's own namespace (`rodent_*`,
    /// `process_*`) or was registered already: the panic names it, at registration. The
    /// reference service (the application named `rodent`) shares the `rodent_*` namespace, but
    /// not the names rodent exports itself.
    pub fn metric(self, name: &str, help: &str, metric: impl Metric) -> Self {
        if let Err(refused) = self.metrics.register(name, help, metric) {
            panic!("{refused}");
        }
        self
    }

    /// Gives the application's metrics registry to `register`, for what
    /// [`metric`](Self::metric) does not cover: units, sub-registries, collectors. Names in it
    /// must stay out of rodent's own namespace (`rodent_*`, `process_*`).
    pub fn metrics_registry(self, register: impl FnOnce(&mut Registry)) -> Self {
        self.metrics.with_application_registry(register);
        self
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

    /// Serves the management port on this socket, handed down by a predecessor, rather than
    /// binding `RODENT_MANAGEMENT_PORT` (which the predecessor still holds).
    pub(crate) fn management_socket(mut self, socket: std::net::TcpListener) -> Self {
        self.management_socket = Some(socket);
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
        let address = self.config.load().bind_addr();
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
        let budget = ExitBudget::starting_now(self.config.load().shutdown_grace);
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
