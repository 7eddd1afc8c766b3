//! What an operator does to a running instance: reload it (SIGHUP), ask what it is doing
//! (SIGQUIT), take it out of rotation (admin API), read its probes in detail.

use nix::sys::signal::Signal::{SIGHUP, SIGQUIT, SIGTERM, SIGUSR1, SIGWINCH};

use kit::{PATIENCE, Rodent, TempDir, client, eventually, rodent, wait_in_flight};

fn with_env_file(dir: &TempDir, contents: &str) -> kit::Spawn {
    let path = dir.join("rodent.env");
    std::fs::write(&path, contents).unwrap();
    rodent().env("RODENT_ENV_FILE", path.to_str().unwrap())
}

fn rewrite(dir: &TempDir, contents: &str) {
    std::fs::write(dir.join("rodent.env"), contents).unwrap();
}

fn dump(rodent: &Rodent, nth: usize) -> serde_json::Value {
    rodent.signal(SIGQUIT);
    eventually(PATIENCE, || {
        let mut dumps: Vec<_> = rodent
            .json_lines()
            .into_iter()
            .filter(|l| l["message"] == "state dump")
            .collect();
        match dumps.len() > nth {
            true => Ok(dumps.swap_remove(nth)),
            false => Err(format!("no state dump number {nth}")),
        }
    })
}

#[tokio::test]
async fn sigquit_dumps_the_state_and_the_process_keeps_serving() {
    let rodent = rodent().spawn();
    let slow = tokio::spawn(client().get(rodent.url("/delay/2000")).send());
    wait_in_flight(&rodent, "/delay/{ms}", 1).await;
    let dumped = dump(&rodent, 0);
    assert_eq!(dumped["state"], "ready");
    assert_eq!(dumped["in_flight"], 1);
    assert_eq!(dumped["in_flight_by_route"], "/delay/{ms}=1");
    assert!(dumped["connections"].as_i64().unwrap() >= 1, "{dumped}");
    assert_eq!(rodent.get("/readyz").await.status(), 200);
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn a_valid_reload_applies_and_changes_the_log_filter() {
    let dir = TempDir::new("reload");
    let rodent = with_env_file(
        &dir,
        "RODENT_LOG=info,rodent::access=warn\nRODENT_DRAIN_DELAY=50ms\n",
    )
    .spawn();
    assert_eq!(rodent.get("/").await.status(), 200);

    // RODENT_PORT cannot change at run time: its change is reported as needing a restart, at
    // warn level, which also marks a point in the log after the first request.
    rewrite(
        &dir,
        "RODENT_LOG=info\nRODENT_DRAIN_DELAY=750ms\nRODENT_PORT=1\n",
    );
    rodent.signal(SIGHUP);
    let restart = rodent.wait_log(|l| l["message"] == "changed, but applies only after a restart");
    assert_eq!(restart["variable"], "RODENT_PORT");
    let reloaded = rodent.wait_log(|l| l["message"] == "configuration reloaded");
    assert_eq!(reloaded["changed"], "RODENT_LOG,RODENT_DRAIN_DELAY");
    assert!(
        !rodent
            .json_lines()
            .iter()
            .any(|l| l["message"] == "request"),
        "with access logs at warn, the first request was not logged"
    );

    assert_eq!(rodent.get("/").await.status(), 200);
    rodent.wait_log(|l| l["message"] == "request" && l["route"] == "/");
    assert_eq!(dump(&rodent, 0)["drain_delay"], "750ms");

    // The format is reloadable too: from here on, lines are text.
    rewrite(&dir, "RODENT_LOG=info\nRODENT_LOG_FORMAT=text\n");
    rodent.signal(SIGHUP);
    eventually(PATIENCE, || {
        let lines = rodent.raw_lines();
        match lines.iter().any(|l| {
            !l.starts_with('{')
                && l.contains("configuration reloaded")
                && l.contains("RODENT_LOG_FORMAT")
        }) {
            true => Ok(()),
            false => Err(format!("no text line: {lines:?}")),
        }
    });
}

#[tokio::test]
async fn an_invalid_reload_changes_nothing() {
    let dir = TempDir::new("bad-reload");
    let mut rodent = with_env_file(&dir, "RODENT_DRAIN_DELAY=100ms\n").spawn();
    rewrite(&dir, "RODENT_DRAIN_DELAY=banana\nRODENT_MAX_INFLIGHT=0\n");
    rodent.signal(SIGHUP);
    let rejected = rodent
        .wait_log(|l| l["message"] == "reload rejected; the running configuration is unchanged");
    assert_eq!(rejected["problems"], 2);
    let named: Vec<_> = rodent
        .json_lines()
        .into_iter()
        .filter(|l| l["message"] == "invalid configuration")
        .map(|l| l["variable"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(named, ["RODENT_DRAIN_DELAY", "RODENT_MAX_INFLIGHT"]);

    assert!(rodent.is_running());
    assert_eq!(rodent.get("/readyz").await.status(), 200);
    assert_eq!(dump(&rodent, 0)["drain_delay"], "100ms");
    let metrics = rodent.metrics().await;
    assert_eq!(
        metrics.value::<u64>("rodent_reloads_total{outcome=\"rejected\"}"),
        Some(1),
        "{}",
        metrics.text()
    );

    // A missing env file is just as invalid, and just as harmless.
    std::fs::remove_file(dir.join("rodent.env")).unwrap();
    rodent.signal(SIGHUP);
    let missing = rodent.wait_log(|l| {
        l["message"] == "invalid configuration" && l["variable"] == "RODENT_ENV_FILE"
    });
    assert!(
        missing["error"].as_str().unwrap().contains("No such file"),
        "{missing}"
    );
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

/// The handler timeout and the body limit live in the router's stack: a reload swaps in a
/// new one, on kept-alive connections too, and a request in flight finishes on its own.
#[tokio::test]
async fn a_reload_swaps_the_timeout_and_the_body_limit() {
    let dir = TempDir::new("reload-stack");
    let rodent = with_env_file(&dir, "RODENT_REQUEST_TIMEOUT=5s\nRODENT_BODY_LIMIT=1024\n").spawn();
    // One client throughout: its kept-alive connection serves requests both sides of the swap.
    let client = client();
    let echo = |len: usize| {
        client
            .post(rodent.url("/echo"))
            .body(vec![b'a'; len])
            .send()
    };
    assert_eq!(echo(1024).await.unwrap().status(), 200);
    let in_flight = tokio::spawn(client.get(rodent.url("/delay/1500")).send());
    wait_in_flight(&rodent, "/delay/{ms}", 1).await;

    rewrite(&dir, "RODENT_REQUEST_TIMEOUT=300ms\nRODENT_BODY_LIMIT=64\n");
    rodent.signal(SIGHUP);
    let reloaded = rodent.wait_log(|l| l["message"] == "configuration reloaded");
    assert_eq!(
        reloaded["changed"],
        "RODENT_REQUEST_TIMEOUT,RODENT_BODY_LIMIT"
    );
    let detail = |body: serde_json::Value| body["detail"].as_str().unwrap().to_string();
    let timed_out = client.get(rodent.url("/delay/1500")).send().await.unwrap();
    assert_eq!(timed_out.status(), 503);
    let timed_out = detail(timed_out.json().await.unwrap());
    assert!(timed_out.contains("within 300ms"), "{timed_out}");
    let too_large = echo(1024).await.unwrap();
    assert_eq!(too_large.status(), 413);
    let too_large = detail(too_large.json().await.unwrap());
    assert!(too_large.contains("larger than 64 bytes"), "{too_large}");
    // Begun under the 5 s timeout, it finishes under it.
    assert_eq!(in_flight.await.unwrap().unwrap().status(), 200);

    // An invalid reload builds nothing: the bounds stay as they are.
    rewrite(
        &dir,
        "RODENT_REQUEST_TIMEOUT=soon\nRODENT_BODY_LIMIT=1024\n",
    );
    rodent.signal(SIGHUP);
    rodent.wait_log(|l| l["message"] == "reload rejected; the running configuration is unchanged");
    assert_eq!(echo(1024).await.unwrap().status(), 413);
    assert_eq!(echo(64).await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_admin_api_switches_readiness_behind_its_token() {
    let dir = TempDir::new("admin");
    let rodent = with_env_file(&dir, "").spawn();
    let client = client();
    let disable = rodent.url("/admin/readiness/disable");

    let absent = client
        .post(&disable)
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(absent.status(), 404, "no token configured: no admin API");

    rewrite(&dir, "RODENT_ADMIN_TOKEN=0123456789abcdef\n");
    rodent.signal(SIGHUP);
    rodent.wait_log(|l| l["message"] == "configuration reloaded");

    let wrong = client
        .post(&disable)
        .bearer_auth("0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let missing = client.post(&disable).send().await.unwrap();
    assert_eq!(missing.status(), 401);

    let disabled = client
        .post(&disable)
        .bearer_auth("0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    let ready = rodent.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["output"], "failing: enabled");
    assert_eq!(rodent.get("/healthz").await.status(), 200);
    let excluded = rodent.get("/readyz?exclude=enabled").await;
    assert_eq!(excluded.status(), 200);

    let enabled = client
        .post(rodent.url("/admin/readiness/enable"))
        .bearer_auth("0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), 200);
    assert_eq!(rodent.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn readyz_explains_itself() {
    let rodent = rodent().spawn();
    let verbose: serde_json::Value = rodent.get("/readyz?verbose").await.json().await.unwrap();
    assert_eq!(verbose["status"], "pass");
    assert_eq!(verbose["checks"]["lifecycle"][0]["status"], "pass");
    assert_eq!(verbose["checks"]["enabled"][0]["status"], "pass");

    let one = rodent.get("/readyz/lifecycle").await;
    assert_eq!(one.status(), 200);
    let unknown = rodent.get("/readyz/nonesuch").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );

    // The lifecycle check cannot be excluded: draining is never ready.
    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "draining");
    let excluded = rodent.get("/readyz?exclude=lifecycle").await;
    assert_eq!(excluded.status(), 503);
}

#[test]
fn signals_without_a_meaning_never_kill_the_process() {
    let mut rodent = rodent().spawn();
    // SIGUSR2 is `rodent restart`: tests/host.
    for signal in [SIGUSR1, SIGWINCH] {
        rodent.signal(signal);
        rodent.wait_log(|l| {
            l["message"] == "signal received; it has no meaning here"
                && l["signal"] == signal.as_str()
        });
    }
    assert!(rodent.is_running());
    // Two signals sent back to back are both handled.
    rodent.signal(SIGHUP);
    rodent.signal(SIGQUIT);
    rodent.wait_log(|l| l["message"] == "configuration reloaded");
    rodent.wait_log(|l| l["message"] == "state dump");
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}
