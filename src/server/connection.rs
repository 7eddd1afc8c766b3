//! One task per connection: serves it with hyper, enforces the header-read and idle timeouts,
//! and follows the server's phases (drain, close, abort), past an upgrade too: an upgraded
//! connection (a WebSocket) is counted, waited for and aborted like any other.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;
use tower::util::Oneshot;

use super::handshake;
use super::io::{Activity, Tracked, Verdict};
use super::stall::{self, StreamExecutor};
use super::{ConnectionControl, Phase};
use crate::observe::metrics::Metrics;
use crate::tls::Acceptor;

/// How long after it was accepted a connection that has not made its first request is given to
/// make it once the listener has closed. It is not idle: its client connected while the listener
/// was open and may have its request on the wire. Closing it at once would drop that request,
/// since hyper-util cancels a connection still reading its first bytes (to tell HTTP/1 from
/// HTTP/2) when asked to shut down gracefully; Go's `net/http` spares new connections the same
/// way (for 5 s there). Its answer carries `Connection: close`. The header-read timeout, when
/// shorter, still cuts it first.
const FIRST_REQUEST_AT_CLOSE: Duration = Duration::from_secs(1);

/// How long an HTTP/2 client that connects during the drain delay is served before its GOAWAY,
/// counted from when it connected. Every GOAWAY costs a gRPC client the calls its writer still
/// holds (grpc-go retries such a call once, and loses it if it meets a second GOAWAY), and a
/// kube-proxy that lags sends a client that reconnects to the draining pod again and again: a
/// GOAWAY with the first call made a GOAWAY every few tens of milliseconds per client for as
/// long as the lag lasts, this one a second.
const GOAWAY_DURING_THE_DRAIN_AFTER: Duration = Duration::from_secs(1);

/// The per-connection timeouts, fixed for the life of the server.
#[derive(Clone, Copy)]
pub(crate) struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// What the accept loop hands every connection task.
pub(super) struct ConnectionContext {
    pub builder: auto::Builder<StreamExecutor>,
    /// The current router, read once per request: a reload swaps in a new one.
    pub router: Arc<ArcSwap<Router>>,
    pub metrics: Arc<Metrics>,
    pub control: ConnectionControl,
    pub timeouts: Timeouts,
    /// Set on a port that serves HTTPS.
    pub tls: Option<Acceptor>,
}

pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, context: Arc<ConnectionContext>) {
    // Small responses should leave at once rather than wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let metrics = &context.metrics;
    metrics.connection_opened();
    let activity = Arc::new(Activity::new());
    let service = ConnectionService {
        router: context.router.clone(),
        activity: activity.clone(),
        peer,
    };
    let socket = Tracked::new(stream, activity.clone());
    let within = context.timeouts.header_read;
    let tls = context.tls.as_ref();
    let Some(io) = handshake::secure(socket, tls, within, &context.control, peer).await else {
        metrics.connection_closed();
        return;
    };
    let io = TokioIo::new(io);
    let control = &context.control;
    let mut phase = control.phase.clone();
    // The phase this task has acted on; a connection accepted later acts on the current one.
    let mut acted = Phase::Serving;
    let mut watching = true;
    let header_read_ms = context.timeouts.header_read.as_millis() as u64;
    let idle_ms = context.timeouts.idle.as_millis() as u64;
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut closing = false;
    // A GOAWAY was sent because the server drains. An HTTP/2 client that connects during the
    // drain delay gets one once its first request shows it speaks HTTP/2, and not sooner than
    // `GOAWAY_DURING_THE_DRAIN_AFTER` after it connected (its requests meanwhile served):
    // otherwise it would go on sending on this connection until the listener closes,
    // and a call racing that close would be refused (503, a gRPC call UNAVAILABLE) rather than
    // sent elsewhere. HTTP/1 clients get `Connection: close` on every response of the delay.
    let mut goaway = false;
    // When an HTTP/2 client that connected during the drain gets its GOAWAY.
    let mut goaway_at: Option<tokio::time::Instant> = None;
    // Asked to close because it was idle; one that is still open an idle timeout later is stuck
    // on its client (an HTTP/2 stream whose last bytes wait on a window that never opens).
    let mut closing_idle = false;
    // When a connection yet to make its first request closes, if the listener closed before
    // (see `FIRST_REQUEST_AT_CLOSE`).
    let mut close_at: Option<tokio::time::Instant> = None;
    // Whether hyper ended the connection (rather than a timeout or an abort). Its future owns
    // the socket until it is dropped, at the end of this block.
    let hyper_ended = {
        let connection = context.builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);
        loop {
            // The connection first: a request that arrived as the listener closed is read and
            // counted in flight before the graceful shutdown, which would otherwise close the
            // connection under it as idle.
            tokio::select! {
                biased;
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(target: "rodent::server", %peer, error = %e, "connection ended with an error");
                    }
                    break true;
                }
                changed = phase.changed(), if watching => {
                    if changed.is_err() {
                        // The server is gone without an abort: nothing more will be asked.
                        watching = false;
                        continue;
                    }
                    let now = *phase.borrow_and_update();
                    if now == Phase::Aborting {
                        control.aborted.fetch_add(1, Ordering::Relaxed);
                        break false; // dropping the connection closes the socket
                    }
                    if now >= Phase::Draining && !goaway && activity.is_http2() {
                        goaway = true;
                        tracing::debug!(target: "rodent::server", %peer, "draining: GOAWAY sent to an HTTP/2 client");
                        connection.as_mut().graceful_shutdown();
                    }
                    if now >= Phase::Closing && !closing && close_at.is_none() {
                        match activity.first_request_due(FIRST_REQUEST_AT_CLOSE) {
                            Some(due) if due > tokio::time::Instant::now() => {
                                close_at = Some(due);
                                if due < timer.deadline() {
                                    timer.as_mut().reset(due);
                                }
                            }
                            _ => {
                                closing = true;
                                connection.as_mut().graceful_shutdown();
                            }
                        }
                    }
                    acted = now;
                }
                () = activity.speaks_http2(), if acted >= Phase::Draining && !goaway && !closing && goaway_at.is_none() => {
                    let due = activity.accepted_plus(GOAWAY_DURING_THE_DRAIN_AFTER);
                    goaway_at = Some(due);
                    if due < timer.deadline() {
                        timer.as_mut().reset(due);
                    }
                }
                () = poll_fn(|cx| {
                    // A request head that started during the poll of hyper above is due before
                    // whatever the timer waits for now.
                    if let Some(due) = activity.new_head_due(header_read_ms)
                        && due < timer.deadline()
                    {
                        timer.as_mut().reset(due);
                    }
                    timer.as_mut().poll(cx)
                }) => {
                    if let Some(due) = goaway_at
                        && due <= tokio::time::Instant::now()
                    {
                        goaway_at = None;
                        if !goaway && !closing {
                            goaway = true;
                            tracing::debug!(target: "rodent::server", %peer, "draining: GOAWAY sent to an HTTP/2 client that connected during the drain");
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                    if let Some(due) = close_at
                        && due <= tokio::time::Instant::now()
                    {
                        // Its first request has started by now (its answer says
                        // `Connection: close`), or will not come.
                        close_at = None;
                        if !closing {
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                    match activity.verdict(header_read_ms, idle_ms) {
                        Verdict::CheckAt(at) => {
                            let at = [close_at, goaway_at].into_iter().flatten().fold(at, std::cmp::min);
                            timer.as_mut().reset(at);
                        }
                        Verdict::Idle if closing_idle => {
                            tracing::debug!(target: "rodent::server", %peer, "idle connection still open an idle timeout after it was asked to close; disconnecting");
                            break false;
                        }
                        Verdict::Idle => {
                            if !closing {
                                closing = true;
                                connection.as_mut().graceful_shutdown();
                            }
                            // Closing an idle connection completes at once, unless its client is stuck.
                            closing_idle = true;
                            timer.as_mut().reset(tokio::time::Instant::now() + context.timeouts.idle);
                        }
                        Verdict::SlowHead => {
                            tracing::debug!(target: "rodent::server", %peer, "request head not received within the header-read timeout; disconnecting");
                            break false;
                        }
                        Verdict::WriteStalled => {
                            tracing::debug!(target: "rodent::server", %peer, "client stopped reading its response for the idle timeout; disconnecting");
                            break false;
                        }
                    }
                }
            }
        }
    };
    // hyper is done with the socket. If it is still open, hyper handed it to an upgrade (a
    // WebSocket): the connection goes on, outside hyper.
    if hyper_ended && activity.socket_open() {
        follow_upgrade(&activity, &mut phase, watching, control).await;
    }
    metrics.connection_closed();
}

/// Follows a connection that hyper handed to an upgrade until its socket closes: it is still a
/// connection, open in the metrics and the drain's count until then. Its handler learns of the
/// drain from [`Drain`](crate::lifecycle::Drain), as any long-lived response does; at the
/// deadline the socket is shut down under it.
async fn follow_upgrade(
    activity: &Activity,
    phase: &mut watch::Receiver<Phase>,
    mut watching: bool,
    control: &ConnectionControl,
) {
    let closed = activity.socket_closed();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            biased;
            changed = phase.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                } else if *phase.borrow_and_update() == Phase::Aborting {
                    activity.shut_down_socket();
                    control.aborted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            () = &mut closed => return,
        }
    }
}

/// Hands each request to the router, counting it on the connection until its response has been
/// sent.
#[derive(Clone)]
struct ConnectionService {
    router: Arc<ArcSwap<Router>>,
    activity: Arc<Activity>,
    peer: SocketAddr,
}

/// Counts a request out of its connection's activity when dropped. It travels with the request
/// (as an extension) and the request layer ties it to the response body, so the request counts
/// until its last byte is sent. Only the original counts: request extensions can be cloned, and
/// a clone is empty.
pub(crate) struct RequestOnConnection(Option<Arc<Activity>>);

impl Clone for RequestOnConnection {
    fn clone(&self) -> Self {
        Self(None)
    }
}

impl Drop for RequestOnConnection {
    fn drop(&mut self) {
        if let Some(activity) = self.0.take() {
            activity.request_finished();
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let http2 = req.version() == Version::HTTP_2;
        self.activity.request_started(http2);
        let extensions = req.extensions_mut();
        extensions.insert(ConnectInfo(self.peer));
        extensions.insert(RequestOnConnection(Some(self.activity.clone())));
        // The request keeps this router until it is answered, even if a reload swaps another in.
        Answer {
            routed: Router::clone(&self.router.load()).oneshot(req),
            http2,
        }
    }
}

pin_project! {
    /// The router's answer; an HTTP/2 one with its body reporting to its stream's task, which
    /// resets the stream if its client makes no room for it (see `stall`).
    pub(super) struct Answer {
        #[pin]
        routed: Oneshot<Router, Request<Incoming>>,
        http2: bool,
    }
}

impl Future for Answer {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.routed.poll(cx));
        Poll::Ready(Ok(if *this.http2 {
            response.map(stall::reported)
        } else {
            response
        }))
    }
}
