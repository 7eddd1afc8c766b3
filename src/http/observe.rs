//! One span, one access-log line and the request metrics per request, all by matched route.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;
use tracing::Instrument;
use tracing::field::Empty;

use super::Panicked;
use super::body::Guarded;
use crate::metrics::{Route, UNMATCHED, method_label};
use crate::state::ServiceState;

/// The matched route of the current request, interned; later layers label metrics with it.
#[derive(Clone)]
pub(crate) struct RouteLabel(pub Route);

pub(crate) async fn observe(
    State(state): State<Arc<ServiceState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str);
    let (route, in_flight) = state.metrics.in_flight().enter(matched);
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let span = tracing::info_span!(
        target: "rodent::http",
        "HTTP request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = &*route,
        url.path = req.uri().path(),
        http.response.status_code = Empty,
        request_id = %request_id,
    );
    req.extensions_mut().insert(RouteLabel(route.clone()));

    let response = next.run(req).instrument(span.clone()).await;

    let status = response.status().as_u16();
    let latency = started.elapsed();
    state
        .metrics
        .observe_request(method, &route, status, latency);
    if response.extensions().get::<Panicked>().is_some() {
        state.metrics.panic(&route);
    }
    span.record("http.response.status_code", status);
    let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
    // Probes and scrapes arrive every few seconds forever: keep them out of the default log.
    if super::is_exempt(&route) {
        tracing::debug!(target: "rodent::access", parent: &span, method, route = &*route, status, latency_ms, request_id, "request");
    } else {
        tracing::info!(target: "rodent::access", parent: &span, method, route = &*route, status, latency_ms, request_id, "request");
    }
    response.map(|body| Guarded::wrap(body, in_flight))
}
