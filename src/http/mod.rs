//! The HTTP surface every rodent service has: probes, metrics, the admin API and the middleware
//! stack, wrapped around the application's own routes.
//!
//! What every request goes through, from the outside in:
//! 1. [`observe`]: the request id (set when missing, a UUID, echoed on the response), span,
//!    access log, metrics and in-flight count, by matched route;
//! 2. [`edge`]: the drain rules (`Connection: close` while draining, 503 once the listener is
//!    closed) and problem+json for every error;
//! 3. except on rodent's own operational routes, [`guard`]: load shedding, the handler timeout,
//!    the body limit and the body stall timeout. Probes, `/metrics` and the admin API skip it,
//!    so they answer fast while the application is saturated;
//! 4. panic catching: a panicking handler answers 500 and the process keeps serving.
//!
//! All of it is one tower layer ([`layer`]), applied to every route.

mod admin;
pub(crate) mod body;
mod edge;
mod guard;
mod layer;
mod observe;
pub mod problem;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::probes;
use crate::state::ServiceState;
use problem::Problem;

/// The routes that bypass the post-drain 503: probes and scrapes must keep answering.
pub(crate) fn is_exempt(route: &str) -> bool {
    matches!(
        route,
        "/healthz" | "/readyz" | "/readyz/{check}" | "/metrics"
    )
}

/// The routes that bypass the guard: rodent's own, which must answer while the application is
/// saturated.
pub(crate) fn is_operational(route: &str) -> bool {
    is_exempt(route) || route == "/admin/readiness/{action}"
}

/// Marks a response produced by the panic handler, so `observe` can count it.
#[derive(Clone, Copy)]
pub(crate) struct Panicked;

/// Builds the full router: rodent's own routes and `app`, behind the request layer.
pub(crate) fn router(state: Arc<ServiceState>, app: Router) -> Router {
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/readyz/{check}", get(probes::readyz_one))
        .route("/metrics", get(metrics))
        .route("/admin/readiness/{action}", any(admin::readiness))
        .with_state(state.clone())
        .merge(app)
        .fallback(not_found)
        .layer(layer::RequestLayer(state))
}

/// `GET /metrics`: Prometheus text, or OpenMetrics when the scraper asks for it.
async fn metrics(State(state): State<Arc<ServiceState>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    };
    let body = state.metrics.render(openmetrics);
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Problem {
    Problem::new(StatusCode::NOT_FOUND).detail(format!("no route for {}", uri.path()))
}

pub(crate) fn panic_response(_payload: Box<dyn std::any::Any + Send>) -> Response {
    // The panic hook has already logged the message and location.
    let mut response = Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
        .detail("the handler panicked; the process keeps serving")
        .into_response();
    response.extensions_mut().insert(Panicked);
    response
}
