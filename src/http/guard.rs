//! What stands between a client and an application handler: load shedding, the handler
//! timeout, the body limit and the body stall timeout. All of them read the current
//! configuration per request, so a reload applies to the next request.

use std::future::Future;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Body as _;

use super::body::{BodyVerdict, Limited};
use super::problem::Problem;
use super::shared::Shared;
use crate::config::format_duration;
use crate::observe::metrics::Route;

pub(crate) async fn guard<F, Fut>(state: &Shared, route: &Route, req: Request, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let config = state.config.load_full();
    let Some(permit) = state.admit(config.max_inflight) else {
        state.metrics.shed();
        return Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .title("Overloaded")
            .detail(format!(
                "{} requests are already in flight (RODENT_MAX_INFLIGHT)",
                config.max_inflight
            ))
            .retry_after(1)
            .into_response();
    };

    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > config.body_limit as u64) {
        return too_large(config.body_limit);
    }

    let verdict = Arc::new(BodyVerdict::default());
    // A body that stops arriving is a slow client, like one that stops sending headers: the
    // header-read timeout bounds both. Most requests have no body at all: leave those alone.
    let req = if req.body().is_end_stream() {
        req
    } else {
        let (limit, stall) = (config.body_limit, config.header_read_timeout);
        req.map(|body| Limited::wrap(body, limit, stall, verdict.clone()))
    };

    let Ok(response) = tokio::time::timeout(config.request_timeout, next(req)).await else {
        state.metrics.timeout(route);
        return Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .detail(format!(
                "the handler did not answer within {} (RODENT_REQUEST_TIMEOUT)",
                format_duration(config.request_timeout)
            ))
            .into_response();
    };
    if verdict.too_large() {
        return too_large(config.body_limit);
    }
    if verdict.stalled() {
        return Problem::new(StatusCode::REQUEST_TIMEOUT)
            .detail(format!(
                "the request body stalled for {} (RODENT_HEADER_READ_TIMEOUT)",
                format_duration(config.header_read_timeout)
            ))
            .close_connection()
            .into_response();
    }
    // Admission covers the handler, up to the response head: a body streaming out afterwards
    // costs the application nothing, and counting it would let long streams shed short requests.
    drop(permit);
    response
}

/// The rest of the body is unread, so the connection cannot be reused: close it.
fn too_large(limit: usize) -> Response {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
        .detail(format!(
            "the request body is larger than {limit} bytes (RODENT_BODY_LIMIT)"
        ))
        .close_connection()
        .into_response()
}
