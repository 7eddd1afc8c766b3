//! The export queue: a span processor that never makes the code ending a span wait, and one
//! thread that sends batches to the collector.
//!
//! The SDK's own batch processor is not used because it reports spans dropped on a full queue
//! only in its own log, ignores `OTEL_BSP_EXPORT_TIMEOUT`, and its shutdown blocks the calling
//! thread. Here:
//! - ending a span is a `try_send` into a bounded queue: when the queue is full the span is
//!   dropped and counted (`rodent_spans_dropped_total`), the request goes on;
//! - one thread owns a small current-thread runtime (the HTTP and gRPC clients both need one)
//!   and exports one batch at a time, each bounded by `OTEL_BSP_EXPORT_TIMEOUT`; a batch that
//!   fails is dropped and counted, so a collector that is down or slow costs spans, never
//!   requests;
//! - the flush at shutdown is a message with a deadline, awaited by the shutdown hook.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter as _, SpanProcessor};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tracing::Dispatch;

use super::settings::{Batch, Export, Protocol};
use crate::metrics::Metrics;

/// What the queue's owner asks of the export thread.
enum Control {
    /// Logging is installed and can be used from now on: build the exporter and start.
    Start(Dispatch),
    /// Export everything queued so far.
    Flush(Reply),
    /// Export everything queued, until the deadline at the latest, then stop.
    Shutdown { deadline: Instant, done: Reply },
}

/// How the export thread says it is done: to an async caller (the shutdown hook) or to a
/// thread that blocks (the SDK's `SpanProcessor` methods).
enum Reply {
    Async(oneshot::Sender<()>),
    Blocking(std::sync::mpsc::Sender<()>),
}

impl Reply {
    fn send(self) {
        // The caller may have stopped waiting (its timeout passed): nothing to tell then.
        match self {
            Self::Async(tx) => {
                let _ = tx.send(());
            }
            Self::Blocking(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// Counts exported and dropped spans: in the service's metrics once they exist, in a tally
/// until then (telemetry starts before the service).
#[derive(Debug, Default)]
pub(crate) struct SpanCounts {
    tally: Mutex<Tally>,
    /// Set when the exporter could not start: from then on every span is a dropped one.
    broken: AtomicBool,
}

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
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .expect("span count lock poisoned: nothing panics while holding it")
    }

    fn exported(&self, n: u64) {
        match &mut *self.tally() {
            Tally::Pending { exported, .. } => *exported += n,
            Tally::Metrics(metrics) => metrics.spans_exported(n),
        }
    }

    fn dropped(&self, n: u64) {
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

/// The span processor the tracer provider calls, and the handle that controls the export
/// thread.
#[derive(Debug, Clone)]
pub(crate) struct ExportQueue {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    counts: Arc<SpanCounts>,
}

impl std::fmt::Debug for Control {
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
        let (spans, spans_rx) = mpsc::channel(batch.max_queue_size);
        let (control, control_rx) = mpsc::unbounded_channel();
        let counts = Arc::new(SpanCounts::default());
        let worker = Worker {
            export,
            batch,
            resource,
            spans: spans_rx,
            control: control_rx,
            counts: counts.clone(),
            log: Dispatch::none(),
            failing: false,
        };
        std::thread::Builder::new()
            .name("rodent-otel".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            spans,
            control,
            counts,
        })
    }

    /// Lets the export thread log through `log` (the installed subscriber) and start exporting.
    pub(crate) fn start(&self, log: Dispatch) {
        let _ = self.control.send(Control::Start(log));
    }

    pub(crate) fn counts(&self) -> &Arc<SpanCounts> {
        &self.counts
    }

    /// Exports every span ended so far, for at most `limit`, then stops the export thread.
    pub(crate) async fn shut_down(&self, limit: Duration) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Shutdown {
                deadline: Instant::now() + limit,
                done: Reply::Async(tx),
            })
            .map_err(|_| "the export thread has already stopped".to_string())?;
        rx.await
            .map_err(|_| "the export thread stopped before flushing".to_string())
    }

    fn ask_and_wait(
        &self,
        message: impl FnOnce(Reply) -> Control,
        limit: Duration,
    ) -> OTelSdkResult {
        let (tx, rx) = std::sync::mpsc::channel();
        self.control
            .send(message(Reply::Blocking(tx)))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        rx.recv_timeout(limit)
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
        match self.spans.try_send(span) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.counts.dropped(1),
            // Closed after the flush at shutdown: spans ended later (the flush hook's own)
            // cannot be exported and are no loss to report. Closed because the exporter
            // never started: every span is lost.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                if self.counts.broken.load(Ordering::Relaxed) {
                    self.counts.dropped(1);
                }
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let limit = Duration::from_secs(30);
        self.ask_and_wait(Control::Flush, limit)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        self.ask_and_wait(|done| Control::Shutdown { deadline, done }, timeout)
    }
}

/// The export thread's state.
struct Worker {
    export: Export,
    batch: Batch,
    resource: Resource,
    spans: mpsc::Receiver<SpanData>,
    control: mpsc::UnboundedReceiver<Control>,
    counts: Arc<SpanCounts>,
    /// The service's log, once [`Control::Start`] has brought it.
    log: Dispatch,
    /// Whether the last export failed: failures are logged when they start and when they end,
    /// not once per batch.
    failing: bool,
}

impl Worker {
    fn run(mut self) {
        // What the HTTP and gRPC clients log (hyper, h2, tonic, tower) on this thread reaches
        // neither the log nor the traces: their own spans would be exported by the very
        // exporter they describe. The worker logs through `self.log` on purpose.
        let _silenced = tracing::dispatcher::set_default(&Dispatch::none());
        loop {
            match self.control.blocking_recv() {
                Some(Control::Start(log)) => {
                    self.log = log;
                    break;
                }
                Some(Control::Flush(done)) => done.send(),
                Some(Control::Shutdown { done, .. }) => return done.send(),
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
        self.counts.broken.store(true, Ordering::Relaxed);
        self.spans.close();
        let mut queued = 0;
        while self.spans.try_recv().is_ok() {
            queued += 1;
        }
        self.counts.dropped(queued);
        while let Some(control) = self.control.blocking_recv() {
            match control {
                Control::Flush(done) => done.send(),
                Control::Shutdown { done, .. } => return done.send(),
                Control::Start(_) => {}
            }
        }
    }

    async fn serve(&mut self, exporter: SpanExporter) {
        let max = self.batch.max_export_batch_size;
        let mut batch = Vec::with_capacity(max);
        let mut tick = tokio::time::interval(self.batch.schedule_delay);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                span = self.spans.recv() => {
                    let Some(span) = span else { return };
                    batch.push(span);
                    if batch.len() >= max {
                        self.export(&exporter, &mut batch, None).await;
                    }
                }
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.export(&exporter, &mut batch, None).await;
                    }
                }
                control = self.control.recv() => match control {
                    Some(Control::Flush(done)) => {
                        self.drain(&exporter, &mut batch, None).await;
                        done.send();
                    }
                    Some(Control::Shutdown { deadline, done }) => {
                        self.spans.close();
                        self.drain(&exporter, &mut batch, Some(deadline)).await;
                        let _ = exporter.shutdown();
                        done.send();
                        return;
                    }
                    Some(Control::Start(_)) => {}
                    None => return,
                },
            }
        }
    }

    /// Exports everything queued now, batch after batch. At shutdown (with a deadline), a
    /// collector that fails once gets no second chance: what is left is dropped and counted
    /// rather than holding the exit for one export timeout per batch.
    async fn drain(
        &mut self,
        exporter: &SpanExporter,
        batch: &mut Vec<SpanData>,
        deadline: Option<Instant>,
    ) {
        let max = self.batch.max_export_batch_size;
        loop {
            while batch.len() < max {
                match self.spans.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.drop_queued(batch, "the flush deadline passed");
            }
            self.export(exporter, batch, deadline).await;
            if deadline.is_some() && self.failing {
                return self.drop_queued(batch, "the collector failed during the flush");
            }
        }
    }

    fn drop_queued(&mut self, batch: &mut Vec<SpanData>, cause: &str) {
        let mut left = batch.len() as u64;
        batch.clear();
        while self.spans.try_recv().is_ok() {
            left += 1;
        }
        if left > 0 {
            self.counts.dropped(left);
            self.log_failure(left, cause);
        }
    }

    async fn export(
        &mut self,
        exporter: &SpanExporter,
        batch: &mut Vec<SpanData>,
        deadline: Option<Instant>,
    ) {
        let spans = std::mem::replace(batch, Vec::with_capacity(self.batch.max_export_batch_size));
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

/// The OTLP exporter for the configured protocol. Everything is set explicitly, so the values
/// validated from rodent's variables (env file included) are the ones used.
///
/// The exporter still adds `OTEL_EXPORTER_OTLP_*HEADERS` from the process environment on top:
/// only a header the env file removes (rather than changes) would survive that way.
fn build_exporter(export: &Export) -> Result<SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    match export.protocol {
        Protocol::HttpProtobuf => {
            let mut builder = SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(export.endpoint.clone())
                .with_timeout(export.timeout)
                .with_headers(export.headers.iter().cloned().collect());
            if export.gzip {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            builder.build()
        }
        Protocol::Grpc => {
            let mut headers = axum::http::HeaderMap::new();
            for (name, value) in &export.headers {
                let name = axum::http::HeaderName::try_from(name.as_str())
                    .expect("header names were validated with the configuration");
                let value = axum::http::HeaderValue::try_from(value.as_str())
                    .expect("header values were validated with the configuration");
                headers.insert(name, value);
            }
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(export.endpoint.clone())
                .with_timeout(export.timeout)
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers),
                );
            if export.gzip {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            builder.build()
        }
    }
}
