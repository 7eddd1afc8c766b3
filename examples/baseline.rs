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

use std::time::Instant;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

mod common;
use common::{address, delay, info, serve};

#[tokio::main]
async fn main() {
    let address = address();
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
    serve(listener, app).await;
}
