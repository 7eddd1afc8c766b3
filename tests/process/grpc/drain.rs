//! A gRPC client that connects during the drain delay (a kube-proxy that has not yet learned of
//! the drain sends it there) is served, and sent a GOAWAY a second after it connected (with its
//! first call if later), so that it moves its next calls elsewhere long before the listener
//! closes: a call that raced the close would be refused with UNAVAILABLE. Spoken with the `h2` crate, which shows what the server sent.

use std::time::Instant;

use axum::http::Request;
use bytes::Bytes;
use nix::sys::signal::Signal::SIGTERM;
use prost::Message;
use tokio::net::TcpStream;

use super::pb::{EchoRequest, EchoResponse};
use super::{ECHO, SOON, exits_cleanly};
use kit::rodent;

#[tokio::test]
async fn a_client_that_connects_during_the_drain_delay_is_served_then_sent_a_goaway() {
    let mut rodent = rodent()
        .env("RODENT_DRAIN_DELAY", "6s")
        .env("RODENT_REQUEST_TIMEOUT", "5s")
        .spawn();
    let addr = rodent.addr();
    rodent.signal(SIGTERM);
    rodent.wait_log(|l| l["message"] == "draining");

    let tcp = TcpStream::connect(addr).await.unwrap();
    let (calls, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut ping_pong = connection.ping_pong().expect("the first ping_pong");
    let connection = tokio::spawn(connection);
    // As gRPC clients do, the first call waits for the server to answer on the connection (a
    // PING here), so the server has taken in the connection, not yet knowing its protocol.
    ping_pong.ping(h2::Ping::opaque()).await.unwrap();
    let request = Request::post(format!("http://{addr}/{ECHO}/Echo"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut calls = calls.ready().await.unwrap();
    let (answer, mut body) = calls.send_request(request, false).unwrap();
    let message = EchoRequest {
        message: "during the drain".into(),
    };
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
    message.encode(&mut frame).unwrap();
    body.send_data(Bytes::from(frame), true).unwrap();

    // The call is served.
    let answer = answer.await.unwrap();
    assert_eq!(answer.status(), 200);
    let mut received = answer.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = received.data().await {
        let chunk = chunk.unwrap();
        let _ = received.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = received.trailers().await.unwrap().expect("gRPC trailers");
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    let echoed = EchoResponse::decode(&data[5..]).unwrap();
    assert_eq!(echoed.message, "during the drain");

    // Then the server ends the connection (GOAWAY, then close), with `calls` still held, so the
    // client did not end it, and within a few seconds of a 6 s drain delay.
    let waited = Instant::now();
    let ended = tokio::time::timeout(SOON, connection).await;
    assert!(
        ended.is_ok(),
        "the connection made during the drain delay is still open {:?} after its call",
        waited.elapsed()
    );
    assert!(
        !rodent
            .json_lines()
            .iter()
            .any(|l| l["message"] == "listener closed"),
        "the listener had already closed"
    );
    drop(calls);
    exits_cleanly(&mut rodent).await;
}
