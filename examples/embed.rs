//! An application that embeds rodent's lifecycle: its own name, setting, metric and routes, a
//! readiness check and a shutdown hook, with rodent's probes, metrics, drain and exit codes
//! around them.
//!
//! ```sh
//! cargo run --example embed
//! curl localhost:8080/disk        # the application's route
//! curl localhost:8080/propagate   # what a call to another service would carry
//! curl localhost:8080/readyz?verbose
//! ```
//!
//! `/disk` runs `df` as a child process and reports its exit status: under rodent's PID 1
//! supervisor the service is not PID 1, so child exit statuses stay its own even while orphans
//! are being reaped.
//!
//! `/propagate` shows how a handler passes its trace on to the services it calls: with traces
//! exported, OpenTelemetry's global propagator (the one `OTEL_PROPAGATORS` configures) writes
//! the request's context, baggage included, into the outgoing headers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use rodent::config::{Current, Reader, Var, parse};
use rodent::launch::Options;
use rodent::prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use serde_json::{Value, json};

/// The application's own settings, validated with rodent's (exit 78 naming the variable),
/// shown by `config` and re-read on SIGHUP.
struct Settings {
    /// `EMBED_DISK_PATH`: what `/disk` reports on by default; a reload applies a new one.
    disk_path: String,
}

impl Settings {
    fn read(vars: &mut Reader) -> Self {
        vars.prefix("EMBED_");
        Self {
            disk_path: vars.get(Var::new("EMBED_DISK_PATH", "/", parse::text).reloadable()),
        }
    }
}

/// What the handlers share: the settings as they are now, and a counter of the application's.
#[derive(Clone)]
struct App {
    settings: Current<Settings>,
    disk_requests: Counter,
}

#[derive(Deserialize)]
struct DiskQuery {
    path: Option<String>,
}

/// `GET /propagate`: the headers a call from this handler to another service would carry.
async fn propagate() -> Json<HashMap<String, String>> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    // The handler runs inside rodent's server span, which continues the caller's trace.
    let cx = tracing::Span::current().context();
    let mut headers = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut headers));
    Json(headers)
}

/// `GET /disk?path=/`: free space on a filesystem, from `df`.
async fn disk(State(app): State<App>, Query(query): Query<DiskQuery>) -> Json<Value> {
    app.disk_requests.inc();
    let path = query
        .path
        .unwrap_or_else(|| app.settings.get().disk_path.clone());
    let output = tokio::process::Command::new("df")
        .args(["-P", "-k", &path])
        .output()
        .await;
    Json(match output {
        Ok(output) => json!({
            "path": path,
            "exit_status": output.status.code(),
            "report": String::from_utf8_lossy(&output.stdout),
        }),
        Err(e) => json!({ "path": path, "error": e.to_string() }),
    })
}

fn main() -> std::process::ExitCode {
    // Everything a rodent process does around the service — configuration (exit 78), the PID 1
    // supervisor, the PID file, signals, logging, the exit code — comes with `serve`; the setup
    // runs in rodent's runtime once all of it is in place.
    rodent::App::new("embed", env!("CARGO_PKG_VERSION"))
        .settings(Settings::read)
        .serve(Options::default(), |service, settings| async move {
            // Stands in for a connection pool, opened in the setup: ready once "connected",
            // closed at shutdown.
            let connected = Arc::new(AtomicBool::new(true));
            let check = connected.clone();
            let app = App {
                settings,
                disk_requests: Counter::default(),
            };
            Ok(service
                .metric(
                    "embed_disk_requests",
                    "Requests to /disk",
                    app.disk_requests.clone(),
                )
                .routes(
                    Router::new()
                        .route("/disk", get(disk))
                        .route("/propagate", get(propagate))
                        .with_state(app),
                )
                .readiness_check("database", move || {
                    let connected = check.load(Ordering::Acquire);
                    async move {
                        if connected {
                            Ok(())
                        } else {
                            Err("not connected".into())
                        }
                    }
                })
                .on_shutdown("disconnect", Duration::from_secs(2), move || async move {
                    connected.store(false, Ordering::Release);
                    tracing::info!("database connection closed");
                    Ok(())
                }))
        })
}
