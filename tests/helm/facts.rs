//! What every rendering the chart accepts must say, whatever the values.

use std::time::Duration;

use rodent::config::parse_duration;
use serde_json::{Value, json};

use crate::support::{Manifests, array};

pub fn whole(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is not a whole number"))
}

pub fn duration(raw: &str) -> Duration {
    parse_duration(raw).unwrap_or_else(|e| panic!("{raw:?} is not a rodent duration: {e}"))
}

/// rodent's safety margin, as the contract states it: a tenth of the grace, within 100ms..5s.
pub fn margin(grace: Duration) -> Duration {
    (grace / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// Whether every label of `selector` is on `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .expect("matchLabels is a map")
        .iter()
        .all(|(k, v)| labels[k] == *v)
}

pub fn assert_lifecycle_facts(m: &Manifests) {
    assert_probes(m);
    assert_timing(m);
    assert_security(m);
    assert_no_pid_file_and_read_only_volumes(m);
    assert_rollout_and_selection(m);
    assert_test_pod(m);
}

/// httpGet probes on the named port, which is the port rodent serves its probes on (the
/// management port when there is one), at rodent's paths; or, with `grpc:` probes for startup
/// and readiness, the number of that port (plaintext: the kubelet's gRPC probes speak no TLS),
/// and liveness still on `/healthz` (gRPC health reports readiness, NOT_SERVING while draining).
pub fn assert_probes(m: &Manifests) {
    let container = m.container();
    let port = |name: &str| {
        array(&container["ports"])
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| whole(&p["containerPort"]).to_string())
    };
    let env = m.env();
    assert_eq!(port("http").as_ref(), env.get("RODENT_PORT"));
    assert_eq!(
        port("management").as_ref(),
        env.get("RODENT_MANAGEMENT_PORT")
    );
    let probed = if port("management").is_some() {
        "management"
    } else {
        "http"
    };
    // The main port speaks HTTPS with a certificate; the management port never does.
    let scheme = match (env.contains_key("RODENT_TLS_CERT"), probed) {
        (true, "http") => "HTTPS",
        _ => "HTTP",
    };
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let grpc = &container[probe]["grpc"];
        if grpc.is_null() {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{probe} path");
            assert_eq!(container[probe]["httpGet"]["port"], probed, "{probe} port");
            assert_eq!(
                container[probe]["httpGet"]["scheme"], scheme,
                "{probe} scheme"
            );
        } else {
            assert_ne!(
                probe, "livenessProbe",
                "NOT_SERVING while draining would restart it"
            );
            assert!(container[probe]["httpGet"].is_null(), "{probe}: one action");
            let number = port(probed).expect("the probed port is declared");
            assert_eq!(whole(&grpc["port"]).to_string(), number, "{probe} port");
        }
    }
}

/// One grace budget, rodent's rule, and a readiness probe that notices inside the drain.
pub fn assert_timing(m: &Manifests) {
    let env = m.env();
    let grace = duration(&env["RODENT_SHUTDOWN_GRACE"]);
    let drain = duration(&env["RODENT_DRAIN_DELAY"]);
    let timeout = duration(&env["RODENT_REQUEST_TIMEOUT"]);
    let container = m.container();
    let sleep = match &container["lifecycle"]["preStop"] {
        Value::Null => Duration::ZERO,
        hook => {
            let actions: Vec<&String> = hook.as_object().expect("a hook").keys().collect();
            assert_eq!(actions, ["sleep"], "the only hook the chart adds is sleep");
            Duration::from_secs(whole(&hook["sleep"]["seconds"]))
        }
    };
    assert_eq!(
        Duration::from_secs(whole(&m.pod_spec()["terminationGracePeriodSeconds"])),
        grace + sleep,
        "terminationGracePeriodSeconds is RODENT_SHUTDOWN_GRACE plus the preStop sleep"
    );
    assert!(
        drain + timeout <= grace - margin(grace),
        "drain {drain:?} + timeout {timeout:?} must fit in grace {grace:?} - {:?}",
        margin(grace)
    );
    let readiness = &container["readinessProbe"];
    let noticed = Duration::from_secs(
        whole(&readiness["periodSeconds"]) * whole(&readiness["failureThreshold"]),
    );
    assert!(
        noticed < drain + sleep,
        "a failing /readyz ({noticed:?}) must be seen inside the drain window"
    );
    // And rodent itself accepts the rendered environment, `OTEL_*` and the env file made of
    // `config` included: it would exit 78 otherwise. (The TLS Secret is the cluster's: its
    // files are not there to read.)
    let mut env = env.clone();
    env.remove("RODENT_TLS_CERT");
    env.remove("RODENT_TLS_KEY");
    let env_file = m.env_file().map(|contents| {
        let path = std::env::temp_dir().join(format!(
            "rodent-helm-env-{}-{}",
            std::process::id(),
            crate::support::unique()
        ));
        std::fs::write(&path, contents).expect("the temp dir is writable");
        env.insert("RODENT_ENV_FILE".into(), path.display().to_string());
        path
    });
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_rodent"))
        .args(["config", "check"])
        .env_clear()
        .envs(&env)
        .output()
        .expect("rodent runs");
    if let Some(path) = env_file {
        let _ = std::fs::remove_file(path);
    }
    assert!(
        checked.status.success(),
        "rodent refuses the rendered environment: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

pub fn assert_security(m: &Manifests) {
    let pod = m.pod_spec();
    let pod_sc = &pod["securityContext"];
    assert_eq!(pod_sc["runAsNonRoot"], true);
    assert_eq!(pod_sc["runAsUser"], 65532);
    assert_eq!(pod_sc["runAsGroup"], 65532);
    assert_eq!(pod_sc["seccompProfile"]["type"], "RuntimeDefault");
    let container = m.container();
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["runAsGroup"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(
        pod["enableServiceLinks"], false,
        "a Service named rodent would inject RODENT_PORT=tcp://…"
    );
    if let Some(account) = m.find("ServiceAccount") {
        assert_eq!(account["automountServiceAccountToken"], false);
        assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    }
    for resource in ["cpu", "memory"] {
        assert!(
            container["resources"]["requests"][resource].is_string(),
            "a {resource} request is set"
        );
    }
}

/// The image's defaults: no PID file, so the read-only root filesystem needs no volume (`rodent
/// status` inside the pod finds rodent as PID 1). Set explicitly, for images built on rodent
/// whose platform default is a path. The only volumes are the env file made of `config` and the
/// TLS Secret, both mounted read-only as whole directories (the kubelet never updates a `subPath`
/// mount), where the variables that name their files point.
pub fn assert_no_pid_file_and_read_only_volumes(m: &Manifests) {
    assert_eq!(
        m.env_entry("RODENT_PID_FILE"),
        Some(&json!({"name": "RODENT_PID_FILE", "value": ""})),
        "the PID file is explicitly off"
    );
    let env = m.env();
    let container = m.container();
    let mounts = match &container["volumeMounts"] {
        Value::Null => Vec::new(),
        mounts => array(mounts).clone(),
    };
    let volumes = match &m.pod_spec()["volumes"] {
        Value::Null => Vec::new(),
        volumes => array(volumes).clone(),
    };
    let expected: Vec<(&str, &str)> = [
        ("config", "RODENT_ENV_FILE"),
        ("tls", "RODENT_TLS_CERT"),
        ("tls", "RODENT_TLS_KEY"),
    ]
    .into_iter()
    .filter(|(_, variable)| env.contains_key(*variable))
    .collect();
    assert_eq!(mounts.len(), volumes.len(), "{mounts:?} {volumes:?}");
    for mount in &mounts {
        assert_eq!(mount["readOnly"], true, "{mount}");
        assert!(mount["subPath"].is_null(), "no subPath: {mount}");
        let name = mount["name"].as_str().expect("a name");
        let volume = volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"));
        let path = mount["mountPath"].as_str().expect("a path");
        let pointing: Vec<_> = expected.iter().filter(|(v, _)| *v == name).collect();
        assert!(!pointing.is_empty(), "an unexpected volume: {volume}");
        for (_, variable) in pointing {
            assert!(
                env[*variable].starts_with(&format!("{path}/")),
                "{variable}={} is not in {path}",
                env[*variable]
            );
        }
        match name {
            "config" => assert!(volume["configMap"]["name"].is_string(), "{volume}"),
            _ => assert!(volume["secret"]["secretName"].is_string(), "{volume}"),
        }
    }
}

/// Rollouts never drop capacity; Service and PDB select exactly the Deployment's pods; a PDB
/// exists exactly when at least two pods run.
pub fn assert_rollout_and_selection(m: &Manifests) {
    let deployment = m.deployment();
    let strategy = &deployment["spec"]["strategy"];
    assert_eq!(strategy["type"], "RollingUpdate");
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 0);

    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert!(selects(
        selector,
        &deployment["spec"]["template"]["metadata"]["labels"]
    ));
    let service = m.service();
    assert_eq!(&service["spec"]["selector"], selector);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");

    let min_replicas = match m.find("HorizontalPodAutoscaler") {
        Some(hpa) => {
            assert!(
                deployment["spec"]["replicas"].is_null(),
                "with an HPA the Deployment leaves the count to it"
            );
            whole(&hpa["spec"]["minReplicas"])
        }
        None => whole(&deployment["spec"]["replicas"]),
    };
    if let Some(pdb) = m.find("PodDisruptionBudget") {
        assert!(
            min_replicas > 1,
            "a PDB over {min_replicas} pod blocks node drains"
        );
        assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    }
}

/// The helm test pod: rodent's probe client against the Service, same image and security
/// context, and not a pod the Service routes to.
pub fn assert_test_pod(m: &Manifests) {
    let Some(test) = m.test_pod() else { return };
    let selector = &m.deployment()["spec"]["selector"]["matchLabels"];
    assert!(
        !selects(selector, &test["metadata"]["labels"]),
        "the Service must not route traffic to the test pod"
    );
    let service = m.management_service().unwrap_or_else(|| m.service());
    let scheme = match (
        m.management_service(),
        m.env().contains_key("RODENT_TLS_CERT"),
    ) {
        (None, true) => "https",
        _ => "http",
    };
    let url = format!(
        "{scheme}://{}:{}",
        service["metadata"]["name"].as_str().expect("a name"),
        service["spec"]["ports"][0]["port"]
    );
    let probe = &test["spec"]["containers"][0];
    assert_eq!(probe["args"], json!(["probe", "ready", "--url", url]));
    assert_eq!(probe["image"], m.container()["image"]);
    assert_eq!(probe["securityContext"], m.container()["securityContext"]);
    assert_eq!(
        test["spec"]["securityContext"],
        m.pod_spec()["securityContext"]
    );
    assert_eq!(test["spec"]["automountServiceAccountToken"], false);
    assert_eq!(test["spec"]["restartPolicy"], "Never");
}
