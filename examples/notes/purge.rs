//! The purge worker: a background task that archives deleted notes (one JSON line each in
//! `NOTES_ARCHIVE`, written to disk) and then removes them, one note at a time. At the drain
//! it finishes the note it is on and stops, so a note is never archived without being removed,
//! nor removed without being archived.

use std::path::PathBuf;
use std::time::Duration;

use rodent::config::Current;
use rodent::prometheus_client::metrics::counter::Counter;
use rodent::{BoxError, Drain};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::settings::Settings;
use crate::store::{Note, Store};

/// How often the worker looks at `NOTES_PURGE_EVERY`: a reload that shortens it applies within
/// this.
const LOOK_EVERY: Duration = Duration::from_millis(250);

pub(crate) struct Purge {
    pub(crate) store: Store,
    pub(crate) settings: Current<Settings>,
    pub(crate) purged: Counter,
}

impl Purge {
    /// Runs until the drain: a round every `NOTES_PURGE_EVERY`, at most `NOTES_PURGE_RATE`
    /// notes a second. The drain is looked at between notes, never inside one.
    pub(crate) async fn run(self, drain: Drain) -> Result<(), BoxError> {
        let archive = self.settings.get().archive.clone();
        let mut last_round = Instant::now();
        loop {
            tokio::select! {
                () = drain.signaled() => return Ok(()),
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
            if last_round.elapsed() < self.settings.get().purge_every {
                continue;
            }
            last_round = Instant::now();
            let mut purged = 0u64;
            while let Some(note) = self.store.next_deleted().await? {
                // One item: archived, then removed. The drain waits for it to finish.
                append(&archive, &note).await?;
                self.store.remove(note.id).await?;
                self.purged.inc();
                purged += 1;
                let pause = Duration::from_secs(1) / self.settings.get().purge_rate;
                tokio::select! {
                    () = drain.signaled() => {
                        tracing::info!(purged, "purge stopped by the drain, after a whole note");
                        return Ok(());
                    }
                    () = tokio::time::sleep(pause) => {}
                }
            }
            if purged > 0 {
                tracing::info!(purged, "deleted notes purged");
            }
        }
    }
}

/// Appends `note` to the archive, on disk before it returns.
async fn append(archive: &PathBuf, note: &Note) -> Result<(), BoxError> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(archive)
        .await?;
    let mut line = serde_json::to_vec(note)?;
    line.push(b'\n');
    file.write_all(&line).await?;
    file.sync_data().await?;
    Ok(())
}
