//! Where ended spans wait for the export thread, and where exported and dropped spans are
//! counted.
//!
//! Ending a span takes a lock for a push and nothing else: the export thread is woken only when
//! a whole batch is waiting (or by its timer), not once per span, because on a busy service a
//! thread wake-up per request costs more than the span itself.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry::trace::{Event, Link};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanData;
use tokio::sync::Notify;

use crate::observe::metrics::Metrics;

/// The most bytes of spans held for export at once, queued or being sent, whatever
/// `OTEL_BSP_MAX_QUEUE_SIZE` allows: spans carry what clients and the application put in them,
/// and a slow collector must not turn that into memory without bound.
pub(crate) const MAX_HELD_BYTES: usize = 8 << 20;

/// A queue of ended spans, bounded by count (`OTEL_BSP_MAX_QUEUE_SIZE`) and by bytes
/// ([`MAX_HELD_BYTES`], counting the batch being sent too).
#[derive(Debug)]
pub(crate) struct SpanQueue {
    held: Mutex<Held>,
    capacity: usize,
    max_bytes: usize,
    batch: usize,
    /// Notified when a whole batch is waiting.
    pub(crate) batch_ready: Notify,
    state: AtomicU8,
}

#[derive(Debug, Default)]
struct Held {
    /// Queued spans, each with its estimated size.
    spans: Vec<(usize, SpanData)>,
    /// The bytes of the queued spans and of the batches taken but not yet [released].
    ///
    /// [released]: SpanQueue::release
    bytes: usize,
}

/// Spans taken from the queue to be sent; their bytes count until they are released.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) spans: Vec<SpanData>,
    pub(crate) bytes: usize,
}

/// Why a span was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is full (of spans or of bytes): the collector is slower than the service. A
    /// loss.
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
        Self::with_max_bytes(capacity, batch, MAX_HELD_BYTES)
    }

    fn with_max_bytes(capacity: usize, batch: usize, max_bytes: usize) -> Self {
        Self {
            held: Mutex::new(Held {
                spans: Vec::with_capacity(capacity.min(4096)),
                bytes: 0,
            }),
            capacity,
            max_bytes,
            batch,
            batch_ready: Notify::new(),
            state: AtomicU8::new(OPEN),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held
            .lock()
            .expect("span queue lock poisoned: nothing panics while holding it")
    }

    pub(crate) fn push(&self, span: SpanData) -> Result<(), Refused> {
        match self.state.load(Ordering::Acquire) {
            OPEN => {}
            FLUSHED => return Err(Refused::Flushed),
            _ => return Err(Refused::Broken),
        }
        let size = estimated_size(&span);
        let mut held = self.held();
        if held.spans.len() >= self.capacity || held.bytes + size > self.max_bytes {
            return Err(Refused::Full);
        }
        held.spans.push((size, span));
        held.bytes += size;
        let batch_full = held.spans.len() == self.batch;
        drop(held);
        if batch_full {
            self.batch_ready.notify_one();
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.held().spans.len()
    }

    /// Up to one batch of the oldest spans. Their bytes still count against the bound until
    /// [`release`](Self::release)d, once sent (or dropped).
    pub(crate) fn take_batch(&self) -> Batch {
        let mut held = self.held();
        let n = held.spans.len().min(self.batch);
        let mut bytes = 0;
        let spans = held
            .spans
            .drain(..n)
            .map(|(size, span)| {
                bytes += size;
                span
            })
            .collect();
        Batch { spans, bytes }
    }

    /// A batch taken earlier is gone: its bytes no longer count.
    pub(crate) fn release(&self, bytes: usize) {
        let mut held = self.held();
        held.bytes = held.bytes.saturating_sub(bytes);
    }

    /// Refuses every span from now on; those already queued stay for the flush.
    pub(crate) fn close(&self, broken: bool) {
        let state = if broken { BROKEN } else { FLUSHED };
        self.state.store(state, Ordering::Release);
    }

    /// Empties the queue; returns how many spans were in it.
    pub(crate) fn clear(&self) -> usize {
        let mut held = self.held();
        let left = held.spans.len();
        let bytes: usize = held.spans.drain(..).map(|(size, _)| size).sum();
        held.bytes = held.bytes.saturating_sub(bytes);
        left
    }
}

/// About how many bytes a span holds: its own struct, and what its strings and lists add.
fn estimated_size(span: &SpanData) -> usize {
    let attributes = |list: &[KeyValue]| -> usize {
        list.iter()
            .map(|kv| size_of::<KeyValue>() + kv.key.as_str().len() + value_size(&kv.value))
            .sum()
    };
    let events: usize = span
        .events
        .iter()
        .map(|event| size_of::<Event>() + event.name.len() + attributes(&event.attributes))
        .sum();
    let links: usize = span
        .links
        .iter()
        .map(|link| size_of::<Link>() + attributes(&link.attributes))
        .sum();
    size_of::<SpanData>() + span.name.len() + attributes(&span.attributes) + events + links
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.as_str().len(),
        Value::Array(Array::String(list)) => list
            .iter()
            .map(|s| size_of::<StringValue>() + s.as_str().len())
            .sum(),
        Value::Array(Array::Bool(list)) => list.len(),
        Value::Array(Array::I64(list)) => list.len() * 8,
        Value::Array(Array::F64(list)) => list.len() * 8,
        _ => 0,
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
        assert_eq!(queue.take_batch().spans.len(), 2);
        assert_eq!(queue.len(), 1);
        queue.close(false);
        assert_eq!(queue.push(span()), Err(Refused::Flushed));
        assert_eq!(queue.clear(), 1);
    }

    #[test]
    fn bytes_bound_the_queue_until_the_batch_sent_is_released() {
        let big = || {
            let mut span = span();
            span.attributes = vec![KeyValue::new("request_id", "x".repeat(10_000))];
            span
        };
        let size = estimated_size(&big());
        assert!(size > 10_000, "{size}");
        let queue = SpanQueue::with_max_bytes(100, 2, 3 * size);
        for _ in 0..3 {
            queue.push(big()).unwrap();
        }
        assert_eq!(queue.push(big()), Err(Refused::Full), "three spans' bytes");
        let batch = queue.take_batch();
        assert_eq!((batch.spans.len(), batch.bytes), (2, 2 * size));
        assert_eq!(
            queue.push(big()),
            Err(Refused::Full),
            "the batch being sent still counts"
        );
        queue.release(batch.bytes);
        queue.push(big()).unwrap();
        queue.push(big()).unwrap();
        assert_eq!(queue.clear(), 3);
        queue.push(big()).unwrap();
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
