//! The routes of the `rodent` reference service: what platform teams call to test rollouts,
//! probes, timeouts and telemetry.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use rodent::http::Deadline;
use rodent::{BuildInfo, Drain, Lifecycle, Problem};
use serde::Deserialize;
use serde_json::json;

use crate::chain::{self, Chain};
use crate::faults::Faults;
use crate::introspect;

/// How often `/stream/{ms}` sends a line.
const STREAM_EVERY: Duration = Duration::from_millis(100);
/// How often `/events` sends an event, unless asked otherwise.
const EVENTS_EVERY: Duration = Duration::from_secs(1);
/// What the last line or event of a long-lived response (the gRPC `Stream`'s status too) says
/// when the drain ended it.
pub(crate) const STOPPING: &str = "the service is stopping; reconnect to reach another instance";
/// The reason of a WebSocket's close frame when the drain ended it (at most 123 bytes).
const GOING_AWAY: &str = "the service is stopping";
/// How long `/ws/echo` waits for the client to answer its close frame.
const CLOSE_ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The reference routes, each behind the injected faults; `build` is what `GET /` and
/// `GET /version` report, `chain` where `POST /echo` forwards.
pub(crate) fn routes(build: BuildInfo, chain: Chain, faults: &'static Faults) -> Router {
    Router::new()
        .route("/", get(faults.inject(info)))
        .route("/version", get(faults.inject(version)))
        .route("/delay/{ms}", get(faults.inject(delay)))
        .route("/status/{code}", get(faults.inject(status)))
        .route("/echo", post(faults.inject(echo)).with_state(chain))
        .route("/headers", get(faults.inject(introspect::headers)))
        .route("/panic", get(faults.inject(panic)))
        .route("/stream/{ms}", get(faults.inject(stream)))
        .route("/events", get(faults.inject(events)))
        .route("/ws/echo", get(faults.inject(ws_echo)))
        .with_state(build)
}

/// `GET /`: who is answering.
async fn info(
    State(build): State<BuildInfo>,
    Extension(lifecycle): Extension<Lifecycle>,
) -> Json<serde_json::Value> {
    Json(json!({
        "name": build.name,
        "version": build.version,
        "instance": instance(),
        "pid": std::process::id(),
        "state": lifecycle.state().as_str(),
        "uptime_seconds": lifecycle.uptime().as_secs_f64(),
    }))
}

/// The host name: the pod name in Kubernetes, the container id in Docker.
pub(crate) fn instance() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `GET /version`.
async fn version(State(build): State<BuildInfo>) -> Json<BuildInfo> {
    Json(build)
}

/// `GET /delay/{ms}`: answers after `ms` milliseconds; the request timeout still applies.
async fn delay(Path(ms): Path<u64>) -> Json<serde_json::Value> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "delay_ms": ms }))
}

/// `GET /status/{code}`: answers with that status.
async fn status(Path(code): Path<u16>) -> Response {
    let Some(status) = StatusCode::from_u16(code)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
    else {
        return Problem::new(StatusCode::BAD_REQUEST)
            .detail(format!(
                "{code} is not a status this route can answer (200 to 599)"
            ))
            .into_response();
    };
    if status.is_client_error() || status.is_server_error() {
        return Problem::new(status)
            .detail("requested through /status")
            .into_response();
    }
    if matches!(code, 204 | 304) {
        return status.into_response();
    }
    (status, Json(json!({ "status": code }))).into_response()
}

/// `POST /echo`: the body back, with its content type; the body limit applies. With
/// `RODENT_BACKENDS` set, the body goes to each backend instead, and the answer says what each
/// said (see `chain`).
async fn echo(
    State(chain): State<Chain>,
    deadline: Deadline,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hops = match chain::hops(&headers) {
        Ok(hops) => hops,
        Err(refused) => return refused.into_response(),
    };
    let backends = chain.backends();
    if !backends.is_empty() {
        return chain
            .forward(&backends, &headers, deadline, body, hops)
            .await;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /panic`: the handler panics; the client gets 500 and the process keeps serving.
async fn panic() -> &'static str {
    panic!("GET /panic was requested");
}

#[derive(Deserialize)]
struct StreamQuery {
    /// `ignore`: keep streaming through the drain, to see what the shutdown deadline does to a
    /// response that does not end itself.
    drain: Option<String>,
}

/// `GET /stream/{ms}[?drain=ignore]`: a line every 100 ms for `ms` milliseconds. The request
/// timeout bounds only the wait for the response head, so this is the way to hold a long-lived
/// response open (as a download would) and see what shutdown does with it: when the drain is
/// signaled, a last line says why the stream ended early, and the body ends properly.
async fn stream(Path(ms): Path<u64>, Query(query): Query<StreamQuery>, drain: Drain) -> Response {
    let lines = ms.div_ceil(STREAM_EVERY.as_millis() as u64);
    let ticks = stream::unfold(0u64, move |sent| async move {
        if sent >= lines {
            return None;
        }
        if sent > 0 {
            tokio::time::sleep(STREAM_EVERY).await;
        }
        Some((json!({ "line": sent + 1 }), sent + 1))
    });
    let lines = if query.drain.as_deref() == Some("ignore") {
        ticks.boxed()
    } else {
        until_drained(
            ticks,
            drain,
            |lines| json!({ "ended": "stopping", "lines": lines, "reason": STOPPING }),
        )
        .boxed()
    };
    let body = lines.map(|line| Ok::<_, Infallible>(Bytes::from(format!("{line}\n"))));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        Body::from_stream(body),
    )
        .into_response()
}

#[derive(Deserialize)]
struct EventsQuery {
    /// Milliseconds between events.
    every_ms: Option<u64>,
}

/// `GET /events[?every_ms=N]`: server-sent events, a `tick` every second (or every `N` ms) for as
/// long as the client listens; when the drain is signaled, a last `end` event says why, and the
/// stream ends. A browser's `EventSource` then reconnects, to another instance.
async fn events(
    Query(query): Query<EventsQuery>,
    drain: Drain,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let every = query
        .every_ms
        .map_or(EVENTS_EVERY, Duration::from_millis)
        .max(Duration::from_millis(1));
    let ticks = stream::unfold(0u64, move |sent| async move {
        if sent > 0 {
            tokio::time::sleep(every).await;
        }
        Some((json!({ "tick": sent + 1 }), sent + 1))
    });
    let events = until_drained(
        ticks,
        drain,
        |ticks| json!({ "ended": "stopping", "ticks": ticks, "reason": STOPPING }),
    )
    .map(|data| {
        let kind = if data.get("ended").is_some() {
            "end"
        } else {
            "tick"
        };
        Ok(Event::default().event(kind).data(data.to_string()))
    });
    Sse::new(events)
}

/// `items` until the drain is signaled; then, if that cut them short, one last item that
/// `farewell` makes from the number sent.
fn until_drained<S, F>(items: S, drain: Drain, farewell: F) -> impl Stream<Item = serde_json::Value>
where
    S: Stream<Item = serde_json::Value> + Send + 'static,
    F: FnOnce(u64) -> serde_json::Value + Send + 'static,
{
    let start = Some((Box::pin(items), drain, farewell, 0u64));
    stream::unfold(start, |state| async move {
        let (mut items, drain, farewell, sent) = state?;
        tokio::select! {
            biased;
            () = drain.signaled() => Some((farewell(sent), None)),
            item = items.next() => {
                item.map(|item| (item, Some((items, drain, farewell, sent + 1))))
            }
        }
    })
}

/// `GET /ws/echo[?drain=ignore]`: a WebSocket that sends back each text or binary message it
/// receives. When the drain is signaled it sends a close frame, 1001 ("going away"), waits a
/// moment for the client's answer, and ends; a client then reconnects, to another instance.
/// With `drain=ignore` it echoes on through the drain, to see the deadline abort it.
async fn ws_echo(
    upgrade: WebSocketUpgrade,
    Query(query): Query<StreamQuery>,
    drain: Drain,
) -> Response {
    let ignore_drain = query.drain.as_deref() == Some("ignore");
    upgrade.on_upgrade(move |socket| echo_until_drained(socket, (!ignore_drain).then_some(drain)))
}

async fn echo_until_drained(mut socket: WebSocket, drain: Option<Drain>) {
    let drained = async {
        match drain {
            Some(drain) => drain.signaled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(drained);
    loop {
        let message = tokio::select! {
            biased;
            () = &mut drained => break,
            message = socket.recv() => message,
        };
        let reply = match message {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => message,
            // Pings are answered by the socket itself; pongs need nothing.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            // The client closed (the socket answers its close frame), or the connection broke.
            Some(Ok(Message::Close(_)) | Err(_)) | None => return,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
    let farewell = Message::Close(Some(CloseFrame {
        code: close_code::AWAY,
        reason: GOING_AWAY.into(),
    }));
    if socket.send(farewell).await.is_err() {
        return;
    }
    // The closing handshake: the client answers with a close frame of its own.
    let _ = tokio::time::timeout(CLOSE_ANSWER_WITHIN, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
