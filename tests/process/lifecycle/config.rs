//! Configuration as the binary sees it: every invalid variable named, exit 78 before binding,
//! the env file layered over the environment, secrets never printed.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use nix::sys::signal::Signal::{SIGHUP, SIGTERM};

use kit::{PATIENCE, TempDir, code_of, rodent};

/// Starts `rodent serve` with one extra variable and returns its exit code and log.
fn serve_with(vars: &[(&str, &str)]) -> (i32, Vec<serde_json::Value>) {
    let mut spawn = rodent().no_wait();
    for (k, v) in vars {
        spawn = spawn.env(k, *v);
    }
    let mut rodent = spawn.spawn();
    let code = rodent.exit_code(PATIENCE);
    // The exit was seen; the reader threads may still be reading the last lines, and the
    // summary line comes last.
    rodent.wait_log(|l| l["message"] == "refusing to start with an invalid configuration");
    (code, rodent.json_lines())
}

fn named(log: &[serde_json::Value]) -> Vec<String> {
    log.iter()
        .filter_map(|l| l["variable"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn each_invalid_variable_is_refused_by_name() {
    let cases = [
        ("RODENT_HOST", "not-an-ip"),
        ("RODENT_PORT", "abc"),
        ("RODENT_LOG", "info,=="),
        ("RODENT_LOG_FORMAT", "xml"),
        ("RODENT_DRAIN_DELAY", "5"),
        ("RODENT_SHUTDOWN_GRACE", "500ms"),
        ("RODENT_REQUEST_TIMEOUT", "0"),
        ("RODENT_HEADER_READ_TIMEOUT", "soon"),
        ("RODENT_IDLE_TIMEOUT", "-1s"),
        ("RODENT_BODY_LIMIT", "1MB"),
        ("RODENT_MAX_INFLIGHT", "0"),
        ("RODENT_INIT", "sometimes"),
        ("RODENT_ENV_FILE", "/nonexistent/rodent.env"),
        ("RODENT_ADMIN_TOKEN", "has spaces"),
    ];
    let runs: Vec<_> = cases
        .iter()
        .map(|&(var, value)| std::thread::spawn(move || (var, value, serve_with(&[(var, value)]))))
        .collect();
    for run in runs {
        let (var, value, (code, log)) = run.join().unwrap();
        assert_eq!(code, 78, "{var}={value} must exit 78; log: {log:?}");
        assert_eq!(
            named(&log),
            [var],
            "{var}={value} must be named; log: {log:?}"
        );
        assert!(
            !log.iter().any(|l| l["message"] == "listening"),
            "{var}: nothing may bind with an invalid configuration"
        );
    }
}

#[test]
fn every_invalid_variable_is_reported_at_once() {
    let (code, log) = serve_with(&[
        ("RODENT_PORT", "99999"),
        ("RODENT_DRAIN_DELAY", "forever"),
        ("RODENT_MAX_INFLIGHT", "lots"),
    ]);
    assert_eq!(code, 78);
    assert_eq!(
        named(&log),
        ["RODENT_PORT", "RODENT_DRAIN_DELAY", "RODENT_MAX_INFLIGHT"]
    );
    let port = log.iter().find(|l| l["variable"] == "RODENT_PORT").unwrap();
    assert_eq!(port["value"], "99999");
    assert!(
        port["expected"].as_str().unwrap().contains("port number"),
        "{port}"
    );
    let summary = log
        .iter()
        .find(|l| l["message"] == "refusing to start with an invalid configuration")
        .unwrap();
    assert_eq!(summary["problems"], 3);
}

#[test]
fn drain_and_request_timeout_must_fit_in_the_grace() {
    let (code, log) = serve_with(&[
        ("RODENT_DRAIN_DELAY", "5s"),
        ("RODENT_REQUEST_TIMEOUT", "30s"),
        ("RODENT_SHUTDOWN_GRACE", "30s"),
    ]);
    assert_eq!(code, 78);
    let line = log
        .iter()
        .find(|l| {
            l["error"]
                .as_str()
                .is_some_and(|m| m.contains("does not fit inside RODENT_SHUTDOWN_GRACE"))
        })
        .unwrap_or_else(|| panic!("no explanation in {log:?}"));
    let message = line["error"].as_str().unwrap();
    assert!(
        message.contains("RODENT_DRAIN_DELAY (5s) + RODENT_REQUEST_TIMEOUT (30s)"),
        "{message}"
    );
}

#[test]
fn a_secret_is_never_printed() {
    let (code, log) = serve_with(&[
        ("RODENT_ADMIN_TOKEN", "hunter2 hunter2"),
        ("RODENT_PORT", "x"),
    ]);
    assert_eq!(code, 78);
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("RODENT_ADMIN_TOKEN"),
        "the variable is still named: {text}"
    );

    let (_, printed, _) = rodent()
        .env("RODENT_ADMIN_TOKEN", "s3cr3t-value")
        .run(&["config"]);
    assert!(printed.contains("RODENT_ADMIN_TOKEN=***"), "{printed}");
    assert!(!printed.contains("s3cr3t-value"), "{printed}");

    let mut serving = rodent().env("RODENT_ADMIN_TOKEN", "s3cr3t-value").spawn();
    serving.signal(nix::sys::signal::Signal::SIGTERM);
    serving.exit_code(PATIENCE);
    assert!(!serving.raw_lines().join("\n").contains("s3cr3t-value"));
}

#[test]
fn the_env_file_is_layered_over_the_environment() {
    let dir = TempDir::new("envfile");
    let path = dir.join("rodent.env");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(
        file,
        "# set by the file\nRODENT_PORT=9191\nRODENT_DRAIN_DELAY=1500ms"
    )
    .unwrap();

    let (code, printed, err) = rodent()
        .env("RODENT_ENV_FILE", path.to_str().unwrap())
        .env("RODENT_PORT", "7000")
        .run(&["config"]);
    assert_eq!(code, 0, "{printed}{err}");
    assert!(
        printed.lines().any(|l| l == "RODENT_PORT=9191"),
        "the file wins: {printed}"
    );
    assert!(
        printed.lines().any(|l| l == "RODENT_DRAIN_DELAY=1500ms"),
        "{printed}"
    );
    assert!(
        printed.lines().any(|l| l == "RODENT_HOST=127.0.0.1"),
        "the environment stays: {printed}"
    );
}

#[test]
fn config_check_answers_with_its_exit_code() {
    let (code, out, _) = rodent().run(&["config", "check"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "configuration is valid");

    let (code, _, errors) = rodent()
        .env("RODENT_PORT", "abc")
        .env("RODENT_LOG_FORMAT", "yaml")
        .run(&["config", "check"]);
    assert_eq!(code, 78);
    assert!(
        errors.contains("RODENT_PORT=\"abc\" is invalid"),
        "{errors}"
    );
    assert!(
        errors.contains("RODENT_LOG_FORMAT=\"yaml\" is invalid"),
        "{errors}"
    );
}

#[test]
fn an_unknown_variable_is_warned_about() {
    // With everything cargo put in this test's environment, as `cargo run` would give it.
    let mut spawn = rodent();
    for (name, value) in std::env::vars().filter(|(name, _)| !name.starts_with("RODENT_")) {
        spawn = spawn.env(&name, value);
    }
    let mut rodent = spawn.env("RODENT_DRAIN_DELAI", "9s").spawn();
    let warning = rodent.wait_log(|l| l["message"] == "unknown variable (a typo?)");
    assert_eq!(warning["variable"], "RODENT_DRAIN_DELAI");
    rodent.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    // The build information cargo passes to what it runs is never mistaken for configuration.
    let unknown: Vec<_> = rodent
        .json_lines()
        .into_iter()
        .filter(|l| l["message"] == "unknown variable (a typo?)")
        .map(|l| l["variable"].clone())
        .collect();
    assert_eq!(unknown, ["RODENT_DRAIN_DELAI"]);
}

#[test]
fn a_port_in_use_is_a_one_line_runtime_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut rodent = rodent()
        .env("RODENT_PORT", port.to_string())
        .no_wait()
        .spawn();
    assert_eq!(rodent.exit_code(PATIENCE), 1);
    let line = rodent.wait_log(|l| l["level"] == "ERROR");
    let message = line["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!("cannot listen on 127.0.0.1:{port}: Address already in use (os error 98)")
    );
}

/// A parse error in the env file names the file, the line and the variable, never the line's
/// text: the parser's own error carries the value, or the whole rest of the file after an
/// unclosed quote. Checked everywhere it is shown: `config check`, a refused start, a rejected
/// reload. A value that is not UTF-8 is masked like any other when its name looks secret.
#[test]
fn an_env_file_that_cannot_be_parsed_shows_none_of_its_values() {
    let dir = TempDir::new("unparsable-env-file");
    let path = dir.join("rodent.env");
    let broken =
        "RODENT_DRAIN_DELAY=50ms\nRODENT_ADMIN_TOKEN=\"hunter2-token\nOTHER=hunter2-rest\n";
    std::fs::write(&path, broken).unwrap();
    let spawn = || rodent().env("RODENT_ENV_FILE", path.to_str().unwrap());
    let explained = format!(
        "RODENT_ENV_FILE={:?} cannot be used: line 2 (RODENT_ADMIN_TOKEN) cannot be parsed: a \
         quote is not closed by the end of the file",
        path.display().to_string()
    );

    let (code, out, err) = spawn().run(&["config", "check"]);
    let printed = format!("{out}{err}");
    assert_eq!(code, 78, "{printed}");
    assert!(printed.contains(&explained), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");

    let mut refused = spawn().no_wait().spawn();
    assert_eq!(refused.exit_code(PATIENCE), 78);
    let error = refused.wait_log(|l| l["variable"] == "RODENT_ENV_FILE");
    assert_eq!(error["error"], explained.as_str());
    refused.wait_log(|l| l["message"] == "refusing to start with an invalid configuration");
    let log = refused.raw_lines().join("\n");
    assert!(!log.contains("hunter2"), "{log}");

    std::fs::write(&path, "RODENT_DRAIN_DELAY=50ms\n").unwrap();
    let mut serving = spawn().spawn();
    std::fs::write(&path, broken).unwrap();
    serving.signal(SIGHUP);
    serving.wait_log(|l| l["message"] == "reload rejected; the running configuration is unchanged");
    let error = serving.wait_log(|l| l["variable"] == "RODENT_ENV_FILE");
    assert_eq!(error["error"], explained.as_str());
    serving.signal(SIGTERM);
    assert_eq!(serving.exit_code(PATIENCE), 0);
    let log = serving.raw_lines().join("\n");
    assert!(!log.contains("hunter2"), "{log}");

    let mut check = rodent().arg("config").arg("check").command();
    check.env("RODENT_ADMIN_TOKEN", OsStr::from_bytes(b"hunter2-\xff"));
    let output = check.output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(code_of(&output), 78, "{printed}");
    assert!(
        printed.contains("RODENT_ADMIN_TOKEN=\"***\" is invalid: expected valid UTF-8"),
        "{printed}"
    );
    assert!(!printed.contains("hunter2"), "{printed}");
}

#[test]
fn a_number_past_its_bound_is_refused_not_wrapped() {
    // Both were accepted by `config check` once: the first then wrapped an addition on every
    // request, the second made `serve` panic.
    let output = rodent()
        .env("RODENT_IDLE_TIMEOUT", "18446744073709551615ms")
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "18446744073709551615")
        .env("RODENT_BODY_LIMIT", "1073741825")
        .arg("config")
        .arg("check")
        .command()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let errors = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "RODENT_IDLE_TIMEOUT=\"18446744073709551615ms\" is invalid: expected a duration of at most 24h",
        "RODENT_BODY_LIMIT=\"1073741825\" is invalid: expected a whole number from 0 to 1073741824",
        "OTEL_BSP_MAX_QUEUE_SIZE=\"18446744073709551615\" is invalid: expected a whole number from 1 to 65536",
    ] {
        assert!(errors.contains(expected), "{expected} in {errors}");
    }
    let (code, log) = serve_with(&[("RODENT_IDLE_TIMEOUT", "25h")]);
    assert_eq!(code, 78);
    assert_eq!(named(&log), ["RODENT_IDLE_TIMEOUT"]);
}
