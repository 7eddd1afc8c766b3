//! `kubectl drain` of the node, with the chart's PodDisruptionBudget (two replicas, at most one
//! unavailable), under load through the Service.
//!
//! On a single node a drain can never finish while the budget protects the last pod: the pod it
//! evicts first is replaced by one that cannot be scheduled (the node is cordoned), so the
//! budget then refuses the second eviction for as long as the drain retries. That is the
//! budget's promise, and what this test proves on one node: the first pod is evicted and drains
//! without losing a request, the other keeps serving alone, the drain gives up with the budget
//! named, and once the node is uncordoned the Deployment is whole again. (With more nodes the
//! replacement would start elsewhere and the drain would go on; that needs a second node.)

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::{Cluster, Namespace};
use crate::images::images;
use crate::release::{ROLLOUT_TIMEOUT, install, values};
use crate::watch::{Watch, name, restart_count, uid};
use kit::load::{Counts, Load};

/// How long the drain keeps retrying the refused eviction: several times the evicted pod's whole
/// drain (5 s), and several of kubectl's 5 s retries.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// Uncordons the node when dropped, so a failing test never leaves it unschedulable.
struct Cordon<'a>(&'a Cluster);

impl Drop for Cordon<'_> {
    fn drop(&mut self) {
        let _ = self.0.kubectl().args(["uncordon", &self.0.node]).output();
    }
}

pub fn drain_with_the_disruption_budget(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "drain");
    let release = install(cluster, &namespace, "rodent", &values(image, json!({})));
    let budget = namespace.json(&["get", "poddisruptionbudget", &release.fullname]);
    assert_eq!(
        budget["spec"]["maxUnavailable"], 1,
        "the chart's budget: {budget}"
    );
    let before: Vec<String> = release
        .ready_pods()
        .iter()
        .map(|p| uid(p).to_string())
        .collect();
    assert_eq!(before.len(), 2);
    let pods = Watch::start(
        cluster,
        &["pods", "-n", &namespace.name, "-l", &release.selector()],
    );
    let runtime = cluster.runtime();
    let load = Load::start(runtime.handle(), &release.service_url());
    load.wait_for_successes(Counts::default(), 1000);

    let cordon = Cordon(cluster);
    let timeout = format!("{}s", DRAIN_TIMEOUT.as_secs());
    let selector = release.selector();
    let started = Instant::now();
    let drain_started = load.elapsed();
    let drain = cluster
        .kubectl()
        .args(["drain", &cluster.node, "--pod-selector", &selector])
        .args([
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout",
            &timeout,
        ])
        .output()
        .expect("kubectl runs");
    let took = started.elapsed();
    let drain_ended = load.elapsed();
    let stderr = String::from_utf8_lossy(&drain.stderr);
    let counts = load.counts();
    eprintln!(
        "kubectl drain gave up after {took:?} ({}); meanwhile {} requests, {} failed",
        drain.status,
        counts.sent(),
        counts.failed
    );
    assert!(
        !drain.status.success(),
        "the drain finished on a single node, so the budget protected nothing:\n{stderr}"
    );
    assert!(
        stderr.contains("disruption budget"),
        "the drain failed, but not because of the budget:\n{stderr}"
    );

    let now = release.pods();
    let survivors: Vec<&String> = before
        .iter()
        .filter(|id| now.iter().any(|p| uid(p) == id.as_str()))
        .collect();
    assert_eq!(
        survivors.len(),
        1,
        "exactly one of the two pods was evicted (pods now: {:?})",
        now.iter().map(name).collect::<Vec<_>>()
    );
    for event in pods
        .events()
        .iter()
        .filter(|e| uid(&e.object) == survivors[0].as_str())
    {
        assert_eq!(
            restart_count(&event.object),
            0,
            "the pod left serving restarted"
        );
        assert!(
            !event.object["metadata"]["deletionTimestamp"].is_string(),
            "the budget let the last pod be evicted"
        );
    }
    let pending = now
        .iter()
        .filter(|p| p["status"]["phase"] == "Pending")
        .count();
    assert_eq!(
        pending, 1,
        "the evicted pod's replacement waits for a schedulable node"
    );

    drop(cordon);
    let uncordoned = load.elapsed();
    let deadline = Instant::now() + ROLLOUT_TIMEOUT;
    while release.ready_pods().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the Deployment was not whole again within {ROLLOUT_TIMEOUT:?} of the uncordon"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = runtime.block_on(load.stop());
    eprintln!(
        "drain and recovery: {} requests, {} failed",
        report.counts.sent(),
        report.counts.failed
    );
    let failures: Vec<String> = report
        .failures
        .iter()
        .take(10)
        .map(|f| format!("  {:.3} s GET {}: {}", f.at.as_secs_f64(), f.path, f.what))
        .collect();
    assert_eq!(
        report.counts.failed,
        0,
        "requests failed (drain from {drain_started:?} to {drain_ended:?}, uncordoned at \
         {uncordoned:?}): {:?}\nfirst failures:\n{}",
        report.failure_kinds(),
        failures.join("\n")
    );
}
