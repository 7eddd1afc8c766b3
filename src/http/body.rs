//! Body wrappers: a response body that holds a guard until it has been sent, and a request body
//! that enforces the size limit and the stall timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

pin_project! {
    /// Keeps `guard` alive until the body is finished or dropped, so whatever it counts (a
    /// request in flight, an admitted request) covers streamed responses to their last byte.
    pub(crate) struct Guarded<G> {
        #[pin]
        inner: Body,
        guard: Option<G>,
    }
}

impl<G: Send + 'static> Guarded<G> {
    pub(crate) fn wrap(inner: Body, guard: G) -> Body {
        Body::new(Self {
            inner,
            guard: Some(guard),
        })
    }
}

impl<G> http_body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body was cut short; read by the middleware after the handler returned, so the
/// answer is right (413 or 408) whatever the handler made of the error.
#[derive(Debug, Default)]
pub(crate) struct BodyVerdict(AtomicU8);

const FINE: u8 = 0;
const TOO_LARGE: u8 = 1;
const STALLED: u8 = 2;

impl BodyVerdict {
    pub(crate) fn too_large(&self) -> bool {
        self.0.load(Ordering::Acquire) == TOO_LARGE
    }

    pub(crate) fn stalled(&self) -> bool {
        self.0.load(Ordering::Acquire) == STALLED
    }

    fn set(&self, verdict: u8) {
        let _ = self
            .0
            .compare_exchange(FINE, verdict, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The error a limited request body yields to the handler.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("request body stalled for longer than {0:?}")]
    Stalled(Duration),
    #[error("reading the request body failed: {0}")]
    Transport(axum::Error),
}

pin_project! {
    /// A request body with a size limit and a stall timeout (no frame for `stall_after`).
    pub(crate) struct Limited {
        #[pin]
        inner: Body,
        limit: usize,
        seen: usize,
        stall_after: Duration,
        // Armed at the first poll: a handler that reads the body late has not stalled.
        armed: bool,
        #[pin]
        stall: Sleep,
        verdict: Arc<BodyVerdict>,
    }
}

impl Limited {
    pub(crate) fn wrap(
        inner: Body,
        limit: usize,
        stall_after: Duration,
        verdict: Arc<BodyVerdict>,
    ) -> Body {
        Body::new(Self {
            inner,
            limit,
            seen: 0,
            stall_after,
            armed: false,
            stall: tokio::time::sleep(stall_after),
            verdict,
        })
    }
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        if !*this.armed {
            *this.armed = true;
            this.stall
                .as_mut()
                .reset(Instant::now() + *this.stall_after);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len();
                    if *this.seen > *this.limit {
                        this.verdict.set(TOO_LARGE);
                        return Poll::Ready(Some(Err(BodyError::TooLarge(*this.limit))));
                    }
                }
                this.stall
                    .as_mut()
                    .reset(Instant::now() + *this.stall_after);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Transport(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.stall.poll(cx));
                this.verdict.set(STALLED);
                Poll::Ready(Some(Err(BodyError::Stalled(*this.stall_after))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
