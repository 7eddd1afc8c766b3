//! The request metrics of one route, resolved once: the access layer keeps a [`RouteCache`] per
//! route of the router (each route has its own copy of the stack), so a request counts itself
//! without looking its labels up in the families' maps.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::{InFlightGuard, METHODS, MethodRouteLabels, Metrics, RequestLabels, Route};

/// What one route of the router has resolved; empty until its first request.
#[derive(Default)]
pub(crate) struct RouteCache {
    resolved: OnceLock<Resolved>,
}

struct Resolved {
    route: Route,
    in_flight: Arc<AtomicI64>,
    by_method: [OnceLock<Arc<MethodMetrics>>; METHODS.len()],
}

/// The counters and histogram of one method on one route.
pub(crate) struct MethodMetrics {
    method: &'static str,
    route: Route,
    requests: Family<RequestLabels, Counter>,
    // Each status class's series appears with its first response, as with `get_or_create`.
    by_class: [OnceLock<Counter>; CLASSES.len()],
    duration: Histogram,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl MethodMetrics {
    fn new(metrics: &Metrics, method: &'static str, route: &Route) -> Self {
        let duration = metrics
            .duration
            .get_or_create(&MethodRouteLabels {
                method,
                route: route.clone(),
            })
            .clone();
        Self {
            method,
            route: route.clone(),
            requests: metrics.requests.clone(),
            by_class: Default::default(),
            duration,
        }
    }

    /// Counts one answered request.
    pub(crate) fn observe(&self, status: u16, latency: Duration) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.by_class[class]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        method: self.method,
                        route: self.route.clone(),
                        status: CLASSES[class],
                    })
                    .clone()
            })
            .inc();
        self.duration.observe(latency.as_secs_f64());
    }
}

/// A request counted in: its interned route, its place in the in-flight count, and the metrics
/// it is counted in when answered.
pub(crate) struct Entered {
    pub route: Route,
    pub in_flight: InFlightGuard,
    pub metrics: Arc<MethodMetrics>,
}

impl Metrics {
    /// Counts a request to the route `matched` in, from `cache` once it has resolved that route.
    pub(crate) fn enter(&self, cache: &RouteCache, method: usize, matched: &str) -> Entered {
        let label = METHODS[method];
        let resolved = cache.resolved.get_or_init(|| {
            let (route, in_flight) = self.in_flight.intern(matched);
            Resolved {
                route,
                in_flight,
                by_method: Default::default(),
            }
        });
        if &*resolved.route != matched {
            // A route of the router always has the same template; this is only a safeguard.
            let (route, in_flight) = self.in_flight.intern(matched);
            return Entered {
                in_flight: self.in_flight.enter_interned(in_flight),
                metrics: Arc::new(MethodMetrics::new(self, label, &route)),
                route,
            };
        }
        let metrics = resolved.by_method[method]
            .get_or_init(|| Arc::new(MethodMetrics::new(self, label, &resolved.route)))
            .clone();
        Entered {
            route: resolved.route.clone(),
            in_flight: self.in_flight.enter_interned(resolved.in_flight.clone()),
            metrics,
        }
    }
}
