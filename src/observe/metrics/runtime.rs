//! The tokio runtime's stable metrics, read at scrape time from the runtime that serves the
//! scrape: its worker threads, the tasks alive on it, the depth of its global queue, and each
//! worker's busy time and parks. A queue that grows and workers busy all the time say the
//! service is short of CPU before its latency does.
//!
//! Read straight from tokio's `RuntimeMetrics` (stable since tokio 1.39), not through
//! `tokio-metrics`: that crate samples intervals for a reporting loop of its own, where a scrape
//! wants the values as they are, and its stable part reads these same counters.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::runtime::{Handle, RuntimeMetrics};

/// Registered in rodent's namespace: `rodent_runtime_*`.
#[derive(Debug, Default)]
pub(super) struct RuntimeGauges;

impl Collector for RuntimeGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // Rendered outside a runtime (a test, an embedder's own thread): nothing to say.
        let Ok(handle) = Handle::try_current() else {
            return Ok(());
        };
        encode(&handle.metrics(), &mut encoder)
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: usize,
) -> Result<(), fmt::Error> {
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn encode(metrics: &RuntimeMetrics, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let workers = metrics.num_workers();
    gauge(
        encoder,
        "runtime_workers",
        "Worker threads of the tokio runtime",
        workers,
    )?;
    gauge(
        encoder,
        "runtime_alive_tasks",
        "Tasks alive on the tokio runtime: spawned and not yet finished",
        metrics.num_alive_tasks(),
    )?;
    gauge(
        encoder,
        "runtime_global_queue_depth",
        "Tasks waiting in the tokio runtime's global (injection) queue",
        metrics.global_queue_depth(),
    )?;
    let mut busy = encoder.encode_descriptor(
        "runtime_worker_busy_seconds",
        "Time each worker thread of the tokio runtime spent running tasks",
        None,
        MetricType::Counter,
    )?;
    for worker in 0..workers {
        let label = worker.to_string();
        let seconds = metrics.worker_total_busy_duration(worker).as_secs_f64();
        ConstCounter::new(seconds).encode(busy.encode_family(&[("worker", label.as_str())])?)?;
    }
    let mut parks = encoder.encode_descriptor(
        "runtime_worker_parks",
        "Times each worker thread of the tokio runtime parked, having run out of work",
        None,
        MetricType::Counter,
    )?;
    for worker in 0..workers {
        let label = worker.to_string();
        let parked = metrics.worker_park_count(worker);
        ConstCounter::new(parked).encode(parks.encode_family(&[("worker", label.as_str())])?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn the_runtime_that_renders_is_described() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut registry = Registry::default();
        registry
            .sub_registry_with_prefix("rodent")
            .register_collector(Box::new(RuntimeGauges));
        let text = runtime.block_on(async {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
            out
        });
        assert!(text.contains("rodent_runtime_workers 2\n"), "{text}");
        assert!(
            text.contains("# TYPE rodent_runtime_alive_tasks gauge"),
            "{text}"
        );
        assert!(
            text.contains("rodent_runtime_global_queue_depth "),
            "{text}"
        );
        assert!(
            text.contains("rodent_runtime_worker_busy_seconds_total{worker=\"1\"} "),
            "{text}"
        );
        assert!(
            text.contains("rodent_runtime_worker_parks_total{worker=\"0\"} "),
            "{text}"
        );
        let mut outside = String::new();
        prometheus_client::encoding::text::encode(&mut outside, &registry).unwrap();
        assert!(!outside.contains("rodent_runtime_workers"), "{outside}");
    }
}
