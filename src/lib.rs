//! # rodent
//!
//! An HTTP service whose process lifecycle is right: configured by environment variables,
//! honest liveness and readiness probes, a drain that drops no request, an exit inside the
//! grace period, and safe as PID 1.
//!
//! [`launch::main`] is the entry point: it does what a rodent process does around the service
//! (the command line, configuration, PID 1 supervision, daemon mode, the PID file, signals,
//! logging, trace export, the exit code) and hands you a [`Rodent`] to give your axum routes,
//! readiness checks and hooks. The `rodent` binary is exactly that, with the [`reference`]
//! routes. [`launch::serve`] is the same without the command line; [`Rodent::run`] and
//! [`Rodent::serve`] run the lifecycle alone, for applications that manage the process
//! themselves.
//!
//! ## Map
//!
//! | module | owns |
//! | --- | --- |
//! | [`launch`] | the order of a process's life, from blocked signals to the exit code; the command line |
//! | [`config`] | reading and validating `RODENT_*` and `OTEL_*` variables and the env file |
//! | [`lifecycle`] | the lifecycle [`State`], readiness, hooks, background tasks, [`Event`]s, the [`Drain`] handle and its [`DrainHold`], the exit's budget |
//! | `run` | the [`Rodent`] builder, the loop that advances the lifecycle, and the drain sequence |
//! | `server` | the accept loop and per-connection timeouts, on hyper-util |
//! | [`http`] | rodent's routes and middleware around the application's, and [`Problem`] errors |
//! | `observe` | logs, Prometheus metrics, OpenTelemetry traces |
//! | `process` | OS signals ([`Signal`]), the PID 1 supervisor, daemon mode, the PID file, systemd, socket activation, the successor of a restart |
//! | [`reference`] | the routes of the reference service |
//! | `exit` | [`Exit`] codes |
//! | `build` | what was built: version and commit |

mod build;
pub mod config;
mod exit;
pub mod http;
pub mod launch;
pub mod lifecycle;
mod observe;
mod process;
pub mod reference;
mod run;
mod server;

pub use config::Config;
pub use exit::Exit;
pub use http::Problem;
pub use lifecycle::{BoxError, Drain, DrainHold, Event, Lifecycle, State};
pub use process::Signal;
pub use run::Rodent;
