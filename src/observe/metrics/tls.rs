//! The TLS metrics, present only while the main port serves HTTPS:
//! `rodent_tls_reloads_total{outcome}` (a rotated pair applied, or refused) and
//! `rodent_tls_certificate_expiration_timestamp_seconds` (the `notAfter` of the certificate new
//! connections get), named as cert-manager names its own, so one alert rule reads both.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// No expiry known: the certificate's `notAfter` could not be read.
const UNKNOWN: i64 = i64::MIN;

#[derive(Debug)]
pub(crate) struct TlsMetrics {
    serving: AtomicBool,
    applied: AtomicU64,
    refused: AtomicU64,
    expires: AtomicI64,
}

impl Default for TlsMetrics {
    fn default() -> Self {
        Self {
            serving: AtomicBool::new(false),
            applied: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            expires: AtomicI64::new(UNKNOWN),
        }
    }
}

impl TlsMetrics {
    /// The main port serves HTTPS with a certificate that expires at `expires` (seconds since the
    /// Unix epoch).
    pub(crate) fn serving(&self, expires: Option<i64>) {
        self.expires
            .store(expires.unwrap_or(UNKNOWN), Ordering::Relaxed);
        self.serving.store(true, Ordering::Relaxed);
    }

    /// A rotated pair was applied.
    pub(crate) fn rotated(&self, expires: Option<i64>) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.serving(expires);
    }

    /// A rotated pair was refused; the one in use stays.
    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// Encodes [`TlsMetrics`] at scrape time.
#[derive(Debug)]
pub(super) struct TlsCollector(pub(super) std::sync::Arc<TlsMetrics>);

impl Collector for TlsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let tls = &self.0;
        if !tls.serving.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut reloads = encoder.encode_descriptor(
            "tls_reloads",
            "TLS certificate and key read again after a change or SIGHUP, by outcome: applied \
             (new connections get the new pair) or rejected (the pair in use is kept)",
            None,
            MetricType::Counter,
        )?;
        for (outcome, count) in [("applied", &tls.applied), ("rejected", &tls.refused)] {
            ConstCounter::new(count.load(Ordering::Relaxed))
                .encode(reloads.encode_family(&[("outcome", outcome)])?)?;
        }
        let expires = tls.expires.load(Ordering::Relaxed);
        if expires != UNKNOWN {
            ConstGauge::new(expires).encode(encoder.encode_descriptor(
                "tls_certificate_expiration_timestamp_seconds",
                "When the certificate new connections get expires (its notAfter), in seconds \
                 since the Unix epoch",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}
