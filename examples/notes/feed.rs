//! `GET /feed`: a WebSocket that tells each change to the notes as it happens, and says goodbye
//! with close 1001 ("going away") when the service drains, so a client reconnects elsewhere.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use rodent::Drain;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::Notes;

/// How long the feed waits for the client to answer its close frame.
const CLOSE_ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// The changes a slow client may fall behind by before it is told it missed some.
pub(crate) const BACKLOG: usize = 256;

/// A change to the notes, as the feed sends it (one JSON text message each).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub(crate) enum Change {
    Created { id: i64 },
    Deleted { id: i64 },
}

/// `GET /feed`.
pub(crate) async fn feed(
    upgrade: WebSocketUpgrade,
    State(notes): State<Notes>,
    drain: Drain,
) -> Response {
    let changes = notes.changes.subscribe();
    upgrade.on_upgrade(move |socket| follow(socket, changes, drain))
}

async fn follow(mut socket: WebSocket, mut changes: broadcast::Receiver<Change>, drain: Drain) {
    let drained = drain.signaled();
    tokio::pin!(drained);
    loop {
        let text = tokio::select! {
            biased;
            () = &mut drained => break,
            change = changes.recv() => match change {
                Ok(change) => serde_json::json!(change).to_string(),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    serde_json::json!({ "event": "lagged", "missed": missed }).to_string()
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            message = socket.recv() => match message {
                // The feed only speaks; pings are answered by the socket itself.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    // The changes made before the drain are told before the goodbye.
    while let Ok(change) = changes.try_recv() {
        let text = serde_json::json!(change).to_string();
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    let farewell = Message::Close(Some(CloseFrame {
        code: close_code::AWAY,
        reason: "the service is stopping; reconnect to reach another instance".into(),
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
