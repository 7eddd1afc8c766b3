//! Traces and metrics of the real `rodent` binary: an OTLP receiver in the test stands in for
//! the collector, and `/metrics` is read with a Prometheus text parser.

#[path = "../support/mod.rs"]
mod support;

mod metrics;
mod receiver;
mod scrape;
mod traces;
