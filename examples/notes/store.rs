//! The notes, in SQLite through sqlx: the pool, the migrations, and every query.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// A note as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Note {
    pub(crate) id: i64,
    pub(crate) body: String,
    pub(crate) created_at: i64,
}

/// A row as the queries select it: `id, body, created_at`.
type Row = (i64, String, i64);

impl From<Row> for Note {
    fn from((id, body, created_at): Row) -> Self {
        Self {
            id,
            body,
            created_at,
        }
    }
}

/// The schema's history, oldest first, built into the binary. (`sqlx::migrate!` would read the
/// directory at compile time, but its macros build SQLite a second time, for the compiler.)
const MIGRATIONS: [(i64, &str, &str); 1] =
    [(1, "notes", include_str!("migrations/0001_notes.sql"))];

/// The notes store: a pool of connections to one SQLite file.
#[derive(Clone)]
pub(crate) struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens the pool, with one connection made at once: a file that cannot be opened or
    /// created is an error here, at start, not at the first request.
    pub(crate) async fn open(path: &Path, size: u32) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(size)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Brings the schema up to date: each migration not yet applied, in order, each in a
    /// transaction. One that was applied and has changed since is refused.
    pub(crate) async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations).run(&self.pool).await
    }

    /// Whether the database answers: the readiness check.
    pub(crate) async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    pub(crate) async fn create(&self, body: &str) -> Result<Note, sqlx::Error> {
        sqlx::query_as::<_, Row>(
            "INSERT INTO notes (body, created_at) VALUES (?, ?) RETURNING id, body, created_at",
        )
        .bind(body)
        .bind(now())
        .fetch_one(&self.pool)
        .await
        .map(Note::from)
    }

    pub(crate) async fn list(&self, limit: u32) -> Result<Vec<Note>, sqlx::Error> {
        sqlx::query_as::<_, Row>(
            "SELECT id, body, created_at FROM notes WHERE deleted_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map(|rows| rows.into_iter().map(Note::from).collect())
    }

    pub(crate) async fn get(&self, id: i64) -> Result<Option<Note>, sqlx::Error> {
        sqlx::query_as::<_, Row>(
            "SELECT id, body, created_at FROM notes WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map(|row| row.map(Note::from))
    }

    /// Marks a note deleted; `false` when there was none to delete.
    pub(crate) async fn delete(&self, id: i64) -> Result<bool, sqlx::Error> {
        let done =
            sqlx::query("UPDATE notes SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The oldest deleted note still stored, for the purge worker.
    pub(crate) async fn next_deleted(&self) -> Result<Option<Note>, sqlx::Error> {
        sqlx::query_as::<_, Row>(
            "SELECT id, body, created_at FROM notes WHERE deleted_at IS NOT NULL ORDER BY id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map(|row| row.map(Note::from))
    }

    /// Removes a deleted note for good.
    pub(crate) async fn remove(&self, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM notes WHERE id = ? AND deleted_at IS NOT NULL")
            .bind(id)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// Closes the pool: waits for the connections in use, then closes them all.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
