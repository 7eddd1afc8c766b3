//! [`Deadline`]: when the handler timeout ends a request, for the work a handler does on its
//! behalf (a call to another service, a query) to end before it rather than be cut by it.

use std::future::Future;
use std::time::Duration;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use tokio::task::futures::TaskLocalFuture;
use tokio::time::Instant;

tokio::task_local! {
    /// The deadline of the request whose handler this task is running, set by the guard around
    /// the handler (`None` on a route without the handler timeout). A task-local rather than a
    /// request extension: an eighth extension makes every request's extension map grow a
    /// second time, which cost `GET /` more than the rest of the deadline (BENCHMARKS.md).
    static DEADLINE: Option<Deadline>;
}

/// The moment the handler timeout (`RODENT_REQUEST_TIMEOUT`, as it was when the request
/// arrived) answers this request with 503. Extract it in a handler of a route with a timeout
/// (those added with [`Rodent::routes`](crate::Rodent::routes)) to bound what the handler does
/// on the request's behalf by the time the request has left: a client timeout that ends a
/// little before it leaves the handler time to answer with its own error, naming what was slow.
///
/// ```
/// use std::time::Duration;
/// use rodent::http::Deadline;
///
/// async fn lookup(deadline: Deadline) -> String {
///     // Keep 10 ms to answer, whatever the remote service does.
///     let budget = deadline.remaining().saturating_sub(Duration::from_millis(10));
///     match tokio::time::timeout(budget, remote_call()).await {
///         Ok(answer) => answer,
///         Err(_) => "the remote service did not answer in time".to_string(),
///     }
/// }
/// # async fn remote_call() -> String { String::new() }
/// ```
///
/// Routes without the handler timeout ([`Rodent::unbounded_routes`](crate::Rodent::unbounded_routes))
/// have none: extract `Option<Deadline>` where a handler may serve both.
///
/// It is known to the request's handler (and to what the handler awaits), not to a task the
/// handler spawns: extract it in the handler, and pass the value on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    /// The request's deadline: `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Self {
        Self(Instant::now() + timeout)
    }

    /// Runs `handling` (a request's handler, and what it awaits) with `deadline` as its
    /// request's deadline.
    pub(crate) fn scope<F: Future>(
        deadline: Option<Self>,
        handling: F,
    ) -> TaskLocalFuture<Option<Self>, F> {
        DEADLINE.scope(deadline, handling)
    }

    /// The deadline of the request being handled, if its route has one.
    fn current() -> Option<Self> {
        DEADLINE.try_with(|deadline| *deadline).ok().flatten()
    }

    /// The moment itself, on tokio's clock (`tokio::time::sleep_until`, `timeout_at`).
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// The time left until the deadline; zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// A route with a timeout always has a deadline; extracting one on a route without (a mistake
/// in the program) answers 500.
impl<S: Send + Sync> FromRequestParts<S> for Deadline {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::current().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "this route has no handler timeout, so no deadline",
        ))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Deadline {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(Self::current())
    }
}
