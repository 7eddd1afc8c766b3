//! The TLS handshake of a connection on a port that serves HTTPS: before hyper sees the
//! connection, bounded like a request head (a client that has not finished shaking hands within
//! `RODENT_HEADER_READ_TIMEOUT` is disconnected, as one that has not sent its head), and cut at
//! the deadline like any connection. Each handshake takes the pair served at that moment, so
//! a rotation applies to new connections while open ones keep theirs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

use super::io::Tracked;
use super::{ConnectionControl, Phase};
use crate::tls::Acceptor;

/// What hyper is given: the socket, or TLS over it.
pub(super) type Stream = Either<Tracked, TlsStream<Tracked>>;

/// Shakes hands when the port speaks TLS (`tls`); `None` when the connection is to be dropped:
/// the handshake failed or took longer than `within`, or the server aborts.
pub(super) async fn secure(
    socket: Tracked,
    tls: Option<&Acceptor>,
    within: Duration,
    control: &ConnectionControl,
    peer: SocketAddr,
) -> Option<Stream> {
    let Some(tls) = tls else {
        return Some(Either::Left(socket));
    };
    let mut phase = control.phase.clone();
    let aborting = async {
        while *phase.borrow_and_update() != Phase::Aborting {
            if phase.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        shaken = tokio::time::timeout(within, tls.accept(socket)) => match shaken {
            Ok(Ok(stream)) => Some(Either::Right(stream)),
            Ok(Err(e)) => {
                tracing::debug!(target: "rodent::server", %peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(target: "rodent::server", %peer, "TLS handshake not done within the header-read timeout; disconnecting");
                None
            }
        },
        () = aborting => {
            control.aborted.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
