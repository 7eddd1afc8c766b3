//! [`Deadline`]: when the handler timeout ends a request, for the work a handler does on its
//! behalf (a call to another service, a query) to end before it rather than be cut by it.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use pin_project_lite::pin_project;
use tokio::time::Instant;

thread_local! {
    /// The deadline of the request whose handler this thread is polling now, set around each
    /// poll by [`Scoped`] (`None` on a route without the handler timeout).
    static DEADLINE: Cell<Option<Deadline>> = const { Cell::new(None) };
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
    pub(crate) fn scope<F: Future>(deadline: Option<Self>, handling: F) -> Scoped<F> {
        Scoped { handling, deadline }
    }

    /// The deadline of the request being handled, if its route has one.
    fn current() -> Option<Self> {
        DEADLINE.with(Cell::get)
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

pin_project! {
    /// A request's handler, polled with its deadline known to the [`Deadline`] extractors.
    ///
    /// A `Cell` thread-local set around each poll, rather than tokio's `task_local!`: its scope
    /// borrows a `RefCell` and swaps it in and out through a guard on every poll, about 130
    /// instructions per `GET /` against about 25 for this (callgrind, BENCHMARKS.md). And rather
    /// than a request extension, which makes every request's extension map grow a second time
    /// (about 730 more). The value is the same: the handler and what it awaits see it, a task
    /// it spawns does not.
    pub(crate) struct Scoped<F> {
        #[pin]
        handling: F,
        deadline: Option<Deadline>,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Put back as it was even if the handler panics: a handler polled inside another's poll
        // (a router called in process) leaves the outer one's deadline in place.
        let _outer = Restore(DEADLINE.with(|current| current.replace(*this.deadline)));
        this.handling.poll(cx)
    }
}

/// Sets the deadline back to the one it was before, when dropped.
struct Restore(Option<Deadline>);

impl Drop for Restore {
    fn drop(&mut self) {
        DEADLINE.with(|current| current.set(self.0));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_handler_knows_its_deadline_while_it_is_polled_and_the_one_outside_after() {
        let outer = Deadline::after(Duration::from_secs(20));
        let inner = Deadline::after(Duration::from_secs(1));
        let seen = Deadline::scope(Some(outer), async move {
            let before = Deadline::current();
            // A router called in process: its handler has a deadline of its own.
            let nested = Deadline::scope(Some(inner), async {
                tokio::task::yield_now().await;
                Deadline::current()
            })
            .await;
            // A route without the handler timeout has none, even inside one that has.
            let unbounded = Deadline::scope(None, async { Deadline::current() }).await;
            tokio::task::yield_now().await;
            (before, nested, unbounded, Deadline::current())
        })
        .await;
        assert_eq!(seen, (Some(outer), Some(inner), None, Some(outer)));
        assert_eq!(
            Deadline::current(),
            None,
            "nothing is left set after the handler"
        );
    }

    #[tokio::test]
    async fn a_task_the_handler_spawns_does_not_see_the_deadline() {
        let deadline = Deadline::after(Duration::from_secs(20));
        let spawned = Deadline::scope(Some(deadline), async {
            tokio::spawn(async { Deadline::current() }).await.unwrap()
        })
        .await;
        assert_eq!(spawned, None);
    }

    #[test]
    fn a_handler_that_panics_leaves_the_deadline_as_it_was() {
        let deadline = Deadline::after(Duration::from_secs(20));
        let panicking = std::panic::catch_unwind(|| {
            let mut handling = std::pin::pin!(Deadline::scope(Some(deadline), async {
                panic!("the handler panics");
            }));
            let waker = std::task::Waker::noop();
            let _ = handling.as_mut().poll(&mut Context::from_waker(waker));
        });
        assert!(panicking.is_err());
        assert_eq!(Deadline::current(), None);
    }
}
