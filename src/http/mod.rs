//! The HTTP surface every rodent service has: probes, metrics, the admin API and the middleware
//! stack, wrapped around the application's own routes.
//!
//! What every request goes through, from the outside in:
//! 1. `access`: the request id (set when missing, a UUID, echoed on the response), span,
//!    access log, metrics and in-flight count, by matched route;
//! 2. `edge`: the drain rules (`Connection: close` while draining, 503 once the listener is
//!    closed) and problem+json for every error;
//! 3. except on rodent's own operational routes, `guard`: load shedding, the handler timeout,
//!    the body limit and the body stall timeout. Probes, `/metrics` and the admin API skip it,
//!    so they answer fast while the application is saturated;
//! 4. panic catching: a panicking handler answers 500 and the process keeps serving.
//!
//! All of it is one tower layer (`layer`), applied to every route.

mod access;
mod admin;
mod body;
mod edge;
mod guard;
mod layer;
mod metrics;
mod probes;
mod problem;
mod routes;
mod shared;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};

pub use problem::Problem;
pub(crate) use shared::Shared;

/// Builds the full router: rodent's own routes and `app`, behind the request layer.
pub(crate) fn router(state: Arc<Shared>, app: Router) -> Router {
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/readyz/{check}", get(probes::readyz_one))
        .route("/metrics", get(metrics::metrics))
        .route("/admin/readiness/{action}", any(admin::readiness))
        .with_state(state.clone())
        .merge(app)
        .fallback(routes::not_found)
        .layer(layer::RequestLayer(state))
}
