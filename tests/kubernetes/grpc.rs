//! gRPC on the real cluster. With the chart's `probes.grpc.enabled`, the kubelet's own `grpc:`
//! readiness probe (grpc.health.v1.Health/Check) takes a draining pod out of the endpoints.
//! Under gRPC load from ghz (built from its Go module by scripts/ci/grpc.sh), sent from the
//! client node to the Service's cluster IP over long-lived HTTP/2 connections, two rollout
//! restarts and a scale-down from three pods to one lose no call with rodent; the bare tonic
//! server (`examples/grpc_baseline.rs`, tonic's graceful shutdown at SIGTERM and a health
//! service that never leaves SERVING), deployed from the same rendering, loses some, which proves
//! the scenario can fail. Both run with the client node's kube-proxy slowed down
//! ([`SLOW_PROXY`]), as the HTTP rollouts' slowed run does: on this quiet cluster a kube-proxy
//! otherwise often stops sending to a pod before its kubelet even sends SIGTERM.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::cluster::{Cluster, Namespace, REPO, TempFile};
use crate::deletion::unix_seconds;
use crate::images::{Image, images};
use crate::nodes::Lag;
use crate::probes::{condition, probe_events, watches};
use crate::propagation::Propagation;
use crate::release::{Release, deploy_rendered, install, values};
use crate::scenario::{SLOW_PROXY, Server, one_per_node, without_drain_delay};
use crate::watch::{endpoint_conditions, name, pod_ready, restart_count, uid};

/// The chart's default drain delay: the generous bound for the pod to leave the endpoints.
const DRAIN_DELAY: Duration = Duration::from_secs(5);
/// Calls each phase of the load scenario must hold for its count of lost calls to mean anything.
const CALLS_PER_PHASE: usize = 500;

/// Pods in the load scenario: one per node, so that every rollout stops pods on all three.
const REPLICAS: usize = 3;

/// The chart's values with Kubernetes' `grpc:` probes for startup and readiness, and `extra`.
fn grpc_values(image: &Image, extra: Value) -> Value {
    let mut values = values(image, extra);
    values["probes"] = json!({"grpc": {"enabled": true}});
    values
}

/// SIGTERM sent on the node to the container's process, with no deletion, so nothing but the
/// kubelet's `grpc:` readiness probe can mark the endpoint not ready: rodent's health service
/// answers NOT_SERVING from the signal on, the kubelet records it, the pod turns unready and
/// its endpoint leaves rotation within the drain delay; then the container exits 0, restarts,
/// and the same probe finds it SERVING again.
pub fn grpc_readiness_takes_a_draining_pod_out(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "grpc-probes");
    let release = install(
        cluster,
        &namespace,
        "rodent",
        &grpc_values(image, json!({})),
    );
    let pod = release.ready_pods().remove(0);
    let readiness = &pod["spec"]["containers"][0]["readinessProbe"];
    assert!(
        readiness["grpc"]["port"].is_u64() && readiness["httpGet"].is_null(),
        "the readiness probe is not Kubernetes' grpc: probe: {readiness}"
    );
    let (pod_name, pod_uid) = (name(&pod).to_string(), uid(&pod).to_string());
    let container = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .expect("a running container has an ID")
        .to_string();
    let (pods, slices) = watches(cluster, &release);

    let signalled = Instant::now();
    let pid = cluster.container_pid(&container);
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM reaches the container");

    let unready = pods.wait_for(DRAIN_DELAY * 3, "the pod unready", |e| {
        uid(&e.object) == pod_uid && pod_ready(&e.object) == Some(false)
    });
    let out_of_rotation = slices.wait_for(DRAIN_DELAY * 3, "the endpoint not ready", |e| {
        endpoint_conditions(&e.object, &pod_uid).is_some_and(|c| {
            condition(&c, "ready") == Some(false) && condition(&c, "terminating") != Some(true)
        })
    });
    let back = pods.wait_for(Duration::from_secs(60), "the pod ready again", |e| {
        uid(&e.object) == pod_uid
            && restart_count(&e.object) == 1
            && pod_ready(&e.object) == Some(true)
    });
    let since = |at: Instant| at.duration_since(signalled);
    eprintln!(
        "grpc: readiness probes, after SIGTERM on the node: pod Ready false after {:?}, endpoint \
         out of rotation after {:?}, ready again after the restart after {:?}",
        since(unready.at),
        since(out_of_rotation.at),
        since(back.at)
    );
    for (what, at) in [
        ("the pod unready", unready.at),
        ("the endpoint out of rotation", out_of_rotation.at),
    ] {
        assert!(
            since(at) < DRAIN_DELAY,
            "{what} only after {:?}, past the drain delay",
            since(at)
        );
    }
    let last = &back.object["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 0, "the drained container's exit: {last}");
    // What the kubelet's gRPC prober itself saw (its event says the status it was answered).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failed = probe_events(&namespace, &pod_name, "Readiness probe failed");
        if failed.iter().any(|m| m.contains("NOT_SERVING")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no readiness failure saying NOT_SERVING was recorded: {failed:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One run of the load scenario: what ghz counted, and each phase's window.
pub struct GrpcRun {
    pub load: GhzReport,
    /// Each phase's name and its window in seconds since the epoch.
    pub phases: Vec<(String, f64, f64)>,
}

impl GrpcRun {
    pub fn summary(&self, server: Server) -> String {
        let mut text = format!(
            "{server:?}, gRPC through kube-proxy: {} calls ({:.0}/s), {} lost",
            self.load.calls.len(),
            self.load.rps,
            self.load.lost()
        );
        for (phase, from, to) in &self.phases {
            let (calls, lost) = self.load.within(*from, *to);
            text.push_str(&format!(
                "\n  {phase}: {calls} calls, {lost} lost, {:.1} s",
                to - from
            ));
        }
        for (status, n) in &self.load.statuses {
            text.push_str(&format!("\n  {n} × {status}"));
        }
        for (error, n) in &self.load.errors {
            text.push_str(&format!("\n  {n} × {error}"));
        }
        text
    }

    /// Every phase held enough calls to prove anything.
    pub fn check_the_load_ran(&self, server: Server) {
        for (phase, from, to) in &self.phases {
            let (calls, _) = self.load.within(*from, *to);
            assert!(
                calls >= CALLS_PER_PHASE,
                "too few calls during {phase} to prove anything:\n{}",
                self.summary(server)
            );
        }
    }
}

/// Two `kubectl rollout restart`s, then a scale-down from three pods to one, under one ghz run
/// of `Echo/Delay` calls (20 ms each, so calls are in flight at every moment) over eight
/// connections, which stay where kube-proxy put them until the server sends GOAWAY.
pub fn grpc_rollouts_and_scale_down(cluster: &Cluster, server: Server) -> GrpcRun {
    let namespace = Namespace::restricted(cluster, "grpc-rollouts");
    let release = deploy(cluster, &namespace, server);
    let propagation = Propagation::watch(cluster, &release);
    let target = release
        .service_url()
        .trim_start_matches("http://")
        .to_string();
    let ghz = Ghz::start(cluster, &target);
    // ghz prints nothing while it runs: the phases' windows, checked against its report
    // afterwards, show that calls were made throughout each one.
    std::thread::sleep(Duration::from_secs(3));
    let slowed = Lag::set(cluster, SLOW_PROXY);
    let mut phases = Vec::new();
    for cycle in 1..=2 {
        let from = now();
        namespace.run(&["rollout", "restart", &release.deployment()]);
        release.wait_rolled_out();
        propagation.wait_caught_up(&release);
        phases.push((format!("rollout restart {cycle}"), from, now()));
    }
    let from = now();
    namespace.run(&["scale", &release.deployment(), "--replicas=1"]);
    release.wait_rolled_out();
    propagation.wait_caught_up(&release);
    phases.push((format!("scale-down from {REPLICAS} pods to 1"), from, now()));
    drop(slowed);
    GrpcRun {
        load: ghz.stop(),
        phases,
    }
}

/// `server` with `grpc:` probes, three replicas, one per node, ready.
fn deploy<'a>(cluster: &'a Cluster, namespace: &'a Namespace<'a>, server: Server) -> Release<'a> {
    let all = images(cluster);
    let mut extra = one_per_node();
    extra["replicaCount"] = json!(REPLICAS);
    match server {
        Server::Rodent => install(
            cluster,
            namespace,
            "rodent",
            &grpc_values(&all.rodent, extra),
        ),
        Server::RodentNoDrainDelay => deploy_rendered(
            cluster,
            namespace,
            "rodent-no-delay",
            &grpc_values(&all.rodent, extra),
            without_drain_delay,
        ),
        Server::Baseline => deploy_rendered(
            cluster,
            namespace,
            "baseline",
            &grpc_values(&all.grpc_baseline, extra),
            |container| {
                // The bare tonic server speaks no HTTP: liveness asks its health service too.
                let grpc = container["readinessProbe"]["grpc"].clone();
                let liveness = container["livenessProbe"]
                    .as_object_mut()
                    .expect("the chart sets a liveness probe");
                liveness.remove("httpGet");
                liveness.insert("grpc".into(), grpc);
            },
        ),
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs_f64()
}

/// ghz on the client node (in its network namespace), running until stopped.
struct Ghz {
    child: Child,
    report: TempFile,
}

impl Ghz {
    fn start(cluster: &Cluster, target: &str) -> Self {
        let report = TempFile::new("ghz.json", "");
        let proto = Path::new(REPO).join("proto");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", cluster.client_netns.display()))
            .arg("ghz")
            .args(["--insecure", "--import-paths"])
            .arg(&proto)
            .args(["--proto", "rodent/echo/v1/echo.proto"])
            .args([
                "--call",
                "rodent.echo.v1.Echo.Delay",
                "--data",
                r#"{"ms":20}"#,
            ])
            .args(["--concurrency", "16", "--connections", "8", "--rps", "400"])
            .args([
                "--timeout",
                "10s",
                "--duration",
                "10m",
                "--duration-stop",
                "wait",
            ])
            .args(["--format", "json", "--output", report.path()])
            .arg(target)
            // Timestamps in UTC, as unix_seconds reads them.
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("nsenter and ghz run (scripts/ci/grpc.sh builds ghz)");
        Self { child, report }
    }

    /// SIGINT (ghz lets the calls in flight finish, then writes its report), and the report.
    fn stop(mut self) -> GhzReport {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT).expect("ghz can be signalled");
        let status = self.child.wait().expect("ghz is waited for");
        let text = std::fs::read_to_string(&self.report.0).expect("ghz wrote its report");
        let report: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("ghz ({status}) wrote no JSON report ({e}): {text:.500}"));
        GhzReport::from(&report)
    }
}

/// What ghz reported: every call's start (seconds since the epoch) and whether it was answered OK.
pub struct GhzReport {
    pub calls: Vec<(f64, bool)>,
    pub rps: f64,
    pub statuses: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

impl GhzReport {
    fn from(report: &Value) -> Self {
        let counts = |key: &str| -> BTreeMap<String, u64> {
            report[key]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or_default()))
                .collect()
        };
        let calls = report["details"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|call| {
                let at = call["timestamp"]
                    .as_str()
                    .and_then(unix_seconds)
                    .unwrap_or_else(|| panic!("a call with no UTC timestamp: {call}"));
                (at, call["status"] == "OK")
            })
            .collect();
        Self {
            calls,
            rps: report["rps"].as_f64().unwrap_or_default(),
            statuses: counts("statusCodeDistribution"),
            errors: counts("errorDistribution"),
        }
    }

    pub fn lost(&self) -> usize {
        self.calls.iter().filter(|(_, ok)| !ok).count()
    }

    /// Calls started in `[from, to]`, and how many of them were lost.
    fn within(&self, from: f64, to: f64) -> (usize, usize) {
        let inside = self.calls.iter().filter(|(at, _)| (from..=to).contains(at));
        let (mut calls, mut lost) = (0, 0);
        for (_, ok) in inside {
            calls += 1;
            lost += usize::from(!ok);
        }
        (calls, lost)
    }
}
