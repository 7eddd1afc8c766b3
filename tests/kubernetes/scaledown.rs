//! Scale-down from four replicas to one under load from the client node: a termination too, and
//! the most common one where a HorizontalPodAutoscaler sets the count. Three pods stop at once,
//! on every node, while the client node's kube-proxy still sends to them; rodent must lose no
//! request, the baseline (same Deployment) must lose some. The client node's kube-proxy is
//! [`SLOW_PROXY`] late meanwhile, as in the drain (see there why): without that lag the baseline
//! lost nothing in a scale-down on this small, quiet cluster (9,367 requests during the event),
//! so the scenario could not have told a drain from none.

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::json;

use crate::cluster::{Cluster, Namespace};
use crate::nodes::{Lag, node_of, spread};
use crate::propagation::Propagation;
use crate::scenario::{Event, Run, SLOW_PROXY, Server, deploy, one_per_node};
use kit::load::{Counts, Load};

pub const FROM: usize = 4;
pub const TO: usize = 1;
pub const FIGURE: &str = "kubernetes-scale-down";

pub fn scale_down(cluster: &Cluster, server: Server) -> Run {
    let namespace = Namespace::restricted(cluster, "scale");
    // Spread over every node, so that the pods stopped are on every node.
    let mut extra = one_per_node();
    extra["replicaCount"] = json!(FROM);
    let release = deploy(cluster, &namespace, server, extra);
    let before = release.ready_pods();
    assert_eq!(before.len(), FROM, "{FROM} pods before the scale-down");
    assert_eq!(
        spread(&before),
        cluster.nodes.len(),
        "the {FROM} pods on every node: {:?}",
        before.iter().map(node_of).collect::<Vec<_>>()
    );
    let propagation = Propagation::watch(cluster, &release);
    let runtime = cluster.runtime();
    let load = Load::start(runtime.handle(), &release.service_url());
    load.wait_for_successes(Counts::default(), 1000);

    let slowed = Lag::set(cluster, SLOW_PROXY);
    let started = Instant::now();
    let from = load.elapsed();
    let replicas = format!("--replicas={TO}");
    namespace.run(&["scale", &release.deployment(), &replicas]);
    // Over for the clients once the stopped pods are gone and every kube-proxy sends to the one
    // left alone.
    release.wait_for_pods(TO);
    propagation.wait_caught_up(&release);
    let to = load.elapsed();
    let took = started.elapsed();
    drop(slowed);
    load.wait_for_successes(load.counts(), 1000);
    let report = runtime.block_on(load.stop());
    let (_, lags) = propagation.lags();
    let after = release.ready_pods();
    let stopped_on: BTreeSet<&str> = before
        .iter()
        .filter(|p| {
            !after
                .iter()
                .any(|a| a["metadata"]["uid"] == p["metadata"]["uid"])
        })
        .map(node_of)
        .collect();
    Run {
        scenario: "scale-down",
        server,
        report,
        event: Event {
            what: format!("kubectl scale {FROM} to {TO}"),
            from,
            to,
        },
        marks: vec![
            (from.as_secs_f64(), format!("scale {FROM} to {TO}")),
            (to.as_secs_f64(), "every kube-proxy caught up".to_string()),
        ],
        notes: vec![format!(
            "the stopped pods were gone and every kube-proxy sent to the last one after {:.1} s; \
             pods stopped on {stopped_on:?}",
            took.as_secs_f64()
        )],
        lag: Some(SLOW_PROXY),
        lags,
    }
}
