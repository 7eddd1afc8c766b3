//! What stands between a client and an application handler, beside tower-http's layers: load
//! shedding, and rodent's answers for what those layers refuse. tower-http's `Timeout` answers a
//! bare 503, its `RequestBodyLimit` a plain-text 413 for a declared length, and a body cut short
//! by the limit or the stall timeout is an error the handler sees and answers as it likes; here
//! each becomes rodent's problem+json, with the variable that sets the bound.
//!
//! Two layers, as the stack puts them: [`GuardLayer`] outside tower-http's, [`BodyAnswerLayer`]
//! inside, just around the route. Both take their bounds from the configuration the stack was
//! built from: a reload builds a new stack.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::BoxError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use pin_project_lite::pin_project;
use tonic::Code;
use tower::{Layer, Service};

use super::body::{BodyVerdict, Watched};
use super::deadline::{Deadline, Scoped};
use super::grpc;
use super::instance::{AdmissionPermit, Instance};
use super::problem::Problem;
use crate::config::{Config, format_duration};

/// The bounds of one stack, from the configuration it was built from.
#[derive(Clone, Copy)]
struct Bounds {
    max_inflight: usize,
    request_timeout: Duration,
    body_limit: usize,
    body_stall: Duration,
    /// The stack has tower-http's timeout and body limit, whose answers this turns into
    /// rodent's. Without them, every answer is the handler's own.
    timed: bool,
    /// The stack serves gRPC: shedding answers UNAVAILABLE in `grpc-status`.
    grpc: bool,
}

impl Bounds {
    fn of(config: &Config) -> Self {
        Self {
            max_inflight: config.max_inflight,
            request_timeout: config.request_timeout,
            body_limit: config.body_limit,
            // A body that stops arriving is a slow client, like one that stops sending headers:
            // the header-read timeout bounds both.
            body_stall: config.header_read_timeout,
            timed: true,
            grpc: false,
        }
    }
}

/// Marks a response that rodent's layers must pass on as it is: the handler's own 503 or 413,
/// or an answer already made here. Set on those statuses only, so other responses pay nothing.
#[derive(Clone, Copy)]
struct Answered;

/// Marks the 503 of a handler that did not answer in time, so the access layer can count it.
#[derive(Clone, Copy)]
pub(crate) struct TimedOut;

/// Load shedding, and the answers for tower-http's timeout and declared-length refusals.
///
/// Shedding is rodent's own rather than tower's `LoadShed` over `ConcurrencyLimit`: those count
/// through `poll_ready` on one service, and axum clones a route's service for every request (a
/// clone per request would count nothing), and they answer with an error, not a response. This
/// counts application requests across all routes, up to the response head.
#[derive(Clone)]
pub(crate) struct GuardLayer {
    state: Arc<Instance>,
    bounds: Bounds,
}

impl GuardLayer {
    /// In front of tower-http's handler timeout and body bounds.
    pub(crate) fn bounded(state: Arc<Instance>, config: &Config) -> Self {
        Self {
            state,
            bounds: Bounds::of(config),
        }
    }

    /// Shedding alone, for routes without the handler timeout and the body bounds.
    pub(crate) fn unbounded(state: Arc<Instance>, config: &Config) -> Self {
        Self {
            state,
            bounds: Bounds {
                timed: false,
                ..Bounds::of(config)
            },
        }
    }

    /// Shedding alone, answered in gRPC, for gRPC routes (whose deadline is their own).
    pub(crate) fn grpc(state: Arc<Instance>, config: &Config) -> Self {
        Self {
            state,
            bounds: Bounds {
                timed: false,
                grpc: true,
                ..Bounds::of(config)
            },
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            state: self.state.clone(),
            bounds: self.bounds,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Guard<S> {
    inner: S,
    state: Arc<Instance>,
    bounds: Bounds,
}

impl<S, B> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GuardFuture<Scoped<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let max = self.bounds.max_inflight;
        let Some(permit) = self.state.admit(max) else {
            self.state.metrics.shed();
            let detail = format!("{max} requests are already in flight (RODENT_MAX_INFLIGHT)");
            let shed = if self.bounds.grpc {
                // Not run: safe to retry, which UNAVAILABLE tells a gRPC client.
                grpc::answer(Code::Unavailable, detail)
            } else {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                    .title("Overloaded")
                    .detail(detail)
                    .retry_after(1)
                    .into_response()
            };
            return GuardFuture::Refused {
                response: Some(shed),
            };
        };
        // Taken before tower-http's timeout starts its own clock, so never later than it.
        let deadline = self
            .bounds
            .timed
            .then(|| Deadline::after(self.bounds.request_timeout));
        GuardFuture::Admitted {
            inner: Deadline::scope(deadline, self.inner.call(req)),
            permit: Some(permit),
            bounds: self.bounds,
        }
    }
}

pin_project! {
    #[project = GuardProj]
    pub(crate) enum GuardFuture<F> {
        Refused { response: Option<Response> },
        Admitted {
            #[pin]
            inner: F,
            permit: Option<AdmissionPermit>,
            bounds: Bounds,
        },
    }
}

impl<F, B> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("a guard future is not polled after it completed"))),
            GuardProj::Admitted {
                inner,
                permit,
                bounds,
            } => {
                let Ok(response) = ready!(inner.poll(cx));
                // Admission covers the handler, up to the response head: a body streaming out
                // afterwards costs the application nothing, and counting it would let long
                // streams shed short requests.
                permit.take();
                Poll::Ready(Ok(answer(response, bounds)))
            }
        }
    }
}

/// Turns what tower-http's `Timeout` and `RequestBodyLimit` answered into rodent's answers; the
/// handler's own responses pass (those with the same statuses are marked [`Answered`]).
fn answer<B>(response: Response<B>, bounds: &Bounds) -> Response
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let status = response.status();
    let ours = status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::PAYLOAD_TOO_LARGE;
    if !ours || !bounds.timed || response.extensions().get::<Answered>().is_some() {
        return response.map(Body::new);
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(bounds.body_limit);
    }
    let mut timed_out = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .detail(format!(
            "the handler did not answer within {} (RODENT_REQUEST_TIMEOUT)",
            format_duration(bounds.request_timeout)
        ))
        .into_response();
    timed_out.extensions_mut().insert(TimedOut);
    timed_out
}

/// The rest of the body is unread, so the connection cannot be reused: close it.
fn too_large(limit: usize) -> Response {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
        .detail(format!(
            "the request body is larger than {limit} bytes (RODENT_BODY_LIMIT)"
        ))
        .close_connection()
        .into_response()
}

/// Innermost, around the route: watches the request body that tower-http limited and timed,
/// and answers 413 or 408 when it was cut short, whatever the handler made of the error.
#[derive(Clone)]
pub(crate) struct BodyAnswerLayer {
    bounds: Bounds,
}

impl BodyAnswerLayer {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            bounds: Bounds::of(config),
        }
    }
}

impl<S> Layer<S> for BodyAnswerLayer {
    type Service = BodyAnswer<S>;

    fn layer(&self, inner: S) -> BodyAnswer<S> {
        BodyAnswer {
            inner,
            bounds: self.bounds,
        }
    }
}

#[derive(Clone)]
pub(crate) struct BodyAnswer<S> {
    inner: S,
    bounds: Bounds,
}

impl<S, B> Service<axum::http::Request<B>> for BodyAnswer<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BodyAnswerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        // Most requests have no body at all: nothing to watch, and nothing to box.
        if req.body().is_end_stream() {
            return BodyAnswerFuture {
                inner: self.inner.call(req.map(|_| Body::empty())),
                verdict: None,
                bounds: self.bounds,
            };
        }
        let verdict = Arc::new(BodyVerdict::default());
        let req = req.map(|body| Watched::wrap(body, verdict.clone()));
        BodyAnswerFuture {
            inner: self.inner.call(req),
            verdict: Some(verdict),
            bounds: self.bounds,
        }
    }
}

pin_project! {
    pub(crate) struct BodyAnswerFuture<F> {
        #[pin]
        inner: F,
        verdict: Option<Arc<BodyVerdict>>,
        bounds: Bounds,
    }
}

impl<F> Future for BodyAnswerFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.inner.poll(cx));
        if let Some(verdict) = this.verdict.as_deref() {
            if verdict.too_large() {
                response = too_large(this.bounds.body_limit);
            } else if verdict.stalled() {
                response = Problem::new(StatusCode::REQUEST_TIMEOUT)
                    .detail(format!(
                        "the request body stalled for {} (RODENT_HEADER_READ_TIMEOUT)",
                        format_duration(this.bounds.body_stall)
                    ))
                    .close_connection()
                    .into_response();
            }
        }
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::PAYLOAD_TOO_LARGE {
            response.extensions_mut().insert(Answered);
        }
        Poll::Ready(Ok(response))
    }
}
