//! One span, one access-log line and the request metrics per request, all by matched route.
//!
//! The span is the OpenTelemetry server span when traces are exported (see [`telemetry`]): it
//! continues the W3C `traceparent`/`tracestate` the request came with, carries the HTTP
//! semantic-convention attributes, and its context goes back to the client in a
//! `traceresponse` header. Its trace id is in the access-log line either way: when traces are
//! not exported, the one of the incoming `traceparent`, so logs still join the caller's trace.
//!
//! Probes and `/metrics` get a debug-level span: they are not traced, as they are not logged
//! by default. What the client chose (the request id, the path, the user agent, the host) is
//! [clipped](crate::observe::clip) in the span and the line.
//!
//! [`telemetry`]: crate::observe::telemetry

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Version, header};
use axum::response::Response;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceId};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::field::Empty;
use tracing::instrument::Instrumented;
use tracing::{Instrument, Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::body::Guarded;
use super::guard::TimedOut;
use super::instance::Instance;
use super::note::AccessNote;
use super::problem::Panicked;
use super::routes::is_exempt;
use crate::observe::clip::clip;
use crate::observe::logging::AccessLine;
use crate::observe::metrics::{Entered, METHODS, RouteCache, UNMATCHED, method_index};
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

/// The span, access log and metrics of every request, as a layer. It sits inside tower-http's
/// `SetRequestId`, so the request id it logs is the one the response carries.
///
/// Not tower-http's `TraceLayer`: the span here continues the incoming trace context and carries
/// the semantic-convention attributes, the access line is written without `tracing`'s dispatch
/// (see `observe::logging::access`), and the metrics are resolved once per route, none of which
/// `TraceLayer`'s callbacks allow without redoing them per request.
#[derive(Clone)]
pub(crate) struct ObserveLayer(pub Arc<Instance>);

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.0.clone(),
            // Each route of the router gets its own copy of the stack, so its own cache.
            route: Arc::default(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    state: Arc<Instance>,
    route: Arc<RouteCache>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let (span, observed) = begin(&self.state, &self.route, &mut req);
        ObserveFuture {
            inner: self.inner.call(req).instrument(span),
            observed: Some(observed),
        }
    }
}

pin_project! {
    pub(crate) struct ObserveFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        observed: Option<Observed>,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Ok(response) = ready!(this.inner.as_mut().poll(cx));
        let observed = this
            .observed
            .take()
            .expect("an observe future is not polled after it completed");
        Poll::Ready(Ok(finish(observed, this.inner.span(), response)))
    }
}

/// What the access layer observed of a request, kept until its response.
struct Observed {
    state: Arc<Instance>,
    started: Instant,
    method: &'static str,
    entered: Entered,
    on_connection: Option<RequestOnConnection>,
    id: Option<HeaderValue>,
    server: Option<SpanContext>,
    trace_id: Option<TraceId>,
    exempt: bool,
}

fn begin(state: &Arc<Instance>, cache: &RouteCache, req: &mut Request) -> (Span, Observed) {
    let started = Instant::now();
    let method = method_index(req.method());
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str);
    let entered = state.metrics.enter(cache, method, matched);
    let method = METHODS[method];
    let route = &entered.route;
    let on_connection = req.extensions_mut().remove::<RequestOnConnection>();
    // Set by tower-http's `SetRequestId` outside this layer: the client's, or a new UUID.
    let id = req.headers().get(X_REQUEST_ID).cloned();
    let request_id = clip(
        id.as_ref()
            .and_then(|id| id.to_str().ok())
            .unwrap_or_default(),
    );
    let exempt = is_exempt(route);
    // Semantic conventions: `http.route` only when a route matched, and the span named after it.
    let http_route = (&**route != UNMATCHED).then_some(&**route);
    let name = SpanName(method, http_route);
    let path = clip(req.uri().path());
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
        record_request(&span, req, method);
    }
    let trace_id: Option<TraceId> = server.as_ref().map(SpanContext::trace_id).or_else(|| {
        incoming
            .as_ref()
            .map(|cx| cx.span().span_context().clone())
            .filter(SpanContext::is_valid)
            .map(|span| span.trace_id())
    });
    let observed = Observed {
        state: state.clone(),
        started,
        method,
        entered,
        on_connection,
        id,
        server,
        trace_id,
        exempt,
    };
    (span, observed)
}

fn finish(observed: Observed, span: &Span, mut response: Response) -> Response {
    let Observed {
        state,
        started,
        method,
        entered,
        on_connection,
        id,
        server,
        trace_id,
        exempt,
    } = observed;
    let Entered {
        route,
        in_flight,
        metrics,
    } = entered;
    let status = response.status().as_u16();
    let latency = started.elapsed();
    metrics.observe(status, latency);
    let extensions = response.extensions();
    if extensions.get::<Panicked>().is_some() {
        state.metrics.panic(&route);
    }
    if extensions.get::<TimedOut>().is_some() {
        state.metrics.timeout(&route);
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        // Server spans are errors for 5xx only: a 4xx is the client's mistake, not ours.
        span.record("error.type", status.to_string().as_str());
        span.record("otel.status_code", "error");
    }
    if let Some(server) = &server {
        response.headers_mut().insert(
            HeaderName::from_static(context::TRACERESPONSE),
            context::traceresponse(server),
        );
    }
    let request_id = clip(
        id.as_ref()
            .and_then(|id| id.to_str().ok())
            .unwrap_or_default(),
    );
    let trace_id = trace_id.map(|id| id.to_string());
    let trace_id = trace_id.as_deref();
    let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
    let note = response
        .extensions()
        .get::<AccessNote>()
        .map(AccessNote::joined);
    let note = note.as_deref();
    // Probes and scrapes arrive every few seconds forever: keep them out of the default log.
    let level = if exempt { Level::DEBUG } else { Level::INFO };
    let line = AccessLine {
        method,
        route: &route,
        status,
        latency_ms,
        request_id,
        trace_id,
        note,
    };
    if !state.access_log.write(level, &line) {
        if exempt {
            tracing::debug!(target: "rodent::access", parent: span, method, route = &*route, status, latency_ms, request_id, trace_id, note, "request");
        } else {
            tracing::info!(target: "rodent::access", parent: span, method, route = &*route, status, latency_ms, request_id, trace_id, note, "request");
        }
    }
    // The request counts, on the connection and in flight, until its body is sent.
    response.map(|body| Guarded::wrap(body, (in_flight, on_connection)))
}

/// Request ids for tower-http's `SetRequestId`: a UUIDv4 from `uuid`'s seeded user-space
/// generator, formatted on the stack (tower-http's own `MakeRequestUuid` formats into a `String`
/// first).
#[derive(Clone, Copy, Default)]
pub(crate) struct NewUuid;

impl MakeRequestId for NewUuid {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        let id = HeaderValue::from_str(id).expect("a UUID is a valid header value");
        Some(RequestId::new(id))
    }
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
        span.record("http.request.method_original", clip(req.method().as_str()));
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
        span.record("server.address", clip(&host));
        if let Some(port) = port {
            span.record("server.port", port);
        }
    }
    if let Some(agent) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        span.record("user_agent.original", clip(agent));
    }
}
