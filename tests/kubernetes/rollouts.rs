//! `kubectl rollout restart` under constant keep-alive load, sent from the client node to the
//! Service's cluster IP, so through rules written by a kube-proxy that is no pod's own. Three
//! replicas, one per node (the chart's `topologySpreadConstraints`), so that every rollout stops
//! and starts pods on all three nodes. Every request that does not get its 2xx is counted. rodent
//! (the chart's defaults: a 5 s drain delay, readiness probed every second) must lose none over
//! three cycles; the bare baseline, deployed from the same rendering, must lose some, which proves
//! the scenario can fail.
//!
//! The same rollout, once, with the client node's kube-proxy slowed down
//! ([`crate::scenario::SLOW_PROXY`]: it learns of every change that late, less than the drain
//! delay) shows what `RODENT_DRAIN_DELAY` buys: with the chart's 5 s, nothing is lost; with 0,
//! requests are.
//!
//! Every rollout also measures what each node's kube-proxy did: how long after the EndpointSlice
//! marked an old pod's endpoint terminating its rules stopped sending to it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::{Cluster, Namespace};
use crate::nodes::{Lag, spread};
use crate::propagation::Propagation;
use crate::release::Release;
use crate::scenario::{Event, Run, Server, deploy, one_per_node, spread_of};
use crate::watch::{Watch, pod_ready, uid};
use kit::load::{Counts, Load};

pub const CYCLES: usize = 3;
pub const REPLICAS: usize = 3;
pub struct Rollouts {
    pub run: Run,
    pub cycles: Vec<Counts>,
}

/// `cycles` rollout restarts of `server` under load, the client node's kube-proxy `lag` late.
pub fn rolling_restarts(
    cluster: &Cluster,
    server: Server,
    cycles: usize,
    lag: Option<Duration>,
) -> Rollouts {
    let namespace = Namespace::restricted(cluster, "rollouts");
    let mut extra = one_per_node();
    extra["replicaCount"] = json!(REPLICAS);
    let release = deploy(cluster, &namespace, server, extra);
    check_one_per_node(&release, "before the rollouts");
    let initial: Vec<String> = release.pods().iter().map(|p| uid(p).to_string()).collect();
    let propagation = Propagation::watch(cluster, &release);
    let runtime = cluster.runtime();
    let load = Load::start(runtime.handle(), &release.service_url());
    load.wait_for_successes(Counts::default(), 1000);

    let slowed = lag.map(|lag| Lag::set(cluster, lag));
    let mut cycle_counts = Vec::new();
    let mut cycle_times = Vec::new();
    let mut marks = Vec::new();
    let from = load.elapsed();
    for cycle in 0..cycles {
        let before = load.counts();
        let started = Instant::now();
        marks.push((
            load.elapsed().as_secs_f64(),
            format!("rollout restart {}", cycle + 1),
        ));
        namespace.run(&["rollout", "restart", &release.deployment()]);
        release.wait_rolled_out();
        // The rollout is over for the clients once every kube-proxy (the slowed one too) sends
        // only to the new pods.
        propagation.wait_caught_up(&release);
        cycle_times.push(started.elapsed());
        check_one_per_node(&release, &format!("after rollout {}", cycle + 1));
        // The new pods take their share before the next rollout.
        load.wait_for_successes(load.counts(), 1000);
        cycle_counts.push(load.counts().since(before));
    }
    let to = load.elapsed();
    drop(slowed);
    let report = runtime.block_on(load.stop());
    let (pods, lags) = propagation.lags();
    let (start_to_ready, deletion_to_gone) = pod_timings(&pods, &initial);

    let what = match lag {
        Some(lag) => format!(
            "the rollout, the client node's kube-proxy {:.1} s late,",
            lag.as_secs_f64()
        ),
        None => format!("{cycles} rollouts"),
    };
    let mut notes: Vec<String> = cycle_counts
        .iter()
        .zip(&cycle_times)
        .enumerate()
        .map(|(i, (counts, took))| {
            format!(
                "rollout {}: {} requests, {} failed, {:.1} s",
                i + 1,
                counts.sent(),
                counts.failed,
                took.as_secs_f64()
            )
        })
        .collect();
    notes.push(format!(
        "pod start to Ready: {}",
        spread_of(&start_to_ready)
    ));
    notes.push(format!(
        "pod deletion to gone: {}",
        spread_of(&deletion_to_gone)
    ));
    Rollouts {
        run: Run {
            scenario: if lag.is_some() {
                "slowed kube-proxy rollout"
            } else {
                "rollout restarts"
            },
            server,
            report,
            event: Event { what, from, to },
            marks,
            notes,
            lag,
            lags,
        },
        cycles: cycle_counts,
    }
}

/// Each pod of the current rollout on a node of its own.
fn check_one_per_node(release: &Release, when: &str) {
    let pods = release.ready_pods();
    assert_eq!(
        spread(&pods),
        REPLICAS,
        "{when}, the {REPLICAS} pods are not on {REPLICAS} nodes: {:?}",
        pods.iter().map(crate::nodes::node_of).collect::<Vec<_>>()
    );
}

/// From the watch: each new pod's first sighting to its first Ready, and each deleted pod's
/// deletion to its removal. `initial` are the pods that were there before the rollouts.
fn pod_timings(pods: &Watch, initial: &[String]) -> (Vec<Duration>, Vec<Duration>) {
    let mut first_seen = BTreeMap::<String, Instant>::new();
    let mut ready = BTreeMap::<String, Instant>::new();
    let mut deleting = BTreeMap::<String, Instant>::new();
    let mut gone = BTreeMap::<String, Instant>::new();
    for event in pods.events() {
        let id = uid(&event.object).to_string();
        first_seen.entry(id.clone()).or_insert(event.at);
        if pod_ready(&event.object) == Some(true) {
            ready.entry(id.clone()).or_insert(event.at);
        }
        if event.object["metadata"]["deletionTimestamp"].is_string() {
            deleting.entry(id.clone()).or_insert(event.at);
        }
        if event.kind == "DELETED" {
            gone.entry(id).or_insert(event.at);
        }
    }
    let start_to_ready = first_seen
        .iter()
        .filter(|(id, _)| !initial.contains(id))
        .filter_map(|(id, seen)| Some(ready.get(id)?.duration_since(*seen)))
        .collect();
    let deletion_to_gone = deleting
        .iter()
        .filter_map(|(id, at)| Some(gone.get(id)?.duration_since(*at)))
        .collect();
    (start_to_ready, deletion_to_gone)
}

pub fn check_the_load_ran(rollouts: &Rollouts) {
    for (i, cycle) in rollouts.cycles.iter().enumerate() {
        assert!(
            cycle.sent() >= 1000,
            "too little load in rollout {} to prove anything:\n{}",
            i + 1,
            rollouts.run.summary()
        );
    }
    // Every generation of pods (the first, and each rollout's) served `GET /`: pod names are
    // `<deployment>-<pod-template-hash>-<suffix>`. (Not every pod need have: kept-alive
    // connections stay where they are until a drain's `Connection: close` moves them.)
    let generations: BTreeSet<&str> = rollouts
        .run
        .report
        .instances
        .iter()
        .filter_map(|pod| pod.rsplit('-').nth(1))
        .collect();
    assert_eq!(
        generations.len(),
        rollouts.cycles.len() + 1,
        "every rollout's pods served requests:\n{}",
        rollouts.run.summary()
    );
}
