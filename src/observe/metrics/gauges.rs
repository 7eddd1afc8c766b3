//! The gauges computed at scrape time from state that lives elsewhere: the lifecycle state, the
//! readiness switch, requests in flight, build information and uptime.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::InFlight;
use crate::build::BuildInfo;
use crate::lifecycle::{Lifecycle, State};

/// Gauges computed at scrape time from state that lives elsewhere.
#[derive(Debug)]
pub(super) struct Gauges {
    lifecycle: Lifecycle,
    in_flight: Arc<InFlight>,
    build: BuildInfo,
}

impl Gauges {
    pub(super) fn new(lifecycle: Lifecycle, in_flight: Arc<InFlight>, build: BuildInfo) -> Self {
        Self {
            lifecycle,
            in_flight,
            build,
        }
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let current = self.lifecycle.state();
        let mut states = encoder.encode_descriptor(
            "lifecycle_state",
            "1 for the current lifecycle state (starting, ready, draining, stopping), 0 otherwise",
            None,
            MetricType::Gauge,
        )?;
        for state in State::ALL {
            let labels = [("state", state.as_str())];
            ConstGauge::new(i64::from(state == current)).encode(states.encode_family(&labels)?)?;
        }

        let ready = encoder.encode_descriptor(
            "readiness_enabled",
            "0 while code or an operator has taken the instance out of rotation",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.lifecycle.readiness_enabled())).encode(ready)?;

        let mut in_flight = encoder.encode_descriptor(
            "http_requests_in_flight",
            "Requests being handled right now, by matched route",
            None,
            MetricType::Gauge,
        )?;
        for (route, n) in self.in_flight.all_routes() {
            let labels = [("route", &*route)];
            ConstGauge::new(n).encode(in_flight.encode_family(&labels)?)?;
        }

        let mut info = encoder.encode_descriptor(
            "build_info",
            "Always 1; the labels say which build is running",
            None,
            MetricType::Gauge,
        )?;
        // Named `rodent_build_info` whatever the application (like every metric rodent
        // exports, so one dashboard reads any rodent service); `name` says which it is.
        let labels = [
            ("name", self.build.name),
            ("version", self.build.version),
            ("commit", self.build.commit),
            ("rodent_version", self.build.rodent),
            ("rustc", self.build.rustc),
        ];
        ConstGauge::new(1).encode(info.encode_family(&labels)?)?;

        let uptime = encoder.encode_descriptor(
            "uptime_seconds",
            "Seconds since the service started",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.lifecycle.uptime().as_secs_f64()).encode(uptime)?;
        Ok(())
    }
}
