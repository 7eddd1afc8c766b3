//! The routes stay the application's: its fallback answers what no route matches, its layers
//! wrap rodent's answers too, its error bodies can be left alone, it adds routes to the admin
//! API, and a path of rodent's is refused when it is registered.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::routing::{get, post, put};
use rodent::{Exit, Rodent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower_http::cors::CorsLayer;

use super::{Running, client, config_with, start_with, stop, url};

const ORIGIN: &str = "https://app.example";

/// The status, `content-type` and `access-control-allow-origin` of a response, and its body.
async fn answer(response: reqwest::Response) -> (u16, String, Option<String>, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (status, content_type, cors) = (
        response.status().as_u16(),
        header("content-type").unwrap_or_default(),
        header("access-control-allow-origin"),
    );
    (status, content_type, cors, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outer_layer_wraps_rodent_s_own_503_413_408_and_404() {
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let routes = Router::new()
        .route(
            "/slow",
            get(|| async { tokio::time::sleep(Duration::from_secs(30)).await }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/hold", get(move || async move { held.notified().await }));
    let config = config_with(&[
        ("RODENT_REQUEST_TIMEOUT", "1s"),
        ("RODENT_HEADER_READ_TIMEOUT", "300ms"),
        ("RODENT_BODY_LIMIT", "1024"),
        ("RODENT_MAX_INFLIGHT", "1"),
    ]);
    let cors = CorsLayer::new().allow_origin(HeaderValue::from_static(ORIGIN));
    let running = start_with(Rodent::new(config).routes(routes).layer(cors)).await;
    let client = client();
    let expect = |what: &str, got: (u16, String, Option<String>, String), status: u16| {
        assert_eq!(got.0, status, "{what}: {got:?}");
        assert_eq!(got.1, "application/problem+json", "{what}: {got:?}");
        assert_eq!(got.2.as_deref(), Some(ORIGIN), "{what}: {got:?}");
    };

    let timed_out = client.get(url(&running, "/slow")).header("origin", ORIGIN);
    expect(
        "handler timeout",
        answer(timed_out.send().await.unwrap()).await,
        503,
    );

    let too_large = client
        .post(url(&running, "/echo"))
        .header("origin", ORIGIN)
        .body(vec![b'a'; 4096]);
    expect(
        "body limit",
        answer(too_large.send().await.unwrap()).await,
        413,
    );

    let unknown = client
        .get(url(&running, "/nowhere"))
        .header("origin", ORIGIN);
    expect(
        "unknown route",
        answer(unknown.send().await.unwrap()).await,
        404,
    );

    // A body that stalls: ten bytes of a hundred, then nothing.
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: rodent\r\nOrigin: {ORIGIN}\r\nContent-Length: 100\r\n\r\n0123456789"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the stalled body is answered")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(raw.starts_with("http/1.1 408"), "{raw}");
    assert!(
        raw.contains(&format!("access-control-allow-origin: {ORIGIN}")),
        "{raw}"
    );

    // One request in flight is the most: the next is shed.
    let holding = tokio::spawn(client.get(url(&running, "/hold")).send());
    let shed = loop {
        let got = answer(
            client
                .post(url(&running, "/echo"))
                .header("origin", ORIGIN)
                .send()
                .await
                .unwrap(),
        )
        .await;
        if got.0 != 200 {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(shed.3.contains("RODENT_MAX_INFLIGHT"), "{shed:?}");
    expect("overload", shed, 503);
    release.notify_one();
    assert_eq!(holding.await.unwrap().unwrap().status(), 200);

    // The probes are rodent's alone.
    let probe = client
        .get(url(&running, "/healthz"))
        .header("origin", ORIGIN);
    let probe = answer(probe.send().await.unwrap()).await;
    assert_eq!((probe.0, probe.2.as_deref()), (200, None), "{probe:?}");
    assert_eq!(stop(running).await, Exit::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_s_fallback_is_kept() {
    let spa = Router::new()
        .route("/api/items", get(|| async { "items" }))
        .fallback(|uri: Uri| async move { format!("index.html, for {uri}") });
    let running = start_with(Rodent::new(config_with(&[])).routes(spa)).await;
    let client = client();
    let deep = answer(
        client
            .get(url(&running, "/deep/link"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (deep.0, deep.3.as_str()),
        (200, "index.html, for /deep/link")
    );
    let items = answer(
        client
            .get(url(&running, "/api/items"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((items.0, items.3.as_str()), (200, "items"));
    let health = answer(client.get(url(&running, "/healthz")).send().await.unwrap()).await;
    assert_eq!(
        (health.0, health.1.as_str()),
        (200, "application/health+json")
    );
    assert_eq!(stop(running).await, Exit::Clean);

    // tonic's router: its fallback answers gRPC's UNIMPLEMENTED, beside bounded routes that
    // have none.
    let grpc = Router::new()
        .route("/echo.Echo/Stream", post(|| async { "stream" }))
        .fallback(|| async {
            (
                [("content-type", "application/grpc"), ("grpc-status", "12")],
                "",
            )
        });
    let rodent = Rodent::new(config_with(&[]))
        .routes(Router::new().route("/", get(|| async { "home" })))
        .unbounded_routes(grpc);
    let running = start_with(rodent).await;
    let unknown = client
        .post(url(&running, "/echo.Echo/Missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 200);
    assert_eq!(unknown.headers()["grpc-status"], "12");
    assert_eq!(stop(running).await, Exit::Clean);

    // Without a fallback of the application's, rodent answers; and it does too when the
    // application's has nothing to say.
    for routes in [
        Router::new().route("/", get(|| async {})),
        Router::new().fallback(|| async { StatusCode::NOT_FOUND }),
    ] {
        let running = start_with(Rodent::new(config_with(&[])).routes(routes)).await;
        let got = answer(client.get(url(&running, "/nowhere")).send().await.unwrap()).await;
        assert_eq!(got.0, 404);
        assert_eq!(got.1, "application/problem+json");
        assert!(got.3.contains("no route for /nowhere"), "{got:?}");
        assert_eq!(stop(running).await, Exit::Clean);
    }
}

/// The message a registration panicked with.
fn refusal(register: impl FnOnce(Rodent) -> Rodent) -> String {
    let rodent = Rodent::new(config_with(&[]));
    let panic = catch_unwind(AssertUnwindSafe(|| register(rodent)))
        .err()
        .expect("the registration is refused");
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap()
}

#[test]
fn a_route_that_collides_with_rodent_s_is_refused_with_its_path_named() {
    for path in [
        "/healthz",
        "/readyz",
        "/readyz/{check}",
        "/readyz/database",
        "/metrics",
        "/admin/faults",
    ] {
        let route = || Router::new().route(path, post(|| async {}));
        let refused = refusal(|rodent| rodent.routes(route()));
        assert!(
            refused.contains(&format!("route {path} collides")),
            "{refused}"
        );
        let refused = refusal(|rodent| rodent.unbounded_routes(route()));
        assert!(
            refused.contains(&format!("route {path} collides")),
            "{refused}"
        );
    }
    let nested = Router::new().nest("/admin", Router::new().route("/jobs", get(|| async {})));
    assert!(refusal(|rodent| rodent.routes(nested)).contains("/admin/jobs"));
    let admin = Router::new().route("/readiness/{action}", get(|| async {}));
    let refused = refusal(|rodent| rodent.admin_routes(admin));
    assert!(refused.contains("/admin/readiness/{action}"), "{refused}");

    // What axum itself cannot merge is refused at registration too, not at the start.
    let with_fallback = || Router::new().fallback(|| async {});
    let refused = refusal(|rodent| {
        rodent
            .routes(with_fallback())
            .unbounded_routes(with_fallback())
    });
    assert!(refused.contains("fallback"), "{refused}");

    // Neighbours of rodent's paths, and routes that only match them, are the application's.
    let neighbours = Router::new()
        .route("/healthzz", get(|| async {}))
        .route("/administration", get(|| async {}))
        .route("/{*path}", get(|| async {}));
    let _ = Rodent::new(config_with(&[])).routes(neighbours);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_are_left_alone_when_rewriting_is_off() {
    let routes = || {
        Router::new().route(
            "/refuse",
            get(|| async { (StatusCode::BAD_REQUEST, "plain words") }),
        )
    };
    let client = client();
    let running = start_with(Rodent::new(config_with(&[])).routes(routes())).await;
    let rewritten = answer(client.get(url(&running, "/refuse")).send().await.unwrap()).await;
    assert_eq!(rewritten.1, "application/problem+json", "{rewritten:?}");
    assert!(rewritten.3.contains("plain words"), "{rewritten:?}");
    assert_eq!(stop(running).await, Exit::Clean);

    let rodent = Rodent::new(config_with(&[("RODENT_BODY_LIMIT", "16")]))
        .routes(routes().route("/echo", post(|body: Bytes| async move { body })))
        .rewrite_error_bodies(false);
    let running = start_with(rodent).await;
    let kept = answer(client.get(url(&running, "/refuse")).send().await.unwrap()).await;
    assert_eq!(kept.0, 400);
    assert_eq!(kept.1, "text/plain; charset=utf-8", "{kept:?}");
    assert_eq!(kept.3, "plain words");
    // rodent's own answers are problem+json either way.
    let unknown = answer(client.get(url(&running, "/nowhere")).send().await.unwrap()).await;
    assert_eq!(
        (unknown.0, unknown.1.as_str()),
        (404, "application/problem+json")
    );
    let too_large = client.post(url(&running, "/echo")).body(vec![b'a'; 64]);
    let too_large = answer(too_large.send().await.unwrap()).await;
    assert_eq!(
        (too_large.0, too_large.1.as_str()),
        (413, "application/problem+json")
    );
    assert_eq!(stop(running).await, Exit::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_s_admin_routes_sit_behind_the_token() {
    let admin = || {
        Router::new().route(
            "/faults",
            put(|body: String| async move { format!("faults set to {body}") }),
        )
    };
    let client = client();
    let put_faults = |running: &Running, token: Option<&str>| {
        let request = client.put(url(running, "/admin/faults")).body("0.5");
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };

    // No token configured: the admin API does not exist.
    let running = start_with(Rodent::new(config_with(&[])).admin_routes(admin())).await;
    let disabled = answer(put_faults(&running, Some("guess")).await.unwrap()).await;
    assert_eq!(
        (disabled.0, disabled.1.as_str()),
        (404, "application/problem+json")
    );
    assert_eq!(stop(running).await, Exit::Clean);

    let config = config_with(&[("RODENT_ADMIN_TOKEN", "s3cret")]);
    let running = start_with(Rodent::new(config).admin_routes(admin())).await;
    let wrong = put_faults(&running, Some("s3cre")).await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.headers()["www-authenticate"],
        "Bearer realm=\"rodent-admin\""
    );
    assert_eq!(put_faults(&running, None).await.unwrap().status(), 401);
    let right = answer(put_faults(&running, Some("s3cret")).await.unwrap()).await;
    assert_eq!((right.0, right.3.as_str()), (200, "faults set to 0.5"));
    // rodent's own admin routes are still there, behind the same token.
    let disable = client
        .post(url(&running, "/admin/readiness/disable"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(disable.status(), 200);
    assert_eq!(stop(running).await, Exit::Clean);
}
