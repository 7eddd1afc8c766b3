//! The HTTP server: an accept loop on a bound listener and one task per connection, driven by
//! hyper-util's connection builder so each connection can be shut down on its own.
//!
//! The drain sequence steers it through [`Server`], moving its connections through one
//! [`Phase`] after another: [`Server::drain_started`] sends HTTP/2 clients a GOAWAY,
//! [`Server::close`] stops accepting and lets every connection finish its in-flight requests,
//! [`Server::abort`] drops whatever is left. A restart hands the listener to a successor
//! ([`Server::with_listener`]), then [`Server::stop_accepting`] before the drain.

mod connection;
mod io;

pub(crate) use connection::{RequestOnConnection, Timeouts};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::observe::metrics::Metrics;

/// Largest request head accepted; beyond it hyper answers 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;

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
    /// Starts accepting on `listener`, serving each request with the router `router` holds then.
    pub(crate) fn start(
        listener: TcpListener,
        router: Arc<ArcSwap<Router>>,
        timeouts: Timeouts,
        metrics: Arc<Metrics>,
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
                builder: builder(),
                router,
                metrics,
                control: control.clone(),
                timeouts,
            }),
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

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
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
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

/// How often a run of accept errors is logged: once when it starts, then a summary at most this
/// often, so running out of file descriptors does not also flood the log.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(5);

async fn accept_loop(
    listener: Arc<TcpListener>,
    context: Arc<connection::ConnectionContext>,
    accepting: Accepting,
    connections: TaskTracker,
) {
    let _stopped = accepting.stopped.drop_guard();
    let stop = accepting.stop;
    let mut errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                errors.recovered();
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
