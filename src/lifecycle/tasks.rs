//! Background tasks: named pieces of application work that run beside the requests for the
//! life of the service (a queue consumer, an outbox worker, a cache refresher), inside its
//! lifecycle.
//!
//! Each is given the [`Drain`] and should end once it is signaled, after its current item. They
//! start once the startup hooks have succeeded, just before the service turns ready: a task may
//! use what the hooks set up (a pool, migrations), and runs by the time traffic comes. The drain
//! waits for them before the shutdown hooks, and aborts those still running at the deadline.
//!
//! A task that returns an error or panics has failed: the service stops, with exit 1. One that
//! returns `Ok` before the drain has simply ended, and the service goes on.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::drain::Drain;
use super::hooks::BoxError;

const TARGET: &str = "rodent::lifecycle";

type TaskFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A background task, not yet started.
pub(crate) struct Task {
    name: String,
    run: Box<dyn FnOnce(Drain) -> TaskFuture + Send>,
}

impl Task {
    pub(crate) fn new<F, Fut>(name: impl Into<String>, task: F) -> Self
    where
        F: FnOnce(Drain) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self {
            name: name.into(),
            run: Box::new(move |drain| Box::pin(task(drain))),
        }
    }
}

/// A task that failed: its name, and the cause in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskFailure {
    pub(crate) task: String,
    pub(crate) cause: String,
}

/// The running background tasks of one service.
#[derive(Default)]
pub(crate) struct Tasks {
    running: JoinSet<Result<(), BoxError>>,
    names: HashMap<Id, String>,
    started: Option<Instant>,
}

impl Tasks {
    /// Starts every task, each with its own handle on `drain`.
    pub(crate) fn start(tasks: Vec<Task>, drain: &Drain) -> Self {
        let mut running = JoinSet::new();
        let mut names = HashMap::new();
        for Task { name, run } in tasks {
            tracing::info!(target: TARGET, task = %name, "starting background task");
            let span = tracing::info_span!(target: TARGET, "task", task = %name);
            let id = running.spawn(run(drain.clone()).instrument(span)).id();
            names.insert(id, name);
        }
        Self {
            running,
            names,
            started: Some(Instant::now()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }

    /// The next task to fail; tasks that end well meanwhile are logged. Never resolves while
    /// none fails, nor once none is left.
    pub(crate) async fn next_failure(&mut self) -> TaskFailure {
        loop {
            let Some(ended) = self.running.join_next_with_id().await else {
                return std::future::pending().await;
            };
            if let Some(failure) = self.ended(ended) {
                return failure;
            }
        }
    }

    /// Waits for every task to end, and returns those that failed meanwhile.
    pub(crate) async fn finished(&mut self) -> Vec<TaskFailure> {
        let mut failures = Vec::new();
        while let Some(ended) = self.running.join_next_with_id().await {
            failures.extend(self.ended(ended));
        }
        failures
    }

    /// Aborts every task still running, logging each by name; returns how many there were, and
    /// the failures of those that had ended meanwhile.
    pub(crate) async fn abort(&mut self) -> (usize, Vec<TaskFailure>) {
        let mut failures = Vec::new();
        while let Some(ended) = self.running.try_join_next_with_id() {
            failures.extend(self.ended(ended));
        }
        let aborted = self.running.len();
        for name in self.names.values() {
            tracing::warn!(target: TARGET, task = %name, "background task aborted at the deadline");
        }
        self.running.abort_all();
        // Aborted tasks end at their next poll; what they return no longer matters.
        while self.running.join_next().await.is_some() {}
        self.names.clear();
        (aborted, failures)
    }

    /// Logs how a task ended; a failure is returned too.
    fn ended(
        &mut self,
        ended: Result<(Id, Result<(), BoxError>), JoinError>,
    ) -> Option<TaskFailure> {
        let (id, outcome) = match ended {
            Ok((id, outcome)) => (id, outcome.map_err(|e| one_line(&e.to_string()))),
            Err(e) if e.is_panic() => (e.id(), Err(format!("panicked: {}", panic_message(e)))),
            // Aborted: only the deadline aborts a task, and says so itself.
            Err(e) => {
                self.names.remove(&e.id());
                return None;
            }
        };
        let task = self.names.remove(&id).unwrap_or_default();
        let elapsed_ms = self
            .started
            .map_or(0, |started| started.elapsed().as_millis() as u64);
        match outcome {
            Ok(()) => {
                tracing::info!(target: TARGET, task = %task, elapsed_ms, "background task finished");
                None
            }
            Err(cause) => {
                tracing::error!(target: TARGET, task = %task, error = %cause, "background task failed");
                Some(TaskFailure { task, cause })
            }
        }
    }
}

fn panic_message(e: JoinError) -> String {
    let payload = e.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_string());
    one_line(&message)
}

/// A cause as one log line: line breaks become spaces.
fn one_line(cause: &str) -> String {
    cause.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::lifecycle::{Lifecycle, State};

    fn tasks(lifecycle: &Lifecycle, tasks: Vec<Task>) -> Tasks {
        Tasks::start(tasks, &Drain::new(lifecycle))
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_fails_or_panics_is_a_failure_with_its_cause() {
        let lifecycle = Lifecycle::new();
        let mut running = tasks(
            &lifecycle,
            vec![
                Task::new("fine", |_| async { Ok(()) }),
                Task::new("broken", |_| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Err("the queue is gone\nfor good".into())
                }),
                Task::new("panics", |_| async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    panic!("index out of bounds")
                }),
            ],
        );
        let first = running.next_failure().await;
        assert_eq!(first.task, "broken");
        assert_eq!(first.cause, "the queue is gone for good");
        let second = running.next_failure().await;
        assert_eq!(second.task, "panics");
        assert_eq!(second.cause, "panicked: index out of bounds");
        assert!(running.finished().await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_end_their_item_once_the_drain_is_signaled() {
        let lifecycle = Lifecycle::new();
        let mut running = tasks(
            &lifecycle,
            vec![Task::new("worker", |drain| async move {
                loop {
                    tokio::select! {
                        () = drain.signaled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            })],
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(running.len(), 1, "still working before the drain");
        lifecycle.advance(State::Stopping);
        let finished = tokio::time::timeout(Duration::from_secs(1), running.finished()).await;
        assert_eq!(finished.expect("ended at the drain"), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_the_drain_is_aborted() {
        let lifecycle = Lifecycle::new();
        let mut running = tasks(
            &lifecycle,
            vec![Task::new("stubborn", |_| std::future::pending())],
        );
        lifecycle.advance(State::Stopping);
        let waited = tokio::time::timeout(Duration::from_secs(60), running.finished()).await;
        assert!(waited.is_err(), "it never ends by itself");
        assert_eq!(running.abort().await, (1, vec![]));
        assert_eq!(running.len(), 0);
    }
}
