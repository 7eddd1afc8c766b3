//! Upgraded connections are connections: a WebSocket on the reference service's `/ws/echo` is
//! counted while it is open, told of the drain (close 1001), waited for before the exit, and
//! aborted at the deadline when its handler ignores the drain.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::Signal::SIGTERM;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use kit::{PATIENCE, Rodent, eventually_async, rodent};

type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(addr: SocketAddr, path: &str) -> WebSocket {
    let (ws, response) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .expect("the WebSocket handshake succeeds");
    assert_eq!(response.status(), 101);
    ws
}

/// Sends `text` and expects it back.
async fn echo(ws: &mut WebSocket, text: &str) {
    ws.send(Message::text(text))
        .await
        .expect("the message is sent");
    let reply = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("an answer in time")
        .expect("the socket is open")
        .expect("a message");
    assert_eq!(reply, Message::text(text));
}

/// Waits until `rodent_connections_open` says `n`, the scrape's own connection included:
/// connections of earlier scrapes may take a moment to be counted out.
async fn wait_connections_open(rodent: &Rodent, n: u64) {
    eventually_async(PATIENCE, async || {
        let open: u64 = rodent.metrics().await.expect("rodent_connections_open");
        if open == n {
            Ok(())
        } else {
            Err(format!("rodent_connections_open is {open}, not {n}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_websocket_open_at_sigterm_gets_close_1001_and_is_waited_for() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "300ms").spawn();
    wait_connections_open(&rodent, 1).await;
    let mut ws = open(rodent.addr(), "/ws/echo").await;
    echo(&mut ws, "before").await;
    // The scrape's own connection, and the WebSocket.
    wait_connections_open(&rodent, 2).await;

    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "draining");
    // Served as usual through the drain delay.
    echo(&mut ws, "during the drain delay").await;

    let last = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("the close frame in time")
        .expect("the close frame, not the end of the stream")
        .expect("a frame, not an error");
    let Message::Close(Some(frame)) = last else {
        panic!("expected a close frame with a code, got {last:?}");
    };
    assert_eq!(frame.code, CloseCode::Away, "close 1001, going away");
    let closed = rodent.wait_log(|l| l["message"] == "listener closed");
    assert_eq!(
        closed["connections"], 1,
        "the WebSocket is in the drain's count: {closed}"
    );
    // The client takes its time to answer the close frame: the drain waits for it.
    let answered_after = Duration::from_millis(700);
    tokio::time::sleep(answered_after).await;
    let answered = signalled.elapsed();
    assert!(
        tokio::time::timeout(PATIENCE, ws.next()).await.is_ok(),
        "the closing handshake ends"
    );

    assert_eq!(rodent.exit_code(PATIENCE), 0);
    let finished = rodent.wait_log(|l| l["message"] == "in-flight requests finished");
    let finished_at = Duration::from_millis(finished["elapsed_ms"].as_u64().unwrap());
    assert!(
        finished_at + Duration::from_millis(100) >= answered,
        "the drain ended at {finished_at:?}, before the WebSocket closed at {answered:?}"
    );
}

#[tokio::test]
async fn a_websocket_that_ignores_the_drain_is_counted_then_aborted_at_the_deadline() {
    // Grace 2 s, so the margin is 200 ms and the deadline 1.8 s after the signal.
    let mut rodent = rodent()
        .env("RODENT_SHUTDOWN_GRACE", "2s")
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .env("RODENT_DRAIN_DELAY", "300ms")
        .spawn();
    wait_connections_open(&rodent, 1).await;
    let mut ws = open(rodent.addr(), "/ws/echo?drain=ignore").await;
    echo(&mut ws, "before").await;
    wait_connections_open(&rodent, 2).await;

    let signalled = Instant::now();
    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "listener closed");
    // The listener is closed and the drain signaled; this handler goes on regardless.
    echo(&mut ws, "after the listener closed").await;

    // Until the deadline cuts it: the stream ends, with no close frame from the handler.
    let cut = loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                panic!("the handler ignores the drain, yet sent a close frame: {frame:?}")
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => break signalled.elapsed(),
            Err(_) => panic!("the WebSocket was never cut"),
        }
    };
    assert!(
        cut >= Duration::from_millis(1500),
        "cut at {cut:?}, before the 1.8 s deadline"
    );
    assert_eq!(rodent.exit_code(PATIENCE), 124, "deadline reached");
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "exited {took:?} after SIGTERM"
    );
    let aborted = rodent.wait_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutdown deadline reached"))
    });
    assert_eq!(
        aborted["aborted_connections"], 1,
        "the WebSocket is counted as aborted (rodent_connections_aborted_total): {aborted}"
    );
}
