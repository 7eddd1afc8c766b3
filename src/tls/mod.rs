//! HTTPS on the main port: the certificate and key named by `RODENT_TLS_CERT` and
//! `RODENT_TLS_KEY` (PEM), served with rustls on *ring*, HTTP/1.1 and HTTP/2 by ALPN. The
//! management port stays plain HTTP.
//!
//! The files rotate under a running service (cert-manager renews a certificate, the kubelet
//! swaps the Secret's files): they are watched, and read again on SIGHUP too. A new pair that is
//! valid is served to new connections from then on; connections already open keep the one they
//! shook hands with, so nothing is dropped. A pair that is not valid (one file half written, a
//! key that does not match its certificate) is read again a few times first, since a rotation
//! writes the two files one after the other; if it is still not valid, it is refused with a log
//! line and counted, and the pair in use stays. At start, a pair that is not valid is a refused
//! configuration (exit 78).
//!
//! | part | owns |
//! | --- | --- |
//! | `pair` | reading the two files and checking that they belong together |
//! | `expiry` | the certificate's `notAfter`, for the expiry gauge |
//! | `rotation` | the task that follows the files and swaps the pair new connections get |
//! | `pinned` | the client side of `rodent probe`: trusting exactly the certificate served |

mod expiry;
mod pair;
pub(crate) mod pinned;
mod rotation;

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::sign::SingleCertAndKey;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, ConfigError, ConfigErrors};
use crate::exit::Exit;
use crate::files::{Watch, WatchError};
use crate::observe::metrics::Metrics;
pub(crate) use pair::{Files, Pair, PairError};

/// What new connections shake hands with: one rustls configuration per pair, swapped whole when
/// the files rotate. Each configuration has its own session store, so a session can only be
/// resumed under the pair it began with: a handshake that began before a rotation and ends after
/// it files its tickets in the store of the old configuration, which no connection accepted
/// after the rotation looks in. Every new connection after a rotation therefore shakes hands
/// with the new certificate (a rotated key may be a compromised one). A store shared across the
/// pairs and emptied at the rotation would not do: tickets of a handshake that straddles the
/// rotation would land in the new store, and be resumed under the old certificate for ever.
#[derive(Debug)]
struct Current(ArcSwap<ServerConfig>);

impl Current {
    fn new(pair: &Pair) -> Self {
        Self(ArcSwap::new(server_config(pair)))
    }

    /// Serves `pair` to new connections, none of which resumes a session of the pair before.
    fn rotate(&self, pair: &Pair) {
        self.0.store(server_config(pair));
    }
}

/// A configuration serving `pair`, with a session store of its own (rustls' default, 256
/// sessions).
fn server_config(pair: &Pair) -> Arc<ServerConfig> {
    let mut server = ServerConfig::builder_with_provider(pair::provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(pair.certified.clone())));
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(server)
}

/// Accepts TLS connections with the pair served at that moment: what the server is handed.
#[derive(Debug, Clone)]
pub(crate) struct Acceptor(Arc<Current>);

impl Acceptor {
    /// Shakes hands over `io` with the configuration of the pair served now.
    pub(crate) fn accept<IO>(&self, io: IO) -> tokio_rustls::Accept<IO>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        TlsAcceptor::from(self.0.0.load_full()).accept(io)
    }
}

/// TLS on the main port of a running service: what the server hands each new connection, and
/// the task that follows the files. The task ends when this is dropped.
pub(crate) struct Tls {
    current: Arc<Current>,
    /// Read the files again now (SIGHUP).
    asked: Arc<Notify>,
    rotation: tokio::task::JoinHandle<()>,
}

/// Why TLS could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error(transparent)]
    Pair(#[from] PairError),
    #[error(transparent)]
    Watch(#[from] WatchError),
}

impl StartError {
    /// A pair that is not valid is a refused configuration; a watch that cannot be set up, a
    /// failure to start.
    pub(crate) fn exit(&self) -> Exit {
        match self {
            Self::Pair(_) => Exit::Config,
            Self::Watch(_) => Exit::Failure,
        }
    }

    /// Logs the one line that says why.
    pub(crate) fn log(&self) {
        match self {
            Self::Pair(e) => tracing::error!(
                target: "rodent::config",
                variable = e.variable,
                error = %e,
                "invalid configuration"
            ),
            Self::Watch(e) => tracing::error!(
                target: "rodent::lifecycle",
                file = %e.file.display(),
                "{e}"
            ),
        }
    }
}

impl Tls {
    /// Reads the pair the configuration names and starts following its files; `None` without
    /// TLS. Needs the runtime.
    pub(crate) fn start(
        config: &Config,
        metrics: &Arc<Metrics>,
    ) -> Result<Option<Self>, StartError> {
        let Some(files) = Files::of(config) else {
            return Ok(None);
        };
        let pair = Pair::read_settled(&files)?;
        let watch = Watch::new(vec![files.cert.clone(), files.key.clone()])?;
        let current = Arc::new(Current::new(&pair));
        metrics.tls().serving(pair.expires);
        tracing::info!(
            target: "rodent::tls",
            cert = %files.cert.display(),
            expires_in_days = rotation::days_left(pair.expires),
            "serving HTTPS (HTTP/1.1 and HTTP/2 by ALPN)"
        );
        let asked = Arc::new(Notify::new());
        let rotation = tokio::spawn(rotation::follow(rotation::Rotation {
            files,
            current: current.clone(),
            serving: pair,
            metrics: metrics.clone(),
            watch,
            asked: asked.clone(),
        }));
        Ok(Some(Self {
            current,
            asked,
            rotation,
        }))
    }

    pub(crate) fn acceptor(&self) -> Acceptor {
        Acceptor(self.current.clone())
    }

    /// Reads the files again now (SIGHUP).
    pub(crate) fn reload(&self) {
        self.asked.notify_one();
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        self.rotation.abort();
    }
}

/// Checks the pair the configuration names, as the start does (`config check`, and before a
/// daemon forks): the problem as a configuration error.
pub(crate) fn check(config: &Config) -> Result<(), ConfigErrors> {
    let Some(files) = Files::of(config) else {
        return Ok(());
    };
    Pair::read_settled(&files)
        .map(drop)
        .map_err(|e| ConfigErrors(vec![e.into()]))
}

impl From<PairError> for ConfigError {
    fn from(e: PairError) -> Self {
        ConfigError::File {
            variable: e.variable,
            path: e.path,
            reason: e.reason,
        }
    }
}
