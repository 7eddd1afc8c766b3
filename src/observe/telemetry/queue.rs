//! Where ended spans wait for the export thread, and where exported and dropped spans are
//! counted.
//!
//! Ending a span takes a lock for a push and nothing else: the export thread is woken only when
//! a whole batch is waiting (or by its timer), not once per span, because on a busy service a
//! thread wake-up per request costs more than the span itself.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry_sdk::trace::SpanData;
use tokio::sync::Notify;

use crate::observe::metrics::Metrics;

/// A bounded queue of ended spans.
#[derive(Debug)]
pub(crate) struct SpanQueue {
    spans: Mutex<Vec<SpanData>>,
    capacity: usize,
    batch: usize,
    /// Notified when a whole batch is waiting.
    pub(crate) batch_ready: Notify,
    state: AtomicU8,
}

/// Why a span was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is full: the collector is slower than the service. A loss.
    Full,
    /// The flush at shutdown is done: spans ended later (the flush hook's own) cannot be
    /// exported, and no loss is reported for them.
    Flushed,
    /// The exporter never started: every span is a loss.
    Broken,
}

const OPEN: u8 = 0;
const FLUSHED: u8 = 1;
const BROKEN: u8 = 2;

impl SpanQueue {
    pub(crate) fn new(capacity: usize, batch: usize) -> Self {
        Self {
            spans: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
            batch,
            batch_ready: Notify::new(),
            state: AtomicU8::new(OPEN),
        }
    }

    fn spans(&self) -> MutexGuard<'_, Vec<SpanData>> {
        self.spans
            .lock()
            .expect("span queue lock poisoned: nothing panics while holding it")
    }

    pub(crate) fn push(&self, span: SpanData) -> Result<(), Refused> {
        match self.state.load(Ordering::Acquire) {
            OPEN => {}
            FLUSHED => return Err(Refused::Flushed),
            _ => return Err(Refused::Broken),
        }
        let mut spans = self.spans();
        if spans.len() >= self.capacity {
            return Err(Refused::Full);
        }
        spans.push(span);
        let batch_full = spans.len() == self.batch;
        drop(spans);
        if batch_full {
            self.batch_ready.notify_one();
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.spans().len()
    }

    /// Up to one batch of the oldest spans.
    pub(crate) fn take_batch(&self) -> Vec<SpanData> {
        let mut spans = self.spans();
        let n = spans.len().min(self.batch);
        spans.drain(..n).collect()
    }

    /// Refuses every span from now on; those already queued stay for the flush.
    pub(crate) fn close(&self, broken: bool) {
        let state = if broken { BROKEN } else { FLUSHED };
        self.state.store(state, Ordering::Release);
    }

    /// Empties the queue; returns how many spans were in it.
    pub(crate) fn clear(&self) -> usize {
        let mut spans = self.spans();
        let left = spans.len();
        spans.clear();
        left
    }
}

/// Counts exported and dropped spans: in the service's metrics once they exist, in a tally
/// until then (telemetry starts before the service).
#[derive(Debug, Default)]
pub(crate) struct SpanCounts(Mutex<Tally>);

#[derive(Debug)]
enum Tally {
    Pending { exported: u64, dropped: u64 },
    Metrics(Arc<Metrics>),
}

impl Default for Tally {
    fn default() -> Self {
        Self::Pending {
            exported: 0,
            dropped: 0,
        }
    }
}

impl SpanCounts {
    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.0
            .lock()
            .expect("span count lock poisoned: nothing panics while holding it")
    }

    pub(crate) fn exported(&self, n: u64) {
        match &mut *self.tally() {
            Tally::Pending { exported, .. } => *exported += n,
            Tally::Metrics(metrics) => metrics.spans_exported(n),
        }
    }

    pub(crate) fn dropped(&self, n: u64) {
        match &mut *self.tally() {
            Tally::Pending { dropped, .. } => *dropped += n,
            Tally::Metrics(metrics) => metrics.spans_dropped(n),
        }
    }

    /// From now on, counts go to `metrics`, with what was counted before.
    pub(crate) fn report_to(&self, metrics: Arc<Metrics>) {
        let mut tally = self.tally();
        if let Tally::Pending { exported, dropped } = *tally {
            metrics.spans_exported(exported);
            metrics.spans_dropped(dropped);
        }
        *tally = Tally::Metrics(metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanKind, Status};
    use opentelemetry::{InstrumentationScope, trace::SpanId};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::time::SystemTime;

    fn span() -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "test".into(),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::default(),
        }
    }

    #[test]
    fn a_full_queue_refuses_and_a_whole_batch_wakes_the_exporter() {
        let queue = SpanQueue::new(3, 2);
        queue.push(span()).unwrap();
        // One span is not a batch: no permit is stored for the export thread.
        assert!(futures_util::FutureExt::now_or_never(queue.batch_ready.notified()).is_none());
        queue.push(span()).unwrap();
        assert!(futures_util::FutureExt::now_or_never(queue.batch_ready.notified()).is_some());
        queue.push(span()).unwrap();
        assert_eq!(queue.push(span()), Err(Refused::Full));
        assert_eq!(queue.take_batch().len(), 2);
        assert_eq!(queue.len(), 1);
        queue.close(false);
        assert_eq!(queue.push(span()), Err(Refused::Flushed));
        assert_eq!(queue.clear(), 1);
    }

    #[test]
    fn counts_made_before_the_metrics_exist_are_kept() {
        let counts = SpanCounts::default();
        counts.dropped(3);
        counts.exported(5);
        let metrics = Arc::new(Metrics::new(
            crate::Lifecycle::new(),
            crate::build::Identity::RODENT.build_info(),
        ));
        counts.report_to(metrics.clone());
        counts.dropped(1);
        let text = metrics.render(false);
        assert!(text.contains("rodent_spans_dropped_total 4"), "{text}");
        assert!(text.contains("rodent_spans_exported_total 5"), "{text}");
    }
}
