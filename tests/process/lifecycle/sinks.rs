//! Peers that stall never hold the exit: a stdout nobody reads and a closed stdout, under load,
//! then SIGTERM (rodent keeps serving, counts the log lines it drops, and exits inside the grace
//! with the clean code); a client that stops reading its response. And env-file names matched
//! exactly.

use kit::stalled::Stdout;
use kit::stalled::{self, assert_exits_in_time};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_nobody_reads_does_not_hold_the_exit() {
    let outcome = stalled::run(stalled::spawn(), &[], Stdout::Unread, |pid| pid).await;
    assert_exits_in_time(&outcome, 0);
    eprintln!("stdout unread: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_does_not_hold_the_exit() {
    let outcome = stalled::run(stalled::spawn(), &[], Stdout::Closed, |pid| pid).await;
    assert_exits_in_time(&outcome, 0);
    eprintln!("stdout closed: {outcome:?}");
}

/// A client that stops reading a response whose whole body hyper already holds: the request is
/// over as far as the handler goes, the connection is not. The shutdown deadline cuts it (exit
/// 124), long before the idle timeout would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_held_body_is_cut_at_the_deadline() {
    use std::time::{Duration, Instant};

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpSocket;

    const ECHOED: usize = 8 * 1024 * 1024;
    let grace = Duration::from_secs(3);
    let mut rodent = kit::rodent()
        .env("RODENT_SHUTDOWN_GRACE", "3s")
        .env("RODENT_REQUEST_TIMEOUT", "1s")
        .env("RODENT_BODY_LIMIT", (2 * ECHOED).to_string())
        .spawn();
    let socket = TcpSocket::new_v4().unwrap();
    // A small window, so the echo fills the buffers and the server's writes block.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(rodent.addr()).await.unwrap();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: rodent\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {ECHOED}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'e'; ECHOED]).await.unwrap();
    // The answer has started: the handler is done and hyper holds the whole body.
    let mut first = [0u8; 16];
    let peeked = tokio::time::timeout(kit::PATIENCE, stream.peek(&mut first))
        .await
        .expect("the echo starts")
        .unwrap();
    assert!(peeked > 0);
    kit::wait_in_flight(&rodent, "/echo", 0).await;

    let signalled = Instant::now();
    rodent.signal(nix::sys::signal::Signal::SIGTERM);
    let status = tokio::task::spawn_blocking(move || {
        let status = rodent.try_wait_exit(grace + Duration::from_secs(2));
        (status, rodent)
    });
    let (status, rodent) = status.await.unwrap();
    let took = signalled.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "rodent did not exit within the grace + 2 s with a client not reading; the log \
             was:\n{}",
            rodent.raw_lines().join("\n")
        )
    });
    assert_eq!(status.code(), Some(124), "{took:?}");
    assert!(took < grace + Duration::from_secs(2), "{took:?}");
    let aborted = rodent
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "shutdown deadline reached; remaining connections aborted")
        .expect("the deadline is logged");
    assert_eq!(aborted["aborted_connections"], 1, "{aborted}");
    drop(stream);
}

/// `RODENT_*` names are matched exactly, as the environment matches them: `rodent_port` in the
/// env file is not `RODENT_PORT` (it is not read, and a warning says so).
#[test]
fn names_in_another_case_in_the_env_file_are_not_read() {
    let dir = kit::TempDir::new("env-case");
    let path = dir.join("rodent.env");
    std::fs::write(&path, "rodent_port=1\nRODENT_Drain_Delay=bogus\n").unwrap();
    let rodent = kit::rodent()
        .env("RODENT_ENV_FILE", path.to_str().unwrap())
        .spawn();
    assert_ne!(rodent.addr().port(), 1);
    let warned = rodent.wait_log(|l| l["variable"] == "rodent_port");
    assert_eq!(warned["level"], "WARN", "{warned}");
    assert_eq!(warned["not"], "RODENT_PORT", "{warned}");
    let warned = rodent.wait_log(|l| l["variable"] == "RODENT_Drain_Delay");
    assert_eq!(warned["not"], "RODENT_DRAIN_DELAY", "{warned}");
}
