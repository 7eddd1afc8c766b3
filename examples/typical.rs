//! The service a user would write instead of using rodent, the second reference of the
//! benchmarks: axum with tower-http's usual layers, composed in one `ServiceBuilder` applied
//! once to the router, and one JSON log line per request through tracing-subscriber and
//! tracing-appender's non-blocking writer.
//!
//! - `x-request-id`: set from a UUIDv4 when the request has none (`SetRequestIdLayer` with
//!   `MakeRequestUuid`), and copied to the response (`PropagateRequestIdLayer`);
//! - `TraceLayer`: a span at INFO with the method, URI, version and request id, and one
//!   `finished processing request` event at INFO with the status and latency, which the JSON
//!   formatter writes as one line per request (with its span) to stdout, from
//!   tracing-appender's worker thread. `RUST_LOG` filters it (default `info`);
//! - the handler timeout, 20 s, answered 503 (`TimeoutLayer::with_status_code`), and a 1 MiB
//!   request body limit, answered 413 (`RequestBodyLimitLayer`): rodent's defaults;
//! - panics answered 500 (`CatchPanicLayer`), inside the trace layer so they are logged.
//!
//! It serves the same `GET /` and `GET /delay/{ms}` as rodent's reference service and
//! `examples/baseline.rs`, a `/readyz` that answers 200 while the listener is open, reads
//! `RODENT_HOST` and `RODENT_PORT` like them, and stops gracefully on SIGTERM or SIGINT. No drain
//! delay, no metrics, no connection timeouts: what axum and tower-http give without more work.
//!
//! ```sh
//! RODENT_PORT=8082 cargo run --release --example typical
//! ```

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Level, Span};
use tracing_subscriber::EnvFilter;

mod common;
use common::{address, delay, info, serve};

#[tokio::main]
async fn main() {
    // Held until main returns: dropping it flushes the lines still queued for the writer.
    let (writer, _flush) = tracing_appender::non_blocking(std::io::stdout());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(writer)
        .init();

    let started = Instant::now();
    let middleware = ServiceBuilder::new()
        // Before the trace layer, so that the id is in the request's span.
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(20),
        ))
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .layer(CatchPanicLayer::new());
    let app = Router::new()
        .route("/", get(move || info(started)))
        .route("/delay/{ms}", get(delay))
        .route("/readyz", get(|| async { "ready" }))
        .layer(middleware);

    let listener = TcpListener::bind(address())
        .await
        .expect("the address binds");
    let bound = listener
        .local_addr()
        .expect("a bound listener has an address");
    tracing::info!(address = %bound, "listening");
    serve(listener, app).await;
}

/// The request's span: what the one log line per request carries besides status and latency.
fn request_span<B>(request: &Request<B>) -> Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        version = ?request.version(),
        request_id = id,
    )
}
