//! The routes of the `rodent` reference service: what platform teams call to test rollouts,
//! probes, timeouts and telemetry. An embedding application brings its own routes instead.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::build;
use crate::http::Problem;
use crate::lifecycle::Lifecycle;

/// How often `/stream/{ms}` sends a line.
const STREAM_EVERY: Duration = Duration::from_millis(100);

pub fn routes() -> Router {
    Router::new()
        .route("/", get(info))
        .route("/version", get(version))
        .route("/delay/{ms}", get(delay))
        .route("/status/{code}", get(status))
        .route("/echo", post(echo))
        .route("/panic", get(panic))
        .route("/stream/{ms}", get(stream))
}

/// `GET /`: who is answering.
async fn info(Extension(lifecycle): Extension<Lifecycle>) -> Json<serde_json::Value> {
    Json(json!({
        "name": build::NAME,
        "version": build::VERSION,
        "instance": instance(),
        "pid": std::process::id(),
        "state": lifecycle.state().as_str(),
        "uptime_seconds": lifecycle.uptime().as_secs_f64(),
    }))
}

/// The host name: the pod name in Kubernetes, the container id in Docker.
fn instance() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `GET /version`.
async fn version() -> Json<build::BuildInfo> {
    Json(build::INFO)
}

/// `GET /delay/{ms}`: answers after `ms` milliseconds; the request timeout still applies.
async fn delay(Path(ms): Path<u64>) -> Json<serde_json::Value> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "delay_ms": ms }))
}

/// `GET /status/{code}`: answers with that status.
async fn status(Path(code): Path<u16>) -> Response {
    let Some(status) = StatusCode::from_u16(code)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
    else {
        return Problem::new(StatusCode::BAD_REQUEST)
            .detail(format!(
                "{code} is not a status this route can answer (200 to 599)"
            ))
            .into_response();
    };
    if status.is_client_error() || status.is_server_error() {
        return Problem::new(status)
            .detail("requested through /status")
            .into_response();
    }
    if matches!(code, 204 | 304) {
        return status.into_response();
    }
    (status, Json(json!({ "status": code }))).into_response()
}

/// `POST /echo`: the body back, with its content type; the body limit applies.
async fn echo(headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /panic`: the handler panics; the client gets 500 and the process keeps serving.
async fn panic() -> &'static str {
    panic!("GET /panic was requested");
}

/// `GET /stream/{ms}`: a line every 100 ms for `ms` milliseconds. The request timeout bounds
/// only the wait for the response head, so this is the way to hold a long-lived response open
/// (as server-sent events or a download would) and see what shutdown does with it.
async fn stream(Path(ms): Path<u64>) -> Response {
    let lines = ms.div_ceil(STREAM_EVERY.as_millis() as u64);
    let body = futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= lines {
            return None;
        }
        if sent > 0 {
            tokio::time::sleep(STREAM_EVERY).await;
        }
        let line = Bytes::from(format!("{{\"line\":{}}}\n", sent + 1));
        Some((Ok::<_, Infallible>(line), sent + 1))
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        Body::from_stream(body),
    )
        .into_response()
}
