//! Chains of services: `POST /echo` forwards its body to every backend of `RODENT_BACKENDS`,
//! with the trace context, the request id and a hop count, within what is left of its own
//! deadline; a loop ends with 508, a failing or slow backend gives a 502 naming it.
//!
//! The backends are real rodents, and a small server of the test's own that records what it
//! received.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use nix::sys::signal::Signal::SIGHUP;
use serde_json::{Value, json};

use kit::{TempDir, client, free_port, rodent};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A backend of the test's own: `/capture` records each request's headers and answers
/// `{"captured": N}`, `/slow` takes ten seconds, `/fail` answers 500.
struct Backend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Backend {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let router = Router::new()
            .route(
                "/capture",
                post(move |headers: HeaderMap| async move {
                    let mut seen = recorded.lock().unwrap();
                    seen.push(headers);
                    axum::Json(json!({ "captured": seen.len() }))
                }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    "too late"
                }),
            )
            .route(
                "/fail",
                post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "it broke") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<HeaderMap> {
        self.seen.lock().unwrap().clone()
    }
}

/// `POST /echo` with `body`, a trace and a request id: the status and the JSON answer.
async fn echo(frontend: &kit::Rodent, body: &str) -> (u16, Value) {
    let response = client()
        .post(frontend.url("/echo"))
        .header("content-type", "text/plain")
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .header("tracestate", "vendor=abc")
        .header("x-request-id", "chain-1")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /echo answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn echo_forwards_to_every_backend_with_the_trace_the_request_id_and_a_hop() {
    let capture = Backend::start().await;
    let backend = rodent().spawn();
    let frontend = rodent()
        .env(
            "RODENT_BACKENDS",
            format!("{},{}", capture.url("/capture"), backend.url("")),
        )
        .spawn();
    let (status, answer) = echo(&frontend, "hello").await;
    assert_eq!(status, 200, "{answer}");
    let backends = answer["backends"].as_array().expect("a list of backends");
    assert_eq!(backends.len(), 2, "{answer}");
    assert_eq!(backends[0]["url"], capture.url("/capture"));
    assert_eq!(backends[0]["status"], 200);
    assert_eq!(backends[0]["body"], json!({ "captured": 1 }));
    // A URL without a path is the backend's /echo, which echoes.
    assert_eq!(backends[1]["url"], backend.url("/echo"));
    assert_eq!(backends[1]["status"], 200);
    assert_eq!(backends[1]["body"], "hello");

    let seen = capture.seen();
    let headers = &seen[0];
    assert_eq!(headers["x-rodent-hops"], "1");
    assert_eq!(headers["x-request-id"], "chain-1");
    assert_eq!(headers["content-type"], "text/plain");
    let traceparent = headers["traceparent"].to_str().unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{TRACE}-")),
        "{traceparent}"
    );
    assert_eq!(headers["tracestate"], "vendor=abc");
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("rodent/")
    );
    // The backend rodent logs the same request id and trace.
    let line = backend.wait_log(|l| l["message"] == "request" && l["route"] == "/echo");
    assert_eq!(line["request_id"], "chain-1");
    assert_eq!(line["trace_id"], TRACE);
}

#[tokio::test]
async fn a_chain_that_points_back_at_itself_ends_with_508() {
    let port = free_port();
    let looping = rodent()
        .env("RODENT_PORT", port.to_string())
        .env("RODENT_BACKENDS", format!("http://127.0.0.1:{port}/echo"))
        .spawn();
    let (status, answer) = echo(&looping, "round").await;
    assert_eq!(status, 502, "{answer}");
    // Each hop failed because the next one did, down to the one refused.
    let mut depth = 0;
    let mut level = &answer;
    while level["status"] == 502 {
        level = &level["backends"][0]["body"];
        depth += 1;
    }
    assert_eq!(level["status"], 508, "{level}");
    assert_eq!(level["hops"], 10, "{level}");
    assert_eq!(depth, 10, "{answer}");

    // Refused as it arrives, too; and a hop count that is not one is a bad request.
    for (hops, expected) in [("10", 508), ("abc", 400)] {
        let response = client()
            .post(looping.url("/echo"))
            .header("x-rodent-hops", hops)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "x-rodent-hops: {hops}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}

#[tokio::test]
async fn a_backend_that_fails_or_is_too_slow_gives_a_502_naming_it() {
    let capture = Backend::start().await;
    let closed = format!("http://127.0.0.1:{}/echo", free_port());
    let frontend = rodent()
        .env(
            "RODENT_BACKENDS",
            format!("{},{closed}", capture.url("/capture")),
        )
        .spawn();
    let (status, problem) = echo(&frontend, "x").await;
    assert_eq!(status, 502, "{problem}");
    assert_eq!(problem["backend"], closed);
    assert!(
        problem["detail"].as_str().unwrap().contains(&closed),
        "{problem}"
    );
    // What the others said is still there.
    assert_eq!(problem["backends"][0]["status"], 200, "{problem}");
    assert_eq!(problem["backends"][1]["status"], Value::Null, "{problem}");

    let failing = rodent()
        .env("RODENT_BACKENDS", capture.url("/fail"))
        .spawn();
    let (status, problem) = echo(&failing, "x").await;
    assert_eq!(status, 502, "{problem}");
    assert_eq!(problem["backend"], capture.url("/fail"));
    assert_eq!(problem["backends"][0]["status"], 500);
    assert_eq!(problem["backends"][0]["body"], "it broke");

    // The call's timeout is what is left of the request's own: the 502 comes before the 503.
    let slow = rodent()
        .env("RODENT_BACKENDS", capture.url("/slow"))
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .spawn();
    let started = Instant::now();
    let (status, problem) = echo(&slow, "x").await;
    let took = started.elapsed();
    assert_eq!(status, 502, "{problem}");
    assert_eq!(problem["backend"], capture.url("/slow"));
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("did not answer within"),
        "{problem}"
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn backends_follow_a_reload() {
    let capture = Backend::start().await;
    let dir = TempDir::new("backends-reload");
    let env_file = dir.join("rodent.env");
    std::fs::write(&env_file, "RODENT_BACKENDS=\n").unwrap();
    let frontend = rodent()
        .env("RODENT_ENV_FILE", env_file.to_str().unwrap())
        .spawn();
    let plain = client()
        .post(frontend.url("/echo"))
        .header("content-type", "text/plain")
        .body("alone")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.text().await.unwrap(), "alone");

    std::fs::write(
        &env_file,
        format!("RODENT_BACKENDS={}\n", capture.url("/capture")),
    )
    .unwrap();
    frontend.signal(SIGHUP);
    frontend.wait_log(|l| l["message"] == "configuration reloaded");
    let (status, answer) = echo(&frontend, "chained").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["backends"][0]["url"], capture.url("/capture"));
    assert_eq!(capture.seen().len(), 1);
}
