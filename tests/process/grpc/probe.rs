//! `rodent probe grpc`: the gRPC health check of an image without a shell, as a Docker
//! `HEALTHCHECK` or an `exec` probe runs it.

use nix::sys::signal::Signal::SIGTERM;

use super::ECHO;
use kit::{PATIENCE, eventually, rodent};

#[test]
fn rodent_probe_grpc_checks_the_health_service() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "5s").spawn();
    let port = rodent.addr().port().to_string();
    let probe = |args: &[&str]| {
        kit::rodent()
            .env("RODENT_PORT", port.clone())
            .run(&[&["probe", "grpc"], args].concat())
    };
    let (code, _, stderr) = probe(&[]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = probe(&["--service", ECHO]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = probe(&["--service", "no.such.Service"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("NotFound"), "{stderr}");
    let url = format!("http://{}", rodent.addr());
    let (code, _, stderr) = kit::rodent().run(&["probe", "grpc", "--url", &url]);
    assert_eq!(code, 0, "{stderr}");
    // --service is for gRPC alone.
    let (code, _, stderr) = probe(&["--service", ECHO, "--url", &url]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) =
        kit::rodent().run(&["probe", "ready", "--service", ECHO, "--url", &url]);
    assert_eq!(code, 2, "{stderr}");

    rodent.signal(SIGTERM);
    let stderr = eventually(PATIENCE, || match probe(&[]) {
        (1, _, stderr) => Ok(stderr),
        (code, _, stderr) => Err(format!("{code}: {stderr}")),
    });
    assert!(stderr.contains("NOT_SERVING"), "{stderr}");
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    let (code, _, stderr) = probe(&[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn rodent_probe_grpc_asks_the_management_port_when_there_is_one() {
    let port = kit::free_port();
    let rodent = rodent()
        .env("RODENT_MANAGEMENT_PORT", port.to_string())
        .spawn();
    let (code, _, stderr) = kit::rodent()
        .env("RODENT_PORT", "1")
        .env("RODENT_MANAGEMENT_PORT", port.to_string())
        .run(&["probe", "grpc"]);
    assert_eq!(code, 0, "{stderr}");
    drop(rodent);
}
