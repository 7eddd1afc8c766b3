//! Prometheus metrics: one registry per service (no global recorder, so an embedding
//! application's own metrics are never in the way), rendered at `GET /metrics`.
//!
//! Route labels are always the matched route template (`/delay/{ms}`), or `unmatched` for a
//! 404: a raw path in a label would let any client create unbounded series.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::build;
use crate::lifecycle::{Lifecycle, State};

/// The label value for requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// A route template shared between label sets without copying it per request.
pub type Route = Arc<str>;

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
pub struct Metrics {
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
    open_connections: Gauge,
    spans_exported: Counter,
    spans_dropped: Counter,
    in_flight: Arc<InFlight>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(lifecycle: Lifecycle) -> Self {
        let mut registry = Registry::with_prefix("rodent");
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
        let open_connections = Gauge::default();
        let spans_exported = Counter::default();
        let spans_dropped = Counter::default();
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
            "Requests answered 503 because the handler exceeded RODENT_REQUEST_TIMEOUT",
            timeouts.clone(),
        );
        registry.register(
            "http_panics",
            "Handlers that panicked (answered 500; the process keeps serving)",
            panics.clone(),
        );
        registry.register(
            "http_requests_shed",
            "Requests refused with 503 because RODENT_MAX_INFLIGHT was reached",
            shed.clone(),
        );
        registry.register(
            "reloads",
            "Configuration reloads (SIGHUP), by outcome: applied or rejected",
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
        registry.register_collector(Box::new(Gauges {
            lifecycle,
            in_flight: in_flight.clone(),
        }));

        Self {
            registry,
            requests,
            duration,
            timeouts,
            panics,
            shed,
            reloads,
            zombies_reaped,
            connections_aborted,
            accept_errors,
            open_connections,
            spans_exported,
            spans_dropped,
            in_flight,
        }
    }

    /// Renders the Prometheus text format (0.0.4), or OpenMetrics when `openmetrics` is set.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let written = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        written.expect("writing to a String cannot fail");
        out
    }

    pub(crate) fn in_flight(&self) -> &Arc<InFlight> {
        &self.in_flight
    }

    pub(crate) fn observe_request(
        &self,
        method: &'static str,
        route: &Route,
        status: u16,
        latency: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.clone(),
                status: status_class(status),
            })
            .inc();
        self.duration
            .get_or_create(&MethodRouteLabels {
                method,
                route: route.clone(),
            })
            .observe(latency.as_secs_f64());
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
    pub fn set_zombies_reaped(&self, total: u64) {
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
    pub fn spans_exported(&self, n: u64) {
        self.spans_exported.inc_by(n);
    }

    /// Counts trace spans that were dropped instead of exported.
    pub fn spans_dropped(&self, n: u64) {
        self.spans_dropped.inc_by(n);
    }
}

/// A status code's class, `2xx` and so on: enough for alerting, and bounded.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The method as a bounded label value: anything non-standard is `_OTHER`, as the OpenTelemetry
/// semantic conventions do, so a client cannot create series by inventing methods.
pub(crate) fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// Requests in flight, per matched route: read by `/metrics` and by the SIGQUIT dump.
#[derive(Debug, Default)]
pub struct InFlight {
    routes: RwLock<HashMap<Route, Arc<AtomicI64>>>,
    total: AtomicI64,
}

impl InFlight {
    /// Counts a request in until the guard is dropped. Returns the interned route too, so label
    /// sets can share it instead of allocating per request.
    pub(crate) fn enter(self: &Arc<Self>, route: &str) -> (Route, InFlightGuard) {
        let found = self
            .routes
            .read()
            .expect("in-flight lock poisoned: a panic while holding it is a bug")
            .get_key_value(route)
            .map(|(k, v)| (k.clone(), v.clone()));
        let (route, gauge) = found.unwrap_or_else(|| {
            let mut routes = self
                .routes
                .write()
                .expect("in-flight lock poisoned: a panic while holding it is a bug");
            routes.entry(Arc::from(route)).or_default();
            let (k, v) = routes
                .get_key_value(route)
                .expect("the entry was inserted just above, under the same lock");
            (k.clone(), v.clone())
        });
        gauge.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        (
            route,
            InFlightGuard {
                owner: self.clone(),
                gauge,
            },
        )
    }

    /// Requests in flight right now, all routes together.
    pub fn total(&self) -> i64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Per-route counts, busiest first, omitting idle routes.
    pub fn by_route(&self) -> Vec<(Route, i64)> {
        let routes = self
            .routes
            .read()
            .expect("in-flight lock poisoned: a panic while holding it is a bug");
        let mut counts: Vec<_> = routes
            .iter()
            .map(|(route, n)| (route.clone(), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }

    fn all_routes(&self) -> Vec<(Route, i64)> {
        let routes = self
            .routes
            .read()
            .expect("in-flight lock poisoned: a panic while holding it is a bug");
        routes
            .iter()
            .map(|(route, n)| (route.clone(), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Counts one request out of [`InFlight`] when dropped.
pub(crate) struct InFlightGuard {
    owner: Arc<InFlight>,
    gauge: Arc<AtomicI64>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
        self.owner.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Gauges computed at scrape time from state that lives elsewhere.
#[derive(Debug)]
struct Gauges {
    lifecycle: Lifecycle,
    in_flight: Arc<InFlight>,
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let current = self.lifecycle.state();
        let mut states = encoder.encode_descriptor(
            "lifecycle_state",
            "1 for the current lifecycle state (starting, ready, draining, stopping), 0 otherwise",
            None,
            MetricType::Gauge,
        )?;
        for state in State::ALL {
            let labels = [("state", state.as_str())];
            ConstGauge::new(i64::from(state == current)).encode(states.encode_family(&labels)?)?;
        }

        let ready = encoder.encode_descriptor(
            "readiness_enabled",
            "0 while code or an operator has taken the instance out of rotation",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.lifecycle.readiness_enabled())).encode(ready)?;

        let mut in_flight = encoder.encode_descriptor(
            "http_requests_in_flight",
            "Requests being handled right now, by matched route",
            None,
            MetricType::Gauge,
        )?;
        for (route, n) in self.in_flight.all_routes() {
            let labels = [("route", &*route)];
            ConstGauge::new(n).encode(in_flight.encode_family(&labels)?)?;
        }

        let mut info = encoder.encode_descriptor(
            "build_info",
            "Always 1; the labels say which build is running",
            None,
            MetricType::Gauge,
        )?;
        let labels = [
            ("version", build::VERSION),
            ("commit", build::COMMIT),
            ("rustc", build::RUSTC),
        ];
        ConstGauge::new(1).encode(info.encode_family(&labels)?)?;

        let uptime = encoder.encode_descriptor(
            "uptime_seconds",
            "Seconds since the service started",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.lifecycle.uptime().as_secs_f64()).encode(uptime)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_interned_and_counted() {
        let in_flight = Arc::new(InFlight::default());
        let (a, guard_a) = in_flight.enter("/delay/{ms}");
        let (b, guard_b) = in_flight.enter("/delay/{ms}");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(in_flight.total(), 2);
        assert_eq!(in_flight.by_route(), vec![(a.clone(), 2)]);
        drop(guard_a);
        drop(guard_b);
        assert_eq!(in_flight.total(), 0);
        assert!(in_flight.by_route().is_empty());
    }

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new(Lifecycle::new());
        let (route, _guard) = metrics.in_flight().enter("/");
        metrics.observe_request("GET", &route, 200, Duration::from_millis(3));
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
        assert!(!text.contains("# EOF"));
        assert!(metrics.render(true).ends_with("# EOF\n"));
    }
}
