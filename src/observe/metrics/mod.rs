//! Prometheus metrics: one registry per service (no global recorder, so an embedding
//! application's own metrics are never in the way), rendered at `GET /metrics`, followed by the
//! application's own registry.
//!
//! Route labels are always the matched route template (`/delay/{ms}`), or `unmatched` for a
//! 404: a raw path in a label would let any client create unbounded series.

mod application;
mod gauges;
mod in_flight;
mod logs;
mod process;
mod route;
mod runtime;
mod tls;

use std::fmt;
use std::sync::{Arc, Mutex};

use axum::http;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::build::BuildInfo;
use crate::lifecycle::Lifecycle;
use crate::observe::logging::DroppedLines;
use application::Application;
use gauges::Gauges;
pub(crate) use in_flight::{InFlight, InFlightGuard};
use logs::LogLinesDropped;
pub(crate) use route::{Entered, RouteCache};
pub(crate) use tls::TlsMetrics;

/// The label value for requests that matched no route.
pub(crate) const UNMATCHED: &str = "unmatched";

/// A route template shared between label sets without copying it per request.
pub(crate) type Route = Arc<str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Route,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodRouteLabels {
    method: &'static str,
    route: Route,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type HistogramFamily = Family<MethodRouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Every metric a service exports.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    timeouts: Family<RouteLabels, Counter>,
    panics: Family<RouteLabels, Counter>,
    shed: Counter,
    reloads: Family<OutcomeLabels, Counter>,
    zombies_reaped: Counter,
    connections_aborted: Counter,
    accept_errors: Counter,
    connections_refused: Counter,
    streams_reset: Counter,
    open_connections: Gauge,
    spans_exported: Counter,
    spans_dropped: Counter,
    log_lines_dropped: LogLinesDropped,
    tls: Arc<TlsMetrics>,
    in_flight: Arc<InFlight>,
    /// Whether the application is rodent's reference service (named `rodent`), which shares
    /// the `rodent_*` namespace.
    reference: bool,
    /// The application's own metrics, rendered after rodent's.
    application: Mutex<Application>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(lifecycle: Lifecycle, build: BuildInfo) -> Self {
        let reference = build.name == crate::build::Identity::RODENT.name;
        // The `process_*` family is the same in every service: at the root, unprefixed;
        // rodent's own metrics in the `rodent_` sub-registry.
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessMetrics::new()));
        let registry = root.sub_registry_with_prefix("rodent");
        let requests = Family::default();
        let duration = HistogramFamily::new_with_constructor(latency_histogram);
        let timeouts = Family::default();
        let panics = Family::default();
        let shed = Counter::default();
        let reloads: Family<OutcomeLabels, Counter> = Family::default();
        // Both outcomes from the start, so `increase(rodent_reloads_total{outcome="rejected"}[…])`
        // alerts work before the first reload. (Families labelled by route appear with their
        // first request: the routes are not known here.)
        for outcome in ["applied", "rejected"] {
            let _ = reloads.get_or_create(&OutcomeLabels { outcome });
        }
        let zombies_reaped = Counter::default();
        let connections_aborted = Counter::default();
        let accept_errors = Counter::default();
        let connections_refused = Counter::default();
        let streams_reset = Counter::default();
        let open_connections = Gauge::default();
        let spans_exported = Counter::default();
        let spans_dropped = Counter::default();
        let log_lines_dropped = LogLinesDropped::default();
        let tls = Arc::new(TlsMetrics::default());
        let in_flight = Arc::new(InFlight::default());

        registry.register(
            "http_requests",
            "HTTP requests answered, by method, matched route and status class",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to response head, by method and matched route",
            duration.clone(),
        );
        registry.register(
            "http_request_timeouts",
            "Requests answered 503 (gRPC calls DEADLINE_EXCEEDED) because the handler exceeded RODENT_REQUEST_TIMEOUT",
            timeouts.clone(),
        );
        registry.register(
            "http_panics",
            "Handlers that panicked (answered 500; the process keeps serving)",
            panics.clone(),
        );
        registry.register(
            "http_requests_shed",
            "Requests refused with 503 (gRPC calls UNAVAILABLE) because RODENT_MAX_INFLIGHT, or the bound on scrapes of /metrics answered at once, was reached",
            shed.clone(),
        );
        registry.register(
            "reloads",
            "Configuration reloads (SIGHUP, or the env file changed on disk), by outcome: applied or rejected",
            reloads.clone(),
        );
        registry.register(
            "zombies_reaped",
            "Orphaned processes reaped by the PID 1 supervisor",
            zombies_reaped.clone(),
        );
        registry.register(
            "connections_aborted",
            "Connections cut because the shutdown deadline was reached",
            connections_aborted.clone(),
        );
        registry.register(
            "accept_errors",
            "Errors accepting connections (such as running out of file descriptors)",
            accept_errors.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed as they were accepted because RODENT_MAX_CONNECTIONS were open",
            connections_refused.clone(),
        );
        registry.register(
            "http2_streams_reset",
            "HTTP/2 streams reset because the client made no room for their response for the idle timeout",
            streams_reset.clone(),
        );
        registry.register(
            "connections_open",
            "Open client connections",
            open_connections.clone(),
        );
        registry.register(
            "spans_exported",
            "Trace spans the collector accepted",
            spans_exported.clone(),
        );
        registry.register(
            "spans_dropped",
            "Trace spans dropped because the export queue was full or the collector failed",
            spans_dropped.clone(),
        );
        registry.register_collector(Box::new(log_lines_dropped.clone()));
        registry.register_collector(Box::new(tls::TlsCollector(tls.clone())));
        registry.register_collector(Box::new(Gauges::new(lifecycle, in_flight.clone(), build)));
        registry.register_collector(Box::new(runtime::RuntimeGauges));

        Self {
            registry: root,
            requests,
            duration,
            timeouts,
            panics,
            shed,
            reloads,
            zombies_reaped,
            connections_aborted,
            accept_errors,
            connections_refused,
            streams_reset,
            open_connections,
            spans_exported,
            spans_dropped,
            log_lines_dropped,
            tls,
            in_flight,
            reference,
            application: Mutex::default(),
        }
    }

    /// Renders the Prometheus text format (0.0.4), or OpenMetrics when `openmetrics` is set:
    /// rodent's metrics, then the application's.
    pub(crate) fn render(&self, openmetrics: bool) -> String {
        use prometheus_client::encoding::{prometheus_text, text};
        let mut out = String::with_capacity(8 * 1024);
        let application = self.application();
        let written = if openmetrics {
            text::encode_registry(&mut out, &self.registry)
                .and_then(|()| text::encode_registry(&mut out, &application.registry))
                .and_then(|()| text::encode_eof(&mut out))
        } else {
            prometheus_text::encode(&mut out, &self.registry)
                .and_then(|()| prometheus_text::encode(&mut out, &application.registry))
        };
        written.expect("writing to a String cannot fail");
        out
    }

    /// The TLS metrics, present once the main port serves HTTPS.
    pub(crate) fn tls(&self) -> &TlsMetrics {
        &self.tls
    }

    pub(crate) fn in_flight(&self) -> &Arc<InFlight> {
        &self.in_flight
    }

    pub(crate) fn timeout(&self, route: &Route) {
        self.timeouts
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .inc();
    }

    pub(crate) fn panic(&self, route: &Route) {
        self.panics
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .inc();
    }

    pub(crate) fn shed(&self) {
        self.shed.inc();
    }

    pub(crate) fn reload(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "rejected" };
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Sets the reaped-zombie count reported by the supervisor, which counts in its own process.
    pub(crate) fn set_zombies_reaped(&self, total: u64) {
        let current = self.zombies_reaped.get();
        if total > current {
            self.zombies_reaped.inc_by(total - current);
        }
    }

    pub(crate) fn connections_aborted(&self, n: u64) {
        self.connections_aborted.inc_by(n);
    }

    pub(crate) fn accept_error(&self) {
        self.accept_errors.inc();
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub(crate) fn stream_reset(&self) {
        self.streams_reset.inc();
    }

    pub(crate) fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.open_connections.dec();
    }

    pub(crate) fn open_connections(&self) -> i64 {
        self.open_connections.get()
    }

    /// Counts trace spans the collector accepted.
    pub(crate) fn spans_exported(&self, n: u64) {
        self.spans_exported.inc_by(n);
    }

    /// Counts trace spans that were dropped instead of exported.
    pub(crate) fn spans_dropped(&self, n: u64) {
        self.spans_dropped.inc_by(n);
    }

    /// Reports the log sink's count of dropped lines (the first sink given; there is one per
    /// process).
    pub(crate) fn count_log_lines_dropped(&self, dropped: DroppedLines) {
        let _ = self.log_lines_dropped.0.set(dropped);
    }
}

/// The method label values: anything non-standard is `_OTHER`, as the OpenTelemetry semantic
/// conventions do, so a client cannot create series by inventing methods.
pub(crate) const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
];

/// The method's place in [`METHODS`].
pub(crate) fn method_index(method: &http::Method) -> usize {
    match *method {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::PATCH => 5,
        http::Method::OPTIONS => 6,
        http::Method::CONNECT => 7,
        http::Method::TRACE => 8,
        _ => 9,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new(
            Lifecycle::new(),
            crate::build::Identity::RODENT.build_info(),
        );
        let cache = RouteCache::default();
        let entered = metrics.enter(&cache, method_index(&http::Method::GET), "/");
        entered.metrics.observe(200, Duration::from_millis(3));
        let text = metrics.render(false);
        assert!(
            text.contains(
                "rodent_http_requests_total{method=\"GET\",route=\"/\",status=\"2xx\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("rodent_lifecycle_state{state=\"starting\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rodent_http_requests_in_flight{route=\"/\"} 1"),
            "{text}"
        );
        assert!(text.contains("rodent_log_lines_dropped_total 0"), "{text}");
        assert!(!text.contains("# EOF"));
        assert!(metrics.render(true).ends_with("# EOF\n"));
    }
}
