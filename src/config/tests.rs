use std::collections::BTreeMap;
use std::io::Write;

use super::*;
use crate::build::Identity;

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
    assert_eq!(c.max_connections, 1024);
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
        super::variables::in_another_case("rodent_port", &[]),
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
fn max_connections_is_a_positive_count_and_reloads() {
    for bad in ["0", "-1", "many", "1.5"] {
        let errors = config(&[("RODENT_MAX_CONNECTIONS", bad)]).unwrap_err();
        assert_eq!(
            invalid_variables(&errors),
            ["RODENT_MAX_CONNECTIONS"],
            "{bad}"
        );
    }
    let running = config(&[("RODENT_PID_FILE", "")]).unwrap();
    let next = config(&[("RODENT_MAX_CONNECTIONS", "10"), ("RODENT_PID_FILE", "")]).unwrap();
    let reload = Reload::of(&running, next);
    assert_eq!(reload.config.max_connections, 10);
    assert_eq!(reload.changed, ["RODENT_MAX_CONNECTIONS"]);
    assert!(reload.needs_restart.is_empty());
}

#[test]
fn rendering_masks_the_token() {
    let c = config(&[("RODENT_ADMIN_TOKEN", "abc")]).unwrap();
    let rendered: BTreeMap<_, _> = c.render().into_iter().collect();
    assert_eq!(rendered["RODENT_ADMIN_TOKEN"], "***");
    assert_eq!(format!("{:?}", c.admin_token), "Some(***)");
}

#[test]
fn the_environment_is_shown_masked_as_config_masks_it() {
    let c = config(&[
        ("RODENT_ADMIN_TOKEN", "abc"),
        ("DATABASE_PASSWORD", "hunter2"),
        ("HOME", "/root"),
    ])
    .unwrap();
    let environment: BTreeMap<_, _> = c.environment().into_iter().collect();
    assert_eq!(environment["RODENT_ADMIN_TOKEN"], "***");
    assert_eq!(environment["DATABASE_PASSWORD"], "***");
    assert_eq!(environment["HOME"], "/root");
}

#[test]
fn every_number_has_an_upper_bound() {
    let errors = config(&[
        ("RODENT_IDLE_TIMEOUT", "18446744073709551615ms"),
        ("RODENT_HEADER_READ_TIMEOUT", "25h"),
        ("RODENT_BODY_LIMIT", "1073741825"),
        ("RODENT_MAX_INFLIGHT", "1000001"),
        ("RODENT_MAX_CONNECTIONS", "1000001"),
        ("RODENT_PORT", "65536"),
    ])
    .unwrap_err();
    assert_eq!(
        invalid_variables(&errors),
        [
            "RODENT_PORT",
            "RODENT_HEADER_READ_TIMEOUT",
            "RODENT_IDLE_TIMEOUT",
            "RODENT_BODY_LIMIT",
            "RODENT_MAX_INFLIGHT",
            "RODENT_MAX_CONNECTIONS"
        ]
    );
    let c = config(&[
        ("RODENT_IDLE_TIMEOUT", "24h"),
        ("RODENT_BODY_LIMIT", "1073741824"),
        ("RODENT_MAX_INFLIGHT", "1000000"),
    ])
    .unwrap();
    assert_eq!(c.idle_timeout, Duration::from_secs(86_400));
}

#[test]
fn trace_export_variables_count_only_where_traces_are_exported() {
    let vars = [("OTEL_BSP_MAX_QUEUE_SIZE", "18446744073709551615")];
    config(&vars).expect("a lifecycle run alone exports nothing");
    let exporting = Spec::of(Identity::RODENT, settings::none(), true).reading(vars);
    let errors = exporting.read(None).unwrap_err();
    assert_eq!(invalid_variables(&errors), ["OTEL_BSP_MAX_QUEUE_SIZE"]);
    // Incoming trace context is read everywhere, so its variable is checked everywhere.
    let errors = config(&[("OTEL_PROPAGATORS", "jaeger")]).unwrap_err();
    assert_eq!(invalid_variables(&errors), ["OTEL_PROPAGATORS"]);
}

#[test]
fn values_set_in_code_survive_a_reload() {
    // Read from a map, a configuration is read again from the same map, not from the process
    // environment, which says nothing of RODENT_PORT here.
    let running = config(&[("RODENT_PORT", "9999"), ("RODENT_DRAIN_DELAY", "1s")]).unwrap();
    let again = running.reread().unwrap();
    assert_eq!(again.port, 9999);
    assert_eq!(again.drain_delay, Duration::from_secs(1));
}

#[test]
fn the_default_pid_file_is_named_after_the_application() {
    let identity = Identity {
        name: "notes",
        ..Identity::RODENT
    };
    let spec = Spec::of(identity, settings::none(), false)
        .reading([("XDG_RUNTIME_DIR", "/run/user/1000")]);
    let pid_file = spec.read(None).unwrap().pid_file.unwrap();
    let name = pid_file.file_name().unwrap().to_str().unwrap();
    assert!(
        name == "notes.pid" || name.starts_with("notes-"),
        "{pid_file:?}"
    );
}

/// Settings of an application, read with rodent's.
#[derive(Debug, PartialEq)]
struct Notes {
    page: u32,
    purge: Duration,
    key: Option<Secret>,
    database: String,
}

fn notes(vars: &mut Reader) -> Notes {
    vars.prefix("NOTES_");
    Notes {
        page: vars.get(Var::new("NOTES_PAGE", "20", parse::number(1..=100))),
        purge: vars.get(Var::new("NOTES_PURGE", "1m", parse::duration).reloadable()),
        key: vars.get(Var::optional("NOTES_KEY", parse::secret).secret()),
        database: vars.get(Var::required("NOTES_DATABASE", parse::text)),
    }
}

fn notes_config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Spec::of(Identity::RODENT, settings::declaration(notes), false)
        .reading(vars)
        .read(None)
}

#[test]
fn application_settings_are_validated_with_rodents() {
    let errors = notes_config(&[
        ("NOTES_PAGE", "0"),
        ("RODENT_PORT", "x"),
        ("NOTES_KEY", "x"),
        ("NOTES_PURGE", "soon"),
    ])
    .unwrap_err();
    assert_eq!(
        invalid_variables(&errors),
        ["RODENT_PORT", "NOTES_PAGE", "NOTES_PURGE", "NOTES_DATABASE"]
    );
    let c = notes_config(&[
        ("NOTES_DATABASE", "sqlite://notes.db"),
        ("NOTES_KEY", "hunter2"),
        ("NOTES_PAGES", "typo"),
        ("NOTES_Page", "3"),
    ])
    .unwrap();
    let notes = c.settings::<Notes>().unwrap();
    assert_eq!(notes.page, 20);
    assert_eq!(notes.key.as_ref().map(Secret::expose), Some("hunter2"));
    assert_eq!(c.unknown, ["NOTES_PAGES", "NOTES_Page"]);
    let rendered: BTreeMap<_, _> = c.render().into_iter().collect();
    assert_eq!(rendered["NOTES_KEY"], "***");
    assert_eq!(rendered["NOTES_PAGE"], "20");
    assert_eq!(rendered["NOTES_DATABASE"], "sqlite://notes.db");
    assert!(c.settings::<u8>().is_none());
}

#[test]
fn a_secret_of_the_application_is_masked_in_errors() {
    fn read(vars: &mut Reader) -> u16 {
        vars.get(Var::new("APP_PIN", "1", parse::number(1..=9999)).secret())
    }
    let errors = Spec::of(Identity::RODENT, settings::declaration(read), false)
        .reading([("APP_PIN", "123456")])
        .read(None)
        .unwrap_err();
    assert!(errors.to_string().contains("APP_PIN=\"***\""), "{errors}");
    assert!(!errors.to_string().contains("123456"), "{errors}");
}

#[test]
fn a_reload_keeps_what_the_application_may_not_change() {
    let dir = std::env::temp_dir().join(format!("rodent-app-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("notes.env");
    std::fs::write(&file, "NOTES_PAGE=5\nNOTES_PURGE=1m\n").unwrap();
    let file_name = file.to_str().unwrap();
    let running = notes_config(&[("RODENT_ENV_FILE", file_name), ("NOTES_DATABASE", "a")]).unwrap();
    std::fs::write(&file, "NOTES_PAGE=50\nNOTES_PURGE=2m\n").unwrap();
    let reload = Reload::of(&running, running.reread().unwrap());
    let notes = reload.config.settings::<Notes>().unwrap();
    assert_eq!((notes.page, notes.purge), (5, Duration::from_secs(120)));
    assert_eq!(reload.changed, ["NOTES_PURGE"]);
    assert_eq!(reload.needs_restart, ["NOTES_PAGE"]);
    // Still the running value on the next reload, whatever the file says.
    let next = Reload::of(&reload.config, reload.config.reread().unwrap());
    assert_eq!(next.config.settings::<Notes>().unwrap().page, 5);
    assert_eq!(next.changed, Vec::<&str>::new());
    std::fs::write(&file, "NOTES_PAGE=500\n").unwrap();
    let errors = reload.config.reread().unwrap_err();
    assert_eq!(invalid_variables(&errors), ["NOTES_PAGE"]);
    std::fs::remove_dir_all(dir).unwrap();
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

/// `VARIABLES` shows each default as `rodent config` prints it; the parser has its own. Set
/// every documented default explicitly and the configuration must not change, so the two
/// cannot drift apart.
#[test]
fn the_documented_defaults_are_the_ones_applied() {
    let unset = config(&[("RODENT_PID_FILE", "")]).unwrap();
    let explicit: Vec<(&str, &str)> = VARIABLES
        .iter()
        .filter(|v| !v.default.is_empty() && !v.default.starts_with('('))
        .map(|v| (v.name, v.default))
        .chain([("RODENT_PID_FILE", "")])
        .collect();
    assert!(explicit.len() > 10, "{explicit:?}");
    let set = config(&explicit).unwrap();
    assert_eq!(format!("{set:?}"), format!("{unset:?}"));
}
