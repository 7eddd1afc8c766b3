//! # rodent
//!
//! An HTTP service whose process lifecycle is right: configured by environment variables,
//! honest liveness and readiness probes, a drain that drops no request, an exit inside the
//! grace period, and safe as PID 1.
//!
//! [`launch::serve`] is the entry point: it does what a rodent process does around the service
//! (configuration, PID 1 supervision, daemon mode, the PID file, signals, logging, the exit
//! code) and hands you a [`Rodent`] to give your axum routes, readiness checks and hooks. The
//! `rodent` binary is exactly that, with the [`reference`] routes. [`Rodent::run`] and
//! [`Rodent::serve`] run the lifecycle alone, for applications that manage the process
//! themselves.
//!
//! ## Map
//!
//! | module | owns |
//! | --- | --- |
//! | [`launch`] | the order of a process's life, from blocked signals to the exit code |
//! | [`config`] | reading and validating `RODENT_*` variables and the env file |
//! | [`signal`] | OS signals, translated once into [`Signal`] |
//! | [`lifecycle`] | the lifecycle [`State`] and the readiness switch |
//! | [`service`] | the [`Rodent`] builder and the loop that advances the lifecycle |
//! | `shutdown` | the drain sequence and its deadline |
//! | `server` | the accept loop and per-connection timeouts, on hyper-util |
//! | [`http`] | middleware (drain rules, guard, observe) and problem+json errors |
//! | [`probes`] | `/healthz` and `/readyz` |
//! | [`supervisor`] | PID 1: re-exec as a child, reap orphans, forward signals |
//! | [`pidfile`] | one instance per PID file, held with `flock` |
//! | [`daemon`] | `serve --detach`: double fork and an honest report to the launcher |
//! | [`notify`] | systemd readiness notifications (`NOTIFY_SOCKET`) |
//! | [`metrics`] | the Prometheus registry behind `/metrics` |
//! | [`logging`] | the JSON/text log subscriber and its reload handle |
//! | [`telemetry`] | OpenTelemetry traces: `OTEL_*` settings, the export queue, the flush |
//! | [`probe`] | the client behind `rodent probe` |
//! | [`reference`] | the routes of the reference service |
//! | [`exit`] | exit codes |

pub mod build;
pub mod config;
pub mod daemon;
pub mod exit;
mod hooks;
pub mod http;
pub mod launch;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pidfile;
pub mod probe;
pub mod probes;
pub mod reference;
mod server;
pub mod service;
mod shutdown;
pub mod signal;
mod state;
pub mod supervisor;
pub mod telemetry;

pub use config::Config;
pub use exit::Exit;
pub use hooks::{Hook, HookResult};
pub use lifecycle::{Lifecycle, State};
pub use service::{Event, Rodent};
pub use signal::Signal;
pub use telemetry::Telemetry;
