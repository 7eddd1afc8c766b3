//! HTTP/2 streams whose client makes no room for their response: reset at the idle timeout.
//!
//! hyper sends each HTTP/2 response from a task of its own, spawned through the connection's
//! executor, and that task holds the body's next chunk while it waits for the client's
//! flow-control window. A client that never opens its window pins that chunk for ever: the
//! socket never blocks (nothing is written), so the connection's own write-stall check cannot
//! see it, and the stream's request never ends, so the connection is never idle either.
//!
//! [`StreamExecutor`] spawns every such task inside a [`Watched`] future, which shares a
//! [`Progress`] with the response body through a task-local; the body ([`Reported`]) says when
//! hyper took a chunk and when it asked for the next one. A chunk taken and not followed by a
//! request for the next one for the idle timeout means the client has made no room for it:
//! the task is dropped, and with it the stream, which h2 resets (`RST_STREAM`), and the chunk.
//! Waiting on the body itself (a stream with nothing to say yet) is never a stall.
//!
//! Why not a timer in hyper or h2: neither has one for send-side flow control. h2's
//! `SendStream` is hyper's, so a body cannot reset its own stream; dropping the task that owns
//! it is the one reset rodent can cause from outside.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::observe::metrics::Metrics;

const NOT_WAITING: u64 = u64::MAX;

tokio::task_local! {
    /// The progress of the stream whose task is being polled.
    static STREAM: Arc<Progress>;
}

/// Whether a stream's response waits on its client, shared by its task and its body.
pub(super) struct Progress {
    started: Instant,
    /// Since when (milliseconds from `started`) hyper has held a chunk without asking for the
    /// next: it waits for the client's window. `NOT_WAITING` otherwise.
    waiting_since: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            waiting_since: AtomicU64::new(NOT_WAITING),
        }
    }

    fn chunk_taken(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.waiting_since.store(now, Ordering::Relaxed);
    }

    fn next_asked(&self) {
        self.waiting_since.store(NOT_WAITING, Ordering::Relaxed);
    }

    /// When the stream counts as stalled, if it waits on its client.
    fn stalled_at(&self, stall: Duration) -> Option<Instant> {
        match self.waiting_since.load(Ordering::Relaxed) {
            NOT_WAITING => None,
            since => Some(self.started + Duration::from_millis(since) + stall),
        }
    }
}

/// The executor of a connection's HTTP/2 stream tasks: tokio's, with each task watched.
#[derive(Clone)]
pub(super) struct StreamExecutor {
    /// How long a stream may wait on its client's window: the idle timeout.
    pub(super) stall: Duration,
    pub(super) metrics: Arc<Metrics>,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, task: F) {
        let progress = Arc::new(Progress::new());
        tokio::spawn(Watched {
            task: STREAM.scope(progress.clone(), task),
            progress,
            stall: self.stall,
            timer: None,
            metrics: self.metrics.clone(),
        });
    }
}

pin_project! {
    /// A stream's task, dropped once it has waited on its client for the stall timeout.
    pub(super) struct Watched<F: Future> {
        #[pin]
        task: tokio::task::futures::TaskLocalFuture<Arc<Progress>, F>,
        progress: Arc<Progress>,
        stall: Duration,
        // Armed only while the stream waits on its client.
        timer: Option<Pin<Box<Sleep>>>,
        metrics: Arc<Metrics>,
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.task.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let Some(due) = this.progress.stalled_at(*this.stall) else {
            *this.timer = None;
            return Poll::Pending;
        };
        let timer = match this.timer {
            Some(timer) => {
                if timer.deadline() != due {
                    timer.as_mut().reset(due);
                }
                timer
            }
            None => this.timer.insert(Box::pin(tokio::time::sleep_until(due))),
        };
        if timer.as_mut().poll(cx).is_ready() {
            tracing::debug!(target: "rodent::server", stall = ?*this.stall, "HTTP/2 client made no room for its response for the idle timeout; resetting the stream");
            this.metrics.stream_reset();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Wraps an HTTP/2 response body so that its stream's task learns when hyper takes a chunk and
/// asks for the next (see [`Watched`]).
pub(super) fn reported(body: Body) -> Body {
    Body::new(Reported { inner: body })
}

pin_project! {
    struct Reported {
        #[pin]
        inner: Body,
    }
}

impl HttpBody for Reported {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = self.project().inner.poll_frame(cx);
        // Polled by the stream's task, inside its scope; a body polled elsewhere (a test)
        // reports nothing.
        let _ = STREAM.try_with(|progress| match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(|d| !d.is_empty()) => {
                progress.chunk_taken();
            }
            _ => progress.next_asked(),
        });
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use http_body_util::BodyExt;

    const STALL: Duration = Duration::from_secs(5);

    fn watched<F: Future>(task: F, progress: Arc<Progress>) -> Watched<F> {
        Watched {
            task: STREAM.scope(progress.clone(), task),
            progress,
            stall: STALL,
            timer: None,
            metrics: Arc::new(Metrics::new(
                crate::Lifecycle::new(),
                crate::build::Identity::RODENT.build_info(),
            )),
        }
    }

    /// Takes one chunk of `body`, as hyper does, then waits for a window that never opens.
    async fn take_one_chunk_and_wait(body: Body) {
        let mut body = reported(body);
        let _chunk = body.frame().await;
        std::future::pending::<()>().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_holds_a_chunk_for_the_stall_timeout_is_dropped() {
        let progress = Arc::new(Progress::new());
        let started = Instant::now();
        watched(
            take_one_chunk_and_wait(Body::from("pinned")),
            progress.clone(),
        )
        .await;
        assert_eq!(started.elapsed(), STALL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_waits_on_its_own_body_is_never_dropped() {
        let progress = Arc::new(Progress::new());
        let quiet =
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, axum::Error>>());
        let stream = watched(take_one_chunk_and_wait(quiet), progress);
        assert!(
            tokio::time::timeout(STALL * 10, stream).await.is_err(),
            "a body with nothing to say yet is not a stalled client"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn asking_for_the_next_chunk_restarts_the_clock() {
        let progress = Arc::new(Progress::new());
        let started = Instant::now();
        let chunks = futures_util::stream::iter(["a", "b"].map(Ok::<_, axum::Error>));
        let task = async move {
            let mut body = reported(Body::from_stream(chunks));
            let _ = body.frame().await;
            // The window opens after a while: the next chunk is asked for.
            tokio::time::sleep(STALL - Duration::from_secs(1)).await;
            let _ = body.frame().await;
            std::future::pending::<()>().await;
        };
        watched(task, progress).await;
        assert_eq!(started.elapsed(), STALL - Duration::from_secs(1) + STALL);
    }
}
