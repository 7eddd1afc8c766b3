//! `/metrics` as Prometheus scrapes it: well-formed text, counters that move by exactly the
//! requests sent, route labels that are templates, and a lifecycle gauge that follows the
//! state.

use nix::sys::signal::Signal::{SIGHUP, SIGTERM};
use openmetrics_parser::PrometheusType;

use super::scrape::Scrape;
use kit::{PATIENCE, client, eventually_async, rodent, wait_in_flight};

/// Every family the README documents, as the Prometheus text format names them.
const FAMILIES: &[(&str, PrometheusType)] = &[
    ("rodent_http_requests_total", PrometheusType::Counter),
    (
        "rodent_http_request_duration_seconds",
        PrometheusType::Histogram,
    ),
    ("rodent_http_requests_in_flight", PrometheusType::Gauge),
    ("rodent_http_requests_shed_total", PrometheusType::Counter),
    (
        "rodent_http_request_timeouts_total",
        PrometheusType::Counter,
    ),
    ("rodent_http_panics_total", PrometheusType::Counter),
    ("rodent_lifecycle_state", PrometheusType::Gauge),
    ("rodent_readiness_enabled", PrometheusType::Gauge),
    ("rodent_reloads_total", PrometheusType::Counter),
    ("rodent_zombies_reaped_total", PrometheusType::Counter),
    ("rodent_connections_open", PrometheusType::Gauge),
    ("rodent_connections_aborted_total", PrometheusType::Counter),
    ("rodent_accept_errors_total", PrometheusType::Counter),
    ("rodent_connections_refused_total", PrometheusType::Counter),
    ("rodent_http2_streams_reset_total", PrometheusType::Counter),
    ("rodent_spans_exported_total", PrometheusType::Counter),
    ("rodent_spans_dropped_total", PrometheusType::Counter),
    ("rodent_build_info", PrometheusType::Gauge),
    ("rodent_uptime_seconds", PrometheusType::Gauge),
    ("rodent_runtime_workers", PrometheusType::Gauge),
    ("rodent_runtime_alive_tasks", PrometheusType::Gauge),
    ("rodent_runtime_global_queue_depth", PrometheusType::Gauge),
    (
        "rodent_runtime_worker_busy_seconds_total",
        PrometheusType::Counter,
    ),
    ("rodent_runtime_worker_parks_total", PrometheusType::Counter),
    ("rodent_faults_injected_total", PrometheusType::Counter),
];

const REQUESTS: &str = "rodent_http_requests_total";
const TIMEOUTS: &str = "rodent_http_request_timeouts_total";
const PANICS: &str = "rodent_http_panics_total";

/// Checks every documented family is there with its type, except `absent`: families labelled by
/// route appear with their first sample.
fn assert_families(scrape: &Scrape, absent: &[&str]) {
    for (family, kind) in FAMILIES {
        if absent.contains(family) {
            continue;
        }
        assert_eq!(
            scrape.family_type(family),
            Some(kind),
            "{family} in {:?}",
            scrape.family_names()
        );
    }
}
const DURATION: &str = "rodent_http_request_duration_seconds";

#[tokio::test]
async fn the_runtime_is_described_by_tokios_stable_metrics() {
    let rodent = rodent().spawn();
    let idle = Scrape::of(&rodent).await;
    let workers = idle.value("rodent_runtime_workers", &[]);
    assert!(workers >= 1.0, "{}", idle.text());
    // One busy-time and one park counter per worker, labelled by its index.
    let labelled = idle.label_values("rodent_runtime_worker_busy_seconds_total", "worker");
    assert_eq!(labelled.len() as f64, workers, "{labelled:?}");
    assert!(labelled.contains("0"), "{labelled:?}");
    assert_eq!(
        idle.label_values("rodent_runtime_worker_parks_total", "worker"),
        labelled
    );
    assert!(idle.value("rodent_runtime_global_queue_depth", &[]) >= 0.0);

    // Each open connection is a task of its own: holding some open shows in the alive tasks.
    let alive = idle.value("rodent_runtime_alive_tasks", &[]);
    let held: Vec<_> = (0..5)
        .map(|_| tokio::spawn(client().get(rodent.url("/delay/3000")).send()))
        .collect();
    wait_in_flight(&rodent, "/delay/{ms}", 5).await;
    let busy = Scrape::of(&rodent).await;
    assert!(
        busy.value("rodent_runtime_alive_tasks", &[]) >= alive + 5.0,
        "{} then {}",
        alive,
        busy.value("rodent_runtime_alive_tasks", &[])
    );
    let spent = |scrape: &Scrape| {
        labelled
            .iter()
            .map(|w| scrape.value("rodent_runtime_worker_busy_seconds_total", &[("worker", w)]))
            .sum::<f64>()
    };
    assert!(
        spent(&busy) > spent(&idle),
        "the workers ran something meanwhile"
    );
    for request in held {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_exactly_what_was_sent() {
    let mut rodent = rodent().spawn();
    let client = client();
    let before = Scrape::of(&rodent).await;
    assert_eq!(
        before.value(
            "rodent_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    for ms in 1..=7 {
        let response = rodent.get(&format!("/delay/{ms}")).await;
        assert_eq!(response.status(), 200);
    }
    for code in [404, 404, 503] {
        let response = rodent.get(&format!("/status/{code}")).await;
        assert_eq!(response.status(), code);
    }
    for path in ["/no/such/route", "/another/random/path/8831"] {
        let response = rodent.get(path).await;
        assert_eq!(response.status(), 404);
    }
    let echo = client
        .post(rodent.url("/echo"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(echo.status(), 200);

    let after = Scrape::of(&rodent).await;
    assert_families(&after, &[TIMEOUTS, PANICS]);
    let moved = |family: &str, labels: &[(&str, &str)]| {
        after.value(family, labels) - before.value(family, labels)
    };
    let get = |route, status| [("method", "GET"), ("route", route), ("status", status)];
    assert_eq!(moved(REQUESTS, &get("/delay/{ms}", "2xx")), 7.0);
    assert_eq!(moved(REQUESTS, &get("/status/{code}", "4xx")), 2.0);
    assert_eq!(moved(REQUESTS, &get("/status/{code}", "5xx")), 1.0);
    assert_eq!(moved(REQUESTS, &get("unmatched", "4xx")), 2.0);
    assert_eq!(
        moved(
            REQUESTS,
            &[("method", "POST"), ("route", "/echo"), ("status", "2xx")]
        ),
        1.0
    );
    assert_eq!(
        moved(DURATION, &[("method", "GET"), ("route", "/delay/{ms}")]),
        7.0
    );
    // Seven different paths, one series: labels are route templates, never raw paths.
    let routes = after.label_values(REQUESTS, "route");
    for route in &routes {
        assert!(
            route == "unmatched" || !route.chars().any(|c| c.is_ascii_digit()),
            "a raw path became a label: {route} in {routes:?}"
        );
    }
    assert!(routes.contains("/delay/{ms}"), "{routes:?}");
    assert!(after.label_values(DURATION, "route").is_subset(&routes));
    assert_eq!(
        after.value(
            "rodent_http_requests_in_flight",
            &[("route", "/delay/{ms}")]
        ),
        0.0
    );

    // OpenMetrics for scrapers that ask for it, also well-formed.
    let openmetrics = client
        .get(rodent.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        openmetrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = openmetrics.text().await.unwrap();
    if let Err(e) = openmetrics_parser::openmetrics::parse_openmetrics(&text) {
        panic!("not OpenMetrics ({e:?}):\n{text}");
    }

    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

/// Waits until a scrape satisfies `check`.
async fn scrape_until(rodent: &kit::Rodent, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    eventually_async(PATIENCE, async || {
        let scrape = Scrape::of(rodent).await;
        match check(&scrape) {
            true => Ok(scrape),
            false => Err(format!("never saw {what}:\n{}", scrape.text())),
        }
    })
    .await
}

#[tokio::test]
async fn the_lifecycle_gauge_follows_ready_then_draining() {
    let mut rodent = rodent().env("RODENT_DRAIN_DELAY", "3s").spawn();
    let state =
        |scrape: &Scrape, state: &str| scrape.value("rodent_lifecycle_state", &[("state", state)]);
    let ready = Scrape::of(&rodent).await;
    assert_eq!(state(&ready, "ready"), 1.0);
    for other in ["starting", "draining", "stopping"] {
        assert_eq!(state(&ready, other), 0.0, "{other}");
    }
    assert_eq!(ready.value("rodent_readiness_enabled", &[]), 1.0);

    rodent.signal(SIGTERM);
    let draining = scrape_until(&rodent, "the draining state", |s| {
        state(s, "draining") == 1.0
    })
    .await;
    for other in ["starting", "ready", "stopping"] {
        assert_eq!(state(&draining, other), 0.0, "{other}");
    }
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

#[tokio::test]
async fn shed_requests_are_counted() {
    let rodent = rodent().env("RODENT_MAX_INFLIGHT", "1").spawn();
    let slow = tokio::spawn(client().get(rodent.url("/delay/1500")).send());
    wait_in_flight(&rodent, "/delay/{ms}", 1).await;
    let before = Scrape::of(&rodent).await;
    for _ in 0..3 {
        let shed = rodent.get("/").await;
        assert_eq!(shed.status(), 503);
    }
    let after = Scrape::of(&rodent).await;
    assert_eq!(
        after.value("rodent_http_requests_shed_total", &[])
            - before.value("rodent_http_requests_shed_total", &[]),
        3.0
    );
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn timeouts_panics_and_reloads_are_counted_by_route_and_outcome() {
    let rodent = rodent().env("RODENT_REQUEST_TIMEOUT", "200ms").spawn();
    let timed_out = rodent.get("/delay/5000").await;
    assert_eq!(timed_out.status(), 503);
    for _ in 0..2 {
        let panicked = rodent.get("/panic").await;
        assert_eq!(panicked.status(), 500);
    }
    rodent.signal(SIGHUP);
    let scrape = scrape_until(&rodent, "the reload", |s| {
        s.value("rodent_reloads_total", &[("outcome", "applied")]) >= 1.0
    })
    .await;
    assert_families(&scrape, &[]);
    assert_eq!(scrape.value(TIMEOUTS, &[("route", "/delay/{ms}")]), 1.0);
    assert_eq!(scrape.value(PANICS, &[("route", "/panic")]), 2.0);
    assert_eq!(
        scrape.value("rodent_reloads_total", &[("outcome", "rejected")]),
        0.0
    );
    assert_eq!(
        scrape.value("rodent_reloads_total", &[("outcome", "applied")]),
        1.0
    );
    assert_eq!(
        scrape.value(
            REQUESTS,
            &[("route", "/panic"), ("status", "5xx"), ("method", "GET")]
        ),
        2.0
    );
}
