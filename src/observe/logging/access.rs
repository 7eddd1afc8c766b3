//! The access-log line, written straight into the log buffer. Through `tracing`, each request's
//! line paid for the dispatch, the per-layer filters and the field visitors before a byte was
//! formatted; here it is formatted at once, in the very JSON the log layer writes. `RODENT_LOG`
//! still decides whether it is written: its filter is evaluated for the `rodent::access` target
//! when the configuration is loaded or reloaded, not per request.
//!
//! The line goes through `tracing` as before when this cannot be decided up front: text format,
//! a filter with span or field directives (which depend on each request), or a subscriber that
//! is not rodent's (an embedding application's).

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use tracing::callsite::Callsite;
use tracing::{Level, Metadata};
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::json::{write_f64, write_string, write_timestamp, write_u64};
use super::writer::LineWriter;
use crate::config::LogFormat;

/// One request's access-log line.
pub(crate) struct AccessLine<'a> {
    pub method: &'static str,
    pub route: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    /// What the application noted about the response ([`AccessNote`](crate::http::AccessNote)).
    pub note: Option<&'a str>,
}

/// Where access-log lines go, as decided at the last (re)load.
pub(crate) struct AccessLog {
    mode: AtomicU8,
    writer: Option<LineWriter>,
}

const THROUGH_TRACING: u8 = 0;
const DIRECT: u8 = 1;
const INFO: u8 = 2;
const DEBUG: u8 = 4;

impl Default for AccessLog {
    fn default() -> Self {
        Self::through_tracing()
    }
}

impl AccessLog {
    /// Every line through `tracing`: the subscriber is not rodent's.
    pub(crate) fn through_tracing() -> Self {
        Self {
            mode: AtomicU8::new(THROUGH_TRACING),
            writer: None,
        }
    }

    pub(super) fn direct(writer: LineWriter, directives: &str, format: LogFormat) -> Self {
        let log = Self {
            mode: AtomicU8::new(THROUGH_TRACING),
            writer: Some(writer),
        };
        log.configure(directives, format);
        log
    }

    /// Decides again, for a new filter and format.
    pub(super) fn configure(&self, directives: &str, format: LogFormat) {
        let mode = match (format, levels(&super::filter(directives))) {
            (LogFormat::Json, Some((info, debug))) => {
                DIRECT | if info { INFO } else { 0 } | if debug { DEBUG } else { 0 }
            }
            _ => THROUGH_TRACING,
        };
        self.mode.store(mode, Ordering::Relaxed);
    }

    /// Writes `line` at `level` (info or debug) when the filter lets it through; `false` when
    /// the caller must send it through `tracing` instead.
    pub(crate) fn write(&self, level: Level, line: &AccessLine<'_>) -> bool {
        let mode = self.mode.load(Ordering::Relaxed);
        let Some(writer) = self.writer.as_ref().filter(|_| mode & DIRECT != 0) else {
            return false;
        };
        let enabled = if level == Level::DEBUG { DEBUG } else { INFO };
        if mode & enabled != 0 {
            BUFFER.with_borrow_mut(|buffer| {
                buffer.clear();
                // Writing to a String cannot fail.
                let _ = format(buffer, level, line);
                // The log writer never fails: a full buffer counts the line as dropped.
                let _ = writer.clone().write(buffer.as_bytes());
            });
        }
        true
    }
}

thread_local! {
    static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The line exactly as the JSON layer formats the `tracing` event (`json::JsonLines`).
fn format(out: &mut String, level: Level, line: &AccessLine<'_>) -> std::fmt::Result {
    out.push_str("{\"timestamp\":\"");
    write_timestamp(out, SystemTime::now())?;
    out.push_str("\",\"level\":\"");
    out.push_str(level.as_str());
    out.push_str("\",\"message\":\"request\",\"method\":");
    write_string(out, line.method)?;
    out.push_str(",\"route\":");
    write_string(out, line.route)?;
    out.push_str(",\"status\":");
    write_u64(out, line.status.into())?;
    out.push_str(",\"latency_ms\":");
    write_f64(out, line.latency_ms)?;
    out.push_str(",\"request_id\":");
    write_string(out, line.request_id)?;
    if let Some(trace_id) = line.trace_id {
        out.push_str(",\"trace_id\":");
        write_string(out, trace_id)?;
    }
    if let Some(note) = line.note {
        out.push_str(",\"note\":");
        write_string(out, note)?;
    }
    out.push_str(",\"target\":\"rodent::access\"}\n");
    Ok(())
}

/// Whether `filter` enables the access line at info and at debug, when that does not depend on
/// the request (no span or field directives).
fn levels(filter: &EnvFilter) -> Option<(bool, bool)> {
    let info = tracing::callsite! {
        name: "request",
        kind: tracing::metadata::Kind::EVENT,
        target: "rodent::access",
        level: Level::INFO,
        fields: message
    };
    let debug = tracing::callsite! {
        name: "request",
        kind: tracing::metadata::Kind::EVENT,
        target: "rodent::access",
        level: Level::DEBUG,
        fields: message
    };
    Some((
        enabled(filter, info.metadata())?,
        enabled(filter, debug.metadata())?,
    ))
}

fn enabled(filter: &EnvFilter, meta: &'static Metadata<'static>) -> Option<bool> {
    let interest = <EnvFilter as Layer<Registry>>::register_callsite(filter, meta);
    if interest.is_always() {
        Some(true)
    } else if interest.is_never() {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn the_filter_is_decided_per_level_or_left_to_tracing() {
        let decide = |directives: &str| levels(&super::super::filter(directives));
        assert_eq!(decide("info"), Some((true, false)));
        assert_eq!(decide("warn"), Some((false, false)));
        assert_eq!(decide("info,rodent::access=debug"), Some((true, true)));
        assert_eq!(decide("debug,rodent::access=off"), Some((false, false)));
        assert_eq!(decide("info,rodent=warn"), Some((false, false)));
        assert_eq!(decide("info,[request{route}]=debug"), None);
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Drops the timestamp, the one part that differs between two lines.
    fn untimed(line: &str) -> String {
        let at = line.find("\",\"level\"").unwrap();
        line[at..].to_string()
    }

    #[test]
    fn the_line_is_the_one_the_json_layer_writes() {
        let captured = Captured::default();
        let writer = captured.clone();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(super::super::json::JsonLines)
            .with_writer(move || writer.clone());
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let cases = [
            (None, None),
            (Some("4bf92f3577b34da6a3ce929d0e0e4736"), None),
            (None, Some("injected delay 120ms; injected error")),
        ];
        for (trace_id, note) in cases {
            let line = AccessLine {
                method: "GET",
                route: "/delay/{ms}",
                status: 200,
                latency_ms: 0.352,
                request_id: "abc-\"123\"",
                trace_id,
                note,
            };
            tracing::dispatcher::with_default(&dispatch, || {
                tracing::info!(target: "rodent::access", method = line.method, route = line.route, status = line.status, latency_ms = line.latency_ms, request_id = line.request_id, trace_id = line.trace_id, note = line.note, "request");
            });
            let through_tracing =
                String::from_utf8(std::mem::take(&mut *captured.0.lock().unwrap())).unwrap();
            let mut direct = String::new();
            format(&mut direct, Level::INFO, &line).unwrap();
            assert_eq!(untimed(&direct), untimed(&through_tracing));
        }
    }
}
