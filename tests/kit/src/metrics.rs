//! `/metrics` read as the tests read it: one scrape as text, and a sample's value by its series
//! (the metric's name and labels exactly as rodent writes them). The telemetry tests that check
//! the format itself parse the same text with a Prometheus parser.

use std::str::FromStr;

use crate::{PATIENCE, Rodent, client, eventually_async};

/// One scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics(String);

impl Metrics {
    /// The value of `series`: a name with its labels as rodent writes them, such as
    /// `rodent_http_requests_in_flight{route="/slow"}` or `rodent_zombies_reaped_total`.
    /// `None` if the scrape has no such sample or its value does not parse as `T`.
    pub fn value<T: FromStr>(&self, series: &str) -> Option<T> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// [`Metrics::value`], or a panic with the whole scrape if the sample is not there.
    #[track_caller]
    pub fn expect<T: FromStr>(&self, series: &str) -> T {
        self.value(series)
            .unwrap_or_else(|| panic!("no `{series}` in /metrics:\n{}", self.0))
    }

    pub fn text(&self) -> &str {
        &self.0
    }
}

impl From<String> for Metrics {
    /// A scrape read some other way (on a connection the test already holds, say).
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl Rodent {
    /// `GET /metrics` on a fresh connection: a 200 in Prometheus' text format.
    pub async fn metrics(&self) -> Metrics {
        let response = client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("/metrics answers");
        assert_eq!(response.status(), 200, "GET /metrics");
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        Metrics(response.text().await.expect("a text body"))
    }
}

/// Waits until `/metrics` shows `n` requests in flight on `route`.
pub async fn wait_in_flight(rodent: &Rodent, route: &str, n: i64) {
    let series = format!("rodent_http_requests_in_flight{{route=\"{route}\"}}");
    eventually_async(PATIENCE, async || {
        let metrics = rodent.metrics().await;
        match metrics.value::<i64>(&series) {
            Some(value) if value == n => Ok(()),
            _ => Err(format!(
                "never saw `{series} {n}` in /metrics:\n{}",
                metrics.text()
            )),
        }
    })
    .await
}
