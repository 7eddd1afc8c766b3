//! gRPC routes through the whole request path, in process: what rodent answers a gRPC call
//! itself, and the health service, on each port.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, header};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::ServiceExt;

use super::*;
use crate::config::Config;
use crate::http::{Application, Instance, Routes};
use crate::lifecycle::readiness::Readiness;
use crate::lifecycle::{Lifecycle, State};
use crate::observe::logging::AccessLog;
use crate::observe::metrics::Metrics;

fn shared(vars: &[(&str, &str)]) -> Arc<Instance> {
    let lifecycle = Lifecycle::new();
    let config = Config::from_vars([("RODENT_PID_FILE", "")].iter().chain(vars).copied())
        .expect("valid configuration");
    let build = config.build_info();
    Arc::new(Instance::new(
        Arc::new(arc_swap::ArcSwap::from_pointee(config)),
        lifecycle.clone(),
        Arc::new(Metrics::new(lifecycle, build)),
        Readiness::new(Vec::new()),
        Arc::new(AccessLog::through_tracing()),
    ))
}

/// An application with a "gRPC" method that answers after the milliseconds its path names,
/// beside an HTTP route; the routes rodent builds for it, main port and management port.
fn routes(shared: &Arc<Instance>, management: bool) -> (Router, Option<Router>) {
    let slow = post(|| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Status::ok("").into_http::<Body>()
    });
    let mut app = Application::default();
    app.add_bounded(Router::new().route("/", get(|| async { "home" })));
    app.add_grpc(Router::new().route("/test.v1.Slow/Wait", slow));
    let routes = Routes::new(shared.clone(), app, management);
    let main = Router::clone(&routes.main().load());
    let management = routes
        .management()
        .map(|router| Router::clone(&router.load()));
    (main, management)
}

/// A gRPC call of `path` carrying `message`, length-prefixed as gRPC frames it.
fn call(path: &str, message: &impl Message) -> Request<Body> {
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(message.encoded_len() as u32);
    message.encode(&mut frame).unwrap();
    Request::post(path)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        )
        .header("te", "trailers")
        .body(Body::from(Bytes::from(frame)))
        .unwrap()
}

/// The call's status (from the head of a trailers-only answer, or the trailers) and its
/// message, if one came.
async fn outcome(response: Response) -> (Status, Option<Bytes>) {
    assert_eq!(response.status(), 200, "a gRPC answer is HTTP 200");
    if let Some(status) = Status::from_header_map(response.headers()) {
        return (status, None);
    }
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    let body = collected.to_bytes();
    let status = Status::from_header_map(&trailers).expect("grpc-status in the trailers");
    (status, Some(body.slice(5..)))
}

async fn check(router: &Router, service: &str) -> Result<ServingStatus, Status> {
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let response = router
        .clone()
        .oneshot(call("/grpc.health.v1.Health/Check", &request))
        .await
        .unwrap();
    let (status, message) = outcome(response).await;
    if status.code() != Code::Ok {
        return Err(status);
    }
    let answer = HealthCheckResponse::decode(message.unwrap()).unwrap();
    Ok(ServingStatus::try_from(answer.status).unwrap())
}

#[tokio::test]
async fn health_answers_from_readiness_for_the_server_and_each_service() {
    let shared = shared(&[]);
    let (main, _) = routes(&shared, false);
    for service in ["", "test.v1.Slow", "grpc.health.v1.Health"] {
        assert_eq!(
            check(&main, service).await.unwrap(),
            ServingStatus::NotServing,
            "starting"
        );
    }
    shared.lifecycle.advance(State::Ready);
    for service in ["", "test.v1.Slow", "grpc.health.v1.Health"] {
        assert_eq!(check(&main, service).await.unwrap(), ServingStatus::Serving);
    }
    let unknown = check(&main, "test.v1.Other").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    shared.lifecycle.disable_readiness();
    assert_eq!(check(&main, "").await.unwrap(), ServingStatus::NotServing);
    shared.lifecycle.enable_readiness();
    shared.lifecycle.advance(State::Draining);
    assert_eq!(check(&main, "").await.unwrap(), ServingStatus::NotServing);
    // After the listener closed the health service still answers, as /readyz does.
    shared.lifecycle.advance(State::Stopping);
    assert_eq!(check(&main, "").await.unwrap(), ServingStatus::NotServing);
}

#[tokio::test]
async fn calls_after_the_listener_closed_are_unavailable() {
    let shared = shared(&[]);
    let (main, _) = routes(&shared, false);
    shared.lifecycle.advance(State::Ready);
    shared.lifecycle.advance(State::Draining);
    shared.lifecycle.advance(State::Stopping);
    let response = main
        .clone()
        .oneshot(call("/test.v1.Slow/Wait", &()))
        .await
        .unwrap();
    let (status, _) = outcome(response).await;
    assert_eq!(status.code(), Code::Unavailable);
    // An unknown method too, from the HTTP routes' stack.
    let response = main
        .oneshot(call("/test.v1.Slow/Other", &()))
        .await
        .unwrap();
    assert_eq!(outcome(response).await.0.code(), Code::Unavailable);
}

#[tokio::test]
async fn unknown_methods_are_unimplemented_and_unknown_paths_still_404() {
    let shared = shared(&[]);
    let (main, _) = routes(&shared, false);
    for path in ["/test.v1.Slow/Other", "/test.v1.Unknown/Wait"] {
        let response = main.clone().oneshot(call(path, &())).await.unwrap();
        let (status, _) = outcome(response).await;
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
    }
    let http = Request::get("/nowhere").body(Body::empty()).unwrap();
    let response = main.oneshot(http).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test(start_paused = true)]
async fn a_unary_call_past_the_request_timeout_is_deadline_exceeded_not_503() {
    let shared = shared(&[("RODENT_REQUEST_TIMEOUT", "2s")]);
    let (main, _) = routes(&shared, false);
    let response = main.oneshot(call("/test.v1.Slow/Wait", &())).await.unwrap();
    let (status, _) = outcome(response).await;
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(
        status.message().contains("RODENT_REQUEST_TIMEOUT"),
        "{status:?}"
    );
}

#[tokio::test]
async fn overload_is_unavailable() {
    let shared = shared(&[("RODENT_MAX_INFLIGHT", "1")]);
    let entered = Arc::new(tokio::sync::Notify::new());
    let notify = entered.clone();
    let holds = post(move || async move {
        notify.notify_one();
        std::future::pending::<()>().await;
    });
    let mut app = Application::default();
    app.add_grpc(Router::new().route("/test.v1.Slow/Wait", holds));
    let routes = Routes::new(shared.clone(), app, false);
    let main = Router::clone(&routes.main().load());
    let holding = tokio::spawn(main.clone().oneshot(call("/test.v1.Slow/Wait", &())));
    entered.notified().await;
    let response = main.oneshot(call("/test.v1.Slow/Wait", &())).await.unwrap();
    let (status, _) = outcome(response).await;
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("RODENT_MAX_INFLIGHT"),
        "{status:?}"
    );
    holding.abort();
}

#[tokio::test]
async fn the_management_port_serves_the_health_service_too() {
    let shared = shared(&[]);
    let (main, management) = routes(&shared, true);
    let management = management.expect("a management router");
    shared.lifecycle.advance(State::Ready);
    assert_eq!(check(&main, "").await.unwrap(), ServingStatus::Serving);
    assert_eq!(
        check(&management, "test.v1.Slow").await.unwrap(),
        ServingStatus::Serving
    );
    shared.lifecycle.advance(State::Draining);
    assert_eq!(
        check(&management, "").await.unwrap(),
        ServingStatus::NotServing
    );
}

#[tokio::test]
async fn without_grpc_routes_there_is_no_health_service() {
    let shared = shared(&[]);
    let mut app = Application::default();
    app.add_bounded(Router::new().route("/", get(|| async { "home" })));
    let routes = Routes::new(shared.clone(), app, false);
    let main = Router::clone(&routes.main().load());
    let response = main
        .oneshot(call(
            "/grpc.health.v1.Health/Check",
            &HealthCheckRequest::default(),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(response).await.0.code(), Code::Unimplemented);
}

#[test]
fn grpc_calls_are_told_by_their_content_type() {
    let mut headers = HeaderMap::new();
    assert!(!is_grpc(&headers));
    for grpc in [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc+json",
    ] {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(grpc));
        assert!(is_grpc(&headers), "{grpc}");
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    assert!(!is_grpc(&headers));
}

#[test]
fn an_answer_is_trailers_only() {
    let response = answer(Code::Unavailable, "shutting down; retry élsewhere");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "14");
    let status = Status::from_header_map(response.headers()).unwrap();
    assert_eq!(status.message(), "shutting down; retry élsewhere");
}
