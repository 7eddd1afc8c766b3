//! The pod as hardened platforms run it: a read-only root filesystem with no volume at all, under
//! an arbitrary UID in group 0 (how OpenShift's restricted policy runs every container). The chart
//! keeps the image's default of no PID file, so nothing needs to be writable; `rodent status` and
//! `rodent stop` run in the pod (`kubectl exec`) find rodent as the container's PID 1.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{Cluster, Namespace};
use crate::images::images;
use crate::release::{install, values};
use crate::watch::{Watch, name, pod_ready, restart_count, uid};

/// A UID from the range OpenShift hands out per namespace, in group 0.
const UID: u64 = 1_000_680_000;

fn exec(cluster: &Cluster, namespace: &Namespace, pod: &str, args: &[&str]) -> Output {
    cluster
        .kubectl()
        .args(["exec", "-n", &namespace.name, pod, "--"])
        .args(args)
        .output()
        .expect("kubectl runs")
}

fn said(out: &Output) -> String {
    format!(
        "exit {}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn terminated(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
}

pub fn read_only_pod_with_no_volume_starts_and_stops_cleanly(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "hardened");
    let identity = json!({"runAsNonRoot": true, "runAsUser": UID, "runAsGroup": 0});
    let release = install(
        cluster,
        &namespace,
        "rodent",
        &values(
            image,
            json!({
                "replicaCount": 1,
                "podSecurityContext": identity,
                "securityContext": identity,
            }),
        ),
    );
    let pod = release.ready_pods().remove(0);
    let (pod_name, pod_uid) = (name(&pod).to_string(), uid(&pod).to_string());

    // What the API server admitted, not only what the chart rendered.
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"], true,
        "{container}"
    );
    assert_eq!(container["securityContext"]["runAsUser"], UID);
    assert!(
        container["volumeMounts"]
            .as_array()
            .is_none_or(|m| m.is_empty()),
        "the container mounts nothing: {}",
        container["volumeMounts"]
    );
    assert!(
        pod["spec"]["volumes"]
            .as_array()
            .is_none_or(|v| v.is_empty()),
        "the pod has no volume: {}",
        pod["spec"]["volumes"]
    );
    assert_eq!(restart_count(&pod), 0);

    let status = exec(cluster, &namespace, &pod_name, &["/rodent", "status"]);
    assert_eq!(
        status.status.code(),
        Some(0),
        "rodent status: {}",
        said(&status)
    );
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("PID 1"),
        "rodent status: {}",
        said(&status)
    );

    let pods = Watch::start(
        cluster,
        &["pods", "-n", &namespace.name, "-l", &release.selector()],
    );
    let stop = exec(cluster, &namespace, &pod_name, &["/rodent", "stop"]);
    assert_eq!(stop.status.code(), Some(0), "rodent stop: {}", said(&stop));

    // The container drains and exits 0 on its own; the kubelet starts it again (the Deployment's
    // restartPolicy is Always), once more read-only with no volume.
    let stopped = pods.wait_for(
        Duration::from_secs(60),
        "the container's exit after rodent stop",
        |e| uid(&e.object) == pod_uid && terminated(&e.object).is_object(),
    );
    let state = terminated(&stopped.object);
    assert_eq!(state["exitCode"], 0, "the container's exit: {state}");
    assert_eq!(
        state["reason"], "Completed",
        "the container's exit: {state}"
    );
    let previous = namespace.run(&["logs", "--previous", &pod_name]);
    let lines: Vec<Value> = previous
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "draining"),
        "the stopped container did not drain:\n{previous}"
    );
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(
        errors.is_empty(),
        "the stopped container logged errors: {errors:?}"
    );

    pods.wait_for(
        Duration::from_secs(120),
        "the restarted container's readiness",
        |e| {
            uid(&e.object) == pod_uid
                && restart_count(&e.object) == 1
                && pod_ready(&e.object) == Some(true)
        },
    );
    eprintln!(
        "read-only pod with no volume, UID {UID}:0: status found PID 1, stop exited 0 ({}), \
         restarted ready",
        state["reason"].as_str().unwrap_or("?")
    );
}
