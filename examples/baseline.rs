//! The bare axum server rodent is measured against: the same `GET /` and `GET /delay/{ms}` as
//! rodent's reference service, a `/readyz` that answers 200 for as long as the listener is open,
//! and `axum::serve(..).with_graceful_shutdown(..)` on SIGTERM or SIGINT. Nothing more: no drain
//! delay, no timeouts, no metrics, no logs. It is what a service gets without rodent.
//!
//! It reads `RODENT_HOST` and `RODENT_PORT` (defaults `0.0.0.0`, `8080`) so the benchmarks and the
//! rolling-restart test start it exactly as they start rodent, and prints one JSON line with the
//! bound address (`{"message":"listening",..}`) and one saying it is ready.
//!
//! ```sh
//! RODENT_PORT=8081 cargo run --release --example baseline
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() {
    let host = std::env::var("RODENT_HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let port = std::env::var("RODENT_PORT").unwrap_or_else(|_| "8080".into());
    let address: SocketAddr = format!("{host}:{port}")
        .parse()
        .expect("RODENT_HOST and RODENT_PORT form a socket address");
    let started = Instant::now();
    let app = Router::new()
        .route("/", get(move || info(started)))
        .route("/delay/{ms}", get(delay))
        .route("/readyz", get(|| async { "ready" }));

    let listener = TcpListener::bind(address).await.expect("the address binds");
    let bound = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!(r#"{{"message":"listening","address":"{bound}"}}"#);
    println!(r#"{{"message":"ready"}}"#);
    // rodent turns Nagle's algorithm off on every connection; so does the baseline, so that the
    // comparison is between the two stacks and not between socket options.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(terminated())
        .await
        .expect("the server runs");
}

/// The same shape as rodent's `GET /`.
async fn info(started: Instant) -> Json<Value> {
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
async fn delay(Path(ms): Path<u64>) -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "delay_ms": ms }))
}

/// SIGTERM (what Docker and Kubernetes send to stop a container) or SIGINT (Ctrl-C).
async fn terminated() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT can be handled");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
