//! The chart installed for real: `helm install --wait` of `helm/rodent` with an image from
//! [`crate::images`], or the very same rendering applied with only what the chart cannot say
//! changed (see [`crate::scenario::deploy`]).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{CHART, Cluster, Namespace, TempFile};
use crate::images::Image;
use crate::watch::pod_ready;

/// How long a rollout or an install may take on the two-core machine; generous, since it only
/// bounds a failure.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(180);

pub struct Release<'a> {
    pub name: String,
    /// The chart's full name: the Deployment's, the Service's, the PodDisruptionBudget's.
    pub fullname: String,
    pub namespace: &'a Namespace<'a>,
}

/// The values every test starts from: the image under test, and no access log line per request
/// (the load would spend the node's cores on writing them).
pub fn values(image: &Image, extra: Value) -> Value {
    let mut values = json!({
        "image": {"repository": image.repository, "tag": image.tag},
        "env": [{"name": "RODENT_LOG", "value": "info,rodent::access=warn"}],
    });
    merge(&mut values, extra);
    values
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (into, from) => *into = from,
    }
}

fn values_file(values: &Value) -> TempFile {
    // JSON is YAML: helm reads it as a values file.
    TempFile::new("values.json", &values.to_string())
}

/// `helm install NAME ./helm/rodent --wait` into `namespace`.
pub fn install<'a>(
    cluster: &'a Cluster,
    namespace: &'a Namespace<'a>,
    name: &str,
    values: &Value,
) -> Release<'a> {
    let file = values_file(values);
    let timeout = format!("{}s", ROLLOUT_TIMEOUT.as_secs());
    cluster.helm_ok(&[
        "install",
        name,
        CHART,
        "--namespace",
        &namespace.name,
        "--wait",
        "--timeout",
        &timeout,
        "--values",
        file.path(),
    ]);
    Release::new(namespace, name)
}

/// The chart rendered by `helm template` (same chart, same values) and applied with kubectl, with
/// `patch` applied to each container of the Deployment: how a server the chart cannot describe
/// (the baseline, a setting the chart refuses) runs in the very same Deployment, Service,
/// PodDisruptionBudget and security context. Returns once it has rolled out.
pub fn deploy_rendered<'a>(
    cluster: &'a Cluster,
    namespace: &'a Namespace<'a>,
    name: &str,
    values: &Value,
    patch: impl Fn(&mut Value),
) -> Release<'a> {
    let file = values_file(values);
    let rendered = cluster.helm_ok(&[
        "template",
        name,
        CHART,
        "--namespace",
        &namespace.name,
        "--kube-version",
        &cluster.version,
        "--values",
        file.path(),
    ]);
    let mut items = Vec::new();
    for document in serde_norway::Deserializer::from_str(&rendered) {
        let mut object: Value =
            serde::Deserialize::deserialize(document).expect("helm renders YAML documents");
        if object.is_null() || object["metadata"]["annotations"]["helm.sh/hook"].is_string() {
            continue;
        }
        if object["kind"] == "Deployment" {
            for container in object["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .expect("the Deployment has containers")
            {
                patch(container);
            }
        }
        items.push(object);
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let out = cluster.with_input(
        &["apply", "--namespace", &namespace.name, "-f", "-"],
        &list.to_string(),
    );
    assert!(
        out.status.success(),
        "the rendered chart cannot be applied: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let release = Release::new(namespace, name);
    release.wait_rolled_out();
    release
}

impl<'a> Release<'a> {
    fn new(namespace: &'a Namespace<'a>, name: &str) -> Self {
        // The chart's rodent.fullname: the release name alone when it holds the chart's name.
        let fullname = if name.contains("rodent") {
            name.to_string()
        } else {
            format!("{name}-rodent")
        };
        Self {
            name: name.to_string(),
            fullname,
            namespace,
        }
    }

    /// The serving pods (the `helm test` pod has no app.kubernetes.io/name label).
    pub fn selector(&self) -> String {
        format!(
            "app.kubernetes.io/name=rodent,app.kubernetes.io/instance={}",
            self.name
        )
    }

    pub fn deployment(&self) -> String {
        format!("deployment/{}", self.fullname)
    }

    pub fn pods(&self) -> Vec<Value> {
        let list = self
            .namespace
            .json(&["get", "pods", "-l", &self.selector()]);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// The pods that are Ready and not being deleted, sorted by name.
    pub fn ready_pods(&self) -> Vec<Value> {
        let mut pods: Vec<Value> = self
            .pods()
            .into_iter()
            .filter(|p| {
                pod_ready(p) == Some(true) && !p["metadata"]["deletionTimestamp"].is_string()
            })
            .collect();
        pods.sort_by_key(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        pods
    }

    /// The Service's port as kube-proxy names it in its rules: `namespace/name:http`.
    pub fn service_port(&self) -> String {
        format!("{}/{}:http", self.namespace.name, self.fullname)
    }

    /// Blocks until exactly `n` pods are left and all of them are Ready and not terminating.
    pub fn wait_for_pods(&self, n: usize) {
        let deadline = Instant::now() + ROLLOUT_TIMEOUT;
        loop {
            let pods = self.pods();
            if pods.len() == n && self.ready_pods().len() == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not settle at {n} ready pods within {ROLLOUT_TIMEOUT:?} ({} now)",
                self.deployment(),
                pods.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn service_url(&self) -> String {
        let service = self.namespace.json(&["get", "service", &self.fullname]);
        let ip = service["spec"]["clusterIP"]
            .as_str()
            .expect("the Service has a cluster IP");
        let port = service["spec"]["ports"][0]["port"]
            .as_u64()
            .expect("the Service has a port");
        format!("http://{ip}:{port}")
    }

    /// `kubectl rollout status`, then until every pod left belongs to the newest ReplicaSet and
    /// none is still terminating: the rollout is over only when the old pods have exited.
    pub fn wait_rolled_out(&self) {
        let timeout = format!("{}s", ROLLOUT_TIMEOUT.as_secs());
        self.namespace.run(&[
            "rollout",
            "status",
            &self.deployment(),
            "--timeout",
            &timeout,
        ]);
        let deadline = Instant::now() + ROLLOUT_TIMEOUT;
        loop {
            let deployment = self.namespace.json(&["get", &self.deployment()]);
            let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
            let pods = self.pods();
            let hashes: std::collections::BTreeSet<&str> = pods
                .iter()
                .filter_map(|p| p["metadata"]["labels"]["pod-template-hash"].as_str())
                .collect();
            let settled = pods.len() == replicas
                && hashes.len() == 1
                && pods.iter().all(|p| {
                    pod_ready(p) == Some(true) && !p["metadata"]["deletionTimestamp"].is_string()
                });
            if settled {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the rollout of {} did not settle within {ROLLOUT_TIMEOUT:?}: {} pods, {} \
                 templates",
                self.deployment(),
                pods.len(),
                hashes.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
