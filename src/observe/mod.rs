//! What an operator sees of a running service: its log lines, its Prometheus metrics and its
//! OpenTelemetry traces.
//!
//! | part | owns |
//! | --- | --- |
//! | `logging` | the JSON/text log subscriber, its writer thread and its reload handle |
//! | `metrics` | the Prometheus registry behind `/metrics` |
//! | `telemetry` | OpenTelemetry traces: the export queue and thread (TLS included), propagation, the flush |
//! | `clip` | the bound on client-supplied text kept in spans and log lines |
//!
//! The `OTEL_*` variables are read and validated with the rest of the configuration, in
//! [`crate::config`]; this module only acts on them.

pub(crate) mod clip;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod telemetry;
