//! gRPC on the real binary's port: the health service a real health client (grpc-health-probe,
//! built from its Go module) and Kubernetes' probes call, the echo service's calls and their
//! deadlines, streams through the drain, and `rodent probe grpc`.

mod calls;
mod drain;
mod health;
mod probe;

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The reference service's protobuf code, as the binary compiles it (client and server).
#[allow(clippy::all, clippy::pedantic, dead_code, unreachable_pub)]
#[rustfmt::skip]
#[path = "../../../src/bin/rodent/grpc/pb.rs"]
mod pb;

pub(crate) use pb::echo_client::EchoClient;

/// The echo service's name, as health checks ask for it.
const ECHO: &str = "rodent.echo.v1.Echo";

/// A channel to `addr` over h2c, connected now.
async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid address")
        .connect_timeout(kit::PATIENCE)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("no gRPC connection to {addr}: {e}"))
}

/// `grpc.health.v1.Health/Check` of `service` on `channel`.
async fn check(channel: &Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let answer = HealthClient::new(channel.clone()).check(request).await?;
    Ok(ServingStatus::try_from(answer.get_ref().status).expect("a known status"))
}

/// A unary call as raw HTTP/2 (h2c), so that nothing on the client side enforces its
/// `grpc-timeout`: the answer is what rodent sent, HTTP status and head included.
async fn raw_call(
    addr: SocketAddr,
    method: &str,
    message: &impl prost::Message,
    grpc_timeout: Option<&str>,
) -> reqwest::Response {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
    message.encode(&mut frame).expect("a message encodes");
    let client = kit::client_builder()
        .http2_prior_knowledge()
        .build()
        .expect("an h2c client");
    let mut request = client
        .post(format!("http://{addr}/{ECHO}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(frame);
    if let Some(timeout) = grpc_timeout {
        request = request.header("grpc-timeout", timeout);
    }
    request.send().await.expect("an answer")
}

/// Whether grpc-health-probe is installed (the test is skipped without it, and fails in CI).
fn have_health_probe() -> bool {
    kit::require_tool(
        "grpc-health-probe",
        "scripts/ci/grpc.sh builds it from its Go module",
    )
}

/// Runs grpc-health-probe against `addr` for `service`: its exit code (0 SERVING, 4 NOT_SERVING,
/// 3 an RPC error) and what it printed.
fn health_probe(addr: SocketAddr, service: &str) -> (i32, String) {
    let output = std::process::Command::new("grpc-health-probe")
        .arg(format!("-addr={addr}"))
        .arg(format!("-service={service}"))
        .arg("-connect-timeout=5s")
        .arg("-rpc-timeout=5s")
        .output()
        .expect("grpc-health-probe runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (kit::code_of(&output), printed)
}

/// Exit 0, waited for without blocking the test's runtime: its gRPC clients (their
/// connections' tasks run there) go on answering the server meanwhile, as a real client's do.
async fn exits_cleanly(rodent: &mut kit::Rodent) {
    let waited = std::time::Instant::now();
    loop {
        if let Some(status) = rodent.try_wait_exit(Duration::ZERO) {
            assert_eq!(
                status.code(),
                Some(0),
                "not a clean exit; the log was:\n{}",
                rodent.raw_lines().join("\n")
            );
            return;
        }
        assert!(
            waited.elapsed() < kit::PATIENCE,
            "no exit within {:?}; the log was:\n{}",
            kit::PATIENCE,
            rodent.raw_lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long a test allows for what should take milliseconds, on two busy cores.
const SOON: Duration = Duration::from_secs(2);
