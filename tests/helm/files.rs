//! `config` (a ConfigMap mounted as rodent's watched env file) and `tls.secretName` (a
//! certificate Secret, HTTPS probes): how they render, and what is refused.

use std::collections::BTreeMap;

use serde_json::json;

use crate::support::{Values, array, check, refused, render, tools};

/// Values with every character the env file gives a meaning to, and numbers and booleans as YAML
/// writes them.
const CONFIG: &str = r#"
config:
  RODENT_LOG: "info,rodent::access=warn"
  RODENT_BODY_LIMIT: 2097152
  RODENT_IDLE_TIMEOUT: 90s
  OTEL_SERVICE_NAME: "shop \"front\" $HOME \\ # not a comment"
  NOTES_GREETING: "two\nlines"
  NOTES_ENABLED: true
  NOTES_RATIO: 0.25
"#;

#[test]
fn config_becomes_a_watched_env_file_that_reads_back_as_given() {
    let Some(tools) = tools() else { return };
    let m = check(tools, Values::defaults().yaml(CONFIG));
    let map = m.one("ConfigMap");
    assert_eq!(map["metadata"]["name"], "rodent-config");
    let env = m.env();
    assert_eq!(env["RODENT_ENV_FILE"], "/etc/rodent/config/rodent.env");

    // The file rodent reads sets exactly the values given (read with rodent's own parser).
    let file = m.env_file().expect("an env file");
    let read: BTreeMap<String, String> = dotenvy::from_read_iter(file.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}:\n{file}"));
    let expected: BTreeMap<String, String> = [
        ("RODENT_LOG", "info,rodent::access=warn"),
        ("RODENT_BODY_LIMIT", "2097152"),
        ("RODENT_IDLE_TIMEOUT", "90s"),
        (
            "OTEL_SERVICE_NAME",
            "shop \"front\" $HOME \\ # not a comment",
        ),
        ("NOTES_GREETING", "two\nlines"),
        ("NOTES_ENABLED", "true"),
        ("NOTES_RATIO", "0.25"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(read, expected, "{file}");

    // Mounted whole, so the kubelet's updates reach the pod; and an edit rolls no pod: nothing
    // in the pod template follows the ConfigMap's content.
    let mount = &array(&m.container()["volumeMounts"])[0];
    assert_eq!(mount["mountPath"], "/etc/rodent/config");
    let volume = &array(&m.pod_spec()["volumes"])[0];
    assert_eq!(volume["configMap"]["name"], "rodent-config");
    let annotations = &m.deployment()["spec"]["template"]["metadata"]["annotations"];
    assert!(
        annotations.is_null() || !annotations.to_string().contains("config"),
        "{annotations}"
    );

    let none = render(tools, Values::defaults());
    assert!(none.find("ConfigMap").is_none());
    assert!(!none.env().contains_key("RODENT_ENV_FILE"));
}

#[test]
fn a_certificate_secret_serves_https_and_the_probes_follow() {
    let Some(tools) = tools() else { return };
    let values = || {
        Values::defaults().set("tls.secretName=rodent-serving metrics.serviceMonitor.enabled=true")
    };
    let m = check(tools, values());
    let env = m.env();
    assert_eq!(env["RODENT_TLS_CERT"], "/etc/rodent/tls/tls.crt");
    assert_eq!(env["RODENT_TLS_KEY"], "/etc/rodent/tls/tls.key");
    let volume = &array(&m.pod_spec()["volumes"])[0];
    assert_eq!(volume["secret"]["secretName"], "rodent-serving");
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(m.container()[probe]["httpGet"]["scheme"], "HTTPS");
    }
    let test = m.test_pod().expect("a helm test pod");
    let probe = &test["spec"]["containers"][0];
    assert_eq!(
        probe["args"],
        json!(["probe", "ready", "--url", "https://rodent:80"])
    );
    assert_eq!(probe["env"][0]["value"], "/etc/rodent/tls/tls.crt");
    assert_eq!(
        test["spec"]["volumes"][0]["secret"]["secretName"],
        "rodent-serving"
    );
    let endpoint = &m.one("ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"], "https");

    // With a management port, the probes, the test and the scrape stay on its plain HTTP.
    let m = check(tools, values().set("managementPort=9090"));
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(m.container()[probe]["httpGet"]["scheme"], "HTTP");
        assert_eq!(m.container()[probe]["httpGet"]["port"], "management");
    }
    assert!(m.test_pod().unwrap()["spec"]["volumes"].is_null());
    assert_eq!(
        m.one("ServiceMonitor")["spec"]["endpoints"][0]["scheme"],
        "http"
    );

    // Both at once: two read-only volumes.
    let m = check(tools, values().yaml(CONFIG));
    assert_eq!(array(&m.pod_spec()["volumes"]).len(), 2);
}

#[test]
fn config_and_tls_refuse_what_the_chart_owns_and_what_a_file_cannot_hold() {
    let Some(tools) = tools() else { return };
    for name in [
        "RODENT_PORT",
        "RODENT_ENV_FILE",
        "RODENT_TLS_CERT",
        "RODENT_DRAIN_DELAY",
    ] {
        let error = refused(tools, Values::defaults().set(&format!("config.{name}=x")));
        assert!(
            error.contains(&format!("config: {name} is set by the chart")),
            "{name}:\n{error}"
        );
    }
    let error = refused(
        tools,
        Values::defaults().set("env[0].name=RODENT_TLS_KEY env[0].value=/x"),
    );
    assert!(
        error.contains("env: RODENT_TLS_KEY is set by the chart"),
        "{error}"
    );
    for (yaml, why) in [
        ("config:\n  RODENT_LOG: [debug]\n", "config.RODENT_LOG"),
        ("config:\n  \"not a name\": x\n", "config"),
        ("tls:\n  secretName: Not_A_Name\n", "tls.secretName"),
        ("tls:\n  secret: x\n  secretName: \"\"\n", "tls"),
    ] {
        let error = refused(tools, Values::defaults().yaml(yaml));
        assert!(error.contains(why), "{yaml}:\n{error}");
    }
    let error = refused(
        tools,
        Values::defaults().yaml("config:\n  NOTES_X: \"a\\rb\"\n"),
    );
    assert!(
        error.contains("config.NOTES_X: a carriage return"),
        "{error}"
    );
}
