//! Garbage on the socket: malformed, truncated, contradictory and random requests. Each one is
//! answered or closed within the header-read timeout, never left hanging, and the process goes
//! on serving.

use std::io::Write;
use std::time::Duration;

use super::{Answer, answer};
use kit::{PATIENCE, client, connect, rodent};

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Hand-written cases: what a fuzzer would take a while to find.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let huge_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    let many_headers: String = (0..5_000).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let many_headers = format!("GET / HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n");
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty line", b"\r\n".to_vec()),
        ("only CRLFs", b"\r\n\r\n\r\n\r\n".to_vec()),
        ("truncated request line", b"GET / HT".to_vec()),
        ("truncated head", b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec()),
        ("truncated header name", b"GET / HTTP/1.1\r\nHo".to_vec()),
        ("truncated body", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this".to_vec()),
        ("absurd content-length", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999999\r\n\r\n".to_vec()),
        ("u64::MAX content-length", format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", u64::MAX).into_bytes()),
        ("negative content-length", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec()),
        ("non-numeric content-length", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n".to_vec()),
        ("two different content-lengths", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec()),
        ("content-length list", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd".to_vec()),
        ("content-length then chunked", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("chunked then content-length", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n4\r\nabcd\r\n0\r\n\r\n".to_vec()),
        ("chunked not last", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n4\r\nabcd\r\n0\r\n\r\n".to_vec()),
        ("unknown transfer-encoding", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: rot13\r\n\r\nabcd".to_vec()),
        ("transfer-encoding on HTTP/1.0", b"POST /echo HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n".to_vec()),
        ("bad chunk size", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n0\r\n\r\n".to_vec()),
        ("overflowing chunk size", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nabcd\r\n".to_vec()),
        ("chunk longer than announced", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcdefgh\r\n0\r\n\r\n".to_vec()),
        ("unterminated chunked body", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n".to_vec()),
        ("bare LF line endings", b"GET / HTTP/1.1\nHost: x\n\n".to_vec()),
        ("bare CR line endings", b"GET / HTTP/1.1\rHost: x\r\r".to_vec()),
        ("mixed line endings", b"GET / HTTP/1.1\r\nHost: x\n\r\n".to_vec()),
        ("NUL in the path", b"GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("NUL in a header value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".to_vec()),
        ("NUL bytes only", vec![0; 1024]),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n".to_vec()),
        ("header without colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n".to_vec()),
        ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n".to_vec()),
        ("lowercase method", b"get / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("unknown method", b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("no path", b"GET HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("asterisk form", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("absolute form", b"GET http://elsewhere.invalid/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("authority form on GET", b"GET elsewhere.invalid:80 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("CONNECT", b"CONNECT elsewhere.invalid:443 HTTP/1.1\r\nHost: elsewhere.invalid\r\n\r\n".to_vec()),
        ("HTTP/0.9", b"GET /\r\n".to_vec()),
        ("HTTP/9.9", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("no Host on HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec()),
        ("percent garbage in the path", b"GET /%zz%%/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("UTF-8 in the path", "GET /ünïcödé HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes().to_vec()),
        ("status out of range", b"GET /status/99999 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("expect 100-continue, no body", b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n".to_vec()),
        ("unknown expectation", b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: the-unexpected\r\nContent-Length: 1\r\n\r\na".to_vec()),
        ("h2c upgrade", b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n".to_vec()),
        ("websocket upgrade", b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec()),
        ("HTTP/2 preface only", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("HTTP/2 preface and garbage frames", [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], &[0xff; 64]].concat()),
        ("TLS client hello", vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]),
        ("request line too long", huge_line.into_bytes()),
        ("header too large", huge_header.into_bytes()),
        ("too many headers", many_headers.into_bytes()),
        ("pipelined valid and garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02\x03garbage\r\n\r\n".to_vec()),
    ];
    // Random bytes, from a fixed seed so a failure can be replayed.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..40 {
        let len = 1 + (next() % 4096) as usize;
        let bytes = (0..len).map(|_| next() as u8).collect();
        cases.push(("random bytes", bytes));
    }
    for _ in 0..20 {
        let mut bytes = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n".to_vec();
        let at = (next() % bytes.len() as u64) as usize;
        bytes[at] = next() as u8;
        cases.push(("a valid request with one byte changed", bytes));
    }
    cases
}

#[test]
fn garbage_is_answered_or_closed_and_never_crashes_or_hangs() {
    let mut rodent = rodent()
        .env(
            "RODENT_HEADER_READ_TIMEOUT",
            format!("{}ms", HEADER_READ_TIMEOUT.as_millis()),
        )
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .spawn();
    let addr = rodent.addr();
    // All at once: each may take up to the header-read timeout to be closed.
    let outcomes: Vec<(&str, Answer)> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases()
            .into_iter()
            .map(|(name, bytes)| {
                scope.spawn(move || {
                    let mut stream = connect(addr);
                    // The server may close before reading everything: that is an answer too.
                    let _ = stream.write_all(&bytes);
                    (name, answer(&mut stream, HEADER_READ_TIMEOUT + PATIENCE))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a garbage client does not panic"))
            .collect()
    });

    let hung: Vec<_> = outcomes
        .iter()
        .filter(|(_, a)| *a == Answer::Nothing)
        .collect();
    assert!(hung.is_empty(), "left hanging: {hung:?}");
    let server_errors: Vec<_> = outcomes
        .iter()
        .filter(|(_, a)| matches!(a, Answer::Status(s) if *s >= 500))
        .collect();
    assert!(
        server_errors.is_empty(),
        "garbage is the client's fault: {server_errors:?}"
    );

    assert!(rodent.is_running(), "{}", rodent.raw_lines().join("\n"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let after = runtime.block_on(async {
        client()
            .get(rodent.url("/"))
            .header("x-request-id", "after-the-garbage")
            .send()
            .await
    });
    assert_eq!(after.expect("rodent still serves").status(), 200);
    // Every line logged before this request's has been read once its line is in.
    rodent.wait_log(|l| l["request_id"] == "after-the-garbage");
    let panics: Vec<_> = rodent
        .raw_lines()
        .into_iter()
        .filter(|l| l.contains("panic"))
        .collect();
    assert!(panics.is_empty(), "{panics:#?}");

    let mut summary = std::collections::BTreeMap::<String, usize>::new();
    for (_, outcome) in &outcomes {
        *summary.entry(format!("{outcome:?}")).or_default() += 1;
    }
    eprintln!("{} garbage requests: {summary:?}", outcomes.len());
    for (name, outcome) in outcomes
        .iter()
        .filter(|(n, _)| !n.starts_with("random") && !n.starts_with("a valid"))
    {
        eprintln!("  {name}: {outcome:?}");
    }
}
