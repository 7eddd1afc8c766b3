//! Trace context at the HTTP edge: what `OTEL_PROPAGATORS` reads from a request (W3C
//! `traceparent`/`tracestate` and `baggage`, Zipkin's B3 in either form) and writes on the
//! requests a handler makes in turn, and the `traceresponse` header that tells the client which
//! trace and span served it.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_propagator_b3::{B3Encoding, Propagator as B3};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::Config;
use crate::config::otel::Propagator;
use crate::observe::clip::CLIENT_TEXT_LIMIT;

/// The response header carrying the server span, in the `traceparent` format (W3C Trace Context
/// Level 2 names it `traceresponse`).
pub(crate) const TRACERESPONSE: &str = "traceresponse";

/// Every header the B3 propagator reads, whichever form it writes.
const B3_HEADERS: [&str; 5] = [
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "x-b3-flags",
];

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    /// A `tracestate` longer than [`CLIENT_TEXT_LIMIT`] is not continued (W3C Trace Context lets
    /// a vendor drop one past its limit): it would ride along in every exported span.
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.0.get(key).and_then(|v| v.to_str().ok())?;
        (key != "tracestate" || value.len() <= CLIENT_TEXT_LIMIT).then_some(value)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The configured propagators, as OpenTelemetry's composite of them.
pub(crate) fn propagator(list: &[Propagator]) -> TextMapCompositePropagator {
    let each = list
        .iter()
        .map(|p| -> Box<dyn TextMapPropagator + Send + Sync> {
            match p {
                Propagator::TraceContext => Box::new(TraceContextPropagator::new()),
                Propagator::Baggage => Box::new(BaggagePropagator::new()),
                Propagator::B3 => Box::new(B3::with_encoding(B3Encoding::SingleHeader)),
                Propagator::B3Multi => Box::new(B3::with_encoding(B3Encoding::MultipleHeader)),
            }
        })
        .collect();
    TextMapCompositePropagator::new(each)
}

struct HeadersOut<'a>(&'a mut HeaderMap);

impl Injector for HeadersOut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::try_from(value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Trace context across HTTP hops, in the formats `OTEL_PROPAGATORS` names: read from the
/// requests the service receives, and written on those its handlers make in turn, so that the
/// services they call join the same trace. A cheap handle, from
/// [`Rodent::propagation`](crate::Rodent::propagation).
#[derive(Clone)]
pub struct Propagation(Arc<Propagators>);

struct Propagators {
    propagator: TextMapCompositePropagator,
    /// The headers the propagators read: a request with none of them (most, from outside a
    /// mesh) is answered without running them.
    headers: Vec<String>,
}

impl std::fmt::Debug for Propagation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Propagation")
            .field("headers", &self.0.headers)
            .finish()
    }
}

impl Propagation {
    /// As `config`'s `OTEL_PROPAGATORS` says.
    pub(crate) fn of(config: &Config) -> Self {
        Self::new(&crate::config::otel::propagators(&config.vars))
    }

    pub(crate) fn new(list: &[Propagator]) -> Self {
        let propagator = propagator(list);
        let mut headers: Vec<String> = propagator.fields().map(str::to_string).collect();
        if list
            .iter()
            .any(|p| matches!(p, Propagator::B3 | Propagator::B3Multi))
        {
            headers.extend(B3_HEADERS.iter().map(|h| h.to_string()));
        }
        headers.sort();
        headers.dedup();
        Self(Arc::new(Propagators {
            propagator,
            headers,
        }))
    }

    /// The context a request continues: a valid remote span (its trace goes on), baggage, or
    /// both; `None` when it carries neither.
    pub(crate) fn incoming(&self, headers: &HeaderMap) -> Option<opentelemetry::Context> {
        if !self
            .0
            .headers
            .iter()
            .any(|h| headers.contains_key(h.as_str()))
        {
            return None;
        }
        let cx = self.0.propagator.extract(&Headers(headers));
        let continued = cx.span().span_context().is_valid() || !cx.baggage().is_empty();
        continued.then_some(cx)
    }

    /// Writes on `outgoing`, a request a handler is about to make, the trace context of the
    /// request it serves, whose headers are `incoming`: when traces are exported, the current
    /// span's (the request's server span, or a span the handler opened inside it, such as a
    /// client span for this call), so the callee's spans are its children; otherwise the
    /// context the request came with, unchanged, so the callee still joins the caller's
    /// trace. Baggage is passed on either way (an exported span's context keeps its parent's).
    /// Nothing is written when there is no context.
    pub fn inject(&self, incoming: &HeaderMap, outgoing: &mut HeaderMap) {
        let current = tracing::Span::current().context();
        let cx = if current.span().span_context().is_valid() {
            current
        } else if let Some(came_with) = self.incoming(incoming) {
            came_with
        } else {
            return;
        };
        self.0
            .propagator
            .inject_context(&cx, &mut HeadersOut(outgoing));
    }
}

/// `00-<trace id>-<span id>-<flags>`, the `traceparent` format.
pub(crate) fn traceresponse(span: &SpanContext) -> HeaderValue {
    let value = format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    );
    HeaderValue::try_from(value).expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w3c() -> Propagation {
        Propagation::new(&[Propagator::TraceContext, Propagator::Baggage])
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_its_tracestate() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        headers.insert("tracestate", HeaderValue::from_static("vendor=abc"));
        let cx = w3c().incoming(&headers).expect("a valid traceparent");
        let parent = cx.span().span_context().clone();
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_sampled() && parent.is_remote());
        assert_eq!(parent.trace_state().header(), "vendor=abc");
        assert_eq!(
            traceresponse(&parent),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn without_exported_spans_the_incoming_context_is_passed_on() {
        let mut incoming = HeaderMap::new();
        incoming.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        incoming.insert("tracestate", HeaderValue::from_static("vendor=abc"));
        let mut outgoing = HeaderMap::new();
        w3c().inject(&incoming, &mut outgoing);
        assert_eq!(outgoing["traceparent"], incoming["traceparent"]);
        assert_eq!(outgoing["tracestate"], "vendor=abc");

        let b3 = Propagation::new(&[Propagator::B3]);
        let mut outgoing = HeaderMap::new();
        b3.inject(&HeaderMap::new(), &mut outgoing);
        assert!(outgoing.is_empty(), "{outgoing:?}");
    }

    #[test]
    fn a_missing_or_invalid_traceparent_starts_nothing() {
        assert!(w3c().incoming(&HeaderMap::new()).is_none());
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        assert!(w3c().incoming(&headers).is_none());
    }
}
