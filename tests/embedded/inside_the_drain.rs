//! Everything a service runs is inside the drain, step by step on paused time: WebSockets,
//! background tasks and drain holds keep the shutdown hooks waiting until they end, and give way
//! at the deadline; a failed task stops the service; observers that block or panic stall
//! nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade, close_code};
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use rodent::{Config, Drain, Event, Exit, Rodent};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

const DRAIN_DELAY: Duration = Duration::from_secs(5);
/// The grace is 30 s: the deadline falls at 27 s.
const DEADLINE: Duration = Duration::from_secs(27);

fn config() -> Config {
    Config::from_vars([
        ("RODENT_DRAIN_DELAY", "5s"),
        ("RODENT_SHUTDOWN_GRACE", "30s"),
        ("RODENT_REQUEST_TIMEOUT", "20s"),
        ("RODENT_PID_FILE", ""),
    ])
    .expect("a valid configuration")
}

/// When the shutdown hook `record` ran, once it has.
type HookRan = Arc<Mutex<Option<Instant>>>;

struct Served {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    exit: tokio::task::JoinHandle<Exit>,
    hook_ran: HookRan,
}

impl Served {
    fn stop(&mut self) -> Instant {
        let stopped = Instant::now();
        self.stop.take().unwrap().send(()).unwrap();
        stopped
    }

    fn hook_ran(&self) -> Instant {
        self.hook_ran
            .lock()
            .unwrap()
            .expect("the shutdown hook ran")
    }
}

/// Serves `rodent` (with a shutdown hook that records when it ran) until `stop`.
async fn serve(rodent: Rodent) -> Served {
    let hook_ran = HookRan::default();
    let ran = hook_ran.clone();
    let rodent = rodent.on_shutdown("record", Duration::from_secs(1), move || async move {
        *ran.lock().unwrap() = Some(Instant::now());
        Ok(())
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let lifecycle = rodent.lifecycle();
    let exit = tokio::spawn(rodent.serve(listener, async {
        let _ = stopped.await;
    }));
    while lifecycle.state() != rodent::State::Ready {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Served {
        addr,
        stop: Some(stop),
        exit,
        hook_ran,
    }
}

async fn post_to(addr: std::net::SocketAddr, path: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: rodent\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 2"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// A task that works in items of `item`, watching the drain between items; records when its
/// last item ended.
fn worker(
    item: Duration,
    ended: Arc<Mutex<Option<Instant>>>,
) -> impl FnOnce(Drain) -> futures_util::future::BoxFuture<'static, Result<(), rodent::BoxError>> {
    move |drain| {
        Box::pin(async move {
            while !drain.is_signaled() {
                tokio::time::sleep(item).await;
                *ended.lock().unwrap() = Some(Instant::now());
            }
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_and_a_hold_keep_the_hooks_waiting_until_they_end() {
    let item_ended = Arc::new(Mutex::new(None));
    let released = Arc::new(Mutex::new(None::<Instant>));
    let release = released.clone();
    let routes = Router::new().route(
        "/hold",
        post(move |drain: Drain| async move {
            let hold = drain.hold();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(8)).await;
                *release.lock().unwrap() = Some(Instant::now());
                drop(hold);
            });
        }),
    );
    let rodent = Rodent::new(config())
        .routes(routes)
        .task("worker", worker(Duration::from_secs(7), item_ended.clone()));
    let mut served = serve(rodent).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    post_to(served.addr, "/hold").await;
    let stopped = served.stop();

    assert_eq!((&mut served.exit).await.unwrap(), Exit::Clean);
    let hook = served.hook_ran();
    let item = item_ended.lock().unwrap().unwrap();
    let released = released.lock().unwrap().unwrap();
    // The worker's item in hand at the drain (the listener closed at 5 s) ended at 11 s after
    // its start, 8 s after the stop; the hold was released 8 s after it was taken.
    assert!(
        item >= stopped + DRAIN_DELAY,
        "the item ran past the drain's signal"
    );
    assert!(hook >= item, "the hooks waited for the task's item");
    assert!(hook >= released, "the hooks waited for the hold");
    assert!(hook < stopped + DEADLINE, "nothing reached the deadline");
}

#[tokio::test(start_paused = true)]
async fn a_task_that_ignores_the_drain_and_a_hold_never_released_give_way_at_the_deadline() {
    for with in ["task", "hold"] {
        let routes = Router::new().route(
            "/hold",
            post(|drain: Drain| async move {
                let hold = drain.hold();
                tokio::spawn(async move {
                    std::future::pending::<()>().await;
                    drop(hold);
                });
            }),
        );
        let mut rodent = Rodent::new(config()).routes(routes);
        if with == "task" {
            rodent = rodent.task("stubborn", |_drain| std::future::pending());
        }
        let mut served = serve(rodent).await;
        if with == "hold" {
            post_to(served.addr, "/hold").await;
        }
        let stopped = served.stop();
        assert_eq!(
            (&mut served.exit).await.unwrap(),
            Exit::DeadlineReached,
            "{with}"
        );
        let hook = served.hook_ran();
        assert!(
            hook >= stopped + DEADLINE && hook < stopped + DEADLINE + Duration::from_secs(1),
            "{with}: the hooks ran at the deadline, {:?} after the stop",
            hook - stopped
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_that_fails_or_panics_stops_the_service_with_a_failure() {
    for fails in ["error", "panic"] {
        let rodent = Rodent::new(config()).task("fragile", move |_drain| async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            match fails {
                "error" => Err("lost the connection".into()),
                _ => panic!("lost the plot"),
            }
        });
        let mut served = serve(rodent).await;
        let started = Instant::now();
        // No stop is asked for: the task's failure is the stop, and a drain like any other.
        assert_eq!((&mut served.exit).await.unwrap(), Exit::Failure, "{fails}");
        let hook = served.hook_ran();
        assert!(
            hook >= started + DRAIN_DELAY,
            "{fails}: the drain delay was kept, for the load balancers"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn observers_that_block_or_panic_stall_nothing() {
    let rodent = Rodent::new(config())
        .on_event(|event| {
            if *event == Event::Ready {
                panic!("an observer's bug");
            }
        })
        .on_event(|event| {
            if *event == Event::Draining {
                // Blocks its thread for good (a minute of real time is the same here).
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        });
    let mut served = serve(rodent).await;
    let stopped = served.stop();
    let waited = std::time::Instant::now();
    assert_eq!((&mut served.exit).await.unwrap(), Exit::Clean);
    assert!(
        waited.elapsed() < std::time::Duration::from_secs(10),
        "the blocked observer held the stop"
    );
    let hook = served.hook_ran();
    assert!(hook < stopped + DRAIN_DELAY + Duration::from_secs(1));
}

/// A WebSocket echo: at the drain it sends close 1001, then waits for the client's answer.
fn echo_routes() -> Router {
    Router::new()
        .route(
            "/ws",
            get(|upgrade: WebSocketUpgrade, drain: Drain| async move {
                upgrade.on_upgrade(move |mut socket| async move {
                    loop {
                        tokio::select! {
                            () = drain.signaled() => break,
                            message = socket.recv() => match message {
                                Some(Ok(message)) => { let _ = socket.send(message).await; }
                                _ => return,
                            },
                        }
                    }
                    let away = CloseFrame {
                        code: close_code::AWAY,
                        reason: "stopping".into(),
                    };
                    let _ = socket.send(Message::Close(Some(away))).await;
                    while let Some(Ok(message)) = socket.recv().await {
                        if matches!(message, Message::Close(_)) {
                            break;
                        }
                    }
                })
            }),
        )
        .route(
            "/ws/ignore",
            get(|upgrade: WebSocketUpgrade| async move {
                upgrade.on_upgrade(|mut socket| async move {
                    while let Some(Ok(message)) = socket.recv().await {
                        let _ = socket.send(message).await;
                    }
                })
            }),
        )
}

#[tokio::test(start_paused = true)]
async fn a_websocket_is_waited_for_then_aborted_at_the_deadline_if_it_ignores_the_drain() {
    use tokio_tungstenite::tungstenite::Message as Frame;

    // One that closes when told: the drain waits for the client's answer, 4 s after the close
    // frame.
    let mut served = serve(Rodent::new(config()).routes(echo_routes())).await;
    let stream = TcpStream::connect(served.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", served.addr), stream)
        .await
        .unwrap();
    ws.send(Frame::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Frame::text("hello"));
    let stopped = served.stop();
    let Some(Ok(Frame::Close(Some(frame)))) = ws.next().await else {
        panic!("a close frame");
    };
    assert_eq!(u16::from(frame.code), 1001);
    assert!(
        Instant::now() >= stopped + DRAIN_DELAY,
        "told when the listener closed"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let answered = Instant::now();
    while ws.next().await.is_some() {}
    assert_eq!((&mut served.exit).await.unwrap(), Exit::Clean);
    assert!(
        served.hook_ran() >= answered,
        "the hooks waited for the WebSocket"
    );

    // One that ignores the drain: cut at the deadline, and the exit says so.
    let mut served = serve(Rodent::new(config()).routes(echo_routes())).await;
    let stream = TcpStream::connect(served.addr).await.unwrap();
    let url = format!("ws://{}/ws/ignore", served.addr);
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let stopped = served.stop();
    tokio::time::sleep(DRAIN_DELAY + Duration::from_secs(1)).await;
    ws.send(Frame::text("still there?")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Frame::text("still there?")
    );
    assert_eq!((&mut served.exit).await.unwrap(), Exit::DeadlineReached);
    assert!(served.hook_ran() >= stopped + DEADLINE);
    let cut = loop {
        match ws.next().await {
            Some(Ok(Frame::Close(_))) => panic!("the handler never sends a close frame"),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break Instant::now(),
        }
    };
    assert!(cut >= stopped + DEADLINE, "cut at the deadline");
}
