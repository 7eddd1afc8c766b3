//! Traces: an OpenTelemetry server span per request (made in `http::observe`), a span for the
//! drain and one per shutdown hook, exported over OTLP when an endpoint is configured and
//! flushed after the last shutdown hook, inside the grace period, as best it can be: a flush
//! the collector stalls is cut at the hooks' hard stop, its spans dropped and counted, and the
//! exit code is unchanged.
//!
//! The `OTEL_*` variables are read and validated with the rest of the configuration
//! ([`crate::config::otel`]).
//!
//! | part | owns |
//! | --- | --- |
//! | `context` | trace context at the HTTP edge: `OTEL_PROPAGATORS` in, `traceresponse` out |
//! | `queue` | the bounded queue ended spans wait in, and the exported/dropped counts |
//! | `export` | the span processor and the thread that exports the queue |
//! | `otlp` | the OTLP exporter the thread builds: http/protobuf or gRPC, TLS for `https://` |
//!
//! With no endpoint (or `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`) no
//! OpenTelemetry layer is installed at all: request spans are plain `tracing` spans, nothing is
//! recorded for export and no thread is started.
//!
//! The order in the launcher matters, and [`Telemetry`] is shaped by it: it starts before logging
//! (its layer goes into the subscriber), and [connecting](Telemetry::connect) it to the service
//! yields its [`FinalFlush`], which the service keeps apart from the shutdown hooks and runs
//! after all of them, so the spans of the other hooks' work are in it.

pub(crate) mod context;
mod export;
mod otlp;
mod queue;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;

use std::sync::Arc;

use crate::build::{self, Identity};
use crate::config::Vars;
use crate::config::otel::{self, Export, Off, Settings};
use crate::observe::logging::BoxedLayer;
use crate::observe::metrics::Metrics;
use export::ExportQueue;

/// Trace export for one process: the layer to install, and the flush to run at shutdown.
pub(crate) struct Telemetry {
    state: Status,
}

enum Status {
    Off(Off),
    /// The `OTEL_*` variables were refused; `Config::from_vars` reports the same problems, so
    /// this only happens to a configuration assembled by hand.
    Invalid(String),
    /// The export thread could not be started.
    Failed(String),
    On(Box<Pipeline>),
}

struct Pipeline {
    settings: Settings,
    export: Export,
    queue: ExportQueue,
    /// Handed to the log subscriber by [`Telemetry::layers`].
    layer: Option<BoxedLayer>,
}

impl Telemetry {
    /// Reads the `OTEL_*` variables and, when traces are to be exported, starts the export
    /// thread and builds the tracing layer. Never fails: telemetry that cannot start leaves the
    /// service running without it, and [`attach`](Self::attach) logs why.
    /// `service.name` (unless the variables say otherwise) and `service.version` are the
    /// application's.
    pub(crate) fn start(vars: &Vars, identity: &Identity) -> Self {
        let settings = match Settings::from_vars(vars, identity.name) {
            Ok(settings) => settings,
            Err(errors) => {
                let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
                return Self {
                    state: Status::Invalid(problems.join("; ")),
                };
            }
        };
        let export = match &settings.export {
            Ok(export) => export.clone(),
            Err(off) => {
                return Self {
                    state: Status::Off(*off),
                };
            }
        };
        let resource = resource(&settings, identity);
        let queue = match ExportQueue::spawn(export.clone(), settings.batch, resource.clone()) {
            Ok(queue) => queue,
            Err(e) => {
                return Self {
                    state: Status::Failed(format!("cannot start the export thread: {e}")),
                };
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue.clone())
            .with_sampler(sampler(settings.sampler))
            .with_resource(resource)
            .build();
        let scope = InstrumentationScope::builder("rodent")
            .with_version(build::VERSION)
            .build();
        let tracer = provider.tracer_with_scope(scope);
        // For application code that propagates context on its own outgoing calls.
        opentelemetry::global::set_tracer_provider(provider);
        opentelemetry::global::set_text_map_propagator(context::propagator(&settings.propagators));
        // No source locations, targets, threads or busy/idle timings on spans: attributes
        // that cost time on every request and tell an operator nothing the name does not.
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_target(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(traced())
            .boxed();
        Self {
            state: Status::On(Box::new(Pipeline {
                settings,
                export,
                queue,
                layer: Some(layer),
            })),
        }
    }

    /// Whether spans are exported.
    #[cfg(test)]
    fn is_on(&self) -> bool {
        matches!(self.state, Status::On(_))
    }

    /// The layers to give [`Logging::init`](crate::observe::logging::Logging::init): the OpenTelemetry
    /// layer when traces are exported, nothing otherwise.
    pub(crate) fn layers(&mut self) -> Vec<BoxedLayer> {
        match &mut self.state {
            Status::On(pipeline) => pipeline.layer.take().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Connects telemetry to the service: says in the log what is exported where, counts exported
    /// and dropped spans in `metrics`, and returns the final flush, which must run after every
    /// shutdown hook; `None` when nothing is exported.
    pub(crate) fn connect(self, metrics: &Arc<Metrics>) -> Option<FinalFlush> {
        let pipeline = match self.state {
            Status::On(pipeline) => pipeline,
            Status::Off(off) => {
                tracing::info!(target: "rodent::telemetry", reason = off.reason(), "traces are not exported");
                return None;
            }
            Status::Invalid(cause) | Status::Failed(cause) => {
                tracing::error!(target: "rodent::telemetry", cause, "traces will not be exported");
                return None;
            }
        };
        let Pipeline {
            settings,
            export,
            queue,
            ..
        } = *pipeline;
        tracing::info!(
            target: "rodent::telemetry",
            endpoint = %redact_userinfo(&export.endpoint),
            protocol = export.protocol.as_str(),
            service_name = %settings.resource[0].1,
            sampler = %settings.sampler.describe(),
            tls = if export.is_https() { export.tls.describe() } else { "off" },
            "exporting traces"
        );
        queue.counts().report_to(metrics.clone());
        queue.start(tracing::dispatcher::get_default(Clone::clone));
        Some(FinalFlush {
            queue,
            limit: settings.batch.export_timeout,
        })
    }
}

/// The export, at shutdown, of the spans still queued: the drain's own among them. Best effort:
/// what the collector does not take in time is dropped and counted, and the exit code does not
/// change.
pub(crate) struct FinalFlush {
    queue: ExportQueue,
    /// `OTEL_BSP_EXPORT_TIMEOUT`.
    limit: std::time::Duration,
}

impl FinalFlush {
    /// Flushes for at most the export timeout, and until `hard_stop` at the latest.
    pub(crate) async fn run(self, hard_stop: tokio::time::Instant) {
        let started = tokio::time::Instant::now();
        let deadline = (started + self.limit).min(hard_stop);
        tracing::info!(target: "rodent::telemetry", "flushing traces");
        let elapsed_ms = || started.elapsed().as_millis() as u64;
        match self.queue.shut_down(deadline.into_std()).await {
            Ok(0) => {
                tracing::info!(target: "rodent::telemetry", elapsed_ms = elapsed_ms(), "traces flushed")
            }
            Ok(dropped) => tracing::warn!(
                target: "rodent::telemetry",
                dropped,
                elapsed_ms = elapsed_ms(),
                "the final flush of traces was cut short; the spans left are dropped (rodent_spans_dropped_total)"
            ),
            Err(cause) => {
                tracing::warn!(target: "rodent::telemetry", cause, "the final flush of traces failed")
            }
        }
    }
}

/// What becomes a span or a span event: rodent's request and lifecycle spans and application
/// spans at info and above; never the access log line (its fields are the span's attributes
/// already), nor anything from the exporter's own stack.
fn traced() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("rodent::access", LevelFilter::OFF)
        .with_target("rodent::telemetry", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
}

fn sampler(choice: otel::Sampler) -> Sampler {
    use otel::Sampler as S;
    match choice {
        S::AlwaysOn => Sampler::AlwaysOn,
        S::AlwaysOff => Sampler::AlwaysOff,
        S::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
        S::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        S::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        S::ParentBasedTraceIdRatio(ratio) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    }
}

/// rodent's own attributes, then `OTEL_RESOURCE_ATTRIBUTES` (which wins), with `service.name`
/// already resolved by the settings.
fn resource(settings: &Settings, identity: &Identity) -> Resource {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string());
    let own = [
        KeyValue::new("service.version", identity.version),
        // The pod name in Kubernetes, the container id in Docker: what `GET /` calls instance.
        KeyValue::new("service.instance.id", host.clone()),
        KeyValue::new("host.name", host),
        KeyValue::new("process.pid", i64::from(std::process::id())),
    ];
    let configured = settings
        .resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()));
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(own)
        .with_attributes(configured)
        .build()
}

/// An endpoint as it may be logged: `user:password@` in a URL is masked.
fn redact_userinfo(endpoint: &str) -> String {
    match (endpoint.find("://"), endpoint.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &endpoint[..scheme_end + 3], &endpoint[at..])
        }
        _ => endpoint.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_an_endpoint_are_not_logged() {
        assert_eq!(
            redact_userinfo("http://user:pw@collector:4318/v1/traces"),
            "http://***@collector:4318/v1/traces"
        );
        assert_eq!(
            redact_userinfo("http://collector:4318"),
            "http://collector:4318"
        );
    }

    #[test]
    fn nothing_starts_without_an_endpoint() {
        let mut telemetry = Telemetry::start(&Vars::new(), &Identity::RODENT);
        assert!(!telemetry.is_on());
        assert!(telemetry.layers().is_empty());
    }
}
