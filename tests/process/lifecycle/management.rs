//! `RODENT_MANAGEMENT_PORT`: the probes, `/metrics` and the admin API on a port of their own,
//! which keeps answering through the whole drain and closes only as the process exits.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::SIGTERM;

use kit::{PATIENCE, Rodent, client, eventually_async, free_port, rodent};

/// The management port's address, from its `listening` line.
fn management(rodent: &Rodent) -> SocketAddr {
    let line = rodent.wait_log(|l| l["message"] == "management listening");
    line["address"]
        .as_str()
        .expect("the line has an address")
        .parse()
        .expect("the address parses")
}

async fn status(url: String) -> u16 {
    client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url} got no response: {e}"))
        .status()
        .as_u16()
}

/// Waits until `/metrics` at `metrics` shows `n` requests in flight on `route`.
async fn wait_in_flight(metrics: &str, route: &str, n: i64) {
    let wanted = format!("rodent_http_requests_in_flight{{route=\"{route}\"}} {n}");
    eventually_async(PATIENCE, async || {
        let text = client()
            .get(metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(&wanted) {
            Ok(())
        } else {
            Err(format!("no {wanted} in /metrics"))
        }
    })
    .await;
}

fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
}

#[tokio::test]
async fn the_management_port_answers_the_probes_through_the_drain_until_the_exit() {
    let mut rodent = rodent()
        .env("RODENT_MANAGEMENT_PORT", "0")
        .env("RODENT_DRAIN_DELAY", "500ms")
        .env("RODENT_ADMIN_TOKEN", "s3cret")
        .spawn();
    let management = management(&rodent);
    let on = |path: &str| format!("http://{management}{path}");
    assert_ne!(management.port(), rodent.addr().port());

    // The application has the main port to itself; rodent's routes are on the other.
    assert_eq!(rodent.get("/").await.status(), 200);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let moved = rodent.get(path).await;
        assert_eq!(moved.status(), 404, "{path} on the main port");
        assert_eq!(moved.headers()["content-type"], "application/problem+json");
        assert_eq!(status(on(path)).await, 200, "{path} on the management port");
    }
    assert_eq!(status(on("/")).await, 404);
    let admin = client()
        .post(on("/admin/readiness/enable"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);

    // A request in flight keeps the stop going after the listener closes.
    let slow = tokio::spawn(client().get(rodent.url("/delay/2500")).send());
    wait_in_flight(&on("/metrics"), "/delay/{ms}", 1).await;
    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    eventually_async(PATIENCE, async || match status(on("/readyz")).await {
        503 => Ok(()),
        other => Err(format!("/readyz answered {other}")),
    })
    .await;
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "readiness failed late"
    );
    assert_eq!(status(on("/healthz")).await, 200);
    // The application is served through the drain delay, as without a management port.
    let served = rodent.get("/").await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["connection"], "close");

    // The main listener closes; the management port answers on.
    let closed = rodent.wait_log(|l| l["message"] == "listener closed");
    assert_eq!(closed["in_flight"], 1, "{closed}");
    assert!(refused(rodent.addr()), "the main listener is closed");
    let health = client().get(on("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["state"], "stopping");
    assert_eq!(status(on("/readyz")).await, 503);
    let metrics = client().get(on("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("rodent_lifecycle_state{state=\"stopping\"} 1"),
        "{metrics}"
    );

    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    assert!(
        refused(management),
        "the management port closed with the process"
    );
    // It closed last: after the requests in flight, before the end.
    let messages: Vec<String> = rodent
        .json_lines()
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect();
    let at = |message: &str| {
        messages
            .iter()
            .position(|m| m == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {messages:?}"))
    };
    assert!(at("in-flight requests finished") < at("management listener closed"));
    assert!(at("management listener closed") < at("stopped"));
}

/// The baseline: on one port, the probes go when the listener closes, in-flight requests or not.
#[tokio::test]
async fn without_a_management_port_the_probes_go_with_the_listener() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "300ms").spawn();
    let slow = tokio::spawn(client().get(rodent.url("/delay/1500")).send());
    kit::wait_in_flight(&rodent, "/delay/{ms}", 1).await;
    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "listener closed");
    assert!(refused(rodent.addr()), "no probe reaches the process now");
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[test]
fn rodent_probe_asks_the_management_port() {
    let port = free_port().to_string();
    let mut rodent = rodent()
        .env("RODENT_MANAGEMENT_PORT", port.as_str())
        .spawn();
    for kind in ["live", "ready"] {
        let (code, _, err) = kit::rodent()
            .env("RODENT_PORT", rodent.addr().port().to_string())
            .env("RODENT_MANAGEMENT_PORT", port.as_str())
            .run(&["probe", kind]);
        assert_eq!(code, 0, "rodent probe {kind}: {err}");
    }
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[test]
fn a_management_port_that_cannot_be_had_fails_the_start_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut busy = rodent()
        .env("RODENT_MANAGEMENT_PORT", port.as_str())
        .no_wait()
        .spawn();
    assert_eq!(busy.exit_code(PATIENCE), 1);
    let failed = busy.wait_log(|l| l["level"] == "ERROR");
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("RODENT_MANAGEMENT_PORT") && message.contains(&port),
        "{failed}"
    );

    let mut same = rodent()
        .env("RODENT_PORT", port.as_str())
        .env("RODENT_MANAGEMENT_PORT", port.as_str())
        .no_wait()
        .spawn();
    assert_eq!(same.exit_code(PATIENCE), 78);
    let log = same.raw_lines().join("\n");
    assert!(log.contains("RODENT_MANAGEMENT_PORT"), "{log}");
}
