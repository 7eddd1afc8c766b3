//! The task that follows the certificate and key files: on a change on disk (debounced by the
//! watch) or SIGHUP, the pair is read again, off the runtime's threads and bounded; a new valid
//! pair is swapped in for new connections, an invalid one is read again after each of the
//! [`RETRIES`](super::pair::RETRIES) waits (sooner if the files change meanwhile) and then
//! refused, the pair in use kept.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::Current;
use super::pair::{Files, Pair, PairError, RETRIES};
use crate::files::Watch;
use crate::observe::metrics::Metrics;

pub(super) struct Rotation {
    pub(super) files: Files,
    pub(super) current: Arc<Current>,
    /// The pair served to new connections now.
    pub(super) serving: Pair,
    pub(super) metrics: Arc<Metrics>,
    pub(super) watch: Watch,
    pub(super) asked: Arc<Notify>,
}

pub(super) async fn follow(mut rotation: Rotation) {
    loop {
        let signal = tokio::select! {
            () = rotation.watch.changed() => false,
            () = rotation.asked.notified() => true,
        };
        rotation.read_again(signal).await;
    }
}

impl Rotation {
    async fn read_again(&mut self, signal: bool) {
        match self.read_settled().await {
            Ok(pair) if pair.same_as(&self.serving) => {
                if signal {
                    tracing::info!(target: "rodent::tls", "TLS files read again: the certificate in use is unchanged");
                } else {
                    tracing::debug!(target: "rodent::tls", "TLS files changed on disk, but not the pair");
                }
            }
            Ok(pair) => {
                self.current.rotate(&pair);
                self.metrics.tls().rotated(pair.expires);
                tracing::info!(
                    target: "rodent::tls",
                    cert = %self.files.cert.display(),
                    expires_in_days = days_left(pair.expires),
                    "TLS certificate rotated: new connections get the new one"
                );
                self.serving = pair;
            }
            Err(e) => {
                self.metrics.tls().refused();
                tracing::error!(
                    target: "rodent::tls",
                    variable = e.variable,
                    error = %e,
                    "TLS certificate and key refused; the ones in use are kept"
                );
            }
        }
    }

    /// Reads the pair, and again after each of the waits while it is not valid, or at once when
    /// the files change meanwhile (the second write of a rotation).
    async fn read_settled(&mut self) -> Result<Pair, PairError> {
        let mut read = Pair::read_async(&self.files).await;
        for wait in RETRIES {
            let Err(e) = &read else { break };
            tracing::debug!(target: "rodent::tls", error = %e, "TLS files not valid yet; reading them again shortly");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.watch.changed() => {}
            }
            read = Pair::read_async(&self.files).await;
        }
        read
    }
}

/// Whole days until `expires` (negative once past), for the log.
pub(super) fn days_left(expires: Option<i64>) -> Option<i64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    expires.map(|at| (at - now).div_euclid(86_400))
}
