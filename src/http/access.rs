//! One span, one access-log line and the request metrics per request, all by matched route.
//!
//! The span is the OpenTelemetry server span when traces are exported (see [`telemetry`]): it
//! continues the W3C `traceparent`/`tracestate` the request came with, carries the HTTP
//! semantic-convention attributes, and its context goes back to the client in a
//! `traceresponse` header. Its trace id is in the access-log line either way: when traces are
//! not exported, the one of the incoming `traceparent`, so logs still join the caller's trace.
//!
//! Probes and `/metrics` get a debug-level span: they are not traced, as they are not logged
//! by default.
//!
//! [`telemetry`]: crate::observe::telemetry

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Version, header};
use axum::response::Response;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceId};
use tokio::time::Instant;
use tracing::field::Empty;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::body::Guarded;
use super::problem::Panicked;
use super::routes::is_exempt;
use super::shared::Shared;
use crate::observe::metrics::{Route, UNMATCHED, method_label};
use crate::observe::telemetry::context;
use crate::server::RequestOnConnection;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request span, at a level fixed per call site (span metadata is static).
macro_rules! request_span {
    ($level:expr, $name:expr, $method:expr, $route:expr, $path:expr, $request_id:expr) => {
        tracing::span!(
            target: "rodent::http",
            $level,
            "HTTP request",
            otel.name = %$name,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = $method,
            http.request.method_original = Empty,
            http.route = $route,
            http.response.status_code = Empty,
            url.path = $path,
            url.scheme = "http",
            network.protocol.version = Empty,
            network.peer.address = Empty,
            network.peer.port = Empty,
            client.address = Empty,
            server.address = Empty,
            server.port = Empty,
            user_agent.original = Empty,
            error.type = Empty,
            request_id = %$request_id,
        )
    };
}

pub(super) async fn observe<F, Fut>(state: &Shared, mut req: Request, next: F) -> Response
where
    F: FnOnce(Request, Route) -> Fut,
    Fut: Future<Output = Response>,
{
    let started = Instant::now();
    let method = method_label(req.method());
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str);
    let (route, in_flight) = state.metrics.in_flight().enter(matched);
    let on_connection = req.extensions_mut().remove::<RequestOnConnection>();
    let id = request_id(&mut req);
    let request_id = id.to_str().unwrap_or_default();
    let exempt = is_exempt(&route);
    // Semantic conventions: `http.route` only when a route matched, and the span named after it.
    let http_route = (&*route != UNMATCHED).then_some(&*route);
    let name = SpanName(method, http_route);
    let path = req.uri().path();
    let span = if exempt {
        request_span!(
            tracing::Level::DEBUG,
            name,
            method,
            http_route,
            path,
            request_id
        )
    } else {
        request_span!(
            tracing::Level::INFO,
            name,
            method,
            http_route,
            path,
            request_id
        )
    };
    let incoming = state.propagation.incoming(req.headers());
    let server = server_span(&span, incoming.as_ref());
    // An unsampled span is never exported: attributes on it would be work for nothing.
    if server.as_ref().is_some_and(SpanContext::is_sampled) {
        record_request(&span, &req, method);
    }
    let trace_id: Option<TraceId> = server.as_ref().map(SpanContext::trace_id).or_else(|| {
        incoming
            .as_ref()
            .map(|cx| cx.span().span_context().clone())
            .filter(SpanContext::is_valid)
            .map(|span| span.trace_id())
    });
    let mut response = next(req, route.clone()).instrument(span.clone()).await;

    let status = response.status().as_u16();
    let latency = started.elapsed();
    state
        .metrics
        .observe_request(method, &route, status, latency);
    if response.extensions().get::<Panicked>().is_some() {
        state.metrics.panic(&route);
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        // Server spans are errors for 5xx only: a 4xx is the client's mistake, not ours.
        span.record("error.type", status.to_string().as_str());
        span.record("otel.status_code", "error");
    }
    response
        .headers_mut()
        .entry(X_REQUEST_ID)
        .or_insert_with(|| id.clone());
    if let Some(server) = &server {
        response.headers_mut().insert(
            HeaderName::from_static(context::TRACERESPONSE),
            context::traceresponse(server),
        );
    }
    let trace_id = trace_id.map(|id| id.to_string());
    let trace_id = trace_id.as_deref();
    let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
    // Probes and scrapes arrive every few seconds forever: keep them out of the default log.
    if exempt {
        tracing::debug!(target: "rodent::access", parent: &span, method, route = &*route, status, latency_ms, request_id, trace_id, "request");
    } else {
        tracing::info!(target: "rodent::access", parent: &span, method, route = &*route, status, latency_ms, request_id, trace_id, "request");
    }
    // The request counts, on the connection and in flight, until its body is sent.
    response.map(|body| Guarded::wrap(body, (in_flight, on_connection)))
}

/// The request's `x-request-id`: the client's when it sent one, or a new UUID, set on the request
/// so that handlers see it too.
fn request_id(req: &mut Request) -> HeaderValue {
    if let Some(id) = req.headers().get(&X_REQUEST_ID) {
        return id.clone();
    }
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    let id = HeaderValue::from_str(id).expect("a UUID is a valid header value");
    req.headers_mut().insert(X_REQUEST_ID, id.clone());
    id
}

/// `GET /delay/{ms}`, or `GET` alone when no route matched; formatted only by a layer that
/// wants it (the OpenTelemetry one), so an untraced request allocates nothing for it.
struct SpanName<'a>(&'static str, Option<&'a str>);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(route) => write!(f, "{} {route}", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// Makes `span` the server span of the incoming trace, and returns its context; `None` when
/// traces are not exported (no OpenTelemetry layer, or a debug-level span it does not see).
fn server_span(span: &Span, incoming: Option<&opentelemetry::Context>) -> Option<SpanContext> {
    if let Some(parent) = incoming {
        // Fails only when there is no OpenTelemetry layer for this span: nothing to continue.
        let _ = span.set_parent(parent.clone());
    }
    let cx = span.context();
    let server = cx.span().span_context().clone();
    server.is_valid().then_some(server)
}

/// The attributes only an exported span needs.
fn record_request(span: &Span, req: &Request, method: &str) {
    if method == "_OTHER" {
        span.record("http.request.method_original", req.method().as_str());
    }
    let version = match req.version() {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "",
    };
    if !version.is_empty() {
        span.record("network.protocol.version", version);
    }
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        let ip = peer.ip().to_string();
        span.record("network.peer.address", ip.as_str());
        span.record("network.peer.port", peer.port());
        span.record("client.address", ip.as_str());
    }
    let host = req
        .uri()
        .authority()
        .map(|a| (a.host().to_string(), a.port_u16()))
        .or_else(|| {
            let host = req.headers().get(header::HOST)?.to_str().ok()?;
            let authority: axum::http::uri::Authority = host.parse().ok()?;
            Some((authority.host().to_string(), authority.port_u16()))
        });
    if let Some((host, port)) = host {
        span.record("server.address", host.as_str());
        if let Some(port) = port {
            span.record("server.port", port);
        }
    }
    if let Some(agent) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        span.record("user_agent.original", agent);
    }
}
