//! SIGTERM and SIGINT: readiness fails at once, serving goes on through the drain delay, the
//! listener closes, in-flight requests finish, and the exit comes inside the grace period.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::{SIGINT, SIGTERM};

use kit::{PATIENCE, client, connect, get_on, read_to_close, rodent, wait_in_flight};

#[tokio::test]
async fn readiness_fails_at_once_while_liveness_and_routes_keep_answering() {
    let rodent = rodent().env("RODENT_DRAIN_DELAY", "3s").spawn();
    assert_eq!(rodent.get("/readyz").await.status(), 200);

    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    let flipped = loop {
        let response = rodent.get("/readyz").await;
        if response.status() == 503 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["state"], "draining");
            break signalled.elapsed();
        }
        assert!(signalled.elapsed() < PATIENCE, "readiness never failed");
    };
    // The contract says < 100 ms; the bound is wider because tests share two cores.
    assert!(
        flipped < Duration::from_millis(500),
        "readiness took {flipped:?} to fail"
    );

    let health = rodent.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["content-type"], "application/health+json");
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "pass");
    assert_eq!(health["state"], "draining");

    // A new connection during the drain delay is served, and told to go elsewhere next time.
    let served = rodent.get("/").await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["connection"], "close");
}

#[tokio::test]
async fn a_request_longer_than_the_drain_completes_and_new_connections_are_refused_after_it() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "200ms").spawn();
    let slow = tokio::spawn(client().get(rodent.url("/delay/1500")).send());
    wait_in_flight(&rodent, "/delay/{ms}", 1).await;

    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    let closed = rodent.wait_log(|l| l["message"] == "listener closed");
    assert_eq!(
        closed["in_flight"], 1,
        "the slow request is still in flight: {closed}"
    );
    let refused = std::net::TcpStream::connect(rodent.addr()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    let response = slow
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["delay_ms"], 1500);

    assert_eq!(rodent.exit_code(PATIENCE), 0);
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1200),
        "exited before the request could finish: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "exit took {took:?}, far more than drain + in-flight"
    );
}

#[tokio::test]
async fn an_idle_service_exits_zero_right_after_the_drain_delay() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "300ms").spawn();
    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "exited before the drain delay: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    let stopped = rodent.wait_log(|l| l["message"] == "stopped");
    assert_eq!(stopped["exit_code"], 0);
}

#[tokio::test]
async fn sigint_drains_like_sigterm() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "1s").spawn();
    rodent.signal(SIGINT);
    let draining = rodent.wait_log(|l| l["message"] == "draining");
    assert_eq!(draining["signal"], "SIGINT");
    assert_eq!(rodent.get("/readyz").await.status(), 503);
    assert_eq!(rodent.get("/").await.status(), 200);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn a_stream_longer_than_the_grace_is_cut_at_the_deadline() {
    // Grace 2 s, so the margin is 200 ms and the deadline 1.8 s after the signal.
    let mut rodent = rodent()
        .env("RODENT_SHUTDOWN_GRACE", "2s")
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .spawn();
    let mut stream = rodent.get("/stream/60000?drain=ignore").await;
    assert_eq!(stream.status(), 200);
    assert!(
        stream.chunk().await.unwrap().is_some(),
        "the stream started"
    );

    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 124, "the deadline code");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1700),
        "aborted before the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "still running at the end of the grace: {took:?}"
    );

    let aborted = rodent
        .wait_log(|l| l["message"] == "shutdown deadline reached; remaining connections aborted");
    assert_eq!(aborted["aborted_connections"], 1);
    // The client sees its stream end early rather than hang.
    let mut rest = Vec::new();
    while let Ok(Some(chunk)) = stream.chunk().await {
        rest.extend_from_slice(&chunk);
    }
    assert!(rest.len() < 600 * 12, "the stream was not cut");
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let mut rodent = rodent()
        .env("RODENT_DRAIN_DELAY", "20s")
        .env("RODENT_REQUEST_TIMEOUT", "5s")
        .spawn();
    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "draining");
    let second = Instant::now();
    rodent.signal(SIGINT);
    assert_eq!(rodent.exit_code(PATIENCE), 123, "the forced-exit code");
    let took = second.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "a second signal took {took:?} to stop the process"
    );
}

#[test]
fn a_kept_alive_connection_is_told_to_close_and_never_reset() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "1s").spawn();
    let mut busy = connect(rodent.addr());
    let mut idle = connect(rodent.addr());
    for stream in [&mut busy, &mut idle] {
        let first = get_on(stream, "/").unwrap();
        assert_eq!(first.status, 200);
        assert_eq!(
            first.header("connection"),
            None,
            "keep-alive before the drain"
        );
    }

    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "draining");

    // A request on a kept-alive connection during the drain is answered in full, with
    // `Connection: close`, and then the connection ends cleanly.
    let during = get_on(&mut busy, "/").unwrap();
    assert_eq!(during.status, 200);
    assert_eq!(during.header("connection"), Some("close"));
    assert!(
        read_to_close(&mut busy).unwrap().is_empty(),
        "closed with a FIN, nothing after"
    );

    // A connection left idle through the whole drain is closed cleanly when the listener closes.
    rodent.wait_log(|l| l["message"] == "listener closed");
    assert!(
        read_to_close(&mut idle).unwrap().is_empty(),
        "closed with a FIN, not a reset"
    );
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

/// A client whose connection was accepted shortly before the listener closed, and whose first
/// request reaches rodent only after, gets an answer, not a dropped connection: a connection that
/// has not sent its first request is not idle (its request may be on the wire), so it is given a
/// moment after it connected to send it. One that sends nothing in that moment is closed, and
/// holds up nothing.
#[test]
fn a_first_request_that_arrives_just_after_the_listener_closed_is_answered() {
    // A short drain delay: the request must reach rodent well inside the second it is given.
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "100ms").spawn();
    let mut late = connect(rodent.addr());
    let mut silent = connect(rodent.addr());
    let connected = Instant::now();

    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "listener closed");
    let answer = get_on(&mut late, "/").expect("the first request is answered");
    assert_eq!(
        answer.status, 503,
        "the listener is closed: come back later"
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(
        read_to_close(&mut late).unwrap().is_empty(),
        "closed with a FIN after the answer"
    );

    assert!(
        read_to_close(&mut silent).unwrap().is_empty(),
        "a connection that never sent anything is closed cleanly"
    );
    assert_eq!(rodent.exit_code(PATIENCE), 0);
    assert!(
        connected.elapsed() < Duration::from_secs(5),
        "a silent connection held the exit for {:?}",
        connected.elapsed()
    );
}

#[test]
fn a_signal_during_startup_is_not_lost() {
    // The signal lands while configuration is read or the runtime starts; it must stop the
    // service cleanly, not kill it with the signal's default action.
    let mut rodent = rodent().no_wait().spawn();
    rodent.wait_log(|l| l["message"] == "starting");
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn http2_clients_get_a_goaway_and_lose_nothing() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "1s").spawn();
    let client = kit::client_builder()
        .http2_prior_knowledge()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let warm = client.get(rodent.url("/")).send().await.unwrap();
    assert_eq!(warm.version(), reqwest::Version::HTTP_2);
    let slow = tokio::spawn(client.get(rodent.url("/delay/1500")).send());
    wait_in_flight(&rodent, "/delay/{ms}", 1).await;

    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "draining: GOAWAY sent to an HTTP/2 client");
    // After the GOAWAY the client opens a new connection, which the drain still serves.
    for _ in 0..5 {
        let during = client.get(rodent.url("/")).send().await.unwrap();
        assert_eq!(during.status(), 200);
        assert_eq!(during.version(), reqwest::Version::HTTP_2);
    }
    assert_eq!(
        slow.await.unwrap().unwrap().status(),
        200,
        "the in-flight stream completes"
    );
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn no_thread_of_the_service_blocks_the_signals_its_children_inherit() {
    // A child process inherits the signal mask of the thread that spawns it: a service thread
    // with SIGTERM blocked would start children that ignore SIGTERM.
    let rodent = rodent().spawn();
    for _ in 0..20 {
        rodent.get("/").await;
    }
    let handled = [1u64, 2, 3, 10, 12, 15, 28]
        .iter()
        .fold(0u64, |mask, n| mask | 1 << (n - 1));
    let tasks = std::fs::read_dir(format!("/proc/{}/task", rodent.pid())).unwrap();
    let mut threads = 0;
    for task in tasks {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let name = status.lines().next().unwrap().to_string();
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
            .unwrap();
        assert_eq!(blocked & handled, 0, "{name} blocks {blocked:#x}");
        threads += 1;
    }
    assert!(
        threads > 2,
        "the runtime's threads were inspected ({threads})"
    );
}

#[tokio::test]
async fn a_stream_ends_itself_with_a_last_line_when_the_listener_closes() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "1s").spawn();
    let mut stream = rodent.get("/stream/60000").await;
    assert_eq!(stream.status(), 200);
    let mut body = stream
        .chunk()
        .await
        .unwrap()
        .expect("the stream started")
        .to_vec();

    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    // Read to the end: an error here would be a cut connection (what curl calls exit 18).
    while let Some(chunk) = stream.chunk().await.expect("a complete response") {
        body.extend_from_slice(&chunk);
    }
    let ended = signalled.elapsed();
    let text = String::from_utf8(body).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["ended"], "stopping", "{text}");
    assert!(
        last["reason"].as_str().unwrap().contains("stopping"),
        "{last}"
    );
    assert!(
        ended >= Duration::from_millis(900) && ended < Duration::from_secs(5),
        "ended when the listener closed, a drain delay after the signal: {ended:?}"
    );
    assert_eq!(rodent.exit_code(PATIENCE), 0, "nothing was left to abort");
}

#[tokio::test]
async fn server_sent_events_end_with_a_last_event_when_the_listener_closes() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "1s").spawn();
    let mut events = rodent.get("/events?every_ms=100").await;
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut body = events
        .chunk()
        .await
        .unwrap()
        .expect("the first event")
        .to_vec();

    rodent.signal(SIGTERM);
    while let Some(chunk) = events.chunk().await.expect("a complete response") {
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(events.len() >= 2, "{text}");
    assert!(
        events[0].starts_with("event: tick\ndata: {\"tick\":1}"),
        "{text}"
    );
    let last = events.last().unwrap();
    assert!(last.starts_with("event: end\ndata: "), "{text}");
    let data: serde_json::Value =
        serde_json::from_str(last.strip_prefix("event: end\ndata: ").unwrap()).unwrap();
    assert_eq!(data["ended"], "stopping");
    assert_eq!(
        data["ticks"],
        events.len() - 1,
        "every tick counted: {text}"
    );
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}
