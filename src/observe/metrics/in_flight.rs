//! Requests in flight, per matched route: what `/metrics`, the drain log lines and the SIGQUIT
//! dump report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use super::Route;

/// Requests in flight, per matched route: read by `/metrics` and by the SIGQUIT dump.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    routes: RwLock<HashMap<Route, Arc<AtomicI64>>>,
    total: AtomicI64,
}

impl InFlight {
    /// Counts a request in until the guard is dropped. Returns the interned route too, so label
    /// sets can share it instead of allocating per request.
    #[cfg(test)]
    pub(crate) fn enter(self: &Arc<Self>, route: &str) -> (Route, InFlightGuard) {
        let (route, gauge) = self.intern(route);
        (route, self.enter_interned(gauge))
    }

    /// The interned route and its gauge, made on its first request.
    pub(super) fn intern(&self, route: &str) -> (Route, Arc<AtomicI64>) {
        let found = self
            .routes
            .read()
            .expect("in-flight lock poisoned: a panic while holding it is a bug")
            .get_key_value(route)
            .map(|(k, v)| (k.clone(), v.clone()));
        found.unwrap_or_else(|| {
            let mut routes = self
                .routes
                .write()
                .expect("in-flight lock poisoned: a panic while holding it is a bug");
            routes.entry(Arc::from(route)).or_default();
            let (k, v) = routes
                .get_key_value(route)
                .expect("the entry was inserted just above, under the same lock");
            (k.clone(), v.clone())
        })
    }

    /// Counts a request in on an interned route's gauge until the guard is dropped.
    pub(super) fn enter_interned(self: &Arc<Self>, gauge: Arc<AtomicI64>) -> InFlightGuard {
        gauge.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            owner: self.clone(),
            gauge,
        }
    }

    /// Requests in flight right now on one route (`0` before its first).
    pub(crate) fn on_route(&self, route: &str) -> i64 {
        self.routes
            .read()
            .expect("in-flight lock poisoned: a panic while holding it is a bug")
            .get(route)
            .map_or(0, |gauge| gauge.load(Ordering::Relaxed))
    }

    /// Requests in flight right now, all routes together.
    pub(crate) fn total(&self) -> i64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Per-route counts, busiest first, omitting idle routes.
    pub(crate) fn by_route(&self) -> Vec<(Route, i64)> {
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

    pub(super) fn all_routes(&self) -> Vec<(Route, i64)> {
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
}
