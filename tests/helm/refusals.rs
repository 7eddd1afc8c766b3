//! Values the chart must refuse, with a message that names the value and the rule.

use std::process::{Command, Stdio};

use crate::facts::assert_lifecycle_facts;
use crate::support::{Values, check, refused, template, tools};

#[test]
fn wrong_types_and_typos_are_rejected_by_the_schema() {
    let Some(tools) = tools() else { return };
    for (values, named) in [
        (Values::defaults().set("replicaCount=two"), "replicaCount"),
        (
            Values::defaults().set_string("shutdown.gracePeriodSeconds=30s"),
            "shutdown.gracePeriodSeconds",
        ),
        (
            Values::defaults().set("shutdown.drainDelay=5"),
            "shutdown.drainDelay",
        ),
        (
            Values::defaults().set("shutdown.requestTimeout=20sec"),
            "shutdown.requestTimeout",
        ),
        (Values::defaults().set("replicas=3"), "replicas"),
        (
            Values::defaults().set("securityContext.readOnlyRootFileSystem=true"),
            "readOnlyRootFileSystem",
        ),
        (
            Values::defaults().set("service.type=Internal"),
            "service.type",
        ),
        (
            Values::defaults().set("env[0].name=RODENT_LOG env[0].value=1"),
            "env.0.value",
        ),
        (
            Values::defaults().set("managementPort=70000"),
            "managementPort",
        ),
        (
            Values::defaults().set_string("managementPort=9090"),
            "managementPort",
        ),
        (
            Values::defaults().set_string("probes.grpc.enabled=yes"),
            "probes.grpc.enabled",
        ),
        (
            Values::defaults().set("probes.grpc.port=9090"),
            "probes.grpc",
        ),
        (
            Values::defaults().set("faults.errorRate=2"),
            "faults.errorRate",
        ),
        (
            Values::defaults().set_string("faults.errorRate=half"),
            "faults.errorRate",
        ),
        (Values::defaults().set("faults.delay=fast"), "faults.delay"),
        (
            Values::defaults().set("faults.unready=yes"),
            "faults.unready",
        ),
        (Values::defaults().set("faults.testFial=true"), "testFial"),
        (
            Values::defaults().set("backends[0]=ftp://backend"),
            "backends.0",
        ),
    ] {
        let args = values.0.clone();
        let error = refused(tools, values);
        assert!(
            error.contains("don't meet the specifications of the schema") && error.contains(named),
            "{args:?} should be refused by the schema, naming {named}:\n{error}"
        );
    }
}

#[test]
fn timing_that_does_not_fit_is_refused_readably() {
    let Some(tools) = tools() else { return };
    let error = refused(tools, Values::defaults().set("shutdown.requestTimeout=30s"));
    for needle in [
        "shutdown.drainDelay (5s)",
        "shutdown.requestTimeout (30s)",
        "shutdown.gracePeriodSeconds (30s)",
        "safety margin (3s",
        "leaves 27s",
        "drainDelay + requestTimeout <= gracePeriodSeconds - margin",
        "exit 78",
        "(to at least 39s)",
    ] {
        assert!(
            error.contains(needle),
            "the message should say {needle:?}:\n{error}"
        );
    }
}

/// The chart's rule is rodent's: with the margin at a tenth of the grace and at its 5s cap, the
/// exact fit renders and rodent accepts it; one millisecond more is refused by both, rodent with
/// exit 78. (The 100ms floor never applies: the grace is whole seconds, at least 1.)
#[test]
fn timing_boundaries_are_rodents() {
    let Some(tools) = tools() else { return };
    for (grace, drain_ms, fits_ms) in [(2, 1_500, 300), (30, 5_000, 22_000), (100, 5_000, 90_000)] {
        for (timeout_ms, fits) in [(fits_ms, true), (fits_ms + 1, false)] {
            let (grace, drain, timeout) = (
                format!("{grace}s"),
                format!("{drain_ms}ms"),
                format!("{timeout_ms}ms"),
            );
            let values = Values::defaults().set(&format!(
                "shutdown.gracePeriodSeconds={} shutdown.drainDelay={drain} \
                 shutdown.requestTimeout={timeout}",
                grace.trim_end_matches('s')
            ));
            let rendered = template(tools, &values);
            let case = format!("grace {grace}, drain {drain}, timeout {timeout}");
            assert_eq!(
                rendered.is_ok(),
                fits,
                "{case}: {:?}",
                rendered.as_ref().err()
            );
            let status = Command::new(env!("CARGO_BIN_EXE_rodent"))
                .args(["config", "check"])
                .env_clear()
                .env("RODENT_SHUTDOWN_GRACE", &grace)
                .env("RODENT_DRAIN_DELAY", &drain)
                .env("RODENT_REQUEST_TIMEOUT", &timeout)
                .env("RODENT_PID_FILE", "")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("rodent runs");
            let expected = if fits { 0 } else { 78 };
            assert_eq!(status.code(), Some(expected), "rodent config check, {case}");
            if let Ok(m) = rendered {
                assert_lifecycle_facts(&m);
            }
        }
    }
}

#[test]
fn the_suggested_grace_is_the_smallest_that_fits() {
    let Some(tools) = tools() else { return };
    for (drain, timeout) in [
        ("5s", "30s"),
        ("10s", "50s"),
        ("1500ms", "300ms"),
        ("2s", "45s"),
    ] {
        let values = |grace: u64| {
            Values::defaults().set(&format!(
                "shutdown.gracePeriodSeconds={grace} \
                 shutdown.drainDelay={drain} shutdown.requestTimeout={timeout}"
            ))
        };
        let error = refused(tools, values(1));
        let suggested: u64 = error
            .split("(to at least ")
            .nth(1)
            .and_then(|rest| rest.split("s)").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no suggested grace in:\n{error}"));
        let fits = |grace| template(tools, &values(grace)).is_ok();
        assert!(
            fits(suggested),
            "{drain} + {timeout} should fit {suggested}s"
        );
        assert!(
            !fits(suggested - 1),
            "{drain} + {timeout} fits below {suggested}s"
        );
    }
}

#[test]
fn readiness_must_be_noticed_inside_the_drain_window() {
    let Some(tools) = tools() else { return };
    let error = refused(
        tools,
        Values::defaults().set_string("shutdown.drainDelay=0"),
    );
    for needle in [
        "probes.readiness.periodSeconds (1)",
        "probes.readiness.failureThreshold (1)",
        "shutdown.drainDelay (0s)",
        "periodSeconds x failureThreshold < drainDelay + preStopSleepSeconds",
    ] {
        assert!(
            error.contains(needle),
            "the message should say {needle:?}:\n{error}"
        );
    }
    refused(
        tools,
        Values::defaults().set("probes.readiness.periodSeconds=5"),
    );
    check(
        tools,
        Values::defaults()
            .set("probes.readiness.periodSeconds=2 probes.readiness.failureThreshold=2"),
    );
}

#[test]
fn variables_the_chart_owns_cannot_be_set_through_env() {
    let Some(tools) = tools() else { return };
    for name in [
        "RODENT_SHUTDOWN_GRACE",
        "RODENT_DRAIN_DELAY",
        "RODENT_REQUEST_TIMEOUT",
        "RODENT_MAX_CONNECTIONS",
        "RODENT_PORT",
        "RODENT_MANAGEMENT_PORT",
        "RODENT_PID_FILE",
        "RODENT_ADMIN_TOKEN",
        "RODENT_FAULT_ERROR_RATE",
        "RODENT_FAULT_DELAY",
        "RODENT_FAULT_UNREADY",
        "RODENT_FAULT_UNHEALTHY",
        "RODENT_BACKENDS",
    ] {
        let values = Values::defaults().set(&format!("env[0].name={name} env[0].value=x"));
        let error = refused(tools, values);
        assert!(
            error.contains(&format!("env: {name} is set by the chart")),
            "{name} should be refused:\n{error}"
        );
    }
}

#[test]
fn a_management_port_on_the_application_s_port_is_refused() {
    let Some(tools) = tools() else { return };
    let error = refused(tools, Values::defaults().set("managementPort=8080"));
    assert!(
        error.contains("managementPort (8080) must differ from containerPort"),
        "{error}"
    );
}
