//! gRPC over TLS on the main port: HTTP/2 by ALPN, as real gRPC clients speak it
//! (grpc-health-probe and ghz, built from their Go modules).

use std::process::Command;

use super::certs::{Ca, write};
use super::serving;
use kit::TempDir;

#[test]
fn grpc_clients_reach_the_health_and_echo_services_over_tls() {
    if !kit::require_tool(
        "grpc-health-probe",
        "scripts/ci/grpc.sh builds it from its Go module",
    ) || !kit::require_tool("ghz", "scripts/ci/grpc.sh builds it from its Go module")
    {
        return;
    }
    let dir = TempDir::new("tls-grpc");
    let ca = Ca::new();
    let (cert, key) = write(dir.path(), &ca.issue("rodent-grpc", 2031));
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let rodent = serving(&cert, &key).spawn();
    let addr = rodent.addr();

    let health = Command::new("grpc-health-probe")
        .arg(format!("-addr={addr}"))
        .args(["-tls", "-tls-server-name=localhost"])
        .arg(format!("-tls-ca-cert={}", ca_file.display()))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&health.stdout).into_owned()
        + &String::from_utf8_lossy(&health.stderr);
    assert_eq!(kit::code_of(&health), 0, "{printed}");
    assert!(printed.contains("SERVING"), "{printed}");

    let proto = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let calls = Command::new("ghz")
        .arg("--import-paths")
        .arg(&proto)
        .args(["--proto", "rodent/echo/v1/echo.proto"])
        .args([
            "--call",
            "rodent.echo.v1.Echo.Echo",
            "--data",
            r#"{"message":"tls"}"#,
        ])
        .arg("--cacert")
        .arg(&ca_file)
        .args(["--cname", "localhost", "-n", "20", "--format", "json"])
        .arg(addr.to_string())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&calls.stdout).unwrap_or_else(|e| {
        panic!(
            "no ghz report ({e}): {}",
            String::from_utf8_lossy(&calls.stderr)
        )
    });
    assert_eq!(
        report["statusCodeDistribution"]["OK"], 20,
        "{}",
        report["errorDistribution"]
    );
}
