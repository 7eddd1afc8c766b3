//! `/metrics` read as a scraper reads it: parsed with a Prometheus text-format parser, never
//! matched as substrings.

use std::collections::BTreeSet;

use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};

use kit::Rodent;

pub struct Scrape {
    text: String,
    parsed: MetricsExposition<PrometheusType, PrometheusValue>,
}

impl Scrape {
    /// Scrapes `/metrics` and parses it; panics with the text if it does not parse.
    pub async fn of(rodent: &Rodent) -> Self {
        let text = rodent.metrics().await.text().to_string();
        let parsed = openmetrics_parser::prometheus::parse_prometheus(&text)
            .unwrap_or_else(|e| panic!("/metrics is not Prometheus text ({e:?}):\n{text}"));
        Self { text, parsed }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn family_names(&self) -> BTreeSet<&str> {
        self.parsed.families.keys().map(String::as_str).collect()
    }

    fn family(&self, name: &str) -> Option<&openmetrics_parser::PrometheusMetricFamily> {
        self.parsed.families.get(name)
    }

    /// The sum of the samples of `family` whose labels include all of `labels` (0 when there
    /// is none): a counter, a gauge, or a histogram's count.
    pub fn value(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let Some(family) = self.family(family) else {
            return 0.0;
        };
        family
            .iter_samples()
            .filter(|sample| {
                let set = sample.get_labelset().expect("label names match values");
                labels
                    .iter()
                    .all(|(k, v)| set.get_label_value(k) == Some(*v))
            })
            .map(|sample| match &sample.value {
                PrometheusValue::Counter(c) => c.value.as_f64(),
                PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
                PrometheusValue::Histogram(h) => h.count.map_or(0.0, |c| c as f64),
                PrometheusValue::Summary(s) => s.count.map_or(0.0, |c| c as f64),
            })
            .sum()
    }

    /// Every value `label` takes in `family`.
    pub fn label_values(&self, family: &str, label: &str) -> BTreeSet<String> {
        let Some(family) = self.family(family) else {
            return BTreeSet::new();
        };
        family
            .iter_samples()
            .filter_map(|sample| {
                let set = sample.get_labelset().expect("label names match values");
                set.get_label_value(label).map(str::to_string)
            })
            .collect()
    }

    pub fn family_type(&self, family: &str) -> Option<&PrometheusType> {
        self.family(family).map(|f| &f.family_type)
    }
}
