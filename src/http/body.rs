//! Body wrappers: a response body that holds a guard until it has been sent, and a request body
//! that tells why tower-http's size limit or stall timeout cut it short.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use axum::BoxError;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::LengthLimitError;
use pin_project_lite::pin_project;
use tower_http::timeout::TimeoutError;

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

/// Why a request body was cut short; read by the guard after the handler returned, so the
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

pin_project! {
    /// A request body already limited and timed by tower-http's `RequestBodyLimit` and
    /// `RequestBodyTimeout`, watched for the error either yields: tower-http hands the error to
    /// the handler and no further, so this is how the guard learns why the body ended.
    pub(crate) struct Watched<B> {
        #[pin]
        inner: B,
        verdict: Arc<BodyVerdict>,
    }
}

impl<B> Watched<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    pub(crate) fn wrap(inner: B, verdict: Arc<BodyVerdict>) -> Body {
        Body::new(Self { inner, verdict })
    }
}

impl<B> http_body::Body for Watched<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Err(e)) => {
                let e: BoxError = e.into();
                if e.is::<LengthLimitError>() {
                    this.verdict.set(TOO_LARGE);
                } else if e.is::<TimeoutError>() {
                    this.verdict.set(STALLED);
                }
                Poll::Ready(Some(Err(e)))
            }
            frame => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
