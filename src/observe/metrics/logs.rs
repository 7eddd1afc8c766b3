//! `rodent_log_lines_dropped_total`: the log lines the sink (`observe::logging`) could not write.
//! The sink keeps the count; it is read at scrape time, and is 0 until logging is connected.

use std::fmt;
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use crate::observe::logging::DroppedLines;

#[derive(Debug, Default, Clone)]
pub(super) struct LogLinesDropped(pub(super) Arc<OnceLock<DroppedLines>>);

impl Collector for LogLinesDropped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let total = self.0.get().map_or(0, DroppedLines::total);
        ConstCounter::new(total).encode(encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because stdout was blocked, closed or too slow",
            None,
            MetricType::Counter,
        )?)
    }
}
