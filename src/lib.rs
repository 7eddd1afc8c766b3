//! # rodent
//!
//! An HTTP service whose process lifecycle is right: configured by environment variables,
//! honest liveness and readiness probes, a drain that drops no request, an exit inside the
//! grace period, and safe as PID 1.
//!
//! An application describes itself with an [`App`] (its name and version, its settings, its
//! tracing layers) and enters through [`App::main`]: rodent does what a process does around the
//! service (the command line, configuration, PID 1 supervision, daemon mode, the PID file,
//! signals, logging, trace export, the exit code), then runs the application's async setup in
//! its runtime, which hands back a [`Rodent`] with the application's routes, readiness checks,
//! hooks and metrics. The `rodent` binary is exactly that, with the reference routes.
//! [`Rodent::run`] and [`Rodent::serve`] run the lifecycle alone, for applications that manage
//! the process themselves.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! fn main() -> std::process::ExitCode {
//!     rodent::app!().main(|service, _settings| async move {
//!         Ok(service.routes(Router::new().route("/hello", get(|| async { "hello" }))))
//!     })
//! }
//! ```
//!
//! ## Map
//!
//! | module | owns |
//! | --- | --- |
//! | `app` | [`App`]: the application's identity and the way in |
//! | [`launch`] | the order of a process's life, from blocked signals to the exit code; the command line |
//! | [`config`] | reading and validating `RODENT_*`, `OTEL_*` and the application's variables, and the env file |
//! | `files` | the files rodent is pointed at: read with bounds, watched for changes |
//! | [`lifecycle`] | the lifecycle [`State`], readiness, hooks, background tasks, [`Event`]s, the [`Drain`] handle and its [`DrainHold`], the exit's budget |
//! | `run` | the [`Rodent`] builder, the loop that advances the lifecycle, and the drain sequence |
//! | `server` | the accept loop and per-connection timeouts, on hyper-util |
//! | `tls` | HTTPS on the main port: the certificate and key, rotated without a restart |
//! | [`http`] | rodent's routes and middleware around the application's, and [`Problem`] errors |
//! | `observe` | logs, Prometheus metrics, OpenTelemetry traces |
//! | `process` | OS signals ([`Signal`]), the PID 1 supervisor, daemon mode, the PID file, systemd, socket activation, the successor of a restart |
//! | `exit` | [`Exit`] codes |
//! | `build` | who is running: [`BuildInfo`] |
//!
//! ## Crates in the API
//!
//! The API speaks in the types of a few crates, re-exported here so that an application uses
//! the same versions: [`axum`] (routes), [`tokio`] (the runtime, and the listener
//! [`Rodent::serve`] takes), [`tower`] (the `Layer` and `Service` of [`Rodent::layer`]),
//! [`prometheus_client`] (the application's metrics), [`tracing_subscriber`] (the application's
//! tracing layers) and [`serde`] (the values of [`Problem::extension`]).

#![warn(missing_docs, unreachable_pub)]

mod app;
mod build;
pub mod config;
mod exit;
mod files;
pub mod http;
pub mod launch;
pub mod lifecycle;
mod observe;
mod process;
mod run;
mod server;
mod tls;

pub use app::App;
pub use build::BuildInfo;
pub use config::Config;
pub use exit::{Crash, Exit};
pub use http::Problem;
pub use lifecycle::{BoxError, Drain, DrainHold, Event, Lifecycle, State};
pub use process::Signal;
pub use run::Rodent;

pub use axum;
pub use prometheus_client;
pub use serde;
pub use tokio;
pub use tower;
pub use tracing_subscriber;
