//! Readiness checks: the named conditions an application registers ("the database answers"),
//! and how they are evaluated, with the built-in ones, for `/readyz`.
//!
//! Liveness only asks whether this process can still serve (its runtime is responsive); it never
//! looks at dependencies, because failing it gets the process restarted, and restarting every
//! replica because a database is down makes an outage worse. Readiness asks whether this
//! instance should receive traffic: it is in the `ready` state, nobody switched it off, and every
//! registered check passes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::hooks::BoxError;
use super::state::{Lifecycle, State};

/// How long one readiness check may take before it counts as failed. Below the one-second
/// default probe timeout of Kubernetes, so the probe gets an answer that says which check hung.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// The built-in checks: the lifecycle state, and the switch code or operators can flip.
const LIFECYCLE_CHECK: &str = "lifecycle";
const ENABLED_CHECK: &str = "enabled";

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A named readiness condition, such as "the database answers". The error says why not.
#[derive(Clone)]
pub(crate) struct ReadinessCheck {
    name: Arc<str>,
    run: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    pub(crate) fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self {
            name: Arc::from(name.into()),
            run: Arc::new(move || Box::pin(check())),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// The readiness checks of one service.
pub(crate) struct Readiness {
    checks: Vec<ReadinessCheck>,
}

/// How one check went, as `application/health+json` lists it.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    #[serde(skip)]
    pub(crate) name: Arc<str>,
    pub(crate) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
}

impl Outcome {
    fn new(name: impl Into<Arc<str>>, result: Result<(), String>) -> Self {
        let (status, output) = match result {
            Ok(()) => ("pass", None),
            Err(why) => ("fail", Some(why)),
        };
        Self {
            name: name.into(),
            status,
            output,
        }
    }

    pub(crate) fn passed(&self) -> bool {
        self.status == "pass"
    }
}

/// Which checks to evaluate, and how fully: what `/readyz?verbose&exclude=<check>` asks.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    /// Run every check, even when a built-in one already fails.
    pub(crate) verbose: bool,
    pub(crate) exclude: Vec<String>,
}

impl Readiness {
    pub(crate) fn new(checks: Vec<ReadinessCheck>) -> Self {
        Self { checks }
    }

    /// Whether the application registered checks of its own.
    pub(crate) fn has_checks(&self) -> bool {
        !self.checks.is_empty()
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        [LIFECYCLE_CHECK, ENABLED_CHECK]
            .into_iter()
            .chain(self.checks.iter().map(ReadinessCheck::name))
    }

    fn builtin(lifecycle: &Lifecycle) -> [Outcome; 2] {
        let state = lifecycle.state();
        let lifecycle_result = match state {
            State::Ready => Ok(()),
            other => Err(other.as_str().to_string()),
        };
        let enabled_result = if lifecycle.readiness_enabled() {
            Ok(())
        } else {
            Err("taken out of rotation (POST /admin/readiness/enable puts it back)".to_string())
        };
        [
            Outcome::new(LIFECYCLE_CHECK, lifecycle_result),
            Outcome::new(ENABLED_CHECK, enabled_result),
        ]
    }

    async fn run(check: &ReadinessCheck) -> Outcome {
        let result = match tokio::time::timeout(CHECK_TIMEOUT, (check.run)()).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {}ms", CHECK_TIMEOUT.as_millis())),
        };
        Outcome::new(check.name.clone(), result)
    }

    /// Evaluates every check not excluded. The lifecycle check cannot be excluded: readiness
    /// must fail while draining whatever the caller asks. Registered checks are skipped when a
    /// built-in one already fails, unless the caller wants the full picture.
    pub(crate) async fn evaluate(&self, lifecycle: &Lifecycle, query: &Selection) -> Vec<Outcome> {
        let excluded =
            |name: &str| name != LIFECYCLE_CHECK && query.exclude.iter().any(|e| e == name);
        let mut outcomes: Vec<Outcome> = Self::builtin(lifecycle)
            .into_iter()
            .filter(|o| !excluded(&o.name))
            .collect();
        if query.verbose || outcomes.iter().all(Outcome::passed) {
            let runs = self
                .checks
                .iter()
                .filter(|c| !excluded(c.name()))
                .map(Self::run);
            outcomes.extend(futures_util::future::join_all(runs).await);
        }
        outcomes
    }

    pub(crate) async fn evaluate_one(&self, lifecycle: &Lifecycle, name: &str) -> Option<Outcome> {
        if let Some(builtin) = Self::builtin(lifecycle)
            .into_iter()
            .find(|o| &*o.name == name)
        {
            return Some(builtin);
        }
        let check = self.checks.iter().find(|c| c.name() == name)?;
        Some(Self::run(check).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_lifecycle_check_cannot_be_excluded() {
        let lifecycle = Lifecycle::new();
        let probes = Readiness::new(vec![ReadinessCheck::new("db", || async {
            Err("down".into())
        })]);
        let query = Selection {
            verbose: true,
            exclude: vec![LIFECYCLE_CHECK.into(), "db".into()],
        };
        let outcomes = probes.evaluate(&lifecycle, &query).await;
        let names: Vec<&str> = outcomes.iter().map(|o| &*o.name).collect();
        assert_eq!(names, [LIFECYCLE_CHECK, ENABLED_CHECK]);
        assert!(!outcomes[0].passed(), "starting is not ready");
    }

    #[tokio::test]
    async fn a_hanging_check_fails_within_its_timeout() {
        let lifecycle = Lifecycle::new();
        lifecycle.advance(State::Ready);
        let probes = Readiness::new(vec![ReadinessCheck::new("hangs", std::future::pending)]);
        let started = std::time::Instant::now();
        let outcomes = probes.evaluate(&lifecycle, &Selection::default()).await;
        assert!(started.elapsed() < CHECK_TIMEOUT * 3);
        assert!(!outcomes[2].passed());
    }
}
