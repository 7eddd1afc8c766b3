//! Slow clients: hundreds trickling their headers a byte at a time, and clients that stop
//! reading their responses. Each is cut at its timeout (header-read, idle) while ordinary
//! clients and probes keep getting prompt answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use kit::{PATIENCE, Rodent, client, rodent, try_eventually};

const TRICKLERS: usize = 300;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Clients that send a large body to `/echo` and never read the echo.
const NON_READERS: usize = 10;
const ECHOED: usize = 8 * 1024 * 1024;
/// The timers are checked to the millisecond; a cut may land that much early.
const TIMER_SLACK: Duration = Duration::from_millis(50);

/// How a trickling client ended.
#[derive(Debug)]
enum Trickle {
    /// The server cut it this long after it connected (got `bytes` back first, if any).
    Cut { after: Duration, bytes: usize },
    /// Still connected when the test stopped waiting.
    NeverCut,
}

/// Sends a request head one byte every 100 ms, never finishing it.
async fn trickle(addr: SocketAddr) -> Trickle {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("rodent accepts the connection");
    let connected = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: rodent\r\nX-Trickle: ";
    let mut sent = 0;
    let mut beat = tokio::time::interval(Duration::from_millis(100));
    let mut buf = [0u8; 1024];
    let give_up = tokio::time::sleep(HEADER_READ_TIMEOUT + PATIENCE);
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            () = &mut give_up => return Trickle::NeverCut,
            read = stream.read(&mut buf) => {
                let bytes = read.unwrap_or(0);
                return Trickle::Cut { after: connected.elapsed(), bytes };
            }
            _ = beat.tick() => {
                let byte = head.get(sent).copied().unwrap_or(b'a');
                if stream.write_all(&[byte]).await.is_err() {
                    return Trickle::Cut { after: connected.elapsed(), bytes: 0 };
                }
                sent += 1;
            }
        }
    }
}

/// Ordinary traffic during the attack: a fresh connection per request, to `/` and both probes.
/// Returns how many were answered 200 and the slowest answer.
async fn ordinary(
    rodent_url: impl Fn(&str) -> String,
    until: tokio::sync::watch::Receiver<bool>,
) -> (usize, Duration) {
    let client = client();
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    while !*until.borrow() {
        for path in ["/", "/readyz", "/healthz"] {
            let started = Instant::now();
            let response = client
                .get(rodent_url(path))
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path} failed during the attack: {e}"));
            assert_eq!(response.status(), 200, "GET {path} during the attack");
            response.bytes().await.expect("the body arrives");
            slowest = slowest.max(started.elapsed());
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (answered, slowest)
}

/// Sends `ECHOED` bytes to `/echo` from a socket with a tiny receive buffer and reads nothing
/// back. Returns the open socket and when its request was fully sent.
async fn stop_reading(addr: SocketAddr) -> (TcpStream, Instant) {
    let socket = TcpSocket::new_v4().expect("a socket");
    // A small window, so the echo fills the buffers and the server's writes block.
    socket
        .set_recv_buffer_size(4096)
        .expect("the buffer size can be set");
    let mut stream = socket
        .connect(addr)
        .await
        .expect("rodent accepts the connection");
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: rodent\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {ECHOED}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'e'; ECHOED]).await.unwrap();
    (stream, Instant::now())
}

/// The peers of the log lines with `message`, once there are `expected` of them: rodent writes
/// its log in batches, so a line may follow the disconnection it reports by a few milliseconds.
fn cut_lines(rodent: &Rodent, message: &str, expected: usize) -> Vec<String> {
    try_eventually(PATIENCE, || {
        let peers: Vec<String> = rodent
            .json_lines()
            .into_iter()
            .filter(|l| l["message"] == message)
            .filter_map(|l| l["peer"].as_str().map(str::to_string))
            .collect();
        match peers.len() >= expected {
            true => Ok(peers),
            false => Err(peers),
        }
    })
    .unwrap_or_else(|peers| peers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_trickling_clients_are_cut_while_everyone_else_is_served() {
    let rodent = rodent().env("RODENT_HEADER_READ_TIMEOUT", "1s").spawn();
    let addr = rodent.addr();
    let base = format!("http://{addr}");
    let (stop_ordinary, until) = tokio::sync::watch::channel(false);
    let ordinary = tokio::spawn(ordinary(move |path| format!("{base}{path}"), until));

    let mut tricklers = JoinSet::new();
    for _ in 0..TRICKLERS {
        tricklers.spawn(trickle(addr));
    }
    let mut cut_after = Vec::new();
    while let Some(outcome) = tricklers.join_next().await {
        match outcome.expect("a trickling client does not panic") {
            Trickle::Cut { after, bytes } => {
                assert_eq!(bytes, 0, "a slow head is dropped without an answer");
                cut_after.push(after);
            }
            Trickle::NeverCut => panic!("a trickling client was never cut"),
        }
    }
    stop_ordinary.send(true).unwrap();
    let (answered, slowest) = ordinary.await.expect("ordinary clients were all answered");

    cut_after.sort();
    let (first, last) = (cut_after[0], cut_after[cut_after.len() - 1]);
    assert!(
        first + TIMER_SLACK >= HEADER_READ_TIMEOUT,
        "a trickling client was cut after {first:?}, before the header-read timeout"
    );
    assert!(
        last <= HEADER_READ_TIMEOUT + PATIENCE / 2,
        "a trickling client was cut only after {last:?}"
    );
    assert_eq!(
        cut_lines(
            &rodent,
            "request head not received within the header-read timeout; disconnecting",
            TRICKLERS
        )
        .len(),
        TRICKLERS
    );
    assert!(
        answered >= 15,
        "only {answered} ordinary requests during the attack"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "an ordinary request took {slowest:?} during the attack"
    );
    eprintln!(
        "{TRICKLERS} trickling clients cut {first:?}..{last:?} after connecting; {answered} \
         ordinary requests answered meanwhile, the slowest in {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_cut_at_the_idle_timeout_while_everyone_else_is_served() {
    let rodent = rodent()
        .env("RODENT_IDLE_TIMEOUT", "2s")
        .env("RODENT_BODY_LIMIT", (2 * ECHOED).to_string())
        .spawn();
    let addr = rodent.addr();
    let base = format!("http://{addr}");
    let (stop_ordinary, until) = tokio::sync::watch::channel(false);
    let ordinary = tokio::spawn(ordinary(move |path| format!("{base}{path}"), until));

    let mut non_readers = JoinSet::new();
    for _ in 0..NON_READERS {
        non_readers.spawn(stop_reading(addr));
    }
    while let Some(joined) = non_readers.join_next().await {
        let (mut stream, sent) = joined.expect("a non-reading client does not panic");
        let me = stream.local_addr().unwrap().to_string();
        rodent.wait_log(|l| {
            l["message"]
                == "client stopped reading its response for the idle timeout; disconnecting"
                && l["peer"] == me.as_str()
        });
        let waited = sent.elapsed();
        assert!(
            waited + TIMER_SLACK >= IDLE_TIMEOUT,
            "a client that stopped reading was cut after {waited:?}, before the idle timeout"
        );
        // Reading now gets what was already buffered, then the end: the echo was cut short.
        let mut echoed = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut echoed))
            .await
            .expect("the cut connection ends");
        assert!(
            echoed.len() < ECHOED,
            "the whole echo arrived ({} bytes): the client was not cut",
            echoed.len()
        );
    }
    stop_ordinary.send(true).unwrap();
    let (answered, slowest) = ordinary.await.expect("ordinary clients were all answered");
    assert!(
        answered >= 15,
        "only {answered} ordinary requests during the attack"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "an ordinary request took {slowest:?} during the attack"
    );
}
