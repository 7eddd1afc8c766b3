//! [`Drain`]: how a long-lived response (a stream, server-sent events, a WebSocket) or a
//! background task learns that it should end itself, cleanly, before the shutdown deadline cuts
//! it; and [`DrainHold`], how any code keeps the shutdown hooks waiting until it is done.
//!
//! It is signaled when the listener closes, at the end of the drain delay, not at the first
//! SIGTERM. During the drain delay the instance is still in load balancers' endpoints (that is
//! what the delay is for), so a client that reconnected at once could land right back here and
//! be cut again; once the listener is closed, a reconnection can only go to another instance.
//! The configuration guarantees the time that is left: `RODENT_DRAIN_DELAY +
//! RODENT_REQUEST_TIMEOUT` fits inside the shutdown deadline, so a response has at least the
//! request timeout to write its last words. A service stopped before it ever turned ready skips
//! the delay, and its drain is signaled at once.
//!
//! Note the two words: the lifecycle's `draining` state begins at the first signal, while the
//! service is still served as usual; the drain is *signaled* later, when the listener closes and
//! what is long-lived should end.
//!
//! A [`DrainHold`] is linkerd's `ReleaseShutdown` in rodent's terms: while one is held, the
//! shutdown hooks wait (the listener still closes on time). It gives way at the deadline, where
//! the exit is 124 like any other drain cut short.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::state::{Lifecycle, State};

/// Resolves when long-lived responses should end. Extract it in a handler (`drain: Drain`) or
/// make one from a [`Lifecycle`], and race the response's own work against
/// [`signaled`](Drain::signaled).
///
/// ```
/// use axum::response::sse::{Event, Sse};
/// use futures_util::stream::{self, Stream, StreamExt};
/// use rodent::lifecycle::Drain;
///
/// async fn events(drain: Drain) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
///     let ticks = stream::repeat_with(|| Ok(Event::default().data("tick")));
///     let farewell = stream::once(async { Ok(Event::default().event("end").data("stopping")) });
///     Sse::new(ticks.take_until(drain.signaled()).chain(farewell))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Drain {
    state: watch::Receiver<State>,
    holds: TaskTracker,
}

impl Drain {
    /// The drain of the service whose lifecycle this is.
    pub fn new(lifecycle: &Lifecycle) -> Self {
        Self {
            state: lifecycle.subscribe(),
            holds: lifecycle.holds().clone(),
        }
    }

    /// Keeps the shutdown hooks waiting until the returned hold is dropped: for work that must
    /// finish before they run (a batch to flush, a message to acknowledge), wherever it runs (a
    /// handler, a background task, a stream). The listener still closes on time, and at the
    /// deadline the hooks stop waiting (exit 124).
    ///
    /// ```
    /// # async fn flush() {}
    /// async fn handler(drain: rodent::Drain) {
    ///     let hold = drain.hold();
    ///     tokio::spawn(async move {
    ///         flush().await;
    ///         drop(hold);
    ///     });
    /// }
    /// ```
    pub fn hold(&self) -> DrainHold {
        DrainHold {
            _token: self.holds.token(),
        }
    }

    /// Whether long-lived responses should end now: the listener has closed.
    pub fn is_signaled(&self) -> bool {
        *self.state.borrow() >= State::Stopping
    }

    /// Resolves once long-lived responses should end (at once if they already should). The
    /// future owns what it waits on, so it can outlive the handle (`take_until` wants that).
    pub fn signaled(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut state = self.state.clone();
        async move {
            // An error means the service is gone altogether: all the more reason to end.
            let _ = state.wait_for(|state| *state >= State::Stopping).await;
        }
    }
}

/// Keeps the shutdown hooks waiting while it lives; made by [`Drain::hold`]. Dropping it
/// releases the drain.
#[derive(Debug)]
#[must_use = "the drain is held only while the hold lives: bind it (`let hold = drain.hold();`)"]
pub struct DrainHold {
    _token: TaskTrackerToken,
}

/// The handle of the service serving the request. Routes served by rodent always have one: the
/// request layer puts the service's [`Lifecycle`] in every request's extensions.
impl<S: Send + Sync> FromRequestParts<S> for Drain {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Lifecycle>()
            .map(Drain::new)
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drain_is_signaled_once_the_listener_closes() {
        let lifecycle = Lifecycle::new();
        let drain = Drain::new(&lifecycle);
        lifecycle.advance(State::Ready);
        lifecycle.advance(State::Draining);
        assert!(!drain.is_signaled(), "the drain delay is not over");
        let waiting = tokio::spawn(drain.signaled());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        lifecycle.advance(State::Stopping);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("signaled once stopping")
            .unwrap();
        assert!(drain.is_signaled());
        // Already signaled: resolves at once.
        drain.signaled().await;
    }
}
