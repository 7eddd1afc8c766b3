//! What the bare axum references (`baseline.rs`, `typical.rs`) share with rodent's reference
//! service, so that the benchmarks compare stacks around the same handlers: the address they
//! read from `RODENT_HOST`/`RODENT_PORT`, `GET /`, `GET /delay/{ms}`, and how they serve.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// `RODENT_HOST` and `RODENT_PORT` (defaults `0.0.0.0`, `8080`), as rodent reads them.
pub fn address() -> SocketAddr {
    let host = std::env::var("RODENT_HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let port = std::env::var("RODENT_PORT").unwrap_or_else(|_| "8080".into());
    format!("{host}:{port}")
        .parse()
        .expect("RODENT_HOST and RODENT_PORT form a socket address")
}

/// The same shape as rodent's `GET /`.
pub async fn info(started: Instant) -> Json<Value> {
    Json(json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "instance": nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_else(|| "unknown".to_string()),
        "pid": std::process::id(),
        "state": "ready",
        "uptime_seconds": started.elapsed().as_secs_f64(),
    }))
}

/// The same as rodent's `GET /delay/{ms}`: answers after that many milliseconds.
pub async fn delay(Path(ms): Path<u64>) -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "delay_ms": ms }))
}

/// Serves `app` until SIGTERM or SIGINT, then finishes the requests in flight
/// (`axum::serve(..).with_graceful_shutdown(..)`). rodent turns Nagle's algorithm off on every
/// connection; so do the references, so that the comparison is between the stacks and not
/// between socket options.
pub async fn serve(listener: TcpListener, app: Router) {
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(terminated())
        .await
        .expect("the server runs");
}

/// SIGTERM (what Docker and Kubernetes send to stop a container) or SIGINT (Ctrl-C).
pub async fn terminated() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT can be handled");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
