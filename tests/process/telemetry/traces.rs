//! Traces as a collector sees them: the server span of each request continues the caller's
//! trace, spans served during the drain are flushed before the exit, and a collector that is
//! down or silent costs spans, never requests or the grace period.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal::SIGTERM;

use super::receiver::Receiver;
use super::scrape::Scrape;
use kit::{PATIENCE, Spawn, client, eventually_async, rodent, wait_in_flight};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

/// rodent exporting to `endpoint`, every 20 ms so a test need not wait for a batch.
fn exporting_to(endpoint: &str) -> Spawn {
    rodent()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "20")
}

/// The `traceresponse` header split into its four fields.
fn traceresponse(response: &reqwest::Response) -> Vec<String> {
    let value = response
        .headers()
        .get("traceresponse")
        .expect("a traced response carries traceresponse")
        .to_str()
        .unwrap();
    value.split('-').map(str::to_string).collect()
}

#[tokio::test]
async fn a_request_continues_its_callers_trace_over_http_protobuf() {
    continues_the_callers_trace("http/protobuf").await;
}

#[tokio::test]
async fn a_request_continues_its_callers_trace_over_grpc() {
    continues_the_callers_trace("grpc").await;
}

async fn continues_the_callers_trace(protocol: &str) {
    let receiver = Receiver::start();
    let mut rodent = exporting_to(&receiver.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_SERVICE_NAME", "checkout")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test%20bench",
        )
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cret")
        .spawn();
    let exporting = rodent.wait_log(|l| l["message"] == "exporting traces");
    assert_eq!(exporting["protocol"], protocol);

    let response = client()
        .get(rodent.url("/delay/5"))
        .header("traceparent", traceparent(CALLER_TRACE, CALLER_SPAN))
        .header("tracestate", "vendor=abc")
        .header("user-agent", "telemetry-test/1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = traceresponse(&response);
    assert_eq!(answer[0], "00");
    assert_eq!(answer[1], CALLER_TRACE, "the caller's trace goes on");
    assert_ne!(answer[2], CALLER_SPAN, "the server span is a new span");
    assert_eq!(answer[3], "01", "the caller sampled it, so do we");

    let span = receiver.wait_for("GET /delay/{ms}", |s| s.span.name == "GET /delay/{ms}");
    assert_eq!(span.trace_id(), CALLER_TRACE);
    assert_eq!(span.parent_span_id(), CALLER_SPAN);
    assert_eq!(span.span_id(), answer[2]);
    assert_eq!(span.span.trace_state, "vendor=abc");
    assert_eq!(
        span.span.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
    );
    let port = rodent.addr().port().to_string();
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", "/delay/{ms}"),
        ("http.response.status_code", "200"),
        ("url.path", "/delay/5"),
        ("url.scheme", "http"),
        ("network.protocol.version", "1.1"),
        ("server.address", "127.0.0.1"),
        ("server.port", &port),
        ("client.address", "127.0.0.1"),
        ("network.peer.address", "127.0.0.1"),
        ("user_agent.original", "telemetry-test/1"),
    ] {
        assert_eq!(
            span.attribute(key).as_deref(),
            Some(value),
            "{key} in {:?}",
            span.span.attributes
        );
    }
    assert_eq!(span.attribute("error.type"), None);
    assert_eq!(span.resource["service.name"], "checkout");
    assert_eq!(span.resource["deployment.environment.name"], "test bench");
    assert_eq!(span.resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(span.resource["telemetry.sdk.language"], "rust");
    assert_eq!(span.headers["x-api-key"], "s3cret");

    let logged = rodent.wait_log(|l| l["message"] == "request" && l["route"] == "/delay/{ms}");
    assert_eq!(logged["trace_id"], CALLER_TRACE);

    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn server_spans_follow_the_http_conventions_for_new_traces_errors_and_unknown_routes() {
    let receiver = Receiver::start();
    let mut rodent = exporting_to(&receiver.endpoint()).spawn();
    let client = client();

    // No traceparent: a new trace, whose id is in the header and the log line.
    let fresh = rodent.get("/status/503").await;
    assert_eq!(fresh.status(), 503);
    let answer = traceresponse(&fresh);
    let failed = receiver.wait_for("GET /status/{code}", |s| s.span_id() == answer[2]);
    assert_eq!(failed.trace_id(), answer[1]);
    assert!(failed.span.parent_span_id.is_empty(), "a root span");
    assert_eq!(failed.attribute("error.type").as_deref(), Some("503"));
    let status = failed.span.status.clone().expect("a status");
    assert_eq!(
        status.code,
        opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32
    );
    let logged = rodent.wait_log(|l| l["message"] == "request" && l["status"] == 503);
    assert_eq!(logged["trace_id"], answer[1].as_str());

    // A client error is not a server error.
    let missing = rodent.get("/status/404").await;
    let answer = traceresponse(&missing);
    let not_found = receiver.wait_for("the 404", |s| s.span_id() == answer[2]);
    assert_eq!(not_found.attribute("error.type"), None);
    assert_eq!(
        not_found.attribute("http.response.status_code").as_deref(),
        Some("404")
    );

    // No route matched: no http.route, and the span is named after the method alone.
    let unknown = rodent.get("/no/such/route").await;
    let answer = traceresponse(&unknown);
    let unmatched = receiver.wait_for("the unmatched request", |s| s.span_id() == answer[2]);
    assert_eq!(unmatched.span.name, "GET");
    assert_eq!(unmatched.attribute("http.route"), None);
    assert_eq!(
        unmatched.attribute("url.path").as_deref(),
        Some("/no/such/route")
    );

    // An invalid traceparent is ignored: a new trace starts.
    let invalid = client
        .get(rodent.url("/"))
        .header("traceparent", "00-not-a-trace-01")
        .send()
        .await
        .unwrap();
    let answer = traceresponse(&invalid);
    assert_eq!(answer[1].len(), 32);
    let root = receiver.wait_for("GET /", |s| s.span_id() == answer[2]);
    assert!(root.span.parent_span_id.is_empty());

    // Probes and scrapes are not traced.
    let probe = rodent.get("/healthz").await;
    assert!(probe.headers().get("traceresponse").is_none());

    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    assert!(
        receiver
            .spans()
            .iter()
            .all(|s| !s.span.name.contains("/healthz") && !s.span.name.contains("/metrics")),
        "probes and scrapes were traced"
    );
}

#[tokio::test]
async fn spans_of_requests_served_during_the_drain_are_exported_before_the_exit() {
    let receiver = Receiver::start();
    // A schedule delay longer than the test: only the flush at shutdown exports anything.
    let mut rodent = rodent()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .env("RODENT_DRAIN_DELAY", "1s")
        .spawn();
    let in_flight_trace = "11111111111111111111111111111111";
    let draining_trace = "22222222222222222222222222222222";

    let slow = tokio::spawn(
        client()
            .get(rodent.url("/delay/1500"))
            .header("traceparent", traceparent(in_flight_trace, CALLER_SPAN))
            .send(),
    );
    wait_in_flight(&rodent, "/delay/{ms}", 1).await;
    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "draining");
    let during = client()
        .get(rodent.url("/status/201"))
        .header("traceparent", traceparent(draining_trace, CALLER_SPAN))
        .send()
        .await
        .expect("served during the drain delay");
    assert_eq!(during.status(), 201);
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);

    assert_eq!(rodent.exit_code(PATIENCE), 0);
    let spans = receiver.spans();
    let names: Vec<(String, &str)> = spans
        .iter()
        .map(|s| (s.trace_id(), s.span.name.as_str()))
        .collect();
    assert!(
        names.contains(&(in_flight_trace.to_string(), "GET /delay/{ms}")),
        "{names:?}"
    );
    assert!(
        names.contains(&(draining_trace.to_string(), "GET /status/{code}")),
        "{names:?}"
    );
    let drain = spans
        .iter()
        .find(|s| s.span.name == "rodent drain")
        .unwrap_or_else(|| panic!("no drain span in {names:?}"));
    assert_eq!(drain.attribute("signal").as_deref(), Some("SIGTERM"));
    let events = drain.event_names();
    for step in ["draining", "listener closed", "in-flight requests finished"] {
        assert!(events.contains(&step), "{step} missing from {events:?}");
    }
    let dropped = rodent
        .raw_lines()
        .iter()
        .any(|l| l.contains("cannot export spans"));
    assert!(!dropped, "no span was dropped");
}

/// A port nothing listens on.
fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_collector_that_is_down_costs_spans_not_requests_nor_the_grace() {
    let grace = Duration::from_secs(2);
    let mut rodent = exporting_to(&format!("http://127.0.0.1:{}", unused_port()))
        .env("RODENT_SHUTDOWN_GRACE", "2s")
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .spawn();
    for i in 0..20 {
        let response = rodent.get(&format!("/delay/{i}")).await;
        assert_eq!(response.status(), 200);
    }
    rodent.wait_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cannot export spans"))
    });
    let scrape = eventually_async(PATIENCE, async || {
        let scrape = Scrape::of(&rodent).await;
        match scrape.value("rodent_spans_dropped_total", &[]) >= 1.0 {
            true => Ok(scrape),
            false => Err("no dropped span counted".to_string()),
        }
    })
    .await;
    assert_eq!(scrape.value("rodent_spans_exported_total", &[]), 0.0);

    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    let took = signalled.elapsed();
    assert!(
        took < grace,
        "took {took:?} to exit, past the {grace:?} grace"
    );
}

#[tokio::test]
async fn a_collector_that_never_answers_holds_neither_requests_nor_the_exit() {
    // Accepts connections (the kernel does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let grace = Duration::from_secs(2);
    let mut rodent = rodent()
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", silent.local_addr().unwrap()),
        )
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "60000")
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "4")
        .env("RODENT_SHUTDOWN_GRACE", "2s")
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .spawn();
    for _ in 0..20 {
        let sent = Instant::now();
        let response = rodent.get("/").await;
        assert_eq!(response.status(), 200);
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "a request waited for the collector"
        );
    }
    // One batch of 4 hangs in the export, 4 more wait in the queue: the rest is dropped, and
    // counted, at once. (Up to 4 more when the export thread had not yet taken its batch.)
    let dropped = Scrape::of(&rodent)
        .await
        .value("rodent_spans_dropped_total", &[]);
    assert!((12.0..=16.0).contains(&dropped), "dropped {dropped}");

    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    // The flush is cut at the end of the grace (minus half the safety margin): its spans are
    // dropped and counted, and the exit code stays the drain's.
    let code = rodent.exit_code(PATIENCE);
    let took = signalled.elapsed();
    assert!(
        took < grace,
        "took {took:?} to exit, past the {grace:?} grace"
    );
    assert_eq!(
        code, 0,
        "telemetry is best effort: the exit code is the drain's"
    );
    let cut = rodent.wait_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("the final flush of traces was cut short"))
    });
    assert!(cut["dropped"].as_u64().unwrap() > 0, "{cut}");
    drop(silent);
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_traced_but_the_callers_trace_id_is_logged() {
    let mut rodent = rodent().spawn();
    let off = rodent.wait_log(|l| l["message"] == "traces are not exported");
    assert!(
        off["reason"]
            .as_str()
            .unwrap()
            .contains("OTEL_EXPORTER_OTLP_ENDPOINT")
    );
    let response = client()
        .get(rodent.url("/"))
        .header("traceparent", traceparent(CALLER_TRACE, CALLER_SPAN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("traceresponse").is_none());
    let logged = rodent.wait_log(|l| l["message"] == "request" && l["route"] == "/");
    assert_eq!(logged["trace_id"], CALLER_TRACE);

    let untraced = rodent.get("/version").await;
    assert_eq!(untraced.status(), 200);
    let logged = rodent.wait_log(|l| l["message"] == "request" && l["route"] == "/version");
    assert!(logged.get("trace_id").is_none(), "{logged}");

    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    assert!(
        !rodent
            .raw_lines()
            .iter()
            .any(|l| l.contains("flushing traces")),
        "no flush without telemetry"
    );
}

#[tokio::test]
async fn invalid_otel_variables_are_refused_like_any_configuration_error() {
    let mut rodent = rodent()
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "secret-token-without-a-name")
        .no_wait()
        .spawn();
    assert_eq!(rodent.exit_code(PATIENCE), 78);
    let lines = rodent.json_lines();
    let refused: Vec<&str> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("invalid configuration"))
        })
        .filter_map(|l| l["variable"].as_str())
        .collect();
    assert_eq!(
        refused,
        vec![
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_TRACES_SAMPLER"
        ]
    );
    assert!(
        !rodent
            .raw_lines()
            .iter()
            .any(|l| l.contains("secret-token-without-a-name")),
        "a header value is never printed"
    );
}
