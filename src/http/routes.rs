//! Which routes are rodent's own, and what answers when no route matches.

use axum::http::{StatusCode, Uri};

use super::problem::Problem;

/// The routes that bypass the post-drain 503, and log at debug: probes and scrapes must keep
/// answering, and arrive too often to log by default.
pub(crate) fn is_exempt(route: &str) -> bool {
    matches!(
        route,
        "/healthz" | "/readyz" | "/readyz/{check}" | "/metrics"
    )
}

pub(super) async fn not_found(uri: Uri) -> Problem {
    Problem::new(StatusCode::NOT_FOUND).detail(format!("no route for {}", uri.path()))
}
