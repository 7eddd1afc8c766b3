//! The library as an embedding application uses it: `Rodent::serve(listener, shutdown)` in the
//! test's own runtime, on paused time, so the drain is checked step by step and deterministically
//! (a virtual second takes no real time, and nothing depends on how busy the machine is).
//! `routes` covers what an application hands over: its fallback, its layers, its admin routes
//! and the paths it may not take; `unbounded`, routes without the handler timeout and body
//! bounds. Both in real time, with short bounds: tower-http's timers and real sockets, as a
//! client meets them.

mod routes;
mod unbounded;

mod inside_the_drain;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use rodent::{Config, Drain, Exit, Rodent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

const DRAIN_DELAY: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(30);

fn config() -> Config {
    config_with(&[])
}

/// The configuration of these tests, with `vars` set over it.
fn config_with(vars: &[(&str, &str)]) -> Config {
    let mut all = vec![
        ("RODENT_DRAIN_DELAY", "5s"),
        ("RODENT_SHUTDOWN_GRACE", "30s"),
        ("RODENT_REQUEST_TIMEOUT", "20s"),
        ("RODENT_PID_FILE", ""),
    ];
    all.retain(|(name, _)| !vars.iter().any(|(set, _)| set == name));
    all.extend_from_slice(vars);
    Config::from_vars(all).expect("a valid configuration")
}

/// One request on a fresh connection, read to the end (HTTP/1.1, `Connection: close`): the
/// status line and the body. Plain bytes on a socket, so nothing else's timers are involved.
async fn fetch(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: rodent\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("cut: {body:?}"))
        })?
    } else {
        body.to_string()
    };
    Ok((status, head, body))
}

/// A chunked body's content; `None` unless it ends with the last (empty) chunk, as a complete
/// response does.
fn dechunk(mut raw: &str) -> Option<String> {
    let mut body = String::new();
    loop {
        let (size, rest) = raw.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return (rest == "\r\n").then_some(body);
        }
        body.push_str(rest.get(..size)?);
        raw = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Exit>,
}

async fn start(routes: Router) -> Running {
    start_with(Rodent::new(config()).routes(routes)).await
}

/// Serves `rodent` on a port of its own until [`Running::stop`] is sent; returns once it is
/// ready.
async fn start_with(rodent: Rodent) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(rodent.serve(listener, async {
        let _ = stopped.await;
    }));
    // Startup hooks (none) run after binding: ready is a moment away.
    loop {
        if fetch(addr, "/readyz").await.unwrap().0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Running {
        addr,
        stop: Some(stop),
        served,
    }
}

/// A client for the real-time tests: no proxy, a fresh connection per request.
fn client() -> reqwest::Client {
    kit::client_builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn url(running: &Running, path: &str) -> String {
    format!("http://{}{path}", running.addr)
}

/// Stops `running` and returns how it ended.
async fn stop(mut running: Running) -> Exit {
    running.stop.take().unwrap().send(()).unwrap();
    running.served.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_drain_step_by_step() {
    // The handler says when it has the request: the signal is sent only after that.
    let admitted = Arc::new(Notify::new());
    let routes = Router::new().route(
        "/slow",
        get({
            let admitted = admitted.clone();
            move || async move {
                admitted.notify_one();
                tokio::time::sleep(Duration::from_secs(10)).await;
                "done"
            }
        }),
    );
    let mut rodent = start(routes).await;
    let addr = rodent.addr;
    let mut slow = tokio::spawn(async move { fetch(addr, "/slow").await });
    tokio::select! {
        () = admitted.notified() => {}
        early = &mut slow => panic!("/slow ended before its handler ran: {early:?}"),
    }

    let signalled = Instant::now();
    rodent.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;

    // Readiness fails at once; liveness and the routes keep answering, with Connection: close.
    assert_eq!(fetch(addr, "/readyz").await.unwrap().0, 503);
    assert_eq!(fetch(addr, "/healthz").await.unwrap().0, 200);
    let (status, head, _) = fetch(addr, "/").await.unwrap();
    assert_eq!(status, 404, "no route but the fallback: still served");
    assert!(head.contains("connection: close"), "{head}");

    // Just before the end of the drain delay, still served.
    tokio::time::sleep_until(signalled + DRAIN_DELAY - Duration::from_millis(100)).await;
    assert_eq!(fetch(addr, "/healthz").await.unwrap().0, 200);

    // After it, the listener is closed: a new connection is refused.
    tokio::time::sleep_until(signalled + DRAIN_DELAY + Duration::from_millis(100)).await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    // The request admitted before the signal finishes, and then the service stops cleanly.
    let (status, _, body) = slow.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "done"));
    let exit = rodent.served.await.unwrap();
    assert_eq!(exit, Exit::Clean);
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(11),
        "the slow request decides when the drain ends: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_watches_the_drain_ends_itself_and_one_that_does_not_is_cut_at_the_deadline()
{
    let forever = || {
        futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok::<_, std::convert::Infallible>("tick\n"), ()))
        })
    };
    let routes = Router::new()
        .route(
            "/polite",
            get(move |drain: Drain| async move {
                use futures_util::StreamExt;
                let farewell = futures_util::stream::once(async { Ok("bye\n") });
                axum::body::Body::from_stream(
                    forever().take_until(drain.signaled()).chain(farewell),
                )
            }),
        )
        .route(
            "/rude",
            get(move || async move { axum::body::Body::from_stream(forever()) }),
        );

    // Alone, the polite stream ends at the end of the drain delay, and the exit is clean.
    let mut rodent = start(routes.clone()).await;
    let addr = rodent.addr;
    let polite = tokio::spawn(async move { fetch(addr, "/polite").await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = Instant::now();
    rodent.stop.take().unwrap().send(()).unwrap();
    let (status, _, body) = polite.await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert!(
        body.ends_with("bye\n"),
        "a complete body with its last line: {body:?}"
    );
    let ended = signalled.elapsed();
    assert!(
        ended >= DRAIN_DELAY && ended < DRAIN_DELAY + Duration::from_secs(1),
        "ended when the listener closed: {ended:?}"
    );
    assert_eq!(rodent.served.await.unwrap(), Exit::Clean);

    // A stream that ignores the drain runs until the deadline (the grace minus its 10% margin)
    // cuts it, and the exit code says so.
    let mut rodent = start(routes).await;
    let addr = rodent.addr;
    let rude = tokio::spawn(async move { fetch(addr, "/rude").await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = Instant::now();
    rodent.stop.take().unwrap().send(()).unwrap();
    let exit = rodent.served.await.unwrap();
    assert_eq!(exit, Exit::DeadlineReached);
    let took = signalled.elapsed();
    let deadline = GRACE - GRACE / 10;
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(1),
        "cut at the deadline: {took:?}"
    );
    assert!(
        rude.await.unwrap().is_err(),
        "the client sees a cut connection, not a complete body"
    );
}
