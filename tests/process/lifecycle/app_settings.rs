//! An application's own settings, as the process treats them: validated in the same pass as
//! rodent's (exit 78, every problem named), shown masked by `config`, known to the
//! unknown-variable warning, layered from the env file, and reloaded all or nothing with
//! rodent's own.

use nix::sys::signal::Signal::{SIGHUP, SIGTERM};

use super::application::{fixture, run, start};
use kit::{PATIENCE, TempDir};

fn named(log: &[serde_json::Value]) -> Vec<String> {
    log.iter()
        .filter(|l| l["message"] == "invalid configuration")
        .filter_map(|l| l["variable"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn bad_settings_of_the_application_are_named_with_rodents() {
    let mut app = start(
        fixture()
            .env("FIXTURE_WORKERS", "0")
            .env("RODENT_PORT", "abc")
            .env("FIXTURE_SETUP", "maybe")
            .env("FIXTURE_TOKEN", "")
            .no_wait(),
    );
    assert_eq!(app.exit_code(PATIENCE), 78);
    app.wait_log(|l| l["message"] == "refusing to start with an invalid configuration");
    let log = app.json_lines();
    assert_eq!(
        named(&log),
        ["RODENT_PORT", "FIXTURE_WORKERS", "FIXTURE_SETUP"]
    );
    let workers = log
        .iter()
        .find(|l| l["variable"] == "FIXTURE_WORKERS")
        .unwrap();
    assert_eq!(workers["value"], "0");
    assert_eq!(workers["expected"], "a whole number from 1 to 64");
}

#[test]
fn config_shows_and_checks_the_applications_settings() {
    let (code, stdout, _) = run(
        fixture()
            .env("FIXTURE_TOKEN", "hunter2")
            .env("FIXTURE_WORKERS", "8"),
        &["config"],
    );
    assert_eq!(code, 0);
    for line in [
        "FIXTURE_GREETING=hello",
        "FIXTURE_WORKERS=8",
        "FIXTURE_TOKEN=***",
        "RODENT_FIXTURE_COLOR=blue",
        "RODENT_PORT=0",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in {stdout}");
    }
    assert!(!stdout.contains("hunter2"));

    let (code, _, stderr) = run(
        fixture()
            .env("FIXTURE_WORKERS", "65")
            .env("FIXTURE_TOKEN", "x y"),
        &["config", "check"],
    );
    assert_eq!(code, 78);
    assert!(
        stderr.contains("FIXTURE_WORKERS=\"65\" is invalid: expected a whole number from 1 to 64"),
        "{stderr}"
    );
    let (code, stdout, _) = run(fixture(), &["config", "check"]);
    assert_eq!((code, stdout.trim()), (0, "configuration is valid"));
}

#[test]
fn only_variables_the_application_does_not_read_are_warned_about() {
    let (code, _, stderr) = run(
        fixture()
            .env("RODENT_FIXTURE_COLOR", "green")
            .env("FIXTURE_GREETING", "hi")
            .env("FIXTURE_GRETING", "typo")
            .env("fixture_workers", "2"),
        &["config", "check"],
    );
    assert_eq!(code, 0, "{stderr}");
    let warned: Vec<_> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .collect();
    assert_eq!(
        warned,
        [
            "FIXTURE_GRETING is not a variable of fixture (a typo?)",
            "fixture_workers is not a variable of fixture (a typo?)",
        ]
    );

    let mut app = start(fixture().env("fixture_workers", "2"));
    let warning = app.wait_log(|l| l["variable"] == "fixture_workers");
    assert_eq!(warning["not"], "FIXTURE_WORKERS");
    app.signal(SIGTERM);
    assert_eq!(app.exit_code(PATIENCE), 0);
    assert!(
        !app.json_lines()
            .iter()
            .any(|l| l["variable"] == "RODENT_FIXTURE_COLOR")
    );
}

#[tokio::test]
async fn settings_come_from_the_env_file_and_reload_all_or_nothing() {
    let dir = TempDir::new("app-reload");
    let env_file = dir.join("fixture.env");
    let write = |contents: &str| std::fs::write(&env_file, contents).unwrap();
    write("FIXTURE_GREETING=bonjour\nFIXTURE_WORKERS=4\n");
    let mut app = start(fixture().env("RODENT_ENV_FILE", env_file.to_str().unwrap()));
    let greeting = || async {
        let body: serde_json::Value = app.get("/greeting").await.json().await.unwrap();
        body
    };
    assert_eq!(greeting().await["greeting"], "bonjour");

    // A reloadable setting applies; one that is not is validated, and waits for a restart.
    write("FIXTURE_GREETING=hola\nFIXTURE_WORKERS=9\n");
    app.signal(SIGHUP);
    let reloaded = app.wait_log(|l| l["message"] == "configuration reloaded");
    assert_eq!(reloaded["changed"], "FIXTURE_GREETING");
    let restart = app.wait_log(|l| l["message"] == "changed, but applies only after a restart");
    assert_eq!(restart["variable"], "FIXTURE_WORKERS");
    let now = greeting().await;
    assert_eq!(
        (now["greeting"].as_str(), now["workers"].as_u64()),
        (Some("hola"), Some(4))
    );

    // A bad value of the application's rejects rodent's changes too, and the other way round.
    write("FIXTURE_GREETING=ciao\nFIXTURE_WORKERS=0\nRODENT_LOG=debug\n");
    app.signal(SIGHUP);
    app.wait_log(|l| l["message"] == "reload rejected; the running configuration is unchanged");
    write("FIXTURE_GREETING=ciao\nRODENT_LOG_FORMAT=xml\n");
    app.signal(SIGHUP);
    let rejected = |l: &serde_json::Value| {
        l["message"] == "invalid configuration" && l["variable"] == "RODENT_LOG_FORMAT"
    };
    app.wait_log(rejected);
    assert_eq!(greeting().await["greeting"], "hola");
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("rodent_reloads_total{outcome=\"rejected\"} 2"),
        "{text}"
    );
    app.signal(SIGTERM);
    assert_eq!(app.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn a_lifecycle_run_alone_is_not_refused_for_trace_export_variables() {
    // The same typo refuses App::main, which exports traces...
    let (code, _, stderr) = run(
        fixture().env("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
        &["config", "check"],
    );
    assert_eq!(code, 78, "{stderr}");
    // ...and not Rodent::run, which exports nothing.
    let mut alone = start(
        fixture()
            .env("FIXTURE_ENTRY", "alone")
            .env("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
    );
    let body: serde_json::Value = alone.get("/greeting").await.json().await.unwrap();
    assert_eq!(body["greeting"], "hello");
    alone.signal(SIGTERM);
    assert_eq!(alone.exit_code(PATIENCE), 0);
}
