//! What every part of one running service shares: the router's middleware, the server's
//! connection tasks and the orchestrator all hold an `Arc<ServiceState>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::probes::Probes;

pub(crate) struct ServiceState {
    pub lifecycle: Lifecycle,
    /// The current configuration; a reload swaps in a new one atomically, so a request sees
    /// either the old settings or the new ones, never a mix.
    pub config: ArcSwap<Config>,
    /// Shared with whoever asked [`Rodent::metrics`](crate::Rodent::metrics) (telemetry counts
    /// its spans there).
    pub metrics: Arc<Metrics>,
    pub probes: Probes,
    /// Application requests in flight, for load shedding (probes and `/metrics` not counted).
    app_in_flight: Arc<AtomicUsize>,
}

impl ServiceState {
    pub(crate) fn new(
        config: Config,
        lifecycle: Lifecycle,
        metrics: Arc<Metrics>,
        probes: Probes,
    ) -> Self {
        Self {
            metrics,
            lifecycle,
            config: ArcSwap::from_pointee(config),
            probes,
            app_in_flight: Arc::default(),
        }
    }

    /// Admits one more application request unless `max` are already in flight.
    pub(crate) fn admit(&self, max: usize) -> Option<AdmissionPermit> {
        let previous = self.app_in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = AdmissionPermit(self.app_in_flight.clone());
        (previous < max).then_some(permit)
    }
}

/// One admitted application request; dropping it makes room for another.
pub(crate) struct AdmissionPermit(Arc<AtomicUsize>);

impl Drop for AdmissionPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
