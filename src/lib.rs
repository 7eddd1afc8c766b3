//! # rodent
//!
//! An HTTP service whose process lifecycle is right: configured by environment variables,
//! honest liveness and readiness probes, a drain that drops no request, an exit inside the
//! grace period, and safe as PID 1.
//!
//! [`Rodent`] is the entry point: give it a [`Config`], your axum routes, readiness checks and
//! hooks, and [`run`](Rodent::run) it. The `rodent` binary is exactly that, with the
//! [`reference`] routes.
//!
//! ## Map
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | reading and validating `RODENT_*` variables and the env file |
//! | [`signal`] | OS signals, translated once into [`Signal`] |
//! | [`lifecycle`] | the lifecycle [`State`] and the readiness switch |
//! | [`service`] | the [`Rodent`] builder and the loop that advances the lifecycle |
//! | `shutdown` | the drain sequence and its deadline |
//! | `server` | the accept loop and per-connection timeouts, on hyper-util |
//! | [`http`] | middleware (drain rules, guard, observe) and problem+json errors |
//! | [`probes`] | `/healthz` and `/readyz` |
//! | [`metrics`] | the Prometheus registry behind `/metrics` |
//! | [`logging`] | the JSON/text log subscriber and its reload handle |
//! | [`telemetry`] | OpenTelemetry traces: `OTEL_*` settings, the export queue, the flush |
//! | [`probe`] | the client behind `rodent probe` |
//! | [`reference`] | the routes of the reference service |
//! | [`exit`] | exit codes |

pub mod build;
pub mod config;
pub mod exit;
mod hooks;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod probes;
pub mod reference;
mod server;
pub mod service;
mod shutdown;
pub mod signal;
mod state;
pub mod telemetry;

pub use config::Config;
pub use exit::Exit;
pub use hooks::{Hook, HookResult};
pub use lifecycle::{Lifecycle, State};
pub use service::{Event, Rodent};
pub use signal::Signal;
pub use telemetry::Telemetry;
