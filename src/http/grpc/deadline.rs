//! A gRPC call's deadline. A unary call must answer within the handler timeout
//! (`RODENT_REQUEST_TIMEOUT`) or the client's own deadline (`grpc-timeout`), whichever is
//! shorter, and gets DEADLINE_EXCEEDED past it, not the HTTP routes' 503. A streaming call has no
//! handler timeout (it ends by the drain), but the client's deadline still ends it: its response
//! is cut there with DEADLINE_EXCEEDED in the trailers.
//!
//! Not tower-http's `Timeout`, which the HTTP routes use: its duration is fixed per layer and it
//! answers an HTTP status, while a gRPC deadline is set per call by the client and answered in
//! `grpc-status`. tonic's own `grpc-timeout` handling belongs to its transport server, which
//! rodent does not use.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tonic::Status;
use tower::{Layer, Service};

use crate::config::format_duration;
use crate::http::guard::TimedOut;

/// The header a gRPC client states its deadline in, relative to when it sent the call.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The deadline of the gRPC calls on one stack.
#[derive(Clone, Copy)]
pub(crate) struct GrpcDeadlineLayer {
    /// The handler timeout, for unary calls; `None` on streaming routes.
    handler: Option<Duration>,
}

impl GrpcDeadlineLayer {
    /// Unary calls: the handler timeout, or the client's deadline if that is sooner.
    pub(crate) fn unary(handler_timeout: Duration) -> Self {
        Self {
            handler: Some(handler_timeout),
        }
    }

    /// Streaming calls: the client's deadline alone.
    pub(crate) fn streaming() -> Self {
        Self { handler: None }
    }
}

impl<S> Layer<S> for GrpcDeadlineLayer {
    type Service = GrpcDeadline<S>;

    fn layer(&self, inner: S) -> GrpcDeadline<S> {
        GrpcDeadline {
            inner,
            handler: self.handler,
        }
    }
}

#[derive(Clone)]
pub(crate) struct GrpcDeadline<S> {
    inner: S,
    handler: Option<Duration>,
}

impl<S> Service<Request> for GrpcDeadline<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let now = Instant::now();
        let client = grpc_timeout(req.headers()).map(|timeout| (now + timeout, timeout));
        let handler = self.handler.map(|timeout| (now + timeout, timeout));
        // The head waits for whichever comes first; on a tie the handler timeout, which names
        // the variable to change.
        let head = match (handler, client) {
            (Some(handler), Some(client)) if client.0 < handler.0 => Some(Expiry::Client(client.1)),
            (Some(handler), _) => Some(Expiry::Handler(handler.1)),
            (None, Some(client)) => Some(Expiry::Client(client.1)),
            (None, None) => None,
        };
        DeadlineFuture {
            inner: self.inner.call(req),
            sleep: head.map(|expiry| sleep_until(now + expiry.after())),
            head,
            client,
        }
    }
}

/// Which deadline cut the call.
#[derive(Clone, Copy)]
enum Expiry {
    /// `RODENT_REQUEST_TIMEOUT`.
    Handler(Duration),
    /// The client's `grpc-timeout`.
    Client(Duration),
}

impl Expiry {
    fn after(self) -> Duration {
        match self {
            Self::Handler(after) | Self::Client(after) => after,
        }
    }

    fn status(self) -> Status {
        match self {
            Self::Handler(after) => Status::deadline_exceeded(format!(
                "the handler did not answer within {} (RODENT_REQUEST_TIMEOUT)",
                format_duration(after)
            )),
            Self::Client(after) => Status::deadline_exceeded(format!(
                "the call's deadline passed (grpc-timeout {})",
                format_duration(after)
            )),
        }
    }
}

pin_project! {
    pub(crate) struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        head: Option<Expiry>,
        // When the client's deadline passes, and what it was; the response body ends there.
        client: Option<(Instant, Duration)>,
    }
}

impl<F> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(Ok(response)) = this.inner.poll(cx) {
            let Some((at, timeout)) = *this.client else {
                return Poll::Ready(Ok(response));
            };
            return Poll::Ready(Ok(response.map(|body| {
                Body::new(DeadlineBody {
                    inner: body,
                    sleep: sleep_until(at),
                    status: Some(Expiry::Client(timeout).status()),
                })
            })));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
            let expiry = this.head.expect("a deadline sleeps only with an expiry");
            let mut response = expiry.status().into_http::<Body>();
            if let Expiry::Handler(_) = expiry {
                response.extensions_mut().insert(TimedOut);
            }
            return Poll::Ready(Ok(response));
        }
        Poll::Pending
    }
}

pin_project! {
    /// A response body that ends at the client's deadline, with DEADLINE_EXCEEDED in its
    /// trailers, unless it ended first.
    struct DeadlineBody {
        #[pin]
        inner: Body,
        #[pin]
        sleep: Sleep,
        // Taken when the body ends, one way or the other.
        status: Option<Status>,
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        if this.status.is_none() {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_trailers() {
                    this.status.take();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(other) => {
                this.status.take();
                return Poll::Ready(other);
            }
            Poll::Pending => {}
        }
        ready!(this.sleep.poll(cx));
        let status = this.status.take().expect("checked above");
        let mut trailers = HeaderMap::new();
        // Fails only for a message that cannot be a header value, and rodent's can.
        let _ = status.add_header(&mut trailers);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.status.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Cut short at the deadline, the body may be smaller than the inner one says.
        let mut hint = SizeHint::new();
        if let Some(upper) = self.inner.size_hint().upper() {
            hint.set_upper(upper);
        }
        hint
    }
}

/// The client's deadline, from `grpc-timeout`: at most eight digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`). A header that is malformed is ignored, as tonic's own server ignores it.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use tonic::Code;
    use tower::ServiceExt;

    use super::*;

    fn timeout(value: &'static str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static(value));
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(timeout("7n"), Some(Duration::from_nanos(7)));
        for malformed in ["", "S", "5", "123456789S", "5s", "-5S", "5 S", "1.5S"] {
            assert_eq!(timeout(malformed), None, "{malformed:?}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    fn call(deadline: Option<&'static str>) -> Request {
        let mut request = Request::new(Body::empty());
        if let Some(deadline) = deadline {
            request
                .headers_mut()
                .insert(GRPC_TIMEOUT, HeaderValue::from_static(deadline));
        }
        request
    }

    fn slow(
        after: Duration,
    ) -> impl Service<Request, Response = Response, Error = Infallible> + Clone {
        tower::service_fn(move |_: Request| async move {
            tokio::time::sleep(after).await;
            Ok::<_, Infallible>(Response::new(Body::from("answer")))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_unary_call_past_the_handler_timeout_is_deadline_exceeded() {
        let service =
            GrpcDeadlineLayer::unary(Duration::from_secs(2)).layer(slow(Duration::from_secs(3)));
        let response = service.oneshot(call(None)).await.unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(
            status.message().contains("RODENT_REQUEST_TIMEOUT"),
            "{status:?}"
        );
        assert!(response.extensions().get::<TimedOut>().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_client_deadline_wins() {
        let service =
            GrpcDeadlineLayer::unary(Duration::from_secs(20)).layer(slow(Duration::from_secs(3)));
        let started = Instant::now();
        let response = service.clone().oneshot(call(Some("1S"))).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("grpc-timeout 1s"), "{status:?}");
        assert!(response.extensions().get::<TimedOut>().is_none());
        // A longer one does not extend the handler timeout.
        let service =
            GrpcDeadlineLayer::unary(Duration::from_secs(2)).layer(slow(Duration::from_secs(3)));
        let response = service.oneshot(call(Some("1H"))).await.unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert!(
            status.message().contains("RODENT_REQUEST_TIMEOUT"),
            "{status:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn streaming_calls_have_no_handler_timeout_but_end_at_the_client_s_deadline() {
        let service = GrpcDeadlineLayer::streaming().layer(slow(Duration::from_secs(3600)));
        let answered = service.clone().oneshot(call(None)).await.unwrap();
        assert!(answered.headers().get("grpc-status").is_none());

        let endless = tower::service_fn(|_: Request| async {
            let body =
                Body::from_stream(futures_util::stream::pending::<Result<Bytes, Infallible>>());
            Ok::<_, Infallible>(Response::new(body))
        });
        let response = GrpcDeadlineLayer::streaming()
            .layer(endless)
            .oneshot(call(Some("500m")))
            .await
            .unwrap();
        let started = Instant::now();
        let mut body = response.into_body();
        let frame = http_body_util::BodyExt::frame(&mut body)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        let status = Status::from_header_map(frame.trailers_ref().unwrap()).unwrap();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(http_body_util::BodyExt::frame(&mut body).await.is_none());
    }
}
