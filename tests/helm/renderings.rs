//! Renderings that must succeed: defaults, every optional feature, and replica and grace
//! combinations. Each validates against the schemas and keeps every fact in `facts`.

use serde_json::json;

use crate::facts::{assert_lifecycle_facts, selects};
use crate::support::{Values, array, check, refused, render, tools, validate};

#[test]
fn default_values_give_a_valid_secure_deployment() {
    let Some(tools) = tools() else { return };
    let m = check(tools, Values::defaults());
    assert_eq!(
        m.sorted_kinds(),
        [
            "Deployment",
            "Pod",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount"
        ],
        "optional features are off by default"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(m.container()["image"], format!("rodent:{version}"));
    assert_eq!(m.deployment()["spec"]["replicas"], 2);
    assert!(m.container()["lifecycle"].is_null(), "no preStop hook");
    let env = m.env();
    assert_eq!(env["RODENT_SHUTDOWN_GRACE"], "30s");
    assert_eq!(env["RODENT_DRAIN_DELAY"], "5s");
    assert_eq!(env["RODENT_REQUEST_TIMEOUT"], "20s");
    assert_eq!(env["RODENT_PORT"], "8080");
    assert_eq!(m.pod_spec()["terminationGracePeriodSeconds"], 30);
    assert!(
        m.env_entry("RODENT_ADMIN_TOKEN").is_none(),
        "no admin token: the admin routes are off"
    );
    assert_eq!(m.one("PodDisruptionBudget")["spec"]["maxUnavailable"], 1);
    assert_eq!(m.service()["spec"]["type"], "ClusterIP");
    assert!(m.test_pod().is_some(), "a helm test pod");
}

#[test]
fn helm_test_pod_probes_the_service_from_the_same_image() {
    let Some(tools) = tools() else { return };
    let m = render(tools, Values::defaults().set("service.port=8081"));
    let test = m.test_pod().expect("a helm test pod");
    assert_eq!(
        test["spec"]["containers"][0]["args"],
        json!(["probe", "ready", "--url", "http://rodent:8081"])
    );
    let deletion = test["metadata"]["annotations"]["helm.sh/hook-delete-policy"].as_str();
    assert!(deletion.is_some_and(|p| p.contains("before-hook-creation")));
    assert_lifecycle_facts(&m);
    let off = render(tools, Values::defaults().set("helmTest.enabled=false"));
    assert!(off.all("Pod").is_empty());
}

#[test]
fn max_connections_is_rodents_default_unless_set() {
    let Some(tools) = tools() else { return };
    let defaults = check(tools, Values::defaults());
    assert!(
        defaults.env_entry("RODENT_MAX_CONNECTIONS").is_none(),
        "rodent's own default, which fits the default memory limit"
    );
    let m = check(tools, Values::defaults().set("maxConnections=4096"));
    assert_eq!(m.env()["RODENT_MAX_CONNECTIONS"], "4096");
}

#[test]
fn faults_and_backends_become_the_reference_services_variables() {
    let Some(tools) = tools() else { return };
    let none = check(tools, Values::defaults());
    for name in [
        "RODENT_FAULT_ERROR_RATE",
        "RODENT_FAULT_DELAY",
        "RODENT_FAULT_UNREADY",
        "RODENT_FAULT_UNHEALTHY",
        "RODENT_BACKENDS",
    ] {
        assert!(none.env_entry(name).is_none(), "{name} is off by default");
    }
    // `--set` gives an error rate as a string, a values file as a number: both are taken.
    let values = Values::defaults()
        .set("faults.errorRate=0.25 faults.delay=100ms..2s faults.unready=true")
        .set("faults.unhealthy=true backends[0]=http://backend-rodent")
        .set("backends[1]=https://other.example/api/echo");
    let m = check(tools, values);
    let env = m.env();
    assert_eq!(env["RODENT_FAULT_ERROR_RATE"], "0.25");
    assert_eq!(env["RODENT_FAULT_DELAY"], "100ms..2s");
    assert_eq!(env["RODENT_FAULT_UNREADY"], "true");
    assert_eq!(env["RODENT_FAULT_UNHEALTHY"], "true");
    assert_eq!(
        env["RODENT_BACKENDS"],
        "http://backend-rodent,https://other.example/api/echo"
    );
    let whole = check(tools, Values::defaults().set("faults.errorRate=1"));
    assert_eq!(whole.env()["RODENT_FAULT_ERROR_RATE"], "1");
}

#[test]
fn faults_make_helm_test_fail_or_hang() {
    let Some(tools) = tools() else { return };
    // Rendered and validated, but not held to the usual test pod's facts: it is meant to fail.
    let failing = render(tools, Values::defaults().set("faults.testFail=true"));
    validate(tools, &failing);
    let test = failing.test_pod().expect("a helm test pod");
    let args = &test["spec"]["containers"][0]["args"];
    assert_eq!(
        args,
        &json!(["probe", "ready", "--url", "http://127.0.0.1:1"])
    );
    assert!(test["spec"]["activeDeadlineSeconds"].is_null());

    let hanging = render(tools, Values::defaults().set("faults.testTimeout=true"));
    validate(tools, &hanging);
    let test = hanging.test_pod().expect("a helm test pod");
    let container = &test["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["serve"]));
    assert_eq!(
        container["env"],
        json!([{ "name": "RODENT_PID_FILE", "value": "" }])
    );
    // It never ends by itself, but it does not linger past an hour either.
    assert_eq!(test["spec"]["activeDeadlineSeconds"], 3600);
    // The service itself is unchanged by either.
    assert_eq!(hanging.env(), check(tools, Values::defaults()).env());
}

#[test]
fn every_optional_feature_renders_valid_manifests() {
    let Some(tools) = tools() else { return };
    let m = check(tools, Values::all_features());
    assert_eq!(
        m.sorted_kinds(),
        [
            "ConfigMap",
            "Deployment",
            "HTTPRoute",
            "HorizontalPodAutoscaler",
            "Ingress",
            "NetworkPolicy",
            "Pod",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    );
    let deployment = m.deployment();
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let service = m.service();
    let service_name = &service["metadata"]["name"];

    // A preStop sleep: 45s for rodent plus 5s before SIGTERM.
    assert_eq!(m.pod_spec()["terminationGracePeriodSeconds"], 50);
    assert_eq!(m.env()["RODENT_SHUTDOWN_GRACE"], "45s");
    assert_eq!(m.container()["lifecycle"]["preStop"]["sleep"]["seconds"], 5);

    // The HPA owns the count; the PDB follows its minimum.
    let hpa = m.one("HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    assert_eq!(m.one("PodDisruptionBudget")["spec"]["minAvailable"], "50%");

    // The admin token comes from the Secret the chart made, and a new token rolls the pods.
    let secret = m.one("Secret");
    let token = &m.env_entry("RODENT_ADMIN_TOKEN").expect("a token")["valueFrom"]["secretKeyRef"];
    assert_eq!(token["name"], secret["metadata"]["name"]);
    assert!(secret["data"][token["key"].as_str().expect("a key")].is_string());
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations["checksum/admin-token"].is_string());
    // User variables and envFrom are passed through.
    assert_eq!(m.env()["RODENT_LOG"], "debug");
    assert_eq!(
        m.container()["envFrom"][0]["configMapRef"]["name"],
        "rodent-extra"
    );

    // The ServiceMonitor scrapes /metrics on the named port of this Service.
    let monitor = m.one("ServiceMonitor");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    assert_eq!(endpoint["port"], "http");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["web"])
    );

    // The NetworkPolicy opens only the http port, and lets the helm test pod in.
    let policy = m.one("NetworkPolicy");
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], selector);
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let rule = &policy["spec"]["ingress"][0];
    assert_eq!(rule["ports"], json!([{"port": "http", "protocol": "TCP"}]));
    let test_labels = &m.test_pod().expect("a helm test pod")["metadata"]["labels"];
    let test_pod_allowed = array(&rule["from"]).iter().any(|peer| {
        peer["podSelector"]["matchLabels"].is_object()
            && selects(&peer["podSelector"]["matchLabels"], test_labels)
    });
    assert!(test_pod_allowed, "the helm test pod may connect");

    // Ingress and HTTPRoute send traffic to the Service.
    let ingress = m.one("Ingress");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(&backend["name"], service_name);
    assert_eq!(backend["port"]["name"], "http");
    let route = m.one("HTTPRoute");
    let backend = &route["spec"]["rules"][0]["backendRefs"][0];
    assert_eq!(&backend["name"], service_name);
    assert_eq!(backend["port"], service["spec"]["ports"][0]["port"]);

    // Topology spread counts this rollout's pods of this Deployment.
    for constraint in array(&m.pod_spec()["topologySpreadConstraints"]) {
        assert_eq!(&constraint["labelSelector"]["matchLabels"], selector);
        assert_eq!(constraint["matchLabelKeys"], json!(["pod-template-hash"]));
    }

    // The CRD schemas allow unknown fields: check these two kinds' spec keys here.
    for (doc, known) in [
        (monitor, &["selector", "namespaceSelector", "endpoints"][..]),
        (route, &["parentRefs", "hostnames", "rules"][..]),
    ] {
        for key in doc["spec"].as_object().expect("a spec").keys() {
            assert!(
                known.contains(&key.as_str()),
                "{} has spec.{key}",
                doc["kind"]
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replica and grace combinations

#[test]
fn one_replica_has_no_disruption_budget() {
    let Some(tools) = tools() else { return };
    assert!(!check(tools, Values::defaults().set("replicaCount=1")).has_pdb());
}

#[test]
fn three_replicas_with_a_long_grace() {
    let Some(tools) = tools() else { return };
    // The margin is capped at 5s: 10s + 100s fits 120s - 5s.
    let m = check(
        tools,
        Values::defaults().set(
            "replicaCount=3 shutdown.gracePeriodSeconds=120 \
             shutdown.drainDelay=10s shutdown.requestTimeout=100s",
        ),
    );
    assert!(m.has_pdb());
    assert_eq!(m.pod_spec()["terminationGracePeriodSeconds"], 120);
    assert_eq!(m.env()["RODENT_SHUTDOWN_GRACE"], "120s");
}

#[test]
fn two_replicas_with_a_short_grace_that_fits_exactly() {
    let Some(tools) = tools() else { return };
    // 2s + 2500ms = 5s - 500ms: the boundary is allowed, as in rodent.
    let m = check(
        tools,
        Values::defaults().set(
            "shutdown.gracePeriodSeconds=5 shutdown.drainDelay=2s shutdown.requestTimeout=2500ms",
        ),
    );
    assert!(m.has_pdb());
    assert_eq!(m.env()["RODENT_REQUEST_TIMEOUT"], "2500ms");
}

#[test]
fn autoscaling_decides_the_budget_by_its_minimum() {
    let Some(tools) = tools() else { return };
    let autoscaled = Values::defaults().set("autoscaling.enabled=true");
    let one = check(
        tools,
        autoscaled.set("replicaCount=5 autoscaling.minReplicas=1"),
    );
    assert!(
        !one.has_pdb(),
        "minReplicas 1: no budget, whatever replicaCount says"
    );
    let autoscaled = Values::defaults().set("autoscaling.enabled=true");
    let two = check(
        tools,
        autoscaled.set("replicaCount=1 autoscaling.minReplicas=2"),
    );
    assert!(two.has_pdb());
    assert_eq!(two.one("HorizontalPodAutoscaler")["spec"]["minReplicas"], 2);
}

#[test]
fn disabled_budget_stays_off() {
    let Some(tools) = tools() else { return };
    let values = Values::defaults().set("replicaCount=3 podDisruptionBudget.enabled=false");
    assert!(!check(tools, values).has_pdb());
}

#[test]
fn prestop_sleep_is_added_to_the_termination_grace() {
    let Some(tools) = tools() else { return };
    // All of the routing delay in the hook, none in the app.
    let values = Values::defaults()
        .set("shutdown.preStopSleepSeconds=10")
        .set_string("shutdown.drainDelay=0");
    let m = check(tools, values);
    assert_eq!(m.pod_spec()["terminationGracePeriodSeconds"], 40);
    assert_eq!(m.env()["RODENT_SHUTDOWN_GRACE"], "30s");
    assert_eq!(m.env()["RODENT_DRAIN_DELAY"], "0s");
    assert_eq!(
        m.container()["lifecycle"]["preStop"]["sleep"]["seconds"],
        10
    );
}

#[test]
fn admin_token_from_an_existing_secret() {
    let Some(tools) = tools() else { return };
    let values =
        Values::defaults().set("adminToken.existingSecret=ops adminToken.secretKey=rodent");
    let m = check(tools, values);
    assert!(
        m.find("Secret").is_none(),
        "no Secret made for an existing one"
    );
    assert_eq!(
        m.env_entry("RODENT_ADMIN_TOKEN").expect("a token")["valueFrom"]["secretKeyRef"],
        json!({"name": "ops", "key": "rodent"})
    );
}

#[test]
fn a_management_port_takes_the_probes_the_scrapes_and_the_test() {
    let Some(tools) = tools() else { return };
    let m = check(tools, Values::all_features().set("managementPort=9090"));
    assert_eq!(m.env()["RODENT_MANAGEMENT_PORT"], "9090");
    // The facts hold with the probes and the test pod on the management port.
    assert_lifecycle_facts(&m);

    // The main Service, and what routes to it, carry the application's port alone.
    let service = m.service();
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(array(&service["spec"]["ports"]).len(), 1);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");

    // The management Service: in-cluster only, on the management port of the same pods.
    let management = m.management_service().expect("a management Service");
    assert_eq!(management["spec"]["type"], "ClusterIP");
    assert_eq!(
        management["spec"]["selector"],
        m.deployment()["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        management["spec"]["ports"],
        json!([{"name": "management", "port": 9090, "targetPort": "management", "protocol": "TCP"}])
    );

    // The ServiceMonitor scrapes that Service, and not the main one.
    let monitor = m.one("ServiceMonitor");
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    assert!(selects(selector, &management["metadata"]["labels"]));
    assert!(!selects(selector, &service["metadata"]["labels"]));
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "management");

    // The NetworkPolicy lets the probes and the scrapes in.
    let rule = &m.one("NetworkPolicy")["spec"]["ingress"][0];
    assert_eq!(
        rule["ports"],
        json!([
            {"port": "http", "protocol": "TCP"},
            {"port": "management", "protocol": "TCP"}
        ])
    );
    let test = m.test_pod().expect("a helm test pod");
    assert_eq!(
        test["spec"]["containers"][0]["args"][3],
        "http://rodent-management:9090"
    );

    // Unset, everything stays on the application's port.
    let m = check(tools, Values::all_features());
    assert!(m.management_service().is_none());
    assert!(m.env_entry("RODENT_MANAGEMENT_PORT").is_none());
    assert_eq!(m.container()["readinessProbe"]["httpGet"]["port"], "http");
}

#[test]
fn grpc_probes_call_the_health_service_on_the_port_the_probes_answer_on() {
    let Some(tools) = tools() else { return };
    // Kubernetes' gRPC probe speaks plaintext: not to a port that serves TLS.
    let refusal = refused(
        tools,
        Values::all_features().set("probes.grpc.enabled=true"),
    );
    assert!(refusal.contains("probes.grpc"), "{refusal}");
    let m = check(
        tools,
        Values::all_features()
            .set("probes.grpc.enabled=true")
            .set("tls.secretName="),
    );
    let container = m.container();
    for probe in ["startupProbe", "readinessProbe"] {
        assert_eq!(
            container[probe]["grpc"],
            json!({"port": 8080, "service": ""}),
            "{probe}"
        );
    }
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_lifecycle_facts(&m);

    // With a management port they call it: it serves the health service too, in plaintext.
    let m = check(
        tools,
        Values::all_features()
            .set("probes.grpc.enabled=true")
            .set("managementPort=9090")
            .set("probes.grpc.service=rodent.echo.v1.Echo"),
    );
    assert_eq!(
        m.container()["readinessProbe"]["grpc"],
        json!({"port": 9090, "service": "rodent.echo.v1.Echo"})
    );
    assert_lifecycle_facts(&m);
}
