//! The `OTEL_*` variables rodent honours, read from the same variables as the rest of the
//! configuration (so `RODENT_ENV_FILE` and tests work) and validated the same way: every bad
//! value is reported with its variable, and rodent refuses to start.
//!
//! The OpenTelemetry crates also read some of these from the process environment on their own;
//! everything read here is passed to them explicitly, so what is validated is what is used.

mod read;
mod tls;

use std::time::Duration;

use super::error::ConfigError;
use super::source::Vars;
pub(crate) use tls::Tls;

/// Every variable read here, for the documentation and for reloads (none of them applies
/// without a restart).
pub(crate) const VARIABLES: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_PROPAGATORS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
];

/// The service name when neither `OTEL_SERVICE_NAME` nor `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` says otherwise, and no application names itself.
pub(crate) const DEFAULT_SERVICE_NAME: &str = "rodent";

/// The most spans `OTEL_BSP_MAX_QUEUE_SIZE` lets wait for export (and so the largest batch).
pub(crate) const MAX_QUEUE_SIZE: usize = 65_536;

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// OTLP over HTTP with protobuf bodies, to `<endpoint>/v1/traces` (usually port 4318).
    HttpProtobuf,
    /// OTLP over gRPC (usually port 4317).
    Grpc,
}

impl Protocol {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        }
    }
}

/// Which spans are recorded, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sampler {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl Sampler {
    pub(crate) fn describe(self) -> String {
        match self {
            Self::AlwaysOn => "always_on".into(),
            Self::AlwaysOff => "always_off".into(),
            Self::TraceIdRatio(r) => format!("traceidratio({r})"),
            Self::ParentBasedAlwaysOn => "parentbased_always_on".into(),
            Self::ParentBasedAlwaysOff => "parentbased_always_off".into(),
            Self::ParentBasedTraceIdRatio(r) => format!("parentbased_traceidratio({r})"),
        }
    }
}

/// Where and how to send spans.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Export {
    /// The full URL for http/protobuf (`…/v1/traces`), the server address for gRPC.
    pub endpoint: String,
    pub protocol: Protocol,
    /// Sent with every export, names in lower case; values are secrets (API keys) and never
    /// logged.
    pub headers: Vec<(String, String)>,
    /// Bounds one export request.
    pub timeout: Duration,
    pub gzip: bool,
    /// Used when the endpoint is `https://`.
    pub tls: Tls,
}

impl Export {
    pub(crate) fn is_https(&self) -> bool {
        self.endpoint.starts_with("https://")
    }
}

/// The batch span processor: how long spans wait, how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batch {
    pub schedule_delay: Duration,
    /// Bounds one export, retries included, and the flush at shutdown.
    pub export_timeout: Duration,
    /// Spans beyond this many waiting are dropped (and counted), never waited for.
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
}

/// A way of carrying trace context in request headers, as `OTEL_PROPAGATORS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Propagator {
    /// W3C Trace Context: `traceparent`, `tracestate`.
    TraceContext,
    /// W3C Baggage: `baggage`.
    Baggage,
    /// Zipkin's B3, written as one `b3` header (both forms are read).
    B3,
    /// Zipkin's B3, written as `X-B3-TraceId`, `X-B3-SpanId`, … (both forms are read).
    B3Multi,
}

/// Why no span is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Off {
    NoEndpoint,
    SdkDisabled,
    ExporterNone,
}

impl Off {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::NoEndpoint => {
                "neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set"
            }
            Self::SdkDisabled => "OTEL_SDK_DISABLED=true",
            Self::ExporterNone => "OTEL_TRACES_EXPORTER=none",
        }
    }
}

/// The validated trace settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// `Err` says why tracing is off.
    pub export: Result<Export, Off>,
    /// Resource attributes, `service.name` first.
    pub resource: Vec<(String, String)>,
    pub sampler: Sampler,
    pub batch: Batch,
    /// What incoming requests are read for; empty for `none`. In effect whether or not spans
    /// are exported: the access log joins the caller's trace either way.
    pub propagators: Vec<Propagator>,
}

impl Settings {
    /// Reads every `OTEL_*` variable rodent honours; all problems are returned at once.
    /// `service_name` is the service's name unless the variables give another.
    pub(crate) fn from_vars(vars: &Vars, service_name: &str) -> Result<Self, Vec<ConfigError>> {
        read::settings(vars, service_name)
    }
}

/// `OTEL_PROPAGATORS` alone (the default when it is invalid, which the configuration's own
/// validation refuses).
pub(crate) fn propagators(vars: &Vars) -> Vec<Propagator> {
    read::propagators(vars)
}

/// Checks the `OTEL_*` variables, for the configuration's own validation.
pub(crate) fn check(vars: &Vars) -> Vec<ConfigError> {
    Settings::from_vars(vars, DEFAULT_SERVICE_NAME)
        .err()
        .unwrap_or_default()
}

/// Checks `OTEL_PROPAGATORS` alone: what a service that exports no traces still reads.
pub(crate) fn check_propagators(vars: &Vars) -> Vec<ConfigError> {
    read::propagator_errors(vars)
}

#[cfg(test)]
mod tests;
