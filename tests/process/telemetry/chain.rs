//! One trace across a chain of services: a frontend's `POST /echo` forwarded to a backend, both
//! exporting to the test's receiver, makes one trace of three spans: the frontend's server
//! span, its client span for the call, and the backend's server span under it.

use super::receiver::Receiver;
use kit::{client, rodent};

#[tokio::test]
async fn a_request_forwarded_to_a_backend_is_one_trace() {
    let receiver = Receiver::start();
    let exporting = |name: &str| {
        rodent()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
            .env("OTEL_BSP_SCHEDULE_DELAY", "20")
            .env("OTEL_SERVICE_NAME", name)
    };
    let backend = exporting("backend").spawn();
    let frontend = exporting("frontend")
        .env("RODENT_BACKENDS", backend.url("/echo"))
        .spawn();

    // No trace context from the client: the frontend starts the trace.
    let response = client()
        .post(frontend.url("/echo"))
        .body("traced")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["backends"][0]["status"], 200, "{answer}");

    let service = |span: &super::receiver::Received| span.resource["service.name"].clone();
    let front = receiver.wait_for("the frontend's POST /echo", |s| {
        s.span.name == "POST /echo" && service(s) == "frontend"
    });
    let call = receiver.wait_for("the frontend's client span", |s| {
        s.span.name == "POST" && service(s) == "frontend"
    });
    let back = receiver.wait_for("the backend's POST /echo", |s| {
        s.span.name == "POST /echo" && service(s) == "backend"
    });
    assert!(
        front.parent_span_id().is_empty(),
        "the frontend starts the trace"
    );
    assert_eq!(call.trace_id(), front.trace_id());
    assert_eq!(
        back.trace_id(),
        front.trace_id(),
        "one trace across both services"
    );
    assert_eq!(call.parent_span_id(), front.span_id());
    assert_eq!(
        back.parent_span_id(),
        call.span_id(),
        "the backend continues the call"
    );
    // The client span says what was called and what came back (SpanKind 3 is CLIENT).
    assert_eq!(call.span.kind, 3);
    assert_eq!(call.attribute("url.full"), Some(backend.url("/echo")));
    assert_eq!(
        call.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
}
