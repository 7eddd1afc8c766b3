//! What a client puts in a traced request stays bounded while a collector stalls: thousands of
//! client-sampled requests, each with about 60 KB of request id, user agent, path and
//! `tracestate`, against a collector that accepts and never answers. The spans waiting for it
//! are bounded by count and by bytes, and each client string in them (and in the log) is
//! clipped; `/healthz` stays fast and the exit comes inside the grace.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::SIGTERM;

use kit::{PATIENCE, Rodent, rodent};

const REQUESTS: usize = 8_000;
const CONNECTIONS: usize = 8;
const GRACE: Duration = Duration::from_secs(3);
/// The README's bound on client text kept in a span or a log line.
const CLIENT_TEXT_LIMIT: usize = 512;
/// Peak resident memory may grow by this much under the attack. Unbounded, the spans alone
/// held about 190 MB here; the chart's memory limit is 128 MiB.
const GROWTH_LIMIT_KB: u64 = 40 * 1024;

fn status_kb(rodent: &Rodent, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", rodent.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
}

/// Sends `n` requests on one keep-alive connection, each carrying `id` as its request id and
/// forcing its own sampling (`traceparent … -01`); returns the statuses.
fn hammer(address: SocketAddr, n: usize, id: &str, seed: usize) -> Vec<u16> {
    let agent = "a".repeat(8 * 1024);
    let path = format!("/{}", "p".repeat(8 * 1024));
    // 32 list members of 256 characters: the longest tracestate W3C allows.
    let tracestate: Vec<String> = (0..32)
        .map(|i| format!("k{i}={}", "v".repeat(256)))
        .collect();
    let tracestate = tracestate.join(",");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    (0..n)
        .map(|i| {
            let trace = format!("{:032x}", (seed * n + i + 1) as u128);
            let route = if i % 2 == 0 { "/" } else { path.as_str() };
            write!(
                stream,
                "GET {route} HTTP/1.1\r\nHost: rodent\r\nx-request-id: {id}\r\nuser-agent: {agent}\r\n\
                 traceparent: 00-{trace}-00f067aa0ba902b7-01\r\ntracestate: {tracestate}\r\n\r\n"
            )
            .unwrap();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            let mut length = 0;
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap();
                }
            }
            reader.by_ref().take(length).read_to_end(&mut Vec::new()).unwrap();
            status
        })
        .collect()
}

#[tokio::test]
async fn client_strings_against_a_stalled_collector_keep_memory_bounded() {
    // Accepts connections (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut rodent = rodent()
        .env("RODENT_LOG", "info")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", silent.local_addr().unwrap()),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "60000")
        // Only what clients ask for is sampled: the attack is theirs.
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "0")
        .env("RODENT_SHUTDOWN_GRACE", "3s")
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .env("RODENT_DRAIN_DELAY", "0s")
        .spawn();
    let address = rodent.addr();
    assert_eq!(hammer(address, 20, "warm-up", 0), [200, 404].repeat(10));
    let before = status_kb(&rodent, "VmRSS:");

    // With the rest, about 60 KB of client text per request, under the 64 KiB head limit.
    let id = "r".repeat(36 * 1024);
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|seed| {
            let id = id.clone();
            std::thread::spawn(move || hammer(address, REQUESTS / CONNECTIONS, &id, seed + 1))
        })
        .collect();
    for client in clients {
        let statuses = client.join().unwrap();
        assert!(
            statuses.iter().all(|s| [200, 404].contains(s)),
            "{statuses:?}"
        );
    }
    let grown = status_kb(&rodent, "VmHWM:").saturating_sub(before);
    assert!(
        grown < GROWTH_LIMIT_KB,
        "peak memory grew by {} MB",
        grown / 1024
    );
    let dropped: u64 = rodent.metrics().await.expect("rodent_spans_dropped_total");
    assert!(dropped > 0, "the queue refused spans past its bounds");

    let asked = Instant::now();
    assert_eq!(rodent.get("/healthz").await.status(), 200);
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "{:?}",
        asked.elapsed()
    );

    let logged = rodent.wait_log(|l| {
        l["message"] == "request"
            && l["request_id"]
                .as_str()
                .is_some_and(|i| i.starts_with("rr"))
    });
    assert_eq!(
        logged["request_id"].as_str().unwrap(),
        &id[..CLIENT_TEXT_LIMIT],
        "the log keeps the request id's first {CLIENT_TEXT_LIMIT} bytes"
    );

    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    rodent.exit_code(PATIENCE);
    let took = signalled.elapsed();
    assert!(
        took < GRACE,
        "took {took:?} to exit, past the {GRACE:?} grace"
    );
    drop(silent);
}
