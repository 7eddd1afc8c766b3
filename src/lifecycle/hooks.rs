//! Startup and shutdown hooks: named pieces of application code that run at fixed points of the
//! lifecycle, each bounded by its own timeout.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::format_duration;

/// The error a readiness check or a hook returns: anything that can be shown to an operator.
/// A string will do (`Err("not connected".into())`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type HookFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A named, once-only piece of work with a time limit.
pub(crate) struct Hook {
    name: String,
    timeout: Duration,
    run: Box<dyn FnOnce() -> HookFuture + Send>,
}

/// How a hook ended.
#[derive(Debug)]
pub(crate) enum HookOutcome {
    Done(Duration),
    Failed(String),
    TimedOut(Duration),
}

impl HookOutcome {
    /// Logs how the hook `name` (a `kind` hook: startup or shutdown) ended; `Err` carries the
    /// cause when it did not succeed.
    pub(crate) fn log(self, name: &str, kind: &str) -> Result<(), String> {
        match self {
            Self::Done(took) => {
                tracing::info!(target: "rodent::lifecycle", hook = name, kind, elapsed_ms = took.as_millis() as u64, "hook done");
                Ok(())
            }
            Self::Failed(error) => {
                tracing::error!(target: "rodent::lifecycle", hook = name, kind, error = %error, "hook failed");
                Err(format!("failed: {error}"))
            }
            Self::TimedOut(limit) => {
                tracing::error!(target: "rodent::lifecycle", hook = name, kind, timeout_ms = limit.as_millis() as u64, "hook timed out");
                Err(format!("timed out after {}", format_duration(limit)))
            }
        }
    }
}

impl Hook {
    pub(crate) fn new<F, Fut>(name: impl Into<String>, timeout: Duration, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self {
            name: name.into(),
            timeout,
            run: Box::new(move || Box::pin(hook())),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs the hook for at most its own timeout and at most until `hard_stop`.
    pub(crate) async fn run(self, hard_stop: Option<Instant>) -> HookOutcome {
        let limit = match hard_stop {
            Some(stop) => self
                .timeout
                .min(stop.saturating_duration_since(Instant::now())),
            None => self.timeout,
        };
        let started = Instant::now();
        match tokio::time::timeout(limit, (self.run)()).await {
            Ok(Ok(())) => HookOutcome::Done(started.elapsed()),
            Ok(Err(e)) => HookOutcome::Failed(e.to_string()),
            Err(_) => HookOutcome::TimedOut(limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_hook_never_runs_past_the_hard_stop() {
        let hook = Hook::new("slow", Duration::from_secs(10), || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        let stop = Instant::now() + Duration::from_secs(2);
        match hook.run(Some(stop)).await {
            HookOutcome::TimedOut(limit) => assert!(limit <= Duration::from_secs(2)),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn failures_carry_the_error() {
        let hook = Hook::new("fails", Duration::from_secs(1), || async {
            Err("disk full".into())
        });
        match hook.run(None).await {
            HookOutcome::Failed(why) => assert_eq!(why, "disk full"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
