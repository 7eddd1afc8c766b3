//! An application that embeds rodent's lifecycle: its own route, a readiness check and a
//! shutdown hook, with rodent's probes, metrics, drain and exit codes around them.
//!
//! ```sh
//! cargo run --example embed
//! curl localhost:8080/disk        # the application's route
//! curl localhost:8080/readyz?verbose
//! ```
//!
//! `/disk` runs `df` as a child process and reports its exit status: under rodent's PID 1
//! supervisor the service is not PID 1, so child exit statuses stay its own even while orphans
//! are being reaped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::{Json, Router};
use rodent::logging::Logging;
use rodent::supervisor::{self, Role};
use rodent::{Config, Exit, Rodent};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct DiskQuery {
    path: Option<String>,
}

/// `GET /disk?path=/`: free space on a filesystem, from `df`.
async fn disk(Query(query): Query<DiskQuery>) -> Json<Value> {
    let path = query.path.unwrap_or_else(|| "/".to_string());
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
    rodent::signal::block_early().expect("signals can be blocked");
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return Exit::Config.into();
        }
    };
    // As PID 1 this process only supervises; the service below runs in its child.
    let link = match supervisor::role(&config) {
        Role::Supervisor(supervisor) => return supervisor.run(&config).into(),
        Role::Service(link) => link,
    };
    // Signal handlers before any thread, so every thread and every process they spawn (`df`)
    // starts with signals unblocked.
    let signals = rodent::signal::listen().expect("signal handlers can be installed");
    let logging = Logging::init(&config.log, config.log_format, Vec::new());

    // Stands in for a connection pool: ready once "connected", closed at shutdown.
    let connected = Arc::new(AtomicBool::new(false));
    let check = connected.clone();
    let close = connected.clone();

    let mut service = Rodent::new(config)
        .logging(logging.handle())
        .routes(Router::new().route("/disk", get(disk)))
        .on_startup("connect", Duration::from_secs(5), move || async move {
            connected.store(true, Ordering::Release);
            Ok(())
        })
        .readiness_check("database", move || {
            let connected = check.load(Ordering::Acquire);
            async move {
                if connected {
                    Ok(())
                } else {
                    Err("not connected".to_string())
                }
            }
        })
        .on_shutdown("disconnect", Duration::from_secs(2), move || async move {
            close.store(false, Ordering::Release);
            tracing::info!("database connection closed");
            Ok(())
        });

    if let Some(link) = link {
        service = service.supervised_by(link);
    }

    let runtime = tokio::runtime::Runtime::new().expect("the runtime starts");
    let exit = runtime.block_on(service.signals(signals).run());
    runtime.shutdown_timeout(Duration::from_millis(100));
    exit.into()
}
