//! Which routes are rodent's own, and what answers when no route matches.

use axum::http::{StatusCode, Uri};

use super::problem::Problem;

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

pub(super) async fn not_found(uri: Uri) -> Problem {
    Problem::new(StatusCode::NOT_FOUND).detail(format!("no route for {}", uri.path()))
}
