//! The request path, composed once: one `ServiceBuilder` stack around the application's routes,
//! and a shorter one around rodent's operational routes, which skip shedding, the handler
//! timeout and the body bounds so that they answer fast while the application is saturated.
//!
//! Each stack is applied with a single `Router::layer` call. axum wraps every route in it (not
//! the router as a whole), which is what lets the access layer see the matched route template.
//!
//! The timeout and the body bounds are fixed in a stack; a reload builds a new router from the
//! new configuration and swaps it in whole ([`Routes::rebuild`]). A request holds the router it
//! started on until it is answered, so in-flight requests finish under the old bounds.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use super::access::{NewUuid, ObserveLayer};
use super::edge::EdgeLayer;
use super::guard::{BodyAnswerLayer, GuardLayer};
use super::instance::Instance;
use super::problem::panic_response;
use super::{admin, metrics, probes, routes};
use crate::config::Config;

/// The router every connection serves: swapped whole on reload.
pub(crate) struct Routes {
    shared: Arc<Instance>,
    /// The application's routes as given, to be layered again on reload.
    app: Router,
    current: Arc<ArcSwap<Router>>,
}

impl Routes {
    pub(crate) fn new(shared: Arc<Instance>, app: Router) -> Self {
        let router = build(&shared, app.clone(), &shared.config.load());
        Self {
            shared,
            app,
            current: Arc::new(ArcSwap::from_pointee(router)),
        }
    }

    /// What the server reads each request's router from.
    pub(crate) fn current(&self) -> Arc<ArcSwap<Router>> {
        self.current.clone()
    }

    /// Builds the stacks again from `config` and swaps the new router in: the next request
    /// gets the new bounds, and every request already in flight keeps the router it started on.
    pub(crate) fn rebuild(&self, config: &Config) {
        let router = build(&self.shared, self.app.clone(), config);
        self.current.store(Arc::new(router));
    }
}

/// rodent's routes and `app`, each behind its stack. From the outside in:
///
/// | layer | from | operational | application |
/// | --- | --- | --- | --- |
/// | `SetRequestId`, `PropagateRequestId`: `x-request-id` kept or made, echoed | tower-http | yes | yes |
/// | `Observe`: span, access log, metrics, in-flight count | rodent | yes | yes |
/// | `Edge`: drain rules, problem+json for every error | rodent | yes | yes |
/// | `Guard`: load shedding; rodent's answers for the refusals below | rodent | | yes |
/// | `CatchPanic`: a panicking handler answers 500 | tower-http | yes | yes |
/// | `Timeout`: the handler timeout, 503 | tower-http | | yes |
/// | `RequestBodyLimit`: the body limit, 413 | tower-http | | yes |
/// | `RequestBodyTimeout`: a body that stalls, 408 | tower-http | | yes |
/// | `BodyAnswer`: 413 or 408 for a body cut short, whatever the handler answered | rodent | | yes |
fn build(shared: &Arc<Instance>, app: Router, config: &Config) -> Router {
    let panicked: fn(_) -> Response = panic_response;
    let operational = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(NewUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(ObserveLayer(shared.clone()))
        .layer(EdgeLayer(shared.clone()))
        .layer(CatchPanicLayer::custom(panicked));
    let application = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(NewUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(ObserveLayer(shared.clone()))
        .layer(EdgeLayer(shared.clone()))
        .layer(GuardLayer::new(shared.clone(), config))
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
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/readyz/{check}", get(probes::readyz_one))
        .route("/metrics", get(metrics::metrics))
        .route("/admin/readiness/{action}", any(admin::readiness))
        .with_state(shared.clone())
        .layer(operational)
        .merge(app.fallback(routes::not_found).layer(application))
        // Turns every handler into its layered route now, once. A router that never had its
        // state given keeps its handlers as they were written, and makes each one a route, and
        // wraps that route in the whole stack, on every request to it.
        .with_state(())
}
