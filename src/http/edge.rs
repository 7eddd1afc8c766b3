//! The drain rules and the error format, applied to every response.

use std::future::Future;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use http_body::Body as _;

use super::problem::{self, Problem};
use super::routes::is_exempt;
use super::shared::Shared;
use crate::lifecycle::State as LifecycleState;

/// Bodies up to this size are turned into problem+json; larger ones are left alone.
const MAX_PLAIN_ERROR: u64 = 8 * 1024;

pub(crate) async fn edge<F, Fut>(state: &Shared, route: &str, mut req: Request, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    // HTTP/2 forbids `Connection`; its equivalent is the GOAWAY the server sends at drain.
    let http1 = req.version() <= Version::HTTP_11;
    if state.lifecycle.state() == LifecycleState::Stopping
        && !is_exempt(route)
        && !state.listener_outlives()
    {
        // The listener is closed; this request raced in on an open connection. (When the
        // socket lives on in another process, it is served instead, with `Connection: close`
        // below: the client's next connection lands on that process.)
        let refused = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .detail("this instance is shutting down; retry on another")
            .retry_after(1);
        let refused = if http1 {
            refused.close_connection()
        } else {
            refused
        };
        return refused.into_response();
    }
    req.extensions_mut().insert(state.lifecycle.clone());

    let mut response = as_problem(next(req).await).await;
    // Read the state after the handler: a request that began before the signal still tells its
    // client to reconnect, and the reconnection lands on another instance.
    if http1 && state.lifecycle.state() >= LifecycleState::Draining {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Turns an error answered with an empty or plain-text body (axum's rejections, a bare
/// `StatusCode`, a 405) into problem+json, keeping its headers (`Allow`, `Retry-After`).
async fn as_problem(response: Response) -> Response {
    if response.status().as_u16() < 400 {
        return response;
    }
    let plain = match response.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v.to_str().is_ok_and(|ct| ct.starts_with("text/plain")),
    };
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_PLAIN_ERROR);
    if !plain || !small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR as usize)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&text).trim().to_string();
    let mut problem = Problem::new(parts.status);
    if !detail.is_empty() {
        problem = problem.detail(detail);
    }
    let (fresh, body): (_, Body) = problem.into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(problem::CONTENT_TYPE),
    );
    drop(fresh);
    Response::from_parts(parts, body)
}
