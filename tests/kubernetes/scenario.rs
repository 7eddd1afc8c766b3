//! What the scenarios under load share: the servers each runs against (rodent must lose nothing,
//! the others must lose requests, which shows the scenario can fail), the deployment of each from
//! the same rendering of the chart, the figures of an event (requests, failures, p99 latency,
//! duration), and the assertions.
//!
//! The load always comes from the client node (see [`crate::cluster`]), through the Service's
//! cluster IP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{Cluster, Namespace};
use crate::images::images;
use crate::propagation::Lags;
use crate::release::{Release, deploy_rendered, install, values};
use kit::load::{Counts, Report};

/// How late the client node's kube-proxy learns of every change in the scenarios that slow it
/// down: less than the chart's 5 s drain delay, and more than the up to 2 s a busy kubelet takes
/// to send SIGTERM after a deletion, so that a pod without a drain delay has stopped listening
/// before that kube-proxy stops sending to it, as happens where kube-proxies lag behind the
/// kubelets (a busy API server, large rule sets). On this small, quiet cluster every kube-proxy
/// otherwise applies a change within about a second (`minSyncPeriod`), often sooner than the
/// kubelet sends SIGTERM, and a server with no drain delay may then lose nothing.
pub const SLOW_PROXY: Duration = Duration::from_millis(2500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// rodent with the chart's defaults (a 5 s drain delay).
    Rodent,
    /// rodent with `shutdown.drainDelay: 0` (`RODENT_DRAIN_DELAY=0`): what the delay buys.
    RodentNoDrainDelay,
    /// The bare axum server (`examples/baseline.rs`) in the same Deployment.
    Baseline,
}

impl Server {
    pub fn key(self) -> &'static str {
        match self {
            Server::Rodent => "rodent",
            Server::RodentNoDrainDelay => "rodent-no-delay",
            Server::Baseline => "baseline",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Server::Rodent => "rodent, the chart's defaults (drain delay 5 s)",
            Server::RodentNoDrainDelay => "rodent, RODENT_DRAIN_DELAY=0 (no drain delay)",
            Server::Baseline => "bare axum baseline, same Deployment (no drain delay)",
        }
    }

    /// The release's name, which the chart's resource names follow.
    fn release(self) -> &'static str {
        self.key()
    }
}

/// The chart for `server` in `namespace`, with `extra` values over the tests' own, ready.
pub fn deploy<'a>(
    cluster: &'a Cluster,
    namespace: &'a Namespace<'a>,
    server: Server,
    extra: Value,
) -> Release<'a> {
    let images = images(cluster);
    let name = server.release();
    match server {
        Server::Rodent => install(cluster, namespace, name, &values(&images.rodent, extra)),
        // The chart refuses a drain delay shorter than its readiness probe takes to notice the
        // drain: only the rendered Deployment can run it.
        Server::RodentNoDrainDelay => deploy_rendered(
            cluster,
            namespace,
            name,
            &values(&images.rodent, extra),
            without_drain_delay,
        ),
        Server::Baseline => deploy_rendered(
            cluster,
            namespace,
            name,
            &values(&images.baseline, extra),
            |container| {
                // The baseline has no /healthz; its /readyz answers 200 for as long as it
                // listens, which is all a bare server can say.
                for probe in ["startupProbe", "livenessProbe"] {
                    container[probe]["httpGet"]["path"] = json!("/readyz");
                }
            },
        ),
    }
}

/// A rendered rodent container's `RODENT_DRAIN_DELAY` set to 0.
pub fn without_drain_delay(container: &mut Value) {
    let delay = container["env"]
        .as_array_mut()
        .and_then(|env| env.iter_mut().find(|v| v["name"] == "RODENT_DRAIN_DELAY"))
        .expect("the chart sets RODENT_DRAIN_DELAY");
    delay["value"] = json!("0");
}

/// What a scenario did to the pods, on the load's clock (since the load started).
#[derive(Debug, Clone)]
pub struct Event {
    pub what: String,
    pub from: Duration,
    pub to: Duration,
}

impl Event {
    pub fn took(&self) -> Duration {
        self.to.saturating_sub(self.from)
    }
}

/// One run of a scenario under load.
pub struct Run {
    pub scenario: &'static str,
    pub server: Server,
    pub report: Report,
    pub event: Event,
    /// Seconds since the load started, and what happened then, for the figure.
    pub marks: Vec<(f64, String)>,
    /// More lines for the summary, the scenario's own.
    pub notes: Vec<String>,
    /// How late the client node's kube-proxy was made, if it was.
    pub lag: Option<Duration>,
    /// What each kube-proxy did with the stopped pods.
    pub lags: Lags,
}

impl Run {
    /// The requests that ended during the event.
    pub fn during(&self) -> Counts {
        self.report.between(self.event.from, self.event.to).fold(
            Counts::default(),
            |mut counts, sample| {
                if sample.ok {
                    counts.ok += 1;
                } else {
                    counts.failed += 1;
                }
                counts
            },
        )
    }

    /// The p99 latency of `GET /` during the event.
    pub fn p99(&self) -> Option<Duration> {
        self.report
            .fast_latency(self.event.from, self.event.to, 0.99)
    }

    /// The figures, one line that starts with `figure:` (what BENCHMARKS.md is written from),
    /// then the failures by kind and the scenario's notes.
    pub fn summary(&self) -> String {
        let during = self.during();
        let mut text = format!(
            "figure: {} / {}: {} requests, {} failed; {} took {:.1} s, during it {} requests, \
             {} failed, p99 of GET / {}",
            self.scenario,
            self.server.key(),
            self.report.counts.sent(),
            self.report.counts.failed,
            self.event.what,
            self.event.took().as_secs_f64(),
            during.sent(),
            during.failed,
            self.p99().map_or("none".into(), |p| format!(
                "{:.1} ms",
                p.as_secs_f64() * 1e3
            )),
        );
        if let Some(lag) = self.lag {
            text.push_str(&format!(
                "\n  the client node's kube-proxy {:.1} s late",
                lag.as_secs_f64()
            ));
        }
        for note in self.notes.iter().chain(&self.lags.notes()) {
            text.push_str(&format!("\n  {note}"));
        }
        for (what, n) in self.report.failure_kinds() {
            text.push_str(&format!("\n  {n} × {what}"));
        }
        text
    }

    /// The assertion of the scenario: rodent with its drain delay loses nothing; the others (the
    /// baseline, rodent without a drain delay) lose requests, or the scenario could not tell a
    /// drain from none.
    pub fn check(&self) {
        eprintln!("{}", self.summary());
        if let Some(lag) = self.lag {
            self.lags.check_client_slowed(lag, &self.summary());
        }
        assert!(
            self.during().sent() >= 500,
            "too little load during the event to prove anything:\n{}",
            self.summary()
        );
        match self.server {
            Server::Rodent => assert_eq!(
                self.report.counts.failed,
                0,
                "rodent lost requests:\n{}\nfirst failures:\n{}",
                self.summary(),
                self.report.first_failures(20)
            ),
            Server::Baseline | Server::RodentNoDrainDelay => assert!(
                self.report.counts.failed > 0,
                "{:?} lost nothing, so the scenario cannot tell a drain from none:\n{}",
                self.server,
                self.summary()
            ),
        }
    }

    /// Draws the run into `target/…/figures/<figure>.svg`, beside the other servers' runs.
    pub fn plot(&self, figure: &str, title: &str, keys: &[&str]) {
        let panel = kit::plot::Panel {
            title: self.server.title().to_string(),
            timeline: self.report.timeline.clone(),
            marks: self.marks.clone(),
        };
        let svg = kit::plot::save(figure, title, self.server.key(), keys, &panel);
        eprintln!("figure: {}", svg.display());
    }
}

/// The median, smallest and largest of some durations, in seconds.
pub fn spread_of(durations: &[Duration]) -> String {
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

/// The chart's `topologySpreadConstraints` value that puts each replica on a node of its own
/// while there are as many nodes as replicas (at most one more on any node than on another).
pub fn one_per_node() -> Value {
    json!({"topologySpreadConstraints": [{
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
    }]})
}
