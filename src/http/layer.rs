//! The per-request work around every route, as one tower layer: [`access`] around [`edge`]
//! around [`guard`] around the route, whose panics are caught. One layer with one boxed future
//! per request, rather than a middleware function per concern, each of which would clone the
//! route's boxed service and box a future of its own on every request.
//!
//! [`access`]: super::access
//! [`edge`]: super::edge
//! [`guard`]: super::guard

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{DefaultBodyLimit, Request};
use axum::response::Response;
use futures_util::FutureExt;
use tower::{Layer, Service, ServiceExt};

use super::problem::panic_response;
use super::routes::is_operational;
use super::shared::Shared;
use super::{access, edge, guard};

#[derive(Clone)]
pub(crate) struct RequestLayer(pub Arc<Shared>);

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<<DefaultBodyLimit as Layer<S>>::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            // The guard enforces RODENT_BODY_LIMIT (reloadable); axum's fixed 2 MB default
            // would otherwise refuse larger bodies first.
            inner: DefaultBodyLimit::disable().layer(inner),
            state: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct RequestService<S> {
    inner: S,
    state: Arc<Shared>,
}

impl<S> Service<Request> for RequestService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone goes to the next call; this one was polled ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move { Ok(handle(&state, inner, req).await) })
    }
}

async fn handle<S>(state: &Shared, inner: S, req: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    access::observe(state, req, |req, route| async move {
        edge::edge(state, &route, req, |req| async {
            if is_operational(&route) {
                call(inner, req).await
            } else {
                guard::guard(state, &route, req, |req| call(inner, req)).await
            }
        })
        .await
    })
    .await
}

/// Calls the route; a handler that panics answers 500 and the process keeps serving (the panic
/// hook has already logged it).
async fn call<S>(inner: S, req: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match AssertUnwindSafe(inner.oneshot(req)).catch_unwind().await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(payload) => panic_response(payload),
    }
}
