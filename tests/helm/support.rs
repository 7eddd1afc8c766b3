//! Finding the tools, rendering the chart with `helm template`, and validating what it renders.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::facts::assert_lifecycle_facts;

pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/rodent");
pub const ALL_FEATURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/helm/rodent/ci/all-features-values.yaml"
);
const CRD_VALIDATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/ci/validate-crds.mjs");

/// Kubernetes versions every rendering is validated against: the oldest the chart supports
/// (Chart.yaml's kubeVersion), one between, and the newest kubernetes-validate bundles.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.34.0", "1.37.0"];

/// Kinds outside the core schemas, checked by the CRD validator instead.
const CRD_KINDS: &[(&str, &str)] = &[
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
];

// ---------------------------------------------------------------------------------------------
// Tools

pub struct Tools {
    helm: PathBuf,
    kubernetes_validate: PathBuf,
    node: PathBuf,
    crd_models: PathBuf,
}

/// The tools, or `None` (with the reason printed) when they are missing outside CI.
pub fn tools() -> Option<&'static Tools> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    match TOOLS.get_or_init(find_tools) {
        Ok(tools) => Some(tools),
        Err(missing) if std::env::var_os("CI").is_some() => {
            panic!(
                "{missing}; CI is set, so this is a failure, not a skip (run scripts/ci/helm.sh)"
            )
        }
        Err(missing) => {
            eprintln!("skipping the Helm chart test: {missing} (scripts/ci/helm.sh installs them)");
            None
        }
    }
}

pub fn find_tools() -> Result<Tools, String> {
    let crd_models = std::env::var_os("RODENT_CRD_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/rodent-ci/crd-models"));
    let models = ["gateway-api", "prometheus-operator"].iter().all(|p| {
        crd_models
            .join("node_modules/@kubernetes-models")
            .join(p)
            .is_dir()
    });
    let found = (
        on_path("helm"),
        on_path("kubernetes-validate"),
        on_path("node"),
    );
    if let (Some(helm), Some(kubernetes_validate), Some(node), true) =
        (found.0.clone(), found.1.clone(), found.2.clone(), models)
    {
        return Ok(Tools {
            helm,
            kubernetes_validate,
            node,
            crd_models,
        });
    }
    let mut missing: Vec<String> = [
        ("helm", found.0.is_none()),
        ("kubernetes-validate", found.1.is_none()),
        ("node", found.2.is_none()),
    ]
    .iter()
    .filter(|(_, absent)| *absent)
    .map(|(name, _)| name.to_string())
    .collect();
    if !models {
        missing.push(format!("the CRD schemas in {}", crd_models.display()));
    }
    Err(format!("not found: {}", missing.join(", ")))
}

pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// The values of one rendering: `-f` files and `--set` / `--set-string` pairs.
#[derive(Default)]
pub struct Values(pub Vec<String>);

impl Values {
    pub fn defaults() -> Self {
        Self::default()
    }

    pub fn all_features() -> Self {
        Self(vec!["-f".into(), ALL_FEATURES.into()])
    }

    /// Whitespace-separated `key=value` pairs, typed by helm (`2` is a number).
    pub fn set(mut self, pairs: &str) -> Self {
        for pair in pairs.split_whitespace() {
            self.0.extend(["--set".into(), pair.into()]);
        }
        self
    }

    /// A values file with this YAML, kept for as long as the test runs.
    pub fn yaml(mut self, yaml: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "rodent-helm-values-{}-{}.yaml",
            std::process::id(),
            unique()
        ));
        std::fs::write(&path, yaml).expect("the temp dir is writable");
        self.0.extend(["-f".into(), path.display().to_string()]);
        self
    }

    /// One `key=value` pair kept a string.
    pub fn set_string(mut self, pair: &str) -> Self {
        self.0.extend(["--set-string".into(), pair.into()]);
        self
    }
}

/// The documents `helm template` rendered, parsed.
pub struct Manifests(pub Vec<Value>);

impl Manifests {
    pub fn all(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|d| d["kind"] == kind).collect()
    }

    pub fn find(&self, kind: &str) -> Option<&Value> {
        let found = self.all(kind);
        assert!(found.len() <= 1, "more than one {kind}");
        found.into_iter().next()
    }

    pub fn one(&self, kind: &str) -> &Value {
        self.find(kind)
            .unwrap_or_else(|| panic!("no {kind} was rendered"))
    }

    pub fn sorted_kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.0.iter().filter_map(|d| d["kind"].as_str()).collect();
        kinds.sort_unstable();
        kinds
    }

    /// The Service in front of the application's port.
    pub fn service(&self) -> &Value {
        let mut services = self
            .all("Service")
            .into_iter()
            .filter(|s| s["metadata"]["labels"]["app.kubernetes.io/component"].is_null());
        let service = services.next().expect("a Service");
        assert!(services.next().is_none(), "more than one main Service");
        service
    }

    /// The Service of the management port, when `managementPort` is set.
    pub fn management_service(&self) -> Option<&Value> {
        let mut services = self
            .all("Service")
            .into_iter()
            .filter(|s| s["metadata"]["labels"]["app.kubernetes.io/component"] == "management");
        let service = services.next();
        assert!(
            services.next().is_none(),
            "more than one management Service"
        );
        service
    }

    pub fn deployment(&self) -> &Value {
        self.one("Deployment")
    }

    pub fn pod_spec(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]
    }

    /// The rodent container of the Deployment.
    pub fn container(&self) -> &Value {
        array(&self.pod_spec()["containers"])
            .iter()
            .find(|c| c["name"] == "rodent")
            .expect("a container named rodent")
    }

    /// One entry of the container's env list, as rendered.
    pub fn env_entry(&self, name: &str) -> Option<&Value> {
        array(&self.container()["env"])
            .iter()
            .find(|e| e["name"] == name)
    }

    /// The container's literal environment (variables from secrets or fields left out).
    pub fn env(&self) -> BTreeMap<String, String> {
        array(&self.container()["env"])
            .iter()
            .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
            .collect()
    }

    pub fn test_pod(&self) -> Option<&Value> {
        let mut pods = self
            .all("Pod")
            .into_iter()
            .filter(|p| p["metadata"]["annotations"]["helm.sh/hook"] == "test");
        let pod = pods.next();
        assert!(pods.next().is_none(), "more than one helm test pod");
        pod
    }

    /// The env file the chart made of `config`, as the pod reads it.
    pub fn env_file(&self) -> Option<&str> {
        let map = self.find("ConfigMap")?;
        map["data"]["rodent.env"].as_str()
    }

    pub fn has_pdb(&self) -> bool {
        self.find("PodDisruptionBudget").is_some()
    }
}

/// A number no other call in this process gets, for file names.
pub fn unique() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub fn array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value} is not a list"))
}

pub fn helm(tools: &Tools, args: &[&str]) -> Result<String, String> {
    let output = Command::new(&tools.helm)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("helm runs");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).expect("helm prints UTF-8"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// `helm template rodent helm/rodent --namespace web` with these values.
pub fn template(tools: &Tools, values: &Values) -> Result<Manifests, String> {
    let mut args = vec!["template", "rodent", CHART, "--namespace", "web"];
    args.extend(values.0.iter().map(String::as_str));
    let yaml = helm(tools, &args)?;
    let mut docs = Vec::new();
    for document in serde_norway::Deserializer::from_str(&yaml) {
        let value = Value::deserialize(document).expect("helm renders valid YAML");
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(Manifests(docs))
}

/// Renders, or fails the test with helm's error.
pub fn render(tools: &Tools, values: Values) -> Manifests {
    template(tools, &values).unwrap_or_else(|e| panic!("helm template {:?} failed:\n{e}", values.0))
}

/// Renders expecting a refusal; returns helm's message.
pub fn refused(tools: &Tools, values: Values) -> String {
    match template(tools, &values) {
        Ok(m) => panic!(
            "helm template {:?} rendered {:?}; expected a refusal",
            values.0,
            m.sorted_kinds()
        ),
        Err(e) => e,
    }
}

/// Renders, validates against every schema and asserts the facts every rendering must have.
pub fn check(tools: &Tools, values: Values) -> Manifests {
    let manifests = render(tools, values);
    validate(tools, &manifests);
    assert_lifecycle_facts(&manifests);
    manifests
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Validates every document: core kinds strictly against each of KUBERNETES_VERSIONS, CRD kinds
/// against their own schemas.
pub fn validate(tools: &Tools, manifests: &Manifests) {
    let (crds, core): (Vec<&Value>, Vec<&Value>) = manifests.0.iter().partition(|d| {
        CRD_KINDS
            .iter()
            .any(|(api, kind)| d["apiVersion"] == *api && d["kind"] == *kind)
    });
    validate_core(tools, &core);
    if !crds.is_empty() {
        validate_crds(tools, &crds);
    }
}

pub fn validate_core(tools: &Tools, docs: &[&Value]) {
    // JSON is YAML. A file, not stdin: kubernetes-validate reads its input once per version.
    let stream: String = docs.iter().map(|d| format!("---\n{d}\n")).collect();
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let file = std::env::temp_dir().join(format!(
        "rodent-helm-{}-{}.yaml",
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, stream).expect("writes the manifests");
    let mut command = Command::new(&tools.kubernetes_validate);
    command.arg("--strict");
    for version in KUBERNETES_VERSIONS {
        command.args(["-k", version]);
    }
    let output = command
        .arg(&file)
        .output()
        .expect("kubernetes-validate runs");
    std::fs::remove_file(&file).expect("removes the manifests");
    let report = String::from_utf8_lossy(&output.stdout);
    // A kind without a schema is only a WARN (exit 0) to kubernetes-validate: count the passes.
    let passed = report
        .lines()
        .filter(|l| l.starts_with("INFO ") && l.contains(" passed for resource "))
        .count();
    let expected = docs.len() * KUBERNETES_VERSIONS.len();
    assert!(
        output.status.success() && passed == expected,
        "kubernetes-validate: {passed} of {expected} (documents x versions) passed:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn validate_crds(tools: &Tools, docs: &[&Value]) {
    let mut command = Command::new(&tools.node);
    command
        .arg(CRD_VALIDATOR)
        .env("RODENT_CRD_MODELS", &tools.crd_models);
    let output = run_with_stdin(&mut command, &json!(docs).to_string());
    let report = String::from_utf8_lossy(&output.stdout);
    let passed = report.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(
        output.status.success() && passed == docs.len(),
        "CRD validation: {passed} of {} passed:\n{report}{}",
        docs.len(),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn run_with_stdin(command: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the validator starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("the validator reads its input");
    child.wait_with_output().expect("the validator finishes")
}
