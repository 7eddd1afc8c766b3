//! Traces and metrics of the real `rodent` binary: an OTLP receiver in the test stands in for
//! the collector (in plain text or over TLS, with a CA the test makes), and `/metrics` is read
//! with a Prometheus text parser and linted with `promtool`.

mod application;
mod bounded;
mod chain;
mod metrics;
mod pki;
mod process;
mod propagation;
mod receiver;
mod scrape;
mod stalled;
mod tls;
mod traces;
