//! Failing on purpose, for testing that a platform catches a bad release or a dying workload:
//! `RODENT_FAULT_UNREADY` (never ready), `RODENT_FAULT_UNHEALTHY` (`/healthz` fails) and
//! `POST /admin/crash` (exit 1 at once, skipping the drain).

use std::time::{Duration, Instant};

use reqwest::Method;

use super::{TOKEN, admin, get_json};
use kit::{PATIENCE, PidFile, client, rodent};

#[tokio::test]
async fn an_unready_instance_serves_but_never_turns_ready() {
    let rodent = rodent()
        .env("RODENT_FAULT_UNREADY", "true")
        .env("RODENT_ADMIN_TOKEN", TOKEN)
        .spawn();
    let (status, readyz) = get_json(&rodent, "/readyz").await;
    assert_eq!(status, 503, "{readyz}");
    assert_eq!(readyz["output"], "failing: fault", "{readyz}");
    let (status, check) = get_json(&rodent, "/readyz/fault").await;
    assert_eq!(status, 503);
    assert!(
        check.to_string().contains("RODENT_FAULT_UNREADY"),
        "the check says why: {check}"
    );
    // Switching readiness on through the admin API does not make it ready.
    let (status, _) = admin(&rodent, Method::POST, "/admin/readiness/enable", None).await;
    assert_eq!(status, 200);
    assert_eq!(rodent.get("/readyz").await.status(), 503);
    // Alive, and serving whoever reaches it anyway.
    assert_eq!(rodent.get("/healthz").await.status(), 200);
    assert_eq!(rodent.get("/").await.status(), 200);
    // The image's health check says the same.
    let url = format!("http://{}", rodent.addr());
    let (code, _, stderr) = kit::rodent().run(&["probe", "ready", "--url", &url]);
    assert_eq!(code, 1, "{stderr}");
    let (code, _, stderr) = kit::rodent().run(&["probe", "live", "--url", &url]);
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn an_unhealthy_instance_fails_healthz_and_stays_ready() {
    let rodent = rodent().env("RODENT_FAULT_UNHEALTHY", "true").spawn();
    let response = rodent.get("/healthz").await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/health+json"
    );
    let health: serde_json::Value = response.json().await.unwrap();
    assert_eq!(health["status"], "fail");
    assert!(
        health["output"]
            .as_str()
            .unwrap()
            .contains("RODENT_FAULT_UNHEALTHY"),
        "{health}"
    );
    rodent.wait_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("liveness failed"))
    });
    // Liveness and readiness are apart: the orchestrator restarts it, it is not taken out first.
    assert_eq!(rodent.get("/readyz").await.status(), 200);
    assert_eq!(rodent.get("/").await.status(), 200);
    let url = format!("http://{}", rodent.addr());
    let (code, _, _) = kit::rodent().run(&["probe", "live", "--url", &url]);
    assert_eq!(code, 1);
}

#[tokio::test]
async fn a_crash_exits_1_at_once_without_the_drain() {
    let pid_file = PidFile::new("crash");
    let mut rodent = pid_file
        .spawn()
        .env("RODENT_ADMIN_TOKEN", TOKEN)
        // A drain long enough that an exit through it could not pass for a crash.
        .env("RODENT_DRAIN_DELAY", "5s")
        .spawn();
    // A request in flight is cut, not drained.
    let slow = tokio::spawn(client().get(rodent.url("/delay/10000")).send());
    kit::wait_in_flight(&rodent, "/delay/{ms}", 1).await;

    // Without the token it is refused, and nothing happens.
    let refused = client()
        .post(rodent.url("/admin/crash"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(rodent.is_running());

    let started = Instant::now();
    // The process is gone before it could answer: the connection just ends.
    let crashed = client()
        .post(rodent.url("/admin/crash"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(crashed.is_err(), "the crash answered: {crashed:?}");
    assert_eq!(rodent.exit_code(PATIENCE), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        slow.await.unwrap().is_err(),
        "the request in flight was not cut"
    );

    let lines = rodent.json_lines();
    let last = lines.last().expect("the crash is logged");
    assert_eq!(
        last["message"], "crashing on purpose: exit 1 now, without the drain",
        "{last}"
    );
    assert_eq!(last["reason"], "POST /admin/crash");
    assert!(
        !lines
            .iter()
            .any(|l| l["message"] == "draining" || l["message"] == "stopped"),
        "a crash does not drain"
    );
    // Left behind, as after any crash: the next start takes it over.
    assert!(pid_file.path().exists());
    let mut next = pid_file.spawn().spawn();
    assert_eq!(next.get("/healthz").await.status(), 200);
    next.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(next.exit_code(PATIENCE), 0);
}
