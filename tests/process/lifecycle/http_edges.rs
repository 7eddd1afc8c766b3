//! The edges of HTTP: timeouts, limits, malformed and slow clients, panics, overload. Every
//! error rodent answers is problem+json and every response carries a request id.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use kit::{client, connect, get_on, read_response, read_to_close, rodent, wait_in_flight};

async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    body
}

#[tokio::test]
async fn a_handler_past_the_request_timeout_answers_503() {
    let rodent = rodent().env("RODENT_REQUEST_TIMEOUT", "300ms").spawn();
    let started = Instant::now();
    let response = rodent.get("/delay/5000").await;
    let body = problem(response, 503).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("RODENT_REQUEST_TIMEOUT"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_body_over_the_limit_answers_413() {
    let rodent = rodent().env("RODENT_BODY_LIMIT", "1024").spawn();
    let client = client();
    let fits = client
        .post(rodent.url("/echo"))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
    assert_eq!(fits.bytes().await.unwrap().len(), 1024);

    // Declared too large: refused before reading.
    let declared = client
        .post(rodent.url("/echo"))
        .body(vec![b'a'; 4096])
        .send()
        .await
        .unwrap();
    problem(declared, 413).await;

    // Streamed with no length: refused once the limit is crossed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'b'; 512])).collect();
    let streamed = client
        .post(rodent.url("/echo"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    problem(streamed, 413).await;
}

#[test]
fn a_stalled_body_answers_408() {
    let rodent = rodent().env("RODENT_HEADER_READ_TIMEOUT", "300ms").spawn();
    let mut stream = connect(rodent.addr());
    write!(
        stream,
        "POST /echo HTTP/1.1\r\nHost: rodent\r\nContent-Length: 100\r\n\r\n0123456789"
    )
    .unwrap();
    let started = Instant::now();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 408);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(response.header("connection"), Some("close"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn oversized_headers_answer_431() {
    let rodent = rodent().spawn();
    let mut stream = connect(rodent.addr());
    let huge = "x".repeat(100 * 1024);
    // rodent may answer and close before the whole head is written: the write can fail.
    let _ = write!(
        stream,
        "GET / HTTP/1.1\r\nHost: rodent\r\nX-Huge: {huge}\r\n\r\n"
    );
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 431);
}

#[test]
fn a_malformed_request_answers_400() {
    let rodent = rodent().spawn();
    let mut stream = connect(rodent.addr());
    stream.write_all(b"THIS IS NOT HTTP\r\n\r\n").unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 400);
}

#[test]
fn a_client_that_sends_its_headers_slowly_is_disconnected() {
    let rodent = rodent().env("RODENT_HEADER_READ_TIMEOUT", "400ms").spawn();
    let mut trickling = connect(rodent.addr());
    let mut silent = connect(rodent.addr());
    let started = Instant::now();
    // The silent one is read at once, on a thread of its own, so that when it is cut is known.
    let silent = std::thread::spawn(move || {
        let mut nothing = Vec::new();
        let ended = silent.read_to_end(&mut nothing);
        (ended, nothing, started.elapsed())
    });
    // A byte every 100 ms keeps the socket busy but never finishes the head.
    for byte in b"GET / HTTP/1.1\r\nHost: rod" {
        if trickling.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let mut rest = Vec::new();
    let ended = trickling.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(ended.is_ok() || ended.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset);
    assert!(rest.is_empty(), "no response to an unfinished head");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "cut after {took:?}"
    );

    // A connection that sends nothing at all is cut the same way. (Its read times out after
    // PATIENCE if it is never cut: that is an error here, not an end.)
    let (ended, nothing, took) = silent.join().expect("the reading thread does not panic");
    assert!(
        ended.is_ok() || ended.as_ref().unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
        "the silent connection was not cut: {ended:?} after {took:?}"
    );
    assert!(nothing.is_empty(), "no response to nothing");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "silent connection cut after {took:?}"
    );
}

#[test]
fn keep_alive_outlives_the_header_timeout_and_ends_at_the_idle_timeout() {
    let rodent = rodent()
        .env("RODENT_HEADER_READ_TIMEOUT", "200ms")
        .env("RODENT_IDLE_TIMEOUT", "1500ms")
        .spawn();
    let mut stream = connect(rodent.addr());
    assert_eq!(get_on(&mut stream, "/").unwrap().status, 200);
    // Idle for three header timeouts: still open, because waiting between requests is idleness.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(get_on(&mut stream, "/").unwrap().status, 200);
    let idle_from = Instant::now();
    assert!(
        read_to_close(&mut stream).unwrap().is_empty(),
        "closed cleanly"
    );
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(1300) && idle < Duration::from_secs(4),
        "closed after {idle:?}"
    );
}

#[test]
fn a_slow_second_head_on_a_kept_alive_connection_is_cut_at_the_header_read_timeout() {
    // The idle timeout is long, so a cut at the header-read timeout cannot be an idle close.
    let rodent = rodent()
        .env("RODENT_HEADER_READ_TIMEOUT", "1s")
        .env("RODENT_IDLE_TIMEOUT", "30s")
        .spawn();
    let mut stream = connect(rodent.addr());
    assert_eq!(get_on(&mut stream, "/").unwrap().status, 200);
    // Idle for a while first: the head is timed from its first byte, not from the last response.
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let mut reader = stream.try_clone().unwrap();
    let cut = std::thread::spawn(move || (read_to_close(&mut reader), started.elapsed()));
    // A byte every 100 ms, never finishing the head, until the connection is cut (or for twice
    // the patience, which fails below).
    for byte in b"GET / HTTP/1.1\r\nHost: rodent\r\nX-Slow: ".iter().cycle() {
        if cut.is_finished() || started.elapsed() > 2 * kit::PATIENCE {
            break;
        }
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ended, took) = cut.join().expect("the reading thread does not panic");
    let rest = ended.unwrap_or_default();
    assert!(rest.is_empty(), "no response to an unfinished head");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(5),
        "the second head was cut {took:?} after its first byte (header-read timeout 1s, idle \
         timeout 30s)"
    );
    rodent.wait_log(|l| {
        l["message"] == "request head not received within the header-read timeout; disconnecting"
    });
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_next_request_succeeds() {
    let rodent = rodent().spawn();
    let body = problem(rodent.get("/panic").await, 500).await;
    assert!(body["detail"].as_str().unwrap().contains("panicked"));
    assert_eq!(rodent.get("/").await.status(), 200);
    let logged = rodent.wait_log(|l| l["message"] == "panic");
    assert_eq!(logged["panic"], "GET /panic was requested");
}

#[tokio::test]
async fn overload_is_shed_while_probes_answer_fast() {
    let rodent = rodent().env("RODENT_MAX_INFLIGHT", "2").spawn();
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(client().get(rodent.url("/delay/3000")).send()))
        .collect();
    wait_in_flight(&rodent, "/delay/{ms}", 2).await;

    let shed = rodent.get("/").await;
    assert_eq!(shed.headers()["retry-after"], "1");
    let body = problem(shed, 503).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("RODENT_MAX_INFLIGHT"),
        "{body}"
    );

    for probe in ["/healthz", "/readyz", "/metrics"] {
        let started = Instant::now();
        let response = rodent.get(probe).await;
        assert_eq!(response.status(), 200, "{probe} while saturated");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{probe} took {:?}",
            started.elapsed()
        );
    }
    let metrics = rodent.metrics().await;
    assert_eq!(
        metrics.value::<u64>("rodent_http_requests_shed_total"),
        Some(1),
        "{}",
        metrics.text()
    );
    for request in slow {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
}

#[tokio::test]
async fn errors_are_problem_json() {
    let rodent = rodent().spawn();
    let client = client();
    let missing = problem(rodent.get("/no/such/route").await, 404).await;
    assert_eq!(missing["title"], "Not Found");
    let wrong_method = client.post(rodent.url("/")).send().await.unwrap();
    assert_eq!(wrong_method.headers()["allow"], "GET,HEAD");
    problem(wrong_method, 405).await;
    let bad_path = problem(rodent.get("/delay/soon").await, 400).await;
    assert!(
        bad_path["detail"].as_str().unwrap().contains("parse"),
        "{bad_path}"
    );
    problem(rodent.get("/status/418").await, 418).await;
    assert_eq!(rodent.get("/status/204").await.status(), 204);
}

#[tokio::test]
async fn request_ids_are_kept_or_made() {
    let rodent = rodent().spawn();
    let client = client();
    let kept = client
        .get(rodent.url("/"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123");
    let logged = rodent.wait_log(|l| l["message"] == "request" && l["request_id"] == "abc-123");
    assert_eq!(logged["route"], "/");
    assert_eq!(logged["status"], 200);
    assert_eq!(logged["method"], "GET");
    assert!(logged["latency_ms"].is_number());

    let made = rodent.get("/nope").await;
    let id = made.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

#[tokio::test]
async fn streams_and_info_routes_work() {
    let rodent = rodent().spawn();
    let client = client();
    let info: serde_json::Value = rodent.get("/").await.json().await.unwrap();
    assert_eq!(info["name"], "rodent");
    assert_eq!(info["state"], "ready");
    assert_eq!(info["pid"], rodent.pid().as_raw());
    let version: serde_json::Value = rodent.get("/version").await.json().await.unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let lines = rodent.get("/stream/250").await.text().await.unwrap();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    let echoed = client
        .post(rodent.url("/echo"))
        .header("content-type", "text/x-rodent")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["content-type"], "text/x-rodent");
    assert_eq!(echoed.text().await.unwrap(), "hello");
}
