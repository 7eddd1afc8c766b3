//! [`Instance`]: what one running instance of the service shares between its request path and
//! its run loop. The router's middleware and handlers read it; the run loop reloads its
//! configuration; both hold an `Arc<Instance>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::lifecycle::Lifecycle;
use crate::lifecycle::readiness::Readiness;
use crate::observe::logging::AccessLog;
use crate::observe::metrics::Metrics;
use crate::observe::telemetry::context::Propagation;

pub(crate) struct Instance {
    pub lifecycle: Lifecycle,
    /// The current configuration; a reload swaps in a new one atomically, so a request sees
    /// either the old settings or the new ones, never a mix. Shared with the application's
    /// settings handles.
    pub config: Arc<ArcSwap<Config>>,
    /// Shared with the parts that count from outside the request path (telemetry's spans, the
    /// supervisor's reaped orphans).
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    /// `OTEL_PROPAGATORS`, read at start like every `OTEL_*` variable.
    pub propagation: Propagation,
    /// Where access-log lines go; the log settings decide it at start and on reload.
    pub access_log: Arc<AccessLog>,
    /// Application requests in flight, for load shedding (probes and `/metrics` not counted).
    app_in_flight: Arc<AtomicUsize>,
    /// The listening socket outlives this process: it was inherited from a service manager, or
    /// handed to a successor. Closing it then refuses nobody (new connections wait in its queue
    /// for whoever accepts next), so what still reaches this process on its open connections is
    /// served rather than refused (see `edge`).
    listener_outlives: AtomicBool,
}

impl Instance {
    pub(crate) fn new(
        config: Arc<ArcSwap<Config>>,
        lifecycle: Lifecycle,
        metrics: Arc<Metrics>,
        readiness: Readiness,
        access_log: Arc<AccessLog>,
    ) -> Self {
        let propagation = Propagation::of(&config.load());
        Self {
            metrics,
            lifecycle,
            propagation,
            access_log,
            config,
            readiness,
            app_in_flight: Arc::default(),
            listener_outlives: AtomicBool::new(false),
        }
    }

    pub(crate) fn listener_outlives(&self) -> bool {
        self.listener_outlives.load(Ordering::Relaxed)
    }

    /// From now on the listening socket outlives this process.
    pub(crate) fn mark_listener_outliving(&self) {
        self.listener_outlives.store(true, Ordering::Relaxed);
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
