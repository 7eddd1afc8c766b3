//! Three `kubectl rollout restart` cycles under constant keep-alive load, sent to the Service's
//! cluster IP, so through kube-proxy's iptables rules, from inside the cluster's network
//! namespace. Every request that does not get its 2xx is counted. rodent (the chart's defaults:
//! a 5 s drain delay, readiness probed every second) must lose none; the bare baseline, deployed
//! from the same rendering, must lose some, which proves the scenario can fail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::{Cluster, Namespace};
use crate::images::images;
use crate::release::{deploy_baseline, install, values};
use crate::watch::{Watch, pod_ready, uid};
use kit::load::{Counts, Load, Report};
use kit::plot;

pub const CYCLES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Rodent,
    Baseline,
}

pub struct Run {
    pub report: Report,
    pub cycles: Vec<Counts>,
    pub cycle_times: Vec<Duration>,
    /// From a pod's creation to its Ready condition, for every pod the rollouts started.
    pub start_to_ready: Vec<Duration>,
    /// From a pod's deletion to its disappearance, for every pod the rollouts stopped.
    pub deletion_to_gone: Vec<Duration>,
    pub marks: Vec<(f64, String)>,
}

impl Run {
    pub fn summary(&self, server: Server) -> String {
        let mut text = format!(
            "{server:?} through kube-proxy: {} requests in {:.1} s ({:.0}/s), {} failed, {} pods \
             answered",
            self.report.counts.sent(),
            self.report.elapsed.as_secs_f64(),
            self.report.counts.sent() as f64 / self.report.elapsed.as_secs_f64(),
            self.report.counts.failed,
            self.report.instances.len(),
        );
        for (i, (cycle, took)) in self.cycles.iter().zip(&self.cycle_times).enumerate() {
            text.push_str(&format!(
                "\n  rollout {}: {} requests, {} failed, {:.1} s",
                i + 1,
                cycle.sent(),
                cycle.failed,
                took.as_secs_f64()
            ));
        }
        text.push_str(&format!(
            "\n  pod start to Ready: {}\n  pod deletion to gone: {}",
            spread(&self.start_to_ready),
            spread(&self.deletion_to_gone)
        ));
        for (what, n) in self.report.failure_kinds() {
            text.push_str(&format!("\n  {n} × {what}"));
        }
        text
    }
}

fn spread(durations: &[Duration]) -> String {
    if durations.is_empty() {
        return "none".into();
    }
    let mut sorted = durations.to_vec();
    sorted.sort();
    format!(
        "median {:.2} s, min {:.2} s, max {:.2} s over {}",
        sorted[sorted.len() / 2].as_secs_f64(),
        sorted[0].as_secs_f64(),
        sorted[sorted.len() - 1].as_secs_f64(),
        sorted.len()
    )
}

pub fn rolling_restarts(cluster: &Cluster, server: Server) -> Run {
    let images = images(cluster);
    let namespace = Namespace::restricted(cluster, "rollouts");
    let release = match server {
        Server::Rodent => install(
            cluster,
            &namespace,
            "rodent",
            &values(&images.rodent, json!({})),
        ),
        Server::Baseline => deploy_baseline(
            cluster,
            &namespace,
            "baseline",
            &values(&images.baseline, json!({})),
        ),
    };
    let initial: Vec<String> = release.pods().iter().map(|p| uid(p).to_string()).collect();
    let pods = Watch::start(
        cluster,
        &["pods", "-n", &namespace.name, "-l", &release.selector()],
    );
    let runtime = cluster.runtime();
    let load = Load::start(runtime.handle(), &release.service_url());
    load.wait_for_successes(Counts::default(), 1000);

    let mut cycles = Vec::new();
    let mut cycle_times = Vec::new();
    let mut marks = Vec::new();
    for cycle in 0..CYCLES {
        let before = load.counts();
        let started = Instant::now();
        marks.push((
            load.elapsed().as_secs_f64(),
            format!("rollout restart {}", cycle + 1),
        ));
        namespace.run(&["rollout", "restart", &release.deployment()]);
        release.wait_rolled_out();
        cycle_times.push(started.elapsed());
        // The new pods take their share before the next rollout.
        load.wait_for_successes(load.counts(), 1000);
        cycles.push(load.counts().since(before));
    }
    let report = runtime.block_on(load.stop());
    let (start_to_ready, deletion_to_gone) = pod_timings(&pods, &initial);
    Run {
        report,
        cycles,
        cycle_times,
        start_to_ready,
        deletion_to_gone,
        marks,
    }
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

pub fn check_the_load_ran(server: Server, run: &Run) {
    for (i, cycle) in run.cycles.iter().enumerate() {
        assert!(
            cycle.sent() >= 1000,
            "too little load in rollout {} to prove anything:\n{}",
            i + 1,
            run.summary(server)
        );
    }
    // Every generation of pods (the first, and each rollout's) served `GET /`: pod names are
    // `<deployment>-<pod-template-hash>-<suffix>`. (Not every pod need have: kept-alive
    // connections stay where they are until a drain's `Connection: close` moves them.)
    let generations: std::collections::BTreeSet<&str> = run
        .report
        .instances
        .iter()
        .filter_map(|pod| pod.rsplit('-').nth(1))
        .collect();
    assert_eq!(
        generations.len(),
        CYCLES + 1,
        "every rollout's pods served requests:\n{}",
        run.summary(server)
    );
}

/// Draws the run into `target/…/figures/kubernetes-rollouts.svg`, beside the other server's.
pub fn plot(server: Server, run: &Run) {
    let (key, title) = match server {
        Server::Rodent => ("rodent", "rodent, the chart's defaults (drain delay 5 s)"),
        Server::Baseline => (
            "baseline",
            "bare axum baseline, same Deployment (no drain delay)",
        ),
    };
    let panel = plot::Panel {
        title: title.to_string(),
        timeline: run.report.timeline.clone(),
        marks: run.marks.clone(),
    };
    let svg = plot::save(
        "kubernetes-rollouts",
        "Three kubectl rollout restarts through kube-proxy, requests per second",
        key,
        &["rodent", "baseline"],
        &panel,
    );
    eprintln!("figure: {}", svg.display());
}
