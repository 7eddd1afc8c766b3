//! The `process_*` metrics every Prometheus client library exports, which stock dashboards and
//! alerts expect: CPU time, resident and virtual memory, open and maximum file descriptors,
//! threads and the start time, read from `/proc` at scrape time (as client_golang does).
//!
//! `kubert-prometheus-process` is such a collector for `prometheus-client`, but for its 0.23
//! `Collector` trait, not the 0.26 rodent uses; `procfs` does the reading here.

use std::fmt;

use procfs::process::{LimitValue, Process};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Registered unprefixed: these names are the same in every service.
#[derive(Debug)]
pub(crate) struct ProcessMetrics {
    /// Seconds since the epoch; fixed for the life of the process, so read once.
    start_time: Option<f64>,
}

impl ProcessMetrics {
    pub(crate) fn new() -> Self {
        let start_time = Process::myself()
            .and_then(|me| me.stat())
            .ok()
            .and_then(|stat| {
                let boot = procfs::boot_time_secs().ok()?;
                Some(boot as f64 + stat.starttime as f64 / procfs::ticks_per_second() as f64)
            });
        Self { start_time }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeGaugeValue + Clone + fmt::Debug,
) -> Result<(), fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // Where /proc cannot be read (a sandbox that hides it), the families are left out: a
        // scrape never fails for them.
        let Ok(me) = Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?)?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stat.rss * procfs::page_size(),
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.vsize,
            )?;
            gauge(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process.",
                stat.num_threads,
            )?;
        }
        if let Ok(open) = me.fd_count() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                open as u64,
            )?;
        }
        if let Ok(limits) = me.limits()
            && let LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        if let Some(start) = self.start_time {
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                start,
            )?;
        }
        Ok(())
    }
}
