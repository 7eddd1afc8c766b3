//! The echo service's calls on the real binary: answers and statuses, deadlines (the handler
//! timeout or the client's `grpc-timeout`), a stream that outlives the handler timeout and ends
//! with UNAVAILABLE at the drain, and UNAVAILABLE once the listener has closed.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nix::sys::signal::Signal::SIGTERM;
use tonic::{Code, Request};

use super::pb::{DelayRequest, EchoRequest, StatusRequest, StreamRequest};
use super::{EchoClient, SOON, channel, exits_cleanly, raw_call};
use kit::{PATIENCE, rodent};

#[tokio::test]
async fn echo_delay_and_status_answer() {
    let rodent = rodent().spawn();
    let mut echo = EchoClient::new(channel(rodent.addr()).await);
    let answer = echo
        .echo(EchoRequest {
            message: "hello".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.message, "hello");
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(answer.instance, host);

    let delayed = echo.delay(DelayRequest { ms: 50 }).await.unwrap();
    assert_eq!(delayed.get_ref().delay_ms, 50);

    assert!(
        echo.status(StatusRequest {
            code: 0,
            message: String::new()
        })
        .await
        .is_ok()
    );
    let status = echo
        .status(StatusRequest {
            code: Code::NotFound as u32,
            message: "gone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::NotFound, "gone"));
    let status = echo
        .status(StatusRequest {
            code: 99,
            message: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The access log names the gRPC route, as for any other.
    rodent.wait_log(|l| l["message"] == "request" && l["route"] == "/rodent.echo.v1.Echo/Status");
}

#[tokio::test]
async fn a_unary_call_past_the_request_timeout_is_deadline_exceeded() {
    let rodent = rodent().env("RODENT_REQUEST_TIMEOUT", "1s").spawn();
    let mut echo = EchoClient::new(channel(rodent.addr()).await);
    let started = Instant::now();
    let status = echo.delay(DelayRequest { ms: 10_000 }).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("RODENT_REQUEST_TIMEOUT"),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1) + SOON);
    let metrics = rodent.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"rodent_http_request_timeouts_total{route="/rodent.echo.v1.Echo/Delay"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_shorter_client_deadline_wins() {
    let rodent = rodent().env("RODENT_REQUEST_TIMEOUT", "20s").spawn();
    // Sent raw: tonic's client would cut the call itself at its deadline.
    let started = Instant::now();
    let raw = raw_call(
        rodent.addr(),
        "Delay",
        &DelayRequest { ms: 10_000 },
        Some("300m"),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(raw.status(), 200);
    let status = tonic::Status::from_header_map(raw.headers()).expect("a trailers-only answer");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("grpc-timeout 300ms"),
        "{status:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < SOON,
        "{elapsed:?}"
    );
    // A tonic client keeps its own deadline too: the call ends there either way.
    let mut echo = EchoClient::new(channel(rodent.addr()).await);
    let mut request = Request::new(DelayRequest { ms: 10_000 });
    request.set_timeout(Duration::from_millis(300));
    let status = echo.delay(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
}

#[tokio::test]
async fn streams_outlive_the_request_timeout_and_end_with_unavailable_at_the_drain() {
    let mut rodent = rodent()
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .env("RODENT_DRAIN_DELAY", "1s")
        .spawn();
    let mut echo = EchoClient::new(channel(rodent.addr()).await);
    let mut lines = echo
        .stream(StreamRequest { ms: 600_000 })
        .await
        .unwrap()
        .into_inner();
    // Two seconds of lines, twice the handler timeout.
    let started = Instant::now();
    let mut received = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let line = lines.next().await.expect("the stream goes on").unwrap();
        received += 1;
        assert_eq!(line.line, received);
    }
    rodent.signal(SIGTERM);
    let signalled = Instant::now();
    let ended = loop {
        match tokio::time::timeout(PATIENCE, lines.next()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(status))) => break status,
            other => panic!("the stream ended without a status: {other:?}"),
        }
    };
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains("stopping"), "{ended:?}");
    // It ended when the listener closed, after the drain delay, and held nothing.
    assert!(signalled.elapsed() >= Duration::from_millis(900));
    exits_cleanly(&mut rodent).await;
}

#[tokio::test]
async fn a_stream_ends_at_the_client_deadline() {
    let rodent = rodent().spawn();
    let mut echo = EchoClient::new(channel(rodent.addr()).await);
    let mut request = Request::new(StreamRequest { ms: 600_000 });
    request.set_timeout(Duration::from_millis(700));
    let mut lines = echo.stream(request).await.unwrap().into_inner();
    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(PATIENCE, lines.next()).await {
            Ok(Some(Ok(_))) => received += 1,
            Ok(Some(Err(status))) => break status,
            other => panic!("the stream ended without a status: {other:?}"),
        }
    };
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert!(
        (3..=10).contains(&received),
        "{received} lines in 700 ms, one every 100 ms"
    );
}

#[tokio::test]
async fn calls_after_the_listener_closed_are_unavailable() {
    let mut rodent = rodent()
        .env("RODENT_DRAIN_DELAY", "200ms")
        .env("RODENT_REQUEST_TIMEOUT", "10s")
        .spawn();
    let addr = rodent.addr();
    let channel = channel(addr).await;
    // A call in flight keeps the process in its drain after the listener closes.
    let mut holding = EchoClient::new(channel.clone());
    let held = tokio::spawn(async move { holding.delay(DelayRequest { ms: 3_000 }).await });
    kit::wait_in_flight(&rodent, "/rodent.echo.v1.Echo/Delay", 1).await;
    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "listener closed");
    let mut echo = EchoClient::new(channel);
    let status = echo
        .echo(EchoRequest {
            message: "late".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let mut fresh = EchoClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy(),
    );
    let status = fresh.echo(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The call that was in flight finished.
    assert_eq!(held.await.unwrap().unwrap().get_ref().delay_ms, 3_000);
    exits_cleanly(&mut rodent).await;
}
