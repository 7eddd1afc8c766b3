//! Logs: one JSON object per line on stdout (or text for people). The service's are written by a
//! background thread (`writer`), the PID 1 supervisor's each at once without blocking
//! (`direct`), so that a slow, blocked or closed stdout never blocks a request, the supervisor's
//! loop or the exit: lines stdout cannot take are dropped and counted
//! (`rodent_log_lines_dropped_total` for the service's). The filter and the format are
//! reloadable.

mod access;
mod direct;
mod json;
mod stdout;
mod writer;

use std::io::IsTerminal;
use std::sync::Arc;

use tracing::Metadata;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::LogFormat;
pub(crate) use access::{AccessLine, AccessLog};
pub(crate) use writer::DroppedLines;
use writer::LineWriter;

/// A layer over the bare registry; extra layers (such as trace export) come in this form.
pub(crate) type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Changes the filter and format of the installed subscriber.
#[derive(Clone)]
pub(crate) struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<BoxedLayer, Registry>,
    writer: LineWriter,
    access: Arc<AccessLog>,
}

/// The installed subscriber. [`close_within`](Self::close_within) (or dropping it) flushes the
/// lines still buffered, for a bounded time, so keep it until the very end of `main`.
pub(crate) struct Logging {
    handle: LogHandle,
    flush: writer::FlushOnDrop,
}

fn filter(directives: &str) -> EnvFilter {
    EnvFilter::builder()
        .parse(directives)
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

fn format_layer<W>(format: LogFormat, writer: W) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(json::JsonLines)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(writer)
            .boxed(),
    }
}

/// The supervisor's log: lines written straight to stdout, each at once without blocking or
/// dropped (see `direct`), since the supervisor's one loop has no thread to spare and must
/// never wait on a write. [`finish`](Self::finish) reports the dropped count.
pub(crate) struct DirectLog {
    writer: direct::DirectWriter,
}

/// Installs the supervisor's subscriber: its filter and format are the service's.
pub(crate) fn init_direct(directives: &str, format: LogFormat) -> DirectLog {
    let writer = direct::DirectWriter::new();
    let layer = format_layer(format, writer.clone()).with_filter(filter(directives));
    let _ = tracing_subscriber::registry().with(layer).try_init();
    DirectLog { writer }
}

impl DirectLog {
    /// Says how many lines were dropped, if any, without blocking: for the very end.
    pub(crate) fn finish(self) {
        self.writer.finish();
    }
}

impl Logging {
    /// Installs the global subscriber: logs filtered by `directives`, in `format`, plus `extra`
    /// layers that carry their own filters (trace export is not limited by the log level).
    /// Also routes panics through the log, so they come out as JSON like everything else.
    pub(crate) fn init(directives: &str, format: LogFormat, extra: Vec<BoxedLayer>) -> Self {
        let (writer, flush) = match writer::spawn(writer::stdout()) {
            Ok(started) => started,
            // Without a thread of its own, logging would have to block: better none at all
            // than requests waiting on stdout. This cannot happen short of running out of
            // threads, and then nothing else would start either.
            Err(e) => panic!("cannot start the log thread: {e}"),
        };
        let (log_layer, format_handle) = reload::Layer::new(format_layer(format, writer.clone()));
        let (filter, filter_handle) = reload::Layer::new(filter(directives));
        // Lines are events: spans (the request span among them) are for trace export only, and
        // keeping them away from this layer saves formatting fields no line prints.
        let logs = log_layer
            .with_filter(filter_fn(|meta: &Metadata<'_>| meta.is_event()).and(filter))
            .boxed();
        let mut layers = vec![logs];
        layers.extend(extra);
        // Keep an embedding application's subscriber if it installed one first.
        let installed = tracing_subscriber::registry()
            .with(layers)
            .try_init()
            .is_ok();
        if !installed {
            // Said through the subscriber that is there, which is where its author looks.
            tracing::warn!(
                target: "rodent::logging",
                "a tracing subscriber was installed before rodent's, so rodent's log sink and \
                 trace export are not in it: give the application's layers to \
                 App::tracing_layer instead"
            );
        }
        // Access lines skip `tracing` only on their way to rodent's own log layer.
        let access = if installed {
            AccessLog::direct(writer.clone(), directives, format)
        } else {
            AccessLog::through_tracing()
        };
        install_panic_hook();
        Self {
            handle: LogHandle {
                filter: filter_handle,
                format: format_handle,
                writer,
                access: Arc::new(access),
            },
            flush,
        }
    }

    pub(crate) fn handle(&self) -> LogHandle {
        self.handle.clone()
    }

    /// Writes what is still buffered, waiting for stdout at most `bound`: past it, the rest is
    /// dropped and counted, and the count is written without blocking, if stdout takes it.
    pub(crate) fn close_within(self, bound: std::time::Duration) {
        self.flush.close_within(bound);
    }
}

impl LogHandle {
    /// Writes what is buffered, waiting for stdout at most `bound`, and stops writing: for a
    /// process that ends at once.
    pub(crate) fn close_within(&self, bound: std::time::Duration) {
        self.writer.close_within(bound);
    }

    /// The count of lines dropped so far, for `/metrics`.
    pub(crate) fn dropped(&self) -> DroppedLines {
        self.writer.dropped()
    }

    /// Applies a reloaded filter and format.
    pub(crate) fn apply(&self, directives: &str, format: LogFormat) -> Result<(), String> {
        self.filter
            .reload(filter(directives))
            .map_err(|e| format!("the log filter cannot be changed: {e}"))?;
        self.format
            .reload(format_layer(format, self.writer.clone()))
            .map_err(|e| format!("the log format cannot be changed: {e}"))?;
        self.access.configure(directives, format);
        Ok(())
    }

    /// Where the request path writes its access lines.
    pub(crate) fn access_log(&self) -> Arc<AccessLog> {
        self.access.clone()
    }
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(non-string panic payload)");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            target: "rodent::panic",
            panic = message,
            location,
            thread = thread.name().unwrap_or("unnamed"),
            "panic"
        );
    }));
}
