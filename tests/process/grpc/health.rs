//! `grpc.health.v1.Health` on the real binary: the same truth as `/readyz`, for the empty
//! service name and each service, from the first SIGTERM on; open watches that end with
//! UNAVAILABLE when the drain is signaled, without holding the exit.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nix::sys::signal::Signal::SIGTERM;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{ECHO, SOON, channel, check, exits_cleanly, have_health_probe, health_probe};
use kit::{PATIENCE, client, eventually_async, free_port, rodent};

#[tokio::test]
async fn a_health_client_sees_serving_then_not_serving_as_soon_as_readyz_fails() {
    if !have_health_probe() {
        return;
    }
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "5s").spawn();
    let addr = rodent.addr();
    for service in ["", ECHO, "grpc.health.v1.Health"] {
        let (code, printed) = health_probe(addr, service);
        assert_eq!(code, 0, "{service:?} while ready: {printed}");
        assert!(printed.contains("SERVING"), "{printed}");
    }

    // Both asked over and over from the signal on: each turns at its first failing answer.
    let channel = channel(addr).await;
    let http = client();
    rodent.signal(SIGTERM);
    let signalled = Instant::now();
    let (mut readyz_failed, mut grpc_failed) = (None, None);
    while (readyz_failed.is_none() || grpc_failed.is_none()) && signalled.elapsed() < PATIENCE {
        if readyz_failed.is_none() {
            let status = http
                .get(rodent.url("/readyz"))
                .send()
                .await
                .unwrap()
                .status();
            if status == 503 {
                readyz_failed = Some(signalled.elapsed());
                // The real client, at once: NOT_SERVING, for the server and each service.
                for service in ["", ECHO] {
                    let (code, printed) = health_probe(addr, service);
                    assert_eq!(code, 4, "{service:?} once /readyz failed: {printed}");
                    assert!(printed.contains("NOT_SERVING"), "{printed}");
                }
            }
        }
        if grpc_failed.is_none() && check(&channel, "").await.unwrap() == ServingStatus::NotServing
        {
            grpc_failed = Some(signalled.elapsed());
        }
    }
    let (readyz_failed, grpc_failed) = (readyz_failed.unwrap(), grpc_failed.unwrap());
    assert!(
        readyz_failed < SOON && grpc_failed < SOON,
        "{readyz_failed:?} {grpc_failed:?}"
    );
    let apart = readyz_failed.abs_diff(grpc_failed);
    assert!(
        apart < Duration::from_millis(500),
        "/readyz failed at {readyz_failed:?}, gRPC health at {grpc_failed:?}"
    );
    exits_cleanly(&mut rodent).await;
}

#[tokio::test]
async fn open_watches_see_every_change_and_end_with_unavailable_when_the_drain_is_signaled() {
    let mut rodent = rodent()
        .env("RODENT_DRAIN_DELAY", "1s")
        .env("RODENT_SHUTDOWN_GRACE", "30s")
        .env("RODENT_ADMIN_TOKEN", "secret")
        .spawn();
    let channel = channel(rodent.addr()).await;
    let mut health = HealthClient::new(channel);
    let mut watches = Vec::new();
    for service in ["", ECHO] {
        let request = HealthCheckRequest {
            service: service.to_string(),
        };
        watches.push(health.watch(request).await.unwrap().into_inner());
    }
    let next = async |watch: &mut tonic::Streaming<_>| {
        let message = tokio::time::timeout(SOON, watch.next())
            .await
            .expect("a message soon")
            .expect("the watch goes on");
        message.map(|m: tonic_health::pb::HealthCheckResponse| {
            ServingStatus::try_from(m.status).unwrap()
        })
    };
    for watch in &mut watches {
        assert_eq!(next(watch).await.unwrap(), ServingStatus::Serving);
    }
    let admin = |action: &str| {
        client()
            .post(rodent.url(&format!("/admin/readiness/{action}")))
            .bearer_auth("secret")
            .send()
    };
    assert!(admin("disable").await.unwrap().status().is_success());
    for watch in &mut watches {
        assert_eq!(next(watch).await.unwrap(), ServingStatus::NotServing);
    }
    assert!(admin("enable").await.unwrap().status().is_success());
    for watch in &mut watches {
        assert_eq!(next(watch).await.unwrap(), ServingStatus::Serving);
    }

    rodent.signal(SIGTERM);
    let signalled = Instant::now();
    for watch in &mut watches {
        assert_eq!(next(watch).await.unwrap(), ServingStatus::NotServing);
    }
    // The drain delay (1s) passes, the listener closes: each watch ends, UNAVAILABLE.
    for watch in &mut watches {
        let ended = tokio::time::timeout(PATIENCE, watch.next())
            .await
            .expect("the watch ends")
            .expect("with a status");
        let status = ended.expect_err("UNAVAILABLE, not a message");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("stopping"), "{status:?}");
        assert!(
            signalled.elapsed() >= Duration::from_millis(900),
            "not before the drain delay"
        );
    }
    // The watches held nothing: the exit follows at once, far inside the 30s grace.
    exits_cleanly(&mut rodent).await;
    assert!(signalled.elapsed() < Duration::from_secs(1) + PATIENCE);
    let stopped = rodent.wait_log(|l| l["message"] == "stopped");
    assert_eq!(stopped["exit_code"], 0);
}

#[tokio::test]
async fn unknown_services_are_not_found_and_watched_as_unknown() {
    let rodent = rodent().spawn();
    let channel = channel(rodent.addr()).await;
    let status = check(&channel, "no.such.Service").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let request = HealthCheckRequest {
        service: "no.such.Service".to_string(),
    };
    let mut watch = HealthClient::new(channel)
        .watch(request)
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::ServiceUnknown as i32);
    if have_health_probe() {
        let (code, printed) = health_probe(rodent.addr(), "no.such.Service");
        assert_eq!(code, 3, "an RPC error: {printed}");
        assert!(printed.contains("NotFound"), "{printed}");
    }
}

#[tokio::test]
async fn the_management_port_serves_the_health_service_too() {
    if !have_health_probe() {
        return;
    }
    let port = free_port();
    let mut rodent = rodent()
        .env("RODENT_MANAGEMENT_PORT", port.to_string())
        .env("RODENT_DRAIN_DELAY", "5s")
        .spawn();
    let management = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for addr in [rodent.addr(), management] {
        let (code, printed) = health_probe(addr, ECHO);
        assert_eq!(code, 0, "{addr}: {printed}");
    }
    rodent.signal(SIGTERM);
    eventually_async(PATIENCE, async || {
        let (code, printed) = health_probe(management, "");
        if code == 4 { Ok(()) } else { Err(printed) }
    })
    .await;
    let (code, printed) = health_probe(rodent.addr(), "");
    assert_eq!(code, 4, "the main port says the same: {printed}");
    exits_cleanly(&mut rodent).await;
}
