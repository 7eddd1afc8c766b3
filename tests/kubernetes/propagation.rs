//! How a pod's end reaches the kube-proxies: the release's pods and EndpointSlices watched through
//! the API, and every node's rules (and the client node's) read from inside its namespace, so
//! that a scenario can tell, for each pod it stopped, how long each kube-proxy went on sending to
//! it after the EndpointSlice marked it terminating, and wait until every kube-proxy has caught up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use crate::cluster::Cluster;
use crate::nodes::{Rules, left_at};
use crate::release::{ROLLOUT_TIMEOUT, Release};
use crate::scenario::spread_of;
use crate::watch::{Watch, endpoint_conditions, uid};

/// The port rodent (and the baseline) listen on in the pod: the chart's `containerPort`.
const POD_PORT: u16 = 8080;

pub struct Propagation {
    pub pods: Watch,
    slices: Watch,
    rules: Rules,
}

impl Propagation {
    pub fn watch(cluster: &Cluster, release: &Release) -> Self {
        let namespace = &release.namespace.name;
        let service = format!("kubernetes.io/service-name={}", release.fullname);
        Self {
            pods: Watch::start(
                cluster,
                &["pods", "-n", namespace, "-l", &release.selector()],
            ),
            slices: Watch::start(
                cluster,
                &["endpointslices", "-n", namespace, "-l", &service],
            ),
            rules: Rules::watch(cluster, &release.service_port()),
        }
    }

    /// Blocks until every kube-proxy sends to the release's ready pods and to nothing else: for
    /// the clients, the pods' change is over only then.
    pub fn wait_caught_up(&self, release: &Release) {
        let endpoints: BTreeSet<String> = release
            .ready_pods()
            .iter()
            .filter_map(|p| Some(format!("{}:{POD_PORT}", p["status"]["podIP"].as_str()?)))
            .collect();
        self.rules.wait_for(&endpoints, ROLLOUT_TIMEOUT);
    }

    /// Stops reading the rules. For every node (and `client`): for each pod that was deleted,
    /// from its endpoint's first `terminating: true` in the EndpointSlice to the first reading of
    /// that node's rules without it.
    pub fn lags(self) -> (Watch, Lags) {
        let readings = self.rules.stop();
        let mut address = BTreeMap::<String, String>::new();
        let mut deleted = BTreeSet::<String>::new();
        for event in self.pods.events() {
            let id = uid(&event.object).to_string();
            if let Some(ip) = event.object["status"]["podIP"].as_str() {
                address.insert(id.clone(), format!("{ip}:{POD_PORT}"));
            }
            if event.object["metadata"]["deletionTimestamp"].is_string() {
                deleted.insert(id);
            }
        }
        let slices = self.slices.events();
        let mut lags = BTreeMap::<String, Vec<Duration>>::new();
        for id in &deleted {
            let Some(address) = address.get(id) else {
                continue;
            };
            let terminating = slices.iter().find(|e| {
                endpoint_conditions(&e.object, id).is_some_and(|c| c["terminating"] == json!(true))
            });
            let Some(terminating) = terminating else {
                continue;
            };
            for (namespace, readings) in &readings {
                if let Some(left) = left_at(readings, address) {
                    lags.entry(namespace.clone())
                        .or_default()
                        .push(left.saturating_duration_since(terminating.at));
                }
            }
        }
        (self.pods, Lags(lags))
    }
}

/// For each node's kube-proxy (and the client node's, `client`), how long it went on sending to
/// each stopped pod after the EndpointSlice marked it terminating.
pub struct Lags(pub BTreeMap<String, Vec<Duration>>);

impl Lags {
    /// One line per kube-proxy, for a run's notes.
    pub fn notes(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(node, lags)| {
                format!(
                    "kube-proxy of {node}: terminating endpoint to out of its rules: {}",
                    spread_of(lags)
                )
            })
            .collect()
    }

    /// The client node's kube-proxy really was `lag` late: every stopped pod stayed in its rules
    /// for most of the lag after its endpoint turned terminating.
    pub fn check_client_slowed(&self, lag: Duration, summary: &str) {
        let client = self.0.get("client").cloned().unwrap_or_default();
        assert!(
            !client.is_empty() && client.iter().all(|l| *l >= lag * 4 / 5),
            "the client node's kube-proxy was not slowed down by {lag:?}: {client:?}\n{summary}"
        );
    }
}
