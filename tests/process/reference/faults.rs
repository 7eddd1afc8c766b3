//! Fault injection: `RODENT_FAULT_ERROR_RATE` and `RODENT_FAULT_DELAY` on application requests
//! (never the probes, `/metrics` or the admin API), counted in `rodent_faults_injected_total`,
//! marked in the access line, changed through `/admin/faults` until a reload resets them.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal::SIGHUP;
use reqwest::Method;

use super::{TOKEN, admin, get_json, wait_metric};
use kit::{PATIENCE, TempDir, client, rodent};

#[tokio::test]
async fn an_error_rate_of_one_fails_every_application_request_and_nothing_of_rodents() {
    let rodent = rodent()
        .env("RODENT_FAULT_ERROR_RATE", "1")
        .env("RODENT_ADMIN_TOKEN", TOKEN)
        .spawn();
    for path in ["/", "/version", "/delay/1", "/headers"] {
        let response = rodent.get(path).await;
        assert_eq!(response.status(), 500, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 500);
        assert_eq!(problem["fault"]["injected"], true, "{problem}");
        assert_eq!(problem["fault"]["kind"], "error");
        assert_eq!(problem["fault"]["set_by"], "RODENT_FAULT_ERROR_RATE");
    }
    // The probes, /metrics and the admin API are rodent's, and never touched.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(rodent.get(path).await.status(), 200, "{path}");
    }
    let (status, faults) = admin(&rodent, Method::GET, "/admin/faults", None).await;
    assert_eq!(status, 200);
    assert_eq!(faults["error_rate"], 1.0);
    let (status, _) = admin(&rodent, Method::POST, "/admin/readiness/disable", None).await;
    assert_eq!(status, 200);

    wait_metric(&rodent, r#"rodent_faults_injected_total{kind="error"}"#, 4).await;
    let metrics = rodent.metrics().await;
    assert_eq!(
        metrics.expect::<u64>(r#"rodent_faults_injected_total{kind="delay"}"#),
        0
    );
    // Counted as the 500s they are, too.
    assert_eq!(
        metrics.expect::<u64>(r#"rodent_http_requests_total{method="GET",route="/",status="5xx"}"#),
        1
    );
    let line = rodent.wait_log(|l| l["message"] == "request" && l["route"] == "/");
    assert_eq!(line["status"], 500);
    assert_eq!(line["note"], "injected error");
    let probe = rodent.wait_log(|l| l["message"] == "request" && l["route"] == "/healthz");
    assert!(probe.get("note").is_none(), "{probe}");
}

#[tokio::test]
async fn an_error_rate_between_zero_and_one_fails_about_that_share() {
    let rodent = rodent().env("RODENT_FAULT_ERROR_RATE", "0.5").spawn();
    let mut failed = 0;
    for _ in 0..200 {
        match rodent.get("/").await.status().as_u16() {
            200 => {}
            500 => failed += 1,
            other => panic!("GET / answered {other}"),
        }
    }
    // Binomial(200, 0.5): outside 60..=140 once in about 10^8 runs.
    assert!((60..=140).contains(&failed), "{failed} of 200 failed");
    wait_metric(
        &rodent,
        r#"rodent_faults_injected_total{kind="error"}"#,
        failed,
    )
    .await;
}

#[tokio::test]
async fn a_delay_is_waited_before_the_handler_and_marked() {
    let rodent = rodent().env("RODENT_FAULT_DELAY", "200ms..300ms").spawn();
    let started = Instant::now();
    let (status, _) = get_json(&rodent, "/").await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(200), "GET / took {took:?}");
    let line = rodent.wait_log(|l| l["message"] == "request" && l["route"] == "/");
    let note = line["note"].as_str().expect("the access line has a note");
    let waited: u64 = note
        .strip_prefix("injected delay ")
        .and_then(|ms| ms.strip_suffix("ms"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("{note}"));
    assert!((200..=300).contains(&waited), "{note}");
    assert!(line["latency_ms"].as_f64().unwrap() >= 200.0, "{line}");
    wait_metric(&rodent, r#"rodent_faults_injected_total{kind="delay"}"#, 1).await;
    // The probes do not wait.
    let started = Instant::now();
    assert_eq!(rodent.get("/readyz").await.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_delay_counts_against_the_request_timeout_and_ends_at_the_deadline() {
    let rodent = rodent()
        .env("RODENT_FAULT_DELAY", "20s..30s")
        .env("RODENT_REQUEST_TIMEOUT", "300ms")
        .spawn();
    let started = Instant::now();
    let response = rodent.get("/").await;
    let took = started.elapsed();
    assert_eq!(response.status(), 503);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("RODENT_REQUEST_TIMEOUT"),
        "{problem}"
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(
        took < Duration::from_secs(5),
        "the wait went past the deadline: {took:?}"
    );
    wait_metric(&rodent, r#"rodent_faults_injected_total{kind="delay"}"#, 1).await;
    wait_metric(
        &rodent,
        r#"rodent_http_request_timeouts_total{route="/"}"#,
        1,
    )
    .await;
}

#[tokio::test]
async fn the_admin_api_changes_the_faults_until_a_reload_resets_them() {
    let dir = TempDir::new("faults-reload");
    let env_file = dir.join("rodent.env");
    std::fs::write(&env_file, "RODENT_FAULT_ERROR_RATE=0\n").unwrap();
    let rodent = rodent()
        .env("RODENT_ADMIN_TOKEN", TOKEN)
        .env("RODENT_ENV_FILE", env_file.to_str().unwrap())
        .spawn();
    let (status, faults) = admin(&rodent, Method::GET, "/admin/faults", None).await;
    assert_eq!(status, 200);
    assert_eq!(faults["error_rate"], 0.0);
    assert_eq!(faults["delay"], serde_json::Value::Null);
    assert_eq!(faults["set_by"], "configuration");

    // Without the token, nothing changes.
    let unauthorized = client()
        .put(rodent.url("/admin/faults"))
        .body(r#"{"error_rate": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(rodent.get("/").await.status(), 200);

    let (status, faults) = admin(
        &rodent,
        Method::PUT,
        "/admin/faults",
        Some(r#"{"error_rate": 1, "delay": "10ms..20ms"}"#),
    )
    .await;
    assert_eq!(status, 200, "{faults}");
    assert_eq!(faults["error_rate"], 1.0);
    assert_eq!(faults["delay"], "10ms..20ms");
    assert_eq!(faults["set_by"], "admin API");
    assert_eq!(faults["configured"]["error_rate"], 0.0);
    let (status, problem) = get_json(&rodent, "/").await;
    assert_eq!(status, 500);
    assert_eq!(problem["fault"]["set_by"], "PUT /admin/faults");

    // Bad values are refused, naming the field, and change nothing.
    // Not JSON is a 400; JSON that cannot be these faults a 422.
    for (body, status_wanted, field) in [
        (r#"{"error_rate": 1.5}"#, 422, "error_rate"),
        (r#"{"error_rate": -0.1}"#, 422, "error_rate"),
        (r#"{"error_rate": "half"}"#, 422, "error_rate"),
        (r#"{"delay": "2s..1s"}"#, 422, "delay"),
        (r#"{"delay": "25h"}"#, 422, "delay"),
        (r#"{"delay": 100}"#, 422, "expected"),
        (r#"{"error_rate": 0, "dealy": "1s"}"#, 422, "dealy"),
        ("[0.5]", 422, "expected"),
        ("not json", 400, "expected"),
        (r#"{"error_rate": 0.5"#, 400, "expected"),
        ("", 400, "expected"),
    ] {
        let (status, problem) = admin(&rodent, Method::PUT, "/admin/faults", Some(body)).await;
        assert_eq!(status, status_wanted, "{body}: {problem}");
        assert_eq!(problem["status"], status_wanted, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{body}: {problem}"
        );
    }
    let (_, faults) = admin(&rodent, Method::GET, "/admin/faults", None).await;
    assert_eq!(faults["error_rate"], 1.0);

    // A reload puts the configured values back, and applies a new configured value.
    std::fs::write(&env_file, "RODENT_FAULT_DELAY=1ms..2ms\n").unwrap();
    rodent.signal(SIGHUP);
    rodent.wait_log(|l| l["message"] == "faults reset to the configured values");
    let (_, faults) = admin(&rodent, Method::GET, "/admin/faults", None).await;
    assert_eq!(faults["set_by"], "configuration", "{faults}");
    assert_eq!(faults["error_rate"], 0.0);
    assert_eq!(faults["delay"], "1ms..2ms");
    assert_eq!(rodent.get("/").await.status(), 200);

    // DELETE resets too.
    admin(
        &rodent,
        Method::PUT,
        "/admin/faults",
        Some(r#"{"error_rate": 1}"#),
    )
    .await;
    let (status, faults) = admin(&rodent, Method::DELETE, "/admin/faults", None).await;
    assert_eq!(status, 200);
    assert_eq!(faults["error_rate"], 0.0);
    assert_eq!(rodent.get("/").await.status(), 200);
}

#[tokio::test]
async fn without_a_token_the_fault_routes_do_not_exist() {
    let rodent = rodent().spawn();
    let (status, _) = admin(&rodent, Method::GET, "/admin/faults", None).await;
    assert_eq!(status, 404);
    let (status, _) = admin(
        &rodent,
        Method::PUT,
        "/admin/faults",
        Some(r#"{"error_rate": 1}"#),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(rodent.get("/").await.status(), 200);
}

#[test]
fn bad_fault_and_backend_values_are_named_at_start_and_shown_by_config() {
    let spawn = rodent()
        .env("RODENT_FAULT_ERROR_RATE", "2")
        .env("RODENT_FAULT_DELAY", "2s..1s")
        .env("RODENT_FAULT_UNREADY", "yes")
        .env("RODENT_FAULT_UNHEALTHY", "no")
        .env("RODENT_BACKENDS", "ftp://backend")
        .no_wait();
    let (code, _, stderr) = spawn.run(&["config", "check"]);
    assert_eq!(code, 78, "{stderr}");
    for variable in [
        "RODENT_FAULT_ERROR_RATE=\"2\"",
        "RODENT_FAULT_DELAY=\"2s..1s\"",
        "RODENT_FAULT_UNREADY=\"yes\"",
        "RODENT_FAULT_UNHEALTHY=\"no\"",
        "RODENT_BACKENDS=\"ftp://backend\"",
    ] {
        assert!(stderr.contains(variable), "{variable} in {stderr}");
    }
    let mut serving = spawn.spawn();
    assert_eq!(serving.exit_code(PATIENCE), 78);
    let named: Vec<String> = serving
        .json_lines()
        .iter()
        .filter(|l| l["message"] == "invalid configuration")
        .filter_map(|l| l["variable"].as_str().map(str::to_string))
        .collect();
    assert_eq!(named.len(), 5, "{named:?}");

    let (code, stdout, _) = rodent()
        .env("RODENT_FAULT_ERROR_RATE", "0.25")
        .env("RODENT_FAULT_DELAY", "300ms")
        .env("RODENT_BACKENDS", "http://backend:8080")
        .run(&["config"]);
    assert_eq!(code, 0);
    for line in [
        "RODENT_FAULT_ERROR_RATE=0.25",
        "RODENT_FAULT_DELAY=300ms",
        "RODENT_FAULT_UNREADY=false",
        "RODENT_FAULT_UNHEALTHY=false",
        "RODENT_BACKENDS=http://backend:8080",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in {stdout}");
    }
}

#[tokio::test]
async fn with_a_management_port_the_fault_routes_move_there_and_its_routes_stay_untouched() {
    let rodent = rodent()
        .env("RODENT_ADMIN_TOKEN", TOKEN)
        .env("RODENT_MANAGEMENT_PORT", "0")
        .env("RODENT_FAULT_ERROR_RATE", "1")
        .spawn();
    let line = rodent.wait_log(|l| l["message"] == "management listening");
    let management = line["address"].as_str().expect("an address").to_string();
    let on = |path: &str| format!("http://{management}{path}");
    let send = async |method: Method, url: String, token: Option<&str>, body: Option<&str>| {
        let mut request = client().request(method, &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    };

    // The application's routes on the main port take the faults...
    assert_eq!(rodent.get("/").await.status(), 500);
    // ...the management port's routes none of them.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _) = send(Method::GET, on(path), None, None).await;
        assert_eq!(status, 200, "{path} on the management port");
    }
    // The fault routes are with the rest of the admin API, behind the same token.
    let (status, faults) = send(Method::GET, on("/admin/faults"), Some(TOKEN), None).await;
    assert_eq!(status, 200, "{faults}");
    assert_eq!(faults["error_rate"], 1.0);
    let (status, _) = send(Method::GET, on("/admin/faults"), Some("wrong"), None).await;
    assert_eq!(status, 401);
    let (status, _) = send(Method::GET, rodent.url("/admin/faults"), Some(TOKEN), None).await;
    assert_eq!(status, 404, "/admin/faults on the main port");
    let body = Some(r#"{"error_rate": 0}"#);
    let (status, faults) = send(Method::PUT, on("/admin/faults"), Some(TOKEN), body).await;
    assert_eq!(status, 200, "{faults}");
    assert_eq!(rodent.get("/").await.status(), 200);
    // /env stays an application route, on the main port, behind the token.
    let (status, env) = send(Method::GET, rodent.url("/env"), Some(TOKEN), None).await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["RODENT_ADMIN_TOKEN"], "***");
    let (status, _) = send(Method::GET, rodent.url("/env"), None, None).await;
    assert_eq!(status, 401);

    let metrics = client().get(on("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("rodent_faults_injected_total{kind=\"error\"} 1\n"),
        "{metrics}"
    );
}
