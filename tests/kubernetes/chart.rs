//! The chart as users run it: `helm install --wait` into a namespace that enforces the restricted
//! Pod Security Standard, `helm test`, and the all-features values through the API server's
//! own validation (a server-side dry run, strict about unknown fields).

use std::time::Instant;

use serde_json::json;

use crate::cluster::{ALL_FEATURES, CHART, Cluster, Namespace};
use crate::images::images;
use crate::release::{install, values};
use crate::watch::{pod_ready, restart_count};

pub fn install_and_helm_test(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "chart");

    // The namespace really enforces the standard: a pod without the restricted security context
    // (may run as root, keeps its capabilities, no seccomp profile) is refused.
    let unrestricted = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "unrestricted"},
        "spec": {"containers": [{
            "name": "c",
            "image": format!("{}:{}", image.repository, image.tag),
        }]},
    });
    let refused = cluster.with_input(
        &[
            "create",
            "--dry-run=server",
            "-n",
            &namespace.name,
            "-f",
            "-",
        ],
        &unrestricted.to_string(),
    );
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("violates PodSecurity"),
        "the restricted namespace admitted an unrestricted pod: {}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let started = Instant::now();
    let release = install(cluster, &namespace, "rodent", &values(image, json!({})));
    eprintln!(
        "helm install --wait: {:.1} s (Kubernetes {})",
        started.elapsed().as_secs_f64(),
        cluster.version
    );
    let pods = release.ready_pods();
    assert_eq!(pods.len(), 2, "the chart's default two replicas are ready");
    for pod in &pods {
        assert_eq!(restart_count(pod), 0, "a pod restarted while starting");
        assert_eq!(pod_ready(pod), Some(true));
    }

    let started = Instant::now();
    // (Not --logs: the chart's hook-delete-policy removes the test pod once it has succeeded.)
    let out = cluster.helm(&["test", "rodent", "--namespace", &namespace.name]);
    assert!(
        out.status.success(),
        "helm test failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("Phase:          Succeeded") || report.contains("Succeeded"),
        "helm test reported no success:\n{report}"
    );
    eprintln!("helm test: {:.1} s", started.elapsed().as_secs_f64());
}

pub fn all_features_pass_a_server_side_dry_run(cluster: &Cluster) {
    let namespace = Namespace::restricted(cluster, "all-features");
    // The kinds the CRDs add (ServiceMonitor, HTTPRoute) are installed by scripts/kube up.
    for crd in [
        "servicemonitors.monitoring.coreos.com",
        "httproutes.gateway.networking.k8s.io",
    ] {
        cluster.run(&["get", "crd", crd]);
    }
    let rendered = cluster.helm_ok(&[
        "template",
        "rodent",
        CHART,
        "--namespace",
        &namespace.name,
        "--kube-version",
        &cluster.version,
        "--values",
        ALL_FEATURES,
    ]);
    let out = cluster.with_input(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--field-manager",
            "rodent-tests",
            "--namespace",
            &namespace.name,
            "-f",
            "-",
        ],
        &rendered,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the API server refused the all-features rendering ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        "deployment.apps/rodent",
        "service/rodent",
        "horizontalpodautoscaler.autoscaling/rodent",
        "poddisruptionbudget.policy/rodent",
        "networkpolicy.networking.k8s.io/rodent",
        "ingress.networking.k8s.io/rodent",
        "servicemonitor.monitoring.coreos.com/rodent",
        "httproute.gateway.networking.k8s.io/rodent",
        "pod/rodent-test-ready",
    ] {
        assert!(
            stdout.contains(&format!("{kind} serverside-applied (server dry run)")),
            "{kind} was not dry-run applied:\n{stdout}"
        );
    }
}
