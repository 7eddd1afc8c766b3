//! The chart's faults on a real cluster, as a platform team uses them: a release that never
//! turns ready fails `helm install --wait`, `faults.testFail` and `faults.testTimeout` fail
//! `helm test`, and an error rate on the application's requests leaves the probes green and the
//! pods in the Service's endpoints, so that only what the platform does about the errors is
//! tested.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{CHART, Cluster, Namespace, TempFile, inside};
use crate::images::images;
use crate::release::{install, values};
use crate::watch::{Watch, endpoint_conditions, pod_ready, restart_count, summary, uid};

/// What `helm install --wait` is given with a release that never turns ready: long enough for
/// the pods to start (they do), short enough for a test.
const UNREADY_WAIT: Duration = Duration::from_secs(45);
/// How long the faulted release is watched: a dozen readiness probes (every second) and more
/// than one liveness probe (every ten).
const WATCHED: Duration = Duration::from_secs(25);

fn helm_with_values(cluster: &Cluster, args: &[&str], values: &Value) -> std::process::Output {
    // JSON is YAML: helm reads it as a values file.
    let file = TempFile::new("values.json", &values.to_string());
    let mut all = args.to_vec();
    all.extend(["--values", file.path()]);
    cluster.helm(&all)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `faults.unready`: the pods run and stay alive, but never ready, so `helm install --wait`
/// fails at its timeout, as Flux, Argo and `kubectl rollout status` would.
pub fn unready_fails_helm_install_wait(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "faults-unready");
    let timeout = format!("{}s", UNREADY_WAIT.as_secs());
    let started = Instant::now();
    let out = helm_with_values(
        cluster,
        &[
            "install",
            "bad",
            CHART,
            "--namespace",
            &namespace.name,
            "--wait",
            "--timeout",
            &timeout,
        ],
        &values(image, json!({"faults": {"unready": true}})),
    );
    let took = started.elapsed();
    assert!(
        !out.status.success(),
        "helm install --wait succeeded with a release that is never ready:\n{}",
        text(&out)
    );
    assert!(
        took >= UNREADY_WAIT,
        "helm gave up after {took:?}, before its timeout"
    );
    eprintln!(
        "helm install --wait failed after {took:?}: {}",
        text(&out).trim()
    );
    let pods = namespace.json(&["get", "pods", "-l", "app.kubernetes.io/instance=bad"]);
    let pods = pods["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(pods.len(), 2, "both pods were created");
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Running", "{}", summary(pod));
        assert_eq!(pod_ready(pod), Some(false), "{}", summary(pod));
        // Never ready, but alive: the kubelet has no reason to restart it.
        assert_eq!(restart_count(pod), 0, "{}", summary(pod));
    }
}

/// `faults.testFail` makes `helm test` fail at once; `faults.testTimeout` makes it wait out its
/// `--timeout` and fail then. The release itself is healthy throughout.
pub fn test_faults_fail_helm_test(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "faults-test");
    let release = install(
        cluster,
        &namespace,
        "rodent",
        &values(image, json!({"faults": {"testFail": true}})),
    );
    assert_eq!(release.ready_pods().len(), 2);

    let started = Instant::now();
    let failed = cluster.helm(&[
        "test",
        "rodent",
        "--namespace",
        &namespace.name,
        "--timeout",
        "120s",
    ]);
    assert!(
        !failed.status.success(),
        "helm test passed with faults.testFail:\n{}",
        text(&failed)
    );
    assert!(
        started.elapsed() < Duration::from_secs(110),
        "faults.testFail should fail helm test at once, not at its timeout ({:?})",
        started.elapsed()
    );
    eprintln!(
        "faults.testFail: helm test failed after {:?}",
        started.elapsed()
    );

    let upgraded = helm_with_values(
        cluster,
        &[
            "upgrade",
            "rodent",
            CHART,
            "--namespace",
            &namespace.name,
            "--wait",
            "--timeout",
            "180s",
        ],
        &values(image, json!({"faults": {"testTimeout": true}})),
    );
    assert!(
        upgraded.status.success(),
        "helm upgrade failed:\n{}",
        text(&upgraded)
    );
    let hang = Duration::from_secs(20);
    let started = Instant::now();
    let timed_out = cluster.helm(&[
        "test",
        "rodent",
        "--namespace",
        &namespace.name,
        "--timeout",
        &format!("{}s", hang.as_secs()),
    ]);
    let took = started.elapsed();
    assert!(
        !timed_out.status.success(),
        "helm test passed with faults.testTimeout:\n{}",
        text(&timed_out)
    );
    assert!(
        took >= hang,
        "helm test ended after {took:?}, before its timeout"
    );
    eprintln!(
        "faults.testTimeout: helm test failed after {took:?}: {}",
        text(&timed_out).trim()
    );
    // The release was never the problem.
    assert_eq!(release.ready_pods().len(), 2);
}

/// An error rate of 1 and a delay on every application request: requests through the Service
/// fail as configured, while the kubelet's probes stay green, no pod leaves the Service's
/// endpoints and none restarts.
pub fn error_rate_keeps_probes_green_and_pods_in_the_endpoints(cluster: &Cluster) {
    let image = &images(cluster).rodent;
    let namespace = Namespace::restricted(cluster, "faults-errors");
    let release = install(
        cluster,
        &namespace,
        "rodent",
        &values(
            image,
            json!({"faults": {"errorRate": 1, "delay": "10ms..50ms"}}),
        ),
    );
    let pods = release.ready_pods();
    assert_eq!(pods.len(), 2);
    let uids: Vec<String> = pods.iter().map(|p| uid(p).to_string()).collect();
    let pod_urls: Vec<String> = pods
        .iter()
        .map(|p| {
            let ip = p["status"]["podIP"]
                .as_str()
                .expect("a running pod has an IP");
            format!("http://{ip}:8080")
        })
        .collect();
    let namespace_name = &release.namespace.name;
    let pod_watch = Watch::start(
        cluster,
        &["pods", "-n", namespace_name, "-l", &release.selector()],
    );
    let service_label = format!("kubernetes.io/service-name={}", release.fullname);
    let slices = Watch::start(
        cluster,
        &["endpointslices", "-n", namespace_name, "-l", &service_label],
    );

    let runtime = cluster.runtime();
    let service = release.service_url();
    let (failed, probes_before) = inside(&runtime, {
        let pod_urls = pod_urls.clone();
        async move {
            let client = kit::client();
            let mut failed = 0;
            for _ in 0..20 {
                let response = client.get(format!("{service}/")).send().await.unwrap();
                if response.status() == 500 {
                    let problem: Value = response.json().await.unwrap();
                    assert_eq!(problem["fault"]["injected"], true, "{problem}");
                    failed += 1;
                }
            }
            let mut probes = Vec::new();
            for url in &pod_urls {
                probes.push(readyz_answered(&client, url).await);
            }
            (failed, probes)
        }
    });
    assert_eq!(
        failed, 20,
        "every application request through the Service fails"
    );

    // Meanwhile, and for a while longer, the probes pass and the endpoints stay ready.
    std::thread::sleep(WATCHED);
    let (probes_after, injected) = inside(&runtime, {
        let pod_urls = pod_urls.clone();
        async move {
            let client = kit::client();
            let mut probes = Vec::new();
            let mut injected = 0.0;
            for url in &pod_urls {
                probes.push(readyz_answered(&client, url).await);
                injected +=
                    metric(&client, url, "rodent_faults_injected_total{kind=\"error\"}").await;
            }
            (probes, injected)
        }
    });
    for (before, after) in probes_before.iter().zip(&probes_after) {
        assert!(
            after - before >= 10.0,
            "the kubelet's readiness probes did not keep passing: {before} then {after}"
        );
    }
    assert!(injected >= 20.0, "{injected} errors injected");
    for event in pod_watch.events() {
        if uids.iter().any(|u| u == uid(&event.object)) {
            assert_eq!(
                pod_ready(&event.object),
                Some(true),
                "{}",
                summary(&event.object)
            );
            assert_eq!(
                restart_count(&event.object),
                0,
                "{}",
                summary(&event.object)
            );
        }
    }
    for event in slices.events() {
        for pod in &uids {
            if let Some(conditions) = endpoint_conditions(&event.object, pod) {
                assert_eq!(
                    conditions["ready"],
                    true,
                    "a faulted pod left the endpoints: {}",
                    summary(&event.object)
                );
            }
        }
    }
    let now = release.ready_pods();
    assert_eq!(now.len(), 2, "both pods are still ready");
}

/// How many `/readyz` requests the pod at `url` has answered 2xx: the kubelet's probes, and
/// this one.
async fn readyz_answered(client: &reqwest::Client, url: &str) -> f64 {
    metric(
        client,
        url,
        "rodent_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"2xx\"}",
    )
    .await
}

async fn metric(client: &reqwest::Client, url: &str, series: &str) -> f64 {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    kit::Metrics::from(text).value(series).unwrap_or(0.0)
}
