//! Routes without the handler timeout and the body bounds: an upload past the body limit and
//! the stall timeout, a feed past the handler timeout that ends at the drain, and a long poll
//! that ignores the drain and is cut at the deadline.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::{get, post};
use futures_util::StreamExt;
use rodent::{Drain, Exit, Rodent};

use super::{client, config_with, start_with, stop, url};

/// A chunk of `size` bytes every `every`, `count` times.
fn slow_body(count: usize, size: usize, every: Duration) -> reqwest::Body {
    let chunks = futures_util::stream::iter(0..count).then(move |_| async move {
        tokio::time::sleep(every).await;
        Ok::<_, std::io::Error>(vec![b'u'; size])
    });
    reqwest::Body::wrap_stream(chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounded_route_streams_past_the_timeout_and_the_body_limit_and_ends_at_the_drain() {
    let count = |body: Body| async move {
        let mut stream = body.into_data_stream();
        let mut bytes = 0;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => bytes += chunk.len(),
                Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        (StatusCode::OK, bytes.to_string())
    };
    let feed = |drain: Drain| async move {
        let ticks = futures_util::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((
                Ok::<_, std::convert::Infallible>(format!("tick {n}\n")),
                n + 1,
            ))
        });
        let farewell = futures_util::stream::once(async { Ok("bye\n".to_string()) });
        Body::from_stream(ticks.take_until(drain.signaled()).chain(farewell))
    };
    let config = config_with(&[
        ("RODENT_REQUEST_TIMEOUT", "500ms"),
        ("RODENT_HEADER_READ_TIMEOUT", "300ms"),
        ("RODENT_BODY_LIMIT", "1024"),
        ("RODENT_DRAIN_DELAY", "200ms"),
        ("RODENT_SHUTDOWN_GRACE", "10s"),
    ]);
    let rodent = Rodent::new(config)
        .routes(Router::new().route("/bounded/upload", post(count)))
        .unbounded_routes(
            Router::new()
                .route("/upload", post(count))
                .route("/feed", get(feed)),
        );
    let running = start_with(rodent).await;
    let client = client();

    // 8 KiB in chunks 400 ms apart: past the body limit, the stall timeout and the handler
    // timeout. The same upload to a bounded route is refused.
    let started = Instant::now();
    let upload = client
        .post(url(&running, "/upload"))
        .body(slow_body(8, 1024, Duration::from_millis(400)))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);
    assert_eq!(upload.text().await.unwrap(), "8192");
    assert!(started.elapsed() > Duration::from_secs(3));
    let bounded = client
        .post(url(&running, "/bounded/upload"))
        .body(slow_body(8, 1024, Duration::from_millis(400)))
        .send()
        .await;
    let status = bounded.map(|r| r.status().as_u16()).unwrap_or(0);
    assert!([408, 413, 503].contains(&status), "refused: {status}");

    // A feed that streams until the drain, well past the handler timeout.
    let mut feed = client.get(url(&running, "/feed")).send().await.unwrap();
    assert_eq!(feed.status(), 200);
    let mut received = String::new();
    while received.matches("tick").count() < 15 {
        received.push_str(&String::from_utf8_lossy(
            &feed.chunk().await.unwrap().unwrap(),
        ));
    }
    let stopping = tokio::spawn(stop(running));
    while let Some(chunk) = feed.chunk().await.unwrap() {
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.ends_with("bye\n"), "{received}");
    assert_eq!(stopping.await.unwrap(), Exit::Clean);
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_route_that_ignores_the_drain_ends_at_the_deadline() {
    let long_poll = Router::new().route(
        "/poll",
        get(|| async { std::future::pending::<&str>().await }),
    );
    let running = start_with(Rodent::new(super::config()).unbounded_routes(long_poll)).await;
    let addr = running.addr;
    let polling = tokio::spawn(async move { super::fetch(addr, "/poll").await });
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(!polling.is_finished(), "no handler timeout");
    let signalled = tokio::time::Instant::now();
    assert_eq!(stop(running).await, Exit::DeadlineReached);
    let took = signalled.elapsed();
    let deadline = super::GRACE - super::GRACE / 10;
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(1),
        "cut at the deadline: {took:?}"
    );
    if let Ok((status, _, _)) = polling.await.unwrap() {
        assert_eq!(status, 0, "the client sees a cut connection, not an answer");
    }
}
