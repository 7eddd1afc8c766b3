//! The drain rules and the error format, applied to every response.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::BoxError;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Body as _;
use pin_project_lite::pin_project;
use tonic::Code;
use tower::{Layer, Service};

use super::grpc;
use super::instance::Instance;
use super::problem::{self, Problem};
use super::routes::{self, is_exempt};
use crate::lifecycle::State as LifecycleState;
use crate::observe::metrics::UNMATCHED;

/// Bodies up to this size are turned into problem+json; larger ones are left alone.
const MAX_PLAIN_ERROR: u64 = 8 * 1024;

/// Why a request that arrived after the listener closed is refused.
const SHUTTING_DOWN: &str = "this instance is shutting down; retry on another";

/// A request no route matched: what rodent's own answer to it needs.
pub(crate) struct Unmatched {
    path: Box<str>,
    /// A gRPC call: its answer is UNIMPLEMENTED, not a 404.
    grpc: bool,
}

/// The drain rules and problem+json, as a layer. tower-http has neither: the drain rules read
/// rodent's lifecycle, and tower-http's layers answer their errors with plain or empty bodies,
/// which this turns into problem+json (unless the application asked for its own bodies to be
/// left alone: see [`Rodent::rewrite_error_bodies`](crate::Rodent::rewrite_error_bodies)).
///
/// When no route matched and the application's fallback answered an empty 404 (axum's own
/// fallback does, when the application has none), the answer is rodent's 404, rewriting or not;
/// UNIMPLEMENTED for a gRPC call. On gRPC routes, and to any gRPC call, rodent's refusal after
/// the listener closed is UNAVAILABLE (see [`grpc`](super::grpc)).
#[derive(Clone)]
pub(crate) struct EdgeLayer {
    state: Arc<Instance>,
    rewrite: bool,
    grpc: bool,
}

impl EdgeLayer {
    pub(crate) fn new(state: Arc<Instance>, rewrite: bool) -> Self {
        Self {
            state,
            rewrite,
            grpc: false,
        }
    }

    /// In front of gRPC routes: rodent's answers are gRPC statuses, and none is rewritten.
    pub(crate) fn grpc(state: Arc<Instance>) -> Self {
        Self {
            state,
            rewrite: false,
            grpc: true,
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            state: self.state.clone(),
            rewrite: self.rewrite,
            grpc: self.grpc,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Edge<S> {
    inner: S,
    state: Arc<Instance>,
    rewrite: bool,
    grpc: bool,
}

impl<S, B> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        // HTTP/2 forbids `Connection`; its equivalent is the GOAWAY the server sends at drain.
        let http1 = req.version() <= Version::HTTP_11;
        let state = &self.state;
        let matched = req.extensions().get::<MatchedPath>();
        // Kept for rodent's 404, in case the fallback has nothing to say.
        let unmatched = matched.is_none().then(|| Unmatched {
            path: Box::from(req.uri().path()),
            grpc: grpc::is_grpc(req.headers()),
        });
        if state.lifecycle.state() == LifecycleState::Stopping
            && !is_exempt(matched.map_or(UNMATCHED, MatchedPath::as_str))
            && !state.listener_outlives()
        {
            // The listener is closed; this request raced in on an open connection. (When the
            // socket lives on in another process, it is served instead, with `Connection: close`
            // below: the client's next connection lands on that process.)
            if self.grpc || grpc::is_grpc(req.headers()) {
                return EdgeFuture::Done {
                    response: Some(grpc::answer(Code::Unavailable, SHUTTING_DOWN)),
                };
            }
            let refused = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .detail(SHUTTING_DOWN)
                .retry_after(1);
            let refused = if http1 {
                refused.close_connection()
            } else {
                refused
            };
            return EdgeFuture::Done {
                response: Some(refused.into_response()),
            };
        }
        req.extensions_mut().insert(state.lifecycle.clone());
        EdgeFuture::Inner {
            inner: self.inner.call(req),
            state: self.state.clone(),
            http1,
            rewrite: self.rewrite,
            unmatched,
        }
    }
}

pin_project! {
    #[project = EdgeProj]
    pub(crate) enum EdgeFuture<F> {
        Done { response: Option<Response> },
        Inner {
            #[pin]
            inner: F,
            state: Arc<Instance>,
            http1: bool,
            rewrite: bool,
            // A request no route matched.
            unmatched: Option<Unmatched>,
        },
        // Only an error response with a small plain body gets here, to be read and rewritten.
        Rewriting {
            rewriting: Pin<Box<dyn Future<Output = Response> + Send>>,
            state: Arc<Instance>,
            http1: bool,
        },
    }
}

impl<F, B> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (mut response, state, http1) = match self.as_mut().project() {
            EdgeProj::Done { response } => {
                return Poll::Ready(Ok(response
                    .take()
                    .expect("an edge future is not polled after it completed")));
            }
            EdgeProj::Inner {
                inner,
                state,
                http1,
                rewrite,
                unmatched,
            } => {
                let Ok(response) = ready!(inner.poll(cx));
                let mut response = response.map(Body::new);
                if let Some(unmatched) = unmatched.as_ref()
                    && is_empty_not_found(&response)
                {
                    response = if unmatched.grpc {
                        let method = unmatched.path.trim_start_matches('/');
                        grpc::answer(Code::Unimplemented, format!("no method {method}"))
                    } else {
                        routes::not_found(&unmatched.path).into_response()
                    };
                } else if *rewrite && needs_rewriting(&response) {
                    let (state, http1) = (state.clone(), *http1);
                    self.set(EdgeFuture::Rewriting {
                        rewriting: Box::pin(as_problem(response)),
                        state,
                        http1,
                    });
                    return self.poll(cx);
                }
                (response, state, *http1)
            }
            EdgeProj::Rewriting {
                rewriting,
                state,
                http1,
            } => (ready!(rewriting.as_mut().poll(cx)), state, *http1),
        };
        // Read the state after the handler: a request that began before the signal still tells
        // its client to reconnect, and the reconnection lands on another instance. Not an
        // upgrade (a WebSocket), whose `Connection: upgrade` makes it one: it learns of the
        // drain from its handler instead.
        if http1
            && response.status() != StatusCode::SWITCHING_PROTOCOLS
            && state.lifecycle.state() >= LifecycleState::Draining
        {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}

/// What axum's own fallback answers: a bare 404, without a body or a type.
fn is_empty_not_found(response: &Response) -> bool {
    response.status() == StatusCode::NOT_FOUND
        && !response.headers().contains_key(header::CONTENT_TYPE)
        && response.body().size_hint().exact() == Some(0)
}

/// An error answered with an empty or plain-text body (axum's rejections, a bare `StatusCode`,
/// a 405): turned into problem+json by [`as_problem`].
fn needs_rewriting(response: &Response) -> bool {
    if response.status().as_u16() < 400 {
        return false;
    }
    let plain = match response.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v.to_str().is_ok_and(|ct| ct.starts_with("text/plain")),
    };
    plain
        && response
            .body()
            .size_hint()
            .upper()
            .is_some_and(|n| n <= MAX_PLAIN_ERROR)
}

/// Turns an error answered with a small plain body into problem+json, keeping its headers
/// (`Allow`, `Retry-After`).
async fn as_problem(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR as usize)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&text).trim().to_string();
    let mut problem = Problem::new(parts.status);
    if !detail.is_empty() {
        problem = problem.detail(detail);
    }
    let (fresh, body): (_, Body) = problem.into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(problem::CONTENT_TYPE),
    );
    drop(fresh);
    Response::from_parts(parts, body)
}
