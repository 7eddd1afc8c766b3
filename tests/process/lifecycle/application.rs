//! An application on the library, run as a process (`tests/fixtures/app.rs`): its own name and
//! version everywhere rodent names itself, and an async, fallible setup in rodent's runtime.

use std::process::Output;

use nix::sys::signal::Signal::SIGTERM;

use kit::{PATIENCE, Spawn, TempDir, code_of, example, rodent};

/// The fixture application, built next to rodent (`cargo test` builds the examples).
fn fixture_binary() -> std::path::PathBuf {
    let binary = example("fixture");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds the examples, but a run limited with `--test` does \
         not; build them first with `scripts/test --no-run`",
        binary.display()
    );
    binary
}

/// The fixture with rodent's test environment (loopback, port 0, no PID file).
pub(crate) fn fixture() -> Spawn {
    rodent()
}

pub(crate) fn start(spawn: Spawn) -> kit::Rodent {
    spawn.spawn_program(&fixture_binary())
}

pub(crate) fn run(spawn: Spawn, args: &[&str]) -> (i32, String, String) {
    let mut command = spawn.command_via(&[], &fixture_binary());
    command.args(args);
    let output: Output = command.output().expect("the fixture runs");
    (
        code_of(&output),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_is_the_applications() {
    let (code, stdout, _) = run(fixture(), &["--version"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), "fixture 7.1.2");

    let (code, stdout, _) = run(fixture(), &["version"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("fixture 7.1.2 (commit f1x7ure, rodent "),
        "{stdout}"
    );

    let (_, stdout, _) = run(fixture(), &["--help"]);
    assert!(stdout.contains("Usage: fixture"), "{stdout}");

    let (code, _, stderr) = run(fixture(), &["stop"]);
    assert_eq!(code, 1, "no PID file configured: {stderr}");
    assert!(stderr.starts_with("fixture stop: "), "{stderr}");
}

#[tokio::test]
async fn two_applications_on_one_host_keep_their_own_pid_files() {
    let dir = TempDir::new("pid-files");
    let runtime_dir = dir.path().to_str().unwrap();
    // The default PID file: /run/<name>.pid for root, $XDG_RUNTIME_DIR/<name>.pid otherwise.
    let expected = |name: &str| {
        if nix::unistd::geteuid().is_root() {
            std::path::PathBuf::from(format!("/run/{name}.pid"))
        } else {
            dir.join(&format!("{name}.pid"))
        }
    };
    let (_, stdout, _) = run(
        fixture()
            .without_env("RODENT_PID_FILE")
            .env("XDG_RUNTIME_DIR", runtime_dir),
        &["config"],
    );
    let line = format!("RODENT_PID_FILE={}", expected("fixture").display());
    assert!(stdout.lines().any(|l| l == line), "{line} in {stdout}");

    let mut reference = rodent()
        .without_env("RODENT_PID_FILE")
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .spawn();
    let mut application = start(
        fixture()
            .without_env("RODENT_PID_FILE")
            .env("XDG_RUNTIME_DIR", runtime_dir),
    );
    for (name, process) in [("rodent", &reference), ("fixture", &application)] {
        let written = std::fs::read_to_string(expected(name)).unwrap();
        assert_eq!(
            written.trim(),
            process.pid().to_string(),
            "{name}'s PID file"
        );
    }
    for process in [&mut reference, &mut application] {
        process.signal(SIGTERM);
        assert_eq!(process.exit_code(PATIENCE), 0);
    }
}

#[tokio::test]
async fn the_setup_runs_in_rodents_runtime_after_logging() {
    let mut app = start(fixture());
    let body: serde_json::Value = app.get("/greeting").await.json().await.unwrap();
    assert_eq!(body["spawned"], "in rodent's runtime");
    assert_eq!(body["greeting"], "hello");
    let starting = app.wait_log(|l| l["message"] == "starting");
    assert_eq!(starting["name"], "fixture");
    assert_eq!(starting["version"], "7.1.2");
    assert_eq!(starting["commit"], "f1x7ure");
    let messages: Vec<_> = app
        .json_lines()
        .into_iter()
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect();
    let at = |m: &str| messages.iter().position(|x| x == m).unwrap();
    assert!(at("starting") < at("running the application's setup"));
    assert!(at("running the application's setup") < at("listening"));
    app.signal(SIGTERM);
    assert_eq!(app.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn metrics_and_build_info_are_the_applications() {
    let mut app = start(fixture());
    app.get("/greeting").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.lines().any(|l| l == "fixture_greetings_total 1"),
        "{text}"
    );
    let info = text
        .lines()
        .find(|l| l.starts_with("rodent_build_info{"))
        .unwrap_or_else(|| panic!("no build info in {text}"));
    for label in [
        "name=\"fixture\"",
        "version=\"7.1.2\"",
        "commit=\"f1x7ure\"",
        concat!("rodent_version=\"", env!("CARGO_PKG_VERSION"), "\""),
    ] {
        assert!(info.contains(label), "{label} in {info}");
    }
    app.signal(SIGTERM);
    assert_eq!(app.exit_code(PATIENCE), 0);
}

#[test]
fn a_configuration_error_in_the_setup_exits_78_naming_the_variable() {
    let mut app = start(fixture().env("FIXTURE_SETUP", "config").no_wait());
    assert_eq!(app.exit_code(PATIENCE), 78);
    let line = app.wait_log(|l| l["message"] == "invalid configuration");
    assert_eq!(line["variable"], "FIXTURE_GREETING");
    assert_eq!(line["value"], "hello");
    assert!(!app.json_lines().iter().any(|l| l["message"] == "listening"));
}

#[test]
fn any_other_setup_failure_exits_1_with_its_cause_on_one_line() {
    for (mode, cause) in [
        ("error", "cannot reach the database: port 5432"),
        ("panic", "the setup panicked: the setup gave up"),
    ] {
        let mut app = start(fixture().env("FIXTURE_SETUP", mode).no_wait());
        assert_eq!(app.exit_code(PATIENCE), 1, "{mode}");
        let line = app.wait_log(|l| l["message"] == "setup failed");
        assert_eq!(line["cause"], cause, "{mode}");
        assert_eq!(line["exit_code"], 1);
    }
}

#[test]
fn a_shutdown_signal_during_the_setup_stops_at_once() {
    let dir = TempDir::new("setup-signal");
    let pid_file = dir.join("fixture.pid");
    let mut app = start(
        fixture()
            .env("FIXTURE_SETUP", "slow")
            .env("RODENT_PID_FILE", pid_file.to_str().unwrap())
            .no_wait(),
    );
    app.wait_log(|l| l["message"] == "running the application's setup");
    // The PID file is in place while the setup runs.
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim(), app.pid().to_string());
    let sent = std::time::Instant::now();
    app.signal(SIGTERM);
    assert_eq!(app.exit_code(PATIENCE), 0);
    assert!(
        sent.elapsed() < PATIENCE / 2,
        "the setup (a minute long) did not hold the exit"
    );
    app.wait_log(|l| l["message"] == "signal received during setup; stopping");
    assert!(!pid_file.exists(), "the PID file is removed");
}

#[test]
fn main_inside_a_runtime_is_refused_at_once() {
    let (code, stdout, stderr) = run(fixture().env("FIXTURE_ENTRY", "inside-runtime"), &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("fixture: App::main was called inside a tokio runtime"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "nothing started: {stdout}");
}

#[test]
fn a_subscriber_installed_before_rodents_is_warned_about() {
    let mut app = start(fixture().env("FIXTURE_ENTRY", "own-subscriber").no_wait());
    let warning = app.wait_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("installed before rodent's"))
    });
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("App::tracing_layer"),
        "{warning}"
    );
    app.signal(SIGTERM);
    assert_eq!(app.exit_code(PATIENCE), 0);
}
