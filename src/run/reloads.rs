//! [`Reloads`]: reading the configuration again, off the loop that receives signals. A reload
//! reads files (the env file), and a file can block (a FIFO, a hung mount): the read runs on a
//! thread of its own, bounded in time and size (see `files`), while the operator goes on
//! answering signals; SIGTERM is handled at once whatever a reload is doing. What was read is
//! applied by the operator, on its loop, all or nothing.
//!
//! A reload is asked for by SIGHUP, or by the env file changing on disk (`RODENT_ENV_FILE` is
//! watched, and a change is applied as SIGHUP would apply it). Reloads asked for while one is
//! being read are folded into one more read after it: a burst of asks is applied at most twice,
//! the last time with what the files hold last.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::config::{Config, ConfigError, ConfigErrors};
use crate::files::{Watch, WatchError};
use crate::tls::Tls;

/// Reads the configuration again, given the one in effect.
pub(super) type ConfigSource = Arc<dyn Fn(&Config) -> Result<Config, ConfigErrors> + Send + Sync>;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Trigger {
    /// The env file changed on disk: applied when what it sets changed.
    FileChanged,
    /// SIGHUP: always applied (and logged, and counted).
    Signal,
}

/// A configuration read again, to apply.
pub(super) struct Reread {
    pub(super) trigger: Trigger,
    pub(super) read: Result<Config, ConfigErrors>,
}

/// A read under way on its thread.
struct Reading {
    trigger: Trigger,
    done: oneshot::Receiver<Result<Config, ConfigErrors>>,
}

/// The reloads of one service: the read under way, the one asked for meanwhile, the watch on the
/// env file.
pub(super) struct Reloads {
    source: ConfigSource,
    /// `RODENT_ENV_FILE` on disk, when it is set.
    watch: Option<Watch>,
    /// HTTPS on the main port, which follows its own files, and is asked to read them again on
    /// SIGHUP.
    tls: Option<Tls>,
    reading: Option<Reading>,
    /// Asked for while `reading`: one more read once it is done.
    queued: Option<Trigger>,
}

impl Reloads {
    /// Reloads through `source`, and watches the env file when `env_file` is set. A watch that
    /// cannot be set up is a failed start.
    pub(super) fn new(
        source: ConfigSource,
        env_file: Option<PathBuf>,
        tls: Option<Tls>,
    ) -> Result<Self, WatchError> {
        let watch = env_file.map(|file| Watch::new(vec![file])).transpose()?;
        Ok(Self {
            source,
            watch,
            tls,
            reading: None,
            queued: None,
        })
    }

    /// Asks for a reload: read now, or once the read under way is done. SIGHUP asks the TLS
    /// files to be read again too.
    pub(super) fn ask(&mut self, trigger: Trigger, running: Arc<Config>) {
        if let (Trigger::Signal, Some(tls)) = (trigger, &self.tls) {
            tls.reload();
        }
        if self.reading.is_some() {
            self.queued = self.queued.max(Some(trigger));
            return;
        }
        let (tx, done) = oneshot::channel();
        let source = self.source.clone();
        // A thread of its own, not tokio's blocking pool: the runtime's shutdown waits for that
        // pool, and no read may hold the exit. The read itself is bounded (see `files`), so the
        // thread always ends.
        let started = std::thread::Builder::new()
            .name("rodent-reload".into())
            .spawn(move || {
                let _ = tx.send(source(&running));
            });
        if let Err(e) = started {
            tracing::error!(target: "rodent::lifecycle", error = %e, "cannot start a thread to reload on");
            return;
        }
        self.reading = Some(Reading { trigger, done });
    }

    /// The next configuration read again, asking for reads as the env file changes meanwhile;
    /// `running` is the configuration in effect when one is asked for. Cancel-safe.
    pub(super) async fn next(&mut self, running: impl Fn() -> Arc<Config>) -> Reread {
        loop {
            tokio::select! {
                read = finished(&mut self.reading) => {
                    let trigger = self.reading.take().map_or(Trigger::Signal, |r| r.trigger);
                    if let Some(queued) = self.queued.take() {
                        self.ask(queued, running());
                    }
                    let read = read.unwrap_or_else(|_| {
                        Err(ConfigErrors(vec![ConfigError::Inconsistent {
                            explanation: "the configuration could not be read again: its \
                                          reading ended without an answer"
                                .into(),
                        }]))
                    });
                    return Reread { trigger, read };
                }
                () = changed(&mut self.watch) => {
                    tracing::debug!(target: "rodent::lifecycle", "the env file may have changed on disk");
                    self.ask(Trigger::FileChanged, running());
                }
            }
        }
    }
}

async fn finished(
    reading: &mut Option<Reading>,
) -> Result<Result<Config, ConfigErrors>, oneshot::error::RecvError> {
    match reading {
        Some(reading) => (&mut reading.done).await,
        None => std::future::pending().await,
    }
}

async fn changed(watch: &mut Option<Watch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}
