//! `notes`: a small notes API on rodent, built only on its public API, to show what a real
//! service needs from it: its own name and settings, a database pool (SQLite through sqlx)
//! opened in an async setup, migrations at start, a readiness check on the pool, a counter of
//! its own on `/metrics`, a background worker and a WebSocket feed that both end cleanly at the
//! drain.
//!
//! ```sh
//! cargo run --example notes
//! curl -XPOST localhost:8080/notes -d '{"body":"milk"}' -H 'content-type: application/json'
//! curl localhost:8080/notes
//! websocat ws://localhost:8080/feed       # the changes, as they happen
//! NOTES_PAGE_SIZE=0 cargo run --example notes config check   # exit 78, naming it
//! ```
//!
//! | part | owns |
//! | --- | --- |
//! | this file | the application: its name, its setup, its routes |
//! | `settings` | the `NOTES_*` variables |
//! | `store` | the database: pool, migrations, queries |
//! | `purge` | the worker that archives and removes deleted notes |
//! | `feed` | the WebSocket feed of changes |

mod feed;
mod purge;
mod settings;
mod store;

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rodent::config::Current;
use rodent::prometheus_client::metrics::counter::Counter;
use rodent::{BoxError, Problem, Rodent};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::broadcast;

use feed::Change;
use settings::Settings;
use store::Store;

fn main() -> std::process::ExitCode {
    rodent::App::new("notes", "1.0.0")
        .about("A notes API on rodent: SQLite, a purge worker, a WebSocket feed of changes")
        .settings(Settings::read)
        .main(setup)
}

/// What the handlers share.
#[derive(Clone)]
struct Notes {
    store: Store,
    settings: Current<Settings>,
    created: Counter,
    changes: broadcast::Sender<Change>,
}

/// Opens the pool and brings the schema up to date, then hands rodent the routes, the
/// readiness check, the worker and the metrics. It runs in rodent's runtime, after the log and
/// the PID file are in place and before the port is bound: a database that cannot be opened or
/// migrated ends the start (exit 1, the cause on one log line), and a SIGTERM meanwhile stops
/// it at once.
async fn setup(service: Rodent, settings: Current<Settings>) -> Result<Rodent, BoxError> {
    let now = settings.get();
    let store = Store::open(&now.database, now.pool_size).await?;
    store.migrate().await?;
    let notes = Notes {
        store: store.clone(),
        settings: settings.clone(),
        created: Counter::default(),
        changes: broadcast::channel(feed::BACKLOG).0,
    };
    let purge = purge::Purge {
        store: store.clone(),
        settings,
        purged: Counter::default(),
    };
    let (ready, close) = (store.clone(), store);
    Ok(service
        .metric("notes_created", "Notes created", notes.created.clone())
        .metric(
            "notes_purged",
            "Deleted notes archived and removed",
            purge.purged.clone(),
        )
        .readiness_check("database", move || {
            let store = ready.clone();
            async move { store.ping().await.map_err(Into::into) }
        })
        // Started just before ready, given the drain, and awaited before the shutdown hooks:
        // the pool is closed only once the worker is done with it.
        .task("purge", move |drain| purge.run(drain))
        .on_shutdown("database", Duration::from_secs(2), move || async move {
            close.close().await;
            Ok(())
        })
        .routes(
            Router::new()
                .route("/notes", get(list).post(create))
                .route("/notes/{id}", get(one).delete(delete))
                .route("/feed", get(feed::feed))
                .with_state(notes),
        ))
}

#[derive(Deserialize)]
struct NewNote {
    body: String,
}

/// `POST /notes` `{"body": "…"}`: 201 with the note.
async fn create(
    State(notes): State<Notes>,
    headers: HeaderMap,
    Json(new): Json<NewNote>,
) -> Result<Response, Problem> {
    authorize(&notes, &headers)?;
    if new.body.trim().is_empty() {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY).detail("a note needs a body"));
    }
    let note = notes.store.create(&new.body).await.map_err(unavailable)?;
    notes.created.inc();
    let _ = notes.changes.send(Change::Created { id: note.id });
    Ok((StatusCode::CREATED, Json(note)).into_response())
}

/// `GET /notes`: the notes, oldest first, at most `NOTES_PAGE_SIZE`.
async fn list(State(notes): State<Notes>) -> Result<Response, Problem> {
    let limit = notes.settings.get().page_size;
    let list = notes.store.list(limit).await.map_err(unavailable)?;
    Ok(Json(list).into_response())
}

/// `GET /notes/{id}`.
async fn one(State(notes): State<Notes>, Path(id): Path<i64>) -> Result<Response, Problem> {
    match notes.store.get(id).await.map_err(unavailable)? {
        Some(note) => Ok(Json(note).into_response()),
        None => Err(Problem::new(StatusCode::NOT_FOUND).detail(format!("no note {id}"))),
    }
}

/// `DELETE /notes/{id}`: 204; the purge worker archives and removes it later.
async fn delete(
    State(notes): State<Notes>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, Problem> {
    authorize(&notes, &headers)?;
    if !notes.store.delete(id).await.map_err(unavailable)? {
        return Err(Problem::new(StatusCode::NOT_FOUND).detail(format!("no note {id}")));
    }
    let _ = notes.changes.send(Change::Deleted { id });
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Writing takes `Authorization: Bearer <NOTES_API_KEY>` when the key is set, compared in
/// constant time.
fn authorize(notes: &Notes, headers: &HeaderMap) -> Result<(), Problem> {
    let settings = notes.settings.get();
    let Some(key) = &settings.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(key.expose().as_bytes())) {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::UNAUTHORIZED).detail("writing takes the API key"))
    }
}

/// A database error: 503, the request may succeed later; the cause goes to the log.
fn unavailable(error: sqlx::Error) -> Problem {
    tracing::error!(error = %error, "database error");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .detail("the database is not available")
        .retry_after(1)
}
