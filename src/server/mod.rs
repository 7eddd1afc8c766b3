//! The HTTP server: an accept loop on a bound listener and one task per connection, driven by
//! hyper-util's connection builder so each connection can be shut down on its own.
//!
//! The drain sequence steers it through [`Server`], moving its connections through one
//! [`Phase`] after another: [`Server::drain_started`] sends HTTP/2 clients a GOAWAY,
//! [`Server::close`] stops accepting and lets every connection finish its in-flight requests,
//! [`Server::abort`] drops whatever is left. A restart hands the listener to a successor
//! ([`Server::with_listener`]), then [`Server::stop_accepting`] before the drain.

mod connection;
mod handshake;
mod io;
mod stall;

pub(crate) use connection::{RequestOnConnection, Timeouts};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::observe::metrics::Metrics;
use crate::tls::Acceptor;

/// Largest request head accepted; beyond it hyper answers 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Concurrent streams an HTTP/2 client may open on one connection (`SETTINGS_MAX_CONCURRENT_
/// STREAMS`); more are refused by h2 (`REFUSED_STREAM`), and clients queue them. With
/// `RODENT_MAX_CONNECTIONS`' default it bounds what clients that never read can make rodent
/// hold to 1024 × 32 streams of about 2 KiB each (measured: the README's limits), inside the
/// chart's 128 MiB; hyper's default, 200, would allow six times that. Below the 100 RFC 9113
/// suggests, traded for connections: an HTTP/1 client needs one per request in flight.
pub(crate) const MAX_HTTP2_STREAMS: u32 = 32;

/// Where the server is in its stop. Phases only move forward, one after the other: one value
/// every connection task watches, so no task can see the listener closed before the drain
/// started, whatever order it looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Serving,
    /// The drain started: HTTP/2 connections get a GOAWAY (HTTP/1 ones get `Connection: close`
    /// on their next response, from the edge middleware).
    Draining,
    /// The listener closed: every connection finishes its in-flight requests and closes.
    Closing,
    /// The deadline passed: every connection is dropped at once.
    Aborting,
}

/// What the server tells its connections, and what they report back.
#[derive(Clone)]
pub(crate) struct ConnectionControl {
    phase: watch::Receiver<Phase>,
    /// Connections dropped because the server reached [`Phase::Aborting`].
    aborted: Arc<AtomicU64>,
}

/// The accept loop's own switch, apart from the phases: a restart stops accepting (the
/// successor accepts from then on) while this process's connections go on being served.
#[derive(Clone)]
struct Accepting {
    /// Asks the accept loop to stop.
    stop: CancellationToken,
    /// Cancelled by the accept loop as it returns, after dropping the listener.
    stopped: CancellationToken,
}

/// A running server.
pub(crate) struct Server {
    phase: watch::Sender<Phase>,
    control: ConnectionControl,
    accepting: Accepting,
    /// The server's reference to the listener, besides the accept loop's: what a restart hands
    /// to the successor. Dropped when accepting stops, so that this process's copy of the
    /// socket really closes then.
    listener: Mutex<Option<Arc<TcpListener>>>,
    connections: TaskTracker,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts accepting on `listener`, serving each request with the router `router` holds then,
    /// up to the `RODENT_MAX_CONNECTIONS` that `config` holds at each accept; over TLS when `tls`
    /// is set.
    pub(crate) fn start(
        listener: TcpListener,
        router: Arc<ArcSwap<Router>>,
        config: Arc<ArcSwap<Config>>,
        timeouts: Timeouts,
        metrics: Arc<Metrics>,
        tls: Option<Acceptor>,
    ) -> Self {
        let (phase, watching) = watch::channel(Phase::Serving);
        let control = ConnectionControl {
            phase: watching,
            aborted: Arc::default(),
        };
        let accepting = Accepting {
            stop: CancellationToken::new(),
            stopped: CancellationToken::new(),
        };
        let listener = Arc::new(listener);
        let connections = TaskTracker::new();
        let accept_loop = tokio::spawn(accept_loop(
            listener.clone(),
            Arc::new(connection::ConnectionContext {
                builder: builder(stall::StreamExecutor {
                    stall: timeouts.idle,
                    metrics: metrics.clone(),
                }),
                router,
                metrics,
                control: control.clone(),
                timeouts,
                tls,
            }),
            config,
            accepting.clone(),
            connections.clone(),
        ));
        Self {
            phase,
            control,
            accepting,
            listener: Mutex::new(Some(listener)),
            connections,
            accept_loop,
        }
    }

    /// Calls `with` on the listener while this server still accepts on it (`None` after).
    pub(crate) fn with_listener<T>(&self, with: impl FnOnce(&TcpListener) -> T) -> Option<T> {
        self.listener
            .lock()
            .expect("the listener lock is never poisoned: nothing panics while holding it")
            .as_deref()
            .map(with)
    }

    /// Stops accepting and drops this process's copy of the listener, and only that: no
    /// `shutdown(2)`, which would reset the connections still queued in the socket for another
    /// process that holds it. Open connections carry on.
    pub(crate) async fn stop_accepting(&self) {
        self.drop_listener();
        self.accepting.stop.cancel();
        self.accepting.stopped.cancelled().await;
    }

    fn drop_listener(&self) {
        self.listener
            .lock()
            .expect("the listener lock is never poisoned: nothing panics while holding it")
            .take();
    }

    /// Moves the connections on to `next`, unless they are there already.
    fn advance(&self, next: Phase) {
        self.phase.send_if_modified(|phase| {
            let later = next > *phase;
            if later {
                *phase = next;
            }
            later
        });
    }

    pub(crate) fn drain_started(&self) {
        self.advance(Phase::Draining);
    }

    /// Closes the listener (new connections are refused) and asks every connection to finish
    /// what it is doing and close; idle ones close at once.
    pub(crate) async fn close(&self) {
        // Accepting stops first, so that no connection is accepted after its siblings were told
        // to close; and "listener closed" is true when it is logged.
        self.stop_accepting().await;
        self.advance(Phase::Closing);
        self.connections.close();
    }

    /// Resolves once every connection has closed.
    pub(crate) async fn closed(&self) {
        self.connections.wait().await;
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.connections.len()
    }

    /// Drops every remaining connection and returns how many there were. Each connection task
    /// returns at its next poll, which is quick; the wait ends at `settled` anyway.
    pub(crate) async fn abort(&self, settled: Instant) -> u64 {
        self.drop_listener();
        self.advance(Phase::Aborting);
        self.connections.close();
        self.accept_loop.abort();
        let _ = tokio::time::timeout_at(settled, self.connections.wait()).await;
        self.control.aborted.load(Ordering::Relaxed)
    }
}

fn builder(executor: stall::StreamExecutor) -> auto::Builder<stall::StreamExecutor> {
    let mut builder = auto::Builder::new(executor);
    // No hyper timer on HTTP/1: hyper's header-read timeout also runs while a keep-alive
    // connection waits for its next request, which would make it the idle timeout too. The
    // connection task enforces both (see `connection`).
    builder
        .http1()
        .keep_alive(true)
        .half_close(false)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(MAX_HTTP2_STREAMS);
    builder
}

/// How often a run of accept errors is logged: once when it starts, then a summary at most this
/// often, so running out of file descriptors does not also flood the log.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(5);

async fn accept_loop(
    listener: Arc<TcpListener>,
    context: Arc<connection::ConnectionContext>,
    config: Arc<ArcSwap<Config>>,
    accepting: Accepting,
    connections: TaskTracker,
) {
    let _stopped = accepting.stopped.drop_guard();
    let stop = accepting.stop;
    let mut errors = AcceptErrors::default();
    let mut refusals = Refusals::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                errors.recovered();
                let max = config.load().max_connections;
                if connections.len() >= max {
                    // Closed at once rather than left in the backlog: the client learns now,
                    // and a load balancer tries another instance.
                    drop(stream);
                    context.metrics.connection_refused();
                    refusals.refused(max);
                    continue;
                }
                connections.spawn(connection::serve(stream, peer, context.clone()));
            }
            Err(e) if is_per_connection(&e) => {
                // The peer gave up between connecting and being accepted: nothing to do.
            }
            Err(e) => {
                // Out of file descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM). The
                // pending connection stays in the backlog and accept would fail again at once:
                // back off, so in-flight requests can finish and free descriptors, instead of
                // spinning a core. Connections waiting in the backlog are served afterwards.
                context.metrics.accept_error();
                errors.failed(&e);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
    drop(listener);
    tracing::debug!(target: "rodent::server", "accept loop stopped; listener dropped");
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// Rate-limits the logging of connections refused at `RODENT_MAX_CONNECTIONS`.
#[derive(Default)]
struct Refusals {
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl Refusals {
    fn refused(&mut self, max: usize) {
        self.unlogged += 1;
        let due = self
            .last_logged
            .is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_EVERY);
        if due {
            tracing::warn!(
                target: "rodent::server",
                refused = self.unlogged,
                max_connections = max,
                "connection refused: RODENT_MAX_CONNECTIONS connections are open"
            );
            self.unlogged = 0;
            self.last_logged = Some(Instant::now());
        }
    }
}

/// Rate-limits the logging of accept errors.
#[derive(Default)]
struct AcceptErrors {
    /// Errors in the current run, and when it was last logged.
    in_run: u64,
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl AcceptErrors {
    fn failed(&mut self, error: &std::io::Error) {
        self.in_run += 1;
        self.unlogged += 1;
        let due = self
            .last_logged
            .is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_EVERY);
        if due {
            tracing::error!(
                target: "rodent::server",
                error = %error,
                errors = self.unlogged,
                "cannot accept connections; backing off until resources free up"
            );
            self.unlogged = 0;
            self.last_logged = Some(Instant::now());
        }
    }

    fn recovered(&mut self) {
        if self.in_run > 0 {
            tracing::warn!(target: "rodent::server", errors = self.in_run, "accepting connections again");
            *self = Self::default();
        }
    }
}
