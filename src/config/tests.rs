use std::collections::BTreeMap;
use std::io::Write;

use super::*;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn invalid_variables(errors: &ConfigErrors) -> Vec<&str> {
    errors.0.iter().filter_map(ConfigError::variable).collect()
}

#[test]
fn defaults_match_the_contract() {
    let c = config(&[("RODENT_PID_FILE", "")]).unwrap();
    assert_eq!(c.bind_addr().to_string(), "0.0.0.0:8080");
    assert_eq!(c.log, "info");
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.drain_delay, Duration::from_secs(5));
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.request_timeout, Duration::from_secs(20));
    assert_eq!(c.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.body_limit, 1_048_576);
    assert_eq!(c.max_inflight, 1024);
    assert_eq!(c.pid_file, None);
    assert_eq!(c.init, InitMode::Auto);
    assert_eq!(c.admin_token, None);
    assert_eq!(c.shutdown_deadline(), Duration::from_secs(27));
}

#[test]
fn a_missing_pid_file_variable_means_the_platform_default() {
    let c = config(&[("XDG_RUNTIME_DIR", "/run/user/1000")]).unwrap();
    assert!(c.pid_file.is_some());
}

#[test]
fn every_invalid_variable_is_reported_at_once() {
    let errors = config(&[
        ("RODENT_PORT", "abc"),
        ("RODENT_DRAIN_DELAY", "5"),
        ("RODENT_LOG_FORMAT", "xml"),
        ("RODENT_MAX_INFLIGHT", "0"),
        ("RODENT_HOST", "example.com"),
    ])
    .unwrap_err();
    assert_eq!(
        invalid_variables(&errors),
        [
            "RODENT_HOST",
            "RODENT_PORT",
            "RODENT_LOG_FORMAT",
            "RODENT_DRAIN_DELAY",
            "RODENT_MAX_INFLIGHT"
        ]
    );
    let text = errors.to_string();
    assert!(
        text.contains("RODENT_PORT=\"abc\" is invalid: expected a port number"),
        "{text}"
    );
    assert!(text.contains("5 problems"), "{text}");
}

#[test]
fn secrets_are_masked_in_errors() {
    let errors = config(&[("RODENT_ADMIN_TOKEN", "hunter2 with spaces")]).unwrap_err();
    let text = errors.to_string();
    assert!(text.contains("RODENT_ADMIN_TOKEN=\"***\""), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn empty_values_mean_the_default() {
    let c = config(&[("RODENT_PORT", ""), ("RODENT_DRAIN_DELAY", " ")]).unwrap();
    assert_eq!(c.port, 8080);
    assert_eq!(c.drain_delay, Duration::from_secs(5));
}

#[test]
fn drain_and_timeout_must_fit_in_the_grace() {
    let errors = config(&[
        ("RODENT_DRAIN_DELAY", "5s"),
        ("RODENT_REQUEST_TIMEOUT", "30s"),
        ("RODENT_SHUTDOWN_GRACE", "30s"),
    ])
    .unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("RODENT_DRAIN_DELAY (5s) + RODENT_REQUEST_TIMEOUT (30s) = 35s"),
        "{text}"
    );
    assert!(text.contains("safety margin (3s)"), "{text}");

    // Exactly at the limit is fine: 2s + 25s = 27s = 30s - 3s.
    config(&[
        ("RODENT_DRAIN_DELAY", "2s"),
        ("RODENT_REQUEST_TIMEOUT", "25s"),
    ])
    .unwrap();
}

#[test]
fn consistency_is_not_judged_on_values_that_failed_to_parse() {
    let errors = config(&[("RODENT_REQUEST_TIMEOUT", "forever")]).unwrap_err();
    assert_eq!(errors.0.len(), 1);
}

#[test]
fn unknown_rodent_variables_are_noticed() {
    let c = config(&[("RODENT_DRAIN_DELAI", "1s"), ("OTHER", "x")]).unwrap();
    assert_eq!(c.unknown, ["RODENT_DRAIN_DELAI"]);
}

#[test]
fn names_in_another_case_are_not_read_and_are_noticed() {
    let c = config(&[("rodent_port", "1"), ("RODENT_Drain_Delay", "x")]).unwrap();
    assert_eq!(c.port, 8080);
    assert_eq!(c.unknown, ["RODENT_Drain_Delay", "rodent_port"]);
    assert_eq!(
        super::variables::in_another_case("rodent_port"),
        Some("RODENT_PORT")
    );
}

#[test]
fn the_env_file_is_layered_over_the_environment() {
    let dir = std::env::temp_dir().join(format!("rodent-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rodent.env");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(
        file,
        "# comment\nRODENT_PORT=9191\nRODENT_LOG=debug\nOTEL_SERVICE_NAME=\"from-file\""
    )
    .unwrap();
    let path_str = path.to_str().unwrap();

    let c = config(&[
        ("RODENT_ENV_FILE", path_str),
        ("RODENT_PORT", "7000"),
        ("RODENT_HOST", "127.0.0.1"),
    ])
    .unwrap();
    assert_eq!(c.port, 9191, "the file wins over the environment");
    assert_eq!(c.log, "debug");
    assert_eq!(
        c.host.to_string(),
        "127.0.0.1",
        "what the file does not set stays"
    );
    assert_eq!(c.vars["OTEL_SERVICE_NAME"], "from-file");

    let missing = config(&[("RODENT_ENV_FILE", "/nonexistent/rodent.env")]).unwrap_err();
    assert_eq!(invalid_variables(&missing), ["RODENT_ENV_FILE"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn reload_applies_only_reloadable_settings() {
    let running = config(&[("RODENT_PORT", "8080"), ("RODENT_PID_FILE", "")]).unwrap();
    let next = config(&[
        ("RODENT_PORT", "9090"),
        ("RODENT_LOG", "debug"),
        ("RODENT_ADMIN_TOKEN", "abc"),
        ("RODENT_PID_FILE", ""),
    ])
    .unwrap();
    let reload = Reload::of(&running, next);
    assert_eq!(reload.config.port, 8080);
    assert_eq!(reload.config.log, "debug");
    assert_eq!(reload.changed, ["RODENT_LOG", "RODENT_ADMIN_TOKEN"]);
    assert_eq!(reload.needs_restart, ["RODENT_PORT"]);
}

#[test]
fn rendering_masks_the_token() {
    let c = config(&[("RODENT_ADMIN_TOKEN", "abc")]).unwrap();
    let rendered: BTreeMap<_, _> = c.render().into_iter().collect();
    assert_eq!(rendered["RODENT_ADMIN_TOKEN"], "***");
    assert_eq!(format!("{:?}", c.admin_token), "Some(***)");
}

#[test]
fn the_management_port_is_optional_distinct_and_not_reloaded() {
    let pid = ("RODENT_PID_FILE", "");
    assert_eq!(config(&[pid]).unwrap().management_addr(), None);
    let c = config(&[
        pid,
        ("RODENT_HOST", "127.0.0.1"),
        ("RODENT_MANAGEMENT_PORT", "9090"),
    ]);
    let c = c.unwrap();
    assert_eq!(c.management_addr().unwrap().to_string(), "127.0.0.1:9090");
    // Port 0 on both picks two free ports.
    let both_free = config(&[pid, ("RODENT_PORT", "0"), ("RODENT_MANAGEMENT_PORT", "0")]);
    assert_eq!(both_free.unwrap().management_port, Some(0));
    for bad in ["8080", "http", "70000", "-1"] {
        let errors = config(&[pid, ("RODENT_MANAGEMENT_PORT", bad)]).unwrap_err();
        assert_eq!(
            invalid_variables(&errors),
            ["RODENT_MANAGEMENT_PORT"],
            "{bad}"
        );
    }
    let reload = Reload::of(&c, config(&[pid, ("RODENT_HOST", "127.0.0.1")]).unwrap());
    assert_eq!(reload.config.management_port, Some(9090));
    assert_eq!(reload.needs_restart, ["RODENT_MANAGEMENT_PORT"]);
}
