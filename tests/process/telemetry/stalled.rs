//! Collectors that stall hold neither requests nor the exit: one that accepts and never answers
//! (over gRPC; `traces.rs` has it over http/protobuf), and one that answers, very slowly. The
//! final flush is cut at the shutdown hooks' hard stop, inside the grace.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::SIGTERM;

use kit::{PATIENCE, rodent};

const GRACE: Duration = Duration::from_secs(2);

/// A collector that reads each request and answers it one byte every 200 ms: the status line
/// alone takes seconds, longer than the grace.
fn slow_collector() -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let accepting = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        for stream in accepting.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 64 * 1024];
                if stream.read(&mut buf).unwrap_or(0) == 0 {
                    return;
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                               content-length: 0\r\n\r\n";
                for byte in answer {
                    if stream.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
    });
    listener
}

/// Serves a few requests (each exported to `endpoint`), then SIGTERM: the exit comes inside the
/// grace, with code 0 (telemetry is best effort) and a log line saying how many spans the cut
/// flush dropped.
async fn exits_inside_the_grace(endpoint: String, protocol: &str) {
    let mut rodent = rodent()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "60000")
        .env("OTEL_BSP_SCHEDULE_DELAY", "20")
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
    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    let code = rodent.exit_code(PATIENCE);
    let took = signalled.elapsed();
    assert!(
        took < GRACE,
        "took {took:?} to exit, past the {GRACE:?} grace"
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
}

#[tokio::test]
async fn a_collector_that_answers_very_slowly_holds_neither_requests_nor_the_exit() {
    let slow = slow_collector();
    let endpoint = format!("http://{}", slow.local_addr().unwrap());
    exits_inside_the_grace(endpoint, "http/protobuf").await;
}

#[tokio::test]
async fn a_grpc_collector_that_never_answers_holds_neither_requests_nor_the_exit() {
    // Accepts connections (the kernel does) and never answers, not even the HTTP/2 preface.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    exits_inside_the_grace(endpoint, "grpc").await;
    drop(silent);
}
