//! `GET /metrics`: the service's Prometheus registry, as text or OpenMetrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::instance::Instance;
use super::problem::Problem;

/// Scrapes answered at once, each counted until its last byte is sent; one more is answered
/// 503 with `Retry-After`. `/metrics` is exempt from `RODENT_MAX_INFLIGHT`, so that an
/// overloaded service can still be watched, but it is the largest answer rodent gives anyone:
/// without a bound of its own, clients that never read it would each pin a copy. Prometheus
/// scrapes a target one request at a time, so a few scrapers (an HA pair, an agent) stay under.
pub(crate) const MAX_SCRAPES: i64 = 16;

/// `GET /metrics`: Prometheus text, or OpenMetrics when the scraper asks for it.
pub(super) async fn metrics(State(state): State<Arc<Instance>>, headers: HeaderMap) -> Response {
    // This scrape is counted in already.
    if state.metrics.in_flight().on_route("/metrics") > MAX_SCRAPES {
        state.metrics.shed();
        return Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .title("Overloaded")
            .detail(format!(
                "{MAX_SCRAPES} scrapes of /metrics are already being answered"
            ))
            .retry_after(1)
            .into_response();
    }
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
