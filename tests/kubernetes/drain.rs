//! `kubectl drain` of a node holding both of the chart's pods, under load from the client node,
//! with the chart's PodDisruptionBudget (two replicas, at most one unavailable).
//!
//! The pods are first placed on the last node (the others cordoned while they start), so that the
//! drain must evict both. The budget lets one go at a time: the first eviction is accepted, its
//! replacement is scheduled on another node, and the second eviction is refused (kubectl drain
//! retries it every 5 s) until that replacement is Ready. The drain must finish, the pods must
//! end up on the other nodes, one serving pod must have been left at every moment, and rodent
//! must lose no request; the baseline, whose pods stop listening at once, must lose some. The
//! client node's kube-proxy is [`SLOW_PROXY`] late meanwhile, as a busy cluster's are (see
//! there why).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::{Cluster, Namespace};
use crate::nodes::{Cordon, Lag, node_of};
use crate::propagation::Propagation;
use crate::scenario::{Event, Run, SLOW_PROXY, Server, deploy};
use crate::watch::{Watch, name, pod_ready, uid};
use kit::load::{Counts, Load};

/// How long kubectl may take to drain the node: bounds only a failure.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

pub const FIGURE: &str = "kubernetes-drain";

pub fn drain_a_node(cluster: &Cluster, server: Server) -> Run {
    let namespace = Namespace::restricted(cluster, "drain");
    let target = cluster.nodes.last().expect("a node").name.clone();
    let others: Vec<&str> = cluster
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| *n != target)
        .collect();
    let release = {
        let _only_target = Cordon::new(cluster, &others);
        deploy(cluster, &namespace, server, json!({}))
    };
    let before = release.ready_pods();
    assert_eq!(before.len(), 2, "the chart's two replicas");
    assert!(
        before.iter().all(|p| node_of(p) == target),
        "both pods on {target} before the drain"
    );
    let budget = namespace.json(&["get", "poddisruptionbudget", &release.fullname]);
    assert_eq!(
        budget["spec"]["maxUnavailable"], 1,
        "the chart's budget: {budget}"
    );
    let propagation = Propagation::watch(cluster, &release);
    let runtime = cluster.runtime();
    let load = Load::start(runtime.handle(), &release.service_url());
    load.wait_for_successes(Counts::default(), 1000);

    let slowed = Lag::set(cluster, SLOW_PROXY);
    let _uncordon = Cordon::after(cluster, &[target.as_str()]);
    let timeout = format!("{}s", DRAIN_TIMEOUT.as_secs());
    let started = Instant::now();
    let from = load.elapsed();
    let drain = cluster
        .kubectl()
        .args(["drain", &target, "--pod-selector", &release.selector()])
        .args([
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout",
            &timeout,
        ])
        .output()
        .expect("kubectl runs");
    let drained = load.elapsed();
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&drain.stderr).into_owned();
    assert!(
        drain.status.success(),
        "kubectl drain of {target} did not finish ({}) in {took:?}:\n{said}",
        drain.status
    );
    // The Deployment whole again, on the other nodes, and every kube-proxy sending there alone;
    // then the new pods take their share.
    release.wait_for_pods(2);
    propagation.wait_caught_up(&release);
    let to = load.elapsed();
    drop(slowed);
    let after = release.ready_pods();
    assert!(
        after.iter().all(|p| node_of(p) != target),
        "the pods were rescheduled to the other nodes: {:?}",
        after.iter().map(node_of).collect::<Vec<_>>()
    );
    load.wait_for_successes(load.counts(), 1000);
    let report = runtime.block_on(load.stop());
    let (pods, lags) = propagation.lags();

    let original: Vec<String> = before.iter().map(|p| uid(p).to_string()).collect();
    let history = History::of(&pods, load_clock(started, from));
    history.check_one_at_a_time(&original);
    let retries = said.matches("Cannot evict pod").count();
    let mut marks = vec![(from.as_secs_f64(), "kubectl drain".to_string())];
    for (i, at) in history.evicted(&original).iter().enumerate() {
        marks.push((at.as_secs_f64(), format!("eviction {}", i + 1)));
    }
    marks.push((drained.as_secs_f64(), "drained".to_string()));
    let evicted = history.evicted(&original);
    Run {
        scenario: "node drain",
        server,
        report,
        event: Event {
            what: format!("kubectl drain {target}"),
            from,
            to,
        },
        marks,
        lag: Some(SLOW_PROXY),
        lags,
        notes: vec![
            format!(
                "kubectl drain returned after {:.1} s, every kube-proxy sent to the new pods \
                 alone after {:.1} s",
                took.as_secs_f64(),
                to.saturating_sub(from).as_secs_f64()
            ),
            format!(
                "evictions at {} s after the drain began; the budget refused {retries} \
                 eviction(s) meanwhile",
                evicted
                    .iter()
                    .map(|at| format!("{:.1}", at.saturating_sub(from).as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            format!(
                "pods now on {:?}",
                after.iter().map(node_of).collect::<BTreeSet<_>>()
            ),
        ],
    }
}

/// Turns an `Instant` into the load's clock, given one moment known on both.
fn load_clock(instant: Instant, elapsed: Duration) -> impl Fn(Instant) -> Duration {
    move |at| {
        if at >= instant {
            elapsed + at.duration_since(instant)
        } else {
            elapsed.saturating_sub(instant.duration_since(at))
        }
    }
}

/// The pods' history from the watch, on the load's clock.
struct History {
    /// For each pod: when it turned Ready, when its deletion began.
    ready: BTreeMap<String, Duration>,
    deleting: BTreeMap<String, Duration>,
    names: BTreeMap<String, String>,
    /// After each event: how many pods were Ready and not being deleted.
    serving: Vec<(Duration, usize)>,
}

impl History {
    fn of(pods: &Watch, clock: impl Fn(Instant) -> Duration) -> Self {
        let mut ready = BTreeMap::new();
        let mut deleting = BTreeMap::new();
        let mut names = BTreeMap::new();
        let mut state = BTreeMap::<String, bool>::new();
        let mut serving = Vec::new();
        for event in pods.events() {
            let id = uid(&event.object).to_string();
            let at = clock(event.at);
            names.insert(id.clone(), name(&event.object).to_string());
            let is_ready = pod_ready(&event.object) == Some(true);
            let is_deleting = event.object["metadata"]["deletionTimestamp"].is_string();
            if is_ready {
                ready.entry(id.clone()).or_insert(at);
            }
            if is_deleting {
                deleting.entry(id.clone()).or_insert(at);
            }
            state.insert(id, is_ready && !is_deleting && event.kind != "DELETED");
            serving.push((at, state.values().filter(|s| **s).count()));
        }
        Self {
            ready,
            deleting,
            names,
            serving,
        }
    }

    /// When each of `pods` was evicted (its deletion began), in order.
    fn evicted(&self, pods: &[String]) -> Vec<Duration> {
        let mut at: Vec<Duration> = pods
            .iter()
            .filter_map(|id| self.deleting.get(id).copied())
            .collect();
        at.sort();
        at
    }

    /// The budget's promise: both original pods evicted, the second only once a replacement was
    /// Ready, and a serving pod at every moment.
    fn check_one_at_a_time(&self, original: &[String]) {
        let evicted = self.evicted(original);
        assert_eq!(evicted.len(), 2, "both pods on the node were evicted");
        let replacement_ready = self
            .ready
            .iter()
            .filter(|(id, _)| !original.contains(id))
            .map(|(_, at)| *at)
            .min()
            .expect("a replacement turned Ready");
        assert!(
            replacement_ready <= evicted[1],
            "the second pod was evicted at {:?}, before any replacement was Ready ({:?})",
            evicted[1],
            replacement_ready
        );
        let emptiest = self.serving.iter().map(|(_, n)| *n).min().unwrap_or(0);
        assert!(
            emptiest >= 1,
            "at some moment no pod was serving: {:?} (pods: {:?})",
            self.serving,
            self.names.values().collect::<Vec<_>>()
        );
    }
}
