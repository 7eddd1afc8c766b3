//! The span processor, which never makes the code ending a span wait, and the one thread that
//! sends batches of spans to the collector.
//!
//! The SDK's own batch processor is not used because it reports spans dropped on a full queue
//! only in its own log, ignores `OTEL_BSP_EXPORT_TIMEOUT`, and its shutdown blocks the calling
//! thread. Here:
//! - ending a span is a push into a bounded [`SpanQueue`]: when the queue is full the span is
//!   dropped and counted (`rodent_spans_dropped_total`), the request goes on;
//! - one thread owns a small current-thread runtime (the HTTP and gRPC clients both need one)
//!   and exports one batch at a time, each bounded by `OTEL_BSP_EXPORT_TIMEOUT`; a batch that
//!   fails is dropped and counted, so a collector that is down or slow costs spans, never
//!   requests;
//! - the flush at shutdown is a message with a deadline, awaited by the shutdown hook.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter as _, SpanProcessor};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tracing::Dispatch;

use super::otlp::build_exporter;
use super::queue::{Refused, SpanCounts, SpanQueue};
use crate::config::otel::{Batch, Export};

/// What the queue's owner asks of the export thread.
enum ExportOrder {
    /// Logging is installed and can be used from now on: build the exporter and start.
    Start(Dispatch),
    /// Export everything queued so far.
    Flush(Reply),
    /// Export everything queued, until the deadline at the latest, then stop.
    Shutdown { deadline: Instant, done: Reply },
}

/// How the export thread says it is done, and how many spans it dropped doing it: to an async
/// caller (the final flush) or to a thread that blocks (the SDK's `SpanProcessor` methods).
enum Reply {
    Async(oneshot::Sender<u64>),
    Blocking(std::sync::mpsc::Sender<u64>),
}

impl Reply {
    fn send(self, dropped: u64) {
        // The caller may have stopped waiting (its timeout passed): nothing to tell then.
        match self {
            Self::Async(tx) => {
                let _ = tx.send(dropped);
            }
            Self::Blocking(tx) => {
                let _ = tx.send(dropped);
            }
        }
    }
}

/// The span processor the tracer provider calls, and the handle that controls the export
/// thread.
#[derive(Debug, Clone)]
pub(crate) struct ExportQueue {
    queue: Arc<SpanQueue>,
    control: mpsc::UnboundedSender<ExportOrder>,
    counts: Arc<SpanCounts>,
}

impl std::fmt::Debug for ExportOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Start(_) => "Start",
            Self::Flush(_) => "Flush",
            Self::Shutdown { .. } => "Shutdown",
        })
    }
}

impl ExportQueue {
    /// Starts the export thread. It waits for [`start`](Self::start) before exporting anything;
    /// spans ended meanwhile wait in the queue.
    pub(crate) fn spawn(export: Export, batch: Batch, resource: Resource) -> std::io::Result<Self> {
        let queue = Arc::new(SpanQueue::new(
            batch.max_queue_size,
            batch.max_export_batch_size,
        ));
        let (control, control_rx) = mpsc::unbounded_channel();
        let counts = Arc::new(SpanCounts::default());
        let worker = Worker {
            export,
            batch,
            resource,
            queue: queue.clone(),
            control: control_rx,
            counts: counts.clone(),
            log: Dispatch::none(),
            failing: false,
            dropped: 0,
        };
        std::thread::Builder::new()
            .name("rodent-otel".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            queue,
            control,
            counts,
        })
    }

    /// Lets the export thread log through `log` (the installed subscriber) and start exporting.
    pub(crate) fn start(&self, log: Dispatch) {
        let _ = self.control.send(ExportOrder::Start(log));
    }

    pub(crate) fn counts(&self) -> &Arc<SpanCounts> {
        &self.counts
    }

    /// Exports every span ended so far, until `deadline` at the latest, then stops the export
    /// thread. Returns how many spans were dropped (each counted in the metrics) rather than
    /// exported: those the collector did not take in time, those still queued at the deadline.
    /// When the export thread is gone, the spans it left are counted as dropped too.
    pub(crate) async fn shut_down(&self, deadline: Instant) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        let sent = self.control.send(ExportOrder::Shutdown {
            deadline,
            done: Reply::Async(tx),
        });
        if sent.is_err() {
            self.drop_left();
            return Err("the export thread has already stopped".to_string());
        }
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(dropped)) => Ok(dropped),
            Ok(Err(_)) => {
                self.drop_left();
                Err("the export thread stopped before flushing".to_string())
            }
            // The thread is stuck outside an export (its exporter's own shutdown, a lookup):
            // what is still queued is dropped here.
            Err(_) => Ok(self.drop_left()),
        }
    }

    /// Drops and counts the spans still queued.
    fn drop_left(&self) -> u64 {
        let left = self.queue.clear() as u64;
        self.counts.dropped(left);
        left
    }

    fn ask_and_wait(
        &self,
        message: impl FnOnce(Reply) -> ExportOrder,
        limit: Duration,
    ) -> OTelSdkResult {
        let (tx, rx) = std::sync::mpsc::channel();
        self.control
            .send(message(Reply::Blocking(tx)))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        rx.recv_timeout(limit)
            .map(|_dropped| ())
            .map_err(|_| OTelSdkError::Timeout(limit))
    }
}

impl SpanProcessor for ExportQueue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        // Recorded but not sampled: kept for the process's own use, never exported.
        if !span.span_context.is_sampled() {
            return;
        }
        match self.queue.push(span) {
            Ok(()) | Err(Refused::Flushed) => {}
            Err(Refused::Full | Refused::Broken) => self.counts.dropped(1),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let limit = Duration::from_secs(30);
        self.ask_and_wait(ExportOrder::Flush, limit)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        self.ask_and_wait(|done| ExportOrder::Shutdown { deadline, done }, timeout)
    }
}

/// The export thread's state.
struct Worker {
    export: Export,
    batch: Batch,
    resource: Resource,
    queue: Arc<SpanQueue>,
    control: mpsc::UnboundedReceiver<ExportOrder>,
    counts: Arc<SpanCounts>,
    /// The service's log, once [`ExportOrder::Start`] has brought it.
    log: Dispatch,
    /// Whether the last export failed: failures are logged when they start and when they end,
    /// not once per batch.
    failing: bool,
    /// Spans this thread dropped (the queue's refusals are counted where they happen).
    dropped: u64,
}

impl Worker {
    fn run(mut self) {
        // What the HTTP and gRPC clients log (hyper, h2, tonic, tower) on this thread reaches
        // neither the log nor the traces: their own spans would be exported by the very
        // exporter they describe. The worker logs through `self.log` on purpose.
        let _silenced = tracing::dispatcher::set_default(&Dispatch::none());
        loop {
            match self.control.blocking_recv() {
                Some(ExportOrder::Start(log)) => {
                    self.log = log;
                    break;
                }
                Some(ExportOrder::Flush(done)) => done.send(0),
                Some(ExportOrder::Shutdown { done, .. }) => {
                    let left = self.queue.clear() as u64;
                    self.counts.dropped(left);
                    return done.send(left);
                }
                None => return,
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // The blocking pool (DNS lookups) is silenced like this thread; the guard is kept
            // for the thread's life by forgetting it.
            .on_thread_start(|| {
                std::mem::forget(tracing::dispatcher::set_default(&Dispatch::none()))
            })
            .build();
        let runtime = match runtime {
            Ok(runtime) => runtime,
            Err(e) => return self.give_up(&format!("cannot start its runtime: {e}")),
        };
        // The gRPC channel is created inside the runtime it will run on.
        let exporter = {
            let _entered = runtime.enter();
            build_exporter(&self.export)
        };
        match exporter {
            Ok(mut exporter) => {
                exporter.set_resource(&self.resource);
                runtime.block_on(self.serve(exporter));
            }
            Err(e) => self.give_up(&format!("cannot build the OTLP exporter: {e}")),
        }
    }

    /// The exporter could not start: every span is counted as dropped from now on, and
    /// shutdown requests are answered at once.
    fn give_up(mut self, cause: &str) {
        tracing::dispatcher::with_default(&self.log, || {
            tracing::error!(target: "rodent::telemetry", cause, "traces will not be exported");
        });
        self.queue.close(true);
        self.counts.dropped(self.queue.clear() as u64);
        while let Some(control) = self.control.blocking_recv() {
            match control {
                ExportOrder::Flush(done) => done.send(0),
                ExportOrder::Shutdown { done, .. } => return done.send(0),
                ExportOrder::Start(_) => {}
            }
        }
    }

    async fn serve(&mut self, exporter: SpanExporter) {
        let mut tick = tokio::time::interval(self.batch.schedule_delay);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.queue.batch_ready.notified() => self.export_queued(&exporter, None).await,
                _ = tick.tick() => self.export_queued(&exporter, None).await,
                control = self.control.recv() => match control {
                    Some(ExportOrder::Flush(done)) => {
                        self.export_queued(&exporter, None).await;
                        done.send(0);
                    }
                    Some(ExportOrder::Shutdown { deadline, done }) => {
                        self.queue.close(false);
                        let before = self.dropped;
                        self.export_queued(&exporter, Some(deadline)).await;
                        // Told before the exporter's own shutdown, which may block.
                        done.send(self.dropped - before);
                        let _ = exporter.shutdown();
                        return;
                    }
                    Some(ExportOrder::Start(_)) => {}
                    None => return,
                },
            }
        }
    }

    /// Exports the spans queued now, batch after batch; spans ended meanwhile wait for the
    /// next round, so a busy service cannot keep this loop from its control messages.
    ///
    /// At shutdown (with a deadline) the queue is closed first, and a collector that fails
    /// once gets no second chance: what is left is dropped and counted rather than holding the
    /// exit for one export timeout per batch.
    async fn export_queued(&mut self, exporter: &SpanExporter, deadline: Option<Instant>) {
        let mut left = self.queue.len();
        while left > 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.drop_queued("the flush deadline passed");
            }
            let batch = self.queue.take_batch();
            if batch.spans.is_empty() {
                break;
            }
            left = left.saturating_sub(batch.spans.len());
            self.export(exporter, batch.spans, deadline).await;
            self.queue.release(batch.bytes);
            if deadline.is_some() && self.failing {
                return self.drop_queued("the collector failed during the flush");
            }
        }
    }

    fn drop_queued(&mut self, cause: &str) {
        let left = self.queue.clear() as u64;
        if left > 0 {
            self.counts.dropped(left);
            self.dropped += left;
            self.log_failure(left, cause);
        }
    }

    async fn export(
        &mut self,
        exporter: &SpanExporter,
        spans: Vec<SpanData>,
        deadline: Option<Instant>,
    ) {
        let n = spans.len() as u64;
        let limit = match deadline {
            Some(d) => self
                .batch
                .export_timeout
                .min(d.saturating_duration_since(Instant::now())),
            None => self.batch.export_timeout,
        };
        let outcome = match tokio::time::timeout(limit, exporter.export(spans)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
        };
        match outcome {
            Ok(()) => {
                self.counts.exported(n);
                if self.failing {
                    self.failing = false;
                    tracing::dispatcher::with_default(&self.log, || {
                        tracing::info!(target: "rodent::telemetry", endpoint = %self.export.endpoint, "the collector accepts spans again");
                    });
                }
            }
            Err(cause) => {
                self.counts.dropped(n);
                self.dropped += n;
                self.log_failure(n, &cause);
            }
        }
    }

    fn log_failure(&mut self, spans: u64, cause: &str) {
        if self.failing {
            return;
        }
        self.failing = true;
        tracing::dispatcher::with_default(&self.log, || {
            tracing::warn!(
                target: "rodent::telemetry",
                endpoint = %self.export.endpoint,
                dropped = spans,
                cause,
                "cannot export spans; they are dropped (and counted in rodent_spans_dropped_total) until the collector accepts them again"
            );
        });
    }
}
