//! `OTEL_PROPAGATORS`: which incoming headers continue a caller's trace. W3C `tracecontext` and
//! `baggage` by default, Zipkin's B3 in its single (`b3`) and multiple-header (`b3multi`) forms,
//! `none` to continue nothing, and an unknown name refused like any configuration error.

use nix::sys::signal::Signal::SIGTERM;

use super::receiver::Receiver;
use kit::{PATIENCE, Rodent, client, rodent};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
}

/// Each way a caller can say which trace a request belongs to.
fn headers(format: &str) -> Vec<(&'static str, String)> {
    match format {
        "tracecontext" => vec![("traceparent", traceparent())],
        "b3" => vec![("b3", format!("{CALLER_TRACE}-{CALLER_SPAN}-1"))],
        "b3multi" => vec![
            ("x-b3-traceid", CALLER_TRACE.to_string()),
            ("x-b3-spanid", CALLER_SPAN.to_string()),
            ("x-b3-sampled", "1".to_string()),
        ],
        other => panic!("no headers for {other}"),
    }
}

/// rodent exporting to `receiver`, with `OTEL_PROPAGATORS` set to `propagators` (`None` leaves
/// it unset).
fn exporting(receiver: &Receiver, propagators: Option<&str>) -> Rodent {
    let spawn = rodent()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "20");
    match propagators {
        Some(value) => spawn.env("OTEL_PROPAGATORS", value),
        None => spawn,
    }
    .spawn()
}

/// Sends `GET /` with the headers of `format`, and returns the exported server span's trace id
/// and parent span id (empty for a root span), and the trace id in the access log.
async fn continued(rodent: &Rodent, receiver: &Receiver, format: &str) -> (String, String) {
    let mut request = client().get(rodent.url("/"));
    for (name, value) in headers(format) {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let traceresponse = response.headers()["traceresponse"].to_str().unwrap();
    let span_id = traceresponse.split('-').nth(2).unwrap().to_string();
    let span = receiver.wait_for("GET /", |s| s.span_id() == span_id);
    let logged =
        rodent.wait_log(|l| l["message"] == "request" && l["trace_id"] == span.trace_id().as_str());
    assert_eq!(logged["route"], "/");
    (span.trace_id(), span.parent_span_id())
}

fn assert_continues(trace: &(String, String), what: &str) {
    assert_eq!(
        (trace.0.as_str(), trace.1.as_str()),
        (CALLER_TRACE, CALLER_SPAN),
        "{what}: the caller's trace is not continued"
    );
}

fn assert_new_trace(trace: &(String, String), what: &str) {
    assert_ne!(
        trace.0, CALLER_TRACE,
        "{what}: the caller's trace was continued"
    );
    assert!(
        trace.1.is_empty(),
        "{what}: a new trace starts at a root span"
    );
}

fn stop(mut rodent: Rodent) {
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn by_default_w3c_trace_context_is_continued_and_b3_is_not() {
    let receiver = Receiver::start();
    let rodent = exporting(&receiver, None);
    assert_continues(
        &continued(&rodent, &receiver, "tracecontext").await,
        "traceparent",
    );
    assert_new_trace(&continued(&rodent, &receiver, "b3").await, "b3 by default");
    stop(rodent);
}

#[tokio::test]
async fn b3_continues_single_and_multiple_header_traces() {
    let receiver = Receiver::start();
    for propagators in ["b3", "b3multi"] {
        let rodent = exporting(&receiver, Some(propagators));
        // Whichever form is configured (it decides what an application injects), both are
        // read, as Zipkin's own propagator does.
        for format in ["b3", "b3multi"] {
            assert_continues(
                &continued(&rodent, &receiver, format).await,
                &format!("{format} headers with OTEL_PROPAGATORS={propagators}"),
            );
        }
        assert_new_trace(
            &continued(&rodent, &receiver, "tracecontext").await,
            &format!("traceparent with OTEL_PROPAGATORS={propagators}"),
        );
        stop(rodent);
    }
}

#[tokio::test]
async fn a_list_of_propagators_continues_what_any_of_them_reads() {
    let receiver = Receiver::start();
    let rodent = exporting(&receiver, Some("tracecontext, baggage, b3multi"));
    for format in ["tracecontext", "b3multi"] {
        assert_continues(&continued(&rodent, &receiver, format).await, format);
    }
    stop(rodent);
}

#[tokio::test]
async fn none_continues_no_trace() {
    let receiver = Receiver::start();
    let rodent = exporting(&receiver, Some("none"));
    for format in ["tracecontext", "b3"] {
        assert_new_trace(&continued(&rodent, &receiver, format).await, format);
    }
    stop(rodent);
}

#[tokio::test]
async fn without_export_the_access_log_still_joins_the_callers_b3_trace() {
    let mut b3 = rodent().env("OTEL_PROPAGATORS", "b3").spawn();
    let mut request = client().get(b3.url("/version"));
    for (name, value) in headers("b3") {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    let logged = b3.wait_log(|l| l["message"] == "request" && l["route"] == "/version");
    assert_eq!(logged["trace_id"], CALLER_TRACE);
    b3.signal(SIGTERM);
    assert_eq!(b3.exit_code(PATIENCE), 0);

    let mut off = rodent().env("OTEL_PROPAGATORS", "none").spawn();
    let response = client()
        .get(off.url("/version"))
        .header("traceparent", traceparent())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let logged = off.wait_log(|l| l["message"] == "request" && l["route"] == "/version");
    assert!(logged.get("trace_id").is_none(), "{logged}");
    off.signal(SIGTERM);
    assert_eq!(off.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn an_unknown_propagator_is_a_configuration_error() {
    for value in ["jaeger", "tracecontext,zipkin", "b3;b3multi"] {
        let mut rodent = rodent().env("OTEL_PROPAGATORS", value).no_wait().spawn();
        assert_eq!(rodent.exit_code(PATIENCE), 78, "OTEL_PROPAGATORS={value}");
        let refused = rodent.wait_log(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("invalid configuration"))
        });
        assert_eq!(refused["variable"], "OTEL_PROPAGATORS");
        assert_eq!(refused["value"], value);
        let expected = refused["expected"].as_str().unwrap_or_default();
        for name in ["tracecontext", "baggage", "b3", "b3multi", "none"] {
            assert!(
                expected.contains(name),
                "{expected:?} does not offer {name}"
            );
        }
    }
}

/// `GET /propagate` of the embedding example: the headers its handler would send downstream.
async fn passed_on(app: &Rodent, headers: &[(&str, String)]) -> serde_json::Value {
    let mut request = client().get(app.url("/propagate"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.expect("a JSON object of headers")
}

#[tokio::test]
async fn an_application_passes_the_trace_and_baggage_on_with_the_configured_propagators() {
    let embed = kit::example("embed");
    assert!(
        embed.exists(),
        "{} is missing: build the examples first with `scripts/test --no-run`",
        embed.display()
    );
    let receiver = Receiver::start();
    let app = |propagators: Option<&str>| {
        let spawn = rodent()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
            .env("OTEL_BSP_SCHEDULE_DELAY", "20");
        match propagators {
            Some(value) => spawn.env("OTEL_PROPAGATORS", value),
            None => spawn,
        }
        .spawn_program(&embed)
    };
    let mut incoming = headers("tracecontext");
    incoming.push(("baggage", "tenant=acme".to_string()));

    // The default, tracecontext and baggage: both go on.
    let default = app(None);
    let sent = passed_on(&default, &incoming).await;
    let traceparent = sent["traceparent"].as_str().expect("a traceparent goes on");
    assert_eq!(traceparent.split('-').nth(1), Some(CALLER_TRACE), "{sent}");
    assert_ne!(traceparent.split('-').nth(2), Some(CALLER_SPAN), "{sent}");
    assert_eq!(sent["baggage"], "tenant=acme", "{sent}");
    stop(default);

    // tracecontext alone: the baggage is neither read nor passed on.
    let w3c = app(Some("tracecontext"));
    let sent = passed_on(&w3c, &incoming).await;
    assert!(sent["traceparent"].is_string(), "{sent}");
    assert!(sent.get("baggage").is_none(), "{sent}");
    stop(w3c);

    // baggage alone: it goes on; the trace does not.
    let baggage = app(Some("baggage"));
    let sent = passed_on(&baggage, &incoming).await;
    assert_eq!(sent["baggage"], "tenant=acme", "{sent}");
    assert!(sent.get("traceparent").is_none(), "{sent}");
    stop(baggage);

    // b3multi: a B3 caller's trace goes on as B3 headers.
    let b3 = app(Some("b3multi"));
    let sent = passed_on(&b3, &headers("b3multi")).await;
    assert_eq!(sent["x-b3-traceid"], CALLER_TRACE, "{sent}");
    assert!(sent.get("traceparent").is_none(), "{sent}");
    stop(b3);
}
