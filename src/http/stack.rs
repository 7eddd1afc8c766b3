//! The request path, composed once: one `ServiceBuilder` stack around the application's routes
//! (one without the handler timeout and the body bounds around those registered without them),
//! and a shorter one around rodent's operational routes, which skip shedding, the handler
//! timeout and the body bounds so that they answer fast while the application is saturated.
//!
//! Each stack is applied with a single `Router::layer` call. axum wraps every route in it (not
//! the router as a whole), which is what lets the access layer see the matched route template.
//! Layers of the application's own go between rodent's answers and the access layer, so that
//! they wrap those answers too (a CORS header on a 503) and the access log sees what they do;
//! the stack is then applied in two calls, around them.
//!
//! The timeout and the body bounds are fixed in a stack; a reload builds a new router from the
//! new configuration and swaps it in whole ([`Routes::rebuild`]). A request holds the router it
//! started on until it is answered, so in-flight requests finish under the old bounds.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{Route, any, get};
use std::convert::Infallible;
use tower::layer::util::{Identity, Stack};
use tower::{Layer, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use super::access::{NewUuid, ObserveLayer};
use super::application::Application;
use super::edge::EdgeLayer;
use super::grpc::{self, GrpcDeadlineLayer};
use super::guard::{BodyAnswerLayer, GuardLayer};
use super::instance::Instance;
use super::problem::panic_response;
use super::{admin, metrics, probes, routes};
use crate::config::Config;

/// The routers the servers serve: swapped whole on reload.
pub(crate) struct Routes {
    shared: Arc<Instance>,
    /// The application's part, to be layered again on reload.
    app: Application,
    /// On the main port: the application's routes, and rodent's unless they have a port of
    /// their own.
    main: Arc<ArcSwap<Router>>,
    /// On the management port, when there is one: rodent's routes alone.
    management: Option<Arc<ArcSwap<Router>>>,
}

impl Routes {
    /// `management`: rodent's routes are served on a port of their own.
    pub(crate) fn new(shared: Arc<Instance>, app: Application, management: bool) -> Self {
        let (main, operational) = build(&shared, &app, &shared.config.load(), management);
        Self {
            shared,
            app,
            main: Arc::new(ArcSwap::from_pointee(main)),
            management: operational.map(|router| Arc::new(ArcSwap::from_pointee(router))),
        }
    }

    /// What the main server reads each request's router from.
    pub(crate) fn main(&self) -> Arc<ArcSwap<Router>> {
        self.main.clone()
    }

    /// What the management server reads each request's router from, when there is one.
    pub(crate) fn management(&self) -> Option<Arc<ArcSwap<Router>>> {
        self.management.clone()
    }

    /// Builds the stacks again from `config` and swaps the new routers in: the next request
    /// gets the new bounds, and every request already in flight keeps the router it started on.
    pub(crate) fn rebuild(&self, config: &Config) {
        let (main, operational) = build(&self.shared, &self.app, config, self.management.is_some());
        self.main.store(Arc::new(main));
        if let (Some(current), Some(operational)) = (&self.management, operational) {
            current.store(Arc::new(operational));
        }
    }
}

/// The main port's router, and the management port's when `management` is set.
fn build(
    shared: &Arc<Instance>,
    app: &Application,
    config: &Config,
    management: bool,
) -> (Router, Option<Router>) {
    let mut application = application(shared, app, config);
    let mut operational = operational(shared, app);
    // gRPC clients check health on the channel they call on, so the health service stays on the
    // main port; Kubernetes' `grpc:` probes, plaintext only, may need the management port.
    if let Some(health) = health(shared, app) {
        application = application.merge(health.clone());
        if management {
            operational = operational.merge(health);
        }
    }
    // Turns every handler into its layered route now, once. A router that never had its state
    // given keeps its handlers as they were written, and makes each one a route, and wraps that
    // route in the whole stack, on every request to it.
    if management {
        let operational = operational.fallback(routes::no_route).with_state(());
        (application.with_state(()), Some(operational))
    } else {
        (operational.merge(application).with_state(()), None)
    }
}

/// The gRPC health service, when the application serves gRPC, behind the probes' stack
/// answering in gRPC.
fn health(shared: &Arc<Instance>, app: &Application) -> Option<Router> {
    if !app.has_grpc() {
        return None;
    }
    let panicked: fn(_) -> Response = grpc::panic_response;
    let stack = observed(shared)
        .layer(EdgeLayer::grpc(shared.clone()))
        .layer(CatchPanicLayer::custom(panicked));
    Some(grpc::health_routes(shared.clone(), app.grpc_services()).layer(stack))
}

/// The request id and the access layer, as [`observed`] stacks them.
type Observed = Stack<
    ObserveLayer,
    Stack<PropagateRequestIdLayer, Stack<SetRequestIdLayer<NewUuid>, Identity>>,
>;

/// What every request goes through first, whatever its route: the request id and the access
/// layer.
fn observed(shared: &Arc<Instance>) -> ServiceBuilder<Observed> {
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(NewUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(ObserveLayer(shared.clone()))
}

/// rodent's operational routes: the probes, `/metrics` and the admin API (rodent's routes and
/// the application's, behind the bearer token), without shedding, the handler timeout or the
/// body bounds.
///
/// | layer | from |
/// | --- | --- |
/// | `SetRequestId`, `PropagateRequestId`: `x-request-id` kept or made, echoed | tower-http |
/// | `Observe`: span, access log, metrics, in-flight count | rodent |
/// | `Edge`: drain rules, problem+json for every error | rodent |
/// | `CatchPanic`: a panicking handler answers 500 | tower-http |
/// | the bearer token, on the admin API | rodent |
fn operational(shared: &Arc<Instance>, app: &Application) -> Router {
    let panicked: fn(_) -> Response = panic_response;
    // rodent's surface, the admin API included, is problem+json whatever the application chose
    // for its own routes.
    let stack = observed(shared)
        .layer(EdgeLayer::new(shared.clone(), true))
        .layer(CatchPanicLayer::custom(panicked));
    let mut admin_api = Router::new()
        .route(
            &format!("{}/{{action}}", routes::ADMIN_OWN),
            any(admin::readiness),
        )
        .with_state(shared.clone());
    if app.admin.has_routes() {
        admin_api = admin_api.merge(app.admin.clone());
    }
    let admin_api = admin_api.layer(axum::middleware::from_fn_with_state(
        shared.config.clone(),
        admin::authorize,
    ));
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/readyz/{check}", get(probes::readyz_one))
        .route("/metrics", get(metrics::metrics))
        .with_state(shared.clone())
        .nest("/admin", admin_api)
        .layer(stack)
}

/// The application's routes, each behind its stack, then the application's own layers, then
/// the request id and the access layer. Within the stacks, from the outside in:
///
/// | layer | from | bounded | unbounded |
/// | --- | --- | --- | --- |
/// | `Edge`: drain rules, problem+json for every error | rodent | yes | yes |
/// | `Guard`: load shedding; rodent's answers for the refusals below | rodent | yes | yes |
/// | `CatchPanic`: a panicking handler answers 500 | tower-http | yes | yes |
/// | `Timeout`: the handler timeout, 503 | tower-http | yes | |
/// | `RequestBodyLimit`: the body limit, 413 | tower-http | yes | |
/// | `RequestBodyTimeout`: a body that stalls, 408 | tower-http | yes | |
/// | `Verdict`: 413 or 408 for a body cut short, whatever the handler answered | rodent | yes | |
///
/// Without layers of the application's, each stack is one `Router::layer` call with the
/// request id and the access layer in it: each call boxes every route once more.
fn application(shared: &Arc<Instance>, app: &Application, config: &Config) -> Router {
    let panicked: fn(_) -> Response = panic_response;
    let bounded = ServiceBuilder::new()
        .layer(EdgeLayer::new(shared.clone(), app.rewrite_errors))
        .layer(GuardLayer::bounded(shared.clone(), config))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(config.body_limit))
        .layer(RequestBodyTimeoutLayer::new(config.header_read_timeout))
        .layer(BodyAnswerLayer::new(config))
        // RODENT_BODY_LIMIT (above) is the limit: axum's fixed 2 MB default for its extractors
        // would otherwise refuse larger bodies first.
        .layer(DefaultBodyLimit::disable());
    let unbounded = ServiceBuilder::new()
        .layer(EdgeLayer::new(shared.clone(), app.rewrite_errors))
        .layer(GuardLayer::unbounded(shared.clone(), config))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(DefaultBodyLimit::disable());
    let own_layers = !app.layers.is_empty();
    let mut router = behind(shared, &app.bounded, bounded, own_layers);
    // The bounded routes are merged into the others: when none has a fallback of the
    // application's, `merge` keeps its argument's, so unknown routes stay bounded.
    if app.unbounded.has_routes() {
        router = behind(shared, &app.unbounded, unbounded, own_layers).merge(router);
    }
    if app.grpc.has_routes() {
        let unary = grpc_stack(
            shared,
            config,
            GrpcDeadlineLayer::unary(config.request_timeout),
        );
        router = behind(shared, &app.grpc, unary, own_layers).merge(router);
    }
    if app.unbounded_grpc.has_routes() {
        let streaming = grpc_stack(shared, config, GrpcDeadlineLayer::streaming());
        router = behind(shared, &app.unbounded_grpc, streaming, own_layers).merge(router);
    }
    if own_layers {
        for layer in &app.layers {
            router = layer(router);
        }
        router = router.layer(observed(shared));
    }
    router
}

/// The stack of gRPC routes: as the unbounded one, answering in gRPC, with the call's deadline
/// in place of the handler timeout.
///
/// | layer | from |
/// | --- | --- |
/// | `Edge`: drain rules; UNAVAILABLE after the listener closed | rodent |
/// | `Guard`: load shedding, UNAVAILABLE | rodent |
/// | `CatchPanic`: a panicking handler answers INTERNAL | tower-http |
/// | `GrpcDeadline`: DEADLINE_EXCEEDED past the handler timeout (unary calls) or `grpc-timeout` | rodent |
fn grpc_stack(
    shared: &Arc<Instance>,
    config: &Config,
    deadline: GrpcDeadlineLayer,
) -> ServiceBuilder<GrpcStack> {
    let panicked: fn(_) -> Response = grpc::panic_response;
    ServiceBuilder::new()
        .layer(EdgeLayer::grpc(shared.clone()))
        .layer(GuardLayer::grpc(shared.clone(), config))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(deadline)
}

/// The layers [`grpc_stack`] stacks.
type GrpcStack = Stack<
    GrpcDeadlineLayer,
    Stack<
        CatchPanicLayer<fn(Box<dyn std::any::Any + Send>) -> Response>,
        Stack<GuardLayer, Stack<EdgeLayer, Identity>>,
    >,
>;

/// `routes` behind `stack`, with the request id and the access layer outside it, unless layers
/// of the application's own go between (they are applied, then those, around everything).
fn behind<L>(shared: &Arc<Instance>, routes: &Router, stack: L, own_layers: bool) -> Router
where
    L: Layer<Route> + Clone + Send + Sync + 'static,
    L::Service:
        Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    if own_layers {
        routes.clone().layer(stack)
    } else {
        routes.clone().layer(observed(shared).layer(stack))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{HeaderValue, Request};
    use tower::ServiceExt;
    use tower_http::cors::CorsLayer;

    use super::*;
    use crate::lifecycle::readiness::Readiness;
    use crate::lifecycle::{Lifecycle, State};
    use crate::observe::logging::AccessLog;
    use crate::observe::metrics::Metrics;

    const ORIGIN: &str = "https://app.example";

    fn shared() -> Arc<Instance> {
        let lifecycle = Lifecycle::new();
        let config = Config::from_vars([("RODENT_PID_FILE", "")]).unwrap();
        let build = config.build_info();
        Arc::new(Instance::new(
            Arc::new(arc_swap::ArcSwap::from_pointee(config)),
            lifecycle.clone(),
            Arc::new(Metrics::new(lifecycle, build)),
            Readiness::new(Vec::new()),
            Arc::new(AccessLog::through_tracing()),
        ))
    }

    async fn request(router: &Router, path: &str) -> Response {
        let request = Request::get(path)
            .header("origin", ORIGIN)
            .body(Body::empty())
            .unwrap();
        router.clone().oneshot(request).await.unwrap()
    }

    /// After the listener closed, a request that still reaches the process is refused inside
    /// the application's layers, as every other answer of rodent's is.
    #[tokio::test]
    async fn the_drain_s_503_is_wrapped_by_the_application_s_layer() {
        let shared = shared();
        let mut app = Application::default();
        app.add_bounded(Router::new().route("/", get(|| async { "home" })));
        let cors = CorsLayer::new().allow_origin(HeaderValue::from_static(ORIGIN));
        app.add_layer(Arc::new(move |router: Router| router.layer(cors.clone())));
        let routes = Routes::new(shared.clone(), app, false);
        let router = Router::clone(&routes.main().load());
        assert_eq!(request(&router, "/").await.status(), StatusCode::OK);

        shared.lifecycle.advance(State::Ready);
        shared.lifecycle.advance(State::Draining);
        shared.lifecycle.advance(State::Stopping);
        let refused = request(&router, "/").await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_eq!(refused.headers()["access-control-allow-origin"], ORIGIN);
        // The probes answer, and are not the application's to wrap.
        let probe = request(&router, "/healthz").await;
        assert_eq!(probe.status(), StatusCode::OK);
        assert!(!probe.headers().contains_key("access-control-allow-origin"));
    }

    /// A route with the handler timeout knows its deadline: the timeout from when the request
    /// arrived. A route without has none.
    #[tokio::test]
    async fn bounded_routes_have_a_deadline_and_unbounded_ones_none() {
        use super::super::deadline::Deadline;
        let shared = shared();
        let timeout = shared.config.load().request_timeout;
        let mut app = Application::default();
        app.add_bounded(Router::new().route(
            "/bounded",
            get(|deadline: Deadline| async move { deadline.remaining().as_millis().to_string() }),
        ));
        app.add_unbounded(Router::new().route(
            "/unbounded",
            get(|deadline: Option<Deadline>| async move { deadline.is_some().to_string() }),
        ));
        let routes = Routes::new(shared, app, false);
        let router = Router::clone(&routes.main().load());
        let left = request(&router, "/bounded").await;
        let left: u128 = String::from_utf8(
            axum::body::to_bytes(left.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap()
        .parse()
        .unwrap();
        assert!(
            left <= timeout.as_millis() && left + 1000 > timeout.as_millis(),
            "{left}"
        );
        let unbounded = request(&router, "/unbounded").await;
        let body = axum::body::to_bytes(unbounded.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], b"false");
    }

    /// With a management port, the main port has the application's routes alone, and the
    /// management port rodent's alone, with rodent's 404 for anything else.
    #[tokio::test]
    async fn a_management_port_takes_rodent_s_routes_away_from_the_main_one() {
        let shared = shared();
        let mut app = Application::default();
        app.add_bounded(Router::new().route("/", get(|| async { "home" })));
        app.add_admin(Router::new().route("/jobs", get(|| async { "jobs" })));
        let routes = Routes::new(shared, app, true);
        let main = Router::clone(&routes.main().load());
        let management = Router::clone(&routes.management().unwrap().load());
        assert_eq!(request(&main, "/").await.status(), StatusCode::OK);
        assert_eq!(
            request(&main, "/healthz").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            request(&main, "/metrics").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            request(&management, "/healthz").await.status(),
            StatusCode::OK
        );
        assert_eq!(
            request(&management, "/metrics").await.status(),
            StatusCode::OK
        );
        // No token configured: the admin API, the application's routes on it included, is 404.
        let jobs = request(&management, "/admin/jobs").await;
        assert_eq!(jobs.status(), StatusCode::NOT_FOUND);
        let unknown = request(&management, "/").await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            unknown.headers()["content-type"],
            super::super::problem::CONTENT_TYPE
        );
    }
}
